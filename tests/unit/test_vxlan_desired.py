"""Desired overlay state from leases (pure), and the diff the reconciler applies."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from netplane.subnet.config import parse_config
from netplane.subnet.lease import Lease, LeaseAttrs
from netplane.vxlan.desired import Fdb, Neighbor, Route, Underlay, desired
from netplane.vxlan.reconcile import Observed, diff

CFG = parse_config({"Network": "10.244.0.0/16", "Backend": {"VNI": 7, "Port": 8472}})
UL = Underlay("eth0", IPv4Interface("192.168.0.11/24"), 1500)


def lease(net: str, ip: str, mac: str, vni: int = 7) -> Lease:
    return Lease(IPv4Network(net), LeaseAttrs(public_ip=IPv4Address(ip), vtep_mac=mac, vni=vni))


OURS = lease("10.244.1.0/24", "192.168.0.11", "02:00:00:00:00:01")
PEER2 = lease("10.244.2.0/24", "192.168.0.12", "02:00:00:00:00:02")
PEER3 = lease("10.244.3.0/24", "172.16.0.13", "02:00:00:00:00:03")


def test_device_bridge_and_per_peer_entries() -> None:
    d = desired(CFG, UL, OURS, [OURS, PEER2, PEER3])
    assert (d.device.name, d.device.vni, d.device.port, d.device.mtu) == ("np.7", 7, 8472, 1450)
    assert d.device.local == IPv4Address("192.168.0.11")
    assert d.device.address == IPv4Interface("10.244.1.0/32")
    assert (d.bridge.name, d.bridge.address) == ("np0", IPv4Interface("10.244.1.1/24"))
    assert d.neighbors == {Neighbor(IPv4Address("10.244.2.0"), "02:00:00:00:00:02"), Neighbor(IPv4Address("10.244.3.0"), "02:00:00:00:00:03")}
    assert d.fdb == {Fdb("02:00:00:00:00:02", IPv4Address("192.168.0.12")), Fdb("02:00:00:00:00:03", IPv4Address("172.16.0.13"))}
    assert Route(IPv4Network("10.244.2.0/24"), IPv4Address("10.244.2.0"), "np.7", onlink=True) in d.routes
    assert len(d.routes) == 2


def test_foreign_leases_are_ignored() -> None:
    others = [
        lease("10.244.9.0/24", "192.168.0.11", "02:00:00:00:00:09"),  # claims our PublicIP
        lease("10.245.1.0/24", "192.168.0.14", "02:00:00:00:00:04"),  # outside the network
        lease("10.244.5.0/24", "192.168.0.15", "02:00:00:00:00:05", vni=8),  # other VNI
    ]
    assert desired(CFG, UL, OURS, [OURS, *others]).peers == ()


def test_direct_routing_for_peers_on_the_same_segment() -> None:
    cfg = parse_config({"Network": "10.244.0.0/16", "Backend": {"VNI": 7, "DirectRouting": True}})
    d = desired(cfg, UL, OURS, [OURS, PEER2, PEER3])
    by = {p.subnet: p for p in d.peers}
    assert by[PEER2.subnet].direct and not by[PEER3.subnet].direct
    assert Route(PEER2.subnet, IPv4Address("192.168.0.12"), "eth0", onlink=False) in d.routes
    assert d.fdb == {Fdb("02:00:00:00:00:03", IPv4Address("172.16.0.13"))}


def test_diff_adds_missing_and_removes_stale() -> None:
    d = desired(CFG, UL, OURS, [OURS, PEER2])
    stale_route = Route(IPv4Network("10.244.8.0/24"), IPv4Address("10.244.8.0"), "np.7", onlink=True)
    stale_fdb = Fdb("02:00:00:00:00:08", IPv4Address("192.168.0.18"))
    stale_n = Neighbor(IPv4Address("10.244.8.0"), "02:00:00:00:00:08")
    obs = Observed(frozenset({stale_n}), frozenset({stale_fdb}), frozenset({stale_route}))
    ch = diff(d, obs)
    assert set(ch.add_neighbors) == d.neighbors and set(ch.add_fdb) == d.fdb and set(ch.add_routes) == d.routes
    assert ch.del_routes == (stale_route,) and ch.del_fdb == (stale_fdb,) and ch.del_neighbors == (stale_n,)
    in_sync = Observed(d.neighbors, d.fdb, d.routes)
    assert diff(d, in_sync).empty


def test_changed_vtep_mac_replaces_neighbor_and_drops_the_old_fdb_entry() -> None:
    old = Observed(
        frozenset({Neighbor(IPv4Address("10.244.2.0"), "02:00:00:00:00:99")}),
        frozenset({Fdb("02:00:00:00:00:99", IPv4Address("192.168.0.12"))}),
        frozenset({Route(IPv4Network("10.244.2.0/24"), IPv4Address("10.244.2.0"), "np.7", onlink=True)}),
    )
    ch = diff(desired(CFG, UL, OURS, [OURS, PEER2]), old)
    assert ch.add_neighbors == (Neighbor(IPv4Address("10.244.2.0"), "02:00:00:00:00:02"),)
    assert ch.del_neighbors == ()  # replaced in place: deleting by IP would remove the new one
    assert ch.del_fdb == (Fdb("02:00:00:00:00:99", IPv4Address("192.168.0.12")),)
    assert ch.add_routes == () and ch.del_routes == ()


def test_route_switching_to_direct_is_replaced_not_deleted() -> None:
    cfg = parse_config({"Network": "10.244.0.0/16", "Backend": {"VNI": 7, "DirectRouting": True}})
    old = Observed(frozenset(), frozenset(), frozenset({Route(PEER2.subnet, IPv4Address("10.244.2.0"), "np.7", onlink=True)}))
    ch = diff(desired(cfg, UL, OURS, [OURS, PEER2]), old)
    assert ch.add_routes == (Route(PEER2.subnet, IPv4Address("192.168.0.12"), "eth0", onlink=False),)
    assert ch.del_routes == ()


def test_overlapping_keys_keep_the_first_and_many_peers_stay_cheap() -> None:
    import time

    big = lease("10.244.2.0/23", "192.168.0.20", "02:00:00:00:00:20")  # overlaps 10.244.2.0/24 and .3.0/24
    d = desired(CFG, UL, OURS, [OURS, PEER3, PEER2, big])
    assert [str(p.subnet) for p in d.peers] == ["10.244.2.0/23"]
    many = [lease(f"10.244.{2 + i // 250}.{i % 250}/32", f"172.16.{i // 250}.{1 + i % 250}", "02:00:00:00:01:01")
            for i in range(2000)]
    t0 = time.perf_counter()
    d = desired(CFG, UL, OURS, [OURS, *many])
    assert len(d.peers) == 2000
    assert time.perf_counter() - t0 < 1.0
