"""The replication manager's decisions, pure (pkg/controller/replicaset, controller_utils.go).

Given an RC and the pods of its namespace, `plan` says what one sync does:

* **claim** (PodControllerRefManager.ClaimPods): pods whose controller reference is this RC
  and that still match are owned; matching orphans (not being deleted) are *adopted*; owned
  pods that stopped matching are *released*; pods controlled by anything else are never
  touched — so overlapping selectors cannot make two RCs fight over a pod (#2210, #24152).
* **diff**: active owned pods (not terminal, not being deleted) against `spec.replicas`,
  capped at the burst (500 per sync): create N, or delete the N first in `deletion_order`.
* creations run in **slow-start batches** 1, 2, 4, … and the first batch with a failure
  stops the rest (`slow_start`), so a quota or admission error costs one call, not 500.

`Expectations` is the guard against acting on a stale cache (kubernetes#7561: 3,222 pods for
3,000 replicas): a sync records the creations/deletions it issued and the next sync of that RC
waits until the watch has shown them all or 5 minutes passed (clock injected).

Deletion order (ActivePodsWithRanks.Less, without the alpha deletion-cost annotation):
unassigned < assigned; Pending < Unknown < Running; not ready < ready; more pods of the same
RC on its node (doubled up) first; ready for less time first; more restarts first; newer first.
Ready times are compared exactly (Kubernetes' LogarithmicScaleDown buckets them by powers of
two; we keep the original, simpler rule).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cmp_to_key
from typing import Any

from orchestrator.objects import meta
from orchestrator.objects import pod as pods
from orchestrator.objects import replicationcontroller as rcs

BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1
EXPECTATIONS_TIMEOUT = 300.0  # seconds
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}

Obj = Mapping[str, Any]


# --------------------------------------------------------------------------- claiming
@dataclass(frozen=True)
class Claim:
    owned: list[Obj] = field(default_factory=list)  # ours and matching (adopted ones included)
    adopt: list[Obj] = field(default_factory=list)  # orphans to take (write a controller ref)
    release: list[Obj] = field(default_factory=list)  # ours but no longer matching


def claim(rc: Obj, candidates: Iterable[Obj]) -> Claim:
    """Sort the pods of the RC's namespace into owned / adopt / release."""
    sel = rcs.selector(rc)
    my_uid = meta.uid(rc)
    ns = meta.namespace(rc)
    rc_deleting = meta.is_deleting(rc)
    out = Claim()
    for p in candidates:
        if meta.namespace(p) != ns:
            continue
        match = sel.matches(meta.labels(p))
        ref = meta.controller_ref(p)
        if ref is not None:
            if ref.get("uid") != my_uid:
                continue  # someone else's
            if match:
                out.owned.append(p)
            elif not rc_deleting:
                out.release.append(p)
            continue
        if rc_deleting or not match or meta.is_deleting(p):
            continue
        out.adopt.append(p)
        out.owned.append(p)
    return out


def adopted(p: Obj, rc: Obj) -> dict[str, Any]:
    """A copy of `p` with this RC as its controller (what the adoption patch writes)."""
    out: dict[str, Any] = copy.deepcopy(dict(p))
    md = out.setdefault("metadata", {})
    refs = [r for r in md.get("ownerReferences") or [] if r.get("uid") != meta.uid(rc)]
    refs.append(meta.controller_ref_to(rc, kind=meta.REPLICATION_CONTROLLER))
    md["ownerReferences"] = refs
    return out


def released(p: Obj, rc: Obj) -> dict[str, Any]:
    """A copy of `p` without this RC's owner reference."""
    out: dict[str, Any] = copy.deepcopy(dict(p))
    md = out.setdefault("metadata", {})
    refs = [r for r in md.get("ownerReferences") or [] if r.get("uid") != meta.uid(rc)]
    if refs:
        md["ownerReferences"] = refs
    else:
        md.pop("ownerReferences", None)
    return out


# --------------------------------------------------------------------------- ordering
def _after_or_zero(a: datetime | None, b: datetime | None) -> bool:
    """kube afterOrZero: a zero time sorts first, else the later time first."""
    if a is None or b is None:
        return a is None
    return a > b


def _created(p: Obj) -> datetime | None:
    t = meta.meta(p).get("creationTimestamp")
    return meta.parse_time(t) if t else None


def _less(a: Obj, b: Obj, rank_a: int, rank_b: int) -> bool:
    na, nb = pods.node_name(a), pods.node_name(b)
    if na != nb and (not na or not nb):
        return not na
    pa, pb = _PHASE_ORDINAL.get(pods.phase(a), 0), _PHASE_ORDINAL.get(pods.phase(b), 0)
    if pa != pb:
        return pa < pb
    ra, rb = pods.is_ready(a), pods.is_ready(b)
    if ra != rb:
        return not ra
    if rank_a != rank_b:
        return rank_a > rank_b
    if ra and rb:
        ta, tb = pods.ready_since(a), pods.ready_since(b)
        if ta != tb:
            return _after_or_zero(ta, tb)
    ca, cb = pods.restart_count(a), pods.restart_count(b)
    if ca != cb:
        return ca > cb
    ta, tb = _created(a), _created(b)
    if ta != tb:
        return _after_or_zero(ta, tb)
    return False


