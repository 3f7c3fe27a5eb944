"""The Kubernetes API server under load (issue 11's benchmarks), against a fresh local etcd:

* mutating calls (create and strategic-merge patch of a pod) and single GETs at 10,000 stored
  pods, with 50 concurrent clients: closed loop (each client sends its next request when the
  last one is answered: the server saturated) and open loop (the 50 clients offer --rates
  requests per second together); p50/p99 and throughput. The bare etcd put (the same pod
  value, one client and 50 concurrent ones) in the same run is the baseline. The closed-loop
  creates and patches run in --rounds rounds, each right after its own 50-client bare put;
  their p99 is of all rounds' requests together;
* watch fan-out: 100 watchers of all pods, one pod change at a time, the time from sending the
  PATCH until each watcher has read the event (p50/p99 over every delivery);
* LIST of the 10,000 pods as JSON (one unpaged GET), and paged as kubectl reads (limit=500).

The server is `netplane apiserver` as a process of its own (as deployed; started through a
small probe that logs its garbage collections), over HTTPS on 127.0.0.1 with a bearer token;
the load comes from aiohttp clients in this process (one session and one keep-alive
connection per client or watcher). The official `kubernetes` client does a sanity check (read,
paged list with a selector, patch, watch). Goals: p99 <= 50 ms for mutating calls (Kubernetes'
SLO: 1 s), watch delivery p99 <= 100 ms, LIST <= 1 s. Per phase it reports the CPU of the
server, etcd and the clients, and the server's garbage collections.

    .venv/bin/python bench/bench_api.py [--pods 10000] [--clients 50] [--requests 5000] [--rounds 3]
        [--rates 100,200] [--watchers 100] [--changes 50] [--only mutate|get|watch|list]
        [--profile] [--gc-threshold A,B,C | --gc-freeze S] [--out api]

--profile reruns the phases briefly with py-spy attached (only the thread holding the GIL is
sampled) after the measured ones and puts the top frames in the results. --gc-threshold and
--gc-freeze are experiments on the server process's garbage collector. Writes
bench/results/<out>.json and <out>.md (the .md keeps what follows its notes marker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netplane.store import EtcdConfig, EtcdStore, Keys, codec
from netplane.store.embedded import EmbeddedEtcd
from netplane.store.embedded import free_loopback_port as free_port
from orchestrator import saadmission
from orchestrator.objects import meta
from orchestrator.storage import ObjectStore
from orchestrator.validation import admit

RESULTS = ROOT / "bench" / "results"
PREFIX = "/benchapi"
TOKEN = "bench-token-0123456789abcdef"
NS = "default"  # the 10,000 stored pods
NEW_NS = "bench-new"  # where the benchmark's creates go, so `default` keeps exactly --pods
OPEN_S = 10.0  # seconds of each open-loop run
GOALS = {"mutating_p99_ms": 50.0, "kube_slo_mutating_p99_ms": 1000.0, "watch_p99_ms": 100.0, "list_s": 1.0}


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def summary(lat_s: list[float], wall: float | None = None) -> dict[str, float]:
    out = {"n": len(lat_s), "p50_ms": round(pct(lat_s, 0.50) * 1000, 2), "p99_ms": round(pct(lat_s, 0.99) * 1000, 2),
           "max_ms": round(max(lat_s) * 1000, 2)}
    if wall:
        out["per_s"] = round(len(lat_s) / wall, 1)
    return out


def proc_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- objects
def stored_pod(i: int) -> dict[str, Any]:
    """A pod as a running cluster stores it: spec (with the token volume ServiceAccount
    admission adds), bound to a node, with a kubelet's status (about 2.5 KB of JSON)."""
    name = f"pod-{i:05d}"
    now = meta.format_time(datetime.now(UTC))
    p = saadmission.admit_pod(admit({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": NS, "labels": {"app": f"app-{i % 100}", "tier": "bench"}},
               "spec": {"nodeName": f"node-{i % 100:03d}", "containers": [{
                   "name": "web", "image": "netplane/busybox:latest", "command": ["sleep", "3600"],
                   "ports": [{"name": "http", "containerPort": 8080}],
                   "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}).object,
                              lambda ns, name: None)
    p["status"] = {
        "phase": "Running", "hostIP": f"10.0.{i % 100}.1", "podIP": f"10.244.{i % 250}.{i % 200 + 2}",
        "podIPs": [{"ip": f"10.244.{i % 250}.{i % 200 + 2}"}], "startTime": now, "qosClass": "Burstable",
        "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                       for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
        "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0, "started": True,
                               "image": "netplane/busybox:latest", "imageID": "",
                               "containerID": f"namespaces://{i:08x}", "state": {"running": {"startedAt": now}},
                               "lastState": {}}],
    }
    return p


def new_pod_body(name: str) -> bytes:
    """What a client POSTs: a pod spec, as kubectl would send it."""
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "labels": {"app": "created", "tier": "bench"}},
                       "spec": {"containers": [{"name": "web", "image": "netplane/busybox:latest",
                                                "command": ["sleep", "3600"],
                                                "ports": [{"name": "http", "containerPort": 8080}]}]}}).encode()


