"""The standalone collector + server on real cgroups: promtool accepts /metrics, network
counters come from the container's own network namespace, and the CLI works end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from netplane import netns
from stats.cgroups import make_reader
from stats.cgroups.scratch import ScratchCgroup
from stats.collector import Collector
from stats.discovery import CgroupSource
from stats.server import serve

NETPLANE = str(Path(sys.executable).parent / "netplane")

SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(200):
    s.sendto(b'x' * 1000, ('10.99.0.2', 9))
sys.stdout.write('ready\\n'); sys.stdout.flush()
while True:
    x = 0
    for i in range(10**6): x += i
"""


def _ipr(ns: str) -> IPRoute:
    with netns.inside(ns):
        return IPRoute()


@pytest.fixture
def world(make_netns) -> Iterator[dict[str, object]]:
    """A scratch cgroup with a process in its own netns (veth to a second netns) sending 200
    UDP packets, then burning CPU."""
    ns1, ns2 = make_netns("st1"), make_netns("st2")
    with _ipr(ns1) as ip:
        ip.link("add", ifname="npt0", kind="veth", peer={"ifname": "npt1", "net_ns_fd": f"/run/netns/{ns2}"})
        idx = ip.link_lookup(ifname="npt0")[0]
        ip.addr("add", index=idx, address="10.99.0.1", prefixlen=24)
        ip.link("set", index=idx, state="up")
    with _ipr(ns2) as ip:
        idx = ip.link_lookup(ifname="npt1")[0]
        ip.addr("add", index=idx, address="10.99.0.2", prefixlen=24)
        ip.link("set", index=idx, state="up")
    cg = ScratchCgroup.create(f"npt-stats-{uuid.uuid4().hex[:8]}")
    enter_cg, enter_ns = cg.enter_fn(), netns.preexec(ns1)

    def pre() -> None:
        enter_cg()
        assert enter_ns is not None
        enter_ns()

    p = subprocess.Popen([sys.executable, "-c", SENDER], preexec_fn=pre, stdout=subprocess.PIPE)  # noqa: PLW1509 - cgroup+netns before exec
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        yield {"cg": cg, "ns1": ns1, "pid": p.pid}
    finally:
        p.kill()
        p.wait()
        cg.remove()


def cpu_ns(pid: int) -> int:
    """Nanoseconds `pid` has run on a CPU, from the scheduler (/proc/PID/schedstat): our own
    measure, independent of the cgroup files the reader reads."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def test_metrics_pass_promtool_and_network_is_per_netns(world) -> None:
    cg, pid = world["cg"], world["pid"]
    col = Collector(discover=CgroupSource(lambda: [{"path": cg.path, "name": "sender", "image": "python"}]),
                    reader=make_reader("c"), interval=0.2)
    handle = serve(col, "127.0.0.1", 0)
    # the test drives housekeeping itself (no collector thread), so it knows when each sample
    # was read: bracket every read with the scheduler's count of the sender's CPU time
    col.discover_now()

    def sample() -> tuple[float, float]:
        t0, c0 = time.monotonic(), cpu_ns(pid)
        assert col.tick() == 1
        t1, c1 = time.monotonic(), cpu_ns(pid)
        assert t1 - t0 < 0.05, "one read took more than 50 ms"
        return (t0 + t1) / 2, (c0 + c1) / 2

    try:
        first = sample()
        time.sleep(1.0)  # the rate window: the sender's busy loop runs
        second = sample()
        own_cores = (second[1] - first[1]) / 1e9 / (second[0] - first[0])
        assert own_cores >= 0.2, f"the busy loop got only {own_cores:.2f} of a core: machine too loaded to measure"
        ((_, cur, _),) = col.latest()
        st = cur.stats
        assert st.ok, st.errors
        assert st.network is not None
        ifaces = {i.name: i for i in st.network}
        assert set(ifaces) == {"lo", "npt0"}  # the container's netns, not the host's
        with _ipr(world["ns1"]) as ip:
            kstats = ip.get_links(ip.link_lookup(ifname="npt0")[0])[0].get_attr("IFLA_STATS64")
        assert ifaces["npt0"].tx_packets >= 200 and ifaces["npt0"].tx_bytes >= 200 * 1000
        assert abs(ifaces["npt0"].tx_packets - kstats["tx_packets"]) <= 3  # (IPv6 ND may add a few)

        import urllib.request

        text = urllib.request.urlopen(handle.url + "/metrics").read()
        assert b'container_network_transmit_packets_total{container="",id="' + cg.path.encode() in text
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.strip() == b"" and check.stderr.strip() == b"", check.stdout + check.stderr

        # CLI against the running server
        env = {**os.environ, "NETPLANE_STATS_HOST": f"127.0.0.1:{handle.port}"}
        out = subprocess.run([NETPLANE, "stats", "-o", "json"], capture_output=True, env=env, check=True)
        assert "sender" in json.loads(out.stdout)
        top = subprocess.run([NETPLANE, "top", "-n", "1"], capture_output=True, env=env, check=True, text=True)
        lines = top.stdout.splitlines()
        assert lines[1].split()[:3] == ["NAME", "ID", "CPU%"] and lines[2].startswith("sender")
        # top's CPU% is the rate over the two samples above: it must match the scheduler's count
        # for the same window (±15%; the window edges are known to within one read)
        shown, want = float(lines[2].split()[2]), 100 * own_cores
        assert abs(shown - want) <= 0.15 * want, (shown, want)
    finally:
        handle.stop()
        col.stop()


def test_cli_cgroup_reads_directly(world) -> None:
    cg = world["cg"]
    out = subprocess.run([NETPLANE, "stats", "cgroup", cg.path, "--pid", str(world["pid"]), "-o", "json"],
                         capture_output=True, check=True)
    d = json.loads(out.stdout)
    for section, key in (("cpu", "usage_seconds"), ("cpu", "user_seconds"), ("cpu", "system_seconds"),
                         ("memory", "usage_bytes"), ("memory", "working_set_bytes"), ("pids", "current")):
        assert isinstance(d[section][key], (int, float)), (section, key)
    assert d["pids"]["current"] == 1 and d["reader"] == "c" and d["errors"] == {}
    assert any(i["name"] == "npt0" for i in d["network"])
    py = subprocess.run([NETPLANE, "stats", "cgroup", cg.path, "--reader", "python", "-o", "json"],
                        capture_output=True, check=True)
    assert json.loads(py.stdout)["reader"] == "python"
    bad = subprocess.run([NETPLANE, "stats", "cgroup", "/npt-does-not-exist"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no cgroup" in bad.stderr
    down = subprocess.run([NETPLANE, "stats", "--host", "127.0.0.1:1"], capture_output=True, text=True, check=False)
    assert down.returncode == 1 and "cannot reach the stats server" in down.stderr


def test_stats_serve_command(world) -> None:
    from tests.conftest import free_port

    port = free_port()
    p = subprocess.Popen([NETPLANE, "stats", "serve", "--listen", f"127.0.0.1:{port}", "--source", "cgroup",
                          "--cgroup", world["cg"].path, "--interval", "0.2"], stderr=subprocess.PIPE)
    try:
        import urllib.request

        deadline = time.monotonic() + 10
        body = None
        while time.monotonic() < deadline:
            try:
                body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2.0/stats/{world['cg'].path.strip('/')}").read())
                if len(next(iter(body.values()))) >= 2:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert body is not None
        samples = next(iter(body.values()))
        assert samples[-1]["rates"]["cpu_cores"] > 0.2
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
