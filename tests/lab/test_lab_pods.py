"""Lab with agents: hosts get subnets, stand-in pods get addresses and reach each other,
and `lab down` removes pods too."""

from __future__ import annotations

import json
import os
import subprocess
import time
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
    # h1 learns h2's lease through the watch: ping until the overlay carries it (bounded)
    deadline = time.monotonic() + 20
    while True:
        r = lab.exec("h1", ["ping", "-c1", "-W1", b["ip"]], netns=a["netns"], capture_output=True)
        if r.returncode == 0:
            break
        assert time.monotonic() < deadline, f"pa on h1 never reached pb on h2: {r.stdout!r}"
    st = lab.status()
    assert [h["processes"].get("agent") is not None for h in st["hosts"]] == [True, True]
    pods.remove(lab, "pb")
    assert not os.path.exists(f"/run/netns/{b['netns']}")
    lab.down()
    assert not os.path.exists(f"/run/netns/{a['netns']}")


def _attached_prog_ids(cgroup: str) -> set[int]:
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", cgroup], capture_output=True, text=True, check=True).stdout
    return {int(p["id"]) for p in json.loads(out.strip() or "[]")}


def test_ebpf_lab_down_removes_programs_and_pins(lab_factory: Callable[..., Lab]) -> None:
    from pathlib import Path

    from netplane.ebpf.loader import instance_for, pin_dir

    lab = lab_factory(2, agents=True, proxy="ebpf")
    pins = [pin_dir(instance_for(lab.cgroup(h.name))) for h in lab.topology.hosts]
    deadline = time.monotonic() + 30
    while not all(p.is_dir() and any(p.iterdir()) for p in pins) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(p.is_dir() for p in pins), "the agents' eBPF proxies never pinned their maps"

    # bcc pins the maps while loading, before the programs are attached: wait for the attach
    def attached(host: str) -> str:
        return subprocess.run(["bpftool", "cgroup", "show", str(lab.cgroup(host))], capture_output=True, text=True, check=True).stdout

    while not all("np_connect4" in attached(h.name) for h in lab.topology.hosts) and time.monotonic() < deadline:
        time.sleep(0.2)
    for h in lab.topology.hosts:
        assert "np_connect4" in attached(h.name), f"{h.name}: the agent's eBPF programs were never attached"
    # exactly this lab's programs (other labs of a concurrent run may hold their own)
    ours = set().union(*(_attached_prog_ids(str(lab.cgroup(h.name))) for h in lab.topology.hosts))
    assert len(ours) >= 4 * len(lab.topology.hosts), ours  # connect4, sendmsg4, recvmsg4, getpeername4
    lab.down()
    assert not any(p.exists() for p in pins)
    assert not any(Path(lab.cgroup(h.name)).exists() for h in lab.topology.hosts)
    progs = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout
    loaded = {p["id"] for p in json.loads(progs)}
    assert not ours & loaded, f"programs of the lab still loaded after down: {sorted(ours & loaded)}"
