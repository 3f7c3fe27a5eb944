"""`metrics.k8s.io/v1beta1`, what `kubectl top node` and `kubectl top pod` read.

Kubernetes serves this group from metrics-server, an aggregated API server that scrapes every
kubelet's resource usage (`/metrics/resource`, formerly `/stats/summary`) every 15 s and
answers from memory. Here the API server asks the node agents when a client asks: each node
API's `/stats/summary` (`stats.summary`, from the agent's stats collector, over the same
pinned TLS as `pods/log`), fetched from every node concerned at once, with a deadline. A node
that does not answer (down, no stats collector) is left out, as metrics-server leaves out a
node it failed to scrape: a GET of it, or of a pod on it, is 404.

* `GET /apis/metrics.k8s.io/v1beta1/nodes[/{name}]`: NodeMetrics, the node's CPU rate and
  memory working set (`labelSelector` on the Nodes' labels);
* `GET .../pods`, `.../namespaces/{ns}/pods[/{name}]`: PodMetrics, per container
  (`labelSelector` on the Pods' labels). A pod without a CPU rate yet (one sample so far) is
  left out, as metrics-server does. A GET of an object that does not exist is the core API's
  404 (`pods "x" not found`), of one without metrics metrics-server's
  (`podmetrics.metrics.k8s.io "default/x" not found`).

Quantities as metrics-server writes them: CPU in nanocores scaled to the largest exact unit
(`250m`, `1234567n`), memory in bytes in the largest exact binary unit (`12288Ki`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web

from orchestrator.apiserver.handlers import CONTEXT, Context, Target, authorize, json_response
from orchestrator.apiserver.status import APIError, bad_request
from orchestrator.objects import meta
from orchestrator.objects.meta import NODE, POD, Kind
from orchestrator.objects.selector import SelectorError, parse

log = logging.getLogger(__name__)

Obj = dict[str, Any]
GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
# what RBAC names them by (kube's aggregated metrics-server: get and list of nodes and pods in metrics.k8s.io)
NODE_METRICS = Kind("NodeMetrics", "nodes", False, (), GROUP_VERSION)
POD_METRICS = Kind("PodMetrics", "pods", True, (), GROUP_VERSION)
SCRAPE_TIMEOUT = 5.0  # seconds for the nodes' summaries (metrics-server's default scrape timeout: 10 s)
_BINARY = (("Ei", 1 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10))


def api_group() -> Obj:
    gv = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [gv], "preferredVersion": gv}


def resource_list() -> Obj:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]}]}


def cpu_quantity(nanocores: int) -> str:
    for suffix, scale in (("", 10**9), ("m", 10**6), ("u", 10**3)):
        if nanocores % scale == 0:
            return f"{nanocores // scale}{suffix}"
    return f"{nanocores}n"


def memory_quantity(n: int) -> str:
    if n == 0:
        return "0"
    for suffix, scale in _BINARY:
        if n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


def _usage(stats: Obj) -> Obj | None:
    """`{cpu, memory}` of one summary entry; None without a CPU rate or memory figure."""
    cpu, mem = stats.get("cpu") or {}, stats.get("memory") or {}
    if not isinstance(cpu.get("usageNanoCores"), int) or not isinstance(mem.get("workingSetBytes"), int):
        return None
    return {"cpu": cpu_quantity(cpu["usageNanoCores"]), "memory": memory_quantity(mem["workingSetBytes"])}


def _window(stats: Obj) -> str:
    w = (stats.get("cpu") or {}).get("windowSeconds")
    return f"{w:g}s" if isinstance(w, int | float) and w > 0 else "0s"


def node_metrics(node: Obj, summary: Obj) -> Obj | None:
    stats = summary.get("node") or {}
    usage = _usage(stats)
    if usage is None:
        return None
    md = meta.meta(node)
    return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": md.get("name"), "creationTimestamp": meta.from_epoch(time.time()),
                         "labels": dict(md.get("labels") or {})},
            "timestamp": (stats.get("cpu") or {}).get("time"), "window": _window(stats), "usage": usage}


def pod_metrics(pod: Obj, stats: Obj) -> Obj | None:
    containers = []
    for c in stats.get("containers") or []:
        usage = _usage(c)
        if usage is None:
            return None  # metrics-server: a pod with a container lacking usage is left out
        containers.append({"name": c.get("name"), "usage": usage})
    if not containers:
        return None
    md = meta.meta(pod)
    first = (stats.get("containers") or [{}])[0]
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": md.get("name"), "namespace": md.get("namespace"),
                         "creationTimestamp": meta.from_epoch(time.time()), "labels": dict(md.get("labels") or {})},
            "timestamp": (first.get("cpu") or {}).get("time"), "window": _window(first), "containers": containers}


def _list(kind: str, items: list[Obj]) -> Obj:
    return {"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


async def _summary(ctx: Context, session: aiohttp.ClientSession, node: Obj) -> Obj | None:
    from orchestrator.apiserver.stream import node_endpoint

    name = meta.name(node)
    try:
        if ctx.nodes is None:
            raise APIError(500, "this API server does not reach node agents")
        host, port = node_endpoint(node)
        tls = ctx.nodes.context(node)
        async with session.get(f"https://{host}:{port}/stats/summary", ssl=tls) as r:
            if r.status != 200:
                log.info("metrics: node %s answered %d: %s", name, r.status, (await r.text(errors="replace")).strip())
                return None
            body = await r.json(content_type=None)
            return body if isinstance(body, dict) else None
    except (TimeoutError, APIError, aiohttp.ClientError, ValueError, OSError) as e:
        log.info("metrics: no summary from node %s: %s", name, e)
        return None


async def _summaries(ctx: Context, nodes: list[Obj]) -> dict[str, Obj]:
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        got = await asyncio.gather(*(_summary(ctx, session, n) for n in nodes))
    return {meta.name(n): s for n, s in zip(nodes, got, strict=True) if s is not None}


def _selector(request: web.Request) -> Any:
    text = request.query.get("labelSelector")
    if not text:
        return None
    try:
        return parse(text)
    except SelectorError as e:
        raise bad_request(f"unable to parse requirement: {e}") from None


def _not_found(resource: str, name: str) -> APIError:
    """metrics-server's 404 for an object that exists but has no metrics (a missing object is
    the core API's own 404: `pods "x" not found`)."""
    return APIError(404, f'{resource}.{GROUP} "{name}" not found', reason="NotFound",
                    details={"name": name, "group": GROUP, "kind": resource})


