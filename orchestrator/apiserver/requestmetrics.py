"""The API server's own `/metrics`: kube-apiserver's request metrics, in Prometheus' text format.

What an operator's dashboards and alerts read from kube-apiserver, under its names and labels:

* `apiserver_request_total{verb, dry_run, group, version, resource, subresource, scope,
  component, code}`: requests answered, by their Kubernetes verb (`GET`, `LIST`, `WATCH`,
  `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`, `DELETECOLLECTION`, `CONNECT` for exec, attach and
  port-forward) and HTTP code;
* `apiserver_request_duration_seconds{verb, dry_run, group, version, resource, subresource,
  scope, component}`: a histogram with kube's buckets, from the request's arrival to the end
  of its answer (a watch's whole life, as kube-apiserver records it);
* `apiserver_current_inflight_requests{request_kind}`: `readOnly` and `mutating` requests
  being served now, long-running ones (watches, CONNECT) not counted, as in kube;
* `apiserver_longrunning_requests{verb, group, version, resource, subresource, scope,
  component}`: open watches and CONNECTs;
* `etcd_request_duration_seconds{operation, type}` and `etcd_request_errors_total{operation,
  type}`: the server's own etcd calls (`get`, `list`, `txn`, `put`, `delete`; `type` the
  resource whose key it is, `other` for the rest), timed around the gRPC call, as kube-apiserver
  times its storage calls (kube names the operations after its storage interface: get, list,
  create, update, delete; a txn here is a create, update or delete);
* the watch caches' (`watchcache.KindCache`, one per kind), read at each scrape:
  `apiserver_storage_objects{resource}` (objects stored, as each cache holds them; kube's
  STABLE metric, `pods`, `leases.coordination.k8s.io`), and, by `{group, resource}`,
  `apiserver_watch_cache_events_received_total` (etcd events),
  `apiserver_watch_cache_events_dispatched_total` (changes handed to the watchers, once
  each), `apiserver_watch_cache_initializations_total` (lists: the first, then each re-list),
  `apiserver_watch_cache_resource_version` (the newest etcd revision seen) and
  `apiserver_terminated_watchers_total` (watchers closed for not reading their events); and
  `apiserver_watch_events_total{group, version, kind}`, the events written to watch clients;
* the process' own `process_*` figures (CPU seconds, resident memory, open fds).

`scope` is kube's: `resource` for one named object, `namespace` for a collection in a
namespace, `cluster` for one across namespaces or of a cluster-scoped kind. Labels only take
values the server knows (resources it serves, their subresources), so a client cannot grow
the series by asking for paths that do not exist: those count with an empty resource, and a
path outside the resource APIs (`/version`, discovery) counts as a non-resource request (verb
the HTTP method, no group or resource), as kube does. A request whose client went away
before its answer counts with code 499. `/metrics` needs an authenticated user, like every
path but the health checks and `/version`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from orchestrator.apiserver import leases, metrics, policy, rbac, reviews
from orchestrator.apiserver.discovery import SUBRESOURCES
from orchestrator.objects.meta import CORE_KINDS

if TYPE_CHECKING:
    from orchestrator.apiserver.watchcache import WatchCaches

# kube-apiserver's buckets for apiserver_request_duration_seconds
BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
           10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
# kube-apiserver's for etcd_request_duration_seconds
ETCD_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
                10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
ETCD_OPERATIONS = frozenset({"get", "list", "txn", "put", "delete"})
_LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")
_LONG = ("verb", "group", "version", "resource", "subresource", "scope", "component")
# what the server serves, per group (from the modules that serve them): anything else is
# labelled with an empty resource
_RESOURCES: dict[str, frozenset[str]] = {
    "": frozenset(k.resource for k in CORE_KINDS),
    leases.GROUP: frozenset(r["name"] for r in leases.resource_list()["resources"]),
    rbac.GROUP: frozenset(rbac.RESOURCES),
    policy.GROUP: frozenset(policy.RESOURCES),
    metrics.GROUP: frozenset(r["name"] for r in metrics.resource_list()["resources"]),
    **{group: frozenset(names[0] for names in kinds) for group, kinds in reviews.RESOURCES.items()},
}
_CONNECT = frozenset({"exec", "attach", "portforward"})
# kube-apiserver's: the classic text format, which every Prometheus reads (the names here are
# all classic ones, so the text is the same as prometheus_client's newer 1.0.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_READ_ONLY = frozenset({"GET", "LIST", "WATCH"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestInfo(NamedTuple):
    verb: str
    group: str
    version: str
    resource: str
    subresource: str
    scope: str

    @property
    def long_running(self) -> bool:
        return self.verb in ("WATCH", "CONNECT")


def request_info(method: str, path: str, query: dict[str, str] | object, content_type: str) -> RequestInfo:
    """kube's RequestInfo, as far as metrics need it, of one request (never raises)."""
    if method not in _METHODS:
        method = "other"  # kube's cleanVerb: a made-up method is not a series of its own
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return RequestInfo(method, "", "", "", "", "")
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]  # else a Namespace itself, or its subresource
    if not rest:
        return RequestInfo(method, "", "", "", "", "")  # discovery: /api/v1, /apis/<group>/<version>
    if group not in _RESOURCES:
        group = ""
    resource = rest[0] if rest[0] in _RESOURCES[group] else ""
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 and rest[2] in SUBRESOURCES else ""
    get = getattr(query, "get", None)
    watch = watch_path or (get is not None and str(get("watch", "")).lower() in ("1", "true"))
    if sub in _CONNECT:
        verb = "CONNECT"
    elif method == "GET":
        verb = "WATCH" if watch else ("GET" if name else "LIST")
    elif method == "PATCH" and content_type == "application/apply-patch+yaml":
        verb = "APPLY"
    elif method == "DELETE" and not name:
        verb = "DELETECOLLECTION"
    else:
        verb = method
    scope = "resource" if name else ("namespace" if namespace else "cluster")
    return RequestInfo(verb, group, version if resource else "", resource, sub, scope)


