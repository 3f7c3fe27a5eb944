"""hostPort UDP flows across a change of mappings, on a real kernel: conntrack only shows a flow's
first packet to the nat rules, so `HostPorts.sync` deletes the entries a change left stale.

Test namespaces only: a "node" with a pod bridge (two pods on it, each a UDP server answering
its own name) and a veth to a "client" that keeps one socket, so every datagram is the same
flow (one source port). Each test runs with the flush and, as a control, without it (conntrack
"not installed"), which shows the stale entry it removes.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from types import SimpleNamespace

import pytest

from netplane import netns
from orchestrator.node import hostports
from orchestrator.node.hostports import HostPorts, PortMapping

POD_NET = IPv4Network("10.250.1.0/24")
GW = "10.250.1.1"  # the node's address on the pod bridge
PODS = {"pod1": "10.250.1.2", "pod2": "10.250.1.3"}
NODE_IP = "10.250.2.1"  # the node's address facing the client
CLIENT_IP = "10.250.2.2"
BRIDGE = "nptbr0"
HOST_PORT, CONTAINER_PORT, CLIENT_PORT = 30053, 5300, 40053


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@dataclass
class Topo:
    node: str
    client_ns: str
    hostports: HostPorts
    client: socket.socket
    flushing: bool

    def ask(self, timeout: float = 2.0) -> str:
        """One datagram on the client's flow: the answering pod's name, or how it failed
        (nothing listens on the node itself, so an un-NATed datagram is refused)."""
        self.client.settimeout(timeout)
        self.client.send(b"who")
        try:
            return self.client.recv(100).decode()
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"

    def entries(self) -> list[str]:
        """The node's conntrack entries of the client's flow, each as where it is DNATed to
        (the reply's source): NODE_IP when it is not NATed."""
        p = subprocess.run(["ip", "netns", "exec", self.node, "conntrack", "-L", "-p", "udp",
                            "--orig-port-dst", str(HOST_PORT), "--orig-port-src", str(CLIENT_PORT)],
                           capture_output=True, text=True, check=True)
        out = []
        for line in p.stdout.splitlines():
            srcs = [w.split("=", 1)[1] for w in line.split() if w.startswith("src=")]
            assert len(srcs) == 2, line
            out.append(srcs[1])
        return out

    def mapping(self, pod: str, host_ip: str = "") -> PortMapping:
        return PortMapping("UDP", HOST_PORT, host_ip, PODS[pod], CONTAINER_PORT, f"t/{pod}")


def _serve(sock: socket.socket, name: str, stop: threading.Event) -> None:
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            _data, peer = sock.recvfrom(100)
        except TimeoutError:
            continue
        except OSError:
            return
        sock.sendto(name.encode(), peer)


@pytest.fixture(params=[True, False], ids=["flush", "no-conntrack"])
def topo(request: pytest.FixtureRequest, make_netns: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Topo]:
    assert shutil.which("conntrack") or shutil.which("conntrack", path="/usr/sbin:/sbin"), \
        "conntrack is not installed (scripts/install.sh installs it)"
    node, client_ns = make_netns("hpnode"), make_netns("hpcli")
    sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "-n", node, "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "-n", node, "addr", "add", f"{GW}/24", "dev", BRIDGE)
    sh("ip", "-n", node, "link", "set", BRIDGE, "up")
    pod_ns = {}
    for i, (pod, ip) in enumerate(PODS.items()):
        ns = pod_ns[pod] = make_netns(f"hp{pod}")
        sh("ip", "-n", node, "link", "add", f"nptvp{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", node, "link", "set", f"nptvp{i}", "master", BRIDGE, "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", GW)
    sh("ip", "-n", node, "link", "add", "nptvc", "type", "veth", "peer", "name", "eth0", "netns", client_ns)
    sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "nptvc")
    sh("ip", "-n", node, "link", "set", "nptvc", "up")
    sh("ip", "-n", client_ns, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
    sh("ip", "-n", client_ns, "link", "set", "eth0", "up")
    # A real node has nat rules before any hostPort (the overlay's masquerade, kube-proxy's), so
    # conntrack follows every flow from the start; this one stands for them.
    sh("ip", "netns", "exec", node, "iptables", "-w", "5", "-t", "nat", "-A", "POSTROUTING",
       "-s", str(POD_NET), "!", "-d", str(POD_NET), "-j", "MASQUERADE")
    if not request.param:  # the control: what the same changes do without the flush
        monkeypatch.setattr(hostports, "shutil", SimpleNamespace(which=lambda *_a, **_k: None))

    stop = threading.Event()
    servers, threads = [], []
    for pod, ip in PODS.items():
        with netns.inside(pod_ns[pod]):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, CONTAINER_PORT))
        servers.append(s)
        threads.append(threading.Thread(target=_serve, args=(s, pod, stop), daemon=True))
    with netns.inside(client_ns):
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind((CLIENT_IP, CLIENT_PORT))
    client.connect((NODE_IP, HOST_PORT))  # connected: an ICMP port unreachable is ECONNREFUSED
    t = Topo(node, client_ns, HostPorts(POD_NET, BRIDGE, netns_name=node), client, request.param)
    try:
        for th in threads:
            th.start()
        yield t
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=2)
        for s in [client, *servers]:
            s.close()
        # make_netns deletes the namespaces, and with them their links, rules and conntrack tables


def test_a_flow_that_started_before_the_mapping_reaches_the_pod_once_it_is_added(topo: Topo) -> None:
    assert topo.ask() == "refused"  # no mapping yet: the node itself, where nothing listens
    assert topo.entries() == [NODE_IP]  # ...and conntrack remembers the flow un-NATed
    assert topo.hostports.sync([topo.mapping("pod1")])
    if not topo.flushing:  # the entry outlives the new rule: the flow stays blackholed
        assert topo.ask() == "refused" and topo.entries() == [NODE_IP]
        return
    assert topo.ask() == "pod1"
    assert topo.entries() == [PODS["pod1"]]
    # and once the mapping is gone, the flow no longer reaches the pod
    assert topo.hostports.sync([])
    assert topo.entries() == []
    assert topo.ask() == "refused"


def test_a_flow_follows_its_mapping_to_a_new_pod_and_stops_when_it_is_removed(topo: Topo) -> None:
    """With a hostIP, so the flushes are narrowed to it (`--orig-dst`)."""
    assert topo.hostports.sync([topo.mapping("pod1", host_ip=NODE_IP)])
    assert topo.ask() == "pod1"
    assert topo.entries() == [PODS["pod1"]]
    assert topo.hostports.sync([topo.mapping("pod2", host_ip=NODE_IP)])  # the pod replaced, a new IP
    if not topo.flushing:  # the old pod keeps the flow until its entry expires
        assert topo.ask() == "pod1" and topo.entries() == [PODS["pod1"]]
        return
    assert topo.ask() == "pod2"
    assert topo.entries() == [PODS["pod2"]]
    # A restarted agent (it knows nothing of the previous run) whose first sync removes the
    # mapping: what the chain held is read back, so the flow DNATed to pod2 is deleted too.
    restarted = HostPorts(POD_NET, BRIDGE, netns_name=topo.node)
    assert restarted.sync([])
    assert topo.entries() == []
    assert topo.ask() == "refused"
