"""The lab as a user drives it: the installed `netplane` command, run as a subprocess.

Covers the README's claims about `lab up` with agents (and the first master's Kubernetes
API, reached with the real kubectl), `lab status`, `lab down` leaving nothing behind, the automatic `10.99.N.0/24` underlay, `lab pod add|del|list`,
`stats --host`/`top --host` with a lab host name, `-o yaml`, and the agent's `--public-ip`.
Every lab is torn down by `netplane lab down --name X`, also when a test fails midway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from netplane.lab.builder import CGROUP2_ROOT

NETPLANE = Path(sys.executable).parent / "netplane"  # the console script pyproject installs


def cli(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(NETPLANE), *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"netplane {' '.join(args)} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def wait_for(what: str, fn: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll `fn` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def yaml_out(*args: str) -> Any:
    """Run a command with `-o yaml`; the text must be block-style YAML (JSON would parse too)."""
    text = cli(*args, "-o", "yaml").stdout
    assert not text.lstrip().startswith(("{", "[")), f"not block-style YAML:\n{text}"
    return yaml.safe_load(text)


def pings(src: str, dst: str) -> bool:
    """One ping from lab host or pod `src` to `dst`, through `netplane lab exec`."""
    return cli("lab", "exec", src, "--", "ping", "-c1", "-W1", dst, check=False).returncode == 0


def new_name() -> str:
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
def labs(state_dir: Path) -> Iterator[list[str]]:
    """Names of the labs a test brings up (append before `lab up`); every one still recorded
    at the end is removed with `netplane lab down --name X`, newest first."""
    names: list[str] = []
    yield names
    failed = []
    for name in reversed(names):
        if (state_dir / "labs" / name / "state.json").exists():
            r = cli("lab", "down", "--name", name, check=False)
            if r.returncode != 0:
                failed.append((name, r.stderr))
    assert not failed, failed


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def leftovers(name: str, state_dir: Path) -> dict[str, list[str]]:
    """What lab `name` could leave behind: its namespaces (hosts, switch, pods), its cgroup
    subtree, processes started from its directory or in its namespaces, its files."""
    run_netns = Path("/run/netns")
    netns = sorted(n.name for n in run_netns.iterdir() if n.name.startswith(f"np-{name}-")) if run_netns.is_dir() else []
    cg = CGROUP2_ROOT / "netplane" / name
    lab_dir = state_dir / "labs" / name
    procs = sorted(p for p in os.listdir("/proc") if p.isdigit() and (str(lab_dir) in _cmdline(p) or f"np-{name}-" in _cmdline(p)))
    return {
        "netns": netns,
        "cgroups": [str(cg)] if cg.exists() else [],
        "procs": procs,
        "files": sorted(str(p) for p in lab_dir.rglob("*")) if lab_dir.exists() else [],
    }


NOTHING: dict[str, list[str]] = {"netns": [], "cgroups": [], "procs": [], "files": []}


def _netns_inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


def test_up_with_agents_status_and_down_through_the_cli(state_dir: Path, labs: list[str], kubectl_binary: str) -> None:
    a, b, c = new_name(), new_name(), new_name()
    labs += [a, b, c]
    st = yaml_out("lab", "up", "--name", a, "--hosts", "2")
    # no --underlay and no other lab in this state directory: the first 10.99.N.0/24
    assert (st["name"], st["underlay"], st["proxy"]) == (a, "10.99.0.0/24", "iptables")
    assert st["etcd"]["healthy"] is True
    assert [(h["name"], h["netns"], h["underlay_ip"]) for h in st["hosts"]] == [
        ("h1", f"np-{a}-h1", "10.99.0.11"), ("h2", f"np-{a}-h2", "10.99.0.12")]
    # `up` returns once every host holds a lease: two distinct /24s of the overlay network
    subnets = [IPv4Network(h["subnet"]) for h in st["hosts"]]
    assert len(set(subnets)) == 2 and all(s.prefixlen == 24 and s.subnet_of(IPv4Network("10.244.0.0/16")) for s in subnets)
    agents = {h["name"]: h["processes"]["agent"] for h in st["hosts"]}
    for host, pid in agents.items():
        assert f"agent --node {host}" in _cmdline(str(pid)), (host, _cmdline(str(pid)))
        # ... each in its own host's network namespace
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == _netns_inode(f"np-{a}-{host}")

    # later commands find the lab through the context file, without flags
    st2 = json.loads(cli("lab", "status", "-o", "json").stdout)
    assert [h["subnet"] for h in st2["hosts"]] == [str(s) for s in subnets] and st2["etcd"]["healthy"] is True
    table = cli("lab", "status").stdout.splitlines()
    assert table[0].startswith(f"lab {a}  etcd ") and "(healthy)" in table[0]
    assert table[1] == f"API {st['api']['url']}  kubeconfig {st['api']['kubeconfig']}", table
    assert [line.split()[0::4] for line in table[3:]] == [["h1", "running"], ["h2", "running"]]
    # the first master serves the Kubernetes API: the real kubectl, with the lab's kubeconfig
    assert st["api"]["url"].startswith("https://127.0.0.1:") and Path(st["api"]["kubeconfig"]).is_file()
    nodes = subprocess.run([kubectl_binary, "--kubeconfig", st["api"]["kubeconfig"], "get", "nodes", "--no-headers"],
                           capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert sorted(line.split()[:2] for line in nodes) == [["h1", "Ready"], ["h2", "Ready"]], nodes

    # a second lab at the same time picks the next free /24 by itself
    st_b = json.loads(cli("lab", "up", "--name", b, "--hosts", "1", "--no-agents", "-o", "json").stdout)
    assert st_b["underlay"] == "10.99.1.0/24" and st_b["hosts"][0]["underlay_ip"] == "10.99.1.11"
    # an explicit --underlay overlapping a running lab is refused, in one line, building nothing
    r = cli("lab", "up", "--name", c, "--underlay", "10.99.1.0/25", "--no-agents", check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "overlaps lab" in r.stderr, r.stderr
    assert leftovers(c, state_dir) == NOTHING
    r = cli("lab", "up", "--name", c, "--masters", "0", "--api", check=False)  # no master to serve it
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--api needs a master" in r.stderr, r.stderr
    assert leftovers(c, state_dir) == NOTHING
    assert yaml_out("lab", "list") == [
        {"name": n, "current": n == b} for n in sorted([a, b])]

    assert cli("lab", "down", "--name", b).stdout.strip() == f"lab {b} removed"
    # b was current; the context went back to a, so a bare `lab down` removes a
    assert cli("lab", "down").stdout.strip() == f"lab {a} removed"
    for name in (a, b):
        assert leftovers(name, state_dir) == NOTHING, name
    for pid in agents.values():
        assert not Path(f"/proc/{pid}").exists() or "agent" not in _cmdline(str(pid))
    assert json.loads(cli("lab", "list", "-o", "json").stdout) == []
    assert not (state_dir / "context.json").exists()


def _links(netns: str) -> set[str]:
    out = subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def test_pods_stats_and_top_through_the_cli(state_dir: Path, labs: list[str]) -> None:
    n = new_name()
    labs.append(n)
    st = json.loads(cli("lab", "up", "--name", n, "--hosts", "2", "-o", "json").stdout)
    hosts = {h["name"]: h for h in st["hosts"]}
    h1_links = _links(f"np-{n}-h1")

    pa = json.loads(cli("lab", "pod", "add", "h1", "pa", "-o", "json").stdout)
    pb = json.loads(cli("lab", "pod", "add", "h2", "pb", "-o", "json").stdout)
    assert IPv4Address(pa["ip"]) in IPv4Network(hosts["h1"]["subnet"])
    assert IPv4Address(pb["ip"]) in IPv4Network(hosts["h2"]["subnet"])
    assert yaml_out("lab", "pod", "list") == [
        {"name": "pa", "host": "h1", "netns": f"np-{n}-p-pa", "ip": pa["ip"]},
        {"name": "pb", "host": "h2", "netns": f"np-{n}-p-pb", "ip": pb["ip"]},
    ]
    assert _links(f"np-{n}-h1") > h1_links, "pod add plugs a veth into h1"
    # pod to pod across hosts, once the overlay has converged
    wait_for(f"pa -> pb ({pb['ip']})", lambda: pings("pa", pb["ip"]))

    assert cli("lab", "pod", "del", "pa").stdout.strip() == "pod pa removed"
    assert not Path(f"/run/netns/np-{n}-p-pa").exists()
    assert _links(f"np-{n}-h1") == h1_links, "pod del removes pa's veth from h1"
    assert [p["name"] for p in json.loads(cli("lab", "pod", "list", "-o", "json").stdout)] == ["pb"]
    r = cli("lab", "pod", "del", "pa", check=False)
    assert r.returncode == 2 and "no pod 'pa'" in r.stderr and r.stderr.count("\n") == 1, r.stderr

    # `stats --host h1`: h1's own collector (reached inside h1's namespace): h1's cgroup, not h2's,
    # and the machine's root cgroup `/`, which cAdvisor always reports
    key1, key2 = f"/netplane/{n}/h1", f"/netplane/{n}/h2"

    def stats_of(host: str, fmt: str) -> Any:
        """The host's samples once its collector has some; None until then."""
        r = cli("stats", "--host", host, "-o", fmt, check=False)
        if r.returncode != 0:
            return None
        if fmt == "yaml":
            assert not r.stdout.lstrip().startswith(("{", "[")), f"not block-style YAML:\n{r.stdout}"
        data = yaml.safe_load(r.stdout) if fmt == "yaml" else json.loads(r.stdout)
        return data if data and all(data.values()) else None

    data = wait_for("a stats sample from h1", lambda: stats_of("h1", "json"))
    assert set(data) == {"/", key1}
    sample = data[key1][-1]
    assert {"eth0", "np0"} <= {i["name"] for i in sample["network"]}, "read from h1's network namespace"
    assert sample["pids"]["current"] >= 1
    data2 = wait_for("a stats sample from h2 (YAML)", lambda: stats_of("h2", "yaml"))
    assert set(data2) == {"/", key2}
    rows = cli("stats", "--host", "h1").stdout.splitlines()
    assert rows[0].split()[:3] == ["NAME", "ID", "CPU%"] and len(rows) == 3
    assert sorted(r.split()[0] for r in rows[1:]) == sorted(["/", key1])
    assert all(key1[:12] not in r.split() for r in rows[1:]), "no cgroup path cut at 12 characters as the ID"
    top = cli("top", "--host", "h2", "-n", "1").stdout.splitlines()
    assert top[0].startswith("netplane top - ") and top[0].endswith(f"http://{hosts['h2']['underlay_ip']}:4194")
    assert top[1].split()[0] == "NAME" and sorted(line.split()[0] for line in top[2:]) == sorted(["/", key2])

    assert cli("lab", "down", "--name", n).stdout.strip() == f"lab {n} removed"
    assert leftovers(n, state_dir) == NOTHING


