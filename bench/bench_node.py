"""Benchmark: pod start-up latency and agent CPU of the node runtime, per runtime, in a lab
(run as root from the repo root: `.venv/bin/python bench/bench_node.py`).

For each runtime (docker, namespaces) a lab is brought up (`netplane.lab`: N hosts, one master,
the iptables proxy) and torn down in a `finally`. Then:

* **Latency.** A Service selects the bench's pods; each pod runs
  `busybox nc -ll -p 8080 -e busybox hostname` with a tcpSocket readinessProbe (period 1 s).
  Per pod, from the bench's clock at the create write (creationTimestamp has 1 s resolution) to:
  scheduled (spec.nodeName seen), Running (status.phase), Ready (the Ready condition), in the
  Endpoints (the pod IP among the Service's ready addresses) and programmed in every proxy (the
  last host's kernel commits a rule or map element holding the pod IP). Pods and Endpoints are
  followed with `ObjectStore.watch`; times are taken in the bench process when a change
  arrives. 30 pods one at a time (each waits until programmed everywhere before the next: the
  SLO-style measurement), then a burst of 30 written back to back.
* **"Programmed in every proxy"** is read from the kernel, not from the agents: an
  `nft monitor` per host network namespace (iptables here is iptables-nft, so the iptables
  proxy's restores are nf_tables transactions too, as are the nftables proxy's element
  updates). The kernel sends those notifications when the transaction commits, so a line
  naming the pod IP (`dnat to 10.244.x.y:8080`, or a map element) is the moment that host
  serves the backend. It costs nothing between commits and needs no polling. The agents'
  /metrics only count syncs (not what a sync contained) and polling `iptables-save` would add
  the poll period and a process per poll on 2 cores.
* **Baseline (same run):** `docker run --rm --network none IMAGE true` until it exits, and
  `docker run -d --network none IMAGE <the pod's command>` until `docker inspect` says Running,
  30 samples each.
* **Agent cost.** 30 pods bound to h1 (same Service, readiness probe at the default 10 s, then
  at 1 s) and, for reference, none: the h1 agent process's CPU (utime+stime from
  /proc/<pid>/stat; reaped children's cutime+cstime apart) over a window (60 s), as % of one
  core, with a per-thread split (thread names from `py-spy dump`), the host cgroup's total
  (agent + pods) and dockerd+containerd (machine-wide: shared with whatever else runs).

Writes bench/results/node.md and node.json (`--out`). Every lab and container it made is removed,
also on failure (a failed lab's logs are kept under /tmp/nodebench-logs-<lab>). Options:
`--only latency|cost`, `--runtimes`, `--pods`, `--hosts`, `--proxy iptables|nftables`,
`--profile SECONDS` (py-spy the agent after each loaded cost window and keep the top threads and
functions in the JSON), `--render JSON` (write the .md of an earlier run) with `--notes FILE`
and `--compare OTHER.json` (set another run, e.g. over a proposed change, beside this one).
A whole run takes ~25 minutes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netplane.lab import Lab, cluster
from netplane.lab.builder import LAB_PREFIX, up_on_free_underlay
from netplane.store import Keys
from orchestrator.applier import Applier
from orchestrator.deletion import Deleter
from orchestrator.objects.meta import ENDPOINTS, POD
from orchestrator.storage import ObjectStore
from orchestrator.validation import admit

IMAGE = "netplane/busybox:latest"
COMMAND = ["busybox", "nc", "-ll", "-p", "8080", "-e", "busybox", "hostname"]
APP = "nodebench"
SERVICE_NAME = "nodebench"
NS = "default"
HZ = os.sysconf("SC_CLK_TCK")
STAGES = ("scheduled", "running", "ready", "endpoints", "programmed")
GOALS_S = {"docker": 1.5, "namespaces": 0.3}  # p99 (issue 10)
ANCHORS = "Kubernetes SLO: p99 <= 5 s without image pulls (creation -> Running, observed by watch); Docker Swarm 1.0: p99 0.4 s (scheduling)"
START_TIMEOUT = 120.0


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 30 samples is the largest: no interpolation flattering it)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def summary(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "min": min(xs) if xs else float("nan"),
            "max": max(xs) if xs else float("nan"), "mean": sum(xs) / len(xs) if xs else float("nan")}


# --------------------------------------------------------------------------- baseline
def docker_baseline(n: int) -> dict[str, Any]:
    """Same image, same run: `docker run --rm ... true` to exit; `docker run -d` of the pod's
    command to Running (by `docker inspect`). Warm-up runs are not counted."""
    tag = f"npnodebench-{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    exit_s: list[float] = []
    running_s: list[float] = []
    try:
        for i in range(n + 2):
            t0 = time.monotonic()
            subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "true"], check=True,
                           stdout=subprocess.DEVNULL)
            if i >= 2:
                exit_s.append(time.monotonic() - t0)
        for i in range(n + 2):
            name = f"{tag}-{i}"
            made.append(name)
            t0 = time.monotonic()
            subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", IMAGE, *COMMAND],
                           check=True, stdout=subprocess.DEVNULL)
            while subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name], check=False, capture_output=True,
                                 text=True).stdout.strip() != "true":
                time.sleep(0.005)
            if i >= 2:
                running_s.append(time.monotonic() - t0)
            subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)
            made.remove(name)
    finally:
        for name in made:
            subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)
    burst_s = docker_burst(n, tag)
    return {"run_rm_true": summary(exit_s), "run_d_running": summary(running_s), "burst_run_d_running": summary(burst_s),
            "samples": {"run_rm_true": exit_s, "run_d_running": running_s, "burst_run_d_running": burst_s}}


def docker_burst(n: int, tag: str) -> list[float]:
    """n `docker run -d` started at once (one thread each), each until `docker inspect` says
    Running: dockerd's own throughput on this machine, the floor for a burst of pods (which cost
    two containers each: the pause sandbox and the app)."""
    names = [f"{tag}-b{i}" for i in range(n)]
    out: list[float] = [0.0] * n

    def one(i: int) -> None:
        t0 = time.monotonic()
        subprocess.run(["docker", "run", "-d", "--name", names[i], "--network", "none", IMAGE, *COMMAND],
                       check=True, stdout=subprocess.DEVNULL)
        while subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", names[i]], check=False,
                             capture_output=True, text=True).stdout.strip() != "true":
            time.sleep(0.005)
        out[i] = time.monotonic() - t0

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        subprocess.run(["docker", "rm", "-f", *names], check=False, capture_output=True)
    return out


# --------------------------------------------------------------------------- lab
def lab_up(runtime: str, hosts: int, proxy: str) -> Lab:
    """A uniquely named lab on a free 10.98.200-249.0/24 (the tests use 100-199)."""
    return up_on_free_underlay("nb" + uuid.uuid4().hex[:6], range(200, 250), start_timeout=START_TIMEOUT,
                               hosts=hosts, runtime=runtime, masters=1, proxy=proxy)


# --------------------------------------------------------------------------- observers
@dataclass
class PodTimes:
    name: str
    created: float = 0.0  # bench clock (monotonic) just before the create write
    write_s: float = 0.0  # how long the create call took
    scheduled: float | None = None
    running: float | None = None
    ready: float | None = None
    gone: float | None = None
    ip: str = ""
    node: str = ""


@dataclass
class Observer:
    """Pods and the Service's Endpoints from etcd watches, kernel commits from `nft monitor`
    per host; every arrival timestamped with time.monotonic() in this process."""

    objects: ObjectStore
    hosts: list[str]
    netns: dict[str, str]
    overlay: IPv4Network
    pods: dict[str, PodTimes] = field(default_factory=dict)
    ep_events: list[tuple[float, str]] = field(default_factory=list)  # (t, ip) ip became a ready address
    ep_now: set[str] = field(default_factory=set)
    kernel: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # host -> (t, ip) seen committed
    cond: threading.Condition = field(default_factory=threading.Condition)
    stop: threading.Event = field(default_factory=threading.Event)
    _procs: list[subprocess.Popen[str]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _listed: dict[str, threading.Event] = field(default_factory=dict)
    _mon_up: dict[str, threading.Event] = field(default_factory=dict)

    def start(self) -> None:
        for h in self.hosts:
            self.kernel[h] = []
            self._mon_up[h] = threading.Event()
            # nft prints with stdio: line-buffer it (a pipe would otherwise hold lines back)
            argv = ["nsenter", f"--net=/run/netns/{self.netns[h]}", "stdbuf", "-oL", "nft", "monitor"]
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
            self._procs.append(p)
            self._spawn(f"mon-{h}", functools.partial(self._read_monitor, h, p))
        for kind in ("pods", "endpoints"):
            self._listed[kind] = threading.Event()
        self._spawn("watch-pods", self._watch_pods)
        self._spawn("watch-endpoints", self._watch_endpoints)
        for ev in self._listed.values():
            if not ev.wait(30):
                raise RuntimeError("the bench's watches never listed")
        self._check_monitors()

    def _check_monitors(self) -> None:
        """nft monitor says nothing until something commits: prove each one hears its netns by
        committing (and deleting) a table of our own there."""
        probe = f"nodebench_{uuid.uuid4().hex[:6]}"
        for h in self.hosts:
            ns = f"/run/netns/{self.netns[h]}"
            subprocess.run(["nsenter", f"--net={ns}", "nft", "add", "table", "ip", probe], check=True)
            subprocess.run(["nsenter", f"--net={ns}", "nft", "delete", "table", "ip", probe], check=True)
        for h in self.hosts:
            if not self._mon_up[h].wait(10):
                raise RuntimeError(f"nft monitor in {self.netns[h]} heard nothing")

    def _spawn(self, name: str, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def close(self) -> None:
        self.stop.set()
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    _IP = re.compile(r"(?<![\d.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\d])")

    def _read_monitor(self, host: str, p: subprocess.Popen[str]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            t = time.monotonic()
            if "nodebench_" in line:
                self._mon_up[host].set()
                continue
            if not line.startswith("add "):
                continue
            ips = [ip for ip in self._IP.findall(line) if _in(ip, self.overlay)]
            if ips:
                with self.cond:
                    for ip in ips:
                        self.kernel[host].append((t, ip))
                    self.cond.notify_all()

    def _watch_pods(self) -> None:
        for view in self.objects.watch(POD, NS, stop=self.stop):
            t = time.monotonic()
            with self.cond:
                self._listed["pods"].set()
                present = set()
                for obj in view.objects.values():
                    name = obj["metadata"]["name"]
                    present.add(name)
                    pt = self.pods.get(name)
                    if pt is None:
                        continue
                    spec, st = obj.get("spec") or {}, obj.get("status") or {}
                    if pt.scheduled is None and spec.get("nodeName"):
                        pt.scheduled, pt.node = t, spec["nodeName"]
                    if st.get("podIP") and not pt.ip:
                        pt.ip = st["podIP"]
                    if pt.running is None and st.get("phase") == "Running":
                        pt.running = t
                    if pt.ready is None and any(c.get("type") == "Ready" and c.get("status") == "True"
                                                for c in st.get("conditions") or []):
                        pt.ready = t
                for name, pt in self.pods.items():
                    if name not in present and pt.created and pt.gone is None and pt.scheduled is not None:
                        pt.gone = t
                self.cond.notify_all()

    def _watch_endpoints(self) -> None:
        for view in self.objects.watch(ENDPOINTS, NS, stop=self.stop):
            t = time.monotonic()
            ready: set[str] = set()
            for obj in view.objects.values():
                if obj["metadata"]["name"] != SERVICE_NAME:
                    continue
                for sub in obj.get("subsets") or []:
                    ready |= {a["ip"] for a in sub.get("addresses") or []}
            with self.cond:
                self._listed["endpoints"].set()
                for ip in ready - self.ep_now:
                    self.ep_events.append((t, ip))
                self.ep_now = ready
                self.cond.notify_all()

    # ---- derived (call with the lock held)
    def in_endpoints(self, pt: PodTimes) -> float | None:
        return next((t for t, ip in self.ep_events if ip == pt.ip and t >= pt.created), None) if pt.ip else None

    def programmed_on(self, pt: PodTimes, host: str) -> float | None:
        if not pt.ip:
            return None
        return next((t for t, ip in self.kernel[host] if ip == pt.ip and t >= pt.created), None)

    def programmed(self, pt: PodTimes) -> float | None:
        ts = [self.programmed_on(pt, h) for h in self.hosts]
        return None if any(t is None for t in ts) else max(t for t in ts if t is not None)

    def wait(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
                self.cond.wait(min(left, 0.5))


def _in(ip: str, net: IPv4Network) -> bool:
    try:
        return IPv4Address(ip) in net
    except ValueError:
        return False


# --------------------------------------------------------------------------- objects
def pod_manifest(name: str, *, period: int | None, node: str | None = None) -> dict[str, Any]:
    probe: dict[str, Any] = {"tcpSocket": {"port": 8080}}
    if period is not None:
        probe["periodSeconds"] = period
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 1,  # nc as PID 1 ignores SIGTERM: do not wait 30 s per pod
        "containers": [{"name": "srv", "image": IMAGE, "command": COMMAND,
                        "ports": [{"containerPort": 8080}], "readinessProbe": probe}],
    }
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"app": APP}},
            "spec": spec}


def service_manifest() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE_NAME, "namespace": NS},
            "spec": {"selector": {"app": APP}, "ports": [{"port": 80, "targetPort": 8080}]}}


def create_pod(objects: ObjectStore, obs: Observer, manifest: dict[str, Any]) -> PodTimes:
    obj = admit(manifest).object  # what the API server would store (defaults, validation)
    pt = PodTimes(manifest["metadata"]["name"])
    with obs.cond:
        obs.pods[pt.name] = pt
    t0 = time.monotonic()
    pt.created = t0
    objects.create(obj)
    pt.write_s = time.monotonic() - t0
    return pt


def delete_all(objects: ObjectStore, obs: Observer, names: list[str], timeout: float = 180.0) -> None:
    """Graceful deletes (the node stops each pod and removes its object), then wait until every
    object is gone and the Endpoints are empty."""
    d = Deleter(objects)
    for n in names:
        p = objects.get(POD, n, NS)
        if p is not None:
            d.delete_pod(p)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items, _ = objects.list(POD, NS)
        left = [p for p in items if p["metadata"]["name"] in set(names)]
        with obs.cond:
            empty = not obs.ep_now
        if not left and empty:
            break
        time.sleep(0.2)
    else:
        raise TimeoutError(f"pods not gone after {timeout:.0f} s")
    with obs.cond:
        for n in names:
            obs.pods.pop(n, None)


def stage_times(obs: Observer, pts: list[PodTimes]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {s: [] for s in STAGES}
    with obs.cond:
        for pt in pts:
            vals = {"scheduled": pt.scheduled, "running": pt.running, "ready": pt.ready,
                    "endpoints": obs.in_endpoints(pt), "programmed": obs.programmed(pt)}
            for s, v in vals.items():
                if v is not None:
                    out[s].append(v - pt.created)
    return out


def all_ready(pts: list[PodTimes]) -> bool:
    return all(pt.ready is not None for pt in pts)


def all_programmed(obs: Observer, pts: list[PodTimes]) -> Callable[[], bool]:
    return lambda: all(obs.programmed(pt) is not None for pt in pts)


def sequential(objects: ObjectStore, obs: Observer, n: int, prefix: str) -> list[PodTimes]:
    pts = []
    for i in range(n):
        pt = create_pod(objects, obs, pod_manifest(f"{prefix}-{i}", period=1))
        obs.wait(all_programmed(obs, [pt]), 60, f"pod {pt.name} to be programmed in every proxy")
        pts.append(pt)
    return pts


def burst(objects: ObjectStore, obs: Observer, n: int, prefix: str) -> list[PodTimes]:
    pts = [create_pod(objects, obs, pod_manifest(f"{prefix}-{i}", period=1)) for i in range(n)]
    obs.wait(all_programmed(obs, pts), 180, f"{n} burst pods to be programmed in every proxy")
    return pts


# --------------------------------------------------------------------------- agent cost
def proc_cpu(pid: int) -> tuple[float, float]:
    """(utime+stime, cutime+cstime) in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ, (int(fields[13]) + int(fields[14])) / HZ


