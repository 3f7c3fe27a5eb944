"""`netplane node install`: the systemd units the Vagrant VMs run, checked without booting one.

`systemd-analyze verify` (systemd's own unit parser, offline: no running systemd needed) must
accept every unit without a word; every ExecStart must parse back into flags the real commands
accept (netplane's click parsers, etcd's --help); and the agent's unit must keep pods alive
across an agent restart (KillMode=process, Delegate=yes).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netplane.cli.nodeinstall import NodeUnits, exec_line, systemd_quote

NETPLANE = str(Path(sys.executable).parent / "netplane")
ETCD = shutil.which("etcd")
IP = IPv4Address("192.168.56.10")


def spec(**kw: object) -> NodeUnits:
    base: dict[str, object] = {"etcd": (f"http://{IP}:2379",), "iface": "eth1", "node": "h1", "node_ip": IP,
                                   "netplane_bin": NETPLANE, "etcd_bin": ETCD or "/bin/true",
                                   "cgroup_root": Path("/sys/fs/cgroup"), "unified": True}
    base.update(kw)
    return NodeUnits(**base)  # type: ignore[arg-type]


def directives(text: str, key: str) -> list[str]:
    """Values of `key=` lines, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [line.split("=", 1)[1] for line in joined.splitlines() if line.startswith(f"{key}=")]


def exec_argv(text: str) -> list[str]:
    (line,) = directives(text, "ExecStart")
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line)]


COMBOS = [
    {"master": True, "etcd_server": True},
    {"runtime": "namespaces", "proxy_mode": "ebpf"},
    {"runtime": "docker", "proxy_mode": "nftables", "master": True},
    {"runtime": "none", "proxy_mode": "none", "unified": False, "cgroup_root": Path("/sys/fs/cgroup/unified")},
    {"master_args": ("--leader-ttl", "20"), "agent_args": ("--heartbeat", "5")},
]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("kw", COMBOS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_systemd_analyze_verify_accepts_every_unit_silently(tmp_path: Path, kw: dict[str, object]) -> None:
    if kw.get("etcd_server") and ETCD is None:
        pytest.fail("etcd is not installed (scripts/install.sh installs it)")
    units = spec(**kw).units()
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    p = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in units)],
                       capture_output=True, text=True, check=False, timeout=60)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stdout + p.stderr


