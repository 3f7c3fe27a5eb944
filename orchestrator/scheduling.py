"""The scheduler's decision: a pure function from a cluster snapshot to a placement.

    state = ClusterState(); state.upsert_node(node); state.upsert_pod(PodInfo.of(pod)); ...
    result = schedule(PodInfo.of(pending), state, rng=random.Random(seed))
    -> Placement(node="h2", score=27, ...)  or  Unschedulable("0/3 nodes are available: ...")

`ClusterState` is the scheduler cache: per node, the sums the filters and scores need (requested
cpu/memory/pods, host ports in use, counts of pods per spread signature), updated incrementally
as pods and nodes change, so one decision costs O(nodes), never O(pods). The loop around it
(a later module) feeds it from list+watch, *assumes* a pod on its chosen node before the
binding write lands (so the next decision sees it) and forgets it if the binding fails.

Filters, in kube-scheduler's plugin order; a node reports the reasons of the first that fails:

    NodeUnschedulable   spec.unschedulable            "node(s) were unschedulable"
    TaintToleration     Ready False / Unknown         "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
                                                      "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
    NodeAffinity        spec.nodeSelector             "node(s) didn't match Pod's node affinity/selector"
    NodePorts           hostPort conflicts            "node(s) didn't have free ports for the requested pod ports"
    NodeResourcesFit    pods, cpu, memory requests    "Too many pods", "Insufficient cpu", "Insufficient memory"

(The not-ready/unreachable taints are what Kubernetes' node lifecycle controller puts on such
nodes; we read the Ready condition directly and word it the same way.) An unschedulable pod
gets kube-scheduler's FitError text: "0/3 nodes are available: 1 node(s) didn't match Pod's
node affinity/selector, 2 Insufficient cpu." — reasons counted per node and sorted as strings.

Scores, each 0-10 and summed (Kubernetes 1.0's priorities, all weight 1):

    LeastRequested            ((cap - req) * 10 / cap), averaged over cpu and memory
    BalancedResourceAllocation 10 - |cpuFraction - memFraction| * 10 (0 if either is full)
    SelectorSpread            10 * (max - count) / max over pods of the same RC/Service

Scoring counts a container without requests as 100m cpu and 200Mi memory (kube's non-zero
defaults), so best-effort pods still spread. Ties are broken by the injected RNG. Like
kube-scheduler (percentageOfNodesToScore), the search stops once `feasible_nodes_to_find(n)`
feasible nodes are found — all of them up to 100 nodes, else 50 - n/125 percent of the nodes
(floor 5 %, and never fewer than 100): 420 of 1,000, 500 of 5,000 — and only those are scored;
the next decision starts where this one stopped, so every node gets its turn.

Cost (a decision is the scheduler's hot loop: 1,000 nodes, 420 of them scored per pod): each
node keeps a memo from the pod's shape (requests and non-zero requests) to its resource fit
and resource scores, emptied whenever the node or its pods change. Replicas of one template
share a shape, so after the first decision only the node the last pod went to is computed
again; the other nodes cost a dict lookup. Nodes that are schedulable and Ready need no other
filter for a pod without nodeSelector or hostPorts. Quantities are parsed once per distinct
string. SelectorSpread asks which pod signatures (sets of groups) share a group with the pod's:
usually one (an RC's pods, with their Service), then a node's count is one lookup; with several
(a Service over several RCs) each node's count is remembered like the scores. A decision at
1,000 nodes went from ~290 us to ~75 us without spread groups, from ~420 us to ~105 us with an
RC and its Service, and from ~570 us to ~130 us with 50 RCs under one Service
(`bench/results/orchestrator.md`).
"""

from __future__ import annotations

import copy
import functools
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from netplane.errors import NetplaneError
from orchestrator.objects import meta
from orchestrator.objects import node as nodes
from orchestrator.objects import pod as pods
from orchestrator.objects.pod import HostPort, Resources
from orchestrator.objects.quantity import cpu_millis, memory_bytes
from orchestrator.objects.selector import Selector

DEFAULT_MILLI_CPU_REQUEST = 100  # kube's non-zero defaults for scoring
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
MAX_SCORE = 10
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENT = 5

