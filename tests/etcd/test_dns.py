"""Cluster DNS against a real etcd, asked by a real DNS client (dnspython) over UDP and TCP on
loopback: Services applied with `netplane apply`'s writer are answered, unknown names in the
cluster domain are NXDOMAIN, names outside it REFUSED at once, changes show within a second;
and `netplane master --dns-listen` keeps kube-system/kube-dns with one endpoint per live master.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from netplane.store import EtcdConfig, EtcdStore, Keys
from netplane.store.embedded import EmbeddedEtcd
from netplane.store.txn import LeaseIs
from orchestrator import dns as clusterdns
from orchestrator import masterservice
from orchestrator.applier import Applier
from orchestrator.controllers.base import Writer
from orchestrator.controllers.informers import Informers
from orchestrator.deletion import Deleter
from orchestrator.manifests import Manifest
from orchestrator.master import leader_key
from orchestrator.objects.meta import ENDPOINTS, NAMESPACE, SERVICE
from orchestrator.storage import ObjectStore
from tests.conftest import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TTL = 2
DOMAIN = "cluster.local"

Obj = dict[str, Any]


# --------------------------------------------------------------------------- helpers
def service(name: str, ns: str, *, ip: str | None = None, ports: list[Obj] | None = None) -> Obj:
    spec: Obj = {"ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}],
                 "selector": {"app": name}}
    if ip:
        spec["clusterIP"] = ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def apply(objects: ObjectStore, obj: Obj) -> None:
    a = Applier(objects)
    for p in a.plan([Manifest("test", 1, obj)]):
        a.write(p)


def cluster_ip(objects: ObjectStore, name: str, ns: str) -> str:
    svc = objects.get(SERVICE, name, ns)
    assert svc is not None
    return str(svc["spec"]["clusterIP"])


def ask(addr: tuple[str, int], name: str, rdtype: str = "A", *, tcp: bool = False,
        timeout: float = 2.0) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(q, addr[0], port=addr[1], timeout=timeout)
    return dns.query.udp(q, addr[0], port=addr[1], timeout=timeout)


def a_records(r: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset)


def soa_ttl(r: dns.message.Message) -> int:
    (soa,) = [rrset for rrset in r.authority if rrset.rdtype == dns.rdatatype.SOA]
    assert soa.name.to_text() == f"{DOMAIN}."
    assert soa[0].minimum == clusterdns.TTL
    return int(soa.ttl)


@pytest.fixture
def server(objects: ObjectStore) -> Iterator[clusterdns.ClusterDNS]:
    d = clusterdns.ClusterDNS(objects, ("127.0.0.1", 0))
    d.start()
    assert d.wait_synced(10)
    yield d
    d.stop()


# --------------------------------------------------------------------------- the server
def test_answers_a_services_cluster_ip_in_each_namespace(objects: ObjectStore,
                                                         server: clusterdns.ClusterDNS) -> None:
    apply(objects, service("web", "default"))
    apply(objects, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    apply(objects, service("web", "shop"))
    ip_default, ip_shop = cluster_ip(objects, "web", "default"), cluster_ip(objects, "web", "shop")
    assert ip_default != ip_shop

    r = wait_for(lambda: (m := ask(server.address, f"web.default.svc.{DOMAIN}")).answer and m, 5,
                 "web.default answered")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA and not r.flags & dns.flags.RA
    assert a_records(r) == [ip_default]
    assert r.answer[0].ttl == clusterdns.TTL
    r = wait_for(lambda: (m := ask(server.address, f"web.shop.svc.{DOMAIN}")).answer and m, 5, "web.shop answered")
    assert a_records(r) == [ip_shop]
    # names are case-insensitive; the answer keeps the question's spelling
    r = ask(server.address, f"WEB.Shop.svc.{DOMAIN.upper()}")
    assert a_records(r) == [ip_shop] and r.answer[0].name.to_text() == f"WEB.Shop.svc.{DOMAIN.upper()}."


def test_unknown_names_in_the_cluster_domain_are_nxdomain_with_a_short_soa(
        objects: ObjectStore, server: clusterdns.ClusterDNS) -> None:
    apply(objects, service("web", "default"))
    wait_for(lambda: ask(server.address, f"web.default.svc.{DOMAIN}").answer, 5, "web answered")
    for name in (f"nope.default.svc.{DOMAIN}", f"web.nons.svc.{DOMAIN}", f"x.web.default.svc.{DOMAIN}",
                 f"nope.{DOMAIN}", f"1-2-3-4.default.pod.{DOMAIN}"):
        r = ask(server.address, name)
        assert r.rcode() == dns.rcode.NXDOMAIN, name
        assert not r.answer and r.flags & dns.flags.AA
        assert soa_ttl(r) == clusterdns.TTL
    # a namespace with services, svc.<domain> and the domain are names (without addresses)
    for name in (f"default.svc.{DOMAIN}", f"svc.{DOMAIN}", DOMAIN):
        r = ask(server.address, name)
        assert r.rcode() == dns.rcode.NOERROR and not r.answer, name
        assert soa_ttl(r) == clusterdns.TTL
    r = ask(server.address, DOMAIN, "SOA")
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0].rdtype == dns.rdatatype.SOA


def test_aaaa_of_a_known_name_is_noerror_without_answers(objects: ObjectStore,
                                                         server: clusterdns.ClusterDNS) -> None:
    apply(objects, service("web", "default"))
    wait_for(lambda: ask(server.address, f"web.default.svc.{DOMAIN}").answer, 5, "web answered")
    r = ask(server.address, f"web.default.svc.{DOMAIN}", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert soa_ttl(r) == clusterdns.TTL
    r = ask(server.address, f"nope.default.svc.{DOMAIN}", "AAAA")
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_names_outside_the_cluster_are_refused_at_once(server: clusterdns.ClusterDNS) -> None:
    for name, rdtype in (("example.org", "A"), ("example.org", "AAAA"), ("local", "A"),
                         ("xcluster.local", "A"), ("cluster.local.example.org", "A")):
        t0 = time.monotonic()
        r = ask(server.address, name, rdtype, timeout=1.0)
        took = time.monotonic() - t0
        assert r.rcode() == dns.rcode.REFUSED, name
        assert not r.answer and not r.flags & dns.flags.AA and not r.flags & dns.flags.RA
        assert took < 0.1, f"{name}: {took * 1000:.0f} ms"


def test_a_recreated_service_is_answered_with_its_new_ip_within_a_second(
        objects: ObjectStore, server: clusterdns.ClusterDNS) -> None:
    apply(objects, service("web", "default", ip="10.96.7.7"))
    wait_for(lambda: a_records(ask(server.address, f"web.default.svc.{DOMAIN}")) == ["10.96.7.7"], 5, "first IP")
    Deleter(objects).delete(SERVICE, "web", "default")
    apply(objects, service("web", "default", ip="10.96.8.8"))
    t0 = time.monotonic()
    wait_for(lambda: a_records(ask(server.address, f"web.default.svc.{DOMAIN}")) == ["10.96.8.8"], 1.0,
             "the new cluster IP answered", interval=0.01)
    assert time.monotonic() - t0 < 1.0
    # and a deleted service is gone
    Deleter(objects).delete(SERVICE, "web", "default")
    wait_for(lambda: ask(server.address, f"web.default.svc.{DOMAIN}").rcode() == dns.rcode.NXDOMAIN, 1.0,
             "deleted service NXDOMAIN", interval=0.01)


def test_tcp_answers_several_queries_on_one_connection(objects: ObjectStore,
                                                       server: clusterdns.ClusterDNS) -> None:
    apply(objects, service("web", "default"))
    ip = cluster_ip(objects, "web", "default")
    wait_for(lambda: ask(server.address, f"web.default.svc.{DOMAIN}").answer, 5, "web answered")
    r = ask(server.address, f"web.default.svc.{DOMAIN}", tcp=True)
    assert a_records(r) == [ip]
    assert ask(server.address, "example.org", tcp=True).rcode() == dns.rcode.REFUSED
    with socket.create_connection(server.address, timeout=2) as s:
        for name, want in ((f"web.default.svc.{DOMAIN}", dns.rcode.NOERROR),
                           (f"nope.default.svc.{DOMAIN}", dns.rcode.NXDOMAIN),
                           (f"web.default.svc.{DOMAIN}", dns.rcode.NOERROR)):
            q = dns.message.make_query(name, "A")
            dns.query.send_tcp(s, q)
            r, _ = dns.query.receive_tcp(s, expiration=time.time() + 2)
            assert r.id == q.id and r.rcode() == want, name


def test_srv_for_named_ports(objects: ObjectStore, server: clusterdns.ClusterDNS) -> None:
    apply(objects, service("db", "default", ports=[{"name": "sql", "port": 5432},
                                                   {"name": "stats", "port": 9187, "protocol": "UDP"}]))
    ip = cluster_ip(objects, "db", "default")
    wait_for(lambda: ask(server.address, f"db.default.svc.{DOMAIN}").answer, 5, "db answered")
    r = ask(server.address, f"_sql._tcp.db.default.svc.{DOMAIN}", "SRV")
    assert r.rcode() == dns.rcode.NOERROR
    (srv,) = r.answer[0]
    assert (srv.priority, srv.weight, srv.port) == (0, 100, 5432)
    assert srv.target.to_text() == f"db.default.svc.{DOMAIN}."
    assert a_records(_additional_as_answer(r)) == [ip]
    assert ask(server.address, f"_stats._udp.db.default.svc.{DOMAIN}", "SRV").answer[0][0].port == 9187
    for name in (f"_stats._tcp.db.default.svc.{DOMAIN}", f"_nope._tcp.db.default.svc.{DOMAIN}"):
        assert ask(server.address, name, "SRV").rcode() == dns.rcode.NXDOMAIN, name
    assert ask(server.address, f"_tcp.db.default.svc.{DOMAIN}", "SRV").rcode() == dns.rcode.NOERROR


def _additional_as_answer(r: dns.message.Message) -> dns.message.Message:
    m = dns.message.Message()
    m.answer = list(r.additional)
    return m


def test_headless_service_answers_ready_endpoints_truncated_over_udp(
        objects: ObjectStore, server: clusterdns.ClusterDNS) -> None:
    """clusterIP None (written directly: `apply` does not admit it yet): the ready addresses.
    60 of them do not fit in 512 bytes: UDP says TC (with the question, so the client takes
    it as the answer to its query) and the client's TCP retry gets them all."""
    ips = [f"10.244.1.{i}" for i in range(1, 61)]
    objects.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "default"},
                    "spec": {"clusterIP": "None", "ports": [{"name": "sql", "port": 5432}]}})
    objects.create({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "db", "namespace": "default"},
                    "subsets": [{"addresses": [{"ip": ip} for ip in ips],
                                 "notReadyAddresses": [{"ip": "10.244.9.9"}],
                                 "ports": [{"name": "sql", "port": 15432}]}]})
    name = f"db.default.svc.{DOMAIN}"
    wait_for(lambda: ask(server.address, name).flags & dns.flags.TC, 5, "db truncated over UDP")
    r = ask(server.address, name)
    assert r.flags & dns.flags.TC and not r.answer and r.question[0].name.to_text() == name + "."
    r, used_tcp = dns.query.udp_with_fallback(dns.message.make_query(name, "A"), "127.0.0.1",
                                              port=server.address[1], timeout=2)
    assert used_tcp and a_records(r) == sorted(ips)
    assert ask(server.address, name, tcp=True).answer[0].ttl == clusterdns.TTL
    # a client announcing a larger payload (EDNS0) gets them over UDP
    q = dns.message.make_query(name, "A", use_edns=0, payload=1232)
    r = dns.query.udp(q, "127.0.0.1", port=server.address[1], timeout=2)
    assert not r.flags & dns.flags.TC and a_records(r) == sorted(ips) and r.edns == 0
    # SRV of a headless service: the endpoints' port
    r = ask(server.address, f"_sql._tcp.{name}", "SRV", tcp=True)
    assert r.answer[0][0].port == 15432


