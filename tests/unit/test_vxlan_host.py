"""Underlay choice, iptables rendering and VXLAN decoding for `net trace` (pure parts)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from netplane.agent.underlay import choose
from netplane.errors import ConfigError
from netplane.vxlan.hostsetup import render_rules
from netplane.vxlan.netlink import LinkInfo
from netplane.vxlan.trace import _decode


def link(i: int, name: str, *addrs: str, master: int | None = None) -> LinkInfo:
    return LinkInfo(i, name, None, "02:00:00:00:00:0" + str(i), 1500, True, tuple(IPv4Interface(a) for a in addrs), master=master)


LINKS = [link(1, "lo", "127.0.0.1/8"), link(2, "eth0", "10.0.2.15/24"), link(3, "eth1", "192.168.56.11/24"),
         link(4, "np0", "10.244.1.1/24"), link(5, "np.1", "10.244.1.0/32")]


def test_iface_flag_wins() -> None:
    c = choose(LINKS, iface="eth1", public_ip=None, default_route_ifindex=2)
    assert (c.underlay.ifname, c.underlay.public_ip, c.reason) == ("eth1", IPv4Address("192.168.56.11"), "--iface eth1")
    assert len(c.candidates) == 2  # our own devices and lo are not candidates


def test_public_ip_selects_its_interface() -> None:
    c = choose(LINKS, iface=None, public_ip=IPv4Address("192.168.56.11"), default_route_ifindex=2)
    assert c.underlay.ifname == "eth1" and "--public-ip" in c.reason


def test_several_candidates_pick_the_default_route_and_say_why() -> None:
    c = choose(LINKS, iface=None, public_ip=None, default_route_ifindex=2)
    assert c.underlay.ifname == "eth0" and "default route" in c.reason and "--iface" in c.reason


def test_several_candidates_without_default_route_refuse_to_guess() -> None:
    with pytest.raises(ConfigError, match="choose one with --iface"):
        choose(LINKS, iface=None, public_ip=None, default_route_ifindex=None)


def test_single_candidate_and_errors() -> None:
    c = choose([LINKS[0], LINKS[1]], iface=None, public_ip=None, default_route_ifindex=None)
    assert c.underlay.ifname == "eth0" and c.reason == "the only interface with an IPv4 address"
    with pytest.raises(ConfigError, match="no such interface"):
        choose(LINKS, iface="eth9", public_ip=None, default_route_ifindex=None)
    with pytest.raises(ConfigError, match="not an address of --iface eth0"):
        choose(LINKS, iface="eth0", public_ip=IPv4Address("192.168.56.11"), default_route_ifindex=None)
    with pytest.raises(ConfigError, match="not an address of any interface"):
        choose(LINKS, iface=None, public_ip=IPv4Address("1.2.3.4"), default_route_ifindex=None)


def test_rules_accept_forwarding_and_masquerade_only_leaving_traffic() -> None:
    r = render_rules(IPv4Network("10.244.0.0/16"), masquerade=True)
    assert ":NETPLANE-FORWARD - [0:0]" in r and "-A NETPLANE-FORWARD -s 10.244.0.0/16" in r
    assert "-A NETPLANE-POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN" in r
    assert "MASQUERADE" in r
    assert "MASQUERADE" not in render_rules(IPv4Network("10.244.0.0/16"), masquerade=False)


@pytest.mark.parametrize("port", [4789, 8472])
def test_trace_decodes_vxlan_on_any_port(port: int) -> None:
    inner = Ether() / IP(src="10.244.1.2", dst="10.244.2.2") / ICMP(type=8, id=4242, seq=1)
    frame = Ether() / IP(src="192.168.0.11", dst="192.168.0.12") / UDP(sport=5555, dport=port) / VXLAN(vni=7) / inner
    hop = _decode(bytes(frame), port, 4242, 0.0)
    assert hop is not None
    assert (hop.direction, hop.vni, hop.dport, hop.outer_dst, hop.inner_dst) == ("request", 7, port, "192.168.0.12", "10.244.2.2")
    assert _decode(bytes(frame), port, 4243, 0.0) is None  # someone else's ping
    assert _decode(bytes(frame), port + 1, 4242, 0.0) is None