R_UNSCHEDULABLE = "node(s) were unschedulable"
R_NOT_READY = "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
R_UNREACHABLE = "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
R_SELECTOR = "node(s) didn't match Pod's node affinity/selector"
R_PORTS = "node(s) didn't have free ports for the requested pod ports"
R_PODS = "Too many pods"
R_CPU = "Insufficient cpu"
R_MEMORY = "Insufficient memory"
NO_NODES = "no nodes available to schedule pods"


@dataclass(frozen=True)
class PodInfo:
    """What scheduling needs of a pod, extracted once per pod change."""

    key: str
    namespace: str
    labels: Mapping[str, str]
    requests: Resources
    nonzero_cpu: int
    nonzero_memory: int
    host_ports: frozenset[HostPort] = frozenset()
    node_selector: tuple[tuple[str, str], ...] = ()
    node: str = ""
    deleting: bool = False
    terminal: bool = False

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodInfo:
        # one pass over the containers for both sums: requests as `pods.requests` counts them
        # (limits stand in for missing requests), and the non-zero ones scoring uses
        cpu = mem = nz_cpu = nz_mem = 0
        spec = pods.spec(pod)
        for c in spec.get("containers") or []:
            res = c.get("resources") or {}
            req = res.get("requests") or {}
            lim = res.get("limits") or {}
            if "cpu" in req or "cpu" in lim:
                v = _cpu_millis(req["cpu"] if "cpu" in req else lim["cpu"])
                cpu += v
                nz_cpu += v
            else:
                nz_cpu += DEFAULT_MILLI_CPU_REQUEST
            if "memory" in req or "memory" in lim:
                v = _memory_bytes(req["memory"] if "memory" in req else lim["memory"])
                mem += v
                nz_mem += v
            else:
                nz_mem += DEFAULT_MEMORY_REQUEST
        selector = spec.get("nodeSelector")
        return cls(
            key=meta.namespaced_name(pod),
            namespace=meta.namespace(pod),
            labels=dict(meta.labels(pod)),
            requests=Resources(cpu, mem, 1),
            nonzero_cpu=nz_cpu,
            nonzero_memory=nz_mem,
            host_ports=pods.host_ports(pod),
            node_selector=tuple(sorted(selector.items())) if selector else (),
            node=pods.node_name(pod),
            deleting=meta.is_deleting(pod),
            terminal=pods.is_terminal(pod),
        )


@functools.lru_cache(maxsize=4096, typed=True)
def _cpu_millis_cached(raw: str | float) -> int:
    return cpu_millis(raw)


@functools.lru_cache(maxsize=4096, typed=True)
def _memory_bytes_cached(raw: str | float) -> int:
    return memory_bytes(raw)


def _cpu_millis(raw: Any) -> int:
    """`cpu_millis`, memoized: exact parsing goes through Fraction (~10 us a quantity), and a
    cluster's pods repeat a handful of quantity strings."""
    try:
        return _cpu_millis_cached(raw)
    except TypeError:  # unhashable: not a quantity; let the parser say so
        return cpu_millis(raw)


def _memory_bytes(raw: Any) -> int:
    try:
        return _memory_bytes_cached(raw)
    except TypeError:
        return memory_bytes(raw)