def test_garbage_gets_no_answer_and_the_server_keeps_answering(server: clusterdns.ClusterDNS) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(b"\x00\x01garbage", server.address)
        with pytest.raises(socket.timeout):
            s.recv(4096)
        # a response sent to us is not answered either (no reflection loops)
        resp = dns.message.make_response(dns.message.make_query("example.org", "A"))
        s.sendto(resp.to_wire(), server.address)
        with pytest.raises(socket.timeout):
            s.recv(4096)
    assert ask(server.address, "example.org").rcode() == dns.rcode.REFUSED


def test_servfail_until_the_services_are_listed_and_a_clean_stop(keys: Keys) -> None:
    dead = EtcdStore(EtcdConfig(endpoints=(f"http://127.0.0.1:{free_port()}",), timeout=0.5))
    d = clusterdns.ClusterDNS(ObjectStore(dead, keys), ("127.0.0.1", 0))
    try:
        d.start()
        addr = d.address
        assert ask(addr, f"web.default.svc.{DOMAIN}").rcode() == dns.rcode.SERVFAIL
        assert ask(addr, "example.org").rcode() == dns.rcode.REFUSED
        d.stop()
        assert not any(t.is_alive() for t in d._threads)
        # both sockets are closed: the same port binds again, for UDP and TCP
        again = clusterdns.ClusterDNS(ObjectStore(dead, keys), addr)
        again.start()
        assert again.address == addr
        again.stop()
    finally:
        d.stop()
        dead.close()


