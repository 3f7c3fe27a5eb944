"""Service API over a real etcd: allocation (race-safe), validation, endpoints, delete; and the
`netplane svc` CLI end to end (exit codes, one-line errors, JSON output)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from netplane.errors import ConfigError, NotFoundError
from netplane.proxy.api import ServiceAPI, clusterip_key
from netplane.proxy.model import Service, ServicePort
from netplane.store import EtcdStore, Keys


def svc(name: str, *, node_port: int | None = None) -> Service:
    return Service(name=name, cluster_ip=IPv4Address(0), ports=(ServicePort("default", "TCP", 80, 8080, node_port),),
                   type="NodePort" if node_port is not None else "ClusterIP")


def test_create_allocates_in_range_and_stores(store: EtcdStore, keys: Keys) -> None:
    api = ServiceAPI(store, keys)
    made = api.create(svc("web"), cluster_ip=None, endpoints=(IPv4Address("10.244.1.2"),))
    assert made.cluster_ip in IPv4Network("10.96.0.0/12")
    s, ep = api.get("web")
    assert s.cluster_ip == made.cluster_ip and ep is not None and [str(a.ip) for a in ep.addresses] == ["10.244.1.2"]
    assert store.get(clusterip_key(keys, made.cluster_ip)).value == b"default/web"  # type: ignore[union-attr]


def test_requested_ip_taken_outside_range_or_reserved(store: EtcdStore, keys: Keys) -> None:
    api = ServiceAPI(store, keys)
    api.create(svc("a"), cluster_ip=IPv4Address("10.96.0.10"))
    with pytest.raises(ConfigError, match="10.96.0.10 is already allocated"):
        api.create(svc("b"), cluster_ip=IPv4Address("10.96.0.10"))
    with pytest.raises(ConfigError, match="outside the service range"):
        api.create(svc("b"), cluster_ip=IPv4Address("192.168.0.1"))
    with pytest.raises(ConfigError, match="reserved"):
        api.create(svc("b"), cluster_ip=IPv4Address("10.96.0.0"))
    with pytest.raises(ConfigError, match="service a already exists"):
        api.create(svc("a"), cluster_ip=None)
    # nothing leaked by the failures: b can still be made, with the IP it asked for
    assert api.create(svc("b"), cluster_ip=IPv4Address("10.96.0.11")).cluster_ip == IPv4Address("10.96.0.11")


def test_nodeport_allocation_and_conflict(store: EtcdStore, keys: Keys) -> None:
    api = ServiceAPI(store, keys)
    a = api.create(svc("a", node_port=30080), cluster_ip=None)
    assert a.ports[0].node_port == 30080
    with pytest.raises(ConfigError, match="nodePort 30080 is already allocated"):
        api.create(svc("b", node_port=30080), cluster_ip=None)
    with pytest.raises(ConfigError, match="outside the node port range"):
        api.allocate_node_port("c", 80)
    b = api.create(Service(name="b", cluster_ip=IPv4Address(0), ports=(ServicePort("d", "TCP", 80, 80),), type="NodePort"), cluster_ip=None)
    assert 30000 <= (b.ports[0].node_port or 0) <= 32767 and b.ports[0].node_port != 30080


def test_concurrent_creates_never_share_an_ip(store: EtcdStore, keys: Keys) -> None:
    """Tiny range + many racing creators: every service gets a distinct address."""
    rng = IPv4Network("10.99.0.0/28")  # 13 usable: .2 to .14
    results: list[IPv4Address] = []
    errors: list[Exception] = []

    def worker(i: int) -> None:
        api = ServiceAPI(store, keys, service_range=rng, rng=random.Random(1))  # same seed: maximal collisions
        try:
            results.append(api.create(svc(f"s{i}"), cluster_ip=None).cluster_ip)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(13)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 13
    with pytest.raises(ConfigError, match="is full"):
        ServiceAPI(store, keys, service_range=rng).create(svc("extra"), cluster_ip=None)


def test_delete_releases_ip_and_ports(store: EtcdStore, keys: Keys) -> None:
    api = ServiceAPI(store, keys)
    a = api.create(svc("a", node_port=30099), cluster_ip=IPv4Address("10.96.0.20"))
    api.delete("a")
    assert store.list(f"{keys.prefix}/registry/")[0] == []
    assert api.create(svc("b", node_port=30099), cluster_ip=a.cluster_ip).cluster_ip == a.cluster_ip
    with pytest.raises(NotFoundError):
        api.delete("a")
    with pytest.raises(NotFoundError):
        api.set_endpoints("nope", ())


def test_list_skips_malformed_values(store: EtcdStore, keys: Keys) -> None:
    api = ServiceAPI(store, keys)
    api.create(svc("good"), cluster_ip=None)
    store.put(f"{keys.prefix}/registry/services/default/bad", "{not json")
    store.put(f"{keys.prefix}/registry/services/default/worse", '{"kind": "Service", "metadata": {"name": "worse", '
              '"namespace": "default"}, "spec": {"type": "ExternalName", "ports": [{"port": 1}]}}')
    assert [s.name for s, _ in api.list()] == ["good"]


NETPLANE = str(Path(sys.executable).parent / "netplane")  # the installed console script: main() itself


def run(store: EtcdStore, keys: Keys, *args: str) -> tuple[int, str, str]:
    """The real `netplane` command in a process of its own: exit code, stdout, stderr."""
    p = subprocess.run([NETPLANE, "--etcd", store.config.endpoints[0], "--prefix", keys.prefix, *args],
                       capture_output=True, text=True, timeout=60, check=False)
    return p.returncode, p.stdout, p.stderr


def test_cli_create_show_list_endpoints_delete(store: EtcdStore, keys: Keys) -> None:
    code, out, err = run(store, keys, "svc", "create", "web", "--port", "80:8080", "--port", "53/udp",
                       "--endpoint", "10.244.1.2", "--cluster-ip", "10.96.0.50", "-o", "json")
    assert (code, err) == (0, ""), err
    data = json.loads(out)
    assert data["selector"] == {}
    assert data["cluster_ip"] == "10.96.0.50"
    assert [(p["port"], p["target_port"], p["protocol"]) for p in data["ports"]] == [(80, 8080, "TCP"), (53, 53, "UDP")]
    assert data["endpoints"] == [{"ip": "10.244.1.2", "ready": True}]
    code, out, _ = run(store, keys, "svc", "endpoints", "web", "--set", "10.244.1.3", "--set", "10.244.2.3", "-o", "json")
    assert code == 0 and [e["ip"] for e in json.loads(out)["endpoints"]] == ["10.244.1.3", "10.244.2.3"]
    code, out, _ = run(store, keys, "svc", "list")
    assert code == 0 and "web" in out and "10.96.0.50" in out and "80:8080/tcp" in out
    code, out, _ = run(store, keys, "svc", "list", "-o", "json")
    assert [s["name"] for s in json.loads(out)] == ["web"]
    code, out, _ = run(store, keys, "svc", "delete", "web")
    assert code == 0 and "deleted" in out
    code, out, err = run(store, keys, "svc", "show", "web")
    assert (code, out, err) == (2, "", "netplane: error: service web not found\n")


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--port", "80:99999"], "targetPort 99999 is out of range (1-65535)"),
        (["--port", "80/sctp"], "unknown protocol 'sctp': use tcp or udp"),
        (["--port", "80", "--cluster-ip", "1.2.3.4"], "cluster IP 1.2.3.4 is outside the service range 10.96.0.0/12"),
        (["--port", "80/tcp:1234", "--type", "NodePort"], "nodePort 1234 is outside the node port range 30000-32767"),
        (["--port", "80", "--endpoint", "10.0.0.999"], "endpoint '10.0.0.999' is not an IPv4 address"),
        (["--port", "80", "--selector", "app"], "bad --selector 'app': expected KEY=VALUE"),
        (["--port", "80", "--selector", "app=web", "--endpoint", "10.0.0.1"],
         "service bad has a selector: its endpoints follow its pods, not --endpoint"),
        ([], "Missing option '--port'. (see 'netplane svc create --help')"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(store: EtcdStore, keys: Keys, args: list[str], msg: str) -> None:
    code, out, err = run(store, keys, "svc", "create", "bad", *args)
    assert (code, out, err) == (2, "", f"netplane: error: {msg}\n")
    assert store.list(f"{keys.prefix}/registry/")[0] == []  # and nothing was stored
    assert store.list(f"{keys.prefix}/services/")[0] == []  # (no allocation either)


def test_cli_selector_service_gets_its_endpoints_from_the_controller_not_by_hand(store: EtcdStore, keys: Keys) -> None:
    code, out, err = run(store, keys, "svc", "create", "web", "--port", "80:8080", "--selector", "app=web", "-o", "json")
    assert (code, err) == (0, ""), err
    assert json.loads(out)["selector"] == {"app": "web"} and json.loads(out)["endpoints"] == []
    code, out, err = run(store, keys, "svc", "endpoints", "web", "--set", "10.244.1.3")
    assert (code, out) == (2, "") and "has a selector" in err
    code, out, err = run(store, keys, "get", "svc", "web", "-o", "json")  # the same object `apply` writes
    assert code == 0, err
    assert json.loads(out)["spec"]["selector"] == {"app": "web"}


def test_cli_unreachable_etcd_is_one_line_exit_1() -> None:
    from tests.conftest import free_port

    down = f"http://127.0.0.1:{free_port()}"
    p = subprocess.run([NETPLANE, "--etcd", down, "--etcd-timeout", "2", "--prefix", "/np-down", "svc", "list"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert (p.returncode, p.stdout, p.stderr) == (
        1, "", f"netplane: cannot reach etcd (connection refused) during list /np-down/services/specs/ (etcd {down})\n")