async def nodes_metrics(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    name = request.match_info.get("name")
    authorize(ctx, "get" if name else "list", Target(NODE_METRICS, None, name, None, False))
    if name:
        found = [await ctx.get(NODE, None, name)]
    else:
        found, _ = await ctx.run(ctx.objects.list, NODE, selector=_selector(request))
    summaries = await _summaries(ctx, found)
    items = [m for n in found if meta.name(n) in summaries
             and (m := node_metrics(n, summaries[meta.name(n)])) is not None]
    if name:
        if not items:
            raise _not_found("nodemetrics", name)
        return json_response(items[0])
    return json_response(_list("NodeMetricsList", items))


async def pods_metrics(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    namespace = request.match_info.get("namespace")
    name = request.match_info.get("name")
    authorize(ctx, "get" if name else "list", Target(POD_METRICS, namespace, name, None, False))
    if name:
        assert namespace is not None
        pods = [await ctx.get(POD, namespace, name)]
    else:
        pods, _ = await ctx.run(ctx.objects.list, POD, namespace, selector=_selector(request))
    wanted = {str((p.get("spec") or {}).get("nodeName") or "") for p in pods} - {""}
    nodes, _ = await ctx.run(ctx.objects.list, NODE)
    summaries = await _summaries(ctx, [n for n in nodes if meta.name(n) in wanted])
    by_pod: dict[tuple[str, str, str], Obj] = {}
    for node_name, s in summaries.items():
        for entry in s.get("pods") or []:
            ref = entry.get("podRef") or {}
            by_pod[(node_name, str(ref.get("namespace")), str(ref.get("name")))] = entry
    items = []
    for p in pods:
        key = (str((p.get("spec") or {}).get("nodeName") or ""), meta.namespace(p), meta.name(p))
        entry = by_pod.get(key)
        uid = str(((entry or {}).get("podRef") or {}).get("uid") or "")
        if entry is None or (uid and meta.uid(p) and uid != meta.uid(p)):
            continue  # not measured, or an earlier pod of that name
        if (m := pod_metrics(p, entry)) is not None:
            items.append(m)
    if name:
        if not items:
            raise _not_found("podmetrics", f"{namespace}/{name}")
        return json_response(items[0])
    return json_response(_list("PodMetricsList", items))


def add_routes(app: web.Application) -> None:
    async def group(request: web.Request) -> web.Response:
        return json_response(resource_list())

    base = f"/apis/{GROUP_VERSION}"
    r = app.router
    for path, handler in (("", group), ("/", group), ("/nodes", nodes_metrics), ("/nodes/{name}", nodes_metrics),
                          ("/pods", pods_metrics), ("/namespaces/{namespace}/pods", pods_metrics),
                          ("/namespaces/{namespace}/pods/{name}", pods_metrics)):
        r.add_get(base + path, handler)