def test_agent_public_ip_end_to_end(state_dir: Path, labs: list[str]) -> None:
    """h1's agent is told to use a second address of eth0: its lease, its VXLAN device and
    every peer's FDB entry carry that address, and pod traffic flows over it."""
    n = new_name()
    labs.append(n)
    st = json.loads(cli("lab", "up", "--name", n, "--hosts", "2", "--no-agents", "--proxy", "none", "-o", "json").stdout)
    h2_ip = IPv4Address(st["hosts"][1]["underlay_ip"])
    public = IPv4Network(st["underlay"]).network_address + 200
    cli("lab", "exec", "h1", "--", "ip", "addr", "add", f"{public}/24", "dev", "eth0")
    cli("net", "config", "set", "--network", "10.244.0.0/16")

    def agent(host: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "netplane", "--etcd", st["etcd"]["underlay_endpoint"], "agent", "--node", host,
                "--subnet-file", str(state_dir / "labs" / n / host / "subnet.env"), *extra]

    # started with `lab exec -d`, so `lab down` stops them
    cli("lab", "exec", "-d", "h1", "--", *agent("h1", "--public-ip", str(public)))
    cli("lab", "exec", "-d", "h2", "--", *agent("h2", "--iface", "eth0"))

    def leases() -> dict[str, dict[str, Any]] | None:
        rows = json.loads(cli("net", "subnets", "-o", "json").stdout)
        return {r["node"]: r for r in rows} if len(rows) == 2 else None

    try:
        by_node = wait_for("both hosts' leases", leases)
    except AssertionError as e:  # say why: the agents' own words (`lab exec -d` logs)
        logs = sorted((state_dir / "labs" / n).glob("h*/exec-*.log"))
        raise AssertionError(f"{e}\n" + "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs)) from None
    assert by_node["h1"]["public_ip"] == str(public) and by_node["h2"]["public_ip"] == str(h2_ip)

    def vxlan_local(host: str) -> str | None:
        r = subprocess.run(["ip", "-n", f"np-{n}-{host}", "-d", "-j", "link", "show", "np.1"], capture_output=True, text=True, check=False)
        return json.loads(r.stdout)[0]["linkinfo"]["info_data"].get("local") if r.returncode == 0 else None

    assert wait_for("h1's VXLAN device", lambda: vxlan_local("h1")) == str(public)

    def fdb_dst(host: str, mac: str) -> str | None:
        out = subprocess.run(["bridge", "-n", f"np-{n}-{host}", "-j", "fdb", "show", "dev", "np.1"],
                             capture_output=True, text=True, check=False).stdout or "[]"
        return next((e.get("dst") for e in json.loads(out) if e.get("mac") == mac), None)

    assert wait_for("h2's FDB entry for h1", lambda: fdb_dst("h2", by_node["h1"]["vtep_mac"])) == str(public)
    assert wait_for("h1's FDB entry for h2", lambda: fdb_dst("h1", by_node["h2"]["vtep_mac"])) == str(h2_ip)

    # and the overlay really runs over that address: pod to pod both ways
    pa = json.loads(cli("lab", "pod", "add", "h1", "pa", "-o", "json").stdout)
    pb = json.loads(cli("lab", "pod", "add", "h2", "pb", "-o", "json").stdout)
    wait_for(f"pb -> pa ({pa['ip']})", lambda: pings("pb", pa["ip"]))
    wait_for(f"pa -> pb ({pb['ip']})", lambda: pings("pa", pb["ip"]))

    assert cli("lab", "down", "--name", n).stdout.strip() == f"lab {n} removed"
    assert leftovers(n, state_dir) == NOTHING
