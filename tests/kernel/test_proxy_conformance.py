"""Service conformance, parametrised over the three data planes (iptables, nftables, eBPF).

Topology per test (all namespaces and the cgroup are made here and removed at teardown):

    ext (192.168.77.2) --veth-- node (192.168.77.1; proxy; clients run here, in the test cgroup)
                                 |-- veth -- be1 (10.50.1.2)
                                 |-- veth -- be2 (10.50.2.2)
                                 |-- veth -- be3 (10.50.3.2)
                                 '-- np.1 (VXLAN, 10.50.0.0/32; pod subnet 10.50.0.0/16)

With the `far` fixture, a third host, routed through ext, holds a pod of another subnet behind
its own VXLAN device (flannel's layout: neighbour + FDB + onlink route on each side):

    ext (192.168.78.1) --veth-- far (192.168.78.2; np.1 10.60.3.0/32) -- veth -- be4 (10.60.3.2)

Each backend runs a TCP+UDP responder answering its own name. A real etcd holds the services;
the real `ProxyComponent` watches it and programs the real kernel. Clients are separate
processes (`python -m netplane.proxy.probe`) placed in the node namespace and test cgroup, as
a process on a real host would be.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from netplane import netns
from netplane.cgroups import cgroup2_root
from netplane.proxy import registry
from netplane.proxy.api import ServiceAPI
from netplane.proxy.backend import Placement
from netplane.proxy.desired import ProxyState
from netplane.proxy.model import Service, parse_port_spec
from netplane.proxy.probe import Server
from netplane.proxy.runner import ProxyComponent
from netplane.store import EtcdStore, Keys

CG_ROOT = cgroup2_root()
NODE_IP = "192.168.77.1"
EXT_IP = "192.168.77.2"
PORT = 8080
PEER_PORT = 9090  # answers name@<source address the backend saw>
BACKENDS = {"be1": "10.50.1.2", "be2": "10.50.2.2", "be3": "10.50.3.2"}
LOCAL_CIDR = "10.50.0.0/16"  # the node's pod subnet
NODE_OVERLAY_IP = "10.50.0.0"  # its VXLAN device address: where remote NodePort traffic is SNATed to
FAR_IP = "192.168.78.2"
FAR_BE = "10.60.3.2"  # be4, a pod on the far host
NODE_VTEP_MAC, FAR_VTEP_MAC = "02:4e:50:00:00:01", "02:4e:50:00:00:03"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@dataclass
class Topo:
    node: str
    ext: str
    backends: dict[str, str]  # name -> netns
    cgroup: Path
    servers: list[Server]

    def wrap(self, argv: list[str], ns: str, *, in_cgroup: bool = True) -> list[str]:
        """Run `argv` in namespace `ns` (and the test cgroup) without a Python preexec_fn:
        forking this gRPC-threaded process with one is unsafe, so a shell moves itself into
        the cgroup and execs nsenter."""
        cg = str(self.cgroup / "cgroup.procs") if in_cgroup else "/dev/null"
        script = 'cg=$1; ns=$2; shift 2; [ "$cg" = /dev/null ] || echo $$ > "$cg" || exit 99; exec nsenter --net="$ns" "$@"'
        return ["sh", "-c", script, "sh", cg, netns.netns_path(ns), *argv]

    def run_probe(self, target: str, n: int, *, udp: bool = False, where: str | None = None,
                  in_cgroup: bool = True, interval: float = 0.0) -> dict:  # type: ignore[type-arg]
        argv = [sys.executable, "-m", "netplane.proxy.probe", "probe", target, "-n", str(n), "--json"]
        if udp:
            argv.append("--udp")
        if interval:
            argv += ["--interval", str(interval)]
        p = subprocess.run(self.wrap(argv, where or self.node, in_cgroup=in_cgroup), capture_output=True, text=True,
                           timeout=120, check=False)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)  # type: ignore[no-any-return]

    def spawn_in_cgroup(self, argv: list[str], ns: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.wrap(argv, ns), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.fixture
def topo(make_netns: Callable[[str], str]) -> Iterator[Topo]:
    node = make_netns("node")
    ext = make_netns("ext")
    # links are made directly inside the test's namespaces: none appears in the root namespace
    tag = uuid.uuid4().hex[:5]
    sh("ip", "-n", node, "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", ext)
    sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "ext0")
    sh("ip", "-n", node, "link", "set", "ext0", "up")
    sh("ip", "-n", ext, "addr", "add", f"{EXT_IP}/24", "dev", "eth0")
    sh("ip", "-n", ext, "link", "set", "eth0", "up")
    sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # like a real host, the node has a default route (iptables DNAT happens after routing)
    sh("ip", "-n", node, "route", "add", "default", "via", EXT_IP)
    # the node's VXLAN device (peers are added by the `far` fixture)
    sh("ip", "-n", node, "link", "add", "np.1", "address", NODE_VTEP_MAC, "type", "vxlan", "id", "1", "local", NODE_IP,
       "dev", "ext0", "dstport", "8472", "nolearning")
    sh("ip", "-n", node, "addr", "add", f"{NODE_OVERLAY_IP}/32", "dev", "np.1")
    sh("ip", "-n", node, "link", "set", "np.1", "up")
    backends: dict[str, str] = {}
    servers: list[Server] = []
    for i, (name, ip) in enumerate(sorted(BACKENDS.items()), start=1):
        ns = make_netns(name)
        backends[name] = ns
        sh("ip", "-n", node, "link", "add", f"vb{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", node, "addr", "add", f"10.50.{i}.1/24", "dev", f"vb{i}")
        sh("ip", "-n", node, "link", "set", f"vb{i}", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", f"10.50.{i}.1")
        with netns.inside(ns):
            servers.append(Server(name, port=PORT))
            servers.append(Server(name, port=PEER_PORT, tell_peer=True))
    cg = CG_ROOT / f"npt-proxy-{tag}"
    cg.mkdir()
    try:
        yield Topo(node=node, ext=ext, backends=backends, cgroup=cg, servers=servers)
    finally:
        for s in servers:
            s.close()
        for _ in range(50):
            if not (cg / "cgroup.procs").read_text().split():
                break
            time.sleep(0.1)
        cg.rmdir()


@pytest.fixture(params=["iptables", "nftables", "ebpf"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def far(topo: Topo, make_netns: Callable[[str], str]) -> Iterator[str]:
    """A third host with pod be4 (10.60.3.2), reached from the node over VXLAN. Returns its netns."""
    host = make_netns("far")
    pod = make_netns("be4")
    sh("ip", "netns", "exec", topo.ext, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "-n", topo.ext, "link", "add", "f0", "type", "veth", "peer", "name", "eth0", "netns", host)
    sh("ip", "-n", topo.ext, "addr", "add", "192.168.78.1/24", "dev", "f0")
    sh("ip", "-n", topo.ext, "link", "set", "f0", "up")
    sh("ip", "-n", host, "addr", "add", f"{FAR_IP}/24", "dev", "eth0")
    sh("ip", "-n", host, "link", "set", "eth0", "up")
    sh("ip", "-n", host, "route", "add", "default", "via", "192.168.78.1")
    sh("ip", "netns", "exec", host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "-n", host, "link", "add", "np.1", "address", FAR_VTEP_MAC, "type", "vxlan", "id", "1", "local", FAR_IP,
       "dev", "eth0", "dstport", "8472", "nolearning")
    sh("ip", "-n", host, "addr", "add", "10.60.3.0/32", "dev", "np.1")
    sh("ip", "-n", host, "link", "set", "np.1", "up")
    sh("ip", "-n", host, "link", "add", "vb4", "type", "veth", "peer", "name", "eth0", "netns", pod)
    sh("ip", "-n", host, "addr", "add", "10.60.3.1/24", "dev", "vb4")
    sh("ip", "-n", host, "link", "set", "vb4", "up")
    sh("ip", "-n", pod, "addr", "add", f"{FAR_BE}/24", "dev", "eth0")
    sh("ip", "-n", pod, "link", "set", "eth0", "up")
    sh("ip", "-n", pod, "route", "add", "default", "via", "10.60.3.1")
    for ns, peer_mac, peer_ip, peer_gw, peer_net in (
        (topo.node, FAR_VTEP_MAC, FAR_IP, "10.60.3.0", "10.60.3.0/24"),
        (host, NODE_VTEP_MAC, NODE_IP, NODE_OVERLAY_IP, LOCAL_CIDR),
    ):
        sh("ip", "-n", ns, "neigh", "replace", peer_gw, "lladdr", peer_mac, "dev", "np.1", "nud", "permanent")
        sh("bridge", "-n", ns, "fdb", "append", peer_mac, "dev", "np.1", "dst", peer_ip, "self", "permanent")
        sh("ip", "-n", ns, "route", "add", peer_net, "via", peer_gw, "dev", "np.1", "onlink")
    with netns.inside(pod):
        servers = [Server("be4", port=PORT), Server("be4", port=PEER_PORT, tell_peer=True)]
    try:
        yield host
    finally:
        for s in servers:
            s.close()


def start_proxy(store: EtcdStore, keys: Keys, topo: Topo, mode: str) -> ProxyComponent:
    where = Placement(netns=topo.node, cgroup=str(topo.cgroup), iface="ext0", node_ip=IPv4Address(NODE_IP),
                      local_cidr=IPv4Network(LOCAL_CIDR), overlay_iface="np.1", overlay_ip=IPv4Address(NODE_OVERLAY_IP))
    comp = ProxyComponent(store, keys, mode=mode, node="node", where=where, resync_interval=30.0)
    comp.start()
    assert comp.synced.wait(20), "proxy did not sync"
    return comp


@pytest.fixture
def proxy(store: EtcdStore, keys: Keys, topo: Topo, mode: str) -> Iterator[Callable[[], ProxyComponent]]:
    """Start the proxy on demand (after services exist, or before); cleaned up at teardown."""
    started: list[ProxyComponent] = []

    def go() -> ProxyComponent:
        c = start_proxy(store, keys, topo, mode)
        started.append(c)
        return c

    yield go
    for c in started:
        c.stop()
    if started:
        started[-1].backend.cleanup()


def make_service(store: EtcdStore, keys: Keys, name: str, *, ips: list[str], port: str = f"80:{PORT}",
                 udp: bool = False, node_port: int | None = None, affinity: bool = False) -> IPv4Address:
    api = ServiceAPI(store, keys)
    ports = (parse_port_spec(port + ("/udp" if udp else "/tcp") + (f":{node_port}" if node_port else "")),)
    svc = Service(
        name=name, cluster_ip=IPv4Address(0), ports=ports, type="NodePort" if node_port else "ClusterIP",
        session_affinity="ClientIP" if affinity else "None",
    )
    made = api.create(svc, cluster_ip=None, endpoints=tuple(IPv4Address(i) for i in ips))
    return made.cluster_ip


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.02)


@contextmanager
def applied(comp: ProxyComponent, pred: Callable[[ProxyState], bool], timeout: float = 10.0) -> Iterator[None]:
    """Make a change in the body; on leaving, wait until the proxy has programmed the kernel
    with a state for which `pred` holds (on_sync runs after the backend's sync has returned)."""
    done = threading.Event()
    comp.on_sync = lambda state: done.set() if pred(state) else None
    try:
        yield
        assert done.wait(timeout), f"the proxy did not apply the change within {timeout:.0f} s"
    finally:
        comp.on_sync = None


def endpoints_in(state: ProxyState, service: str) -> set[str]:
    """The backend addresses the proxy programs for `service` (any of its ports)."""
    name = registry.qualified(service)
    return {str(b.ip) for k, e in state.entries.items() if k.service == name for b in e.backends}


def assert_even(answers: dict[str, int], names: list[str], n: int) -> None:
    """Each of k backends gets n/k ± 40% (about ±4.9 standard deviations at n=300, k=3)."""
    assert set(answers) == set(names), answers
    expect = n / len(names)
    for name in names:
        assert 0.6 * expect <= answers[name] <= 1.4 * expect, answers


ALL = sorted(BACKENDS)


def test_tcp_spread_over_every_endpoint(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    vip = make_service(store, keys, "web", ips=list(BACKENDS.values()))
    proxy()
    r = topo.run_probe(f"{vip}:80", 300)
    assert r["errors"] == {}
    assert_even(r["answers"], ALL, 300)


def test_udp_spread_and_replies_come_from_the_vip(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    vip = make_service(store, keys, "dns", ips=list(BACKENDS.values()), port=f"53:{PORT}", udp=True)
    proxy()
    r = topo.run_probe(f"{vip}:53", 300, udp=True)
    assert r["errors"] == {}
    assert_even(r["answers"], ALL, 300)
    assert r["peers"] == {f"{vip}:53": 300}


def test_client_ip_affinity_pins_a_client(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    vip = make_service(store, keys, "sticky", ips=list(BACKENDS.values()), affinity=True)
    proxy()
    r = topo.run_probe(f"{vip}:80", 60)
    assert r["errors"] == {}
    assert len(r["answers"]) == 1 and sum(r["answers"].values()) == 60, r


def test_removed_endpoint_gets_no_new_connections_once_applied(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    vip = make_service(store, keys, "web", ips=list(BACKENDS.values()))
    comp = proxy()
    assert set(topo.run_probe(f"{vip}:80", 60)["answers"]) == set(ALL)
    with applied(comp, lambda st: endpoints_in(st, "web") == {BACKENDS["be1"], BACKENDS["be2"]}):
        ServiceAPI(store, keys).set_endpoints("web", (IPv4Address(BACKENDS["be1"]), IPv4Address(BACKENDS["be2"])))
    r = topo.run_probe(f"{vip}:80", 200)
    assert r["errors"] == {}
    assert set(r["answers"]) == {"be1", "be2"}, r


def test_removed_udp_endpoint_flow_moves(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    """A long-lived UDP flow (same socket) to a removed endpoint moves to a remaining one:
    the iptables and nftables backends delete the stale conntrack entry; the eBPF backend never had one."""
    vip = make_service(store, keys, "dns", ips=[BACKENDS["be1"]], port=f"53:{PORT}", udp=True)
    comp = proxy()
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)\n"
        "for line in sys.stdin:\n"
        f"  s.sendto(b'x',('{vip}',53)); d,p=s.recvfrom(100); print(d.decode().strip(), flush=True)\n"
    )
    p = topo.spawn_in_cgroup([sys.executable, "-c", code], topo.node)
    try:
        assert p.stdin and p.stdout
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "be1"
        with applied(comp, lambda st: endpoints_in(st, "dns") == {BACKENDS["be2"]}):
            ServiceAPI(store, keys).set_endpoints("dns", (IPv4Address(BACKENDS["be2"]),))
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "be2"
    finally:
        p.kill()
        p.wait()


def test_service_without_endpoints_refuses(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    vip = make_service(store, keys, "empty", ips=[])
    proxy()
    r = topo.run_probe(f"{vip}:80", 5)
    assert r["answers"] == {}
    assert r["errors"] == {"ECONNREFUSED": 5}, r


def test_nodeport_from_another_host(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    make_service(store, keys, "np", ips=list(BACKENDS.values()), node_port=30080)
    proxy()
    r = topo.run_probe(f"{NODE_IP}:30080", 150, where=topo.ext, in_cgroup=False)
    assert r["errors"] == {}, r
    assert set(r["answers"]) == set(ALL), r
    ru = topo.run_probe(f"{NODE_IP}:30080", 10, where=topo.ext, in_cgroup=False)
    assert sum(ru["answers"].values()) == 10


def test_nodeport_udp_from_another_host(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    make_service(store, keys, "npu", ips=list(BACKENDS.values()), port=f"53:{PORT}", udp=True, node_port=30053)
    proxy()
    r = topo.run_probe(f"{NODE_IP}:30053", 60, udp=True, where=topo.ext, in_cgroup=False)
    assert r["errors"] == {}, r
    assert set(r["answers"]) == set(ALL) and r["peers"] == {f"{NODE_IP}:30053": 60}, r


def test_hairpin_pod_reaches_itself_through_its_service(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    vip = make_service(store, keys, "self", ips=[BACKENDS["be1"]])
    proxy()
    r = topo.run_probe(f"{vip}:80", 20, where=topo.backends["be1"])
    assert r == {**r, "errors": {}, "answers": {"be1": 20}}, r


def test_restart_breaks_neither_established_nor_new_connections(
    store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str
) -> None:
    vip = make_service(store, keys, "web", ips=list(BACKENDS.values()))
    first = proxy()
    code = (
        "import socket,sys\n"
        f"s=socket.create_connection(('{vip}',80),timeout=3); print(s.recv(100).decode().strip(), flush=True)\n"
        "for line in sys.stdin:\n"
        "  s.sendall(line.encode()); print(s.recv(100).decode().strip(), flush=True)\n"
    )
    held = topo.spawn_in_cgroup([sys.executable, "-c", code], topo.node)
    # a client making new connections all through the restart
    loop = topo.spawn_in_cgroup(
        [sys.executable, "-m", "netplane.proxy.probe", "probe", f"{vip}:80", "-n", "400", "--interval", "0.005", "--json"],
        topo.node,
    )
    try:
        assert held.stdout and held.stdin and loop.stdout
        assert held.stdout.readline().strip() in ALL
        time.sleep(0.3)
        first.stop()
        second = proxy()
        assert second.synced.is_set()
        held.stdin.write("ping\n")
        held.stdin.flush()
        assert held.stdout.readline().strip() == "ping"
        out, _ = loop.communicate(timeout=60)
        r = json.loads(out)
        assert r["errors"] == {}, r
        assert sum(r["answers"].values()) == 400
    finally:
        for p in (held, loop):
            if p.poll() is None:
                p.kill()
            p.wait()


def test_connected_udp_sockets_spread(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    """connect()ed UDP sockets (eBPF: connect4 picks the backend) each reach one backend."""
    vip = make_service(store, keys, "cudp", ips=list(BACKENDS.values()), port=f"53:{PORT}", udp=True)
    proxy()
    code = (
        "import socket, collections, json\n"
        "c = collections.Counter()\n"
        "for _ in range(300):\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)\n"
        f"    s.connect(('{vip}', 53)); s.send(b'x'); c[s.recv(100).decode().strip()] += 1; s.close()\n"
        "print(json.dumps(c))\n"
    )
    p = subprocess.run(topo.wrap([sys.executable, "-c", code], topo.node), capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert_even(json.loads(p.stdout), ALL, 300)


def test_client_sees_the_vip_as_its_peer(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    """getpeername() on a connected socket names the VIP, not the backend (TCP and UDP)."""
    vip = make_service(store, keys, "web", ips=list(BACKENDS.values()))
    make_service(store, keys, "dns", ips=list(BACKENDS.values()), port=f"53:{PORT}", udp=True)
    proxy()
    dns_vip = ServiceAPI(store, keys).get("dns")[0].cluster_ip
    code = (
        "import socket, json\n"
        f"t = socket.create_connection(('{vip}', 80), timeout=2); t.recv(100)\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)\n"
        f"u.connect(('{dns_vip}', 53)); u.send(b'x'); u.recv(100)\n"
        "print(json.dumps([t.getpeername(), u.getpeername()]))\n"
    )
    p = subprocess.run(topo.wrap([sys.executable, "-c", code], topo.node), capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [[str(vip), 80], [str(dns_vip), 53]]


def test_nodeport_udp_flow_moves_off_a_removed_endpoint(store: EtcdStore, keys: Keys, topo: Topo, proxy, mode: str) -> None:
    """From another host, one UDP socket to a nodePort: when its endpoint is removed, the same
    flow reaches the remaining one (iptables, nftables: conntrack entry deleted; eBPF: tc flow re-balanced)."""
    make_service(store, keys, "npu", ips=[BACKENDS["be1"]], port=f"53:{PORT}", udp=True, node_port=30054)
    comp = proxy()
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)\n"
        "for line in sys.stdin:\n"
        f"  s.sendto(b'x',('{NODE_IP}',30054)); d,p=s.recvfrom(100); print(d.decode().strip(), p[0], flush=True)\n"
    )
    p = subprocess.Popen(topo.wrap([sys.executable, "-c", code], topo.ext, in_cgroup=False),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdin and p.stdout
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().split() == ["be1", NODE_IP]
        with applied(comp, lambda st: endpoints_in(st, "npu") == {BACKENDS["be2"]}):
            ServiceAPI(store, keys).set_endpoints("npu", (IPv4Address(BACKENDS["be2"]),))
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().split() == ["be2", NODE_IP]
    finally:
        p.kill()
        p.wait()


# ---------------------------------------------------------------- NodePort, endpoints on other hosts
# externalTrafficPolicy=Cluster in both data planes: a nodePort reaches endpoints on a third host
# (neither the client's nor the receiving node's) through the overlay, SNATed to the node's VXLAN
# address so the reply comes back through it; the client only ever talks to NODE_IP:nodePort.


def test_nodeport_reaches_an_endpoint_on_a_third_host(store: EtcdStore, keys: Keys, topo: Topo, far: str, proxy, mode: str) -> None:
    make_service(store, keys, "np", ips=[FAR_BE], node_port=30080)
    proxy()
    r = topo.run_probe(f"{NODE_IP}:30080", 50, where=topo.ext, in_cgroup=False)
    assert r == {**r, "errors": {}, "answers": {"be4": 50}}, r


def test_nodeport_udp_reaches_an_endpoint_on_a_third_host(store: EtcdStore, keys: Keys, topo: Topo, far: str, proxy, mode: str) -> None:
    make_service(store, keys, "npu", ips=[FAR_BE], port=f"53:{PORT}", udp=True, node_port=30053)
    proxy()
    r = topo.run_probe(f"{NODE_IP}:30053", 50, udp=True, where=topo.ext, in_cgroup=False)
    assert r["errors"] == {} and r["answers"] == {"be4": 50}, r
    assert r["peers"] == {f"{NODE_IP}:30053": 50}, r  # the reply comes from the nodePort


def test_nodeport_spreads_over_local_and_remote_endpoints(store: EtcdStore, keys: Keys, topo: Topo, far: str, proxy, mode: str) -> None:
    make_service(store, keys, "np", ips=[*BACKENDS.values(), FAR_BE], node_port=30080)
    make_service(store, keys, "npu", ips=[*BACKENDS.values(), FAR_BE], port=f"53:{PORT}", udp=True, node_port=30053)
    proxy()
    r = topo.run_probe(f"{NODE_IP}:30080", 300, where=topo.ext, in_cgroup=False)
    assert r["errors"] == {}, r
    assert_even(r["answers"], [*ALL, "be4"], 300)
    ru = topo.run_probe(f"{NODE_IP}:30053", 200, udp=True, where=topo.ext, in_cgroup=False)
    assert ru["errors"] == {} and set(ru["answers"]) == {*ALL, "be4"}, ru
    assert ru["peers"] == {f"{NODE_IP}:30053": 200}, ru


def test_nodeport_source_seen_by_local_and_remote_endpoints(store: EtcdStore, keys: Keys, topo: Topo, far: str, proxy, mode: str) -> None:
    """The remote endpoint sees the receiving node's VXLAN address (SNAT: its reply must come
    back through that node). A local endpoint sees the real client in eBPF mode (no SNAT, as
    Cilium does); kube-proxy's iptables and nftables modes masquerade every nodePort packet (its address on
    the pod's link)."""
    make_service(store, keys, "np", ips=[BACKENDS["be1"], FAR_BE], port=f"80:{PEER_PORT}", node_port=30090)
    make_service(store, keys, "npu", ips=[BACKENDS["be1"], FAR_BE], port=f"53:{PEER_PORT}", udp=True, node_port=30091)
    comp = proxy()
    local_src = EXT_IP if mode == "ebpf" else "10.50.1.1"
    want = {f"be1@{local_src}", f"be4@{NODE_OVERLAY_IP}"}
    r = topo.run_probe(f"{NODE_IP}:30090", 60, where=topo.ext, in_cgroup=False)
    assert r["errors"] == {} and set(r["answers"]) == want, r
    ru = topo.run_probe(f"{NODE_IP}:30091", 60, udp=True, where=topo.ext, in_cgroup=False)
    assert ru["errors"] == {} and set(ru["answers"]) == want and ru["peers"] == {f"{NODE_IP}:30091": 60}, ru
    if mode == "ebpf":  # the tc program's flows, under their nodePort, as `proxy dump` shows them
        text = comp.backend.dump()
        block = text.split("nodePort 30090/tcp", 1)[1].split("\nnodePort ", 1)[0]
        assert f"flow {EXT_IP}:" in block, text
        assert f"-> {FAR_BE}:{PEER_PORT} (SNAT source port" in block, text
        assert f"-> {BACKENDS['be1']}:{PEER_PORT} (local backend)" in block, text


def test_nodeport_remote_flow_survives_a_proxy_restart(store: EtcdStore, keys: Keys, topo: Topo, far: str, proxy, mode: str) -> None:
    make_service(store, keys, "np", ips=[FAR_BE], node_port=30080)
    first = proxy()
    code = (
        "import socket,sys\n"
        f"s=socket.create_connection(('{NODE_IP}',30080),timeout=3); print(s.recv(100).decode().strip(), flush=True)\n"
        "for line in sys.stdin:\n"
        "  s.sendall(line.encode()); print(s.recv(100).decode().strip(), flush=True)\n"
    )
    held = subprocess.Popen(topo.wrap([sys.executable, "-c", code], topo.ext, in_cgroup=False),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout and held.stdin
        assert held.stdout.readline().strip() == "be4"
        first.stop()
        proxy()
        held.stdin.write("ping\n")
        held.stdin.flush()
        assert held.stdout.readline().strip() == "ping"
        r = topo.run_probe(f"{NODE_IP}:30080", 20, where=topo.ext, in_cgroup=False)
        assert r["errors"] == {} and r["answers"] == {"be4": 20}, r
    finally:
        held.kill()
        held.wait()


def tc_filters(ns: str, dev: str, direction: str) -> list[dict]:  # type: ignore[type-arg]
    out = subprocess.run(["tc", "-n", ns, "-j", "filter", "show", "dev", dev, direction], capture_output=True, text=True,
                         check=False).stdout
    return [f for f in json.loads(out or "[]") if f.get("kind") == "bpf"]


def bpf_now() -> int:
    """The tc program's clock: bpf_ktime_get_ns() (CLOCK_MONOTONIC) >> 30, "about seconds"."""
    return time.monotonic_ns() >> 30


def snat_ports_held(pins: Path, backend: str) -> dict[int, object]:
    """SNAT port -> its np_snat_rev value (client, last_seen, closing) for flows to `backend`."""
    from netplane.ebpf import maps as M
    from netplane.ebpf import sys as bsys

    fd = bsys.obj_get(pins / "np_snat_rev")
    try:
        return {M.u16_port(k.port2): v for k, v in bsys.map_items(fd, M.CtKey, M.SnatVal)
                if M.u32_ip(k.addr1) == IPv4Address(backend)}
    finally:
        import os

        os.close(fd)


@pytest.mark.parametrize("mode", ["ebpf"])  # the eBPF backend's own machinery: no iptables/nftables twin
def test_ebpf_cleanup_removes_nodeport_filters_and_pins(store: EtcdStore, keys: Keys, topo: Topo, far: str, proxy, mode: str) -> None:
    from netplane.ebpf.loader import instance_for, pin_dir

    make_service(store, keys, "np", ips=[FAR_BE], node_port=30080)
    comp = proxy()
    assert topo.run_probe(f"{NODE_IP}:30080", 5, where=topo.ext, in_cgroup=False)["answers"] == {"be4": 5}
    comp.stop()  # the agent goes; programs and maps stay (traffic goes on)
    pins = pin_dir(instance_for(topo.cgroup))
    assert (pins / "np_snat_rev").exists()
    assert tc_filters(topo.node, "np.1", "ingress") and tc_filters(topo.node, "ext0", "ingress")
    assert tc_filters(topo.node, "ext0", "egress")
    cmd = [sys.executable, "-m", "netplane", "--etcd", store.config.endpoints[0], "--prefix", keys.prefix, "proxy", "cleanup",
           "--mode", "ebpf", "--cgroup", str(topo.cgroup), "--netns", topo.node, "--iface", "ext0", "--overlay-iface", "np.1"]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert "removed tc filter on np.1" in p.stdout and "unpinned" in p.stdout, p.stdout
    for dev, d in (("np.1", "ingress"), ("ext0", "ingress"), ("ext0", "egress")):
        assert tc_filters(topo.node, dev, d) == [], (dev, d)
    assert not pins.exists()


@pytest.mark.parametrize("mode", ["ebpf"])  # the eBPF backend's own machinery: no iptables/nftables twin
def test_ebpf_snat_ports_are_not_stolen_and_come_back_after_close(store: EtcdStore, keys: Keys, topo: Topo, far: str, mode: str) -> None:
    """With 8 SNAT ports for a remote backend: 8 open connections hold them all (a 9th new one
    is dropped, the 8 keep working); once they close, the ports serve new connections."""
    from netplane.ebpf.loader import EbpfBackend, instance_for, pin_dir

    make_service(store, keys, "np", ips=[FAR_BE], node_port=30080)
    backend = EbpfBackend(cgroup=str(topo.cgroup), instance=instance_for(topo.cgroup), iface="ext0",
                          node_ip=IPv4Address(NODE_IP), local_cidr=IPv4Network(LOCAL_CIDR), netns=topo.node,
                          overlay_iface="np.1", overlay_ip=IPv4Address(NODE_OVERLAY_IP), snat_ports=(20000, 20007))
    comp = ProxyComponent(store, keys, mode=mode, node="node", backend=backend, resync_interval=30.0)
    code = (
        "import socket,sys\n"
        f"ss=[socket.create_connection(('{NODE_IP}',30080),timeout=3) for _ in range(8)]\n"
        "print(' '.join(s.recv(100).decode().strip() for s in ss), flush=True)\n"
        "for line in sys.stdin:\n"
        "  [s.sendall(b'x') for s in ss]; print(' '.join(s.recv(100).decode() for s in ss), flush=True)\n"
    )
    comp.start()
    held: subprocess.Popen[str] | None = None
    try:
        assert comp.synced.wait(20)
        held = subprocess.Popen(topo.wrap([sys.executable, "-c", code], topo.ext, in_cgroup=False),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert held.stdout and held.stdin
        assert held.stdout.readline().split() == ["be4"] * 8
        r = topo.run_probe(f"{NODE_IP}:30080", 1, where=topo.ext, in_cgroup=False)
        assert r["errors"] == {"TIMEOUT": 1}, r  # every port held by a live flow
        held.stdin.write("go\n")
        held.stdin.flush()
        assert held.stdout.readline().split() == ["x"] * 8  # and none was taken from them
        held.stdin.close()
        held.wait(timeout=10)
        # closed flows give their ports back after a 2 s grace: wait until the tc program saw
        # all 8 close and its clock (CLOCK_MONOTONIC in 2^30 ns units) is 2 past the last packet
        pins = pin_dir(instance_for(topo.cgroup))

        def released() -> bool:
            held_ports = snat_ports_held(pins, FAR_BE)
            assert len(held_ports) == 8, held_ports
            return all(v.closing and bpf_now() - v.last_seen >= 2 for v in held_ports.values())

        wait_until(released, "the 8 closed flows' SNAT ports past their grace")
        r = topo.run_probe(f"{NODE_IP}:30080", 8, where=topo.ext, in_cgroup=False)
        assert r["errors"] == {} and r["answers"] == {"be4": 8}, r
    finally:
        if held is not None:
            if held.poll() is None:
                held.kill()
            held.wait()
        comp.stop()
        backend.cleanup()


@pytest.mark.parametrize("mode", ["ebpf"])  # the eBPF backend's own machinery: no iptables/nftables twin
def test_ebpf_udp_snat_port_comes_back_after_quiet(store: EtcdStore, keys: Keys, topo: Topo, far: str, mode: str) -> None:
    """README: a UDP flow's SNAT port is given back after 30 s of quiet (NP_SNAT_UDP_IDLE, units
    of 2^30 ns). The loader compiles that limit in (`snat_udp_idle`, default 30); here it is 4
    units, so the test waits seconds, not half a minute. With one SNAT port for the remote
    backend, flow A holds it while it talks (flow B is dropped), keeps it for the idle limit
    after it goes quiet, and then B gets it (and A, which lost it, is dropped)."""
    from netplane.ebpf.loader import SNAT_UDP_IDLE, EbpfBackend, instance_for

    assert SNAT_UDP_IDLE == 30  # what the README promises by default
    idle = 4
    make_service(store, keys, "npu", ips=[FAR_BE], port=f"53:{PORT}", udp=True, node_port=30053)
    backend = EbpfBackend(cgroup=str(topo.cgroup), instance=instance_for(topo.cgroup), iface="ext0",
                          node_ip=IPv4Address(NODE_IP), local_cidr=IPv4Network(LOCAL_CIDR), netns=topo.node,
                          overlay_iface="np.1", overlay_ip=IPv4Address(NODE_OVERLAY_IP), snat_ports=(20000, 20000),
                          snat_udp_idle=idle)
    comp = ProxyComponent(store, keys, mode=mode, node="node", backend=backend, resync_interval=30.0)
    with netns.inside(topo.ext):  # two client flows on the other host (sockets stay in its netns)
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def ask(s: socket.socket) -> str | None:
        s.settimeout(1.0)
        s.sendto(b"x", (NODE_IP, 30053))
        try:
            return s.recvfrom(100)[0].decode().strip()
        except TimeoutError:
            return None

    comp.start()
    try:
        assert comp.synced.wait(20)
        assert ask(a) == "be4"
        for _ in range(idle + 2):  # A talks past the limit (B's knock times out in 1 s): the port stays A's
            assert ask(b) is None
            assert ask(a) == "be4"
        quiet_since = time.monotonic()
        while (got := ask(b)) is None:  # B knocks about once a second (its 1 s timeout)
            assert time.monotonic() - quiet_since < idle * 3 + 10, "B never got the port"
        took = time.monotonic() - quiet_since
        assert got == "be4"
        unit = 2**30 / 1e9
        assert (idle - 1) * unit - 0.2 <= took <= idle * unit + 3, took  # after `idle` units of quiet, not before
        assert ask(a) is None  # the port is B's now
    finally:
        a.close()
        b.close()
        comp.stop()
        backend.cleanup()
