"""The reconciler and pod plumbing on a real kernel: hosts are namespaces on a test switch."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from _switch import ip, switched_hosts

from netplane import podnet
from netplane.subnet.config import parse_config
from netplane.subnet.lease import Lease, LeaseAttrs
from netplane.vxlan import hostsetup
from netplane.vxlan.desired import Fdb, Neighbor, Route, Underlay, desired, device_spec
from netplane.vxlan.netlink import RTPROT_NETPLANE, Netlink
from netplane.vxlan.reconcile import Reconciler

CFG = parse_config({"Network": "10.244.0.0/16", "Backend": {"VNI": 5, "Port": 4789}})




def underlay(make_netns: Callable[[str], str], n: int) -> list[tuple[str, Underlay]]:
    """A switch namespace with a bridge and n host namespaces with eth0 on it."""
    sw, names = switched_hosts(make_netns, n, net="10.77.0")
    hosts = []
    for i, h in enumerate(names, start=1):
        hosts.append((h, Underlay("eth0", IPv4Interface(f"10.77.0.{10 + i}/24"), 1500)))
        _SWITCHES[h] = sw
    return hosts


_SWITCHES: dict[str, str] = {}


def switch_of(hosts: list[tuple[str, Underlay]]) -> str:
    return _SWITCHES[hosts[0][0]]


def ping(ns: str, dst: IPv4Address | str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W2", str(dst)], capture_output=True, check=False).returncode == 0


def bring_up(hosts: list[tuple[str, Underlay]]) -> tuple[list[Lease], list[Reconciler]]:
    leases, recs = [], []
    for i, (ns, ul) in enumerate(hosts, start=1):
        subnet = IPv4Network(f"10.244.{i}.0/24")
        rec = Reconciler(Netlink(netns_name=ns))
        dev = rec.ensure_device(device_spec(CFG, ul, subnet))
        assert dev.mac
        leases.append(Lease(subnet, LeaseAttrs(public_ip=ul.public_ip, vtep_mac=dev.mac, vni=5)))
        recs.append(rec)
    for (ns, ul), lease, rec in zip(hosts, leases, recs):
        d = desired(CFG, ul, lease, leases)
        rec.ensure_bridge(d.bridge)
        hostsetup.enable_forwarding(ns)
        hostsetup.apply_rules(CFG.network, masquerade=True, netns_name=ns)
        rec.apply(d)
    return leases, recs


def test_pods_on_three_hosts_reach_each_other(make_netns: Callable[[str], str]) -> None:
    hosts = underlay(make_netns, 3)
    leases, recs = bring_up(hosts)
    try:
        pods = []
        for (ns, _), lease in zip(hosts, leases):
            pod = make_netns("pod")
            pn = podnet.add_pod_network(pod, host_netns=ns, address=podnet.pod_address(lease.subnet, 1), mtu=1450)
            assert pn.gateway == lease.subnet.network_address + 1
            pods.append(pn)
        for a in pods:
            for b in pods:
                if a is not b:
                    assert ping(a.pod_netns, b.address.ip), f"{a.address} -> {b.address}"
        # idempotent: a second pass changes nothing
        for (ns, ul), lease, rec in zip(hosts, leases, recs):
            assert rec.apply(desired(CFG, ul, lease, leases)).empty
        # kernel state is exactly flannel's: neighbor, fdb, onlink route per peer
        nl = recs[0].nl
        idx = nl.index("np.5")
        assert idx is not None
        link = nl.link("np.5")
        assert link is not None and link.learning is False and link.mtu == 1450 and link.vni == 5
        assert link.addresses == (IPv4Interface("10.244.1.0/32"),)
        assert nl.neighbors(idx) == {Neighbor(l.subnet.network_address, l.vtep_mac) for l in leases[1:]}
        assert nl.fdb(idx) == {Fdb(l.vtep_mac, l.public_ip) for l in leases[1:]}
        # traffic leaving the cluster network is masqueraded: an outside box with no route to
        # 10.244.0.0/16 still answers a pod (it sees the host's underlay address)
        ext = make_netns("ext")
        ip("-n", ext, "link", "add", "eth0", "type", "veth", "peer", "name", "pext", "netns", switch_of(hosts))
        ip("-n", ext, "addr", "add", "10.77.0.100/24", "dev", "eth0")
        ip("-n", ext, "link", "set", "eth0", "up")
        ip("-n", switch_of(hosts), "link", "set", "pext", "master", "br0", "up")
        assert ping(pods[0].pod_netns, "10.77.0.100")
        rules = subprocess.run(["ip", "netns", "exec", hosts[0][0], "iptables-save"], capture_output=True, text=True, check=True).stdout
        assert rules.count("-A FORWARD -j NETPLANE-FORWARD") == 1 and rules.count("-A POSTROUTING -j NETPLANE-POSTROUTING") == 1
        bport = subprocess.run(["ip", "-n", hosts[0][0], "-d", "link", "show", pods[0].host_veth],
                               capture_output=True, text=True, check=True).stdout
        assert "master np0" in bport and "hairpin on" in bport
        # a removed pod network leaves the host's bridge and other pods alone
        podnet.remove_pod_network(pods[2].pod_netns, host_netns=hosts[2][0])
        assert recs[2].nl.index(pods[2].host_veth) is None
        assert ping(pods[0].pod_netns, pods[1].address.ip)
    finally:
        for r in recs:
            r.nl.close()


def test_stale_entries_and_old_vtep_mac_are_removed(make_netns: Callable[[str], str]) -> None:
    hosts = underlay(make_netns, 2)
    leases, recs = bring_up(hosts)
    rec, (_, ul) = recs[0], hosts[0]
    nl = rec.nl
    idx = nl.index("np.5")
    assert idx is not None
    try:
        # leftovers from "before a restart": a departed host's entries on our device
        gone = Route(IPv4Network("10.244.9.0/24"), IPv4Address("10.244.9.0"), "np.5", onlink=True)
        nl.neigh_replace(idx, Neighbor(IPv4Address("10.244.9.0"), "02:00:00:00:09:09"))
        nl.fdb_replace(idx, Fdb("02:00:00:00:09:09", IPv4Address("10.77.0.19")))
        nl.route_replace(gone, oif=idx)
        # and host 2 came back with a new VtepMAC
        peer = leases[1]
        moved = Lease(peer.subnet, LeaseAttrs(public_ip=peer.public_ip, vtep_mac="02:00:00:00:aa:02", vni=5))
        d = desired(CFG, ul, leases[0], [leases[0], moved])
        ch = rec.apply(d)
        assert gone in ch.del_routes
        assert nl.neighbors(idx) == {Neighbor(peer.subnet.network_address, "02:00:00:00:aa:02")}
        assert nl.fdb(idx) == {Fdb("02:00:00:00:aa:02", peer.public_ip)}
        names = {l.index: l.name for l in nl.links()}
        assert nl.routes(names=names, oif=idx, proto=RTPROT_NETPLANE) == d.routes
        # the incremental path (watch events): only the difference to what was last programmed,
        # no kernel dumps — here the peer moves back to its old MAC, then leaves
        back = desired(CFG, ul, leases[0], leases)
        ch = rec.apply(back, previous=d)
        assert ch.del_fdb == (Fdb("02:00:00:00:aa:02", peer.public_ip),) and len(ch.add_fdb) == 1
        assert nl.fdb(idx) == {Fdb(peer.vtep_mac, peer.public_ip)}
        alone = desired(CFG, ul, leases[0], [leases[0]])
        rec.apply(alone, previous=back)
        assert nl.fdb(idx) == set() and nl.neighbors(idx) == set()
        assert nl.routes(names=names, oif=idx, proto=RTPROT_NETPLANE) == set()
    finally:
        for r in recs:
            r.nl.close()


def test_device_is_recreated_on_config_change_and_tx_checksum_can_be_turned_off(make_netns: Callable[[str], str]) -> None:
    (ns, ul), = underlay(make_netns, 1)
    with Netlink(netns_name=ns) as nl:
        rec = Reconciler(nl)
        spec = device_spec(CFG, ul, IPv4Network("10.244.1.0/24"))
        first = rec.ensure_device(spec)
        assert rec.ensure_device(spec).index == first.index  # kept when it matches
        cfg2 = parse_config({"Network": "10.244.0.0/16", "Backend": {"VNI": 5, "Port": 8472}})
        second = rec.ensure_device(device_spec(cfg2, ul, IPv4Network("10.244.2.0/24")))
        assert second.index != first.index and second.port == 8472
        assert second.addresses == (IPv4Interface("10.244.2.0/32"),)
        assert hostsetup.tx_checksum("np.5", ns) is True
        hostsetup.set_tx_checksum("np.5", False, ns)
        assert hostsetup.tx_checksum("np.5", ns) is False


def test_pod_address_rules() -> None:
    net = IPv4Network("10.244.3.0/24")
    assert podnet.pod_address(net, 1) == IPv4Interface("10.244.3.2/24")
    with pytest.raises(Exception, match="does not fit"):
        podnet.pod_address(net, 254)


def test_direct_routing_uses_plain_routes_on_the_shared_segment(make_netns: Callable[[str], str]) -> None:
    cfg = parse_config({"Network": "10.244.0.0/16", "Backend": {"VNI": 5, "DirectRouting": True}})
    hosts = underlay(make_netns, 2)
    leases, recs = [], []
    try:
        for i, (ns, ul) in enumerate(hosts, start=1):
            rec = Reconciler(Netlink(netns_name=ns))
            subnet = IPv4Network(f"10.244.{i}.0/24")
            dev = rec.ensure_device(device_spec(cfg, ul, subnet))
            leases.append(Lease(subnet, LeaseAttrs(public_ip=ul.public_ip, vtep_mac=dev.mac or "", vni=5)))
            recs.append(rec)
        for (ns, ul), lease, rec in zip(hosts, leases, recs):
            d = desired(cfg, ul, lease, leases)
            assert all(p.direct for p in d.peers)
            rec.ensure_bridge(d.bridge)
            hostsetup.enable_forwarding(ns)
            rec.apply(d)
        nl = recs[0].nl
        names = {l.index: l.name for l in nl.links()}
        assert nl.routes(names=names, proto=RTPROT_NETPLANE) == {
            Route(IPv4Network("10.244.2.0/24"), IPv4Address("10.77.0.12"), "eth0", onlink=False)
        }
        idx = nl.index("np.5")
        assert idx is not None and nl.fdb(idx) == set() and nl.neighbors(idx) == set()
        p1, p2 = make_netns("pod"), make_netns("pod")
        podnet.add_pod_network(p1, host_netns=hosts[0][0], address=podnet.pod_address(leases[0].subnet, 1), mtu=1450)
        b = podnet.add_pod_network(p2, host_netns=hosts[1][0], address=podnet.pod_address(leases[1].subnet, 1), mtu=1450)
        assert ping(p1, b.address.ip)
    finally:
        for r in recs:
            r.nl.close()
