"""apply's three-way merge and last-applied annotation, deletion marks, run/scale and the
drain plan — pure."""

from __future__ import annotations

import json

import pytest

from netplane.errors import UserError
from orchestrator import apply
from orchestrator.deletion import (
    PROPAGATION_ANNOTATION,
    deletes_at_once,
    graceful_mark,
    orphan_mark,
    without_owner,
)
from orchestrator.nodeops import drain_plan, with_unschedulable
from orchestrator.objects import meta
from orchestrator.validation import admit
from orchestrator.workloads import run_rc, scaled


def rc_config(**spec: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [{"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}],
                                "env": [{"name": "A", "value": "1"}]}]}}, **spec}}


def test_last_applied_is_compact_sorted_json_without_itself() -> None:
    cfg = rc_config()
    annotated = apply.with_last_applied(cfg)
    text = annotated["metadata"]["annotations"][apply.LAST_APPLIED]
    assert text.endswith("\n") and json.loads(text) == cfg
    assert apply.last_applied(annotated) == cfg
    again = apply.with_last_applied(annotated)  # re-applying an exported object
    assert again["metadata"]["annotations"][apply.LAST_APPLIED] == text
    assert apply.last_applied({"metadata": {"annotations": {apply.LAST_APPLIED: "not json"}}}) == {}


def test_merge_keeps_what_others_wrote_and_drops_what_the_manifest_dropped() -> None:
    first = rc_config()
    first["metadata"]["annotations"] = {"team": "a"}  # type: ignore[index]
    stored = admit(apply.with_last_applied(first)).object
    stored["status"] = {"replicas": 2}
    stored["metadata"]["uid"] = "u1"
    stored["metadata"]["annotations"]["by-hand"] = "yes"  # someone else's annotation
    second = rc_config()
    second["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"  # type: ignore[index]
    merged = apply.merge(apply.last_applied(stored), apply.with_last_applied(second), stored)
    md = merged["metadata"]
    assert md["uid"] == "u1" and merged["status"] == {"replicas": 2}
    assert "team" not in md["annotations"] and md["annotations"]["by-hand"] == "yes"
    c = merged["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:2"
    assert c["imagePullPolicy"] == "IfNotPresent"  # a default, kept by the keyed container merge


def test_keyed_lists_merge_by_name_other_lists_are_replaced() -> None:
    original = {"spec": {"containers": [{"name": "a", "image": "1"}], "args": ["x"]}}
    modified = {"spec": {"containers": [{"name": "a", "image": "2"}], "args": ["y"]}}
    current = {"spec": {"containers": [{"name": "a", "image": "1", "tty": True},
                                       {"name": "sidecar", "image": "s"}], "args": ["x", "z"]}}
    merged = apply.merge(original, modified, current)
    assert merged["spec"]["containers"] == [{"name": "a", "image": "2", "tty": True},
                                            {"name": "sidecar", "image": "s"}]
    assert merged["spec"]["args"] == ["y"]
    gone = apply.merge(modified, {"spec": {"containers": []}}, current)
    assert gone["spec"]["containers"] == [{"name": "sidecar", "image": "s"}]


def test_unchanged_when_only_defaults_differ() -> None:
    stored = admit(apply.with_last_applied(rc_config())).object
    stored["metadata"].update(uid="u1", resourceVersion="7", generation=1)
    again = admit(apply.merge(apply.last_applied(stored), apply.with_last_applied(rc_config()), stored)).object
    assert apply.comparable(again) == apply.comparable(stored)
    changed = admit(apply.merge(apply.last_applied(stored), apply.with_last_applied(rc_config(replicas=3)),
                                stored)).object
    assert apply.comparable(changed) != apply.comparable(stored)


def test_graceful_mark_only_shortens() -> None:
    p = {"metadata": {"name": "p"}, "spec": {"nodeName": "h1"}}
    marked = graceful_mark(p, now=100.0, grace=30)
    assert marked is not None and marked["metadata"]["deletionTimestamp"] == meta.from_epoch(130.0)
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert graceful_mark(marked, now=101.0, grace=60) is None
    shorter = graceful_mark(marked, now=101.0, grace=1)
    assert shorter is not None and shorter["metadata"]["deletionGracePeriodSeconds"] == 1
    assert not deletes_at_once(p, 30)
    assert deletes_at_once(p, 0) and deletes_at_once({"spec": {}}, 30)
    assert deletes_at_once({"spec": {"nodeName": "h1"}, "status": {"phase": "Succeeded"}}, 30)


def test_orphan_mark_and_release() -> None:
    rc = {"metadata": {"name": "web", "annotations": {"x": "y"}}}
    m = orphan_mark(rc, now=0.0)["metadata"]
    assert m["annotations"] == {"x": "y", PROPAGATION_ANNOTATION: "Orphan"}
    assert m["deletionTimestamp"] == "1970-01-01T00:00:00Z"
    pod = {"metadata": {"name": "p", "ownerReferences": [{"uid": "u1", "controller": True}]}}
    freed = without_owner(pod, "u1")
    assert freed is not None and "ownerReferences" not in freed["metadata"]
    assert without_owner(freed, "u1") is None


def test_run_rc_is_old_kubectl_runs_and_valid() -> None:
    rc = run_rc("web", image="nginx", replicas=2, port=80, argv=["-g", "daemon off;"])
    assert rc["metadata"]["labels"] == rc["spec"]["selector"] == {"run": "web"}
    c = rc["spec"]["template"]["spec"]["containers"][0]
    assert c == {"name": "web", "image": "nginx", "args": ["-g", "daemon off;"], "ports": [{"containerPort": 80}]}
    assert "command" in run_rc("w", image="i", argv=["sh"], command=True)["spec"]["template"]["spec"]["containers"][0]
    admit(rc)


def test_scaled_precondition() -> None:
    rc = {"spec": {"replicas": 2}}
    assert scaled({"spec": {"replicas": 2}}, 2) is None
    assert scaled(rc, 5) == {"spec": {"replicas": 5}}
    with pytest.raises(UserError, match="Expected replicas to be 3, was 5"):
        scaled(rc, 1, current_replicas=3)


def owned(name: str, node: str = "h1", **extra: object) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "default",
                         "ownerReferences": [{"kind": "ReplicationController", "uid": "u", "controller": True}]},
            "spec": {"nodeName": node, **extra}}