def deletion_order(victims: Sequence[Obj], related: Iterable[Obj] | None = None) -> list[Obj]:
    """`victims` sorted so the first ones are the best to delete. `related` (default: the
    victims) are the pods whose count per node makes a pod 'doubled up'."""
    per_node: Counter[str] = Counter(
        pods.node_name(p) for p in (victims if related is None else related) if pods.is_active(p))
    ranked = [(p, per_node[pods.node_name(p)]) for p in victims]

    def cmp(x: tuple[Obj, int], y: tuple[Obj, int]) -> int:
        if _less(x[0], y[0], x[1], y[1]):
            return -1
        if _less(y[0], x[0], y[1], x[1]):
            return 1
        return 0

    return [p for p, _ in sorted(ranked, key=cmp_to_key(cmp))]


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Plan:
    create: int = 0
    delete: list[Obj] = field(default_factory=list)
    adopt: list[Obj] = field(default_factory=list)
    release: list[Obj] = field(default_factory=list)
    active: list[Obj] = field(default_factory=list)  # owned active pods (what status counts)


def plan(rc: Obj, candidates: Iterable[Obj], *, burst: int = BURST_REPLICAS) -> Plan:
    """One sync's actions for `rc` over the pods of its namespace."""
    c = claim(rc, candidates)
    active = [p for p in c.owned if pods.is_active(p)]
    want = rcs.replicas(rc)
    diff = len(active) - want
    if meta.is_deleting(rc):
        return Plan(adopt=[], release=[], active=active)
    if diff < 0:
        return Plan(create=min(-diff, burst), adopt=c.adopt, release=c.release, active=active)
    if diff > 0:
        victims = deletion_order(active)[: min(diff, burst)]
        return Plan(delete=victims, adopt=c.adopt, release=c.release, active=active)
    return Plan(adopt=c.adopt, release=c.release, active=active)


def slow_start_batches(count: int, initial: int = SLOW_START_INITIAL_BATCH) -> list[int]:
    """Batch sizes for `count` creations: 1, 2, 4, ... and the remainder (10 -> 1, 2, 4, 3)."""
    out = []
    remaining = count
    size = min(remaining, initial)
    while size > 0:
        out.append(size)
        remaining -= size
        size = min(2 * size, remaining)
    return out


def slow_start(count: int, run_batch: Callable[[int], int], *, initial: int = SLOW_START_INITIAL_BATCH) -> int:
    """Run creations in slow-start batches; `run_batch(n)` attempts n and returns how many
    succeeded. Stops after the first batch with a failure. Returns the total successes; the
    caller lowers its expectations by `count - successes` (skipped and failed creations)."""
    successes = 0
    for size in slow_start_batches(count, initial):
        ok = run_batch(size)
        successes += ok
        if ok < size:
            break
    return successes


def pod_from_template(rc: Obj) -> dict[str, Any]:
    """A new pod for the RC (controller.GetPodFromTemplate): the template's labels,
    annotations and spec, `generateName` "<rc>-", and the RC as controller."""
    tmpl = (rc.get("spec") or {}).get("template") or {}
    tmeta = tmpl.get("metadata") or {}
    md: dict[str, Any] = {
        "generateName": meta.name(rc) + "-",
        "namespace": meta.namespace(rc),
        "ownerReferences": [meta.controller_ref_to(rc, kind=meta.REPLICATION_CONTROLLER)],
    }
    for k in ("labels", "annotations", "finalizers"):
        if tmeta.get(k):
            md[k] = copy.deepcopy(tmeta[k])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": copy.deepcopy(tmpl.get("spec") or {})}


def status(rc: Obj, active: Sequence[Obj], *, now: datetime) -> dict[str, int]:
    """The RC's status from its active owned pods (calculateStatus)."""
    spec = rc.get("spec") or {}
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = spec.get("minReadySeconds") or 0
    ready = [p for p in active if pods.is_ready(p)]
    available = 0
    for p in ready:
        since = pods.ready_since(p)
        if min_ready == 0 or (since is not None and (now - since).total_seconds() >= min_ready):
            available += 1
    labeled = sum(1 for p in active if all(meta.labels(p).get(k) == v for k, v in tlabels.items()))
    return {
        "replicas": len(active),
        "fullyLabeledReplicas": labeled,
        "readyReplicas": len(ready),
        "availableReplicas": available,
        "observedGeneration": meta.meta(rc).get("generation", 0),
    }


# --------------------------------------------------------------------------- expectations
@dataclass
class _Expected:
    add: int
    delete: int
    timestamp: float
    deleting: set[str] = field(default_factory=set)


class Expectations:
    """Creations and deletions in flight per controller key (client-go's
    UIDTrackingControllerExpectations). Thread-safe: watch handlers lower, syncs raise."""

    def __init__(self, *, timeout: float = EXPECTATIONS_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._by_key: dict[str, _Expected] = {}

    def satisfied(self, key: str) -> bool:
        """May the controller act on `key`? Yes when nothing is pending, everything expected
        was observed, or the record is older than the timeout (a lost watch event)."""
        with self._lock:
            e = self._by_key.get(key)
            if e is None:
                return True
            if e.add <= 0 and e.delete <= 0:
                return True
            return self._clock() - e.timestamp > self.timeout

    def expect_creations(self, key: str, n: int) -> None:
        with self._lock:
            self._by_key[key] = _Expected(n, 0, self._clock())

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        ks = set(pod_keys)
        with self._lock:
            self._by_key[key] = _Expected(0, len(ks), self._clock(), ks)

    def creation_observed(self, key: str, n: int = 1) -> None:
        with self._lock:
            e = self._by_key.get(key)
            if e is not None:
                e.add -= n

    def deletion_observed(self, key: str, pod_key: str) -> None:
        """A pod's deletion was seen (or its delete call failed); counted once per pod."""
        with self._lock:
            e = self._by_key.get(key)
            if e is not None and pod_key in e.deleting:
                e.deleting.discard(pod_key)
                e.delete -= 1

    def delete(self, key: str) -> None:
        with self._lock:
            self._by_key.pop(key, None)

    def pending(self, key: str) -> tuple[int, int]:
        with self._lock:
            e = self._by_key.get(key)
            return (max(e.add, 0), max(e.delete, 0)) if e else (0, 0)
