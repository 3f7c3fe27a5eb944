"""Discovery documents: what kubectl and client libraries read before their first request.

* `/version` — a kube-like version (`v1.33.0-netplane`), so kubectl's version-skew warning
  stays quiet for the kubectl the project tests with (v1.33).
* `/api` (APIVersions), `/api/v1` (APIResourceList: verbs, shortNames, subresources), `/apis`
  (an empty APIGroupList: every kind here is core/v1). kubectl 1.33 first asks `/api` and
  `/apis` for *aggregated* discovery (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;
  as=APIGroupDiscoveryList, ...application/json`); we answer with the legacy documents and a
  plain `application/json` content type, and client-go falls back to the legacy form.
* `/openapi/v3` and `/openapi/v3/api/v1` — only what kubectl's `apply`/`create` need: before
  sending `fieldValidation=Strict` it checks that the PATCH operation of the object's kind
  lists that query parameter (`resource.QueryParamVerifierV3`). Finding it, kubectl leaves
  validation to the server (ours: `orchestrator.validation`), instead of failing to download
  an OpenAPI v2 schema for client-side validation. No component schemas: kubectl's strategic
  merge patches then use its compiled-in types, which are Kubernetes' own.
"""

from __future__ import annotations

import hashlib
import json
import platform
from typing import Any

from orchestrator.objects.meta import KINDS, Kind

Obj = dict[str, Any]
KUBE_VERSION = (1, 33, 0)
GIT_VERSION = "v{}.{}.{}-netplane".format(*KUBE_VERSION)

READ = ["get", "list", "watch"]
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_SINGULAR = {"endpoints": "endpoints"}
# subresource -> (kinds it belongs to, verbs, (group, version, kind) when not the parent's)
SUBRESOURCES: dict[str, tuple[tuple[str, ...], list[str], tuple[str, str, str] | None]] = {
    "status": (("pods", "replicationcontrollers", "services", "nodes", "namespaces"),
               ["get", "patch", "update"], None),
    "binding": (("pods",), ["create"], ("", "v1", "Binding")),
    "log": (("pods",), ["get"], ("", "v1", "Pod")),
    "exec": (("pods",), ["create", "get"], ("", "v1", "PodExecOptions")),
    "attach": (("pods",), ["create", "get"], ("", "v1", "PodAttachOptions")),
    "portforward": (("pods",), ["create", "get"], ("", "v1", "PodPortForwardOptions")),
    "scale": (("replicationcontrollers",), ["get", "patch", "update"], ("autoscaling", "v1", "Scale")),
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
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}


def singular(kind: Kind) -> str:
    return _SINGULAR.get(kind.resource, kind.kind.lower())


def resource_list() -> Obj:
    resources: list[Obj] = []
    for k in sorted(KINDS, key=lambda k: k.resource):
        resources.append({
            "name": k.resource, "singularName": singular(k), "namespaced": k.namespaced,
            "kind": k.kind, "verbs": ALL_VERBS if k.resource != "namespaces" else
            ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": list(k.short_names),
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
    return {"group": "", "version": "v1", "kind": kind.kind}


def openapi_v1() -> Obj:
    """The group-version document: one path per kind with the operations and the parameters
    kubectl looks for (see the module docstring)."""
    paths: Obj = {}
    for k in KINDS:
        base = f"/api/v1/namespaces/{{namespace}}/{k.resource}" if k.namespaced else f"/api/v1/{k.resource}"
        ext = {"x-kubernetes-group-version-kind": _gvk(k)}

        def op(action: str, k: Kind = k, ext: Obj = ext) -> Obj:
            return {"operationId": f"{action}{'Namespaced' if k.namespaced else ''}{k.kind}",
                    "parameters": _QUERY, "x-kubernetes-action": action, **ext,
                    "responses": {"200": {"description": "OK"}}}

        paths[base] = {"post": op("post"), "get": op("list")}
        paths[base + "/{name}"] = {"get": op("get"), "put": op("put"), "patch": op("patch"),
                                   "delete": op("delete")}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths, "components": {"schemas": {}}}


def openapi_hash() -> str:
    return hashlib.sha512(json.dumps(openapi_v1(), sort_keys=True).encode()).hexdigest()[:32].upper()


def openapi_index() -> Obj:
    return {"paths": {"api/v1": {"serverRelativeURL": f"/openapi/v3/api/v1?hash={openapi_hash()}"}}}
