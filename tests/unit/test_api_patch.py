"""PATCH bodies as the API server applies them: RFC 7386 merge patch and RFC 6902 JSON patch
(with the RFCs' own examples), and Kubernetes' strategic merge patch as kubectl sends it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from orchestrator import apply
from orchestrator.apiserver.patch import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    apply_patch,
    merge_patch,
)
from orchestrator.objects import meta

Obj = dict[str, Any]


def smp(kind: str, current: Obj, patch: Obj) -> Obj:
    return apply_patch(kind, current, json.dumps(patch).encode(), STRATEGIC_MERGE_PATCH)


def jp(doc: Obj, ops: list[Obj]) -> Obj:
    return apply_patch("Pod", doc, json.dumps(ops).encode(), JSON_PATCH)


# --------------------------------------------------------------------------- RFC 7386
@pytest.mark.parametrize(("target", "patch", "result"), [  # RFC 7386, Appendix A
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_rfc7386_examples(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(copy.deepcopy(target), patch) == result
    if isinstance(target, dict) and isinstance(patch, dict):
        assert apply_patch("Pod", target, json.dumps(patch).encode(), MERGE_PATCH) == result


def test_merge_patch_of_labels_leaves_the_rest_and_the_input_alone() -> None:
    pod = {"metadata": {"name": "p", "labels": {"app": "web", "tier": "be"}},
           "spec": {"containers": [{"name": "a", "image": "x"}]}}
    before = copy.deepcopy(pod)
    out = apply_patch("Pod", pod, b'{"metadata":{"labels":{"tier":"fe","app":null,"v":"2"}}}',
                      "application/merge-patch+json; charset=utf-8")
    assert out["metadata"]["labels"] == {"tier": "fe", "v": "2"}
    assert out["spec"] == pod["spec"] and pod == before
    # a merge patch replaces lists, containers included (no merge by name here)
    out = apply_patch("Pod", pod, b'{"spec":{"containers":[{"name":"a","image":"y"}]}}', MERGE_PATCH)
    assert out["spec"]["containers"] == [{"name": "a", "image": "y"}]


# --------------------------------------------------------------------------- RFC 6902
@pytest.mark.parametrize(("doc", "ops", "result"), [  # RFC 6902, Appendix A
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    ({"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
     {"foo": "bar", "baz": "qux"}),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    # and the other operations on Kubernetes-looking paths
    ({"metadata": {"annotations": {"a/b": "1"}}},
     [{"op": "copy", "from": "/metadata/annotations/a~1b", "path": "/metadata/annotations/m~0n"}],
     {"metadata": {"annotations": {"a/b": "1", "m~n": "1"}}}),
    ({"spec": {"replicas": 1}}, [{"op": "replace", "path": "/spec/replicas", "value": 3}],
     {"spec": {"replicas": 3}}),
    ({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
])
def test_rfc6902_examples(doc: Obj, ops: list[Obj], result: Obj) -> None:
    assert jp(doc, ops) == result


@pytest.mark.parametrize(("doc", "ops", "needle"), [
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "testing value /baz failed"),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], "testing value"),
    ({"a": True}, [{"op": "test", "path": "/a", "value": 1}], "testing value"),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "does not exist"),
    ({"foo": "bar"}, [{"op": "remove", "path": "/baz"}], "/baz does not exist"),
    ({"foo": "bar"}, [{"op": "replace", "path": "/baz", "value": 1}], "/baz does not exist"),
    ({"foo": [1]}, [{"op": "add", "path": "/foo/2", "value": 1}], "out of bounds"),
    ({"foo": [1]}, [{"op": "remove", "path": "/foo/1"}], "out of bounds"),
    ({"foo": [1]}, [{"op": "add", "path": "/foo/01", "value": 1}], "not an array index"),
    ({"foo": [1]}, [{"op": "remove", "path": "/foo/-"}], "not an array index"),
    ({"foo": {}}, [{"op": "move", "from": "/foo", "path": "/foo/bar"}], "own child"),
    ({"foo": 1}, [{"op": "add", "path": "foo", "value": 1}], "does not start with '/'"),
    ({"foo": 1}, [{"op": "add", "path": "/~2", "value": 1}], "bad '~' escape"),
    ({"foo": 1}, [{"op": "frobnicate", "path": "/foo"}], "unknown op"),
    ({"foo": 1}, [{"op": "add", "path": "/x"}], "missing 'value'"),
    ({"foo": 1}, [{"op": "add", "path": "", "value": [1]}], "not a JSON object"),
])
def test_json_patch_failures_are_422_with_a_message(doc: Obj, ops: list[Obj], needle: str) -> None:
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError, match=needle) as e:
        jp(doc, ops)
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    assert doc == before


def test_json_patch_is_all_or_nothing() -> None:
    doc = {"spec": {"replicas": 1}}
    with pytest.raises(PatchError):
        jp(doc, [{"op": "replace", "path": "/spec/replicas", "value": 5},
                 {"op": "test", "path": "/spec/replicas", "value": 1}])
    assert doc == {"spec": {"replicas": 1}}


# --------------------------------------------------------------------------- bad requests
@pytest.mark.parametrize(("body", "ctype", "code", "reason"), [
    (b"{", MERGE_PATCH, 400, "BadRequest"),
    (b"\xff", STRATEGIC_MERGE_PATCH, 400, "BadRequest"),
    (b"[1]", MERGE_PATCH, 400, "BadRequest"),
    (b"[]", STRATEGIC_MERGE_PATCH, 400, "BadRequest"),
    (b'{"op": "add"}', JSON_PATCH, 400, "BadRequest"),
    (b"[1]", JSON_PATCH, 400, "BadRequest"),
    (b"{}", "application/apply-patch+yaml", 415, "UnsupportedMediaType"),
    (b"{}", "application/json", 415, "UnsupportedMediaType"),
])
def test_malformed_bodies_and_other_media_types(body: bytes, ctype: str, code: int, reason: str) -> None:
    with pytest.raises(PatchError) as e:
        apply_patch("Pod", {"metadata": {"name": "p"}}, body, ctype)
    assert (e.value.code, e.value.reason) == (code, reason)
    assert str(e.value) == e.value.message


# --------------------------------------------------------------------------- strategic merge
def pod(**spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "web", "image": "nginx:1", "imagePullPolicy": "IfNotPresent",
                 "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"},
                           {"containerPort": 443, "name": "https", "protocol": "TCP"}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "resources": {"requests": {"cpu": "100m"}}},
                {"name": "side", "image": "busybox", "args": ["sleep", "1d"]}],
                "tolerations": [{"key": "k", "operator": "Exists"}], **spec},
            "status": {"phase": "Running"}}


def containers(obj: Obj) -> list[Obj]:
    return obj["spec"]["containers"]


def test_containers_merge_by_name_keeping_what_the_patch_leaves_out() -> None:
    out = smp("Pod", pod(), {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}})
    web, side = containers(out)
    assert web == {**containers(pod())[0], "image": "nginx:2"}
    assert side == containers(pod())[1] and out["status"] == {"phase": "Running"}


def test_a_container_removed_with_patch_delete() -> None:
    out = smp("Pod", pod(), {"spec": {"containers": [{"$patch": "delete", "name": "side"}]}})
    assert [c["name"] for c in containers(out)] == ["web"]
    for item in ({"$patch": "delete", "image": "x"}, {"image": "x"}):
        with pytest.raises(PatchError, match="does not contain declared merge key: name") as e:
            smp("Pod", pod(), {"spec": {"containers": [item]}})
        assert e.value.code == 422


def test_env_merges_by_name_new_items_first_as_in_kubernetes() -> None:
    out = smp("Pod", pod(), {"spec": {"containers": [
        {"name": "web", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}})
    assert containers(out)[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"},
                                         {"name": "C", "value": "4"}]
    # without $setElementOrder an item the server does not have goes before the server's own
    # (strategicpatch's mergeSortedSlice); kubectl apply always sends the order
    out = smp("Pod", pod(), {"spec": {"containers": [{"name": "web", "env": [{"name": "D", "value": "5"}]}]}})
    assert [e["name"] for e in containers(out)[0]["env"]] == ["D", "A", "B"]


def test_container_ports_merge_by_container_port() -> None:
    out = smp("Pod", pod(), {"spec": {"containers": [
        {"name": "web", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}})
    assert containers(out)[0]["ports"] == [
        {"containerPort": 80, "name": "http", "protocol": "TCP", "hostPort": 8080},
        {"containerPort": 443, "name": "https", "protocol": "TCP"}]


def service() -> Obj:
    return {"kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.7", "selector": {"app": "web"},
                     "externalIPs": ["192.0.2.1"],
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP",
                                "nodePort": 30080},
                               {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP",
                                "nodePort": 30053}]}}


def test_service_ports_merge_by_port() -> None:
    out = smp("Service", service(), {"spec": {"ports": [{"port": 80, "targetPort": 9090}],
                                              "externalIPs": ["192.0.2.9"]}})
    assert out["spec"]["ports"] == [{**service()["spec"]["ports"][0], "targetPort": 9090},
                                    service()["spec"]["ports"][1]]
    assert out["spec"]["externalIPs"] == ["192.0.2.9"]  # untagged: replaced
    # Kubernetes keys service ports by port alone, so the same port with another protocol
    # merges into the existing entry (kubernetes#47249, #105610); kubectl computes its patches
    # the same way
    out = smp("Service", service(), {"spec": {"ports": [{"port": 53, "protocol": "TCP"}]}})
    assert [(p["port"], p["protocol"]) for p in out["spec"]["ports"]] == [(80, "TCP"), (53, "TCP")]


def test_set_element_order_is_honoured() -> None:
    out = smp("Pod", pod(), {"spec": {
        "$setElementOrder/containers": [{"name": "side"}, {"name": "new"}, {"name": "web"}],
        "containers": [{"name": "new", "image": "n"}]}})
    assert [c["name"] for c in containers(out)] == ["side", "new", "web"]
    assert containers(out)[2] == containers(pod())[0]
    # an order alone reorders; an order the patch list contradicts is refused
    out = smp("Pod", pod(), {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "web"}]}})
    assert [c["name"] for c in containers(out)] == ["side", "web"]
    with pytest.raises(PatchError, match="setElementOrder") as e:
        smp("Pod", pod(), {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
                                    "containers": [{"name": "web"}, {"name": "side"}]}})
    assert e.value.code == 400


def test_null_deletes_a_field_and_nulls_in_new_values_are_dropped() -> None:
    out = smp("Pod", pod(), {"metadata": {"labels": {"app": None}},
                             "spec": {"containers": [{"name": "web", "resources": None,
                                                      "securityContext": {"runAsUser": 1, "x": None}}],
                                      "tolerations": None}})
    assert out["metadata"]["labels"] == {}
    web = containers(out)[0]
    assert "resources" not in web and web["securityContext"] == {"runAsUser": 1}
    assert "tolerations" not in out["spec"]


def test_lists_without_a_merge_key_are_replaced() -> None:
    out = smp("Pod", pod(), {"spec": {"tolerations": [{"key": "other", "operator": "Exists"}],
                                      "containers": [{"name": "side", "args": ["sleep", "2d"]}]}})
    assert out["spec"]["tolerations"] == [{"key": "other", "operator": "Exists"}]
    assert containers(out)[1]["args"] == ["sleep", "2d"]
    ep = {"kind": "Endpoints", "metadata": {"name": "web"},
          "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}
    out = smp("Endpoints", ep, {"subsets": [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]})
    assert out["subsets"] == [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]


def test_patch_replace_and_delete_directives() -> None:
    out = smp("Pod", pod(), {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}})
    assert containers(out) == [{"name": "only", "image": "x"}]
    out = smp("Pod", pod(), {"metadata": {"labels": {"$patch": "replace", "new": "1"}}})
    assert out["metadata"]["labels"] == {"new": "1"}
    out = smp("Pod", pod(), {"metadata": {"labels": {"$patch": "delete"}}})
    assert out["metadata"]["labels"] == {}  # an emptied map, as Kubernetes leaves it
    out = smp("Pod", pod(), {"metadata": {"labels": {"$patch": "merge", "v": "2"}}})
    assert out["metadata"]["labels"] == {"app": "web", "v": "2"}
    with pytest.raises(PatchError, match="unknown patch type") as e:
        smp("Pod", pod(), {"metadata": {"labels": {"$patch": "squash"}}})
    assert e.value.code == 400


def test_retain_keys_clears_a_volume_source_kubectl_switched() -> None:
    current = pod(volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}])
    out = smp("Pod", current, {"spec": {
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
        "volumes": [{"$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/srv"}, "name": "data"}]}})
    assert out["spec"]["volumes"] == [{"name": "data", "hostPath": {"path": "/srv"}},
                                      {"name": "cfg", "configMap": {"name": "c"}}]
    with pytest.raises(PatchError, match="retainKeys"):
        smp("Pod", current, {"spec": {"volumes": [{"$retainKeys": ["name"], "hostPath": {}, "name": "data"}]}})


def test_primitive_merge_lists_are_sets() -> None:
    node = {"kind": "Node", "metadata": {"name": "h1", "finalizers": ["a", "b"]},
            "spec": {"podCIDRs": ["10.244.1.0/24"], "taints": [{"key": "t", "effect": "NoSchedule"}]}}
    out = smp("Node", node, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["b", "c"]},
                             "spec": {"podCIDRs": ["fd00::/64"], "taints": []}})
    assert out["metadata"]["finalizers"] == ["b", "c"]
    assert out["spec"]["podCIDRs"] == ["fd00::/64", "10.244.1.0/24"]
    assert out["spec"]["taints"] == []
    with pytest.raises(PatchError, match="lists of scalars"):
        smp("Node", node, {"spec": {"$deleteFromPrimitiveList/taints": [{"key": "t"}]}})


def test_cordon_and_node_status_conditions_by_type() -> None:
    node = {"kind": "Node", "metadata": {"name": "h1"}, "spec": {},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                              {"type": "Hostname", "address": "h1"}]}}
    out = smp("Node", node, {"spec": {"unschedulable": True},
                             "status": {"conditions": [{"type": "Ready", "status": "False"}],
                                        "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}})
    assert out["spec"] == {"unschedulable": True}
    assert out["status"]["conditions"][1] == {"type": "Ready", "status": "False",
                                              "lastTransitionTime": "2024-01-01T00:00:00Z"}
    assert out["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.2"},
                                          {"type": "Hostname", "address": "h1"}]


def test_kind_by_name_or_as_a_kind() -> None:
    patch = json.dumps({"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}).encode()
    assert apply_patch(meta.POD, pod(), patch, STRATEGIC_MERGE_PATCH) == smp("Pod", pod(), json.loads(patch))


def test_an_unknown_kind_merges_as_plain_json() -> None:
    scale = {"kind": "Scale", "spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=web"}}
    assert smp("Scale", scale, {"spec": {"replicas": 5}}) == {**scale, "spec": {"replicas": 5}}
    out = smp("Widget", {"items": [{"name": "a", "v": 1}]}, {"items": [{"name": "a", "w": 2}]})
    assert out == {"items": [{"name": "a", "w": 2}]}


# --------------------------------------------------------------------------- kubectl apply
def rc(image: str, env: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"app": "web"}, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "env": env}]}}}}


def test_what_kubectl_apply_sends_for_a_new_image_and_a_dropped_env_var() -> None:
    """kubectl's CreateThreeWayMergePatch(original=last-applied, modified=the manifest,
    current): additions and changes come from diff(current, modified), deletions from
    diff(original, modified); every list the patch touches gets a $setElementOrder of the
    manifest's order; the manifest's last-applied annotation is sent verbatim."""
    original = apply.with_last_applied(rc("nginx:1", [{"name": "A", "value": "1"},
                                                      {"name": "DEBUG", "value": "1"}]))
    current = copy.deepcopy(original)  # as stored: with defaults, status, server metadata
    current["metadata"].update(uid="u1", resourceVersion="7", generation=1)
    c = current["spec"]["template"]["spec"]["containers"][0]
    c.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    current["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    current["status"] = {"replicas": 2, "readyReplicas": 2}
    modified = apply.with_last_applied(rc("nginx:2", [{"name": "A", "value": "1"}]))
    new_last_applied = modified["metadata"]["annotations"][apply.LAST_APPLIED]
    kubectl_patch = {
        "metadata": {"annotations": {apply.LAST_APPLIED: new_last_applied}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}],
            "containers": [{"$setElementOrder/env": [{"name": "A"}],
                            "env": [{"$patch": "delete", "name": "DEBUG"}],
                            "image": "nginx:2", "name": "web"}]}}}}
    out = smp("ReplicationController", current, kubectl_patch)
    web = out["spec"]["template"]["spec"]["containers"][0]
    assert web == {"name": "web", "image": "nginx:2", "env": [{"name": "A", "value": "1"}],
                   "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"}
    assert out["status"] == current["status"] and out["metadata"]["uid"] == "u1"
    assert out["metadata"]["annotations"][apply.LAST_APPLIED] == new_last_applied  # as sent
    # and `netplane apply`'s client-side merge of the same three objects stores the same
    assert apply.merge(apply.last_applied(current), modified, current) == out


def test_netplane_apply_reads_the_same_merge_keys() -> None:
    """`orchestrator.apply` (client-side apply) and the server's patch share PATCH_TYPES: a
    Service's ports by port, scalar merge lists as sets, Endpoints' lists replaced."""
    original = {"kind": "Service", "metadata": {"name": "web"},
                "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    modified = {"kind": "Service", "metadata": {"name": "web"},
                "spec": {"ports": [{"port": 80, "targetPort": 9090}]}}
    current = {"kind": "Service", "metadata": {"name": "web"},
               "spec": {"ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]}}
    assert apply.merge(original, modified, current)["spec"]["ports"] == [
        {"port": 80, "targetPort": 9090, "nodePort": 30080, "protocol": "TCP"}]
    node_cur = {"kind": "Node", "metadata": {"name": "h1", "finalizers": ["x", "mine"]}}
    merged = apply.merge({"kind": "Node", "metadata": {"name": "h1", "finalizers": ["mine"]}},
                         {"kind": "Node", "metadata": {"name": "h1", "finalizers": ["new"]}}, node_cur)
    assert merged["metadata"]["finalizers"] == ["new", "x"]
    ep_cur = {"kind": "Endpoints", "subsets": [{"ports": [{"port": 80, "name": "a"}]}]}
    ep_new = {"kind": "Endpoints", "subsets": [{"ports": [{"port": 80}]}]}
    assert apply.merge(ep_new, ep_new, ep_cur)["subsets"] == [{"ports": [{"port": 80}]}]
