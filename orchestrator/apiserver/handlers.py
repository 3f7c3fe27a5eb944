"""HTTP handlers for `/api/v1/...`: parse the path and query, authorize, run the verb.

Paths are kube's:

    /api/v1/<resource>[/<name>[/<subresource>]]                       cluster-scoped, or all
                                                                       namespaces for a list
    /api/v1/namespaces/<ns>/<resource>[/<name>[/<subresource>]]        namespaced
    /api/v1/watch/...                                                  the old watch form

The verbs run in a thread pool (`Context.run`): the object store is blocking gRPC; a single
GET awaits its one etcd read on the loop instead (`Context.get`, `AsyncReader`). Request bodies are JSON,
YAML or Kubernetes protobuf (`protobuf.py`, what client-go's typed clients send). Responses
are JSON; `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` gets a `meta.k8s.io/v1`
Table (`orchestrator.apiserver.tables`, what `kubectl get` prints), for lists, single objects
and watch events alike. Watches and `pods/log` stream (`stream.py`).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from aiohttp import web

from netplane.store import codec, greenbridge
from netplane.store.etcd import AsyncReader
from orchestrator import storage
from orchestrator.apiserver import fields as fieldsel
from orchestrator.apiserver import protobuf
from orchestrator.apiserver.auth import User
from orchestrator.apiserver.listing import ListOptions, list_kind
from orchestrator.apiserver.rbacpolicy import MASTERS, Attributes
from orchestrator.apiserver.registry import WITH_STATUS, Registry
from orchestrator.apiserver.satokens import PublishedKeys, Tokens
from orchestrator.apiserver.scale import Scales
from orchestrator.apiserver.status import (
    APIError,
    bad_request,
    method_not_allowed,
    not_found,
    success,
)
from orchestrator.apiserver.watchcache import WatchCaches
from orchestrator.objects import meta
from orchestrator.objects.meta import (
    CORE_KINDS,
    POD,
    REPLICATION_CONTROLLER,
    SERVICE,
    SERVICE_ACCOUNT,
    Kind,
)
from orchestrator.objects.selector import Selector, SelectorError, parse
from orchestrator.storage import ObjectStore

if TYPE_CHECKING:
    from orchestrator.apiserver.rbac import RBACAuthorizer
    from orchestrator.apiserver.stream import NodeDialer

log = logging.getLogger(__name__)

Obj = dict[str, Any]
T = TypeVar("T")
BY_RESOURCE = {k.resource: k for k in CORE_KINDS}  # /api/v1's; the groups' kinds are routed by their modules
SUBRESOURCES = {"status", "scale", "binding", "eviction", "log", "exec", "attach", "portforward",
                "ephemeralcontainers", "token"}
RETURNS_DELETED = (POD, SERVICE)  # kube's stores with ReturnDeletedObject
# kinds whose create, update and patch wait only on etcd gets and transactions (a Service's
# allocations and an Event's lease take other calls): `Context.write` runs them on the loop
LOOP_WRITES = frozenset({"Pod", "ReplicationController", "Node", "Namespace", "Endpoints",
                         "Lease"})  # a Lease's: a leader's renewals
APPLY_PATCH = "application/apply-patch+yaml"
# what a POST/PUT/DELETE body may be besides protobuf (aiohttp says application/octet-stream
# when none is given)
BODY_TYPES = ("application/json", "application/yaml", "application/x-yaml", "application/octet-stream")
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", APPLY_PATCH)


@dataclass
class Context:
    """What every handler shares: the stores, the pool blocking calls run in, the caches."""

    objects: ObjectStore
    registry: Registry
    scales: Scales
    authorizer: RBACAuthorizer
    pool: ThreadPoolExecutor
    caches: WatchCaches | None = None
    bookmark_interval: float = 60.0
    server_address: str = ""
    nodes: NodeDialer | None = None  # how pods/log and pods/exec reach node agents
    reader: AsyncReader | None = None  # etcd reads awaited on the loop (else GETs take the pool)
    sa_tokens: Tokens | None = None  # service account tokens: issued (TokenRequest) and checked
    sa_keys: PublishedKeys | None = None  # the keys tokens are checked with, by kid (every server's, nodes')

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the request's (CURRENT_USER: a write's escalation check)
        return await loop.run_in_executor(self.pool, lambda: context.run(fn, *args, **kwargs))

    async def write(self, kind: Kind, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A registry create, update or patch of `kind`. With a reader, and for the kinds whose
        writes wait on nothing but etcd gets and transactions, it runs on the loop itself
        (`greenbridge`: its etcd calls awaited here, no thread hop); else in the pool.

        On the loop, a request cancelled meanwhile (its client gone) cancels its write where
        it waits, as kube-apiserver's request context does: a transaction not yet sent is
        never sent, one on its way may or may not be applied, and nothing after it runs (each
        of these writes is one transaction, retried on a conflict: none stops between two
        of its own). Not shielded: `asyncio.shield` took a task and two more turns of the
        loop per write (bench/results/api.md, 2026-12-07, eighth session)."""
        if self.reader is None or kind.kind not in LOOP_WRITES:
            return await self.run(fn, *args, **kwargs)
        return await greenbridge.run(fn, *args, **kwargs)

    async def get(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        """`Registry.get`, its etcd read awaited on the loop when there is a reader: a GET is
        one Range and a decode, and the thread hop and blocking gRPC call cost about three
        times the CPU of the Range itself (bench/results/api.md)."""
        if self.reader is None:
            return await self.run(self.registry.get, kind, namespace, name)
        obj = await self.objects.get_async(self.reader, kind, name, namespace)
        if obj is None:
            raise not_found(kind.resource, name, group=kind.group)
        return obj


CONTEXT: web.AppKey[Context] = web.AppKey("context", Context)
# the authenticated user of the request being handled (each request runs in its own task)
CURRENT_USER: contextvars.ContextVar[User] = contextvars.ContextVar("apiserver_user")


@dataclass(frozen=True)
class Target:
    kind: Kind
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool


def not_found_path() -> APIError:
    return APIError(404, "the server could not find the requested resource", details={})


def parse_path(tail: str, resources: dict[str, Kind] = BY_RESOURCE) -> Target:
    """The target of `/api/v1/<tail>` (or of a group version's tail, with its `resources`)."""
    parts = [p for p in tail.split("/") if p]
    watch = bool(parts) and parts[0] == "watch"
    if watch:
        parts = parts[1:]
    namespace = None
    if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] in resources \
            and resources[parts[2]].namespaced:
        namespace, parts = parts[1], parts[2:]
    if not parts or parts[0] not in resources or len(parts) > 3:
        raise not_found_path()
    kind = resources[parts[0]]
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    if kind.namespaced and name is not None and namespace is None:
        raise not_found_path()
    if sub is not None and sub not in SUBRESOURCES:
        raise not_found_path()
    return Target(kind, namespace, name, sub, watch)


