"""The node lifecycle controller loop (kube's monitorNodeHealth + taint eviction + pod GC),
over `orchestrator.node_lifecycle.assess`.

Every `monitor_period` (default 5 s, kube's node-monitor-period), and at once when a Node is
deleted, one pass assesses every node and pod from the caches with the latest heartbeats
(`orchestrator.heartbeat`, followed by list+watch; a node's Ready condition's
`lastHeartbeatTime` counts too) and applies the plan:

* nodes silent for the grace period (default 40 s) get Ready=Unknown and a NodeNotReady event;
* their pods get Ready=False, so the endpoints controller drops them;
* after the eviction timeout (default 300 s, or the pod's own toleration) their pods are
  marked for deletion (TaintManagerEviction event); RCs replace them at once;
* pods bound to a Node that no longer exists are deleted outright;
* the service account key a deleted Node's agent published (the one its pods' tokens are
  signed with) is withdrawn, so the API servers stop accepting those tokens (within their
  key cache's 10 s); the first pass looks at every node's key, for deletions made while no
  controller ran. Each withdrawal holds only while the Node is absent: an agent that
  re-registers its Node publishes its key again after.

Writes are optimistic at the revision read: a heartbeat or a status that lands meanwhile wins,
and the next pass looks again. The loop is periodic rather than keyed: each pass is O(nodes +
pods) of cache reads, like kube's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from netplane.errors import NetplaneError
from netplane.store import Keys
from netplane.store.watch import Resync, list_watch
from orchestrator import heartbeat
from orchestrator import node_lifecycle as nl
from orchestrator.apiserver import satokens
from orchestrator.controllers import podcontrol
from orchestrator.controllers.base import Writer
from orchestrator.controllers.events import Recorder
from orchestrator.controllers.informers import Informers
from orchestrator.objects import meta
from orchestrator.objects.meta import NODE
from orchestrator.storage import Conflict, Fenced, ObjectStore

log = logging.getLogger(__name__)

MONITOR_PERIOD = 5.0
STOP_POLL = 0.2  # seconds between looks at the stop event while resting

Obj = dict[str, Any]


class NodeLifecycleController:
    def __init__(self, objects: ObjectStore, informers: Informers, *, writer: Writer,
                 recorder: Recorder | None = None, grace_period: float = nl.GRACE_PERIOD,
                 eviction_timeout: float = nl.EVICTION_TIMEOUT,
                 startup_grace_period: float = nl.STARTUP_GRACE_PERIOD,
                 monitor_period: float = MONITOR_PERIOD,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.objects = objects
        self.inf = informers
        self.writer = writer
        self.recorder = recorder
        self.grace_period = grace_period
        self.eviction_timeout = eviction_timeout
        self.startup_grace_period = startup_grace_period
        self.monitor_period = monitor_period
        self._clock = clock
        self._lock = threading.Lock()
        self._heartbeats: dict[str, datetime] = {}
        self._hb_synced = threading.Event()
        self._wake = threading.Event()
        self.passes = 0
        # nodes whose published keys to withdraw at the next pass; None: every node's
        self._gone: set[str] | None = None
        informers.nodes.add_handler(self._on_node)

    def _on_node(self, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            if old is not None:
                with self._lock:
                    if self._gone is not None:
                        self._gone.add(meta.name(old))
            self._wake.set()  # its pods are orphans now, its key withdrawn

    def heartbeats(self) -> dict[str, datetime]:
        with self._lock:
            return dict(self._heartbeats)

    def _follow_heartbeats(self, keys: Keys, stop: threading.Event) -> None:
        for item in list_watch(self.objects.store, keys.nodes, stop=stop):
            batch = item.items if isinstance(item, Resync) else [e for e in item if e.kind == "put" and e.value]
            with self._lock:
                for kv in batch:
                    t = heartbeat.decode(kv.value) if kv.value is not None else None
                    name = kv.key.rsplit("/", 1)[-1]
                    if t is not None and (name not in self._heartbeats or t > self._heartbeats[name]):
                        self._heartbeats[name] = t
            self._hb_synced.set()

    def run(self, stop: threading.Event) -> None:
        t = threading.Thread(target=self._follow_heartbeats, args=(self.objects.keys, stop),
                             name="node-heartbeats", daemon=True)
        t.start()
        while not self._hb_synced.wait(0.1):
            if stop.is_set():
                return
        while not stop.is_set():
            try:
                self.run_pass()
            except Fenced as e:
                log.warning("node lifecycle: %s", e)
                self.writer.on_fenced()
                return
            except Exception as e:
                log.warning("node lifecycle pass failed: %s", e, exc_info=True)
            self._rest(stop)
        t.join(timeout=5)

    def _rest(self, stop: threading.Event) -> None:
        """Until the next pass: `monitor_period`, or sooner when woken (a Node deleted), or
        stopped (a term that ends waits for this loop: it was up to `monitor_period` late)."""
        deadline = time.monotonic() + self.monitor_period
        while not stop.is_set() and not self._wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.wait(min(left, STOP_POLL))
        self._wake.clear()

    def run_pass(self) -> nl.Plan:
        now = self._clock()
        plan = nl.assess(self.inf.nodes.list(), self.inf.pods.list(), now=now, heartbeats=self.heartbeats(),
                         grace_period=self.grace_period, startup_grace_period=self.startup_grace_period,
                         eviction_timeout=self.eviction_timeout)
        self.passes += 1
        for obj in [*plan.node_updates, *plan.pods_not_ready]:
            self._update(obj)
        for p in plan.evict:
            self._delete(p, now=now, force=False)
        for p in plan.orphans:
            self._delete(p, now=now, force=True)
            log.info("pod %s: its node %s is gone; deleted", meta.namespaced_name(p),
                     (p.get("spec") or {}).get("nodeName"))
        self._withdraw_keys()
        if self.recorder is not None:
            for n in plan.notes:
                inv = (self.inf.nodes.get(n.name) if n.kind == "Node" else self.inf.pods.get(n.name, n.namespace))
                if inv is not None:
                    self.recorder.record(inv, n.reason, n.message, type="Warning" if n.type == "Warning" else "Normal")
        return plan

    def _withdraw_keys(self) -> None:
        with self._lock:
            gone, self._gone = self._gone, set()
        if gone is not None and not gone:
            return
        try:
            satokens.withdraw_node_keys(self.objects.store, self.objects.keys.sa_keys,
                                        lambda name: self.objects.key(NODE, name), only=gone,
                                        guards=self.writer.guards)
        except NetplaneError as e:
            log.info("node lifecycle: withdrawing deleted nodes' service account keys: %s", e)
            with self._lock:  # again at the next pass
                self._gone = None if gone is None or self._gone is None else self._gone | gone

    def _update(self, obj: Obj) -> None:
        try:
            self.objects.update(obj, guards=self.writer.guards)
        except Conflict:
            pass  # changed meanwhile (a heartbeat, a status): the next pass looks again
        except Fenced:
            raise
        except NetplaneError as e:
            log.info("node lifecycle: %s not updated: %s", meta.name(obj), e)

    def _delete(self, p: Mapping[str, Any], *, now: datetime, force: bool) -> None:
        try:
            podcontrol.delete(self.objects, p, self.writer, now=now, force=force)
        except Fenced:
            raise
        except NetplaneError as e:
            log.info("node lifecycle: %s", e)
