"""Host-local IPAM: order, idempotence, exhaustion, durability and exclusion across processes."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from orchestrator.node.ipam import HostLocalIPAM, IPAMError, SubnetFullError

NET = IPv4Network("10.244.7.0/24")


def a(last: int, net: IPv4Network = NET) -> IPv4Address:
    return net.network_address + last


def test_order_from_dot2_skipping_gateway_and_reserved(tmp_path: Path) -> None:
    ipam = HostLocalIPAM(NET, tmp_path, reserved=[a(3), IPv4Address("10.9.9.9")])
    assert ipam.gateway == a(1)
    assert [ipam.allocate(o) for o in ("p1", "p2", "p3")] == [a(2), a(4), a(5)]
    assert ipam.allocations() == {a(2): "p1", a(4): "p2", a(5): "p3"}
    assert ipam.owner_of(a(4)) == "p2" and ipam.owner_of("10.244.7.5") == "p3" and ipam.owner_of(a(6)) is None
    # one file per address, holding its owner
    assert (tmp_path / "10.244.7.4").read_text() == "p2\n"


def test_allocate_is_idempotent_per_owner(tmp_path: Path) -> None:
    ipam = HostLocalIPAM(NET, tmp_path)
    first = ipam.allocate("pod-a")
    ipam.allocate("pod-b")
    assert ipam.allocate("pod-a") == first
    assert ipam.ip_of("pod-a") == first and ipam.ip_of("nobody") is None
    assert len(ipam.allocations()) == 2


def test_round_robin_does_not_reuse_a_released_address_at_once(tmp_path: Path) -> None:
    net = IPv4Network("10.1.0.0/29")  # .2 .. .6 allocatable
    ipam = HostLocalIPAM(net, tmp_path)
    assert [ipam.allocate(o) for o in "abc"] == [a(2, net), a(3, net), a(4, net)]
    assert ipam.release("b") is True
    assert ipam.release("b") is False
    assert ipam.allocate("d") == a(5, net)  # not the just-freed .3
    assert ipam.allocate("e") == a(6, net)
    assert ipam.allocate("f") == a(3, net)  # wrapped around
    # the pointer survives a new instance (another agent process)
    ipam.release("a")
    assert HostLocalIPAM(net, tmp_path).allocate("g") == a(2, net)


def test_full_subnet_is_a_clear_error_and_release_makes_room(tmp_path: Path) -> None:
    net = IPv4Network("10.1.0.8/29")
    ipam = HostLocalIPAM(net, tmp_path)
    got = {ipam.allocate(f"p{i}") for i in range(5)}
    assert got == {a(i, net) for i in range(2, 7)}
    with pytest.raises(SubnetFullError, match=r"no free pod address in 10\.1\.0\.8/29: 5 of 5 allocated"):
        ipam.allocate("one-too-many")
    freed = ipam.allocate("p3")  # an existing owner still gets its address
    assert freed in got
    ipam.release("p3")
    assert ipam.allocate("one-too-many") == freed


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IPAMError, match="too small"):
        HostLocalIPAM(IPv4Network("10.1.0.0/31"), tmp_path)
    ipam = HostLocalIPAM(NET, tmp_path)
    for bad in ("", "two\nlines", "x" * 256):
        with pytest.raises(IPAMError, match="invalid pod address owner"):
            ipam.allocate(bad)


def test_never_twice_across_instances_on_the_same_dir(tmp_path: Path) -> None:
    first = HostLocalIPAM(NET, tmp_path)
    held = {first.allocate(f"old{i}"): f"old{i}" for i in range(10)}
    second = HostLocalIPAM(NET, tmp_path)  # "the agent restarted"
    assert second.allocations() == held
    assert second.subnet_change is None
    fresh = [second.allocate(f"new{i}") for i in range(50)]
    assert not set(fresh) & set(held)
    assert second.allocate("old4") == next(ip for ip, o in held.items() if o == "old4")


def test_interrupted_record_is_reclaimed_but_a_written_one_never(tmp_path: Path) -> None:
    """A process killed between creating a record and writing its owner leaves an empty file:
    that address was never returned, so it is taken back; a written record is never."""
    HostLocalIPAM(NET, tmp_path)
    (tmp_path / str(a(2))).touch()
    (tmp_path / str(a(3))).write_text("someone\n")
    ipam = HostLocalIPAM(NET, tmp_path)
    assert ipam.allocations() == {a(3): "someone"}
    assert ipam.allocate("p") == a(2)
    assert ipam.allocate("q") == a(4)
    assert ipam.allocations() == {a(2): "p", a(3): "someone", a(4): "q"}


def test_subnet_change_is_reported_and_owners_move(tmp_path: Path) -> None:
    old = HostLocalIPAM(NET, tmp_path)
    old.allocate("stays")
    old.allocate("moves")
    new_net = IPv4Network("10.244.9.0/24")
    new = HostLocalIPAM(new_net, tmp_path)
    assert new.subnet_change is not None
    assert new.subnet_change.previous == NET and new.subnet_change.current == new_net
    assert new.subnet_change.stale == {a(2): "stays", a(3): "moves"}
    assert new.stale() == {a(2): "stays", a(3): "moves"}
    assert new.ip_of("moves") is None
    moved = new.allocate("moves")
    assert moved == a(2, new_net)
    assert new.allocations() == {a(2): "stays", moved: "moves"}  # the old record went with it
    assert new.release("stays") and new.stale() == {}
    assert HostLocalIPAM(new_net, tmp_path).subnet_change is None  # reported once


_WORKER = textwrap.dedent(
    """
    import sys
    from ipaddress import IPv4Network
    from pathlib import Path
    from orchestrator.node.ipam import HostLocalIPAM
    ipam = HostLocalIPAM(IPv4Network(sys.argv[1]), Path(sys.argv[2]))
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # start together
    for owner in sys.argv[3:]:
        ip = ipam.allocate(owner)
        sys.stdout.write(f"{owner} {ip}\\n"); sys.stdout.flush()
    """
)


def _workers(net: IPv4Network, d: Path, owner_lists: list[list[str]]) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(net), str(d), *owners], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for owners in owner_lists
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    return procs


def _results(p: subprocess.Popen[str]) -> dict[str, IPv4Address]:
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0
    return {o: IPv4Address(ip) for o, ip in (line.split() for line in out.splitlines())}


def test_two_processes_never_share_an_address(tmp_path: Path) -> None:
    net = IPv4Network("10.2.0.0/24")
    procs = _workers(net, tmp_path, [[f"a{i}" for i in range(120)], [f"b{i}" for i in range(120)]])
    ra, rb = (_results(p) for p in procs)
    assert len(set(ra.values()) | set(rb.values())) == 240
    assert HostLocalIPAM(net, tmp_path).allocations() == {ip: o for o, ip in (ra | rb).items()}


def test_two_processes_allocating_for_the_same_owners_agree(tmp_path: Path) -> None:
    """Idempotence holds across processes: each owner ends with one address, the same for both."""
    net = IPv4Network("10.2.0.0/24")
    owners = [f"p{i}" for i in range(120)]
    ra, rb = (_results(p) for p in _workers(net, tmp_path, [owners, owners]))
    assert ra == rb
    table = HostLocalIPAM(net, tmp_path).allocations()
    assert sorted(table.values()) == sorted(owners)


def test_sigkill_mid_allocation_never_loses_or_doubles_an_address(tmp_path: Path) -> None:
    """A worker allocating in a loop is SIGKILLed (almost always inside allocate(): fsyncs
    dominate). Every address it reported stays its owner's, its lock died with it, and a new
    instance never hands any of them out again."""
    net = IPv4Network("10.3.0.0/24")
    (p,) = _workers(net, tmp_path, [[f"k{i}" for i in range(250)]])
    assert p.stdout is not None
    reported: dict[str, IPv4Address] = {}
    for _ in range(40):
        owner, addr = p.stdout.readline().split()
        reported[owner] = IPv4Address(addr)
    time.sleep(0.003)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    for line in p.stdout.read().splitlines():  # reported before the kill landed
        owner, addr = line.split()
        reported[owner] = IPv4Address(addr)
    assert p.returncode == -signal.SIGKILL
    assert len(reported) < 250, "the worker finished before it was killed: nothing was tested"

    with open(tmp_path / "lock") as lock:  # the dead worker's lock died with it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    ipam = HostLocalIPAM(net, tmp_path)
    table = ipam.allocations()
    for owner, ip in reported.items():
        assert table[ip] == owner
    assert len(set(table.values())) == len(table), "an owner holds two addresses"
    # whatever was mid-way is either a complete record (its owner's) or nothing
    assert all(o.startswith("k") for o in table.values())
    fresh = {ipam.allocate(f"n{i}") for i in range(253 - len(table))}
    assert not fresh & set(table)
    with pytest.raises(SubnetFullError):
        ipam.allocate("more")
