"""Discovery documents: what kubectl and client libraries read before their first request.

* `/version` — a kube-like version (`v1.33.0-netplane`), so kubectl's version-skew warning
  stays quiet for the kubectl the project tests with (v1.33).
* `/api` (APIVersions), `/api/v1` (APIResourceList: verbs, shortNames, subresources), `/apis`
  (the APIGroupList of the groups served beside core/v1: authorization and authentication's
  self reviews, rbac.authorization.k8s.io's roles and bindings, policy's PodDisruptionBudgets,
  coordination.k8s.io's Leases,
  metrics.k8s.io). kubectl 1.33 first asks `/api` and
  `/apis` for *aggregated* discovery (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;
  as=APIGroupDiscoveryList, ...application/json`); we answer with the legacy documents and a
  plain `application/json` content type, and client-go falls back to the legacy form.
* `/openapi/v3` and a document per group version of stored kinds (`/openapi/v3/api/v1`,
  `/openapi/v3/apis/coordination.k8s.io/v1`) — only what kubectl's `apply`/`create` need: before
  sending `fieldValidation=Strict` it checks that the PATCH operation of the object's kind
  lists that query parameter (`resource.QueryParamVerifierV3`). Finding it, kubectl leaves
  validation to the server (ours: `orchestrator.validation`), instead of failing to download
  an OpenAPI v2 schema for client-side validation. `components.schemas` carries Kubernetes'
  own schemas of these kinds (what `kubectl explain` reads), converted from the JSON schemas
  that `kubernetes-validate` ships for the release we validate against (`_component_schemas`).
  The PATCH operations name no request body, so kubectl does not take its strategic merge
  patches' merge keys from these schemas but from its compiled-in types, which are the same
  Kubernetes release's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from importlib import resources
from typing import Any

from orchestrator.objects.meta import CORE_KINDS, KINDS, Kind

Obj = dict[str, Any]
KUBE_VERSION = (1, 33, 0)
GIT_VERSION = "v{}.{}.{}-netplane".format(*KUBE_VERSION)

READ = ["get", "list", "watch"]
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_SINGULAR = {"endpoints": "endpoints"}
# `kubectl get all`: the kinds kube puts in the "all" category that are served here
ALL_CATEGORY = frozenset({"pods", "replicationcontrollers", "services"})
# subresource -> (kinds it belongs to, verbs, (group, version, kind) when not the parent's)
SUBRESOURCES: dict[str, tuple[tuple[str, ...], list[str], tuple[str, str, str] | None]] = {
    "status": (("pods", "replicationcontrollers", "services", "nodes", "namespaces"),
               ["get", "patch", "update"], None),
    "binding": (("pods",), ["create"], ("", "v1", "Binding")),
    "eviction": (("pods",), ["create"], ("policy", "v1", "Eviction")),
    "log": (("pods",), ["get"], ("", "v1", "Pod")),
    "exec": (("pods",), ["create", "get"], ("", "v1", "PodExecOptions")),
    "attach": (("pods",), ["create", "get"], ("", "v1", "PodAttachOptions")),
    "ephemeralcontainers": (("pods",), ["get", "patch", "update"], None),
    "portforward": (("pods",), ["create", "get"], ("", "v1", "PodPortForwardOptions")),
    "scale": (("replicationcontrollers",), ["get", "patch", "update"], ("autoscaling", "v1", "Scale")),
    "token": (("serviceaccounts",), ["create"], ("authentication.k8s.io", "v1", "TokenRequest")),
}


def version() -> Obj:
    major, minor, _ = KUBE_VERSION
    return {
        "major": str(major), "minor": str(minor), "emulationMajor": str(major),
        "emulationMinor": str(minor), "minCompatibilityMajor": str(major),
        "minCompatibilityMinor": str(minor - 1), "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
        "platform": f"linux/{'amd64' if platform.machine() in ('x86_64', 'AMD64') else platform.machine()}",
    }


def api_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_groups() -> Obj:
    from orchestrator.apiserver import leases, metrics, policy, rbac, reviews

    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [*reviews.api_groups(), rbac.api_group(), policy.api_group(), leases.api_group(),
                       metrics.api_group()]}


def singular(kind: Kind) -> str:
    return _SINGULAR.get(kind.resource, kind.kind.lower())


def resource_list() -> Obj:
    resources: list[Obj] = []
    for k in sorted(CORE_KINDS, key=lambda k: k.resource):
        resources.append({
            "name": k.resource, "singularName": singular(k), "namespaced": k.namespaced,
            "kind": k.kind, "verbs": ALL_VERBS if k.resource != "namespaces" else
            ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": list(k.short_names),
            **({"categories": ["all"]} if k.resource in ALL_CATEGORY else {}),
            "storageVersionHash": hashlib.sha256(k.kind.encode()).hexdigest()[:12],
        })
        for sub, (parents, verbs, gvk) in SUBRESOURCES.items():
            if k.resource not in parents:
                continue
            entry: Obj = {"name": f"{k.resource}/{sub}", "singularName": "", "namespaced": k.namespaced,
                          "kind": gvk[2] if gvk else k.kind, "verbs": verbs}
            if gvk and gvk[0]:
                entry["group"], entry["version"] = gvk[0], gvk[1]
            resources.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": resources}


# --------------------------------------------------------------------------- OpenAPI v3
_QUERY = [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
          for n in ("dryRun", "fieldManager", "fieldValidation")]


def _gvk(kind: Kind) -> Obj:
    """An operation's `x-kubernetes-group-version-kind`: one object (schemas carry a list)."""
    return {"group": kind.group, "version": kind.version, "kind": kind.kind}


