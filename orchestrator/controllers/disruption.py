"""kube-controller-manager's disruption controller: each PodDisruptionBudget's status says how
many of its pods are healthy and how many may be disrupted now, which `pods/eviction` reads
(`Registry.evict`) before it deletes a pod (`kubectl drain`).

As kube's (pkg/controller/disruption):

* its pods are those of its namespace its selector matches (policy/v1: no selector, no pods);
* an integer `minAvailable`: `expectedPods` is the number of those pods and `desiredHealthy`
  the integer; a percentage, or `maxUnavailable`: `expectedPods` is the replicas their
  controllers (ReplicationControllers, by controller reference) ask for, and `desiredHealthy`
  the percentage of it (rounded up) or that many less `maxUnavailable` (a percentage rounded
  up); a budget with neither wants all of its pods;
* `currentHealthy` counts the pods that are Ready and not being deleted, less those an eviction
  took in the last two minutes (`disruptedPods`, until the pod is gone or being deleted);
* `disruptionsAllowed` is `currentHealthy - desiredHealthy` (never below 0), and the
  `DisruptionAllowed` condition says whether it is above 0 (SufficientPods, InsufficientPods);
* `observedGeneration` the spec it was computed for: an eviction waits for it (429).

A pod without a controller, under a percentage or `maxUnavailable`, counts as one expected
pod (kube reports an error and does not compute such a budget).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from orchestrator.controllers.base import KeyLoop, Writer
from orchestrator.controllers.informers import Informers
from orchestrator.informer import Informer, wait_all_synced
from orchestrator.objects import meta
from orchestrator.objects import pod as podutil
from orchestrator.objects.meta import POD_DISRUPTION_BUDGET
from orchestrator.storage import Conflict, ObjectStore
from orchestrator.validation.disruption import matching_pods, scaled

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DELETION_TIMEOUT = 120.0  # seconds an evicted pod is not counted healthy, while it goes (kube's)


def _parse_time(text: Any) -> float | None:
    try:
        return meta.parse_time(str(text)).timestamp()
    except ValueError:
        return None


def budget_status(pdb: Obj, pods: list[Obj], replicas_of: Callable[[Obj], int | None], now: float) -> Obj:
    """The status the controller writes for `pdb`, its namespace's pods given."""
    spec = pdb.get("spec") or {}
    mine = matching_pods(pdb, pods)
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if isinstance(min_available, int) and not isinstance(min_available, bool):
        expected, desired = len(mine), min_available
    else:
        expected, seen = 0, set()
        for p in mine:
            ref = meta.controller_ref(p)
            if ref is None:
                expected += 1
            elif ref.get("uid") not in seen:  # each controller's replicas once
                seen.add(ref.get("uid"))
                replicas = replicas_of(p)
                expected += replicas if replicas is not None else 1
        if max_unavailable is not None:
            desired = max(0, expected - scaled(max_unavailable, expected, round_up=True))
        elif min_available is not None:
            desired = scaled(min_available, expected, round_up=True)
        else:
            desired = expected
    old = (pdb.get("status") or {}).get("disruptedPods") or {}
    live = {meta.name(p): p for p in mine}
    disrupted = {}
    for name, when in old.items():
        t = _parse_time(when)
        still = live.get(name)
        if t is not None and still is not None and not meta.is_deleting(still) and now - t < DELETION_TIMEOUT:
            disrupted[name] = when
    healthy = sum(1 for p in mine if podutil.is_ready(p) and not meta.is_deleting(p) and meta.name(p) not in disrupted)
    allowed = max(0, healthy - desired)
    cond = {"type": "DisruptionAllowed", "status": "True" if allowed > 0 else "False",
            "reason": "SufficientPods" if allowed > 0 else "InsufficientPods", "message": "",
            "observedGeneration": meta.meta(pdb).get("generation", 1)}
    out: Obj = {"observedGeneration": meta.meta(pdb).get("generation", 1), "disruptionsAllowed": allowed,
                "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected, "conditions": [cond]}
    if disrupted:
        out["disruptedPods"] = disrupted
    return out


def _same(a: Obj, b: Obj) -> bool:
    """Statuses alike but for the conditions' transition times."""
    def strip(s: Obj) -> Obj:
        return {**s, "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                    for c in s.get("conditions") or []]}
    return strip(a) == strip(b)


class DisruptionController:
    def __init__(self, objects: ObjectStore, infs: Informers, *, writer: Writer, resync: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.objects = objects
        self.infs = infs
        self.writer = writer
        self.clock = clock
        self.budgets = Informer(objects, POD_DISRUPTION_BUDGET, resync_period=resync)
        self.loop = KeyLoop("disruption", self.sync, writer=writer, workers=1)
        self.budgets.add_handler(lambda old, new: self.loop.queue.add(self._key(new or old)))
        infs.pods.add_handler(self._on_pod)

    @staticmethod
    def _key(obj: Obj | None) -> str:
        return f"{meta.namespace(obj)}/{meta.name(obj)}" if obj is not None else ""

    def _on_pod(self, old: Obj | None, new: Obj | None) -> None:
        pod = new or old
        if pod is None:
            return
        for pdb in self.budgets.list(meta.namespace(pod)):
            if matching_pods(pdb, [p for p in (old, new) if p is not None]):
                self.loop.queue.add(self._key(pdb))

    def run(self, stop: threading.Event) -> None:
        self.budgets.start(stop)
        if wait_all_synced(stop, self.budgets, self.infs.pods, self.infs.rcs):
            self.loop.run(stop)

    def _replicas_of(self, pod: Obj) -> int | None:
        ref = meta.controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicationController":
            return None
        rc = self.infs.rcs.get(str(ref.get("name")), meta.namespace(pod))
        if rc is None or meta.uid(rc) != ref.get("uid"):
            return None
        replicas = (rc.get("spec") or {}).get("replicas", 1)
        return replicas if isinstance(replicas, int) else None

    def sync(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        pdb = self.budgets.get(name, namespace)
        if pdb is None or meta.is_deleting(pdb):
            return
        now = self.clock()
        status = budget_status(pdb, self.infs.pods.list(namespace), self._replicas_of, now)
        current = pdb.get("status") or {}
        if _same(status, current):
            return
        stamp = meta.from_epoch(now)
        old_conds = {c.get("type"): c for c in current.get("conditions") or []}
        for c in status["conditions"]:
            before = old_conds.get(c["type"])
            same = before is not None and before.get("status") == c["status"]
            c["lastTransitionTime"] = before.get("lastTransitionTime", stamp) if same and before else stamp
        try:
            self.objects.update({**pdb, "status": status}, guards=self.writer.guards, current=pdb)
        except Conflict:
            self.loop.queue.add(key)  # changed meanwhile (an eviction took one): again
        if status.get("disruptedPods"):  # look again when the oldest of them no longer counts
            self.loop.queue.add_after(key, DELETION_TIMEOUT)