class NodeInfo:
    """One node and the running sums of the pods on it."""

    __slots__ = ("allocatable", "labels", "memo", "name", "nonzero_cpu", "nonzero_memory", "pods", "ports",
                 "ready", "req_cpu", "req_memory", "req_pods", "signatures", "spread", "unschedulable", "usable")

    def __init__(self, name: str) -> None:
        self.name = name
        self.labels: Mapping[str, str] = {}
        self.allocatable = Resources()
        self.ready = "Unknown"
        self.unschedulable = False
        self.req_cpu = self.req_memory = self.req_pods = 0
        self.nonzero_cpu = self.nonzero_memory = 0
        self.ports: dict[tuple[str, int], Counter[str]] = {}
        self.pods: dict[str, PodInfo] = {}
        self.signatures: Counter[frozenset[str]] = Counter()
        self.usable = False  # schedulable and Ready: only the pod-specific filters are left
        # pod shape (requests cpu, memory, non-zero cpu, memory) -> the resource filter's
        # reasons (a tuple) or, when it fits, LeastRequested + BalancedResourceAllocation (an
        # int). A cache of a pure function of the sums above: emptied whenever they change.
        self.memo: dict[tuple[int, int, int, int], int | tuple[str, ...]] = {}
        self.spread: dict[frozenset[str], int] = {}  # spread groups -> pods of them here, likewise

    def set_node(self, node: Mapping[str, Any]) -> None:
        self.labels = dict(meta.labels(node))
        self.allocatable = nodes.allocatable(node)
        self.ready = nodes.ready_status(node)
        self.unschedulable = nodes.unschedulable(node)
        self.usable = not self.unschedulable and self.ready == "True"
        self.memo.clear()
        self.spread.clear()

    def add(self, p: PodInfo, signature: frozenset[str]) -> None:
        self.memo.clear()
        self.spread.clear()
        self.pods[p.key] = p
        self.req_cpu += p.requests.milli_cpu
        self.req_memory += p.requests.memory
        self.req_pods += 1
        self.nonzero_cpu += p.nonzero_cpu
        self.nonzero_memory += p.nonzero_memory
        for ip, proto, port in p.host_ports:
            self.ports.setdefault((proto, port), Counter())[ip] += 1
        if signature:
            self.signatures[signature] += 1

    def remove(self, p: PodInfo, signature: frozenset[str]) -> None:
        self.memo.clear()
        self.spread.clear()
        del self.pods[p.key]
        self.req_cpu -= p.requests.milli_cpu
        self.req_memory -= p.requests.memory
        self.req_pods -= 1
        self.nonzero_cpu -= p.nonzero_cpu
        self.nonzero_memory -= p.nonzero_memory
        for ip, proto, port in p.host_ports:
            c = self.ports[(proto, port)]
            c[ip] -= 1
            if c[ip] <= 0:
                del c[ip]
            if not c:
                del self.ports[(proto, port)]
        if signature:
            self.signatures[signature] -= 1
            if self.signatures[signature] <= 0:
                del self.signatures[signature]

    @property
    def requested(self) -> Resources:
        return Resources(self.req_cpu, self.req_memory, self.req_pods)


@dataclass(frozen=True)
class SpreadGroup:
    """An RC or Service whose pods should spread: its namespace and selector."""

    namespace: str
    selector: Selector


