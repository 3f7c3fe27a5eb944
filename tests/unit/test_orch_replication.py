"""Replication decisions: claim/adopt/release, diff with burst cap, Kubernetes' deletion
order, slow start, expectations with an injected clock, pods from the template, status."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from orchestrator.objects import meta
from orchestrator.replication import (
    Expectations,
    adopted,
    claim,
    deletion_order,
    plan,
    pod_from_template,
    released,
    slow_start,
    slow_start_batches,
    status,
)
from orchestrator.validation import validate

RC_UID = "rc-uid-1"


def mkrc(replicas: int = 3, *, selector: dict[str, str] | None = None, deleting: bool = False) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "web", "namespace": "default", "uid": RC_UID, "generation": 4}
    if deleting:
        md["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": md,
            "spec": {"replicas": replicas, "selector": selector or {"app": "web"},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}, "annotations": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def mkpod(name: str, *, owner: str | None = RC_UID, labels: dict[str, str] | None = None, node: str = "n1",
          phase: str = "Running", ready: bool = True, ready_at: str = "2024-01-01T10:00:00Z",
          restarts: int = 0, created: str = "2024-01-01T09:00:00Z", deleting: bool = False,
          ns: str = "default") -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": ns, "labels": {"app": "web"} if labels is None else labels,
                          "creationTimestamp": created}
    if owner:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "ReplicationController", "name": "x",
                                  "uid": owner, "controller": True}]
    if deleting:
        md["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    conds = [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_at}]
    return {"metadata": md, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": phase, "conditions": conds,
                       "containerStatuses": [{"name": "c", "restartCount": restarts}]}}


def names(ps: list[Any]) -> list[str]:
    return [meta.name(p) for p in ps]


def test_claim_owned_adopt_release_and_ignore_others() -> None:
    ps = [
        mkpod("mine"),
        mkpod("orphan", owner=None),
        mkpod("orphan-deleting", owner=None, deleting=True),
        mkpod("orphan-nomatch", owner=None, labels={"app": "db"}),
        mkpod("mine-nomatch", labels={"app": "db"}),
        mkpod("theirs", owner="other-uid"),
        mkpod("other-ns", owner=None, ns="prod"),
    ]
    c = claim(mkrc(), ps)
    assert names(c.owned) == ["mine", "orphan"]
    assert names(c.adopt) == ["orphan"]
    assert names(c.release) == ["mine-nomatch"]


def test_deleting_rc_neither_adopts_nor_releases() -> None:
    ps = [mkpod("mine"), mkpod("orphan", owner=None), mkpod("mine-nomatch", labels={"app": "db"})]
    c = claim(mkrc(deleting=True), ps)
    assert names(c.owned) == ["mine"] and c.adopt == [] and c.release == []
    p = plan(mkrc(replicas=5, deleting=True), ps)
    assert p.create == 0 and p.delete == [] and p.adopt == []


def test_adopted_and_released_copies() -> None:
    o = mkpod("o", owner=None)
    o["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Thing", "name": "t", "uid": "t1"}]
    a = adopted(o, mkrc())
    assert a["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Thing", "name": "t", "uid": "t1"},
        {"apiVersion": "v1", "kind": "ReplicationController", "name": "web", "uid": RC_UID,
         "controller": True, "blockOwnerDeletion": True}]
    assert "ownerReferences" in o["metadata"] and len(o["metadata"]["ownerReferences"]) == 1  # input untouched
    r = released(a, mkrc())
    assert r["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Thing", "name": "t", "uid": "t1"}]
    assert "ownerReferences" not in released(mkpod("m"), mkrc())["metadata"]


def test_plan_creates_missing_counting_only_active_pods() -> None:
    ps = [mkpod("a"), mkpod("done", phase="Succeeded"), mkpod("failed", phase="Failed"),
          mkpod("going", deleting=True), mkpod("orphan", owner=None)]
    p = plan(mkrc(replicas=5), ps)
    assert names(p.active) == ["a", "orphan"]
    assert p.create == 3 and names(p.adopt) == ["orphan"]


def test_plan_respects_burst() -> None:
    assert plan(mkrc(replicas=3000), []).create == 500
    assert plan(mkrc(replicas=3000), [], burst=10).create == 10
    many = [mkpod(f"p{i}", created=f"2024-01-01T09:{i // 60:02}:{i % 60:02}Z") for i in range(700)]
    assert len(plan(mkrc(replicas=0), many).delete) == 500


def test_plan_steady_state_does_nothing() -> None:
    p = plan(mkrc(replicas=2), [mkpod("a"), mkpod("b")])
    assert p.create == 0 and p.delete == [] and names(p.active) == ["a", "b"]


def test_deletion_order_each_rule() -> None:
    cases = [
        # (should be deleted first, then)
        (mkpod("unassigned", node="", phase="Pending", ready=False), mkpod("assigned", node="n1")),
        (mkpod("pending", phase="Pending", ready=False), mkpod("unknown", phase="Unknown", ready=False)),
        (mkpod("unknown", phase="Unknown"), mkpod("running", phase="Running")),
        (mkpod("notready", ready=False), mkpod("ready")),
        (mkpod("young-ready", ready_at="2024-01-01T11:00:00Z"), mkpod("old-ready", ready_at="2024-01-01T10:00:00Z")),
        (mkpod("crashy", restarts=5), mkpod("stable", restarts=1)),
        (mkpod("newer", created="2024-01-01T09:30:00Z"), mkpod("older", created="2024-01-01T09:00:00Z")),
    ]
    for first, second in cases:
        for pair in ([first, second], [second, first]):
            assert names(deletion_order(pair, related=[])) == names([first, second])


def test_doubled_up_pods_go_first() -> None:
    a1, a2 = mkpod("a1", node="a"), mkpod("a2", node="a")
    b1 = mkpod("b1", node="b", created="2024-01-01T09:59:00Z")  # newer, but alone on its node
    order = deletion_order([b1, a1, a2])
    assert names(order)[2] == "b1"
    # rank beats ready time: a ready-long-ago pod on a crowded node still goes before a fresh lone one
    c1 = mkpod("c1", node="c", ready_at="2024-01-01T12:00:00Z")
    assert names(deletion_order([c1, a1], related=[c1, a1, a2])) == ["a1", "c1"]


def test_phase_beats_readiness_beats_restarts() -> None:
    ps = [mkpod("run-ready-crashy", restarts=9), mkpod("pending", phase="Pending", ready=False),
          mkpod("run-notready", ready=False), mkpod("run-ready")]
    random.Random(3).shuffle(ps)
    assert names(deletion_order(ps, related=[])) == ["pending", "run-notready", "run-ready-crashy", "run-ready"]


def test_missing_timestamps_sort_first() -> None:
    no_created = mkpod("no-ts")
    del no_created["metadata"]["creationTimestamp"]
    assert names(deletion_order([mkpod("ts"), no_created], related=[])) == ["no-ts", "ts"]


def test_plan_deletes_by_that_order() -> None:
    ps = [mkpod("old"), mkpod("new", created="2024-01-01T09:59:00Z"), mkpod("pend", phase="Pending", ready=False)]
    assert names(plan(mkrc(replicas=1), ps).delete) == ["pend", "new"]


def test_slow_start_batches_and_stop_on_failure() -> None:
    assert slow_start_batches(0) == []
    assert slow_start_batches(1) == [1]
    assert slow_start_batches(10) == [1, 2, 4, 3]
    assert slow_start_batches(500) == [1, 2, 4, 8, 16, 32, 64, 128, 245]
    calls: list[int] = []

    def run(n: int) -> int:
        calls.append(n)
        return n if len(calls) < 3 else n - 1  # the 3rd batch (4) has one failure

    assert slow_start(20, run) == 1 + 2 + 3
    assert calls == [1, 2, 4]


def test_expectations_block_until_observed_or_timeout() -> None:
    now = [0.0]
    e = Expectations(clock=lambda: now[0])
    assert e.satisfied("default/web")  # nothing recorded yet
    e.expect_creations("default/web", 3)
    assert not e.satisfied("default/web") and e.pending("default/web") == (3, 0)
    e.creation_observed("default/web")
    e.creation_observed("default/web")
    assert not e.satisfied("default/web")
    e.creation_observed("default/web")
    assert e.satisfied("default/web")
    e.expect_creations("default/web", 2)
    now[0] += 300
    assert not e.satisfied("default/web")
    now[0] += 0.001
    assert e.satisfied("default/web")  # 5 min passed: a watch event was lost, act again


def test_deletion_expectations_count_each_pod_once() -> None:
    e = Expectations()
    e.expect_deletions("k", ["default/a", "default/b"])
    e.deletion_observed("k", "default/a")
    e.deletion_observed("k", "default/a")  # a duplicate event
    e.deletion_observed("k", "default/zzz")  # not one we deleted
    assert not e.satisfied("k") and e.pending("k") == (0, 1)
    e.deletion_observed("k", "default/b")
    assert e.satisfied("k")
    e.delete("k")
    assert e.pending("k") == (0, 0)


def test_watch_lag_never_over_creates() -> None:
    """kubernetes#7561 in miniature: syncs run every tick, the cache shows creations only
    3 ticks later. With expectations the RC makes exactly `replicas` pods."""
    now = [0.0]
    exp = Expectations(clock=lambda: now[0])
    rc = mkrc(replicas=50)
    created: list[tuple[float, dict[str, Any]]] = []  # (visible from, pod)
    for tick in range(40):
        now[0] = float(tick)
        visible = [p for t, p in created if t <= now[0]]
        for _ in range(sum(1 for t, _ in created if t == now[0])):
            exp.creation_observed("default/web")
        if not exp.satisfied("default/web"):
            continue
        p = plan(rc, visible)
        if p.create:
            exp.expect_creations("default/web", p.create)
            done = slow_start(p.create, lambda n: n)
            for i in range(done):
                pod = pod_from_template(rc)
                pod["metadata"]["name"] = f"web-{len(created) + i}"
                pod["status"] = {"phase": "Running"}
                created.append((now[0] + 3, pod))
    assert len(created) == 50


def test_pod_from_template_is_valid_and_owned() -> None:
    p = pod_from_template(mkrc())
    assert p["metadata"]["generateName"] == "web-" and p["metadata"]["namespace"] == "default"
    assert p["metadata"]["labels"] == {"app": "web", "tier": "fe"} and p["metadata"]["annotations"] == {"a": "b"}
    assert meta.controller_ref(p) == {"apiVersion": "v1", "kind": "ReplicationController", "name": "web",
                                      "uid": RC_UID, "controller": True, "blockOwnerDeletion": True}
    assert validate(p) == []
    rc = mkrc()
    p["spec"]["containers"][0]["image"] = "changed"
    assert rc["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"  # a copy


def test_status() -> None:
    rc = mkrc()
    rc["spec"]["minReadySeconds"] = 60
    active = [mkpod("a", ready_at="2024-01-01T10:00:00Z"), mkpod("b", ready_at="2024-01-01T10:09:30Z"),
              mkpod("c", ready=False), mkpod("d", labels={"app": "web", "tier": "fe"})]
    s = status(rc, active, now=datetime(2024, 1, 1, 10, 10, tzinfo=UTC))
    assert s == {"replicas": 4, "fullyLabeledReplicas": 1, "readyReplicas": 3, "availableReplicas": 2,
                 "observedGeneration": 4}
