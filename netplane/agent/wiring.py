"""Component factories for the agent: how each plane is built from an `AgentContext`.

This is the only place that knows both the agent's context and a component's constructor, so
components stay free of the agent, and the agent free of them. A factory is made from the
component's own flags (validated then, so a wrong flag fails before anything starts) and
called by the agent once the overlay holds its lease.

The node runtime plugs in the same way: a factory `ctx -> component` that takes what it needs
from `ctx.overlay.current()` (subnet, bridge and gateway, MTU, node IP), `ctx.store`,
`ctx.keys` and `ctx.node`, registers its metrics on `ctx.registry`, and follows a re-lease
through `ctx.overlay.on_subnet_change`; `netplane agent` puts it after the proxy, so a pod's
first connect already finds its services programmed. It hands its pods to the stats
component of the same agent as a stats discovery source (`pod_stats_source`), through a link
per context: neither component imports the other.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from netplane.agent.component import (
    AgentContext,
    Component,
    ComponentFactory,
    FollowsSubnet,
    HostOverlay,
)
from netplane.errors import ConfigError
from netplane.proxy.backend import Placement, ProxyBackend

if TYPE_CHECKING:
    from stats.collector import Collector as StatsCollector
    from stats.discovery import Discovery
    from stats.service import StatsService


def placement(view: HostOverlay, *, netns: str | None, cgroup: str | None) -> Placement:
    """Where the proxy programs the kernel: node IP and underlay interface (NodePort), the
    local pod subnet, and the VXLAN device with its `<subnet>.0` address (eBPF NodePort reaches
    other hosts' endpoints through it, SNATed to that address)."""
    return Placement(
        netns=netns,
        cgroup=cgroup,
        iface=view.underlay_iface,
        node_ip=view.node_ip,
        local_cidr=view.subnet,
        overlay_iface=view.device,
        overlay_ip=view.device_ip,
    )


def proxy(
    *, mode: str, cgroup: str | None, backend: Callable[[Placement], ProxyBackend] | None = None
) -> ComponentFactory:
    """The service proxy (`--proxy-mode`), built from the overlay's snapshot and built again
    when the subnet changes (its `Placement` names the subnet). `backend` replaces the data
    plane that `mode` picks (tests pass a recording one)."""
    if mode == "ebpf" and not cgroup:
        raise ConfigError("--proxy-mode ebpf needs --proxy-cgroup PATH (a cgroup v2 directory of this host's pods)")

    def make(ctx: AgentContext) -> Component:
        from netplane.proxy.runner import ProxyComponent

        metrics = _Current()  # each rebuilt proxy registers afresh; /metrics serves the current one
        ctx.registry.register(metrics)

        def build(view: HostOverlay) -> Component:
            registry = CollectorRegistry(auto_describe=True)
            where = placement(view, netns=ctx.netns_name, cgroup=cgroup)
            comp = ProxyComponent(ctx.store, ctx.keys, mode=mode, node=ctx.node, where=where, registry=registry,
                                  backend=backend(where) if backend is not None else None)
            metrics.registry = registry
            return comp

        return FollowsSubnet("proxy", ctx.overlay, build)

    return make


def stats(*, listen: str, sources: Sequence[str] = (), cgroups: Sequence[str] = ()) -> ComponentFactory:
    """The container stats collector and its HTTP server (`--stats-listen`); it does not depend
    on the overlay. It reports the root cgroup, the flags' sources and, when this agent also
    runs a node runtime, that runtime's pods (handed over through `_PodStats`, in either order
    of the two factories)."""
    from stats.service import StatsService

    StatsService(listen=listen, sources=sources, cgroups=cgroups)  # validates the flags now

    def make(ctx: AgentContext) -> Component:
        service = StatsService(listen=listen, sources=sources, cgroups=cgroups)  # this agent's own
        link = _pod_stats(ctx)
        link.take(service.add_source)
        link.service = service  # the node runtime's /stats/summary reads its collector
        return service

    return make


class _PodStats:
    """How a node runtime hands its pods to the stats collector of the same agent: a stats
    discovery source (`stats.discovery.Discovery`) the runtime's factory offers and the stats
    factory takes, whichever of the two is made first; and back, the collector, which the node
    API's `/stats/summary` reads when asked. One per `AgentContext`, so two agents
    in one process (tests) never see each other's pods."""

    def __init__(self) -> None:
        self.sources: list[Discovery] = []
        self.sinks: list[Callable[[Discovery], None]] = []
        self.service: StatsService | None = None  # the other way: the node API's summaries

    def collector(self) -> StatsCollector | None:
        """The stats collector of this agent while it runs (None without one)."""
        return self.service.collector if self.service is not None else None

    def offer(self, source: Discovery) -> None:
        self.sources.append(source)
        for sink in self.sinks:
            sink(source)

    def take(self, sink: Callable[[Discovery], None]) -> None:
        self.sinks.append(sink)
        for source in self.sources:
            sink(source)


_pod_links: dict[int, _PodStats] = {}
_pod_links_lock = threading.Lock()


def _pod_stats(ctx: AgentContext) -> _PodStats:
    with _pod_links_lock:
        link = _pod_links.get(id(ctx))
        if link is None:
            link = _pod_links[id(ctx)] = _PodStats()
            try:  # forgotten with the context (before its id can be reused)
                weakref.finalize(ctx, _pod_links.pop, id(ctx), None)
            except TypeError:  # not weak-referenceable (a test's stand-in): kept for the process
                pass
        return link


def pod_stats_source(runtime: object, owner: str) -> Discovery | None:
    """The stats discovery source for a node runtime's pods: for Docker, this node's containers
    (labelled `netplane.io/node=<owner>`: one dockerd may serve several nodes) with their
    io.kubernetes.* labels, plus their pods' cgroups; for plain namespaces, the runtime's own
    `stats_entries()` (pods' and containers' cgroups with the same labels). None for a
    runtime that offers neither."""
    from stats.discovery import CgroupSource, DockerSource

    entries = getattr(runtime, "stats_entries", None)
    if callable(entries):
        return CgroupSource(entries, source="pods")
    if getattr(runtime, "name", "") == "docker":
        from orchestrator.node.docker_runtime import MANAGED_LABEL, NODE_LABEL

        return DockerSource(filters={"label": [f"{NODE_LABEL}={owner}", f"{MANAGED_LABEL}=true"]})
    return None


class _Current(Collector):
    """Serves the metrics of whichever registry it points at now: a rebuilt component's metrics
    replace the old one's (counters start again from zero, which Prometheus reads as a reset)
    instead of colliding with them on the shared registry."""

    def __init__(self) -> None:
        self.registry: CollectorRegistry | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # names unknown until built: the shared registry checks no duplicates for us

    def collect(self) -> Iterable[Metric]:
        registry = self.registry
        return registry.collect() if registry is not None else []


RUNTIMES = ("none", "auto", "docker", "namespaces")


def docker_available() -> bool:
    """dockerd answers on its socket (the `auto` runtime's choice)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            client.ping()
            return True
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no usable dockerd"
        return False


def node_runtime(*, runtime: str, state_dir: str, runtime_id: str | None = None, cgroup: str | None = None,
                 heartbeat: float = 10.0, backoff: tuple[float, float, float] | None = None,
                 options: dict[str, object] | None = None) -> ComponentFactory:
    """The node runtime (our kubelet, `--runtime`): Docker or plain namespaces (`auto`: Docker
    when dockerd answers). `runtime_id` tells this node's containers from others' on a shared
    machine (the lab's hosts share one dockerd); default: the node name. `cgroup` is the host's
    cgroup v2 directory (the eBPF proxy's): pods' processes go below it."""
    if runtime not in RUNTIMES or runtime == "none":
        raise ConfigError(f"unknown runtime {runtime!r}: use auto, docker or namespaces")
    from pathlib import Path

    root = Path(state_dir)

    def make(ctx: AgentContext) -> Component:
        from orchestrator.node.kubelet import NodeOptions, NodeRuntime

        which = runtime
        if which == "auto":
            which = "docker" if docker_available() else "namespaces"
        owner = runtime_id or ctx.node
        rt: object
        if which == "docker":
            from orchestrator.node.docker_runtime import DockerRuntime

            rt = DockerRuntime(owner, v2_cgroup=cgroup, state_dir=root / "docker")
        else:
            from orchestrator.node.ns_runtime import NamespaceRuntime

            rt = NamespaceRuntime(owner, state_dir=root / "pods", v2_cgroup=Path(cgroup) if cgroup else None)
        from orchestrator.node.lifecycle import BackoffPolicy

        extra: dict[str, object] = dict(options or {})
        if backoff is not None:
            extra["backoff"] = BackoffPolicy(*backoff)
        extra.setdefault("stats", _pod_stats(ctx).collector)
        extra.setdefault("stats_cgroup", cgroup)
        opts = NodeOptions(state_dir=root, heartbeat_interval=heartbeat, **extra)  # type: ignore[arg-type]
        comp = NodeRuntime(ctx, rt, opts)
        source = pod_stats_source(rt, owner)
        if source is not None:  # the stats component of this agent, if any, reports our pods
            _pod_stats(ctx).offer(source)
        return comp

    return make
