"""`policy/v1` PodDisruptionBudgets: objects like any other here (every verb, selectors,
watch, Tables with kube's columns: NAME, MIN AVAILABLE, MAX UNAVAILABLE, ALLOWED DISRUPTIONS,
AGE), with a `status` subresource the leader's disruption controller writes
(`controllers.disruption`), and what `pods/eviction` checks before it deletes a pod
(`Registry.evict`): `kubectl create pdb`, `kubectl drain` held back by a budget.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.apiserver.handlers import add_group_routes, not_found_path, parse_path, serve
from orchestrator.objects.meta import POD_DISRUPTION_BUDGET

Obj = dict[str, Any]
GROUP = POD_DISRUPTION_BUDGET.group
GROUP_VERSION = POD_DISRUPTION_BUDGET.api_version
RESOURCES = {POD_DISRUPTION_BUDGET.resource: POD_DISRUPTION_BUDGET}


def api_group() -> Obj:
    gv = {"groupVersion": GROUP_VERSION, "version": POD_DISRUPTION_BUDGET.version}
    return {"name": GROUP, "versions": [gv], "preferredVersion": gv}


def resource_list() -> Obj:
    from orchestrator.apiserver.discovery import ALL_VERBS

    k = POD_DISRUPTION_BUDGET
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": k.resource, "singularName": "poddisruptionbudget", "namespaced": True, "kind": k.kind,
         "verbs": ALL_VERBS, "shortNames": list(k.short_names)},
        {"name": f"{k.resource}/status", "singularName": "", "namespaced": True, "kind": k.kind,
         "verbs": ["get", "patch", "update"]}]}


async def policy_api(request: web.Request) -> web.StreamResponse:
    t = parse_path(request.match_info.get("tail", ""), RESOURCES)
    if t.subresource not in (None, "status"):
        raise not_found_path()
    return await serve(request, t)


def add_routes(app: web.Application) -> None:
    add_group_routes(app, GROUP_VERSION, resource_list, policy_api)