def thread_cpu(pid: int) -> dict[int, float]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with suppress(OSError), open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / HZ
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by OS thread id, from `py-spy dump` (Python 3.11 does not name OS threads)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {}
    r = subprocess.run([spy, "dump", "--pid", str(pid), "--nonblocking"], check=False, capture_output=True, text=True, timeout=60)
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'^Thread (\d+) \(\w+\): "([^"]*)"', r.stdout, re.MULTILINE)}


def cgroup_usage(path: Path) -> float:
    for line in (path / "cpu.stat").read_text().splitlines():
        if line.startswith("usage_usec"):
            return int(line.split()[1]) / 1e6
    return 0.0


def daemon_pids() -> dict[str, int]:
    out = {}
    with suppress(OSError, ValueError):
        out["dockerd"] = int(Path("/var/run/docker.pid").read_text().strip())
    r = subprocess.run(["pidof", "containerd"], check=False, capture_output=True, text=True)
    if r.stdout.split():
        out["containerd"] = int(r.stdout.split()[0])
    return out


def daemons_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each daemon still there (someone may restart dockerd meanwhile: then it is left out)."""
    out = {}
    for k, p in pids.items():
        with suppress(OSError):
            out[k] = proc_cpu(p)[0]
    return out


def agent_pid(lab: Lab, host: str) -> int:
    [p] = lab.state.find("process", role="agent", host=host)
    pid = int(p["pid"])
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"agent" in cmd and b"-m" in cmd, f"pid {pid} is not the agent: {cmd[:6]}"
    return pid


def group_threads(per_tid: dict[int, float], names: dict[int, str], pid: int) -> dict[str, float]:
    groups: dict[str, float] = {}
    for tid, cpu in per_tid.items():
        name = names.get(tid) or ("main" if tid == pid else "native (gRPC core, no Python frame)")
        name = re.sub(r"ThreadPoolExecutor-(\d+)_\d+", r"pool-\1", name)
        name = re.sub(r"-\d+$", "-N", re.sub(r"Thread-\d+", "Thread-N", name))
        groups[name] = groups.get(name, 0.0) + cpu
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def measure_cost(lab: Lab, host: str, window: float) -> dict[str, Any]:
    pid = agent_pid(lab, host)
    daemons = daemon_pids()
    cg = lab.cgroup(host)
    a0, c0 = proc_cpu(pid)
    th0 = thread_cpu(pid)
    d0 = daemons_cpu(daemons)
    g0 = cgroup_usage(cg)
    t0 = time.monotonic()
    time.sleep(window)
    a1, c1 = proc_cpu(pid)
    th1 = thread_cpu(pid)
    d1 = daemons_cpu(daemons)
    g1 = cgroup_usage(cg)
    dt = time.monotonic() - t0
    names = thread_names(pid)
    per = {tid: th1[tid] - th0.get(tid, 0.0) for tid in th1}
    return {
        "window_s": dt,
        "agent_pct": 100 * (a1 - a0) / dt,
        "agent_children_pct": 100 * (c1 - c0) / dt,
        "host_cgroup_pct": 100 * (g1 - g0) / dt,
        "daemons_pct": {k: 100 * (d1[k] - d0[k]) / dt for k in d1 if k in d0},
        "threads_pct": {k: 100 * v / dt for k, v in group_threads(per, names, pid).items() if v > 0},
    }


def _frame(f: str) -> str:
    """`func (file.py:123)` -> `func (file.py)`: functions, not lines."""
    return re.sub(r":\d+\)$", ")", f)


def profile_agent(pid: int, seconds: float, raw: Path) -> dict[str, Any]:
    """py-spy (100 Hz, not pausing the agent) for `seconds`: on-CPU samples (py-spy leaves idle
    threads out) by thread name, function (self) and function (inclusive), as % of all samples.
    Run after a measured window, never during one (py-spy costs CPU of its own)."""
    spy = str(Path(sys.executable).parent / "py-spy")
    r = subprocess.run([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
                        "--nonblocking", "--threads", "--format", "raw", "--output", str(raw)],
                       check=False, capture_output=True, text=True)
    if r.returncode != 0 or not raw.exists():
        return {"error": (r.stderr or r.stdout).strip()[-300:]}
    by_thread: dict[str, int] = {}
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = re.sub(r"^thread \(\d+\): ?", "", frames[0]) or "?"
        thread = re.sub(r"-\d+$", "-N", re.sub(r"(Thread|ThreadPoolExecutor)-\d+(_\d+)?", r"\1-N", thread))
        frames = [_frame(f) for f in frames[1:]]
        total += n
        by_thread[thread] = by_thread.get(thread, 0) + n
        if frames:
            self_t[frames[-1]] = self_t.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n

    def top(d: dict[str, int], k: int) -> dict[str, float]:
        return {f: round(100 * c / total, 1) for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:k]} if total else {}

    return {"seconds": seconds, "samples": total, "threads_pct": top(by_thread, 12), "self_pct": top(self_t, 25),
            "inclusive_pct": top(incl, 60), "raw": str(raw)}


def cost_phases(lab: Lab, objects: ObjectStore, obs: Observer, n: int, window: float, settle: float,
                profile: float, runtime: str) -> dict[str, Any]:
    host = lab.topology.hosts[0].name
    out: dict[str, Any] = {"host": host, "pods": n}
    time.sleep(settle)
    out["idle"] = measure_cost(lab, host, window)
    print(f"  agent cost, 0 pods: {out['idle']['agent_pct']:.2f} % of a core", flush=True)
    for label, period in (("probe_10s", None), ("probe_1s", 1)):
        pts = [create_pod(objects, obs, pod_manifest(f"cost{period or 10}-{i}", period=period, node=host))
               for i in range(n)]
        obs.wait(functools.partial(all_ready, pts), 240, f"{n} pods on {host} to be Ready")
        time.sleep(settle)
        out[label] = measure_cost(lab, host, window)
        print(f"  agent cost, {n} pods, readiness every {period or 10} s: {out[label]['agent_pct']:.2f} % of a core",
              flush=True)
        if profile:
            out[label]["profile"] = profile_agent(agent_pid(lab, host), profile,
                                                  Path("/tmp") / f"nodebench-{runtime}-{label}-{os.getpid()}.pyspy.txt")
            print(f"  py-spy ({profile:.0f} s): {out[label]['profile'].get('threads_pct')}", flush=True)
        delete_all(objects, obs, [pt.name for pt in pts])
    return out


# --------------------------------------------------------------------------- per runtime
@contextmanager
def lab_for(runtime: str, hosts: int, proxy: str) -> Iterator[Lab]:
    lab = lab_up(runtime, hosts, proxy)
    with cluster.started(lab, keep_logs_in=Path("/tmp") / f"nodebench-logs-{lab.name}", wait=START_TIMEOUT):
        yield lab


def run_runtime(runtime: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"== {runtime}: lab of {args.hosts} hosts, 1 master, {args.proxy} proxy", flush=True)
    res: dict[str, Any] = {"runtime": runtime}
    with lab_for(runtime, args.hosts, args.proxy) as lab:
        store = cluster.store_for(lab)
        try:
            objects = ObjectStore(store, Keys(LAB_PREFIX))
            hosts = [h.name for h in lab.topology.hosts]
            obs = Observer(objects, hosts, {h: lab.netns(h) for h in hosts}, lab.topology.overlay_network)
            obs.start()
            try:
                applier = Applier(objects)
                applier.write(applier.plan_one(service_manifest(), "bench", namespace=NS))
                # both proxies must have the service before the first pod: a warm-up pod each way
                warm = sequential(objects, obs, 2, "warm")
                delete_all(objects, obs, [p.name for p in warm])
                if args.only in (None, "latency"):
                    pts = sequential(objects, obs, args.pods, "seq")
                    res["sequential"] = {s: summary(v) for s, v in stage_times(obs, pts).items()}
                    res["sequential"]["samples"] = stage_times(obs, pts)
                    res["sequential"]["write_ms_p50"] = 1e3 * pct([p.write_s for p in pts], 50)
                    res["sequential"]["nodes"] = sorted({p.node for p in pts})
                    print_stages(f"{runtime}, {args.pods} one at a time", res["sequential"])
                    delete_all(objects, obs, [p.name for p in pts])
                    if not args.no_burst:
                        pts = burst(objects, obs, args.pods, "burst")
                        res["burst"] = {s: summary(v) for s, v in stage_times(obs, pts).items()}
                        res["burst"]["samples"] = stage_times(obs, pts)
                        res["burst"]["create_span_ms"] = 1e3 * (pts[-1].created - pts[0].created)
                        print_stages(f"{runtime}, burst of {args.pods}", res["burst"])
                        delete_all(objects, obs, [p.name for p in pts])
                if args.only in (None, "cost"):
                    res["cost"] = cost_phases(lab, objects, obs, args.pods, args.cost_window, args.settle,
                                              args.profile, runtime)
            finally:
                obs.close()
        finally:
            store.close()
    return res


def print_stages(title: str, d: dict[str, Any]) -> None:
    print(f"  {title}: " + ", ".join(f"{s} p50 {1e3 * d[s]['p50']:.0f} / p99 {1e3 * d[s]['p99']:.0f} ms"
                                     for s in STAGES), flush=True)


# --------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    load = os.getloadavg()
    docker_v = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], check=False, capture_output=True,
                              text=True).stdout.strip()
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True).stdout.strip()
    changed = subprocess.run([*git, "status", "--porcelain", "--", "orchestrator", "netplane", "stats"], check=False,
                             capture_output=True, text=True).stdout.split("\n")
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "docker": docker_v, "loadavg_at_start": [round(x, 2) for x in load], "commit": commit,
            "uncommitted": sorted(line[3:] for line in changed if line.strip())}


def ms(x: float) -> str:
    return f"{1e3 * x:.0f}"


def write_md(path: Path, out: dict[str, Any]) -> None:
    b = out["baseline"]
    base_run = b["run_d_running"]["p50"]
    base_burst = b.get("burst_run_d_running", {}).get("p50", float("nan"))
    lines = [
        "# Node runtime: pod start-up latency and agent cost (`bench/bench_node.py`)",
        "",
        (f"Machine: {out['machine']['cpus']} cores, kernel {out['machine']['kernel']}, Docker "
        f"{out['machine']['docker']}, Python {out['machine']['python']}; load average "
        f"{'/'.join(str(x) for x in out['machine']['loadavg_at_start'])} at the start (shared with other "
        "sessions' tests and labs: noisy). Code: commit "
        f"{out['machine'].get('commit', '?')}{code_changes(out)}. Lab: "
        f"{out['args']['hosts']} hosts, 1 master, {out['args']['proxy']} proxy; raw numbers and every sample in "
        "`node.json`."),
        "",
        "## Pod start-up latency (ms, from the bench's create write)",
        "",
        ("Pods one at a time (each waits until programmed in every proxy before the next), readiness "
        "tcpSocket every 1 s. *programmed* = the last host's kernel committed a rule holding the pod IP "
        "(`nft monitor` per host netns)."),
        "",
        ("| runtime | run | scheduled p50 / p99 | Running p50 / p99 | Ready p50 / p99 | in Endpoints p50 / p99 "
        "| programmed in every proxy p50 / p99 | Running p50 vs the baseline's p50 |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for rt, r in out["runtimes"].items():
        for run in ("sequential", "burst"):
            if run not in r:
                continue
            d = r[run]
            cells = " | ".join(f"{ms(d[s]['p50'])} / {ms(d[s]['p99'])}" for s in STAGES)
            lines.append(f"| {rt} | {'one at a time' if run == 'sequential' else 'burst of ' + str(d['running']['n'])} "
                         f"| {cells} | {d['running']['p50'] / (base_burst if run == 'burst' else base_run):.2f}× |")
    lines += [
        (f"| baseline | `docker run -d` → Running (same run) | | {ms(b['run_d_running']['p50'])} / "
        f"{ms(b['run_d_running']['p99'])} | | | | 1.00× |"),
        (f"| baseline | `docker run --rm … true` → exited | | {ms(b['run_rm_true']['p50'])} / "
        f"{ms(b['run_rm_true']['p99'])} | | | | |"),
        *([(f"| baseline | {b['burst_run_d_running']['n']} × `docker run -d` at once → Running (the burst's baseline; "
           f"a pod is 2 containers) | | {ms(base_burst)} / {ms(b['burst_run_d_running']['p99'])} | | | | 1.00× |")]
          if "burst_run_d_running" in b else []),
        "",
        f"Anchors: {ANCHORS}.",
        "",
        "Step by step (ms, p50 / p99 of each pod's own step):",
        "",
        ("| runtime | run | create → scheduled | scheduled → Running | Running → Ready | Ready → in Endpoints "
        "| Endpoints → programmed everywhere |"),
        "|---|---|---|---|---|---|---|",
        *step_lines(out),
        "",
        "### Goals",
        "",
    ]
    for rt, r in out["runtimes"].items():
        if "sequential" not in r:
            continue
        g = GOALS_S.get(rt)
        d = r["sequential"]
        for stage, label in (("running", "creation → Running (Kubernetes' SLO definition)"),
                             ("programmed", "creation → programmed in every proxy (end to end)")):
            p99 = d[stage]["p99"]
            verdict = "met" if g is not None and p99 <= g else "**missed**"
            lines.append(f"- {rt}, {label}: p99 {ms(p99)} ms vs goal ≤ {ms(g)} ms: {verdict}" if g else "")
    for rt, r in out["runtimes"].items():
        c = r.get("cost")
        for label, what in (("probe_10s", "readiness every 10 s"), ("probe_1s", "readiness every 1 s")):
            if c and label in c:
                m = c[label]
                tot = m["agent_pct"] + m["agent_children_pct"]
                lines.append(f"- {rt}, agent CPU at {c['pods']} pods, {what}: {tot:.2f} % of a core vs goal ≤ 3 %: "
                             + ("met" if tot <= 3 else "**missed**"))
    lines += ["", ("## Agent CPU (% of one core, h1, over "
              f"{out['args']['cost_window']:.0f} s)"), "",
              ("| runtime | pods on h1 | agent (utime+stime) | agent's reaped children | host cgroup (agent + pods) "
              "| dockerd + containerd (machine-wide) | goal ≤ 3 % |"),
              "|---|---|---|---|---|---|---|"]
    for rt, r in out["runtimes"].items():
        c = r.get("cost")
        if not c:
            continue
        for label, what in (("idle", "0"), ("probe_10s", f"{c['pods']}, readiness every 10 s"),
                            ("probe_1s", f"{c['pods']}, readiness every 1 s")):
            m = c[label]
            dm = " + ".join(f"{v:.1f}" for v in m["daemons_pct"].values())
            verdict = "" if label == "idle" else ("met" if m["agent_pct"] + m["agent_children_pct"] <= 3 else "**missed**")
            lines.append(f"| {rt} | {what} | {m['agent_pct']:.2f} | {m['agent_children_pct']:.2f} | "
                         f"{m['host_cgroup_pct']:.2f} | {dm} | {verdict} |")
    lines += ["", "Agent threads (% of a core; names from `py-spy dump`):", ""]
    for rt, r in out["runtimes"].items():
        c = r.get("cost")
        if not c:
            continue
        for label in ("idle", "probe_10s", "probe_1s"):
            th = c[label]["threads_pct"]
            top = ", ".join(f"{k} {v:.2f}" for k, v in list(th.items())[:8])
            lines.append(f"- {rt}, {label}: {top}")
    if out.get("compare"):
        lines += compare_lines(out, out["compare"])
    if out.get("notes"):
        lines += ["", "## Notes", "", *out["notes"]]
    path.write_text("\n".join(lines) + "\n")


STEPS = (("scheduled", None), ("running", "scheduled"), ("ready", "running"), ("endpoints", "ready"),
         ("programmed", "endpoints"))


def step_lines(out: dict[str, Any]) -> list[str]:
    lines = []
    for rt, r in out["runtimes"].items():
        for run in ("sequential", "burst"):
            if run not in r:
                continue
            sm = r[run]["samples"]
            if len({len(sm[s]) for s in STAGES}) != 1:
                continue  # a pod missed a stage: steps would pair the wrong pods
            cells = []
            for end, start in STEPS:
                xs = [e - (sm[start][i] if start else 0.0) for i, e in enumerate(sm[end])]
                cells.append(f"{ms(pct(xs, 50))} / {ms(pct(xs, 99))}")
            lines.append(f"| {rt} | {'one at a time' if run == 'sequential' else 'burst'} | " + " | ".join(cells) + " |")
    return lines


def code_changes(out: dict[str, Any]) -> str:
    changed = out["machine"].get("uncommitted") or []
    return f" with uncommitted changes to {', '.join(f'`{c}`' for c in changed)}" if changed else ""


def compare_lines(out: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """This run next to another one (`--compare`: e.g. the same benchmark over a proposed change)."""
    label = other.get("label") or other.get("path", "the other run")
    lines = ["", f"## Compared: {label}", "",
             (f"`{Path(other.get('path', '')).name}`: commit {other['machine'].get('commit', '?')}{code_changes(other)}, "
              "on the same machine in the same session (its own baseline: "
             f"`docker run -d` p50 {ms(other['baseline']['run_d_running']['p50'])} ms vs "
             f"{ms(out['baseline']['run_d_running']['p50'])} ms here)."), "",
             "| runtime | run | Running p50 / p99 here → there | Ready p99 | programmed p50 / p99 |",
             "|---|---|---|---|---|"]
    for rt, r in out["runtimes"].items():
        o = other.get("runtimes", {}).get(rt, {})
        for run in ("sequential", "burst"):
            if run not in r or run not in o:
                continue
            a, b = r[run], o[run]
            lines.append(f"| {rt} | {run} | {ms(a['running']['p50'])} / {ms(a['running']['p99'])} → "
                         f"{ms(b['running']['p50'])} / {ms(b['running']['p99'])} | {ms(a['ready']['p99'])} → "
                         f"{ms(b['ready']['p99'])} | {ms(a['programmed']['p50'])} / {ms(a['programmed']['p99'])} → "
                         f"{ms(b['programmed']['p50'])} / {ms(b['programmed']['p99'])} |")
    lines += ["", "| runtime | agent % of a core: 0 pods | 30 pods, probes 10 s | 30 pods, probes 1 s |", "|---|---|---|---|"]
    for rt, r in out["runtimes"].items():
        c, oc = r.get("cost"), other.get("runtimes", {}).get(rt, {}).get("cost")
        if c and oc:
            lines.append(f"| {rt} | " + " | ".join(f"{c[k]['agent_pct']:.2f} → {oc[k]['agent_pct']:.2f}"
                                                  for k in ("idle", "probe_10s", "probe_1s")) + " |")
    return lines


def add_extras(out: dict[str, Any], args: argparse.Namespace) -> None:
    if args.notes:
        out["notes"] = Path(args.notes).read_text().splitlines()
    if args.compare:
        out["compare"] = {**json.loads(Path(args.compare).read_text()), "path": args.compare, "label": args.compare_label}
        out["compare"].pop("compare", None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtimes", default="docker,namespaces")
    ap.add_argument("--pods", type=int, default=30)
    ap.add_argument("--hosts", type=int, default=2)
    ap.add_argument("--proxy", default="iptables", choices=("iptables", "nftables"))
    ap.add_argument("--only", choices=("latency", "cost"))
    ap.add_argument("--no-burst", action="store_true")
    ap.add_argument("--baseline-samples", type=int, default=30)
    ap.add_argument("--cost-window", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after pods are Ready before a cost window")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "node"), help="path without .md/.json")
    ap.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                    help="py-spy the agent for this long after each loaded cost window (not during it)")
    ap.add_argument("--compare", metavar="JSON", help="another run's node.json to set beside this one in the .md")
    ap.add_argument("--compare-label", default="", help="what the --compare run measured")
    ap.add_argument("--notes", default="", help="a file whose lines are appended to the .md's notes")
    ap.add_argument("--render", metavar="JSON", help="no run: write the .md from a run's JSON (with --notes, --compare)")
    args = ap.parse_args()
    if args.render:
        done: dict[str, Any] = json.loads(Path(args.render).read_text())
        add_extras(done, args)
        write_md(Path(args.out).with_suffix(".md"), done)
        return 0
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    out: dict[str, Any] = {"machine": machine(), "args": vars(args), "runtimes": {}}
    print("baseline: docker run, same image", flush=True)
    out["baseline"] = docker_baseline(args.baseline_samples)
    b = out["baseline"]
    print(f"  docker run -d -> Running p50 {ms(b['run_d_running']['p50'])} / p99 {ms(b['run_d_running']['p99'])} ms; "
          f"docker run --rm true p50 {ms(b['run_rm_true']['p50'])} / p99 {ms(b['run_rm_true']['p99'])} ms; "
          f"{args.baseline_samples} docker run -d at once p50 {ms(b['burst_run_d_running']['p50'])} / "
          f"p99 {ms(b['burst_run_d_running']['p99'])} ms", flush=True)
    base = Path(args.out)
    for rt in args.runtimes.split(","):
        out["runtimes"][rt] = run_runtime(rt, args)
        base.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")  # what we have, if a later part fails
    out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    add_extras(out, args)
    base.with_suffix(".json").write_text(json.dumps({k: v for k, v in out.items() if k != "compare"}, indent=1) + "\n")
    write_md(base.with_suffix(".md"), out)
    print(base.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
