"""The OpenAPI v3 document of api/v1 (`orchestrator.apiserver.discovery`): Kubernetes' own
schemas of our kinds in OpenAPI 3.0's dialect, as `kubectl explain` reads them (the lab test
runs kubectl explain against the server)."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.apiserver import discovery
from orchestrator.objects.meta import KINDS

PREFIX = "#/components/schemas/"


def _walk(node: Any, path: str = ""):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}/{i}")


def test_every_kind_and_list_is_described_with_its_group_version_kind() -> None:
    schemas = discovery.openapi_v1()["components"]["schemas"]
    for k in KINDS:
        for name, kind in ((k.definition, k.kind), (f"{k.definition}List", f"{k.kind}List")):
            s = schemas[name]
            assert {"group": k.group, "version": k.version, "kind": kind} in s["x-kubernetes-group-version-kind"], name
            assert s["description"] and s["type"] == "object"
            assert "enum" not in s["properties"]["kind"], "Kubernetes has no enum on kind (the JSON schema's converter added it)"
    assert "io.k8s.api.autoscaling.v1.Scale" in schemas and "io.k8s.apimachinery.pkg.apis.meta.v1.Status" in schemas


def test_openapi_3_dialect_and_closed_references() -> None:
    doc = discovery.openapi_v1()
    schemas = doc["components"]["schemas"]
    refs = 0
    for path, node in _walk(schemas):
        if "$ref" in node:
            refs += 1
            assert node["$ref"].startswith(PREFIX) and node["$ref"][len(PREFIX):] in schemas, (path, node)
            assert set(node) == {"$ref"}, f"{path}: siblings of a $ref go in allOf (OpenAPI 3.0 ignores them)"
        assert not isinstance(node.get("type"), list), f"{path}: a type list ({node['type']}) is not OpenAPI 3.0"
    assert refs > 250
    ports = schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"]
    assert ports["items"] == {"$ref": PREFIX + "io.k8s.api.core.v1.ContainerPort"}
    assert ports["x-kubernetes-patch-merge-key"] == "containerPort"  # what a strategic merge patch merges by
    meta = schemas["io.k8s.api.core.v1.Pod"]["properties"]["metadata"]
    assert meta["allOf"] == [{"$ref": PREFIX + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}] and meta["description"]
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    # the hash kubectl caches the document by follows its content
    assert discovery.openapi_index()["paths"]["api/v1"]["serverRelativeURL"].endswith(discovery.openapi_hash())
    assert len(json.dumps(doc)) < 1_000_000


def test_each_group_version_has_its_document() -> None:
    """kubectl apply of a Lease looks for fieldValidation on apis/coordination.k8s.io/v1's PATCH."""
    index = discovery.openapi_index()["paths"]
    assert set(index) == {"api/v1", "apis/coordination.k8s.io/v1", "apis/rbac.authorization.k8s.io/v1",
                          "apis/policy/v1"}
    rbac = discovery.openapi_doc("apis/rbac.authorization.k8s.io/v1")
    assert "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}" in rbac["paths"]
    assert "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings" in rbac["paths"]
    assert "io.k8s.api.rbac.v1.PolicyRule" in rbac["components"]["schemas"]
    doc = discovery.openapi_doc("apis/coordination.k8s.io/v1")
    assert index["apis/coordination.k8s.io/v1"]["serverRelativeURL"] == \
        f"/openapi/v3/apis/coordination.k8s.io/v1?hash={discovery.openapi_hash('apis/coordination.k8s.io/v1')}"
    patch = doc["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "coordination.k8s.io", "version": "v1", "kind": "Lease"}
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert not any("leases" in path for path in discovery.openapi_v1()["paths"])
