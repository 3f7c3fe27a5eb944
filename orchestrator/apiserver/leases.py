"""`coordination.k8s.io/v1` Leases: the node heartbeats, as kubelet's node Leases.

A kubelet renews a Lease named after its node in `kube-node-lease` every 10 s, and `kubectl
describe node` prints it (`Lease: HolderIdentity, AcquireTime, RenewTime`; without the API it
prints `Failed to get lease`). Our node agents renew an etcd key on an etcd lease instead
(`orchestrator.heartbeat`), and the node lifecycle controller reads those keys; this module
shows each key as that Lease, read-only:

* `GET /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases[/{node}]` and
  `GET .../v1/leases` (every namespace): `spec.holderIdentity` the node, `renewTime` its last
  heartbeat, `leaseDurationSeconds` the etcd lease's TTL, `metadata.creationTimestamp` when
  the agent's etcd lease was granted, `resourceVersion` the key's etcd revision. `kubectl get
  leases` gets kube's Table (NAME, HOLDER, AGE). Other namespaces hold no Leases.
* Writes are 405: a Lease here is a heartbeat an agent owns, and leader election in netplane
  is etcd's own (`orchestrator.leader`), so no client writes Leases. A node whose etcd lease
  expired (agent stopped for longer than the TTL) has no Lease, as a deleted one would not.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from netplane.store import KeyValue
from orchestrator import heartbeat, printing
from orchestrator.apiserver.handlers import CONTEXT, json_response, wants_table
from orchestrator.apiserver.status import APIError, bad_request, method_not_allowed
from orchestrator.objects.selector import SelectorError, parse

Obj = dict[str, Any]
GROUP = "coordination.k8s.io"
VERSION = "v1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
NODE_LEASE_NAMESPACE = "kube-node-lease"
_COLUMNS = [
    {"name": "Name", "type": "string", "format": "name", "priority": 0,
     "description": "Name must be unique within a namespace."},
    {"name": "Holder", "type": "string", "format": "", "priority": 0,
     "description": "holderIdentity contains the identity of the holder of a current lease."},
    {"name": "Age", "type": "string", "format": "", "priority": 0,
     "description": "CreationTimestamp is a timestamp representing the server time when this object was created."},
]


def api_group() -> Obj:
    gv = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [gv], "preferredVersion": gv}


def resource_list() -> Obj:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": "leases", "singularName": "lease", "namespaced": True, "kind": "Lease", "verbs": ["get", "list"]}]}


def lease(node: str, kv: KeyValue) -> Obj | None:
    """The Lease of `node` from its heartbeat key; None for a malformed value (logged)."""
    beat = heartbeat.read(kv.value)
    if beat is None:
        return None
    created = (beat.since or beat.renew_time).replace(microsecond=0)
    spec: Obj = {"holderIdentity": node, "renewTime": heartbeat.micro_time(beat.renew_time)}
    if beat.duration is not None:
        spec["leaseDurationSeconds"] = beat.duration
    return {"apiVersion": GROUP_VERSION, "kind": "Lease", "metadata": {
        "name": node, "namespace": NODE_LEASE_NAMESPACE,
        # one uid per etcd key's life: the same while the agent renews, new after it re-registers
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"netplane:{kv.key}@{kv.create_revision}")),
        "resourceVersion": str(kv.mod_revision),
        "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")}, "spec": spec}


def table(leases: list[Obj], resource_version: str, now: datetime, include_object: str) -> Obj:
    rows = []
    for le in leases:
        row: Obj = {"cells": [le["metadata"]["name"], le["spec"].get("holderIdentity") or "",
                              printing.since(le["metadata"].get("creationTimestamp"), now)]}
        if include_object == "Object":
            row["object"] = le
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": le["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": _COLUMNS, "rows": rows}


def _name_of(key: str, prefix: str) -> str:
    return key[len(prefix):]


async def get_lease(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    kv = None
    if namespace == NODE_LEASE_NAMESPACE and "/" not in name:
        key = ctx.objects.keys.nodes + name
        kv = await (ctx.reader.get(key) if ctx.reader is not None else ctx.run(ctx.objects.store.get, key))
    obj = lease(name, kv) if kv is not None else None
    if obj is None:
        raise APIError(404, f'leases.{GROUP} "{name}" not found', reason="NotFound",
                       details={"name": name, "group": GROUP, "kind": "leases"})
    if wants_table(request):
        return json_response(table([obj], obj["metadata"]["resourceVersion"], datetime.now(UTC),
                                   request.query.get("includeObject", "Metadata")))
    return json_response(obj)


async def list_leases(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    namespace = request.match_info.get("namespace")
    selector = None
    if text := request.query.get("labelSelector"):
        try:
            selector = parse(text)
        except SelectorError as e:
            raise bad_request(f"unable to parse requirement: {e}") from None
    prefix = ctx.objects.keys.nodes
    kvs, revision = await ctx.run(ctx.objects.store.list, prefix)
    items: list[Obj] = []
    if namespace in (None, NODE_LEASE_NAMESPACE):
        for kv in sorted(kvs, key=lambda kv: kv.key):
            obj = lease(_name_of(kv.key, prefix), kv)
            if obj is not None and (selector is None or selector.matches(obj["metadata"].get("labels") or {})):
                items.append(obj)
    if wants_table(request):
        return json_response(table(items, str(revision), datetime.now(UTC), request.query.get("includeObject", "Metadata")))
    return json_response({"kind": "LeaseList", "apiVersion": GROUP_VERSION,
                          "metadata": {"resourceVersion": str(revision)}, "items": items})


async def refuse_write(request: web.Request) -> web.Response:
    raise method_not_allowed(request.method, "leases: node Leases are the agents' heartbeats, read-only here")


def add_routes(app: web.Application) -> None:
    async def group(request: web.Request) -> web.Response:
        return json_response(resource_list())

    base = f"/apis/{GROUP_VERSION}"
    r = app.router
    r.add_get(base, group)
    r.add_get(base + "/", group)
    r.add_get(base + "/leases", list_leases)
    r.add_get(base + "/namespaces/{namespace}/leases", list_leases)
    r.add_get(base + "/namespaces/{namespace}/leases/{name}", get_lease)
    for path in ("/namespaces/{namespace}/leases", "/namespaces/{namespace}/leases/{name}"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r.add_route(method, base + path, refuse_write)