def prefill(objects: ObjectStore, n: int) -> float:
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: objects.create(stored_pod(i)), range(n)))
    return time.monotonic() - t0


# --------------------------------------------------------------------------- bare etcd
def bare_puts(store: EtcdStore, n: int, clients: int, *, one_client: bool = True) -> dict[str, Any]:
    """etcd puts of the same pod value: one client in a row (unless not `one_client`), then
    `clients` threads at once."""
    value = codec.dumps(stored_pod(0))
    lat: list[float] = []
    t0 = time.monotonic()
    for i in range(n // 5 if one_client else 0):
        s = time.perf_counter()
        store.put(f"{PREFIX}/bare/one/{i}", value)
        lat.append(time.perf_counter() - s)
    one = summary(lat, time.monotonic() - t0) if lat else None
    lats: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def client() -> None:
        mine = []
        for i in counter:
            s = time.perf_counter()
            store.put(f"{PREFIX}/bare/many/{i}", value)
            mine.append(time.perf_counter() - s)
        with lock:
            lats.extend(mine)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    many = summary(lats, time.monotonic() - t0)
    store.delete_prefix(f"{PREFIX}/bare/")
    return {"one_client": one, f"{clients}_clients": many, "value_bytes": len(value)}


# --------------------------------------------------------------------------- the server
# `netplane apiserver` as it is, in a process that also notes every garbage collection (when,
# which generation, how long) and writes them to GC_FILE at exit. Experiments behind the GC
# finding in api.md: GC_FREEZE=S calls gc.freeze() every S seconds, GC_THRESHOLD=A,B,C sets
# gc.set_threshold(A, B, C).
GC_PROBE = """
import atexit, gc, json, os, sys, threading, time
pauses, t0 = [], [0.0]
def cb(phase, info):
    if phase == "start":
        t0[0] = time.monotonic()
    else:
        pauses.append((t0[0], info["generation"], time.monotonic() - t0[0]))
gc.callbacks.append(cb)
atexit.register(lambda: open(os.environ["GC_FILE"], "w").write(json.dumps(pauses)))
if os.environ.get("GC_THRESHOLD"):  # in place of the server's own (netplane.gctune)
    import netplane.gctune
    netplane.gctune.SERVER_THRESHOLDS = tuple(map(int, os.environ["GC_THRESHOLD"].split(",")))
if os.environ.get("SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["SWITCH_INTERVAL"]))
every = float(os.environ.get("GC_FREEZE") or 0)
if every:
    def freezer():
        while True:
            time.sleep(every)
            gc.freeze()
    threading.Thread(target=freezer, daemon=True).start()
from netplane.cli.main import main
sys.argv[0] = "netplane"
main()
"""


class Server:
    def __init__(self, etcd: str, state: Path, log: Path, *, gc_freeze: float = 0.0, gc_threshold: str = "",
                 switch_interval: float = 0.0) -> None:
        self.port = free_port()
        self.state = state
        self.gc_file = state.parent / "apiserver-gc.json"
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        (state / "tokens.csv").write_text(f'{TOKEN},bench,bench-uid,"system:masters"\n')
        self.log = log.open("w")
        env = {**os.environ, "GC_FILE": str(self.gc_file), "GC_FREEZE": str(gc_freeze or ""),
               "GC_THRESHOLD": gc_threshold, "SWITCH_INTERVAL": str(switch_interval or "")}
        self.proc = subprocess.Popen([sys.executable, "-c", GC_PROBE, "--log-level", "warning", "--etcd", etcd,
                                      "--prefix", PREFIX, "apiserver", "--listen", f"127.0.0.1:{self.port}",
                                      "--state-dir", str(state)], cwd=ROOT, stdout=self.log, env=env,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = f"https://127.0.0.1:{self.port}"
        self.ssl = ssl.create_default_context(cafile=None)
        deadline = time.monotonic() + 60
        while not (state / "apiserver.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the API server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.ssl = ssl.create_default_context(cafile=str(state / "ca.crt"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> list[tuple[float, int, float]]:
        """Stop it; its garbage collections (start, generation, seconds)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        try:
            return [tuple(x) for x in json.loads(self.gc_file.read_text())]
        except (OSError, ValueError):
            return []


def gc_in(pauses: list[tuple[float, int, float]], window: tuple[float, float]) -> dict[str, Any]:
    """The server's collections within a phase: how many, the longest, all of them together."""
    mine = [(g, d) for t, g, d in pauses if window[0] <= t <= window[1]]
    full = [d for g, d in mine if g == 2]
    return {"collections": len(mine), "total_ms": round(1000 * sum(d for _, d in mine), 1),
            "gen2": len(full), "gen2_max_ms": round(1000 * max(full, default=0.0), 1)}


class Profiler:
    """py-spy on the server for one phase, summarized after: only the thread holding the GIL is
    sampled (`--gil`), so the shares are of the interpreter's busy time (threads blocked in
    gRPC or on a lock are not counted)."""

    def __init__(self, pid: int, out: Path, enabled: bool) -> None:
        self.pid, self.out, self.p = pid, out, None
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if enabled and Path(exe).exists():
            self.p = subprocess.Popen([exe, "record", "-p", str(pid), "-r", "250", "-f", "raw", "-o", str(out),
                                       "--nonblocking", "--gil"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached

    def finish(self, top: int = 12) -> dict[str, Any] | None:
        if self.p is None:
            return None
        self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        if not self.out.exists():
            return None
        own: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            frames = [_short(f) for f in stack.split(";")[1:]]  # [0] is the thread
            total += int(n)
            if frames:
                own[frames[-1]] += int(n)
            for f in set(frames):
                incl[f] += int(n)
        if not total:
            return None
        return {"samples": total,
                "self": [(f, round(100 * c / total, 1)) for f, c in own.most_common(top)],
                "inclusive": [(f, round(100 * c / total, 1)) for f, c in incl.most_common(top * 3)
                              if f.split(" (")[0] not in GENERIC][:top]}


# frames every sample passes through (threads, the event loop, the pool): left out of "inclusive"
GENERIC = {"Thread.run", "Thread._bootstrap", "Thread._bootstrap_inner", "_worker", "_WorkItem.run",
           "BaseEventLoop.run_forever", "BaseEventLoop._run_once", "APIServer.start.<locals>.serve",
           "Handle._run", "Context.run.<locals>.<lambda>", "<module>", "main", "apiserver", "invoke",
           "Command.invoke", "MultiCommand.invoke", "Group.invoke", "Context.invoke", "new_func"}


def _short(frame: str) -> str:
    """'func (path/to/file.py:12)' -> 'func (file.py)'."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})"


# --------------------------------------------------------------------------- load
def session(server: Server, limit: int = 1) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, ssl=server.ssl),
                                 headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=aiohttp.ClientTimeout(total=60))


Request = Callable[[aiohttp.ClientSession, int], Awaitable[int]]


async def closed_loop(server: Server, clients: int, n: int, request: Request, ok: tuple[int, ...],
                      lat: list[float] | None = None) -> dict[str, Any]:
    """`n` requests by `clients` closed-loop clients; their latencies appended to `lat` too."""
    sessions = [session(server) for _ in range(clients)]
    lat = [] if lat is None else lat
    first = len(lat)
    bad: Counter[int] = Counter()
    counter = iter(range(n))

    async def client(s: aiohttp.ClientSession) -> None:
        for i in counter:
            t = time.perf_counter()
            code = await request(s, i)
            lat.append(time.perf_counter() - t)
            if code not in ok:
                bad[code] += 1

    try:
        # warm: every connection's TLS handshake done before the clock starts
        await asyncio.gather(*(s.get(f"{server.url}/version") for s in sessions))
        t0 = time.monotonic()
        await asyncio.gather(*(client(s) for s in sessions))
        wall = time.monotonic() - t0
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    out: dict[str, Any] = {**summary(lat[first:], wall), "wall_s": round(wall, 3)}
    if bad:
        out["errors"] = dict(bad)
    return out


async def open_loop(server: Server, clients: int, rate: float, duration: float, request: Request,
                    ok: tuple[int, ...]) -> dict[str, Any]:
    """`clients` clients offering `rate` requests per second together for `duration` seconds
    (each a Poisson process of rate/clients). Latency counts from when a request was due, so a
    client still waiting for its last answer adds that wait (no coordinated omission)."""
    sessions = [session(server) for _ in range(clients)]
    lat: list[float] = []
    bad: Counter[int] = Counter()
    rnd = random.Random(3)
    counter = iter(range(10**9))

    async def client(s: aiohttp.ClientSession, start: float) -> None:
        due = start + rnd.expovariate(rate / clients)
        while due < start + duration:
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            code = await request(s, next(counter))
            lat.append(time.perf_counter() - due)
            if code not in ok:
                bad[code] += 1
            due += rnd.expovariate(rate / clients)

    try:
        await asyncio.gather(*(s.get(f"{server.url}/version") for s in sessions))
        start = time.perf_counter()
        await asyncio.gather(*(client(s, start) for s in sessions))
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    out: dict[str, Any] = {"offered_per_s": rate, **summary(lat, duration)}
    if bad:
        out["errors"] = dict(bad)
    return out


WINDOWS: dict[str, tuple[float, float]] = {}  # phase -> monotonic start, end (for the GC log)


def phase(server: Server, etcd_pid: int | None, name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    cpu0 = (proc_cpu(server.pid), proc_cpu(etcd_pid), time.process_time())
    t0 = time.monotonic()
    res = run()
    WINDOWS[name] = (t0, time.monotonic())
    wall = time.monotonic() - t0
    cpu = (proc_cpu(server.pid) - cpu0[0], proc_cpu(etcd_pid) - cpu0[1], time.process_time() - cpu0[2])
    res["cpu_s"] = {"apiserver": round(cpu[0], 2), "etcd": round(cpu[1], 2), "clients": round(cpu[2], 2),
                    "wall": round(wall, 2)}
    print(f"{name}: {json.dumps(res)}", flush=True)
    return res


def profiled(server: Server, name: str, tmp: Path, run: Callable[[], Any]) -> dict[str, Any] | None:
    """A shorter run of a phase with py-spy attached (apart from the measured one: py-spy
    takes CPU from the same two cores)."""
    prof = Profiler(server.pid, tmp / f"profile-{name}.txt", True)
    run()
    return prof.finish()


def _patcher(server: Server, n_pods: int) -> Request:
    """A strategic-merge PATCH of a label (kubectl's patch type) of random stored pods."""
    rnd = random.Random(1)
    picks = [rnd.randrange(n_pods) for _ in range(10_000)]

    async def patch(s: aiohttp.ClientSession, i: int) -> int:
        body = json.dumps({"metadata": {"labels": {"patched": str(i)}}}).encode()
        async with s.patch(f"{server.url}/api/v1/namespaces/{NS}/pods/pod-{picks[i % len(picks)]:05d}", data=body,
                           headers={"Content-Type": "application/strategic-merge-patch+json"}) as r:
            await r.read()
            return r.status

    return patch


_MADE = iter(range(10**9))  # new pods' numbers, unique over every phase that creates


def _creator(server: Server) -> Request:
    """A POST of a new pod (each one a new name)."""
    async def create(s: aiohttp.ClientSession, i: int) -> int:
        async with s.post(f"{server.url}/api/v1/namespaces/{NEW_NS}/pods", data=new_pod_body(f"new-{next(_MADE):06d}"),
                          headers={"Content-Type": "application/json"}) as r:
            await r.read()
            return r.status

    return create


def bench_mutating(server: Server, store: EtcdStore, etcd_pid: int | None, n_pods: int, clients: int, n: int,
                   rounds: int, rates: list[float]) -> dict[str, Any]:
    """`rounds` rounds of: the bare etcd put by `clients` threads (the same-round baseline),
    then `n` creates and `n` patches by `clients` closed-loop clients. A round is a few
    seconds, and this machine's speed changes from one minute to the next: the verdicts take
    the p99 of all rounds' requests together, and each round is reported beside its own
    baseline, with the CPU a request took the server, etcd and the clients (a cost that
    moves less with the machine's speed than latency does). Then the open-loop runs."""
    create = _creator(server)
    patch = _patcher(server, n_pods)
    lat: dict[str, list[float]] = {"create": [], "patch": []}
    walls = {"create": 0.0, "patch": 0.0}
    out: dict[str, Any] = {"rounds": [], "create_open": [], "patch_open": []}
    for _ in range(rounds):
        r: dict[str, Any] = {"bare_etcd_put": bare_puts(store, n, clients, one_client=False)[f"{clients}_clients"]}
        for verb, request, ok in (("create", create, (201,)), ("patch", patch, (200,))):
            cpu0 = (proc_cpu(server.pid), proc_cpu(etcd_pid), time.process_time())
            r[verb] = asyncio.run(closed_loop(server, clients, n, request, ok, lat[verb]))
            cpu = (proc_cpu(server.pid) - cpu0[0], proc_cpu(etcd_pid) - cpu0[1], time.process_time() - cpu0[2])
            r[verb]["cpu_us"] = {k: round(1e6 * v / n) for k, v in zip(("apiserver", "etcd", "clients"), cpu,
                                                                        strict=True)}
            walls[verb] += r[verb]["wall_s"]
        out["rounds"].append(r)
        print(f"round: {json.dumps(r)}", flush=True)
    for verb in ("create", "patch"):
        out[verb] = summary(lat[verb], walls[verb])
        errors: Counter[int] = Counter()
        for r in out["rounds"]:
            errors.update(r[verb].get("errors") or {})
        if errors:
            out[verb]["errors"] = dict(errors)
    for rate in rates:
        out["create_open"].append(asyncio.run(open_loop(server, clients, rate, OPEN_S, create, (201,))))
        out["patch_open"].append(asyncio.run(open_loop(server, clients, rate, OPEN_S, patch, (200,))))
    return out


def bench_get(server: Server, n_pods: int, clients: int, n: int, rates: list[float]) -> dict[str, Any]:
    rnd = random.Random(2)
    picks = [rnd.randrange(n_pods) for _ in range(n)]

    async def get(s: aiohttp.ClientSession, i: int) -> int:
        async with s.get(f"{server.url}/api/v1/namespaces/{NS}/pods/pod-{picks[i % n]:05d}") as r:
            await r.read()
            return r.status

    out = asyncio.run(closed_loop(server, clients, n, get, (200,)))
    out["open"] = [asyncio.run(open_loop(server, clients, rate, OPEN_S, get, (200,))) for rate in rates]
    return out


async def _watch_fanout(server: Server, watchers: int, changes: int) -> dict[str, Any]:
    control = session(server)
    async with control.get(f"{server.url}/api/v1/namespaces/{NS}/pods?limit=1") as r:
        rv = (await r.json())["metadata"]["resourceVersion"]
    sessions = [session(server) for _ in range(watchers)]
    seen: list[dict[str, float]] = [{} for _ in range(watchers)]
    events = [asyncio.Event() for _ in range(watchers)]
    want: list[str] = [""]
    ready = 0

    async def watcher(k: int) -> None:
        nonlocal ready
        async with sessions[k].get(f"{server.url}/api/v1/pods?watch=1&resourceVersion={rv}",
                                   timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
            assert r.status == 200, r.status
            ready += 1
            async for line in r.content:
                now = time.perf_counter()
                ev = json.loads(line)
                mark = ((ev.get("object") or {}).get("metadata", {}).get("labels") or {}).get("fanout")
                if mark is not None:
                    seen[k][mark] = now
                    if mark == want[0]:
                        events[k].set()

    tasks = [asyncio.create_task(watcher(k)) for k in range(watchers)]
    lat: list[float] = []
    last: list[float] = []
    missed = 0
    try:
        while ready < watchers:
            await asyncio.sleep(0.01)
        for c in range(-1, changes):  # change -1: every watch is open and streaming
            mark = f"c{c}"
            want[0] = mark
            for e in events:
                e.clear()
            body = json.dumps({"metadata": {"labels": {"fanout": mark}}}).encode()
            t = time.perf_counter()
            async with control.patch(f"{server.url}/api/v1/namespaces/{NS}/pods/pod-{(c + 1) % 100:05d}",
                                     data=body, headers={"Content-Type": "application/merge-patch+json"}) as r:
                await r.read()
                assert r.status == 200, r.status
            try:
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 10)
            except TimeoutError:
                pass
            if c < 0:
                continue
            got = [s[mark] - t for s in seen if mark in s]
            missed += watchers - len(got)
            lat.extend(got)
            if got:
                last.append(max(got))
            await asyncio.sleep(0.02)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in sessions))
        await control.close()
    return {"watchers": watchers, "changes": changes, "deliveries": summary(lat),
            "all_delivered": summary(last), "missed": missed}


def bench_watch(server: Server, watchers: int, changes: int) -> dict[str, Any]:
    return asyncio.run(_watch_fanout(server, watchers, changes))


async def _list(server: Server, n_pods: int, repeats: int) -> dict[str, Any]:
    s = session(server)
    try:
        await (await s.get(f"{server.url}/version")).read()
        times, parse, sizes = [], [], []
        for _ in range(repeats):
            t = time.perf_counter()
            async with s.get(f"{server.url}/api/v1/namespaces/{NS}/pods") as r:
                body = await r.read()
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
            items = json.loads(body)["items"]
            parse.append(time.perf_counter() - t)
            assert len(items) == n_pods, len(items)
            sizes.append(len(body))
        paged = []
        for _ in range(max(1, repeats // 2)):
            t = time.perf_counter()
            cont, count = "", 0
            while True:
                async with s.get(f"{server.url}/api/v1/namespaces/{NS}/pods",
                                 params={"limit": "500", **({"continue": cont} if cont else {})}) as r:
                    page = await r.json()
                count += len(page["items"])
                cont = page["metadata"].get("continue") or ""
                if not cont:
                    break
            paged.append(time.perf_counter() - t)
            assert count == n_pods, count
    finally:
        await s.close()
    return {"pods": n_pods, "unpaged": summary(times), "client_json_parse": summary(parse),
            "body_mb": round(statistics.mean(sizes) / 1e6, 1), "paged_limit_500": summary(paged)}


def bench_list(server: Server, n_pods: int, repeats: int = 10) -> dict[str, Any]:
    return asyncio.run(_list(server, n_pods, repeats))


def official_client_check(server: Server, n_pods: int) -> dict[str, Any]:
    """The official client reads, lists, patches and watches what the benchmark made."""
    from kubernetes import client, watch

    cfg = client.Configuration()
    cfg.host = server.url
    cfg.ssl_ca_cert = str(server.state / "ca.crt")
    cfg.api_key = {"authorization": TOKEN}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as api:
        v1 = client.CoreV1Api(api)
        t = time.perf_counter()
        pod = v1.read_namespaced_pod("pod-00042", NS)
        get_ms = (time.perf_counter() - t) * 1000
        assert pod.status.phase == "Running" and pod.spec.node_name == "node-042"
        page = v1.list_namespaced_pod(NS, limit=10, label_selector="app=app-42")
        assert [p.metadata.name for p in page.items] == ["pod-00042", "pod-00142", "pod-00242", "pod-00342",
                                                         "pod-00442", "pod-00542", "pod-00642", "pod-00742",
                                                         "pod-00842", "pod-00942"][:len(page.items)]
        assert page.metadata._continue, "a continue token for the rest"
        rv = page.metadata.resource_version
        v1.patch_namespaced_pod("pod-00042", NS, {"metadata": {"labels": {"checked": "yes"}}})
        assert v1.read_namespaced_pod("pod-00042", NS).metadata.labels["checked"] == "yes"
        w = watch.Watch()
        got = None
        for ev in w.stream(v1.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=10,
                           field_selector="metadata.name=pod-00042"):
            got = (ev["type"], ev["object"].metadata.labels.get("checked"))
            w.stop()
        assert got == ("MODIFIED", "yes"), got
    return {"ok": True, "read_ms": round(get_ms, 1), "pods": n_pods}


# --------------------------------------------------------------------------- report
def verdicts(out: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    rows = []
    g = GOALS
    if "mutating" in out:
        for verb in ("create", "patch"):
            p99 = out["mutating"][verb]["p99_ms"]
            rows.append((f"{verb} p99 (50 clients)", f"{p99} ms", f"<= {g['mutating_p99_ms']:.0f} ms",
                         p99 <= g["mutating_p99_ms"]))
            rows.append((f"{verb} p99, Kubernetes' SLO", f"{p99} ms", f"<= {g['kube_slo_mutating_p99_ms']:.0f} ms",
                         p99 <= g["kube_slo_mutating_p99_ms"]))
    if "get" in out:
        p99 = out["get"]["p99_ms"]
        rows.append(("GET p99 (50 clients)", f"{p99} ms", f"<= {g['mutating_p99_ms']:.0f} ms",
                     p99 <= g["mutating_p99_ms"]))
    if "watch" in out:
        p99 = out["watch"]["deliveries"]["p99_ms"]
        rows.append((f"watch fan-out p99 ({out['watch']['watchers']} watchers)", f"{p99} ms",
                     f"<= {g['watch_p99_ms']:.0f} ms", p99 <= g["watch_p99_ms"] and not out["watch"]["missed"]))
    if "list" in out:
        t = out["list"]["unpaged"]["p50_ms"] / 1000
        rows.append((f"LIST {out['list']['pods']} pods (JSON, p50)", f"{t:.3f} s", f"<= {g['list_s']:.0f} s",
                     t <= g["list_s"]))
    return rows


NOTES_MARK = "<!-- notes: kept when the benchmark rewrites this file -->"


def write_md(out: dict[str, Any], path: Path) -> None:
    env = out["env"]
    kept = ""
    if path.exists() and NOTES_MARK in path.read_text():
        kept = path.read_text().split(NOTES_MARK, 1)[1]
    c = out["clients"]
    freeze = f", gc.freeze() every {env['gc_freeze_s']:.0f} s" if env.get("gc_freeze_s") else ""
    freeze += f", gc.set_threshold({env['gc_threshold']})" if env.get("gc_threshold") else ""
    if env.get("switch_interval_s") and env["switch_interval_s"] != 0.005:
        freeze += f", sys.setswitchinterval({env['switch_interval_s']})"
    lines = [
        "# Kubernetes API server benchmark",
        "",
        (f"`bench/bench_api.py`, {env['date']}: `netplane apiserver` (its own process, {env['workers']} worker "
        f"threads{freeze}) over a "
        f"local etcd {env['etcd']} on this machine's disk ({env['cpus']} cores), {out['pods']} pods stored "
        f"(~{out.get('list', {}).get('body_mb', '?')} MB as a JSON list). Clients: {env['client']} over HTTPS on "
        "127.0.0.1 with a bearer token, one keep-alive connection each, in one process beside the server. "
        f"*Closed loop*: {c} clients each send their next request when the last is answered (the server "
        f"saturated, so p50 ≈ {c} / throughput). *Open loop*: the {c} clients offer a fixed rate together "
        "(Poisson), latency counted from when each request was due. The machine's 1-minute load "
        f"average was {env.get('loadavg_1m_before')} before and {env.get('loadavg_1m_after')} after the run "
        "(anything above ~2 means other work shared the two cores)."),
        "",
        "| goal | measured | target | met |",
        "|---|---|---|---|",
    ]
    for name, got, target, ok in verdicts(out):
        lines.append(f"| {name} | {got} | {target} | {'yes' if ok else '**no**'} |")
    lines += ["", f"## Latency at {out['pods']:,} stored pods", "",
              "| call | load | p50 ms | p99 ms | max ms | per s |", "|---|---|---|---|---|---|"]

    def row(label: str, load: str, r: dict[str, Any] | None) -> None:
        if r:
            lines.append(f"| {label} | {load} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['per_s']} |"
                         + (f" errors {r['errors']}" if r.get("errors") else ""))

    if "bare_etcd_put" in out:
        b = out["bare_etcd_put"]
        row(f"bare etcd put ({b['value_bytes']} B pod)", "1 client, closed", b["one_client"])
        row(f"bare etcd put ({b['value_bytes']} B pod)", f"{c} clients, closed", b[f"{c}_clients"])
    m = out.get("mutating", {})
    g = out.get("get", {})
    for label, key in (("create pod (POST)", "create"), ("patch pod (strategic merge)", "patch")):
        row(label, f"{c} clients, closed", m.get(key))
        for r in m.get(f"{key}_open") or []:
            row(label, f"{c} clients, open, {r['offered_per_s']:.0f}/s offered", r)
    row("get pod", f"{c} clients, closed", g or None)
    for r in g.get("open") or []:
        row("get pod", f"{c} clients, open, {r['offered_per_s']:.0f}/s offered", r)
    if m.get("rounds"):
        lines += ["", (f"The closed-loop creates and patches above are {len(m['rounds'])} rounds together "
                       f"(p99 of all their requests); each round ran right after its own bare etcd put by {c} "
                       "clients:"), "",
                  ("| round | etcd put p99 ms | etcd puts/s | create p50 ms | create p99 ms | creates/s (÷ etcd) "
                   "| patch p50 ms | patch p99 ms | patches/s (÷ etcd) |"),
                  "|---|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(m["rounds"], 1):
            e, cr, pa = r["bare_etcd_put"], r["create"], r["patch"]
            lines.append(f"| {i} | {e['p99_ms']} | {e['per_s']:.0f} | {cr['p50_ms']} | {cr['p99_ms']} | "
                         f"{cr['per_s']:.0f} ({cr['per_s'] / e['per_s']:.3f}) | {pa['p50_ms']} | {pa['p99_ms']} | "
                         f"{pa['per_s']:.0f} ({pa['per_s'] / e['per_s']:.3f}) |")
        if all("cpu_us" in r["create"] for r in m["rounds"]):
            lines += ["", "CPU a request in each round, µs (API server / etcd / the clients):", "",
                      "| round | create | patch |", "|---|---|---|"]
            for i, r in enumerate(m["rounds"], 1):
                cells = [" / ".join(str(r[v]["cpu_us"][k]) for k in ("apiserver", "etcd", "clients"))
                         for v in ("create", "patch")]
                lines.append(f"| {i} | {cells[0]} | {cells[1]} |")
    if "watch" in out:
        w = out["watch"]
        d, a = w["deliveries"], w["all_delivered"]
        lines += ["", f"## Watch fan-out ({w['watchers']} watchers of all pods, {w['changes']} changes, one at a time)",
                  "", "| | p50 ms | p99 ms | max ms |", "|---|---|---|---|",
                  (f"| PATCH sent → one watcher has read the event ({d['n']} deliveries) | {d['p50_ms']} | "
                   f"{d['p99_ms']} | {d['max_ms']} |"),
                  f"| PATCH sent → the last of the {w['watchers']} has it | {a['p50_ms']} | {a['p99_ms']} | {a['max_ms']} |",
                  "", f"Missed deliveries: {w['missed']}."]
    if "list" in out:
        li = out["list"]
        lines += ["", f"## LIST of {li['pods']} pods", "", "| | p50 ms | max ms |", "|---|---|---|",
                  f"| one unpaged GET, body read ({li['body_mb']} MB) | {li['unpaged']['p50_ms']} | {li['unpaged']['max_ms']} |",
                  f"| the client's json.loads of it | {li['client_json_parse']['p50_ms']} | {li['client_json_parse']['max_ms']} |",
                  (f"| paged, limit=500 (kubectl's way), all pages | {li['paged_limit_500']['p50_ms']} | "
                   f"{li['paged_limit_500']['max_ms']} |")]
    phases = [k for k in ("mutating", "get", "watch", "list") if k in out]
    if phases:
        lines += ["", "## Where the time goes", "",
                  ("CPU seconds over each phase (two cores: at most 2 × wall), and the API server's garbage "
                   "collections in it."), "",
                  "| phase | wall s | apiserver | etcd | clients | GCs | GC total ms | full (gen 2) GCs | longest ms |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k in phases:
            cpu, gcs = out[k].get("cpu_s", {}), out[k].get("gc", {})
            lines.append(f"| {k} | {cpu.get('wall')} | {cpu.get('apiserver')} | {cpu.get('etcd')} | "
                         f"{cpu.get('clients')} | {gcs.get('collections', '?')} | {gcs.get('total_ms', '?')} | "
                         f"{gcs.get('gen2', '?')} | {gcs.get('gen2_max_ms', '?')} |")
    for k, p in out.get("profiles", {}).items():
        lines += ["", (f"### py-spy, {k} (a shorter rerun; {p['samples']} samples of the API server's thread "
                       "holding the GIL)"), "", "| self | % | | inclusive | % |", "|---|---|---|---|---|"]
        for (fs, ps), (fi, pi) in zip(p["self"], p["inclusive"], strict=False):
            lines.append(f"| `{fs}` | {ps} | | `{fi}` | {pi} |")
    if "official_client" in out:
        oc = out["official_client"]
        lines += ["", ("Official `kubernetes` client sanity check (read, paged list with a selector, patch, "
                       f"watch of the change): {'passed' if oc.get('ok') else 'FAILED: ' + str(oc.get('error'))}.")]
    lines += ["", NOTES_MARK]
    path.write_text("\n".join(lines) + (kept if kept else "\n"))


def main() -> None:
    # a SIGTERM (a run stopped from outside) unwinds like Ctrl-C: etcd and the server are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=5000, help="per mutating verb; GETs: 4x")
    ap.add_argument("--rounds", type=int, default=3,
                    help="closed-loop rounds of creates and patches, each after its own bare etcd put run")
    ap.add_argument("--rates", default="100,200",
                    help="open-loop runs: requests per second the clients offer together (10 s each, per verb)")
    ap.add_argument("--watchers", type=int, default=100)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--only", choices=["mutate", "get", "watch", "list"])
    ap.add_argument("--profile", action="store_true",
                    help="after the measured phases, py-spy the API server during shorter reruns")
    ap.add_argument("--gc-freeze", type=float, default=0.0, metavar="S",
                    help="experiment: the API server process calls gc.freeze() every S seconds")
    ap.add_argument("--gc-threshold", default="", metavar="A,B,C",
                    help="experiment: the API server process runs with gc.set_threshold(A, B, C)")
    ap.add_argument("--switch-interval", type=float, default=0.0, metavar="S",
                    help="experiment: the API server process runs with sys.setswitchinterval(S)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, profiles)")
    ap.add_argument("--out", default="api", help="results file name (bench/results/<out>.json|md)")
    a = ap.parse_args()
    rates = [float(r) for r in a.rates.split(",") if r]
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    etcd = EmbeddedEtcd.on_loopback(tmp / "etcd", "benchapi")
    store = EtcdStore(EtcdConfig(endpoints=(etcd.endpoint,), timeout=30))
    server = None
    from orchestrator.apiserver.server import APIServerConfig

    etcd_version = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False).stdout.split()
    out: dict[str, Any] = {
        "env": {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
                "etcd": etcd_version[2] if len(etcd_version) > 2 else "?", "workers": APIServerConfig().workers,
                "client": f"aiohttp {aiohttp.__version__}",
                "gc_freeze_s": a.gc_freeze, "gc_threshold": a.gc_threshold,
                "switch_interval_s": a.switch_interval or sys.getswitchinterval(),
                "loadavg_1m_before": round(os.getloadavg()[0], 2)},
        "pods": a.pods, "clients": a.clients, "goals": GOALS}
    try:
        objects = ObjectStore(store, Keys(PREFIX))
        out["prefill_s"] = round(prefill(objects, a.pods), 1)
        print(f"prefilled {a.pods} pods in {out['prefill_s']} s", flush=True)
        server = Server(etcd.endpoint, tmp / "api", tmp / "apiserver.log", gc_freeze=a.gc_freeze, gc_threshold=a.gc_threshold,
                        switch_interval=a.switch_interval)
        objects.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NEW_NS},
                        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        for ns in (NS, NEW_NS):  # as a master's serviceaccounts controller keeps them
            objects.create(admit({"apiVersion": "v1", "kind": "ServiceAccount",
                                  "metadata": {"name": "default", "namespace": ns}}).object)
        if a.only in (None, "mutate"):
            out["bare_etcd_put"] = bare_puts(store, a.requests, a.clients)
            print(f"bare etcd put: {json.dumps(out['bare_etcd_put'])}", flush=True)
            out["mutating"] = phase(server, etcd.pid, "mutating",
                                    lambda: bench_mutating(server, store, etcd.pid, a.pods, a.clients, a.requests,
                                                           a.rounds, rates))
        if a.only in (None, "get"):
            out["get"] = phase(server, etcd.pid, "get",
                               lambda: bench_get(server, a.pods, a.clients, 4 * a.requests, rates))
        if a.only in (None, "watch"):
            out["watch"] = phase(server, etcd.pid, "watch",
                                 lambda: bench_watch(server, a.watchers, a.changes))
        if a.only in (None, "list"):
            out["list"] = phase(server, etcd.pid, "list", lambda: bench_list(server, a.pods))
        if a.profile:
            runs: dict[str, tuple[str, Callable[[], Any]]] = {
                "create": ("mutating", lambda: asyncio.run(closed_loop(server, a.clients, a.requests // 2,
                                                                       _creator(server), (201,)))),
                "patch": ("mutating", lambda: asyncio.run(closed_loop(server, a.clients, a.requests // 2,
                                                                      _patcher(server, a.pods), (200,)))),
                "get": ("get", lambda: bench_get(server, a.pods, a.clients, a.requests, [])),
                "list": ("list", lambda: bench_list(server, a.pods, 4))}
            for name, (measured, run) in runs.items():
                if measured in out and (p := profiled(server, name, tmp, run)) is not None:
                    out.setdefault("profiles", {})[name] = p
        try:
            out["official_client"] = official_client_check(server, a.pods)
        except Exception as e:  # noqa: BLE001 - reported, not fatal to the numbers
            out["official_client"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(f"official client: {out['official_client']}", flush=True)
    finally:
        if server is not None:
            pauses = server.stop()
            for name, window in WINDOWS.items():
                out[name]["gc"] = gc_in(pauses, window)
        store.close()
        etcd.stop()
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out["env"]["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    for name, got, target, ok in verdicts(out):
        print(f"{'MET ' if ok else 'MISS'} {name}: {got} (goal {target})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{a.out}.json").write_text(json.dumps(out, indent=1) + "\n")
    write_md(out, RESULTS / f"{a.out}.md")


if __name__ == "__main__":
    main()