class RequestMetrics:
    """One API server's metrics (their own registry: a process may run several servers)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.total = Counter("apiserver_request_total", "Counter of apiserver requests broken out for each verb, "
                             "dry run value, group, version, resource, scope, component, and HTTP response code.",
                             (*_LABELS, "code"), registry=r)
        self.duration = Histogram("apiserver_request_duration_seconds", "Response latency distribution in seconds "
                                  "for each verb, dry run value, group, version, resource, subresource, scope and "
                                  "component.", _LABELS, buckets=BUCKETS, registry=r)
        self.inflight = Gauge("apiserver_current_inflight_requests", "Maximal number of currently used inflight "
                              "request limit of this apiserver per request kind in last second.",
                              ("request_kind",), registry=r)
        self.longrunning = Gauge("apiserver_longrunning_requests", "Gauge of all active long-running apiserver "
                                 "requests broken out by verb, group, version, resource, scope and component.",
                                 _LONG, registry=r)
        self.etcd_duration = Histogram("etcd_request_duration_seconds", "Etcd request latency in seconds for each "
                                       "operation and object type.", ("operation", "type"), buckets=ETCD_BUCKETS,
                                       registry=r)
        self.etcd_errors = Counter("etcd_request_errors_total", "Etcd failed request counts for each operation and "
                                   "object type.", ("operation", "type"), registry=r)
        for kind in ("readOnly", "mutating"):
            self.inflight.labels(kind)
        ProcessCollector(registry=r)
        self._caches: _WatchCacheCollector | None = None
        # each metric's labelled children by label values: `labels()` checks and converts
        # its arguments and takes the metric's lock on every call (~2 µs each, three to four
        # a request); the children are the metric's own, kept for the process's life anyway
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*values)
        return c

    def watch_caches(self, caches: WatchCaches) -> None:
        """Report `caches` at each scrape (those of the server's latest start)."""
        if self._caches is None:
            self._caches = _WatchCacheCollector(caches)
            self.registry.register(self._caches)
        self._caches.caches = caches

    def observe_etcd(self, what: str, seconds: float, failed: bool) -> None:
        """An `netplane.store.etcd` observer: one call, as "<operation> <key>[, <key>...]"."""
        operation, _, rest = what.partition(" ")
        if operation not in ETCD_OPERATIONS:
            operation = "other"
        kind = "other"
        _, found, tail = rest.partition("/registry/")
        if found:
            resource = tail.split("/", 1)[0]
            if resource in _RESOURCES[""]:
                kind = resource
        self._child(self.etcd_duration, operation, kind).observe(seconds)
        if failed:
            self._child(self.etcd_errors, operation, kind).inc()

    def middleware(self) -> Middleware:
        @web.middleware
        async def measure(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
            started = time.perf_counter()
            info = request_info(request.method, request.path, request.query, request.content_type)
            dry_run = "All" if request.query.get("dryRun") else ""
            gauge = (self._child(self.longrunning, info.verb, info.group, info.version, info.resource,
                                 info.subresource, info.scope, "apiserver") if info.long_running else
                     self._child(self.inflight, "readOnly" if info.verb in _READ_ONLY else "mutating"))
            gauge.inc()
            code = 500  # an exception no middleware answered
            try:
                resp = await handler(request)
                code = resp.status
                return resp
            except web.HTTPException as e:
                code = e.status
                raise
            except asyncio.CancelledError:
                code = 499  # the client went away first (nginx's "client closed request"; kube has none)
                raise
            finally:
                gauge.dec()
                labels = (info.verb, dry_run, info.group, info.version, info.resource, info.subresource,
                          info.scope, "apiserver")
                self._child(self.total, *labels, str(code)).inc()
                self._child(self.duration, *labels).observe(time.perf_counter() - started)

        return measure

    async def serve(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE})


class _WatchCacheCollector(Collector):
    """kube-apiserver's watch cache metrics, read off the caches when scraped (counters the
    caches keep as plain integers: no lock or metric call on the event path)."""

    def __init__(self, caches: WatchCaches) -> None:
        self.caches = caches

    def describe(self) -> list[Metric]:
        return []  # names are not checked against the registry's others: none collide

    def collect(self) -> list[Metric]:
        gr = ("group", "resource")
        stored = GaugeMetricFamily("apiserver_storage_objects", "Number of stored objects at the time of last "
                                   "check split by kind.", labels=("resource",))
        received = CounterMetricFamily("apiserver_watch_cache_events_received", "Counter of events received in "
                                       "watch cache broken by resource type.", labels=gr)
        dispatched = CounterMetricFamily("apiserver_watch_cache_events_dispatched", "Counter of events dispatched "
                                         "in watch cache broken by resource type.", labels=gr)
        inits = CounterMetricFamily("apiserver_watch_cache_initializations", "Counter of watch cache "
                                    "initializations broken by resource type.", labels=gr)
        version = GaugeMetricFamily("apiserver_watch_cache_resource_version", "Current resource version of watch "
                                    "cache broken by resource type.", labels=gr)
        terminated = CounterMetricFamily("apiserver_terminated_watchers", "Counter of watchers closed due to "
                                         "unresponsiveness broken by resource type.", labels=gr)
        sent = CounterMetricFamily("apiserver_watch_events", "Number of events sent in watch clients",
                                   labels=("group", "version", "kind"))
        for c in sorted(self.caches.caches(), key=lambda c: c.kind.qualified):
            k = c.kind
            stored.add_metric([k.qualified], c.objects_count)
            received.add_metric([k.group, k.resource], c.events_received)
            dispatched.add_metric([k.group, k.resource], c.events_dispatched)
            inits.add_metric([k.group, k.resource], c.initializations)
            version.add_metric([k.group, k.resource], c.revision % 10**15)
            terminated.add_metric([k.group, k.resource], c.terminated_watchers)
            sent.add_metric([k.group, k.version, k.kind], c.events_sent)
        return [stored, received, dispatched, inits, version, terminated, sent]
