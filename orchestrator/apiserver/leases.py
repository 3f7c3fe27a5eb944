"""`coordination.k8s.io/v1` Leases: stored Leases, and the node heartbeats as kubelet's node Leases.

**Leases in every namespace but `kube-node-lease`** are objects like any other here: stored in
etcd under `<prefix>/registry/leases/<ns>/<name>`, validated and defaulted by
`orchestrator.validation` (`validation.leases`), with every verb (get, list, watch, create,
update, patch, delete, deletecollection), selectors, paging, Tables (NAME, HOLDER, AGE) and
protobuf bodies. This is what leader election in client-go (`resourcelock.LeaseLock`) and in
the official Python client (`leaderelection.resourcelock.leaselock`) reads and writes: a get,
a create, and updates at the resourceVersion read, a stale one answered 409 Conflict.

**`kube-node-lease`** shows the node heartbeats. A kubelet renews a Lease named after its node
there every 10 s, and `kubectl describe node` prints it (`Lease: HolderIdentity, AcquireTime,
RenewTime`; without it, `Failed to get lease`). Our node agents renew an etcd key on an etcd
lease instead (`orchestrator.heartbeat`), and the node lifecycle controller reads those keys;
this module shows each key as that Lease, read-only:

* `spec.holderIdentity` the node, `renewTime` its last heartbeat, `leaseDurationSeconds` the
  etcd lease's TTL, `metadata.creationTimestamp` when the agent's etcd lease was granted,
  `resourceVersion` the key's etcd revision, and, as kubelet sets it, an owner reference to
  its Node (when the Node object exists);
* a LIST of every namespace's Leases ends with them (after the stored ones, on the last page);
* writes there are 405: a node Lease is a heartbeat an agent owns. A node whose etcd lease
  expired (agent stopped for longer than the TTL) has no Lease, as a deleted one would not.
  A watch there sees no heartbeats (they are not objects with a watchable history here).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from netplane.store import KeyValue
from orchestrator import heartbeat
from orchestrator.apiserver.handlers import (
    CONTEXT,
    Context,
    Target,
    add_group_routes,
    authorize,
    json_response,
    list_response,
    list_result,
    not_found_path,
    parse_path,
    selectors,
    serve,
    table_of,
    verb_of,
    wants_table,
)
from orchestrator.apiserver.status import method_not_allowed, not_found
from orchestrator.objects import meta
from orchestrator.objects.meta import LEASE, NODE

Obj = dict[str, Any]
GROUP = LEASE.group
VERSION = LEASE.version
GROUP_VERSION = LEASE.api_version
NODE_LEASE_NAMESPACE = "kube-node-lease"
RESOURCES = {LEASE.resource: LEASE}


def api_group() -> Obj:
    gv = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [gv], "preferredVersion": gv}


def resource_list() -> Obj:
    from orchestrator.apiserver.discovery import ALL_VERBS, singular

    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": LEASE.resource, "singularName": singular(LEASE), "namespaced": True, "kind": LEASE.kind,
         "verbs": ALL_VERBS}]}


def lease(node: str, kv: KeyValue, owner: Obj | None = None) -> Obj | None:
    """The Lease of `node` from its heartbeat key (owned by `owner`, its Node object, when
    given); None for a malformed value (logged)."""
    beat = heartbeat.read(kv.value)
    if beat is None:
        return None
    created = (beat.since or beat.renew_time).replace(microsecond=0)
    spec: Obj = {"holderIdentity": node, "renewTime": meta.format_micro_time(beat.renew_time)}
    if beat.duration is not None:
        spec["leaseDurationSeconds"] = beat.duration
    md: Obj = {
        "name": node, "namespace": NODE_LEASE_NAMESPACE,
        # one uid per etcd key's life: the same while the agent renews, new after it re-registers
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"netplane:{kv.key}@{kv.create_revision}")),
        "resourceVersion": str(kv.mod_revision),
        "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if owner is not None and meta.uid(owner):
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": meta.uid(owner)}]
    return {"apiVersion": GROUP_VERSION, "kind": "Lease", "metadata": md, "spec": spec}


def _node(ctx: Context, name: str) -> Obj | None:
    """The Node object as the watch cache has it (None without one)."""
    return ctx.caches.cached(NODE, None, name) if ctx.caches is not None else None


async def node_lease(ctx: Context, name: str) -> Obj:
    kv = None
    if "/" not in name:
        key = ctx.objects.keys.nodes + name
        kv = await (ctx.reader.get(key) if ctx.reader is not None else ctx.run(ctx.objects.store.get, key))
    obj = lease(name, kv, _node(ctx, name)) if kv is not None else None
    if obj is None:
        raise not_found(LEASE.resource, name, group=GROUP)
    return obj


async def node_leases(request: web.Request, ctx: Context) -> tuple[list[Obj], int]:
    """The node Leases the request's selectors match, and the revision they were read at."""
    labels, fields = selectors(LEASE, request.query)
    prefix = ctx.objects.keys.nodes
    kvs, revision = await ctx.run(ctx.objects.store.list, prefix)
    items = []
    for kv in sorted(kvs, key=lambda kv: kv.key):
        name = kv.key[len(prefix):]
        obj = lease(name, kv, _node(ctx, name))
        if obj is not None and (labels is None or labels.matches(obj["metadata"].get("labels") or {})) \
                and fields.matches(obj):
            items.append(obj)
    return items, revision


async def leases_api(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    t = parse_path(request.match_info.get("tail", ""), RESOURCES)
    verb = verb_of(request.method, t, request.query)
    if t.subresource is not None:  # a Lease has none
        raise not_found_path()
    if t.namespace == NODE_LEASE_NAMESPACE:
        return await _node_namespace(request, ctx, t, verb)
    if t.namespace is None and verb == "list":  # every namespace's: the stored ones, then the nodes'
        authorize(ctx, verb, t)
        result = await list_result(request, ctx, t)
        if not result["metadata"].get("continue"):
            nodes, _ = await node_leases(request, ctx)
            result["items"] = [*result["items"], *nodes]
        return list_response(request, t, result)
    return await serve(request, t)


async def _node_namespace(request: web.Request, ctx: Context, t: Target, verb: str) -> web.StreamResponse:
    authorize(ctx, verb, t)
    if verb == "get":
        assert t.name is not None
        obj = await node_lease(ctx, t.name)
        if wants_table(request):
            return json_response(table_of(LEASE, [obj], include_object=request.query.get("includeObject")))
        return json_response(obj)
    if verb == "list":
        items, revision = await node_leases(request, ctx)
        return list_response(request, t, {"kind": "LeaseList", "apiVersion": GROUP_VERSION,
                                          "metadata": {"resourceVersion": str(revision)}, "items": items})
    if verb == "watch":
        return await serve(request, t)
    raise method_not_allowed(request.method, f"leases in {NODE_LEASE_NAMESPACE}: node Leases are the "
                                             "agents' heartbeats, read-only here")


def add_routes(app: web.Application) -> None:
    add_group_routes(app, GROUP_VERSION, resource_list, leases_api)