class ClusterState:
    """The scheduler cache: nodes with running sums, bound (and assumed) pods, spread groups.

    Pods bound to a node not (yet) known are kept and counted once the node appears.
    Terminal pods use nothing and are dropped; deleting pods still hold their resources but
    no longer count for spreading (Kubernetes does the same)."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self._order: list[str] = []
        self._infos: list[NodeInfo] = []  # self.nodes[name] for name in self._order
        self._pods: dict[str, PodInfo] = {}
        self._on_node: dict[str, set[str]] = {}  # node name -> keys of pods bound to it
        self._signature: dict[str, frozenset[str]] = {}
        self._signatures: Counter[frozenset[str]] = Counter()  # of the pods in _signature
        self._groups: dict[str, SpreadGroup] = {}
        self._groups_of: dict[tuple[Any, ...], frozenset[str]] = {}  # (namespace, *labels) -> groups
        self._touching: dict[frozenset[str], tuple[frozenset[str], ...]] = {}  # groups -> signatures

    # ------------------------------------------------------------------ nodes
    def upsert_node(self, node: Mapping[str, Any]) -> None:
        name = meta.name(node)
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
            self._order.append(name)
            self._infos.append(info)
            for key in self._on_node.get(name, ()):
                info.add(self._pods[key], self._signature.get(key, frozenset()))
        info.set_node(node)

    def remove_node(self, name: str) -> None:
        info = self.nodes.pop(name, None)
        if info is not None:
            self._order.remove(name)
            self._infos.remove(info)

    @property
    def order(self) -> list[str]:
        """Node names in the order decisions search them (do not modify)."""
        return self._order

    # ------------------------------------------------------------------ pods
    def upsert_pod(self, p: PodInfo) -> None:
        """Add or replace a pod; unbound and terminal pods are not counted anywhere."""
        self.remove_pod(p.key)
        if not p.node or p.terminal:
            return
        self._pods[p.key] = p
        self._on_node.setdefault(p.node, set()).add(p.key)
        sig = self._signature_of(p)
        if sig:
            self._signature[p.key] = sig
            self._signatures[sig] += 1
            if self._signatures[sig] == 1:
                self._touching.clear()
        info = self.nodes.get(p.node)
        if info is not None:
            info.add(p, sig)

    def assume(self, p: PodInfo, node: str) -> PodInfo:
        """Count a pod on `node` before its binding is written (kube's AssumePod)."""
        bound = replace(p, node=node)
        self.upsert_pod(bound)
        return bound

    def remove_pod(self, key: str) -> None:
        old = self._pods.pop(key, None)
        if old is None:
            return
        on = self._on_node.get(old.node)
        if on is not None:
            on.discard(key)
            if not on:
                del self._on_node[old.node]
        sig = self._signature.pop(key, frozenset())
        if sig:
            self._signatures[sig] -= 1
            if self._signatures[sig] <= 0:
                del self._signatures[sig]
                self._touching.clear()
        info = self.nodes.get(old.node)
        if info is not None and key in info.pods:
            info.remove(old, sig)

    def pod(self, key: str) -> PodInfo | None:
        return self._pods.get(key)

    # ------------------------------------------------------------------ spread groups
    def set_spread_group(self, key: str, group: SpreadGroup | None) -> None:
        """Add, change (or with None remove) an RC's or Service's selector; re-signs the pods
        of its namespace (rare: when an RC or Service changes)."""
        old = self._groups.get(key)
        if group is None:
            self._groups.pop(key, None)
        else:
            self._groups[key] = group
        self._groups_of.clear()
        namespaces = {g.namespace for g in (old, group) if g is not None}
        for p in list(self._pods.values()):
            if p.namespace in namespaces:
                self.upsert_pod(p)

    def groups_of(self, p: PodInfo) -> frozenset[str]:
        """The RCs and Services whose selector takes the pod (by namespace and labels, kept
        until a group changes: pods of one template ask the same question)."""
        if not self._groups:
            return frozenset()
        labels = p.labels
        k = (p.namespace, *sorted(labels.items())) if labels else (p.namespace,)
        got = self._groups_of.get(k)
        if got is None:
            if len(self._groups_of) >= GROUPS_OF_CACHE:
                self._groups_of.clear()
            got = self._groups_of[k] = frozenset(
                gk for gk, g in self._groups.items() if g.namespace == p.namespace and g.selector.matches(labels))
        return got

    def signatures_touching(self, groups: frozenset[str]) -> tuple[frozenset[str], ...]:
        """The signatures in use that share a group with `groups`: a node's SelectorSpread
        count is the number of its pods with one of them."""
        got = self._touching.get(groups)
        if got is None:
            got = self._touching[groups] = tuple(sig for sig in self._signatures if not sig.isdisjoint(groups))
        return got

    def _signature_of(self, p: PodInfo) -> frozenset[str]:
        return frozenset() if p.deleting else self.groups_of(p)


# --------------------------------------------------------------------------- decision
@dataclass(frozen=True)
class Placement:
    node: str
    score: int
    feasible: int  # feasible nodes found (and scored)
    evaluated: int  # nodes the filters ran on
    next_start: int  # where the next decision should start searching


@dataclass(frozen=True)
class Unschedulable:
    message: str
    reasons: Mapping[str, int] = field(default_factory=dict)
    next_start: int = 0


def feasible_nodes_to_find(n: int, percentage: int = 0) -> int:
    """kube-scheduler's numFeasibleNodesToFind (percentage 0 = adaptive)."""
    if n < MIN_FEASIBLE_NODES or percentage >= 100:
        return n
    pct = percentage if percentage > 0 else max(50 - n // 125, MIN_FEASIBLE_PERCENT)
    return max(n * pct // 100, MIN_FEASIBLE_NODES)


def filter_node(p: PodInfo, n: NodeInfo) -> list[str]:
    """Reasons the pod does not fit `n` (from the first failing filter); [] when it fits."""
    why = _node_filters(p, n)
    if why:
        return [why]
    return list(_resources_fit(p, n))


def _node_filters(p: PodInfo, n: NodeInfo) -> str:
    """The filters before NodeResourcesFit: the first one's reason, or "" when they pass."""
    if n.unschedulable:
        return R_UNSCHEDULABLE
    if n.ready != "True":
        return R_NOT_READY if n.ready == "False" else R_UNREACHABLE
    for k, v in p.node_selector:
        if n.labels.get(k) != v:
            return R_SELECTOR
    if p.host_ports:
        for ip, proto, port in p.host_ports:
            used = n.ports.get((proto, port))
            if used and (ip == "0.0.0.0" or "0.0.0.0" in used or ip in used):
                return R_PORTS
    return ""


def _resources_fit(p: PodInfo, n: NodeInfo) -> tuple[str, ...]:
    reasons: tuple[str, ...] = ()
    a = n.allocatable
    if n.req_pods + 1 > a.pods:
        reasons += (R_PODS,)
    r = p.requests
    if r.milli_cpu > 0 and r.milli_cpu > a.milli_cpu - n.req_cpu:
        reasons += (R_CPU,)
    if r.memory > 0 and r.memory > a.memory - n.req_memory:
        reasons += (R_MEMORY,)
    return reasons


def _least(req: int, cap: int) -> int:
    if cap <= 0 or req > cap:
        return 0
    return (cap - req) * MAX_SCORE // cap


def score_resources(p: PodInfo, n: NodeInfo) -> tuple[int, int]:
    """(LeastRequested, BalancedResourceAllocation) with the pod added to the node."""
    cpu = n.nonzero_cpu + p.nonzero_cpu
    mem = n.nonzero_memory + p.nonzero_memory
    ccap, mcap = n.allocatable.milli_cpu, n.allocatable.memory
    least = (_least(cpu, ccap) + _least(mem, mcap)) // 2
    if ccap <= 0 or mcap <= 0 or cpu >= ccap or mem >= mcap:
        balanced = 0
    else:
        # 10 - |cpu/ccap - mem/mcap| * 10, exactly, truncated like kube's int()
        den = ccap * mcap
        balanced = (MAX_SCORE * den - MAX_SCORE * abs(cpu * mcap - mem * ccap)) // den
    return least, balanced


def _fit_and_score(p: PodInfo, n: NodeInfo) -> int | tuple[str, ...]:
    """NodeResourcesFit's reasons, or (it fits) the resource scores summed: what `n.memo`
    keeps per pod shape."""
    reasons = _resources_fit(p, n)
    if reasons:
        return reasons
    least, balanced = score_resources(p, n)
    return least + balanced


MEMO_SHAPES = 16  # pod shapes remembered per node between its changes
MEMO_SPREAD = 64  # spread questions (sets of groups) likewise
GROUPS_OF_CACHE = 4096  # label sets whose spread groups are remembered


def schedule(
    p: PodInfo,
    state: ClusterState,
    *,
    rng: random.Random,
    start: int = 0,
    percentage_of_nodes_to_score: int = 0,
) -> Placement | Unschedulable:
    """Choose a node for `p`. Pure in effect: `state` is read, never changed, apart from the
    nodes' score memos (a cache of `_fit_and_score`, keyed by the pod's requests)."""
    infos = state._infos
    total = len(infos)
    if total == 0:
        return Unschedulable(NO_NODES)
    want = feasible_nodes_to_find(total, percentage_of_nodes_to_score)
    r = p.requests
    shape = (r.milli_cpu, r.memory, p.nonzero_cpu, p.nonzero_memory)
    generic = bool(p.node_selector or p.host_ports)  # else usable nodes need only the resource fit
    feasible: list[NodeInfo] = []
    scores: list[int] = []
    reasons: Counter[str] = Counter()
    evaluated = 0
    i = start % total
    while evaluated < total:
        n = infos[i]
        i = i + 1 if i + 1 < total else 0
        evaluated += 1
        if generic or not n.usable:
            why = _node_filters(p, n)
            if why:
                reasons[why] += 1
                continue
        memo = n.memo
        m = memo.get(shape)
        if m is None:
            if len(memo) >= MEMO_SHAPES:
                memo.clear()
            m = memo[shape] = _fit_and_score(p, n)
        if isinstance(m, int):
            feasible.append(n)
            scores.append(m)
            if len(feasible) >= want:
                break
        else:
            reasons.update(m)
    next_start = (start + evaluated) % total
    if not feasible:
        return Unschedulable(fit_error(total, reasons), dict(reasons), next_start)
    groups = state.groups_of(p)
    if groups:
        sigs = state.signatures_touching(groups)
        if len(sigs) == 1:  # the usual case: the pods of one RC (and its Service) alike
            sig = sigs[0]
            counts = [n.signatures.get(sig, 0) for n in feasible]
        else:  # several (a Service over several RCs): count each node's once, remember it
            counts = []
            for n in feasible:
                c = n.spread.get(groups)
                if c is None:
                    if len(n.spread) >= MEMO_SPREAD:
                        n.spread.clear()
                    c = n.spread[groups] = sum(k for sig, k in n.signatures.items() if not sig.isdisjoint(groups))
                counts.append(c)
        max_count = max(counts)
    if not groups or max_count == 0:  # SelectorSpread gives every node 10: only the rest counts
        best_score = max(scores)
        best = [n for n, s in zip(feasible, scores, strict=True) if s == best_score]
        best_score += MAX_SCORE
    else:
        best = []
        best_score = -1
        for n, s, count in zip(feasible, scores, counts, strict=True):
            s += MAX_SCORE * (max_count - count) // max_count
            if s > best_score:
                best, best_score = [n], s
            elif s == best_score:
                best.append(n)
    chosen = best[0] if len(best) == 1 else rng.choice(best)
    return Placement(chosen.name, best_score, len(feasible), evaluated, next_start)


def fit_error(total: int, reasons: Mapping[str, int]) -> str:
    """kube-scheduler's FitError.Error(): "0/N nodes are available: <sorted reasons>."."""
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{total} nodes are available: {', '.join(parts)}."


# --------------------------------------------------------------------------- what gets written
class BindingRefused(NetplaneError):
    """The pod cannot be bound (already bound, or being deleted): drop it from the queue."""


def bound(pod: Mapping[str, Any], node: str, *, now: datetime) -> dict[str, Any]:
    """The pod as the binding writes it: `spec.nodeName` and PodScheduled=True (what
    kube-apiserver's binding subresource does). Write it with the resourceVersion it was read
    at, so it only lands if the pod is still unbound at that revision.

    The input is left untouched; the result is a new top level, `spec`, `status` and
    condition list and shares everything else with the input (a deep copy of every pod
    bound was a tenth of a decision's cost): treat it as read-only, like an informer's object."""
    if pods.node_name(pod):
        raise BindingRefused(f"pod {meta.name(pod)} is already assigned to node {pods.node_name(pod)!r}")
    if meta.is_deleting(pod):
        raise BindingRefused(f"pod {meta.name(pod)} is being deleted, cannot be assigned to a host")
    out: dict[str, Any] = dict(pod)
    out["spec"] = {**(pod.get("spec") or {}), "nodeName": node}
    status = dict(pod.get("status") or {})
    status["conditions"] = [dict(c) for c in status.get("conditions") or []]
    out["status"] = status
    _set_condition(out, {"type": "PodScheduled", "status": "True"}, now)
    return out


def unschedulable(pod: Mapping[str, Any], message: str, *, now: datetime) -> dict[str, Any] | None:
    """The pod with PodScheduled=False, reason Unschedulable and the FitError message; None
    when that is already what it says (no write needed)."""
    c = pods.condition(pod, "PodScheduled")
    if c and c.get("status") == "False" and c.get("reason") == "Unschedulable" and c.get("message") == message:
        return None
    out: dict[str, Any] = copy.deepcopy(dict(pod))
    _set_condition(out, {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                         "message": message}, now)
    return out


def _set_condition(pod: dict[str, Any], cond: dict[str, str], now: datetime) -> None:
    conds = pod.setdefault("status", {}).setdefault("conditions", [])
    for c in conds:
        if c.get("type") == cond["type"]:
            since = c.get("lastTransitionTime") if c.get("status") == cond["status"] else None
            c.clear()
            c.update(cond)
            c["lastTransitionTime"] = since or meta.format_time(now)
            return
    conds.append({**cond, "lastTransitionTime": meta.format_time(now)})


def scheduled_message(pod: Mapping[str, Any], node: str) -> str:
    """The `Scheduled` event's message, as kube-scheduler words it."""
    return f"Successfully assigned {meta.namespaced_name(pod)} to {node}"


def snapshot(nodes_: Iterable[Mapping[str, Any]], pods_: Iterable[Mapping[str, Any]],
             groups: Mapping[str, SpreadGroup] | None = None) -> ClusterState:
    """A ClusterState built from plain objects in one go (tests, benchmarks, a first list)."""
    st = ClusterState()
    for k, g in (groups or {}).items():
        st.set_spread_group(k, g)
    for n in nodes_:
        st.upsert_node(n)
    for p in pods_:
        st.upsert_pod(PodInfo.of(p))
    return st