# what api/v1's document describes: our kinds, their lists, and what their operations take or answer
_ROOTS = ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
          "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent", "io.k8s.api.core.v1.Binding",
          "io.k8s.api.autoscaling.v1.Scale")
_REF = "#/$defs/"
_COMPONENTS = "#/components/schemas/"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"  # kube-openapi gives it a format
# the `+default` markers kube's own OpenAPI carries on list-map keys, which the JSON schemas lack:
# server-side apply keys a container port without its protocol as the TCP one
_DEFAULTS = {("io.k8s.api.core.v1.ContainerPort", "protocol"): "TCP",
             ("io.k8s.api.core.v1.ServicePort", "protocol"): "TCP"}


def _openapi3(node: Any, top: bool = False) -> Any:
    """One JSON-schema node in OpenAPI 3.0's dialect, as kube-apiserver serves it: a `$ref`
    with siblings inside `allOf`, a nullable type list as its one type; and the apiVersion and
    kind enums that the JSON-schema converter added (Kubernetes has none) dropped."""
    if isinstance(node, list):
        return [_openapi3(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: Obj = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if len(types) == 1 else types
        elif key == "properties" and isinstance(value, dict):
            props = {}
            for name, prop in value.items():
                prop = _openapi3(prop)
                if top and name in ("apiVersion", "kind") and isinstance(prop, dict):
                    prop.pop("enum", None)
                props[name] = prop
            out[key] = props
        elif key != "$ref":
            out[key] = _openapi3(value)
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        target = {"$ref": _COMPONENTS + ref[len(_REF):]}
        if out:
            out = {"allOf": [target], **out}
        else:
            out = target
    return out


def _refs(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"][len(_REF):]} if isinstance(node.get("$ref"), str) and node["$ref"].startswith(_REF) else set()
    return found.union(*(_refs(v) for k, v in node.items() if k != "$ref")) if node else found


@functools.lru_cache(maxsize=1)
def _component_schemas() -> Obj:
    """Kubernetes' schemas of our kinds and their lists and of everything they refer to, from
    `kubernetes-validate`'s definitions of the release `orchestrator.validation.schema` checks
    against (read once, ≈ 0.1 s)."""
    from orchestrator.validation.schema import SCHEMA_VERSION

    path = resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", f"v{SCHEMA_VERSION}-local", "_definitions.json")
    defs: Obj = json.loads(path.read_text())["$defs"]
    todo = [f"{k.definition}{suffix}" for k in KINDS for suffix in ("", "List")] + list(_ROOTS)
    out: Obj = {}
    while todo:
        name = todo.pop()
        if name in out or name not in defs:
            continue
        d = defs[name]
        out[name] = _openapi3(d, top=True)
        if name == _INT_OR_STRING:
            out[name]["format"] = "int-or-string"
        for (schema, prop), value in _DEFAULTS.items():
            if schema == name:
                out[name]["properties"][prop]["default"] = value
        todo.extend(_refs(d))
    return dict(sorted(out.items()))


def group_versions() -> dict[str, tuple[Kind, ...]]:
    """Each group version's path (`api/v1`, `apis/coordination.k8s.io/v1`) and its stored kinds."""
    out: dict[str, tuple[Kind, ...]] = {}
    for k in KINDS:
        path = f"apis/{k.api_version}" if k.group else "api/v1"
        out[path] = (*out.get(path, ()), k)
    return out


def openapi_v1() -> Obj:
    return openapi_doc("api/v1")


@functools.lru_cache(maxsize=8)
def openapi_doc(group_version: str) -> Obj:
    """The document of a group version (`api/v1`, `apis/coordination.k8s.io/v1`): one path per
    kind with the operations and the parameters kubectl looks for, and the kinds' schemas (see
    the module docstring). KeyError for one not served."""
    paths: Obj = {}
    for k in group_versions()[group_version]:
        base = f"/{group_version}/namespaces/{{namespace}}/{k.resource}" if k.namespaced else f"/{group_version}/{k.resource}"
        ext = {"x-kubernetes-group-version-kind": _gvk(k)}

        def op(action: str, k: Kind = k, ext: Obj = ext) -> Obj:
            return {"operationId": f"{action}{'Namespaced' if k.namespaced else ''}{k.kind}",
                    "parameters": _QUERY, "x-kubernetes-action": action, **ext,
                    "responses": {"200": {"description": "OK"}}}

        paths[base] = {"post": op("post"), "get": op("list")}
        paths[base + "/{name}"] = {"get": op("get"), "put": op("put"), "patch": op("patch"),
                                   "delete": op("delete")}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths, "components": {"schemas": _component_schemas()}}


@functools.lru_cache(maxsize=8)
def openapi_hash(group_version: str = "api/v1") -> str:
    return hashlib.sha512(json.dumps(openapi_doc(group_version), sort_keys=True).encode()).hexdigest()[:32].upper()


def openapi_index() -> Obj:
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={openapi_hash(gv)}"}
                      for gv in group_versions()}}
