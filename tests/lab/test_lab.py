"""`lab up` / `lab down` / `lab exec` against the real kernel and a real etcd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from netplane.lab import Lab, default_topology
from netplane.lab.builder import CGROUP2_ROOT
from netplane.store import EtcdConfig, EtcdStore


def _snapshot(lab: str, state_dir: Path) -> dict[str, object]:
    """Everything lab `lab` could leave behind: its namespaces, root-namespace links, its
    cgroups, processes started from its state directory, its files. (Scoped to the lab so
    that other labs and tests running at the same time do not disturb the comparison.)"""
    netns = sorted(n for n in os.listdir("/run/netns") if n.startswith(f"np-{lab}-")) if os.path.isdir("/run/netns") else []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    link_names = sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines())
    cgdir = CGROUP2_ROOT / "netplane" / lab
    cg = sorted(str(p) for p in [cgdir, *cgdir.rglob("*")] if p.is_dir()) if cgdir.exists() else []
    procs = sorted(p for p in os.listdir("/proc") if p.isdigit() and (str(state_dir) in _cmdline(p) or f"np-{lab}-" in _cmdline(p)))
    files = sorted(str(p) for p in (state_dir / "labs" / lab).rglob("*")) if (state_dir / "labs" / lab).exists() else []
    return {"netns": netns, "links": [n for n in link_names if "np" in n or "veth" in n], "cgroups": cg, "procs": procs, "files": files}


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netplane", *args], capture_output=True, text=True, env=env, check=check, timeout=60)


@pytest.fixture
def cleanup_labs(state_dir: Path):  # type: ignore[no-untyped-def]
    """Tear down whatever lab a CLI test left behind if it failed before its own `down`."""
    yield
    from netplane.lab import list_labs

    for name in list_labs():
        Lab.load(name).down()


def test_up_down_cli_leaves_nothing_behind(state_dir: Path, cleanup_labs: None) -> None:
    env = {**os.environ, "NETPLANE_STATE_DIR": str(state_dir)}
    before = _snapshot("tud", state_dir)
    assert before == {"netns": [], "links": before["links"], "cgroups": [], "procs": [], "files": []}
    t0 = time.monotonic()
    r = _cli("lab", "up", "--name", "tud", "--hosts", "3", "--no-agents", "--underlay", "10.98.7.0/24", "-o", "json", env=env)
    assert time.monotonic() - t0 < 10, "3-host lab must come up in under 10 s"
    st = json.loads(r.stdout)
    assert st["name"] == "tud" and st["etcd"]["healthy"] is True
    assert [(h["name"], h["netns"], h["underlay_ip"]) for h in st["hosts"]] == [
        ("h1", "np-tud-h1", "10.98.7.11"), ("h2", "np-tud-h2", "10.98.7.12"), ("h3", "np-tud-h3", "10.98.7.13")]
    # the CLI finds the lab's etcd through the context file, without flags
    st2 = json.loads(_cli("lab", "status", "-o", "json", env=env).stdout)
    assert st2["etcd"]["healthy"] is True
    with EtcdStore(EtcdConfig(endpoints=(st["etcd"]["endpoint"],))) as s:
        s.put("/hello", "lab")
        assert s.get("/hello").value == b"lab"  # type: ignore[union-attr]
    during = _snapshot("tud", state_dir)
    assert during["netns"] == ["np-tud-h1", "np-tud-h2", "np-tud-h3", "np-tud-sw"]
    assert during["links"] == before["links"], "the lab must not add links to the root namespace"
    assert len(during["cgroups"]) == 4 and len(during["procs"]) == 2  # type: ignore[arg-type]
    r = _cli("lab", "down", "--name", "tud", env=env)
    assert "removed" in r.stdout
    assert _snapshot("tud", state_dir) == before
    assert not (state_dir / "labs" / "tud").exists()
    assert not (state_dir / "context.json").exists()


def test_hosts_reach_each_other_and_etcd(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(3)
    t = lab.topology
    for h in t.hosts:
        for other in t.hosts:
            r = lab.exec(h.name, ["ping", "-c1", "-W2", str(other.underlay_ip)], capture_output=True)
            assert r.returncode == 0, (h.name, other.name, r.stdout)
    code = (f"from netplane.store import *; s=EtcdStore(EtcdConfig(endpoints=('{lab.etcd_endpoint_underlay}',))); "
            "s.put('/from-h2','x'); print(s.get('/from-h2').value.decode())")
    r = lab.exec("h2", [sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "x", r.stderr


def test_exec_runs_in_host_netns_and_cgroup(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(2)
    r = lab.exec("h2", ["sh", "-c", "ip -o -4 addr show dev eth0; cat /proc/self/cgroup; exit 7"], capture_output=True, text=True)
    assert r.returncode == 7
    assert "10.98." in r.stdout and ".12/24" in r.stdout
    assert f"0::/netplane/{lab.name}/h2" in r.stdout


def test_cli_exec_exit_code_and_errors(lab_factory: Callable[..., Lab], state_dir: Path) -> None:
    lab = lab_factory(2)
    env = {**os.environ, "NETPLANE_STATE_DIR": str(state_dir)}
    r = _cli("lab", "exec", "--name", lab.name, "h1", "--", "sh", "-c", "exit 5", env=env, check=False)
    assert r.returncode == 5
    r = _cli("lab", "exec", "--name", lab.name, "h9", "--", "true", env=env, check=False)
    assert r.returncode == 2 and "no host 'h9'" in r.stderr and "Traceback" not in r.stderr
    r = _cli("lab", "down", "--name", "nosuch", env=env, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_two_labs_coexist(lab_factory: Callable[..., Lab]) -> None:
    a = lab_factory(2)
    b = lab_factory(2)
    assert a.topology.underlay != b.topology.underlay
    for lab in (a, b):
        with EtcdStore(EtcdConfig(endpoints=(lab.etcd_endpoint,))) as s:
            s.put("/who", lab.name)
    for lab in (a, b):
        with EtcdStore(EtcdConfig(endpoints=(lab.etcd_endpoint,))) as s:
            assert s.get("/who").value.decode() == lab.name  # type: ignore[union-attr]
    # a's hosts cannot reach b's underlay: separate switches
    r = a.exec("h1", ["ping", "-c1", "-W1", str(b.topology.hosts[1].underlay_ip)], capture_output=True)
    assert r.returncode != 0
    a.down()
    assert Lab.load(b.name).status()["etcd"]["healthy"] is True


def test_down_of_the_current_lab_hands_the_context_to_a_remaining_one(lab_factory: Callable[..., Lab]) -> None:
    from netplane import context

    a = lab_factory(1)
    b = lab_factory(1)
    assert context.load_context().lab == b.name  # type: ignore[union-attr]
    b.down()  # b was current: the CLI must keep finding a running lab's etcd, not a dead one
    ctx = context.load_context()
    assert ctx is not None and ctx.lab == a.name and ctx.etcd == a.etcd_endpoint
    c = lab_factory(1)
    a.down()  # a is not current (c is): the context stays on c
    assert context.load_context().lab == c.name  # type: ignore[union-attr]
    c.down()
    assert context.load_context() is None


def test_down_after_crash_midway(state_dir: Path, cleanup_labs: None) -> None:
    """Simulate `up` dying after some steps: the recorded state still tears down fully."""
    before = _snapshot("tcrash", state_dir)
    topo = default_topology("tcrash", hosts=2, underlay="10.98.9.0/24")
    code = (
        "import os\n"
        "from netplane.lab import Lab, default_topology\n"
        "import netplane.lab.builder as b\n"
        "orig = b.EmbeddedEtcd.wait_healthy\n"
        "def boom(self, timeout):\n"
        "    orig(self, timeout)\n"
        "    os._exit(9)\n"  # crash hard with etcd running, before the relay exists
        "b.EmbeddedEtcd.wait_healthy = boom\n"
        "Lab.up(default_topology('tcrash', hosts=2, underlay='10.98.9.0/24'))\n"
    )
    env = {**os.environ, "NETPLANE_STATE_DIR": str(state_dir)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 9, r.stderr
    lab = Lab.load(topo.name)
    assert {i["kind"] for i in lab.state.items} == {"netns", "cgroup", "process"}
    etcd_pids = [i["pid"] for i in lab.state.items if i["kind"] == "process"]
    assert len(etcd_pids) == 1 and (Path("/proc") / str(etcd_pids[0])).exists()
    lab.down()
    assert _snapshot("tcrash", state_dir) == before


@pytest.mark.parametrize("args", [["--hosts", "0"], ["--name", "BAD"], ["--underlay", "10.99.0.0/33"], ["--mtu", "10"]])
def test_up_rejects_bad_input(args: list[str], state_dir: Path, cleanup_labs: None) -> None:
    env = {**os.environ, "NETPLANE_STATE_DIR": str(state_dir)}
    r = _cli("lab", "up", "--no-agents", *args, env=env, check=False)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert not os.path.exists("/run/netns/np-BAD-sw")


def test_cli_exec_detach_is_stopped_by_down(state_dir: Path, cleanup_labs: None) -> None:
    env = {**os.environ, "NETPLANE_STATE_DIR": str(state_dir)}
    _cli("lab", "up", "--name", "tdet", "--hosts", "1", "--no-agents", "--underlay", "10.98.8.0/24", env=env)
    r = _cli("lab", "exec", "--name", "tdet", "-d", "h1", "--", "sleep", "1234", env=env)
    pid = int(r.stdout.split()[0])
    deadline = time.monotonic() + 5
    while "sleep 1234" not in _cmdline(str(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _cmdline(str(pid)).strip() == "sleep 1234"
    assert Path(f"/proc/{pid}/cgroup").read_text().strip().endswith("/netplane/tdet/h1")
    _cli("lab", "down", "--name", "tdet", env=env)
    assert not Path(f"/proc/{pid}").exists() or "sleep 1234" not in _cmdline(str(pid))
