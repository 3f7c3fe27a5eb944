"""Server-side apply's field ownership (`orchestrator.apiserver.fieldmanager`), pure: field sets
from Kubernetes' schemas, FieldsV1 both ways, merge, conflicts, force, removal of what a manager
stopped applying, and the bookkeeping of other writes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrator.apiserver import fieldmanager as fm

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}], **spec}}


def rc(replicas: int, image: str = "busybox", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "labels": {"app": "web", **labels}},
            "spec": {"replicas": replicas, "selector": {"app": "web"}, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}}


def owned(obj: dict[str, Any], manager: str, operation: str = fm.APPLY) -> set[fm.Path]:
    return fm.managers(obj).get((manager, operation), set())


def test_field_set_follows_the_schema_and_fields_v1_round_trips() -> None:
    fs = fm.field_set(pod(restartPolicy="Never"), "Pod")
    assert fs == {
        ("f:metadata", "f:labels"), ("f:metadata", "f:labels", "f:app"),
        ("f:spec", "f:restartPolicy"),
        ("f:spec", "f:containers", 'k:{"name":"c"}'),
        ("f:spec", "f:containers", 'k:{"name":"c"}', "f:name"),
        ("f:spec", "f:containers", 'k:{"name":"c"}', "f:image"),
        ("f:spec", "f:containers", 'k:{"name":"c"}', "f:ports", 'k:{"containerPort":80,"protocol":"TCP"}'),
        ("f:spec", "f:containers", 'k:{"name":"c"}', "f:ports", 'k:{"containerPort":80,"protocol":"TCP"}', "f:containerPort"),
    }  # name, apiVersion and kind are never members; a struct (spec) is not one, a map (labels) is
    v1 = fm.to_fields_v1(fs)
    assert v1["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert v1["f:spec"]["f:containers"]['k:{"name":"c"}']["."] == {}
    assert fm.from_fields_v1(v1) == fs
    # a set of scalars: its items; an untyped field: a leaf
    fin = fm.field_set({"metadata": {"finalizers": ["a", "b"]}, "spec": {"zzz": {"x": 1}}}, "Pod")
    assert fin == {("f:metadata", "f:finalizers", 'v:"a"'), ("f:metadata", "f:finalizers", 'v:"b"'),
                   ("f:spec", "f:zzz")}


def test_first_apply_creates_with_its_managed_fields() -> None:
    out = fm.apply(None, rc(2), "ReplicationController", "kubectl", force=False, now=NOW)
    (entry,) = out["metadata"]["managedFields"]
    assert {k: entry[k] for k in ("manager", "operation", "apiVersion", "time", "fieldsType")} == \
        {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z",
         "fieldsType": "FieldsV1"}
    assert ("f:spec", "f:replicas") in fm.from_fields_v1(entry["fieldsV1"])


def test_reapply_merges_keeps_others_fields_and_removes_what_it_stopped_applying() -> None:
    live = fm.apply(None, rc(2, tier="front"), "ReplicationController", "kubectl", force=False, now=NOW)
    # another writer adds a label and a container (an Update: it takes what it changed)
    other = copy.deepcopy(live)
    other["metadata"]["labels"]["team"] = "net"
    other["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy"})
    fm.update(live, other, "ReplicationController", "editor", now=NOW + 1)
    assert ("f:metadata", "f:labels", "f:team") in owned(other, "editor", fm.UPDATE)
    assert ("f:metadata", "f:labels", "f:team") not in owned(other, "kubectl")
    # kubectl applies again without its tier label and with a new image
    again = fm.apply(other, rc(2, "busybox:2"), "ReplicationController", "kubectl", force=False, now=NOW + 2)
    assert again["metadata"]["labels"] == {"app": "web", "team": "net"}  # tier removed, team kept
    names = [c["name"] for c in again["spec"]["template"]["spec"]["containers"]]
    assert names == ["c", "sidecar"] and again["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"
    assert ("f:metadata", "f:labels", "f:tier") not in owned(again, "kubectl")


def test_a_changed_field_another_manager_owns_is_a_conflict_unless_forced() -> None:
    live = fm.apply(None, rc(2), "ReplicationController", "kubectl", force=False, now=NOW)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    fm.update(live, scaled, "ReplicationController", "kubectl-scale", now=NOW)
    assert ("f:spec", "f:replicas") in owned(scaled, "kubectl-scale", fm.UPDATE)
    assert ("f:spec", "f:replicas") not in owned(scaled, "kubectl")
    # the same value is no conflict (both own it then); another one is
    same = fm.apply(scaled, rc(5), "ReplicationController", "ci", force=False, now=NOW)
    assert ("f:spec", "f:replicas") in owned(same, "ci") and ("f:spec", "f:replicas") in owned(same, "kubectl-scale", fm.UPDATE)
    with pytest.raises(fm.ApplyConflict) as e:
        fm.apply(scaled, rc(3), "ReplicationController", "kubectl", force=False, now=NOW)
    assert e.value.conflicts == [("kubectl-scale", ("f:spec", "f:replicas"))]
    assert str(e.value) == 'Apply failed with 1 conflict: conflict with "kubectl-scale" using v1: .spec.replicas'
    forced = fm.apply(scaled, rc(3), "ReplicationController", "kubectl", force=True, now=NOW)
    assert forced["spec"]["replicas"] == 3
    assert ("f:spec", "f:replicas") in owned(forced, "kubectl")
    assert (("kubectl-scale", fm.UPDATE) not in fm.managers(forced)), "an entry that owns nothing goes"


def test_an_object_from_before_server_side_apply() -> None:
    live = rc(2)
    live["metadata"].update(uid="u", resourceVersion="7", creationTimestamp="2025-01-01T00:00:00Z")
    live["status"] = {"replicas": 2}
    with pytest.raises(fm.ApplyConflict) as e:
        fm.apply(live, rc(4), "ReplicationController", "kubectl", force=False, now=NOW)
    assert e.value.conflicts == [(fm.BEFORE_FIRST_APPLY, ("f:spec", "f:replicas"))]
    out = fm.apply(live, rc(2, tier="x"), "ReplicationController", "kubectl", force=False, now=NOW)
    assert out["metadata"]["labels"]["tier"] == "x" and out["status"] == {"replicas": 2}
    assert {e["manager"] for e in out["metadata"]["managedFields"]} == {"before-first-apply", "kubectl"}


def test_update_without_managed_fields_is_a_no_op_and_given_ones_are_kept() -> None:
    old, new = rc(1), rc(2)
    fm.update(old, new, "ReplicationController", "x", now=NOW)
    assert "managedFields" not in new["metadata"]
    live = fm.apply(None, rc(1), "ReplicationController", "kubectl", force=False, now=NOW)
    reset = copy.deepcopy(live)
    reset["metadata"]["managedFields"] = [{}]  # a client resetting them, as kube lets it
    fm.update(live, reset, "ReplicationController", "x", now=NOW)
    assert "managedFields" not in reset["metadata"]
    left_out = rc(3)  # a PUT without them keeps the old ones, and the writer takes what it changed
    fm.update(live, left_out, "ReplicationController", "x", now=NOW)
    assert ("f:spec", "f:replicas") in owned(left_out, "x", fm.UPDATE)
    assert ("f:spec", "f:replicas") not in owned(left_out, "kubectl")


def test_path_text_as_structured_merge_diff_prints_it() -> None:
    assert fm.path_text(("f:spec", "f:containers", 'k:{"name":"c"}', "f:image")) == '.spec.containers[name="c"].image'
    assert fm.path_text(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}')) == '.spec.ports[port=80,protocol="TCP"]'
    assert fm.path_text(("f:metadata", "f:finalizers", 'v:"a"')) == '.metadata.finalizers[="a"]'