def test_drain_plan_refuses_unmanaged_and_local_data_unless_asked() -> None:
    bare = {"metadata": {"name": "bare", "namespace": "default"}, "spec": {"nodeName": "h1"}}
    done = {"metadata": {"name": "done", "namespace": "default"}, "spec": {"nodeName": "h1"},
            "status": {"phase": "Succeeded"}}
    scratch = owned("scratch", volumes=[{"name": "v", "emptyDir": {}}])
    pods = [owned("a"), owned("b", node="h2"), bare, done, scratch]
    plan = drain_plan("h1", pods)
    assert [meta.name(p) for p in plan.delete] == ["a", "bare", "done", "scratch"]
    assert plan.unmanaged == ["default/bare"] and plan.local_data == ["default/scratch"]
    refusal = plan.refusal("h1")
    assert refusal is not None and refusal.startswith('unable to drain node "h1": cannot delete Pods that '
                                                      "declare no controller (use --force to override): default/bare")
    forced = drain_plan("h1", pods, force=True, delete_local_data=True)
    assert forced.refusal("h1") is None and forced.forced == ["default/bare"]


def test_cordon_is_idempotent() -> None:
    n = {"metadata": {"name": "h1"}, "spec": {}}
    c = with_unschedulable(n, True)
    assert c is not None and c["spec"] == {"unschedulable": True}
    assert with_unschedulable(c, True) is None
    u = with_unschedulable(c, False)
    assert u is not None and u["spec"] == {}


def test_orphan_mark_is_what_the_replication_manager_reads() -> None:
    """`delete --cascade=orphan` and the RC manager agree on how "orphan" is recorded."""
    from orchestrator.controllers import replication_manager as rm

    assert (PROPAGATION_ANNOTATION, "Orphan") == (rm.PROPAGATION_ANNOTATION, rm.ORPHAN)
    marked = orphan_mark({"metadata": {"name": "web"}}, now=0.0)
    assert rm.orphans_pods(marked) and meta.is_deleting(marked)