def test_a_broken_unit_is_caught_by_the_same_check(tmp_path: Path) -> None:
    """The check above is not vacuous: systemd-analyze reports what it cannot parse."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    bad = spec().agent_unit().replace("KillMode=process", "KillMode=sometimes")
    (tmp_path / "netplane-agent.service").write_text(bad)
    p = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "netplane-agent.service")],
                       capture_output=True, text=True, check=False, timeout=60)
    assert "kill mode" in (p.stdout + p.stderr).lower()


def test_the_agent_unit_keeps_pods_across_agent_restarts() -> None:
    text = spec().agent_unit()
    assert directives(text, "KillMode") == ["process"]
    assert directives(text, "Delegate") == ["yes"]
    assert directives(text, "Restart") == ["on-failure"]
    assert directives(text, "TasksMax") == ["infinity"]  # every pod's supervisor counts in the unit


def test_ordering_after_the_local_etcd_and_docker() -> None:
    s = spec(etcd_server=True, master=True)
    assert directives(s.agent_unit(), "After") == ["network-online.target netplane-etcd.service docker.service"]
    assert directives(s.master_unit(), "After") == ["network-online.target netplane-etcd.service"]
    assert directives(spec(runtime="namespaces").agent_unit(), "After") == ["network-online.target"]
    assert directives(s.etcd_unit(), "Type") == ["notify"]
    assert list(s.units()) == ["netplane-etcd.service", "netplane-master.service", "netplane-agent.service"]
    assert list(spec().units()) == ["netplane-agent.service"]


def test_agent_exec_start_is_the_venv_netplane_with_real_agent_flags() -> None:
    from netplane.cli.agent import agent

    argv = exec_argv(spec(proxy_mode="ebpf", agent_args=("--heartbeat", "5")).agent_unit())
    assert argv[:3] == [NETPLANE, "--etcd", f"http://{IP}:2379"] and argv[3] == "agent"
    ctx = agent.make_context("agent", argv[4:])  # click rejects any flag the agent lacks
    p = ctx.params
    assert (p["node"], p["iface"], p["public_ip"], p["proxy_mode"], p["runtime"], p["heartbeat"]) == \
        ("h1", "eth1", str(IP), "ebpf", "auto", 5.0)
    assert p["proxy_cgroup"] == "/sys/fs/cgroup/netplane/h1"
    assert p["health_listen"] == f"{IP}:9100"


def test_master_exec_start_has_real_master_flags() -> None:
    from netplane.cli.master import master

    argv = exec_argv(spec(master=True).master_unit())
    assert argv[3] == "master"
    p = master.make_context("master", argv[4:]).params
    assert (p["identity"], p["dns_listen"]) == ("h1", f"{IP}:10053")


def test_etcd_exec_start_uses_flags_this_etcd_knows() -> None:
    if ETCD is None:
        pytest.fail("etcd is not installed (scripts/install.sh installs it)")
    argv = exec_argv(spec(etcd_server=True).etcd_unit())
    helptext = subprocess.run([ETCD, "--help"], capture_output=True, text=True, check=False).stdout
    flags = [a for a in argv[1:] if a.startswith("--")]
    assert flags and all(f"{f}" in helptext for f in flags), [f for f in flags if f not in helptext]
    assert f"--listen-client-urls http://{IP}:2379,http://127.0.0.1:2379" in " ".join(argv)


def test_cgroup_v2_controllers_are_prepared_only_on_a_unified_host() -> None:
    pre = directives(spec().agent_unit(), "ExecStartPre")
    assert len(pre) == 1 and pre[0].startswith("-/bin/sh -c ") and "/sys/fs/cgroup/netplane/cgroup.subtree_control" in pre[0]
    hybrid = spec(unified=False, cgroup_root=Path("/sys/fs/cgroup/unified"))
    assert directives(hybrid.agent_unit(), "ExecStartPre") == []


def test_systemd_quoting() -> None:
    assert systemd_quote("plain") == "plain"
    assert systemd_quote("50%") == "50%%" and systemd_quote("$HOME") == "$$HOME"
    assert systemd_quote("a b") == '"a b"' and systemd_quote('say "hi"') == '"say \\"hi\\""'
    assert shlex.split(exec_line(["/bin/echo", "a b", "--x", "y"]).replace("\\\n", " ")) == ["/bin/echo", "a b", "--x", "y"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NETPLANE, "node", "install", *args], capture_output=True, text=True, check=False, timeout=60)


def test_cli_dry_run_prints_and_writes_nothing(tmp_path: Path) -> None:
    p = run_cli("--etcd", f"http://{IP}:2379", "--iface", "eth1", "--node", "h1", "--node-ip", str(IP),
                "--master", "--etcd-server", "--unit-dir", str(tmp_path / "u"), "--dry-run")
    assert p.returncode == 0, p.stderr
    assert f"# {tmp_path / 'u' / 'netplane-agent.service'}" in p.stdout and "KillMode=process" in p.stdout
    assert not (tmp_path / "u").exists()


def test_cli_writes_once_then_reports_up_to_date(tmp_path: Path) -> None:
    args = ("--etcd", f"http://{IP}:2379", "--iface", "eth1", "--node", "h2", "--node-ip", "192.168.56.11",
            "--unit-dir", str(tmp_path))
    p = run_cli(*args)
    assert p.returncode == 0 and "wrote" in p.stdout, p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["netplane-agent.service"]
    p = run_cli(*args)
    assert p.returncode == 0 and "up to date" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize(("args", "msg"), [
    (("--etcd", "http://192.168.56.99:2379", "--etcd-server"), "this node's address is 192.168.56.10"),
    (("--etcd", "http://a:2379,http://b:2379", "--etcd-server"), "exactly one --etcd URL"),
    (("--etcd", "etcd.example:2379"), "expected http(s)://HOST[:PORT]"),
    (("--etcd", f"http://{IP}:2379", "--node", "H_1"), "node name 'H_1'"),
    (("--etcd", f"http://{IP}:2379", "--node-ip", "not-an-ip"), "is not an IPv4 address"),
])
def test_cli_refuses_inconsistent_flags_with_one_line(args: tuple[str, ...], msg: str) -> None:
    base = ["--iface", "eth1", "--dry-run"]
    if "--node-ip" not in args:
        base += ["--node-ip", str(IP)]
    if "--node" not in args:
        base += ["--node", "h1"]
    p = run_cli(*args, *base)
    assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