def verb_of(method: str, t: Target, query: Any) -> str:
    if method == "GET":
        if t.name is None:
            return "watch" if t.watch_path or _true(query.get("watch")) else "list"
        return "watch" if t.watch_path else "get"
    if method == "POST":
        return "create"
    if method in ("PUT", "PATCH") and t.name is None:
        raise method_not_allowed(method, t.kind.resource)
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "deletecollection" if t.name is None else "delete"
    raise method_not_allowed(method, t.kind.resource)


def _true(v: str | None) -> bool:
    return v is not None and v.lower() in ("1", "true", "yes")


def authorize(ctx: Context, verb: str, t: Target) -> None:
    """403 unless the request's user may `verb` the target (RBAC: its namespace, group,
    resource, subresource and name)."""
    user = CURRENT_USER.get()
    if MASTERS in user.groups:  # kube's privileged group, before RBAC (and no Attributes to build)
        return
    a = Attributes(user, verb, namespace=t.namespace or "", api_group=t.kind.group, resource=t.kind.resource,
                   subresource=t.subresource or "", name=t.name or "")
    if not ctx.authorizer.allows(a):
        raise forbidden(user, verb, t)


def forbidden(user: User, verb: str, t: Target) -> APIError:
    """kube's words: `pods "web" is forbidden: User "jane" cannot delete resource "pods" in API
    group "" in the namespace "default"`."""
    res = t.kind.resource + (f"/{t.subresource}" if t.subresource else "")
    where = f'in the namespace "{t.namespace}"' if t.namespace else "at the cluster scope"
    subject = f"{t.kind.qualified} \"{t.name}\"" if t.name else t.kind.qualified
    details = {"name": t.name or "", "kind": t.kind.resource, **({"group": t.kind.group} if t.kind.group else {})}
    return APIError(403, f'{subject} is forbidden: User "{user.name}" cannot {verb} resource "{res}" '
                         f'in API group "{t.kind.group}" {where}', details=details)


