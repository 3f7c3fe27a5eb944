"""The replication manager loop: RCs -> pods, over `orchestrator.replication`'s decisions.

Per RC key ("ns/name") one sync: read the RC and the pods of its namespace from the caches,
`plan` it, then adopt / release (ownerReferences, optimistic updates), create or delete, and
write `status`. The loop's part of the contract:

* **Expectations** (the kubernetes#7561 fix). Before creating N pods the sync records "N adds
  expected"; the pod informer's add events lower it; until it reaches zero (or 5 minutes pass)
  further syncs of that RC neither create nor delete. Deletions likewise, per pod key. A create
  or delete that fails lowers the expectation at once (it will never be observed). A lagging
  watch therefore delays an RC, never makes it over-create.
* **Slow start** (batches 1, 2, 4, ..., each created in parallel; the first batch with a
  failure stops the rest) and the **burst cap** (500 per sync) come from the decision module.
* **Scale-down** deletes `replication.deletion_order`'s first: unscheduled, pending, not ready,
  doubled up, newer. Deletion is graceful for bound pods (`podcontrol.delete`).
* **Deleting an RC.** A plain delete of the RC object (the key is gone) cascades: its pods —
  those whose controller reference carries its uid — are deleted (Kubernetes' default,
  background propagation). To keep the pods, the deleter does not delete the RC but marks it:
  `deletionTimestamp` plus the annotation `netplane.io/deletion-propagation: Orphan` (how
  DeleteOptions' `propagationPolicy: Orphan` is recorded here; `netplane delete
  --cascade=orphan` writes it, and Kubernetes' own `orphan` finalizer is honoured the same
  way). The manager then releases every pod (drops the owner reference) and deletes the RC.
  A `deletionTimestamp` without either deletes the pods first, then the RC. Pods whose
  controller reference names an RC that no longer exists (a master restarted after the delete)
  are cascaded the same way on the next sync.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from netplane.errors import NetplaneError, NotFoundError
from orchestrator import replication as rep
from orchestrator.controllers import podcontrol
from orchestrator.controllers.base import KeyLoop, Writer
from orchestrator.controllers.events import Recorder
from orchestrator.controllers.informers import Informers, controller_index_key
from orchestrator.objects import event as ev
from orchestrator.objects import meta
from orchestrator.objects import pod as podobj
from orchestrator.objects import replicationcontroller as rcobj
from orchestrator.objects.meta import REPLICATION_CONTROLLER
from orchestrator.storage import Fenced, ObjectStore

log = logging.getLogger(__name__)

ORPHAN_FINALIZER = "orphan"  # metav1.FinalizerOrphanDependents
PROPAGATION_ANNOTATION = "netplane.io/deletion-propagation"
ORPHAN = "Orphan"
COMPONENT = "replication-controller"
PARALLEL = 16  # concurrent creates/deletes within one slow-start batch

Obj = dict[str, Any]


def request_orphaning_deletion(rc: Mapping[str, Any], *, now: datetime) -> Obj:
    """The RC as a deleter writes it to delete the RC but keep its pods (`--cascade=orphan`)."""
    out: Obj = {**rc, "metadata": dict(meta.meta(rc))}
    md = out["metadata"]
    md["annotations"] = {**(md.get("annotations") or {}), PROPAGATION_ANNOTATION: ORPHAN}
    md.setdefault("deletionTimestamp", meta.format_time(now))
    return out


def orphans_pods(rc: Mapping[str, Any]) -> bool:
    """Was the RC deleted with its pods to be kept?"""
    return (meta.annotations_of(rc).get(PROPAGATION_ANNOTATION) == ORPHAN
            or ORPHAN_FINALIZER in (meta.meta(rc).get("finalizers") or []))


class ReplicationManager:
    def __init__(self, objects: ObjectStore, informers: Informers, *, writer: Writer,
                 recorder: Recorder | None = None, workers: int = 2, burst: int = rep.BURST_REPLICAS,
                 expectations: rep.Expectations | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.objects = objects
        self.inf = informers
        self.writer = writer
        self.recorder = recorder
        self.burst = burst
        self.expectations = expectations or rep.Expectations()
        self._clock = clock
        self.loop = KeyLoop("replication-manager", self.sync, writer=writer, workers=workers)
        self._pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="rc-pods")
        self._lock = threading.Lock()
        self.created = 0
        self.deleted = 0
        informers.rcs.add_handler(self._on_rc)
        informers.pods.add_handler(self._on_pod)

    # ------------------------------------------------------------------ handlers
    def _on_rc(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        self.loop.queue.add(meta.namespaced_name(obj))

    def _rc_keys_for(self, p: Obj) -> set[str]:
        ref = meta.controller_ref(p)
        if ref is not None:
            if ref.get("kind") == REPLICATION_CONTROLLER.kind:
                return {f"{meta.namespace(p)}/{ref.get('name', '')}"}
            return set()
        if meta.is_deleting(p):
            return set()
        labels = meta.labels(p)
        return {meta.namespaced_name(rc) for rc in self.inf.rcs.by_index("namespace", meta.namespace(p))
                if rcobj.selector(rc).matches(labels)}

    def _on_pod(self, old: Obj | None, new: Obj | None) -> None:
        if old is None and new is not None:  # an add: a creation observed
            for k in self._rc_keys_for(new):
                if meta.controller_ref(new) is not None:
                    self.expectations.creation_observed(k)
                self.loop.queue.add(k)
            return
        if new is None:
            assert old is not None
            pkey = meta.namespaced_name(old)
            for k in self._rc_keys_for(old):
                self.expectations.deletion_observed(k, pkey)
                self.loop.queue.add(k)
            return
        assert old is not None
        keys = self._rc_keys_for(old) | self._rc_keys_for(new)
        if meta.is_deleting(new) and not meta.is_deleting(old):
            for k in keys:
                self.expectations.deletion_observed(k, meta.namespaced_name(new))
        if old is not new and _counted(old) == _counted(new):
            return  # nothing an RC looks at changed (a resync passes old is new: always queue)
        for k in keys:
            self.loop.queue.add(k)

    # ------------------------------------------------------------------ running
    def run(self, stop: threading.Event) -> None:
        try:
            self.loop.run(stop)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ one sync
    def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        rc = self.inf.rcs.get(name, ns)
        if rc is None:
            self.expectations.delete(key)
            self._cascade(ns, name, keep_uid="")
            return
        if meta.is_deleting(rc):
            self._finish_deletion(rc)
            return
        # pods of an earlier RC of this name (deleted while we were away) go as in a cascade
        self._cascade(ns, name, keep_uid=meta.uid(rc))
        candidates = self.inf.pods.by_index("namespace", ns)
        plan = rep.plan(rc, candidates, burst=self.burst)
        for p in plan.adopt:
            self._write_pod(rep.adopted(p, rc))
        for p in plan.release:
            self._write_pod(rep.released(p, rc))
        if self.expectations.satisfied(key):
            if plan.create:
                self._create(key, rc, plan.create)
            elif plan.delete:
                self._delete(key, rc, plan.delete)
        self._update_status(rc, plan.active)

    def _write_pod(self, p: Obj) -> None:
        try:
            self.objects.update(p, guards=self.writer.guards)
        except NotFoundError:
            pass  # gone meanwhile: nothing to adopt or release

    def _create(self, key: str, rc: Obj, n: int) -> None:
        self.expectations.expect_creations(key, n)

        def one(_: int) -> bool:
            try:
                podcontrol.create_from_template(self.objects, rc, self.writer)
                return True
            except Fenced:
                raise
            except NetplaneError as e:
                log.warning("rc %s: creating a pod failed: %s", key, e)
                if self.recorder is not None:
                    self.recorder.record(rc, ev.FAILED_CREATE, f"Error creating: {e}", type="Warning")
                return False

        def batch(size: int) -> int:
            results = list(self._pool.map(one, range(size)))
            return sum(results)

        ok = rep.slow_start(n, batch)
        skipped = n - ok
        if skipped:
            self.expectations.creation_observed(key, skipped)
        with self._lock:
            self.created += ok
        if ok and self.recorder is not None:
            self.recorder.record(rc, ev.SUCCESSFUL_CREATE, f"Created {ok} pod(s)")

    def _delete(self, key: str, rc: Obj, victims: list[Mapping[str, Any]]) -> None:
        self.expectations.expect_deletions(key, [meta.namespaced_name(p) for p in victims])
        now = self._clock()

        def one(p: Mapping[str, Any]) -> bool:
            try:
                podcontrol.delete(self.objects, p, self.writer, now=now)
                return True
            except Fenced:
                raise
            except NetplaneError as e:
                log.warning("rc %s: deleting pod %s failed: %s", key, meta.name(p), e)
                self.expectations.deletion_observed(key, meta.namespaced_name(p))
                return False

        results = list(self._pool.map(one, victims))
        with self._lock:
            self.deleted += sum(results)
        if self.recorder is not None:
            for p, ok in zip(victims, results, strict=True):
                if ok:
                    self.recorder.record(rc, ev.SUCCESSFUL_DELETE, f"Deleted pod: {meta.name(p)}")

    def _update_status(self, rc: Obj, active: list[Mapping[str, Any]]) -> None:
        want = rep.status(rc, active, now=self._clock())
        have = rc.get("status") or {}
        if all(have.get(k, 0) == v for k, v in want.items()):
            return

        def mutate(cur: Obj) -> Obj | None:
            if meta.uid(cur) != meta.uid(rc):
                return None
            cur["status"] = {**(cur.get("status") or {}), **want}
            return cur

        try:
            self.objects.guaranteed_update(REPLICATION_CONTROLLER, meta.name(rc), meta.namespace(rc), mutate,
                                           retries=8, guards=self.writer.guards)
        except NotFoundError:
            pass

    # ------------------------------------------------------------------ deletion of the RC
    def _owned(self, ns: str, name: str) -> list[Obj]:
        return self.inf.pods.by_index("controller", controller_index_key(ns, REPLICATION_CONTROLLER, name))

    def _cascade(self, ns: str, name: str, *, keep_uid: str) -> None:
        """Delete the pods controlled by an RC of this name that no longer exists."""
        now = self._clock()
        for p in self._owned(ns, name):
            ref = meta.controller_ref(p) or {}
            if ref.get("uid") == keep_uid or meta.is_deleting(p):
                continue
            podcontrol.delete(self.objects, p, self.writer, now=now)
            log.info("rc %s/%s is gone: deleted its pod %s", ns, name, meta.name(p))

    def _finish_deletion(self, rc: Obj) -> None:
        ns, name, uid = meta.namespace(rc), meta.name(rc), meta.uid(rc)
        finalizers = list(meta.meta(rc).get("finalizers") or [])
        owned = [p for p in self._owned(ns, name) if (meta.controller_ref(p) or {}).get("uid") == uid]
        now = self._clock()
        if orphans_pods(rc):
            for p in owned:
                self._write_pod(rep.released(p, rc))
            if ORPHAN_FINALIZER in finalizers:
                finalizers.remove(ORPHAN_FINALIZER)
        else:
            for p in owned:
                if not meta.is_deleting(p):
                    podcontrol.delete(self.objects, p, self.writer, now=now)
        if finalizers:
            def drop(cur: Obj) -> Obj | None:
                if meta.uid(cur) != uid:
                    return None
                cur["metadata"]["finalizers"] = finalizers
                return cur

            self.objects.guaranteed_update(REPLICATION_CONTROLLER, name, ns, drop, guards=self.writer.guards)
            return  # another finalizer's owner finishes the deletion
        try:
            self.objects.delete(REPLICATION_CONTROLLER, name, ns,
                                resource_version=meta.meta(rc).get("resourceVersion"), guards=self.writer.guards)
        except NetplaneError as e:  # changed meanwhile: the next sync sees the new version
            log.info("rc %s/%s: final delete deferred: %s", ns, name, e)
            raise
        self.expectations.delete(f"{ns}/{name}")


def _counted(p: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a pod an RC's sync depends on (claim, counts, status, deletion order)."""
    return (meta.labels(p), meta.owner_references(p), meta.is_deleting(p), podobj.is_ready(p),
            podobj.phase(p), podobj.node_name(p))
