"""eBPF backend specifics: pinned maps survive the agent, programs stay attached after close,
a restarted backend writes nothing when the maps are right, map contents match the plan (no
stale backends), refusal to attach to the machine's root cgroup, cleanup detaches and unpins."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address as IP
from pathlib import Path

import pytest

from netplane.cgroups import cgroup2_root
from netplane.ebpf import sys as bsys
from netplane.ebpf.loader import EbpfBackend, dump_pinned, instance_for, pin_dir
from netplane.ebpf.mapops import MapOps
from netplane.errors import ConfigError
from netplane.proxy.desired import Backend, LbEntry, LbKey, ProxyState
from netplane.proxy.dump import frontend_names

CG_ROOT = cgroup2_root()
PROGS = {"cgroup_inet4_connect", "cgroup_udp4_sendmsg", "cgroup_udp4_recvmsg", "cgroup_inet4_getpeername"}


@pytest.fixture
def cgroup() -> Iterator[Path]:
    cg = CG_ROOT / f"npt-ebpf-{uuid.uuid4().hex[:6]}"
    cg.mkdir()
    try:
        yield cg
    finally:
        from netplane.ebpf.loader import cleanup

        cleanup(cgroup=str(cg), instance=instance_for(cg))
        cg.rmdir()


def attached(cg: Path) -> set[str]:
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", str(cg)], capture_output=True, text=True, check=True).stdout
    return {p["attach_type"] for p in json.loads(out.strip() or "[]")}


def entry(name: str, ips: list[str], vip: str, **kw: object) -> LbEntry:
    return LbEntry(LbKey(name, "http"), IP(vip), 80, "TCP", tuple(Backend(IP(i), 8080) for i in ips), **kw)  # type: ignore[arg-type]


def st(*es: LbEntry) -> ProxyState:
    return ProxyState({e.key: e for e in es})


def test_pins_attach_restart_and_cleanup(cgroup: Path) -> None:
    inst = instance_for(cgroup)
    assert inst == cgroup.name
    b = EbpfBackend(cgroup=str(cgroup), instance=inst)
    s = st(entry("a", ["10.0.0.1", "10.0.0.2"], "10.96.0.1"), entry("b", [], "10.96.0.2", affinity_timeout=5))
    b.sync(s, full=True)
    pins = pin_dir(inst)
    assert {"lb_services", "lb_backends", "lb_affinity", "lb_revnat"} <= {p.name for p in pins.iterdir()}
    assert attached(cgroup) == PROGS
    b.close()
    assert attached(cgroup) == PROGS  # the agent is gone, the LB is not
    again = EbpfBackend(cgroup=str(cgroup), instance=inst)
    again.sync(s, full=True)
    assert again.last_writes == 0  # restart: maps already right, nothing rewritten
    assert attached(cgroup) == PROGS  # replaced, not duplicated
    text = dump_pinned(pins, frontend_names(s, None))
    assert "10.96.0.1:80/tcp (a:http) svc_id=" in text and "-> 10.0.0.2:8080" in text
    assert "(no backends: connections are refused)" in text and "affinity=ClientIP(5s)" in text
    only_a = dump_pinned(pins, frontend_names(s, "a"))
    assert "10.96.0.2" not in only_a
    again.cleanup()
    assert attached(cgroup) == set()
    assert not pins.exists()


def test_maps_hold_exactly_the_plan_after_changes(cgroup: Path) -> None:
    b = EbpfBackend(cgroup=str(cgroup), instance=instance_for(cgroup))
    s1 = st(entry("a", ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "10.96.0.1"), entry("b", ["10.0.0.4"], "10.96.0.2"))
    s2 = st(entry("a", ["10.0.0.3"], "10.96.0.1"), entry("c", ["10.0.0.5"], "10.96.0.3"))
    b.sync(s1, full=True)
    b.sync(s2, full=False)
    pins = pin_dir(instance_for(cgroup))
    sfd, bfd = bsys.obj_get(pins / "lb_services"), bsys.obj_get(pins / "lb_backends")
    try:
        kernel = MapOps(sfd, bfd).read()
    finally:
        import os

        os.close(sfd)
        os.close(bfd)
    assert b.current is not None
    assert kernel.heads == b.current.heads and kernel.slots == b.current.slots and kernel.backends == b.current.backends
    assert len(kernel.heads) == 2 and len(kernel.backends) == 2  # nothing stale left behind
    b.cleanup()


def test_refuses_the_machines_root_cgroup() -> None:
    with pytest.raises(ConfigError, match="root cgroup"):
        EbpfBackend(cgroup=str(CG_ROOT), instance="x")
    with pytest.raises(ConfigError, match="not a cgroup v2 directory"):
        EbpfBackend(cgroup="/tmp", instance="x")


def test_cli_dump_names_map_entries_and_cleanup_unpins(cgroup: Path, store, keys) -> None:  # type: ignore[no-untyped-def]
    import sys

    from netplane.proxy import registry
    from netplane.proxy.api import ServiceAPI
    from netplane.proxy.desired import compute
    from netplane.proxy.model import Service, ServicePort

    api = ServiceAPI(store, keys)
    web = api.create(Service(name="web", cluster_ip=IP(0), ports=(ServicePort("http", "TCP", 80, 8080),)),
                     cluster_ip=None, endpoints=(IP("10.0.0.5"), IP("10.0.0.6")))
    b = EbpfBackend(cgroup=str(cgroup), instance=instance_for(cgroup))
    b.sync(compute(*registry.load(store, keys)), full=True)  # what the proxy would program
    b.close()
    base = [sys.executable, "-m", "netplane", "--etcd", store.config.endpoints[0], "--prefix", keys.prefix, "proxy"]
    p = subprocess.run([*base, "dump", "--cgroup", str(cgroup), "web"], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert f"{web.cluster_ip}:80/tcp (default/web:http)" in p.stdout and "-> 10.0.0.6:8080" in p.stdout
    p = subprocess.run([*base, "cleanup", "--mode", "ebpf", "--cgroup", str(cgroup)], capture_output=True, text=True, check=False)
    assert p.returncode == 0 and "unpinned" in p.stdout, p.stderr
    assert attached(cgroup) == set() and not pin_dir(instance_for(cgroup)).exists()
    p = subprocess.run([*base, "cleanup", "--mode", "ebpf", "--cgroup", str(CG_ROOT)], capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "root cgroup" in p.stderr
