"""Which subnet to ask for: ours by PublicIP, then the remembered one, then random free ones."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

from netplane.subnet.alloc import plan
from netplane.subnet.config import parse_config
from netplane.subnet.lease import Lease, LeaseAttrs

CFG = parse_config({"Network": "10.244.0.0/24", "SubnetLen": 28})  # 15 subnets: .16 .. .240
ME = IPv4Address("192.168.0.11")


def lease(net: str, ip: str, mac: str = "aa:bb:cc:00:00:01") -> Lease:
    return Lease(IPv4Network(net), LeaseAttrs(public_ip=IPv4Address(ip), vtep_mac=mac, vni=1))


def test_lease_with_our_public_ip_is_reused_first() -> None:
    ls = [lease("10.244.0.32/28", "192.168.0.12"), lease("10.244.0.64/28", str(ME))]
    p = plan(CFG, ls, taken=[l.subnet for l in ls], public_ip=ME, remembered=IPv4Network("10.244.0.16/28"), rng=random.Random(1))
    assert [l.subnet for l in p.reuse] == [IPv4Network("10.244.0.64/28")]


def test_several_leases_with_our_ip_prefer_the_remembered_one() -> None:
    ls = [lease("10.244.0.32/28", str(ME)), lease("10.244.0.64/28", str(ME))]
    p = plan(CFG, ls, taken=[l.subnet for l in ls], public_ip=ME, remembered=IPv4Network("10.244.0.64/28"), rng=random.Random(1))
    assert [str(l.subnet) for l in p.reuse] == ["10.244.0.64/28", "10.244.0.32/28"]


def test_remembered_subnet_first_then_random_free_ones() -> None:
    ls = [lease("10.244.0.32/28", "192.168.0.12")]
    p = plan(CFG, ls, taken=[l.subnet for l in ls] + [IPv4Network("10.244.0.48/28")], public_ip=ME,
             remembered=IPv4Network("10.244.0.80/28"), rng=random.Random(3))
    assert p.reuse == ()
    assert p.candidates[0] == IPv4Network("10.244.0.80/28")
    assert IPv4Network("10.244.0.32/28") not in p.candidates
    assert IPv4Network("10.244.0.48/28") not in p.candidates  # malformed value, key still taken
    assert len(p.candidates) == 15 - 2
    assert len(set(p.candidates)) == len(p.candidates)


def test_taken_remembered_subnet_is_not_first() -> None:
    ls = [lease("10.244.0.80/28", "192.168.0.12")]
    p = plan(CFG, ls, taken=[l.subnet for l in ls], public_ip=ME, remembered=IPv4Network("10.244.0.80/28"), rng=random.Random(3))
    assert IPv4Network("10.244.0.80/28") not in p.candidates


def test_random_order_differs_between_hosts() -> None:
    a = plan(CFG, [], taken=[], public_ip=ME, remembered=None, rng=random.Random(1)).candidates
    b = plan(CFG, [], taken=[], public_ip=ME, remembered=None, rng=random.Random(2)).candidates
    assert sorted(a) == sorted(b) == CFG.subnets()
    assert a != b


def test_exhausted_range_has_no_candidates() -> None:
    taken = CFG.subnets()
    assert plan(CFG, [], taken=taken, public_ip=ME, remembered=None, rng=random.Random(1)).candidates == ()


def test_keys_from_an_older_config_block_overlapping_subnets() -> None:
    p = plan(CFG, [], taken=[IPv4Network("10.244.0.0/26")], public_ip=ME, remembered=None, rng=random.Random(1))
    assert not any(c.overlaps(IPv4Network("10.244.0.0/26")) for c in p.candidates)
    assert len(p.candidates) == 12


def test_leases_outside_the_range_are_not_reused() -> None:
    ls = [lease("10.99.0.0/28", str(ME))]
    p = plan(CFG, ls, taken=[l.subnet for l in ls], public_ip=ME, remembered=None, rng=random.Random(1))
    assert p.reuse == ()
