"""Lab with agents: hosts get subnets, stand-in pods get addresses and reach each other,
and `lab down` removes pods too."""

from __future__ import annotations

import os
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

from netplane.lab import Lab, pods
from netplane.lab.cluster import host_subnets


def test_pods_across_hosts_and_teardown(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(2, agents=True, proxy="none")
    subnets = host_subnets(lab)
    assert set(subnets) == {"h1", "h2"} and subnets["h1"] != subnets["h2"]
    a = pods.add(lab, "h1", "pa")
    b = pods.add(lab, "h2", "pb")
    assert IPv4Address(a["ip"]) in IPv4Network(subnets["h1"])
    assert IPv4Address(b["ip"]) in IPv4Network(subnets["h2"])
    r = lab.exec("h1", ["ping", "-c1", "-W3", b["ip"]], netns=a["netns"], capture_output=True)
    assert r.returncode == 0, r.stdout
    st = lab.status()
    assert [h["processes"].get("agent") is not None for h in st["hosts"]] == [True, True]
    pods.remove(lab, "pb")
    assert not os.path.exists(f"/run/netns/{b['netns']}")
    lab.down()
    assert not os.path.exists(f"/run/netns/{a['netns']}")
