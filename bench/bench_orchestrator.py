"""Control-plane benchmarks against a fresh local etcd (no root needed):

* scheduler throughput — 1,000 simulated nodes, 10,000 pending pods created up front, then
  10,000 more as a stream: pods bound per second (etcd writes included) and creation -> binding
  p50/p99 (binding time = when a separate watch sees the bound pod); the bare etcd write rate
  of the same pod values, one per transaction and 100 per transaction, measured in the same run;
* RC scale 0 -> 1,000 on 100 nodes (scheduler + replication manager): creations counted, time
  until all bound;
* endpoints latency at 1,000 services: a pod's Ready written -> its Endpoints updated in etcd.

    .venv/bin/python bench/bench_orchestrator.py [--only sched|rc|endpoints] [--pods N] [--nodes N]
                                                 [--rate PODS_PER_S]   (the stream's offered rate)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netplane.store import EtcdConfig, EtcdStore, Keys, codec
from netplane.store.embedded import EmbeddedEtcd
from netplane.store.txn import Absent, Put
from netplane.store.watch import Resync, list_watch
from orchestrator.controllers.base import Writer
from orchestrator.controllers.endpoints_controller import EndpointsController
from orchestrator.controllers.informers import Informers
from orchestrator.controllers.replication_manager import ReplicationManager
from orchestrator.controllers.scheduler import Scheduler
from orchestrator.objects import meta
from orchestrator.objects.meta import ENDPOINTS, POD
from orchestrator.storage import ObjectStore
from orchestrator.validation import admit

RESULTS = Path(__file__).resolve().parent / "results"


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def node(name: str) -> dict[str, Any]:
    t = meta.format_time(datetime.now(UTC))
    return admit({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                  "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                             "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": t}]}}).object


POD_TMPL = admit({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"app": "bench"}},
                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                           "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}).object


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    p = json.loads(json.dumps(POD_TMPL))
    p["metadata"]["name"] = name
    if labels:
        p["metadata"]["labels"] = labels
    return p


def create_many(objects: ObjectStore, objs: list[dict[str, Any]], workers: int = 8) -> list[float]:
    """Create objects in parallel; the wall time each create returned."""
    out = [0.0] * len(objs)

    def one(i: int) -> None:
        objects.create(objs[i])
        out[i] = time.monotonic()

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, range(len(objs))))
    return out


class BoundWatch:
    """When each pod was first seen bound (a separate watch, like a user's)."""

    def __init__(self, objects: ObjectStore, stop: threading.Event) -> None:
        self.objects = objects
        self.bound: dict[str, float] = {}
        self.t = threading.Thread(target=self._run, args=(stop,), daemon=True)
        self.t.start()

    def _run(self, stop: threading.Event) -> None:
        for item in list_watch(self.objects.store, self.objects.prefix(POD), stop=stop):
            if isinstance(item, Resync):
                continue
            now = time.monotonic()
            for e in item:
                if e.kind == "put" and e.value and b'"nodeName"' in e.value:
                    name = e.key.rsplit("/", 1)[-1]
                    self.bound.setdefault(name, now)


class GcPauses:
    """Wall time of every garbage collection while active (gc.callbacks), by generation."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._t))

    def summary(self) -> dict[str, Any]:
        g2 = [d for g, d in self.pauses if g == 2]
        return {"collections": len(self.pauses), "total_ms": sum(d for _, d in self.pauses) * 1000,
                "gen2": len(g2), "gen2_max_ms": max(g2, default=0.0) * 1000}

    def reset(self) -> None:
        self.pauses = []

    def close(self) -> None:
        gc.callbacks.remove(self._cb)


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of every live thread of this process, by thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{t.native_id}/stat").read_text()
        except (OSError, TypeError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        name = t.name.split(" (")[0] if t.name.startswith("Thread-") else t.name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def proc_cpu(pid: int | None) -> float:
    """CPU seconds of another process (etcd), 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_since(before: dict[str, float], names: dict[str, str]) -> dict[str, float]:
    """CPU seconds per role since `before` (threads named in `names`, the rest as "other")."""
    now = thread_cpu()
    out: dict[str, float] = {}
    for n, v in now.items():
        role = names.get(n, "other")
        out[role] = round(out.get(role, 0.0) + v - before.get(n, 0.0), 3)
    return out


def bare_writes(store: EtcdStore, keys: Keys, n: int) -> dict[str, float]:
    value = codec.dumps(pod("bare"))
    t0 = time.monotonic()
    for i in range(n):
        k = f"{keys.prefix}/bare1/{i}"
        store.txn([Absent(k)], [Put(k, value)])
    one = n / (time.monotonic() - t0)
    t0 = time.monotonic()
    for b in range(0, n, 100):
        ks = [f"{keys.prefix}/bare100/{i}" for i in range(b, min(n, b + 100))]
        store.txn([Absent(k) for k in ks], [Put(k, value) for k in ks])
    batched = n / (time.monotonic() - t0)
    store.delete_prefix(f"{keys.prefix}/bare")
    return {"txn_1_per_s": one, "txn_100_per_s": batched}


def bench_scheduler(store: EtcdStore, keys: Keys, n_nodes: int, n_pods: int,
                    rate: float = 1000.0, etcd_pid: int | None = None) -> dict[str, Any]:
    objects = ObjectStore(store, keys)
    res: dict[str, Any] = {"nodes": n_nodes, "pods": n_pods, "bare": bare_writes(store, keys, 3000)}
    create_many(objects, [node(f"n{i:04d}") for i in range(n_nodes)])
    # up front
    created = create_many(objects, [pod(f"u{i:05d}") for i in range(n_pods)])
    stop = threading.Event()
    watch = BoundWatch(objects, stop)
    watch.t.name = "bench-watch"
    infs = Informers(objects)
    s = Scheduler(objects, infs, writer=Writer(), rng=random.Random(1))
    infs.start(stop)
    infs.wait_synced(120)
    roles = {"scheduler": "decide", "scheduler-binder": "bind", "pods-informer": "pod informer",
             "bench-watch": "bench watch", "producer": "bench producers"}
    gcp = GcPauses()
    cpu0, etcd0 = thread_cpu(), proc_cpu(etcd_pid)
    t0 = time.monotonic()
    th = threading.Thread(target=s.run, args=(stop,), name="scheduler", daemon=True)
    th.start()
    while sum(1 for k in list(watch.bound) if k.startswith("u")) < n_pods:
        time.sleep(0.05)
    t1 = max(v for k, v in list(watch.bound.items()) if k.startswith("u"))
    res["upfront"] = {"seconds": t1 - t0, "pods_per_s": n_pods / (t1 - t0), "transactions": s.transactions,
                      "cpu_s": {**cpu_since(cpu0, roles), "etcd": round(proc_cpu(etcd_pid) - etcd0, 3)},
                      "gc": gcp.summary()}
    del created
    # stream: pods created at a steady offered rate while the scheduler runs
    names = [f"s{i:05d}" for i in range(n_pods)]
    created_at: dict[str, float] = {}
    tx0 = s.transactions
    producer_cpu: list[float] = []

    def producer(offset: int, step: int) -> None:
        """Pods created in transactions of 10 every 10 ms (what an API server's writes cost
        etcd; a Python client per pod could not offer 1,000/s next to the scheduler)."""
        start = time.monotonic()
        for b in range(offset * 10, n_pods, step * 10):
            due = start + b / rate
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            batch = names[b:b + 10]
            ks = [objects.key(POD, n, "default") for n in batch]
            bodies = []
            for n in batch:
                p = pod(n)
                p["metadata"].update(namespace="default", uid=str(meta.new_uid()), generation=1,
                                     creationTimestamp=meta.format_time(datetime.now(UTC)))
                bodies.append(codec.dumps(p))
            store.txn([Absent(k) for k in ks], [Put(k, v) for k, v in zip(ks, bodies, strict=True)])
            now = time.monotonic()
            for n in batch:
                created_at[n] = now
        producer_cpu.append(time.thread_time())

    gcp.reset()
    cpu0, etcd0 = thread_cpu(), proc_cpu(etcd_pid)
    t0 = time.monotonic()
    prods = [threading.Thread(target=producer, args=(o, 2), name="producer", daemon=True) for o in range(2)]
    for p in prods:
        p.start()
    for p in prods:
        p.join()
    tc = time.monotonic()
    while sum(1 for k in list(watch.bound) if k.startswith("s")) < n_pods:
        time.sleep(0.05)
    t1 = max(v for k, v in list(watch.bound.items()) if k.startswith("s"))
    lat = [watch.bound[n] - created_at[n] for n in names]
    res["stream"] = {"offered_per_s": rate, "achieved_create_per_s": n_pods / (tc - t0),
                     "seconds": t1 - t0, "pods_per_s": n_pods / (t1 - t0),
                     "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
                     "max_ms": max(lat) * 1000, "transactions": s.transactions - tx0,
                     "cpu_s": {**cpu_since(cpu0, roles), "bench producers": round(sum(producer_cpu), 3),
                               "etcd": round(proc_cpu(etcd_pid) - etcd0, 3)},
                     "gc": gcp.summary()}
    gcp.close()
    stop.set()
    th.join(10)
    store.delete_prefix(keys.prefix + "/")
    return res


def bench_rc(store: EtcdStore, keys: Keys) -> dict[str, Any]:
    objects = ObjectStore(store, keys)
    create_many(objects, [node(f"n{i:03d}") for i in range(100)])
    stop = threading.Event()
    watch = BoundWatch(objects, stop)
    infs = Informers(objects)
    s = Scheduler(objects, infs, writer=Writer(), rng=random.Random(2))
    rm = ReplicationManager(objects, infs, writer=Writer())
    infs.start(stop)
    infs.wait_synced(60)
    for fn in (s.run, rm.run):
        threading.Thread(target=fn, args=(stop,), daemon=True).start()
    rc = admit({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
                "spec": {"replicas": 1000, "selector": {"app": "web"},
                         "template": {"metadata": {"labels": {"app": "web"}}, "spec": POD_TMPL["spec"]}}}).object
    t0 = time.monotonic()
    objects.create(rc)
    while len(watch.bound) < 1000:
        time.sleep(0.02)
    t1 = time.monotonic()
    time.sleep(2.0)  # anything extra would show now
    n_pods = len(objects.list(POD)[0])
    stop.set()
    store.delete_prefix(keys.prefix + "/")
    return {"replicas": 1000, "nodes": 100, "created_counted": rm.created, "pods_in_etcd": n_pods,
            "seconds_to_all_bound": t1 - t0}


def bench_endpoints(store: EtcdStore, keys: Keys, n_svc: int = 1000, samples: int = 300) -> dict[str, Any]:
    objects = ObjectStore(store, keys)
    svcs = [admit({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc{i:04d}"},
                   "spec": {"clusterIP": f"10.96.{i // 250}.{i % 250 + 2}", "selector": {"app": f"a{i}"},
                             "ports": [{"port": 80, "targetPort": 8080}]}}).object for i in range(n_svc)]
    create_many(objects, svcs)
    pods = []
    for i in range(n_svc):
        for j in range(2):
            p = pod(f"p{i:04d}-{j}", {"app": f"a{i}"})
            p["spec"]["nodeName"] = "n1"
            p["status"] = {"podIP": f"10.{i // 250 + 1}.{i % 250}.{j + 2}", "phase": "Running",
                           "conditions": [{"type": "Ready", "status": "True"}]}
            pods.append(p)
    create_many(objects, pods)
    stop = threading.Event()
    infs = Informers(objects)
    ctl = EndpointsController(objects, infs, writer=Writer())
    infs.start(stop)
    infs.wait_synced(60)
    threading.Thread(target=ctl.run, args=(stop,), daemon=True).start()
    while len(infs.endpoints) < n_svc:
        time.sleep(0.05)
    seen: dict[str, float] = {}
    ev = threading.Event()

    def watch() -> None:
        for item in list_watch(store, objects.prefix(ENDPOINTS), stop=stop):
            if isinstance(item, Resync):
                continue
            now = time.monotonic()
            for e in item:
                seen[e.key.rsplit("/", 1)[-1]] = now
            ev.set()

    threading.Thread(target=watch, daemon=True).start()
    time.sleep(1.0)
    rng = random.Random(3)
    lat = []
    for k in range(samples):
        i = rng.randrange(n_svc)
        name = f"p{i:04d}-0"
        cur = objects.get(POD, name)
        assert cur is not None
        ready = cur["status"]["conditions"][0]["status"] == "True"
        cur["status"]["conditions"][0]["status"] = "False" if ready else "True"
        seen.pop(f"svc{i:04d}", None)
        objects.update(cur)
        t0 = time.monotonic()
        while f"svc{i:04d}" not in seen:
            time.sleep(0.0005)
        lat.append(seen[f"svc{i:04d}"] - t0)
        del k
    stop.set()
    store.delete_prefix(keys.prefix + "/")
    return {"services": n_svc, "pods": len(pods), "samples": samples, "p50_ms": pct(lat, 0.5) * 1000,
            "p99_ms": pct(lat, 0.99) * 1000, "max_ms": max(lat) * 1000, "mean_ms": statistics.mean(lat) * 1000}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["sched", "rc", "endpoints"])
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=1000.0, help="scheduler stream: pods offered per second")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bench-orch-"))
    e = EmbeddedEtcd.on_loopback(d, "bench")
    store = EtcdStore(EtcdConfig(endpoints=(e.endpoint,), timeout=30))
    out: dict[str, Any] = {}
    try:
        if a.only in (None, "sched"):
            out["scheduler"] = bench_scheduler(store, Keys("/bs"), a.nodes, a.pods, a.rate, e.pid)
            print(json.dumps(out["scheduler"], indent=1), flush=True)
        if a.only in (None, "rc"):
            out["rc_scale"] = bench_rc(store, Keys("/br"))
            print(json.dumps(out["rc_scale"], indent=1), flush=True)
        if a.only in (None, "endpoints"):
            out["endpoints"] = bench_endpoints(store, Keys("/be"))
            print(json.dumps(out["endpoints"], indent=1), flush=True)
    finally:
        store.close()
        e.stop()
    RESULTS.mkdir(exist_ok=True)
    name = "orchestrator" + (f"_{a.only}" if a.only else "") + (f"_rate{a.rate:.0f}" if a.rate != 1000.0 else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