def test_a_taken_port_is_an_error(objects: ObjectStore, server: clusterdns.ClusterDNS) -> None:
    with pytest.raises(OSError):
        clusterdns.ClusterDNS(objects, server.address).start()
    assert ask(server.address, "example.org").rcode() == dns.rcode.REFUSED


# --------------------------------------------------------------------------- kube-dns, fenced
def run_controller(objects: ObjectStore, writer: Writer) -> tuple[threading.Event, Callable[[], None]]:
    stop = threading.Event()
    infs = Informers(objects)
    ctrl = clusterdns.KubeDNSController(objects, infs, writer=writer)
    infs.start(stop)
    assert infs.wait_synced(10)
    t = threading.Thread(target=ctrl.run, args=(stop,), daemon=True)
    t.start()

    def close() -> None:
        stop.set()
        t.join(10)
        infs.join(5)
        assert not t.is_alive()

    return stop, close


def test_kube_dns_writes_are_fenced_by_the_leader_lease(store: EtcdStore, keys: Keys) -> None:
    objects = ObjectStore(store, keys)
    store.put(masterservice.master_key(keys, "m"), json.dumps({"dns": "10.1.0.5:5353"}))
    # a deposed leader: its lease no longer holds the leader key
    fenced = threading.Event()
    _stop, close = run_controller(objects, Writer(guards=(LeaseIs(leader_key(keys), 0x1234),),
                                                  on_fenced=fenced.set))
    try:
        wait_for(fenced.is_set, 10, "the write refused as fenced")
    finally:
        close()
    assert objects.get(NAMESPACE, "kube-system") is None
    assert objects.get(SERVICE, "kube-dns", "kube-system") is None
    assert objects.get(ENDPOINTS, "kube-dns", "kube-system") is None
    # the leader: everything written, the endpoint on the registered port
    lease = store.grant(30)
    assert store.create(leader_key(keys), "me", lease=lease)
    _stop, close = run_controller(objects, Writer(guards=(LeaseIs(leader_key(keys), lease),)))
    try:
        wait_for(lambda: endpoints(objects) == [("10.1.0.5", 5353)], 10, "endpoints written")
        assert objects.get(NAMESPACE, "kube-system") is not None
        assert cluster_ip(objects, "kube-dns", "kube-system") == "10.96.0.10"
    finally:
        close()
        store.revoke(lease)


