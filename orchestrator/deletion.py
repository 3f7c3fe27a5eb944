"""`delete`: kube-apiserver's deletion semantics for netplane's kinds, and cascading.

* **Pods are deleted gracefully** when they may still be running: a pod bound to a node and
  not finished gets `deletionTimestamp` = now + grace period and `deletionGracePeriodSeconds`
  (the pod's `terminationGracePeriodSeconds` unless `grace` says otherwise); the node agent
  stops it and removes the object. A pod never scheduled, already finished, or deleted with
  grace 0 (`--force --grace-period=0`) is removed at once. A second delete can only shorten
  the grace period, as in Kubernetes.
* **ReplicationControllers cascade.** `background` (kubectl's default): the RC is deleted,
  then the pods it controls (controller reference with its uid) are deleted as above — the
  garbage collector's work, done by the client until a collector runs in `netplane master`.
  `orphan`: one write marks the RC — `deletionTimestamp` plus the annotation
  `netplane.io/deletion-propagation: Orphan` (how kube-apiserver's DeleteOptions
  `propagationPolicy: Orphan` is recorded here) — so the replication manager stops acting on
  it and, should this client die midway, can finish the job itself: then every pod loses its
  controller reference to the RC, and finally the RC is deleted.
* **Services** give back their cluster IP and node ports (`applier.Applier.release_service`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from netplane.errors import NotFoundError
from orchestrator.applier import Applier
from orchestrator.objects import meta
from orchestrator.objects import pod as pods
from orchestrator.objects.meta import NAMESPACE, POD, REPLICATION_CONTROLLER, SERVICE, Kind
from orchestrator.storage import Obj, ObjectStore

Cascade = Literal["background", "orphan"]
CASCADES: tuple[Cascade, ...] = ("background", "orphan")
PROPAGATION_ANNOTATION = "netplane.io/deletion-propagation"
ORPHAN = "Orphan"
DEFAULT_GRACE = 30  # terminationGracePeriodSeconds' default


def graceful_mark(pod: Obj, *, now: float, grace: int) -> Obj | None:
    """The pod marked for deletion in `grace` seconds; None if it is already marked to go
    at least that soon (a delete may shorten the grace period, never lengthen it)."""
    md = meta.meta(pod)
    old = md.get("deletionGracePeriodSeconds")
    if md.get("deletionTimestamp") and old is not None and old <= grace:
        return None
    out = copy.deepcopy(dict(pod))
    out["metadata"]["deletionTimestamp"] = meta.from_epoch(now + grace)
    out["metadata"]["deletionGracePeriodSeconds"] = grace
    return out


def deletes_at_once(pod: Mapping[str, Any], grace: int) -> bool:
    """kube-apiserver removes a pod at once when nothing may still run it."""
    return grace == 0 or not pods.node_name(pod) or pods.is_terminal(pod)


def orphan_mark(rc: Obj, *, now: float) -> Obj:
    """The RC marked as being deleted with its pods orphaned (one write)."""
    out = copy.deepcopy(dict(rc))
    md = out["metadata"]
    md.setdefault("deletionTimestamp", meta.from_epoch(now))
    anns = md.get("annotations")
    md["annotations"] = {**(anns if isinstance(anns, dict) else {}), PROPAGATION_ANNOTATION: ORPHAN}
    return out


def controlled_by(pod: Mapping[str, Any], owner_uid: str) -> bool:
    ref = meta.controller_ref(pod)
    return ref is not None and ref.get("uid") == owner_uid


def without_owner(pod: Obj, owner_uid: str) -> Obj | None:
    """The pod without its references to `owner_uid`; None when it has none."""
    refs = meta.owner_references(pod)
    keep = [r for r in refs if r.get("uid") != owner_uid]
    if len(keep) == len(refs):
        return None
    out = copy.deepcopy(dict(pod))
    if keep:
        out["metadata"]["ownerReferences"] = keep
    else:
        out["metadata"].pop("ownerReferences", None)
    return out


class Deleter:
    def __init__(self, objects: ObjectStore, *, clock: Callable[[], float] = time.time) -> None:
        self.objects = objects
        self._clock = clock

    def delete(self, kind: Kind, name: str, namespace: str | None, *,
               cascade: Cascade = "background", grace: int | None = None) -> bool:
        """Delete one object (False if it does not exist)."""
        obj = self.objects.get(kind, name, namespace)
        if obj is None:
            return False
        if kind == POD:
            return self.delete_pod(obj, grace=grace)
        if kind == REPLICATION_CONTROLLER:
            return self._delete_rc(obj, cascade=cascade, grace=grace)
        if kind == NAMESPACE:
            return self._delete_namespace(obj)
        gone = self.objects.delete(kind, name, namespace)
        if gone and kind == SERVICE:
            Applier(self.objects).release_service(obj)
        return gone

    def _delete_namespace(self, ns: Obj) -> bool:
        """Mark it Terminating: the namespace controller empties it, then removes it."""
        from orchestrator import namespaces

        name = meta.name(ns)
        if name in namespaces.PROTECTED:
            raise namespaces.ProtectedNamespace(name)
        try:
            self.objects.guaranteed_update(NAMESPACE, name, None,
                                           lambda n: namespaces.terminating_mark(n, now=self._clock()))
        except NotFoundError:
            pass
        return True

    def delete_pod(self, pod: Obj, *, grace: int | None = None) -> bool:
        name, ns = meta.name(pod), meta.namespace(pod)
        own = pods.spec(pod).get("terminationGracePeriodSeconds")
        g = grace if grace is not None else (DEFAULT_GRACE if own is None else int(own))
        if deletes_at_once(pod, g):
            return self.objects.delete(POD, name, ns)
        try:
            self.objects.guaranteed_update(
                POD, name, ns, lambda p: graceful_mark(p, now=self._clock(), grace=g))
        except NotFoundError:  # gone meanwhile: what was asked
            pass
        return True

    def _delete_rc(self, rc: Obj, *, cascade: Cascade, grace: int | None) -> bool:
        name, ns, uid = meta.name(rc), meta.namespace(rc), meta.uid(rc)
        if cascade == "orphan":
            self.objects.guaranteed_update(REPLICATION_CONTROLLER, name, ns,
                                           lambda r: orphan_mark(r, now=self._clock()))
            self.release_pods(ns, uid)
            return self.objects.delete(REPLICATION_CONTROLLER, name, ns)
        gone = self.objects.delete(REPLICATION_CONTROLLER, name, ns)
        items, _ = self.objects.list(POD, ns)
        for p in items:
            if controlled_by(p, uid) and not meta.is_deleting(p):
                self.delete_pod(p, grace=grace)
        return gone

    def release_pods(self, namespace: str, owner_uid: str) -> int:
        """Drop every pod's references to `owner_uid` (orphaning them); how many changed."""
        items, _ = self.objects.list(POD, namespace)
        n = 0
        for p in items:
            if any(r.get("uid") == owner_uid for r in meta.owner_references(p)):
                try:
                    self.objects.guaranteed_update(POD, meta.name(p), namespace,
                                                   lambda q: without_owner(q, owner_uid))
                    n += 1
                except NotFoundError:
                    continue
        return n
