"""Scheduler decisions as pure functions over plain objects: filters, scores, spreading,
tie-breaks, kube-scheduler's FitError text, incremental accounting, and its cost."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.objects.selector import from_set
from orchestrator.scheduling import (
    NO_NODES,
    BindingRefused,
    ClusterState,
    Placement,
    PodInfo,
    SpreadGroup,
    Unschedulable,
    bound,
    feasible_nodes_to_find,
    filter_node,
    fit_error,
    schedule,
    scheduled_message,
    score_resources,
    snapshot,
    unschedulable,
)
from orchestrator.validation import validate

GI = 2**30
MI = 2**20


def mknode(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: int = 110, ready: str = "True",
           unschedulable: bool = False, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"unschedulable": unschedulable},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": str(pods)},
                       "conditions": [{"type": "Ready", "status": ready}]}}


def mkpod(name: str, *, cpu: str | None = None, memory: str | None = None, node: str = "",
          labels: dict[str, str] | None = None, host_port: int = 0, selector: dict[str, str] | None = None,
          phase: str = "Pending", deleting: bool = False, ns: str = "default") -> dict[str, Any]:
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    c: dict[str, Any] = {"name": "c", "image": "i", "resources": {"requests": req}}
    if host_port:
        c["ports"] = [{"containerPort": 80, "hostPort": host_port, "protocol": "TCP"}]
    md: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {}}
    if deleting:
        md["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    spec: dict[str, Any] = {"containers": [c], "nodeName": node}
    if selector:
        spec["nodeSelector"] = selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec, "status": {"phase": phase}}


def decide(state: ClusterState, pod: dict[str, Any], seed: int = 0) -> Placement | Unschedulable:
    return schedule(PodInfo.of(pod), state, rng=random.Random(seed))


def test_fit_error_wording_matches_kube_scheduler() -> None:
    st = snapshot(
        [mknode("a", labels={"disk": "hdd"}), mknode("b", cpu="1", labels={"disk": "ssd"}),
         mknode("c", cpu="1", labels={"disk": "ssd"})], [])
    r = decide(st, mkpod("p", cpu="2", selector={"disk": "ssd"}))
    assert isinstance(r, Unschedulable)
    assert r.message == "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu."
    assert r.reasons == {"node(s) didn't match Pod's node affinity/selector": 1, "Insufficient cpu": 2}


def test_every_filter_and_first_failing_filter_wins() -> None:
    st = snapshot(
        [
            mknode("cordoned", unschedulable=True, ready="False"),  # unschedulable wins over not-ready
            mknode("down", ready="False", labels={"zone": "b"}),  # not-ready wins over the selector
            mknode("lost", ready="Unknown"),
            mknode("other", labels={"zone": "b"}),
            mknode("ports", labels={"zone": "a"}),
            mknode("full", cpu="100m", memory="64Mi", pods=1, labels={"zone": "a"}),
        ],
        [mkpod("holder", node="ports", host_port=8080, phase="Running"),
         mkpod("filler", node="full", phase="Running")],
    )
    r = decide(st, mkpod("p", cpu="200m", memory="128Mi", host_port=8080, selector={"zone": "a"}))
    assert isinstance(r, Unschedulable)
    assert r.message == (
        "0/6 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 Too many pods, "
        "1 node(s) didn't have free ports for the requested pod ports, "
        "1 node(s) didn't match Pod's node affinity/selector, "
        "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, "
        "1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable.")
    r = decide(st, mkpod("p", cpu="200m"))
    assert isinstance(r, Placement) and r.node in ("other", "ports")
    r = decide(st, mkpod("p", cpu="200m", selector={"zone": "a"}))
    assert isinstance(r, Placement) and r.node == "ports"


def test_reasons_sort_as_strings_like_go() -> None:
    assert fit_error(12, {"Insufficient cpu": 10, "node(s) were unschedulable": 2}) == \
        "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) were unschedulable."


def test_no_nodes() -> None:
    r = decide(ClusterState(), mkpod("p"))
    assert isinstance(r, Unschedulable) and r.message == NO_NODES


def test_resources_fit_exactly_and_zero_requests_always_fit() -> None:
    st = snapshot([mknode("a", cpu="1", memory="1Gi", pods=3)],
                  [mkpod("x", cpu="600m", memory="512Mi", node="a", phase="Running")])
    assert isinstance(decide(st, mkpod("p", cpu="400m", memory="512Mi")), Placement)
    assert isinstance(decide(st, mkpod("p", cpu="401m")), Unschedulable)
    assert isinstance(decide(st, mkpod("p", memory="513Mi")), Unschedulable)
    st.upsert_pod(PodInfo.of(mkpod("y", cpu="400m", node="a", phase="Running")))
    assert isinstance(decide(st, mkpod("p")), Placement)  # cpu full, but no request
    st.upsert_pod(PodInfo.of(mkpod("z", node="a", phase="Running")))
    r = decide(st, mkpod("p"))
    assert isinstance(r, Unschedulable) and r.reasons == {"Too many pods": 1}


def test_host_port_rules() -> None:
    st = snapshot([mknode("a")], [mkpod("x", node="a", host_port=80)])
    assert isinstance(decide(st, mkpod("p", host_port=80)), Unschedulable)
    assert isinstance(decide(st, mkpod("p", host_port=81)), Placement)
    st.remove_pod("default/x")
    assert isinstance(decide(st, mkpod("p", host_port=80)), Placement)


def test_least_requested_and_balanced_scores() -> None:
    st = snapshot([mknode("a", cpu="4", memory="8Gi")],
                  [mkpod("x", cpu="1", memory="2Gi", node="a", phase="Running")])
    n = st.nodes["a"]
    # with the pod: cpu 2000/4000 -> 5, mem 3Gi/8Gi -> (5*10)//8 = 6; least = (5+6)//2 = 5
    # balanced: 10 - |0.5 - 0.375| * 10 = 8.75 -> 8
    assert score_resources(PodInfo.of(mkpod("p", cpu="1", memory="1Gi")), n) == (5, 8)
    # no requests: scored as 100m / 200Mi (kube's non-zero defaults)
    p0 = PodInfo.of(mkpod("p"))
    assert (p0.nonzero_cpu, p0.nonzero_memory) == (100, 200 * MI)
    assert score_resources(p0, n) == ((7 + 7) // 2, 9)
    # a resource at capacity scores 0 balanced
    assert score_resources(PodInfo.of(mkpod("p", cpu="3")), n)[1] == 0


def test_prefers_less_loaded_node() -> None:
    st = snapshot([mknode("a"), mknode("b")],
                  [mkpod("x", cpu="3", memory="6Gi", node="a", phase="Running")])
    for seed in range(10):
        r = decide(st, mkpod("p", cpu="500m", memory="1Gi"), seed)
        assert isinstance(r, Placement) and r.node == "b"


def test_selector_spread_for_rc_and_service() -> None:
    web = {"app": "web"}
    st = snapshot([mknode("a"), mknode("b"), mknode("c")],
                  [mkpod("w1", node="a", labels=web), mkpod("w2", node="b", labels=web),
                   mkpod("o1", node="c", labels={"app": "other"}), mkpod("o2", node="c", labels={"app": "other"})],
                  {"rc/web": SpreadGroup("default", from_set(web))})
    # resources favour a and b (c holds two pods), spreading favours c
    for seed in range(5):
        r = decide(st, mkpod("w3", labels=web), seed)
        assert isinstance(r, Placement) and r.node == "c"
    # a pod no group selects spreads nothing: c is the most loaded, so never c
    r = decide(st, mkpod("solo", labels={"app": "solo"}))
    assert isinstance(r, Placement) and r.node in ("a", "b")
    # a Service across both apps: union of its selector's pods per node
    st.set_spread_group("svc/all", SpreadGroup("default", from_set({})))
    assert st.groups_of(PodInfo.of(mkpod("q", labels=web))) == {"rc/web", "svc/all"}
    assert [st.nodes[n].signatures.total() for n in "abc"] == [1, 1, 2]


def test_spread_group_namespace_and_deleting_pods() -> None:
    web = {"app": "web"}
    st = snapshot([mknode("a"), mknode("b")],
                  [mkpod("w1", node="a", labels=web, ns="other"),
                   mkpod("w2", node="b", labels=web, deleting=True)],
                  {"rc/web": SpreadGroup("default", from_set(web))})
    assert st.nodes["a"].signatures.total() == 0  # other namespace
    assert st.nodes["b"].signatures.total() == 0  # being deleted
    assert st.nodes["b"].req_pods == 1  # but still holds its resources


def test_terminal_pods_free_their_resources() -> None:
    st = snapshot([mknode("a", cpu="1")], [mkpod("x", cpu="1", node="a", phase="Running")])
    assert isinstance(decide(st, mkpod("p", cpu="1")), Unschedulable)
    st.upsert_pod(PodInfo.of(mkpod("x", cpu="1", node="a", phase="Succeeded")))
    assert isinstance(decide(st, mkpod("p", cpu="1")), Placement)


def test_pods_bound_before_their_node_is_known_count_once_it_appears() -> None:
    st = ClusterState()
    st.upsert_pod(PodInfo.of(mkpod("x", cpu="1", node="late")))
    st.upsert_node(mknode("late", cpu="1"))
    assert st.nodes["late"].req_cpu == 1000
    st.remove_node("late")
    st.upsert_node(mknode("late", cpu="1"))
    assert st.nodes["late"].req_cpu == 1000  # counted once, not twice


def test_assume_then_forget() -> None:
    st = snapshot([mknode("a", cpu="1")], [])
    p = PodInfo.of(mkpod("p", cpu="1"))
    r = schedule(p, st, rng=random.Random(0))
    assert isinstance(r, Placement)
    st.assume(p, r.node)
    assert isinstance(decide(st, mkpod("q", cpu="1")), Unschedulable)
    st.remove_pod(p.key)  # binding failed: forget
    assert isinstance(decide(st, mkpod("q", cpu="1")), Placement)


def test_ties_broken_by_the_injected_rng() -> None:
    st = snapshot([mknode(n) for n in "abcd"], [])
    picks = {seed: decide(st, mkpod("p"), seed) for seed in range(40)}
    nodes = {r.node for r in picks.values() if isinstance(r, Placement)}
    assert nodes == set("abcd")
    again = {seed: decide(st, mkpod("p"), seed) for seed in range(40)}
    assert again == picks


def test_schedule_does_not_change_the_state() -> None:
    st = snapshot([mknode("a"), mknode("b")], [mkpod("x", cpu="1", node="a")])
    before = {n: (i.req_cpu, i.req_pods, dict(i.signatures)) for n, i in st.nodes.items()}
    decide(st, mkpod("p", cpu="1"))
    assert {n: (i.req_cpu, i.req_pods, dict(i.signatures)) for n, i in st.nodes.items()} == before


def test_incremental_accounting_equals_a_fresh_snapshot() -> None:
    rng = random.Random(7)
    node_objs = [mknode(f"n{i}") for i in range(5)]
    groups = {"rc/a": SpreadGroup("default", from_set({"app": "a"}))}
    st = snapshot(node_objs, [], groups)
    live: dict[str, dict[str, Any]] = {}
    for step in range(600):
        name = f"p{rng.randrange(40)}"
        if rng.random() < 0.3 and name in live:
            st.remove_pod(f"default/{name}")
            del live[name]
        else:
            pod = mkpod(name, cpu=f"{rng.randrange(1, 500)}m", memory=f"{rng.randrange(1, 300)}Mi",
                        node=rng.choice(["", "n0", "n1", "n2", "n3", "n4"]),
                        labels={"app": rng.choice("ab")}, host_port=rng.choice([0, 0, 80, 81]),
                        phase=rng.choice(["Pending", "Running", "Running", "Failed"]),
                        deleting=rng.random() < 0.1)
            st.upsert_pod(PodInfo.of(pod))
            live[name] = pod
        if step == 300:
            st.set_spread_group("svc/b", SpreadGroup("default", from_set({"app": "b"})))
            groups["svc/b"] = SpreadGroup("default", from_set({"app": "b"}))
    fresh = snapshot(node_objs, live.values(), groups)
    for n in st.nodes:
        a, b = st.nodes[n], fresh.nodes[n]
        assert (a.requested, a.nonzero_cpu, a.nonzero_memory) == (b.requested, b.nonzero_cpu, b.nonzero_memory)
        assert a.ports == b.ports and a.signatures == b.signatures and set(a.pods) == set(b.pods)


@pytest.mark.parametrize(("n", "want"), [(5, 5), (99, 99), (100, 100), (200, 100), (1000, 420),
                                         (5000, 500), (10000, 500), (300, 144)])
def test_feasible_nodes_to_find(n: int, want: int) -> None:
    assert feasible_nodes_to_find(n) == want
    assert feasible_nodes_to_find(1000, 100) == 1000 and feasible_nodes_to_find(1000, 10) == 100


def test_search_rotates_across_decisions() -> None:
    st = snapshot([mknode(f"n{i:03}") for i in range(300)], [])
    r = schedule(PodInfo.of(mkpod("p")), st, rng=random.Random(0), start=250)
    assert isinstance(r, Placement)
    # 300 nodes: score 300 * (50 - 300 // 125) % = 144 of them, then continue after them
    assert r.feasible == 144 and r.evaluated == 144 and r.next_start == (250 + 144) % 300
    r = schedule(PodInfo.of(mkpod("p", selector={"x": "y"})), st, rng=random.Random(0), start=r.next_start)
    assert isinstance(r, Unschedulable) and r.next_start == 94  # evaluated all 300


def reference_schedule(p: PodInfo, st: ClusterState, rng: random.Random, start: int,
                       pct: int) -> Placement | Unschedulable:
    """The decision written out plainly (filter every node in turn, score the feasible ones):
    what `schedule`, with its per-node memo and fast path, must equal exactly."""
    total = len(st.order)
    want = feasible_nodes_to_find(total, pct)
    feasible, reasons, evaluated = [], Counter[str](), 0
    for i in range(total):
        n = st.nodes[st.order[(start + i) % total]]
        evaluated += 1
        why = filter_node(p, n)
        if why:
            reasons.update(why)
            continue
        feasible.append(n)
        if len(feasible) >= want:
            break
    nxt = (start + evaluated) % total
    if not feasible:
        return Unschedulable(fit_error(total, reasons), dict(reasons), nxt)
    groups = st.groups_of(p)
    counts = [sum(c for sig, c in n.signatures.items() if not sig.isdisjoint(groups)) for n in feasible]
    top = max(counts)
    scored = [(sum(score_resources(p, n)) + (10 if top == 0 else 10 * (top - c) // top), n)
              for n, c in zip(feasible, counts, strict=True)]
    best_score = max(s for s, _ in scored)
    best = [n for s, n in scored if s == best_score]
    chosen = best[0] if len(best) == 1 else rng.choice(best)
    return Placement(chosen.name, best_score, len(feasible), evaluated, nxt)


@pytest.mark.parametrize("seed", range(12))
def test_schedule_equals_the_plain_reference_through_assumes_and_changes(seed: int) -> None:
    rng = random.Random(seed)
    node_objs = [mknode(f"n{i}", cpu=rng.choice(["1", "2", "4"]), memory=rng.choice(["1Gi", "8Gi"]),
                        pods=rng.choice([3, 10, 110]), ready=rng.choice(["True"] * 8 + ["False", "Unknown"]),
                        unschedulable=rng.random() < 0.05, labels={"zone": rng.choice("ab")})
                 for i in range(rng.choice([3, 40, 150, 400]))]
    groups = {"rc/a": SpreadGroup("default", from_set({"app": "a"}))} if seed % 2 else {}
    if seed % 3 == 0:  # a Service over all the pods: pods of several signatures spread together
        groups["svc/all"] = SpreadGroup("default", from_set({}))
    st = snapshot(node_objs, [], groups)
    ra, rb = random.Random(seed), random.Random(seed)
    start = 0
    for step in range(300):
        cpu, mem = rng.choice([("100m", "64Mi"), ("500m", None), (None, None), ("1", "1Gi")])
        pod = mkpod(f"p{step}", cpu=cpu, memory=mem, labels={"app": rng.choice("ab")},
                    host_port=rng.choice([0] * 6 + [80]), selector=rng.choice([None] * 5 + [{"zone": "a"}]))
        pct = rng.choice([0, 0, 100, 10])
        want = reference_schedule(PodInfo.of(pod), st, ra, start, pct)
        got = schedule(PodInfo.of(pod), st, rng=rb, start=start, percentage_of_nodes_to_score=pct)
        assert got == want, (step, got, want)
        start = got.next_start
        if isinstance(got, Placement):
            st.assume(PodInfo.of(pod), got.node)
        if rng.random() < 0.1:  # a pod goes: its node's memo must not keep the fuller node's scores
            st.remove_pod(f"default/p{rng.randrange(step + 1)}")
        if rng.random() < 0.03:  # a node changes readiness or size
            n = rng.choice(node_objs)["metadata"]["name"]
            st.upsert_node(mknode(n, cpu=rng.choice(["1", "4"]), ready=rng.choice(["True", "False"])))


def test_one_decision_is_o_nodes_at_1000_nodes_10000_pods() -> None:
    rng = random.Random(1)
    node_objs = [mknode(f"n{i:04}", cpu="32", memory="128Gi") for i in range(1000)]
    groups = {f"rc/app{i}": SpreadGroup("default", from_set({"app": f"app{i}"})) for i in range(50)}
    pods = [mkpod(f"p{i}", cpu="100m", memory="128Mi", node=f"n{rng.randrange(1000):04}",
                  labels={"app": f"app{i % 50}"}, phase="Running") for i in range(10000)]
    st = snapshot(node_objs, pods, groups)
    pending = [PodInfo.of(mkpod(f"q{i}", cpu="100m", memory="128Mi", labels={"app": f"app{i % 50}"}))
               for i in range(50)]
    start = 0
    t = time.perf_counter()
    for p in pending:
        r = schedule(p, st, rng=rng, start=start, percentage_of_nodes_to_score=100)
        assert isinstance(r, Placement)
        start = r.next_start
        st.assume(p, r.node)
    per = (time.perf_counter() - t) / len(pending)
    assert per < 0.05, f"{per * 1000:.1f} ms per decision over all 1,000 nodes"


# --------------------------------------------------------------------------- writes
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def test_bound_sets_node_and_condition_and_refuses_twice() -> None:
    p = mkpod("p")
    b = bound(p, "h1", now=NOW)
    assert b["spec"]["nodeName"] == "h1"
    assert b["status"]["conditions"] == [{"type": "PodScheduled", "status": "True",
                                          "lastTransitionTime": "2024-06-01T12:00:00Z"}]
    assert p["spec"]["nodeName"] == ""  # input untouched
    with pytest.raises(BindingRefused, match="pod p is already assigned to node 'h1'"):
        bound(b, "h2", now=NOW)
    with pytest.raises(BindingRefused, match="being deleted"):
        bound(mkpod("p", deleting=True), "h1", now=NOW)
    assert validate(b) == []


def test_unschedulable_condition_written_once_per_message() -> None:
    msg = "0/1 nodes are available: 1 Insufficient cpu."
    u = unschedulable(mkpod("p"), msg, now=NOW)
    assert u is not None
    assert u["status"]["conditions"] == [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": msg, "lastTransitionTime": "2024-06-01T12:00:00Z"}]
    assert unschedulable(u, msg, now=NOW) is None
    later = NOW.replace(minute=5)
    u2 = unschedulable(u, "0/2 nodes are available: 2 Insufficient cpu.", now=later)
    assert u2 is not None
    assert u2["status"]["conditions"][0]["lastTransitionTime"] == "2024-06-01T12:00:00Z"  # still False since then
    b = bound(u2, "h1", now=later)
    assert b["status"]["conditions"] == [{"type": "PodScheduled", "status": "True",
                                          "lastTransitionTime": "2024-06-01T12:05:00Z"}]
    assert u2["status"]["conditions"][0]["status"] == "False" and u2["spec"]["nodeName"] == ""  # untouched
    assert scheduled_message(b, "h1") == "Successfully assigned default/p to h1"