# --------------------------------------------------------------------------- the master
@pytest.fixture
def masters(etcd_server: EmbeddedEtcd, keys: Keys, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(ident: str, *extra: str) -> subprocess.Popen[str]:
        with open(tmp_path / f"{ident}.log", "w") as log:
            p = subprocess.Popen([sys.executable, "-m", "netplane.cli.main", "--log-level", "info",
                                  "--etcd", etcd_server.endpoint, "--prefix", keys.prefix, "master", "--id", ident,
                                  "--leader-ttl", str(TTL), "--dns-listen", "127.0.0.1:0", *extra],
                                 cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def registered(store: EtcdStore, keys: Keys, ident: str) -> tuple[str, int] | None:
    kv = store.get(masterservice.master_key(keys, ident))
    if kv is None:
        return None
    host, _, port = json.loads(kv.value)["dns"].rpartition(":")
    return host, int(port)


def endpoints(objects: ObjectStore) -> list[tuple[str, int]]:
    """(ip, port) of every address of kube-system/kube-dns, checking both ports agree."""
    ep = objects.get(ENDPOINTS, clusterdns.DNS_SERVICE, clusterdns.DNS_NAMESPACE)
    if ep is None:
        return []
    out = []
    for s in ep.get("subsets") or []:
        ports = {(p["name"], p["protocol"]): p["port"] for p in s["ports"]}
        assert ports[("dns", "UDP")] == ports[("dns-tcp", "TCP")], s
        out += [(a["ip"], ports[("dns", "UDP")]) for a in s.get("addresses") or []]
    return sorted(out)


def holder(store: EtcdStore, keys: Keys) -> str:
    kv = store.get(leader_key(keys))
    return kv.value.decode() if kv else ""


def test_master_keeps_kube_dns_pointing_at_live_masters(store: EtcdStore, keys: Keys, tmp_path: Path,
                                                        masters: Callable[..., subprocess.Popen[str]]) -> None:
    objects = ObjectStore(store, keys)
    a = masters("a")
    wait_for(lambda: holder(store, keys) == "a", 20, "a leads")
    addr_a = wait_for(lambda: registered(store, keys, "a"), 20, "a registers its DNS")
    assert addr_a[0] == "127.0.0.1" and addr_a[1] != 0
    wait_for(lambda: endpoints(objects) == [addr_a], 10, "kube-dns endpoints = a")

    ns = objects.get(NAMESPACE, "kube-system")
    assert ns is not None
    svc = objects.get(SERVICE, "kube-dns", "kube-system")
    assert svc is not None
    assert svc["spec"]["clusterIP"] == "10.96.0.10" and not svc["spec"].get("selector")
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == \
        [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]
    # the endpoint is a real DNS server: it answers for kube-dns itself, over UDP and TCP
    name = f"kube-dns.kube-system.svc.{DOMAIN}"
    assert a_records(wait_for(lambda: ask(addr_a, name).answer and ask(addr_a, name), 10, "a answers")) == \
        ["10.96.0.10"]
    assert a_records(ask(addr_a, name, tcp=True)) == ["10.96.0.10"]

    # a follower serves DNS too, and joins the endpoints
    b = masters("b")
    addr_b = wait_for(lambda: registered(store, keys, "b"), 20, "b registers its DNS")
    wait_for(lambda: endpoints(objects) == sorted([addr_a, addr_b]), 10, "kube-dns endpoints = a, b")
    assert holder(store, keys) == "a"
    assert a_records(ask(addr_b, name)) == ["10.96.0.10"]

    # someone deletes the Service and the Endpoints: the leader puts them back, same IP
    Deleter(objects).delete(SERVICE, "kube-dns", "kube-system")
    objects.delete(ENDPOINTS, "kube-dns", "kube-system")
    wait_for(lambda: endpoints(objects) == sorted([addr_a, addr_b]), 10, "endpoints rewritten")
    wait_for(lambda: objects.get(SERVICE, "kube-dns", "kube-system"), 10, "service recreated")
    assert cluster_ip(objects, "kube-dns", "kube-system") == "10.96.0.10"

    # a dead follower leaves the endpoints within its lease TTL
    b.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    wait_for(lambda: endpoints(objects) == [addr_a], TTL + 3, "b leaves the endpoints")
    assert time.monotonic() - t0 <= TTL + 1.5

    # a dead leader: the next one takes over and drops it
    c = masters("c")
    addr_c = wait_for(lambda: registered(store, keys, "c"), 20, "c registers its DNS")
    wait_for(lambda: endpoints(objects) == sorted([addr_a, addr_c]), 10, "kube-dns endpoints = a, c")
    a.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    wait_for(lambda: holder(store, keys) == "c" and endpoints(objects) == [addr_c], 2 * TTL + 5,
             "c leads, a leaves the endpoints")
    assert time.monotonic() - t0 <= TTL + 2.0

    # a clean stop takes the registration away at once (revoked), not when the lease expires
    # (TTL 2 s, renewed every 2/3 s: never sooner than 1.33 s after the signal)
    c.send_signal(signal.SIGTERM)
    wait_for(lambda: registered(store, keys, "c") is None, 1.0, "c's registration revoked", interval=0.02)
    assert c.wait(15) == 0


def test_master_refuses_a_taken_dns_port(etcd_server: EmbeddedEtcd, keys: Keys) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "netplane.cli.main", "--etcd", etcd_server.endpoint,
                            "--prefix", keys.prefix, "master", "--dns-listen", f"127.0.0.1:{port}"],
                           check=False, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert f"cannot serve DNS on 127.0.0.1:{port}" in r.stderr, r.stderr