# --------------------------------------------------------------------------- encoding
def wants_table(request: web.Request) -> bool:
    for part in request.headers.get("Accept", "").split(","):
        params = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in part.split(";")[1:])}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" \
                and params.get("v") in ("v1", "v1beta1"):
            return True
    return False


def json_response(body: Any, *, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    """`body` as JSON: an object the store just wrote from the bytes it stored (`storage.Written`)."""
    data = storage.answer_bytes(body) if type(body) is storage.Written else None
    resp = web.Response(body=codec.dump_bytes(body) if data is None else data, status=status,
                        content_type="application/json")
    for w in warnings or ():
        resp.headers.add("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return resp


def status_response(e: APIError) -> web.Response:
    return json_response(e.status(), status=e.code)


def table_of(kind: Kind, objects: list[Obj], list_meta: Obj | None = None, *,
             include_object: str | None = None, no_headers: bool = False) -> Obj:
    """`objects` as a meta.k8s.io/v1 Table (`tables.table`), with the list's metadata."""
    from orchestrator.apiserver.tables import TableError, table

    md = list_meta or {}
    try:
        tbl: Obj = table(kind, objects, include_object=include_object or "Metadata",
                         resource_version=str(md.get("resourceVersion") or ""),
                         continue_token=str(md.get("continue") or ""), no_headers=no_headers)
    except TableError as e:
        raise bad_request(str(e)) from None
    if md.get("remainingItemCount"):
        tbl.setdefault("metadata", {})["remainingItemCount"] = md["remainingItemCount"]
    return tbl


async def read_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    ctype = request.content_type
    if ctype == protobuf.MEDIA_TYPE:  # client-go's typed clients
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as e:
            raise bad_request(f"the body of the request could not be decoded: {e}") from None
    if ctype not in BODY_TYPES:  # kube's NewUnsupportedMediaTypeError, naming what is read here
        raise APIError(415, "the body of the request was in an unknown format - accepted media types "
                            "include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
                       reason="UnsupportedMediaType")
    try:
        if ctype in ("application/yaml", "application/x-yaml"):
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(f"the body of the request could not be decoded: {e}") from None


def selectors(kind: Kind, query: Any) -> tuple[Selector | None, fieldsel.FieldSelector]:
    try:
        labels = parse(query["labelSelector"]) if query.get("labelSelector") else None
    except SelectorError as e:
        raise bad_request(f"unable to parse requirement: {e}") from None
    try:
        fields = fieldsel.parse(kind, query.get("fieldSelector"))
    except fieldsel.FieldSelectorError as e:
        raise bad_request(str(e)) from None
    return labels, fields


def _int(query: Any, name: str) -> int | None:
    v = query.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise bad_request(f'{name}: Invalid value: "{v}": must be an integer') from None


def _dry_run(query: Any) -> bool:
    values = query.getall("dryRun", [])
    for v in values:
        if v not in ("All", ""):
            raise bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return "All" in values


# --------------------------------------------------------------------------- dispatch
def add_group_routes(app: web.Application, group_version: str, resource_list: Callable[[], Obj],
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
    """`/apis/<group_version>` (its APIResourceList) and everything under it (`handler`)."""
    async def group(request: web.Request) -> web.Response:
        return json_response(resource_list())

    base = f"/apis/{group_version}"
    app.router.add_get(base, group)
    app.router.add_get(base + "/", group)
    app.router.add_route("*", base + "/{tail:.+}", handler)


async def api_v1(request: web.Request) -> web.StreamResponse:
    return await serve(request, parse_path(request.match_info.get("tail", "")))


async def serve(request: web.Request, t: Target) -> web.StreamResponse:
    """Authorize and run the verb of `request` on its target (any kind stored here)."""
    ctx = request.app[CONTEXT]
    q = request.query
    verb = verb_of(request.method, t, q)
    if t.subresource in ("exec", "attach", "portforward"):
        verb = "create"  # a command, a connection into the pod: writes, also over a WebSocket's GET (as kube has it)
    authorize(ctx, verb, t)
    if t.subresource is not None:
        return await subresource(request, ctx, t, verb)
    if verb == "watch":
        from orchestrator.apiserver.stream import watch

        return await watch(request, ctx, t)
    if verb == "list":
        return await list_objects(request, ctx, t)
    if verb == "get":
        assert t.name is not None
        obj = await ctx.get(t.kind, t.namespace, t.name)
        if wants_table(request):
            return json_response(table_of(t.kind, [obj], include_object=q.get("includeObject")))
        return json_response(obj)
    if verb == "create":
        if t.name is not None:
            raise method_not_allowed("POST", f"{t.kind.resource}/{t.name}")
        body = await read_body(request)
        obj, warns = await ctx.write(t.kind, ctx.registry.create, t.kind, t.namespace, body,
                                   dry_run=_dry_run(q), field_validation=q.get("fieldValidation"))
        return json_response(obj, status=201, warnings=warns)
    if verb == "update":
        assert t.name is not None
        body = await read_body(request)
        obj, warns = await ctx.write(t.kind, ctx.registry.update, t.kind, t.namespace, t.name, body,
                                   dry_run=_dry_run(q), field_validation=q.get("fieldValidation"),
                                   manager=field_manager(request))
        return json_response(obj, warnings=warns)
    if verb == "patch":
        assert t.name is not None
        ctype = _patch_type(request)
        raw = await request.read()
        if ctype == APPLY_PATCH:
            obj, warns, created = await ctx.run(
                ctx.registry.apply, t.kind, t.namespace, t.name, raw, manager=field_manager(request, apply=True),
                force=_true(q.get("force")), dry_run=_dry_run(q), field_validation=q.get("fieldValidation"))
            return json_response(obj, status=201 if created else 200, warnings=warns)
        obj, warns = await ctx.write(t.kind, ctx.registry.patch, t.kind, t.namespace, t.name, raw, ctype,
                                   dry_run=_dry_run(q), field_validation=q.get("fieldValidation"),
                                   manager=field_manager(request))
        return json_response(obj, warnings=warns)
    if verb == "delete":
        assert t.name is not None
        opts = await delete_options(request)
        obj, gone = await ctx.run(ctx.registry.delete, t.kind, t.namespace, t.name, opts,
                                  dry_run=_dry_run(q))
        if gone and t.kind not in RETURNS_DELETED:
            return json_response(success(name=t.name, kind=t.kind.resource, uid=meta.uid(obj)))
        return json_response(obj)
    if verb == "deletecollection":
        return await delete_collection(request, ctx, t)
    raise method_not_allowed(request.method, t.kind.resource)


def field_manager(request: web.Request, *, apply: bool = False) -> str:
    """Who a write's changed fields belong to: `fieldManager`, else (not for an apply, which
    must name one) the User-Agent's product as kube-apiserver takes it ("kubectl" of
    "kubectl/v1.33.9 (linux/amd64) ..."), else "unknown"."""
    given = request.query.get("fieldManager")
    if given or apply:
        if given and len(given) > 128:
            raise bad_request("fieldManager: Too long: may not be more than 128 bytes")
        return given or ""
    agent = request.headers.get("User-Agent") or ""
    return agent.split("/", 1)[0][:128] or "unknown"


def _patch_type(request: web.Request) -> str:
    ctype = request.content_type
    if ctype not in PATCH_TYPES:
        raise APIError(415, f"the body of the request was in an unknown format - accepted media "
                            f"types include: {', '.join(PATCH_TYPES)}")
    return ctype


async def delete_options(request: web.Request) -> Obj:
    body = await read_body(request)
    opts: Obj = dict(body) if isinstance(body, dict) else {}
    q = request.query
    if q.get("propagationPolicy"):
        opts["propagationPolicy"] = q["propagationPolicy"]
    grace = _int(q, "gracePeriodSeconds")
    if grace is not None:
        opts["gracePeriodSeconds"] = grace
    if q.get("orphanDependents"):
        opts["orphanDependents"] = _true(q["orphanDependents"])
    return opts


async def list_objects(request: web.Request, ctx: Context, t: Target) -> web.Response:
    return list_response(request, t, await list_result(request, ctx, t))


async def list_result(request: web.Request, ctx: Context, t: Target) -> Obj:
    """The `<Kind>List` a LIST of `t` answers (a page of it, with `limit`)."""
    q = request.query
    labels, fields = selectors(t.kind, q)
    opts = ListOptions(labels=labels, fields=fields, limit=_int(q, "limit") or 0,
                       continue_token=q.get("continue") or None,
                       resource_version=q.get("resourceVersion"),
                       resource_version_match=q.get("resourceVersionMatch"))
    return await ctx.run(list_kind, ctx.objects, t.kind, t.namespace, opts)


def list_response(request: web.Request, t: Target, result: Obj) -> web.Response:
    q = request.query
    if wants_table(request):
        return json_response(table_of(t.kind, result["items"], result["metadata"],
                                      include_object=q.get("includeObject")))
    return json_response(result)


async def delete_collection(request: web.Request, ctx: Context, t: Target) -> web.Response:
    q = request.query
    labels, fields = selectors(t.kind, q)
    opts = await delete_options(request)
    dry = _dry_run(q)
    found = await ctx.run(list_kind, ctx.objects, t.kind, t.namespace, ListOptions(labels=labels, fields=fields))

    def delete_all() -> list[Obj]:
        out = []
        for o in found["items"]:
            try:
                obj, _ = ctx.registry.delete(t.kind, meta.namespace(o) if t.kind.namespaced else None,
                                             meta.name(o), opts, dry_run=dry)
                out.append(obj)
            except APIError as e:
                if e.code != 404:
                    raise
        return out

    deleted = await ctx.run(delete_all)
    return json_response({"kind": f"{t.kind.kind}List", "apiVersion": t.kind.api_version,
                          "metadata": {"resourceVersion": found["metadata"]["resourceVersion"]},
                          "items": deleted})


async def subresource(request: web.Request, ctx: Context, t: Target, verb: str) -> web.StreamResponse:
    sub, kind, ns, name = t.subresource, t.kind, t.namespace, t.name
    assert name is not None
    q = request.query
    # the parts of an object a subresource writes alone (the registry keeps the rest)
    if (sub == "status" and kind.kind in WITH_STATUS) \
            or (sub == "ephemeralcontainers" and kind == POD):
        if verb == "get":
            return json_response(await ctx.get(kind, ns, name))
        if verb == "update":
            body = await read_body(request)
            obj, warns = await ctx.write(kind, ctx.registry.update, kind, ns, name, body, subresource=sub,
                                       dry_run=_dry_run(q), field_validation=q.get("fieldValidation"))
            return json_response(obj, warnings=warns)
        if verb == "patch":
            ctype = _patch_type(request)
            raw = await request.read()
            obj, warns = await ctx.write(kind, ctx.registry.patch, kind, ns, name, raw, ctype, subresource=sub,
                                       dry_run=_dry_run(q), field_validation=q.get("fieldValidation"))
            return json_response(obj, warnings=warns)
    elif sub == "scale" and kind == REPLICATION_CONTROLLER:
        assert ns is not None
        if verb == "get":
            return json_response(await ctx.run(ctx.scales.get, ns, name))
        if verb == "update":
            body = await read_body(request)
            return json_response(await ctx.run(ctx.scales.update, ns, name, body, field_manager(request)))
        if verb == "patch":
            ctype = _patch_type(request)
            raw = await request.read()
            return json_response(await ctx.run(ctx.scales.patch, ns, name, raw, ctype, field_manager(request)))
    elif sub == "binding" and kind == POD and verb == "create":
        assert ns is not None
        body = await read_body(request)
        await ctx.run(ctx.registry.bind, ns, name, body)
        return json_response(success(code=201), status=201)
    elif sub == "eviction" and kind == POD and verb == "create":
        assert ns is not None
        body = await read_body(request)
        await ctx.run(ctx.registry.evict, ns, name, body, dry_run=_dry_run(q))
        return json_response(success(code=201), status=201)
    elif sub == "token" and kind == SERVICE_ACCOUNT and verb == "create" and ctx.sa_tokens is not None:
        assert ns is not None
        body = await read_body(request)
        lookup = lambda k, namespace, obj_name: ctx.objects.get(k, obj_name, namespace)  # read in the pool
        return json_response(await ctx.run(ctx.sa_tokens.request, lookup, ns, name, body), status=201)
    elif sub == "exec" and kind == POD and request.method in ("GET", "POST"):
        from orchestrator.apiserver.stream import pod_exec

        assert ns is not None
        return await pod_exec(request, ctx, ns, name)
    elif sub == "attach" and kind == POD and request.method in ("GET", "POST"):
        from orchestrator.apiserver.stream import pod_attach

        assert ns is not None
        return await pod_attach(request, ctx, ns, name)
    elif sub == "portforward" and kind == POD and request.method in ("GET", "POST"):
        from orchestrator.apiserver.stream import pod_portforward

        assert ns is not None
        return await pod_portforward(request, ctx, ns, name)
    elif sub == "log" and kind == POD and verb == "get":
        from orchestrator.apiserver.stream import pod_log

        assert ns is not None
        return await pod_log(request, ctx, ns, name)
    else:
        raise not_found_path()
    raise method_not_allowed(request.method, f"{kind.resource}/{sub}")
