"""Pod network attachment on a real kernel: a host namespace with the overlay's pod bridge, pod
namespaces (named ones and one held by a process, as Docker's are), veths, addresses, routes."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from netplane import netns
from netplane.errors import KernelError
from netplane.vxlan.desired import BRIDGE, BridgeSpec, gateway
from netplane.vxlan.netlink import Netlink
from netplane.vxlan.reconcile import Reconciler
from orchestrator.node.ipam import HostLocalIPAM
from orchestrator.node.podnet import PodNetwork, host_veth_name
from tests.waiting import wait_for

SUBNET = IPv4Network("10.244.5.0/24")
GW = IPv4Address("10.244.5.1")
MTU = 1400  # not a default anywhere, so a link that kept its default shows


@dataclass
class Host:
    ns: str
    state: Path

    def network(self, *, in_current_netns: bool = False) -> PodNetwork:
        ipam = HostLocalIPAM(SUBNET, self.state)
        return PodNetwork(bridge=BRIDGE, subnet=SUBNET, gateway=GW, mtu=MTU, ipam=ipam,
                          host_netns=None if in_current_netns else self.ns)


@pytest.fixture
def host(make_netns: Callable[[str], str], tmp_path: Path) -> Host:
    """A host namespace with the pod bridge exactly as the overlay makes it (np0, .1/24)."""
    ns = make_netns("host")
    with Netlink(netns_name=ns) as nl:
        Reconciler(nl).ensure_bridge(BridgeSpec(name=BRIDGE, address=gateway(SUBNET), mtu=MTU))
        br = nl.link(BRIDGE)
    assert br is not None and br.up and br.addresses == (IPv4Interface(f"{GW}/24"),)
    return Host(ns, tmp_path / "ipam")


@pytest.fixture
def proc_netns() -> Iterator[Callable[[], str]]:
    """Network namespaces held only by a process (/proc/<pid>/ns/net), like a Docker sandbox's;
    each holder is killed at teardown, which frees its namespace."""
    procs: list[subprocess.Popen[bytes]] = []

    def make() -> str:
        p = subprocess.Popen(["unshare", "--net", "sleep", "600"])
        procs.append(p)
        path = f"/proc/{p.pid}/ns/net"
        for _ in range(200):  # until unshare has exec'd sleep in the new namespace
            if Path(path).exists() and Path(path).resolve() != Path("/proc/self/ns/net").resolve() \
                    and Path(f"/proc/{p.pid}/comm").read_text().strip() == "sleep":
                return path
            subprocess.run(["sleep", "0.01"], check=True)
        raise AssertionError("unshare --net did not start")

    yield make
    for p in procs:
        p.kill()
        p.wait()


# ---------------------------------------------------------------- observing the kernel
def _ipr(ns: str) -> IPRoute:
    with netns.inside(ns):
        return IPRoute()


def link(ns: str, name: str) -> Any:
    """The link message, or None."""
    ipr = _ipr(ns)
    try:
        found = ipr.link_lookup(ifname=name)
        return ipr.link("get", index=found[0])[0] if found else None
    finally:
        ipr.close()


def addrs(ns: str, name: str) -> set[IPv4Interface]:
    ipr = _ipr(ns)
    try:
        idx = ipr.link_lookup(ifname=name)[0]
        return {IPv4Interface(f"{m.get_attr('IFA_LOCAL')}/{m['prefixlen']}") for m in ipr.get_addr(family=2, index=idx)}
    finally:
        ipr.close()


def default_route(ns: str) -> tuple[str | None, str | None] | None:
    """(gateway, device) of the IPv4 default route."""
    ipr = _ipr(ns)
    try:
        for m in ipr.route("dump", family=2, table=254):
            if m["dst_len"] == 0:
                oif = m.get_attr("RTA_OIF")
                return m.get_attr("RTA_GATEWAY"), ipr.link("get", index=oif)[0].get_attr("IFLA_IFNAME")
        return None
    finally:
        ipr.close()


def hairpin(ns: str, name: str) -> bool:
    ipr = _ipr(ns)
    try:
        idx = ipr.link_lookup(ifname=name)[0]
        return any(m["index"] == idx and m.get_nested("IFLA_PROTINFO", "IFLA_BRPORT_MODE") == 1 for m in ipr.brport("dump"))
    finally:
        ipr.close()


def up(m: Any) -> bool:
    return bool(m["flags"] & 1)


def tcp_reaches(src_ns: str, dst_ns: str, dst: IPv4Address) -> bool:
    with netns.inside(dst_ns):
        srv = socket.socket()
    with srv:
        srv.bind((str(dst), 0))
        srv.listen()
        srv.settimeout(3)
        with netns.inside(src_ns):
            cli = socket.socket()
        with cli:
            cli.settimeout(3)
            try:
                cli.connect((str(dst), srv.getsockname()[1]))
                conn, _ = srv.accept()
            except OSError:
                return False
            with conn:
                cli.sendall(b"ping")
                return bool(conn.recv(4) == b"ping")


def assert_attached(h: Host, pod: str, owner: str, ip: IPv4Address) -> None:
    eth0 = link(pod, "eth0")
    assert eth0 is not None and up(eth0) and eth0.get_attr("IFLA_MTU") == MTU
    assert addrs(pod, "eth0") == {IPv4Interface(f"{ip}/24")}
    assert default_route(pod) == (str(GW), "eth0")
    lo = link(pod, "lo")
    assert lo is not None and up(lo)
    hv = link(h.ns, host_veth_name(owner))
    br = link(h.ns, BRIDGE)
    assert hv is not None and br is not None
    assert up(hv) and hv.get_attr("IFLA_MTU") == MTU and hv.get_attr("IFLA_MASTER") == br["index"]
    assert hv.get_attr("IFLA_IFALIAS") == owner
    assert hairpin(h.ns, host_veth_name(owner))
    # the pair: each end names the other
    assert hv.get_attr("IFLA_LINK") == eth0["index"] and eth0.get_attr("IFLA_LINK") == hv["index"]


# ---------------------------------------------------------------- tests
def test_attach_plumbs_pod_and_host_and_pods_talk(host: Host, make_netns: Callable[[str], str],
                                                   proc_netns: Callable[[], str]) -> None:
    net = host.network()
    a, b = make_netns("pa"), proc_netns()
    ip_a, ip_b = net.attach("ns/a", a), net.attach("ns/b", b)
    assert (ip_a, ip_b) == (IPv4Address("10.244.5.2"), IPv4Address("10.244.5.3"))
    assert host_veth_name("ns/a").startswith("npp") and len(host_veth_name("ns/a")) <= 15
    assert_attached(host, a, "ns/a", ip_a)
    assert_attached(host, b, "ns/b", ip_b)
    assert net.attached() == {"ns/a": ip_a, "ns/b": ip_b}
    # across the bridge, both ways, and each pod reaches its gateway (the host)
    assert tcp_reaches(a, b, ip_b) and tcp_reaches(b, a, ip_a)
    assert tcp_reaches(a, host.ns, GW)


def test_attach_is_idempotent(host: Host, make_netns: Callable[[str], str]) -> None:
    net = host.network()
    pod = make_netns("p")
    ip = net.attach("p", pod)
    before = (link(host.ns, host_veth_name("p"))["index"], link(pod, "eth0")["index"])
    assert net.attach("p", pod) == ip
    assert net.attach("p", f"/run/netns/{pod}") == ip  # a name or its path, the same namespace
    assert (link(host.ns, host_veth_name("p"))["index"], link(pod, "eth0")["index"]) == before
    assert net.ipam.allocations() == {ip: "p"}
    assert_attached(host, pod, "p", ip)


@pytest.mark.parametrize(
    "breakage",
    [
        "host veth down", "host veth off the bridge", "host veth MTU", "hairpin off", "alias",
        "eth0 down", "eth0 MTU", "eth0 address gone", "eth0 stray address", "default route gone",
        "default route elsewhere", "default route on another device", "lo down",
    ],
)
def test_re_attach_repairs_a_missing_piece(host: Host, make_netns: Callable[[str], str], breakage: str) -> None:
    net = host.network()
    pod = make_netns("p")
    ip = net.attach("p", pod)
    hv = host_veth_name("p")
    h, p = _ipr(host.ns), _ipr(pod)
    try:
        hidx, eidx = h.link_lookup(ifname=hv)[0], p.link_lookup(ifname="eth0")[0]
        if breakage == "host veth down":
            h.link("set", index=hidx, state="down")
        elif breakage == "host veth off the bridge":
            h.link("set", index=hidx, master=0)
        elif breakage == "host veth MTU":
            h.link("set", index=hidx, mtu=1300)
        elif breakage == "hairpin off":
            h.brport("set", index=hidx, mode=0)
        elif breakage == "alias":
            h.link("set", index=hidx, ifalias="p ")
            # an alias naming another pod would be refused; a trailing-space one is not "p"
        elif breakage == "eth0 down":
            p.link("set", index=eidx, state="down")
        elif breakage == "eth0 MTU":
            p.link("set", index=eidx, mtu=1300)
        elif breakage == "eth0 address gone":
            p.addr("del", index=eidx, address=str(ip), prefixlen=24)
        elif breakage == "eth0 stray address":
            p.addr("add", index=eidx, address="10.244.5.200", prefixlen=24)
        elif breakage == "default route gone":
            p.route("del", dst="0.0.0.0/0", gateway=str(GW))
        elif breakage == "default route elsewhere":
            p.route("replace", dst="0.0.0.0/0", gateway="10.244.5.77", oif=eidx)
        elif breakage == "default route on another device":
            p.link("add", ifname="x0", kind="veth", peer="x1")
            x0 = p.link_lookup(ifname="x0")[0]
            p.link("set", index=x0, state="up")
            p.link("set", index=p.link_lookup(ifname="x1")[0], state="up")
            p.route("replace", dst="0.0.0.0/0", gateway=str(GW), oif=x0, flags=4)  # onlink
        elif breakage == "lo down":
            p.link("set", index=p.link_lookup(ifname="lo")[0], state="down")
    finally:
        h.close()
        p.close()
    if breakage == "alias":
        with pytest.raises(KernelError, match="is not pod p's veth"):
            net.attach("p", pod)
        return
    assert net.attach("p", pod) == ip
    assert_attached(host, pod, "p", ip)


def test_detach_removes_the_pair_and_frees_the_address(host: Host, make_netns: Callable[[str], str]) -> None:
    net = host.network()
    pod, other = make_netns("p"), make_netns("o")
    net.attach("p", pod)
    ip_o = net.attach("o", other)
    net.detach("p")
    assert link(host.ns, host_veth_name("p")) is None and link(pod, "eth0") is None
    assert net.ipam.allocations() == {ip_o: "o"}
    assert net.attached() == {"o": ip_o}
    net.detach("p")  # idempotent
    assert_attached(host, other, "o", ip_o)  # the neighbour is untouched
    # a pod whose namespace is already gone (its veth went with it) is still released
    gone = make_netns("g")
    ip_gone = net.attach("gone", gone)
    subprocess.run(["ip", "netns", "del", gone], check=True)
    # the kernel destroys a namespace (and its veth ends) asynchronously
    wait_for(lambda: link(host.ns, host_veth_name("gone")) is None, 5, "the veth of a deleted namespace to go")
    assert net.attached() == {"o": ip_o}
    assert net.ipam.owner_of(ip_gone) == "gone"
    net.detach("gone")
    assert net.ipam.owner_of(ip_gone) is None


def test_sweep_removes_only_unkept_attachments(host: Host, make_netns: Callable[[str], str]) -> None:
    net = host.network()
    pods = {o: make_netns(o) for o in ("k", "x", "y")}
    ips = {o: net.attach(o, ns) for o, ns in pods.items()}
    # a half-done attach from before a crash: the address record, no veth
    half = net.ipam.allocate("half")
    # a stand-in pod of the lab (netplane.podnet's npv veth) on the same bridge is not ours
    with Netlink(netns_name=host.ns) as nl:
        nl.add_veth("npvlabpod0000", "npvlabpeer000")
        nl.set_link("npvlabpod0000", master=nl.index(BRIDGE))
    assert net.sweep({"k"}) == ["half", "x", "y"]
    assert net.attached() == {"k": ips["k"]}
    assert net.ipam.allocations() == {ips["k"]: "k"}
    assert half not in net.ipam.allocations()
    for o in ("x", "y"):
        assert link(host.ns, host_veth_name(o)) is None and link(pods[o], "eth0") is None
    assert link(host.ns, "npvlabpod0000") is not None
    assert_attached(host, pods["k"], "k", ips["k"])
    assert net.sweep({"k"}) == []


def test_a_new_instance_adopts_what_an_earlier_one_attached(host: Host, make_netns: Callable[[str], str],
                                                            proc_netns: Callable[[], str]) -> None:
    first = host.network()
    a, b = make_netns("a"), proc_netns()
    ip_a, ip_b = first.attach("a", a), first.attach("b", b)
    # "the agent restarted": nothing in memory, the same state dir and kernel; this one runs
    # inside the host namespace like the agent does (host side = the current netns)
    with netns.inside(host.ns):
        second = host.network(in_current_netns=True)
        assert second.attached() == {"a": ip_a, "b": ip_b}
        assert second.attach("b", b) == ip_b
        assert second.attach("c", make_netns("c")) not in (ip_a, ip_b)
        second.detach("a")
    assert link(host.ns, host_veth_name("a")) is None
    assert set(first.attached()) == {"b", "c"}


def test_a_recreated_sandbox_gets_a_new_pair_and_keeps_its_address(host: Host, make_netns: Callable[[str], str]) -> None:
    net = host.network()
    old, new = make_netns("old"), make_netns("new")
    ip = net.attach("p", old)
    assert net.attach("p", new) == ip
    assert link(old, "eth0") is None
    assert_attached(host, new, "p", ip)


def test_failed_attach_leaves_nothing_and_says_what_failed(host: Host, make_netns: Callable[[str], str],
                                                           tmp_path: Path) -> None:
    net = host.network()
    with pytest.raises(KernelError, match=r"attach pod p \(/run/netns/npt-nope\): network namespace /run/netns/npt-nope: No such file"):
        net.attach("p", "npt-nope")
    assert net.ipam.allocations() == {}
    # the pod already has an eth0 of its own
    pod = make_netns("p")
    subprocess.run(["ip", "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], check=True)
    with pytest.raises(KernelError, match="already has an eth0 that is not pod p's veth"):
        net.attach("p", pod)
    assert net.ipam.allocations() == {} and link(host.ns, host_veth_name("p")) is None
    # no pod bridge on this host (overlay not up)
    bare = make_netns("bare")
    nobr = PodNetwork(bridge=BRIDGE, subnet=SUBNET, gateway=GW, mtu=MTU,
                      ipam=HostLocalIPAM(SUBNET, tmp_path / "other"), host_netns=bare)
    with pytest.raises(KernelError, match="attach pod p .*: the pod bridge np0 does not exist on this host"):
        nobr.attach("p", make_netns("q"))
    assert nobr.ipam.allocations() == {} and link(bare, host_veth_name("p")) is None
