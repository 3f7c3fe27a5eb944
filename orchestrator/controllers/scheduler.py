"""The scheduler loop: unscheduled pods -> a decision (`orchestrator.scheduling`) -> bindings
written several per etcd transaction.

Like kube-scheduler: one thread decides, pod after pod, over the scheduler cache
(`ClusterState`, fed by the pod and node informers), *assumes* each placed pod on its node so
the next decision sees it, and hands the binding to a binder thread; the binder writes what has
accumulated meanwhile (up to `BATCH` pods) as one transaction. Each pod in it is guarded by
its mod revision as read (so it lands only if the pod is still unbound at that revision — the
API server's compare-and-swap on the binding) and the whole by the leader's fence. When the
transaction fails, the fence is checked (lost: stop), then the pods are bound one by one, so
only those that changed are requeued (with back-off) and forgotten in the cache. Two schedulers
racing therefore never bind a pod twice: the second transaction's revision guard fails.

An unschedulable pod gets PodScheduled=False / Unschedulable with kube-scheduler's FitError
message and a FailedScheduling event, and is parked. Parked pods are retried when the cluster
changes in a way that can make room: a node added or changed (readiness, cordon, allocatable,
labels), a bound pod deleted or finished; and every `retry_unschedulable` seconds anyway.

Cost per pod (1,000 nodes, `bench/results/orchestrator.md`): the decision thread ~120 us of
CPU (three quarters of it `scheduling.schedule`), the pod informer ~50 us per event (decoding
and the read check), the binder ~20 us. A bound pod whose footprint did not change (the echo
of our own binding, a status change, a resync) is not read into the cache again; a binding
that did not land only drops our own assumption: once the informer has shown the pod bound
or gone, the cache already holds what it showed.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from netplane.store import codec
from netplane.store.txn import ModRevisionIs, Put
from orchestrator import scheduling
from orchestrator.controllers.base import Writer
from orchestrator.controllers.events import Recorder
from orchestrator.controllers.informers import Informers
from orchestrator.objects import event as ev
from orchestrator.objects import meta
from orchestrator.objects import node as nodeobj
from orchestrator.objects import pod as podobj
from orchestrator.objects import replicationcontroller as rcobj
from orchestrator.objects.selector import from_set
from orchestrator.scheduling import ClusterState, Placement, PodInfo, SpreadGroup
from orchestrator.storage import Conflict, Fenced, ObjectStore
from orchestrator.workqueue import WorkQueue

log = logging.getLogger(__name__)

BATCH = 100  # bindings per transaction (etcd's --max-txn-ops is 128; one more is the fence)
RETRY_UNSCHEDULABLE = 60.0  # seconds; kube-scheduler flushes unschedulable pods after 5 min
COMPONENT = "default-scheduler"

Obj = dict[str, Any]


class Scheduler:
    def __init__(self, objects: ObjectStore, informers: Informers, *, writer: Writer,
                 recorder: Recorder | None = None, rng: random.Random | None = None,
                 batch: int = BATCH, percentage_of_nodes_to_score: int = 0,
                 retry_unschedulable: float = RETRY_UNSCHEDULABLE,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.objects = objects
        self.inf = informers
        self.writer = writer
        self.recorder = recorder
        self.rng = rng or random.Random()
        self.batch = max(1, min(batch, BATCH))
        self.percentage = percentage_of_nodes_to_score
        self.retry_unschedulable = retry_unschedulable
        self._clock = clock
        self.queue: WorkQueue[str] = WorkQueue()
        self._binds: queue.Queue[tuple[str, Obj, Obj, str]] = queue.Queue()
        self._lock = threading.Lock()
        self.state = ClusterState()
        self._assumed: dict[str, int] = {}  # placed, binding not yet seen: key -> revision read
        self._parked: set[str] = set()  # unschedulable, waiting for a cluster change
        self._groups: dict[str, SpreadGroup | None] = {}
        self._start = 0
        self.fenced = threading.Event()
        self.bound = 0
        self.transactions = 0
        self.conflicts = 0
        self._register()

    # ------------------------------------------------------------------ informer handlers
    def _register(self) -> None:
        self.inf.nodes.add_handler(self._on_node)
        self.inf.pods.add_handler(self._on_pod)
        self.inf.rcs.add_handler(lambda o, n: self._on_group("rc", o, n))
        self.inf.services.add_handler(lambda o, n: self._on_group("svc", o, n))

    def _on_node(self, old: Obj | None, new: Obj | None) -> None:
        with self._lock:
            if new is None:
                assert old is not None
                self.state.remove_node(meta.name(old))
                return
            if old is not None and _node_facts(old) == _node_facts(new) and meta.name(new) in self.state.nodes:
                self.state.upsert_node(new)
                return
            self.state.upsert_node(new)
            self._unpark_locked()

    def _on_pod(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        key = meta.namespaced_name(obj)
        with self._lock:
            if new is None or podobj.is_terminal(new):
                self._assumed.pop(key, None)
                self._parked.discard(key)
                had = self.state.pod(key) is not None
                self.state.remove_pod(key)
                if had:
                    self._unpark_locked()  # room was freed
                return
            node = podobj.node_name(new)
            if node:
                assumed_at = self._assumed.pop(key, None)
                self._parked.discard(key)
                cur = self.state.pod(key)
                # The cache already counts this pod as `new` would (a resync, a status change,
                # the echo of our own binding): skip re-reading it. `cur` was made from `old`,
                # or, for an assumed pod, from the revision the binding was guarded by.
                if (cur is not None and old is not None and cur.node == node
                        and (assumed_at is None or assumed_at == meta.resource_version(old))
                        and _same_footprint(old, new)):
                    return
                try:
                    self.state.upsert_pod(PodInfo.of(new))
                except ValueError as e:
                    log.warning("pod %s: %s; not counted", key, e)
                return
            if meta.is_deleting(new) or key in self._assumed:
                return
            if key in self._parked:
                if old is not None and old.get("spec") == new.get("spec") and meta.labels(old) == meta.labels(new):
                    return  # our own condition write, or a status change: still waiting
                self._parked.discard(key)
        self.queue.add(key)

    def _on_group(self, what: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        gkey = f"{what}:{meta.namespaced_name(obj)}"
        group: SpreadGroup | None = None
        if new is not None and not meta.is_deleting(new):
            if what == "rc":
                group = SpreadGroup(meta.namespace(new), rcobj.selector(new))
            else:
                sel = (new.get("spec") or {}).get("selector")
                group = SpreadGroup(meta.namespace(new), from_set(sel)) if sel else None
        with self._lock:
            if self._groups.get(gkey) == group:
                return
            self._groups[gkey] = group
            self.state.set_spread_group(gkey, group)
            if group is None:
                self._groups.pop(gkey, None)

    def _unpark_locked(self) -> None:
        for k in self._parked:
            self.queue.add(k)
        self._parked.clear()

    # ------------------------------------------------------------------ running
    def run(self, stop: threading.Event) -> None:
        """Decide and bind until `stop` (or a fenced write). Informers must be synced."""
        binder = threading.Thread(target=self._bind_loop, args=(stop,), name="scheduler-binder", daemon=True)
        binder.start()
        stopper = threading.Thread(target=self._shutdown_on, args=(stop,), daemon=True)
        stopper.start()
        flushed = time.monotonic()
        while (key := self.queue.get(timeout=1.0)) is not None or not self.queue.shutting_down:
            if time.monotonic() - flushed > self.retry_unschedulable:
                flushed = time.monotonic()
                with self._lock:
                    self._unpark_locked()
            if key is None:
                continue
            try:
                if not self.fenced.is_set():
                    self._schedule_one(key)
            except Fenced as e:
                self._lost(e)
            except Exception as e:
                log.warning("scheduling %s failed: %s", key, e, exc_info=True)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)
        binder.join(timeout=10)

    def _shutdown_on(self, stop: threading.Event) -> None:
        while not stop.wait(0.2) and not self.fenced.is_set():
            pass
        self.queue.shutdown()

    def _lost(self, e: Exception) -> None:
        if not self.fenced.is_set():
            log.warning("scheduler: %s", e)
            self.fenced.set()
            self.writer.on_fenced()

    def _schedule_one(self, key: str) -> None:
        ns, _, name = key.partition("/")
        pod = self.inf.pods.get(name, ns)
        if pod is None or podobj.node_name(pod) or meta.is_deleting(pod) or podobj.is_terminal(pod):
            self.queue.forget(key)
            return
        info = PodInfo.of(pod)
        with self._lock:
            if key in self._assumed:
                return
            result = scheduling.schedule(info, self.state, rng=self.rng, start=self._start,
                                         percentage_of_nodes_to_score=self.percentage)
            self._start = result.next_start
            if isinstance(result, Placement):
                self.state.assume(info, result.node)
                self._assumed[key] = meta.resource_version(pod)
            else:
                self._parked.add(key)
        if isinstance(result, Placement):
            self._binds.put((key, pod, scheduling.bound(pod, result.node, now=self._clock()), result.node))
            return
        self._mark_unschedulable(key, pod, result.message)

    def _mark_unschedulable(self, key: str, pod: Obj, message: str) -> None:
        upd = scheduling.unschedulable(pod, message, now=self._clock())
        if upd is not None:
            try:
                self.objects.update(upd, guards=self.writer.guards)
            except Conflict:  # changed meanwhile: look again with the new version
                with self._lock:
                    self._parked.discard(key)
                self.queue.add_rate_limited(key)
                return
        if self.recorder is not None:
            self.recorder.record(pod, ev.FAILED_SCHEDULING, message, type="Warning")

    # ------------------------------------------------------------------ binding
    def _bind_loop(self, stop: threading.Event) -> None:
        while True:
            try:
                first = self._binds.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set() or self.fenced.is_set():
                    return
                continue
            batch = [first]
            while len(batch) < self.batch:
                try:
                    batch.append(self._binds.get_nowait())
                except queue.Empty:
                    break
            if self.fenced.is_set():
                for key, *_ in batch:
                    self._forget(key)
                continue
            try:
                self._bind(batch)
            except Exception as e:  # noqa: BLE001  etcd away: forget the assumptions, retry the pods later
                log.warning("binding %d pods failed: %s", len(batch), e)
                for key, *_ in batch:
                    self._forget(key)
                    self.queue.add_rate_limited(key)

    def _bind(self, batch: list[tuple[str, Obj, Obj, str]]) -> None:
        store = self.objects.store
        keys = [self.objects.key_of(pod) for _, pod, _, _ in batch]
        guards = [ModRevisionIs(k, meta.resource_version(pod)) for k, (_, pod, _, _) in zip(keys, batch, strict=True)]
        ops = [Put(k, _encode(b)) for k, (_, _, b, _) in zip(keys, batch, strict=True)]
        self.transactions += 1
        r = store.txn([*guards, *self.writer.guards], ops)
        if r.succeeded:
            for key, pod, _, node in batch:
                self.bound += 1
                self.queue.forget(key)
                if self.recorder is not None:
                    self.recorder.record(pod, ev.SCHEDULED, scheduling.scheduled_message(pod, node))
            return
        if self.writer.guards and not store.txn(list(self.writer.guards), []).succeeded:
            for key, *_ in batch:
                self._forget(key)
            self._lost(Fenced(meta.POD, batch[0][0]))
            return
        if len(batch) > 1:
            for item in batch:
                self._bind([item])
            return
        key = batch[0][0]
        self.conflicts += 1
        self._forget(key)
        self.queue.add_rate_limited(key)

    def _forget(self, key: str) -> None:
        """A binding that did not land: un-assume the pod (kube ForgetPod). Once the informer
        has shown the pod bound (by another scheduler) or gone, it is no longer assumed and the
        cache already holds what the informer showed; else the cache holds only our assumption."""
        with self._lock:
            if self._assumed.pop(key, None) is not None:
                self.state.remove_pod(key)


def _same_footprint(a: Obj, b: Obj) -> bool:
    """Whether `PodInfo.of` would read the same of both versions of a bound, non-terminal
    pod, nodeName aside: containers (requests, host ports), nodeSelector, labels, deletion."""
    if a is b:
        return True
    sa, sb = podobj.spec(a), podobj.spec(b)
    ma, mb = meta.meta(a), meta.meta(b)
    return (sa.get("containers") == sb.get("containers") and sa.get("nodeSelector") == sb.get("nodeSelector")
            and ma.get("labels") == mb.get("labels")
            and ma.get("deletionTimestamp") == mb.get("deletionTimestamp"))


def _node_facts(n: Obj) -> tuple[Any, ...]:
    return (nodeobj.ready_status(n), nodeobj.unschedulable(n), nodeobj.allocatable(n), meta.labels(n))


def _encode(obj: Obj) -> str:
    body = dict(obj)
    md = dict(body.get("metadata") or {})
    md.pop("resourceVersion", None)
    body["metadata"] = md
    return codec.dumps(body)
