"""`rbac.authorization.k8s.io/v1`: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings.

They are objects like any other here: stored in etcd under `<prefix>/registry/<resource>/...`,
validated and defaulted by `orchestrator.validation.rbac`, with every verb, selectors, paging,
watch and Tables (kube's columns: NAME, CREATED AT for roles; NAME, ROLE, AGE and, wide,
USERS, GROUPS, SERVICEACCOUNTS for bindings). So `kubectl create role|rolebinding|
clusterrole|clusterrolebinding`, `kubectl apply -f` of a manifest carrying them (every Helm
chart does), and the official client's `RbacAuthorizationV1Api` work.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.apiserver.handlers import json_response, not_found_path, parse_path, serve
from orchestrator.objects.meta import RBAC_KINDS, RBAC_VERSION

Obj = dict[str, Any]
GROUP, _, VERSION = RBAC_VERSION.rpartition("/")
RESOURCES = {k.resource: k for k in RBAC_KINDS}


def api_group() -> Obj:
    gv = {"groupVersion": RBAC_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [gv], "preferredVersion": gv}


def resource_list() -> Obj:
    from orchestrator.apiserver.discovery import ALL_VERBS, singular

    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": RBAC_VERSION, "resources": [
        {"name": k.resource, "singularName": singular(k), "namespaced": k.namespaced, "kind": k.kind,
         "verbs": ALL_VERBS} for k in sorted(RBAC_KINDS, key=lambda k: k.resource)]}


async def rbac_api(request: web.Request) -> web.StreamResponse:
    t = parse_path(request.match_info.get("tail", ""), RESOURCES)
    if t.subresource is not None:  # these kinds have none
        raise not_found_path()
    return await serve(request, t)


def add_routes(app: web.Application) -> None:
    async def group(request: web.Request) -> web.Response:
        return json_response(resource_list())

    base = f"/apis/{RBAC_VERSION}"
    r = app.router
    r.add_get(base, group)
    r.add_get(base + "/", group)
    r.add_route("*", base + "/{tail:.+}", rbac_api)
