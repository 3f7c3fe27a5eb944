"""Benchmark: CPU use of the standalone collector (`netplane stats serve`) at 100 Docker
containers with 1 s housekeeping (run as root: `.venv/bin/python bench/bench_stats_collector.py`).

Starts N idle busybox containers (`sleep`, --network none), then for each mode runs
`netplane stats serve --source docker` as its own process and measures its CPU time
(utime+stime from /proc/PID/stat) over a window after a warm-up (discovery + first inspects
excluded). dockerd's CPU over the same window is reported separately (our discovery lists
containers every 5 s). Modes, all in one run:
  C, backoff        the default: per-container interval doubles (to 15 s) while idle
  C, no backoff     --max-interval 1: every container read every second (worst case)
  Python, no backoff  the pure-Python reader (kept descriptors), every second
Writes bench/results/stats_collector.md. Removes exactly the containers it made.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[1]
NETPLANE = str(Path(sys.executable).parent / "netplane")
HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dockerd_pid() -> int | None:
    try:
        return int(Path("/var/run/docker.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def measure(mode: str, args: list[str], n: int, warmup: float, window: float) -> dict[str, float]:
    port = free_port()
    p = subprocess.Popen([NETPLANE, "stats", "serve", "--listen", f"127.0.0.1:{port}", "--source", "docker",
                          "--interval", "1", *args], stderr=subprocess.DEVNULL)
    try:
        time.sleep(warmup)
        dpid = dockerd_pid()
        c0, d0, t0 = cpu_seconds(p.pid), cpu_seconds(dpid) if dpid else 0.0, time.monotonic()
        time.sleep(window)
        c1, d1, t1 = cpu_seconds(p.pid), cpu_seconds(dpid) if dpid else 0.0, time.monotonic()
        body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2.0/stats?count=120").read())
        tracked = len(body)
        samples = sum(len(v) for v in body.values())
        rss = 0
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
    finally:
        p.terminate()
        p.wait(timeout=10)
    res = {"cpu_pct": (c1 - c0) / (t1 - t0) * 100, "dockerd_pct": (d1 - d0) / (t1 - t0) * 100,
           "tracked": tracked, "samples_per_container": samples / max(1, tracked), "rss_mib": rss / 1048576}
    print(mode, res, flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--out", default=str(ROOT / "bench/results/stats_collector.md"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    client = docker.from_env()
    tag = uuid.uuid4().hex[:6]
    made = []
    try:
        t0 = time.monotonic()
        for i in range(a.n):
            made.append(client.containers.run("netplane/busybox:latest", ["sleep", "3600"], detach=True,
                                              name=f"npt-bench-{tag}-{i}", network_mode="none",
                                              labels={"netplane.bench": tag}))
        print(f"started {a.n} containers in {time.monotonic() - t0:.1f}s", flush=True)
        dpid = dockerd_pid()
        base_d0, bt0 = cpu_seconds(dpid) if dpid else 0.0, time.monotonic()
        time.sleep(10)
        idle_dockerd = ((cpu_seconds(dpid) if dpid else 0.0) - base_d0) / (time.monotonic() - bt0) * 100
        modes = [
            ("C reader, backoff (default)", ["--reader", "c"]),
            ("C reader, no backoff", ["--reader", "c", "--max-interval", "1"]),
            ("Python reader, no backoff", ["--reader", "python", "--max-interval", "1"]),
        ]
        results = [(m, measure(m, args, a.n, a.warmup, a.window)) for m, args in modes]
    finally:
        for c in made:
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass
        client.close()
    lines = [
        "# stats collector CPU use",
        "",
        (f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()}, "
         f"kernel {platform.release()}, "
        f"{os.cpu_count()} CPUs; `bench/bench_stats_collector.py -n {a.n}` (root). {a.n} idle busybox containers "
        "(`sleep`, --network none) under dockerd (cgroupfs driver, cgroup v1). Each mode is a separate "
        f"`netplane stats serve --source docker --interval 1` process; CPU = its utime+stime over {a.window:.0f} s "
        f"after {a.warmup:.0f} s of warm-up. dockerd alone (no collector) used {idle_dockerd:.2f} % over 10 s."),
        "",
        "| mode | collector CPU (% of one core) | dockerd CPU in the window (%) | containers tracked | samples kept per container | collector RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m, r in results:
        lines.append(f"| {m} | {r['cpu_pct']:.2f} | {r['dockerd_pct']:.2f} | {r['tracked']} | "
                     f"{r['samples_per_container']:.0f} | {r['rss_mib']:.0f} |")
    c_nb = results[1][1]["cpu_pct"]
    py_nb = results[2][1]["cpu_pct"]
    lines += [
        "",
        (f"Goal from issue 5: ≤ 2 % of one core at 100 containers with 1 s housekeeping (cAdvisor is "
        f"reported at about 7 % for 29 containers). Python reader / C reader without backoff: "
         f"{py_nb / c_nb:.1f}×."),
        "",
        "Idle containers do not change, so with backoff (the default) each is read every 15 s after a",
        "short ramp; \"no backoff\" reads all 100 every second, the cost when every container is busy.",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
