"""Prometheus metrics of the service proxy, on a registry it is given (the agent's, so one
`/metrics` endpoint serves everything; none when run bare)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry, *, mode: str) -> None:
        self.syncs = Counter("netplane_proxy_syncs", "Proxy syncs applied to the kernel", ["mode", "kind", "result"],
                             registry=registry)
        self.sync_duration = Histogram(
            "netplane_proxy_sync_duration_seconds", "Time to apply one proxy sync to the kernel", ["mode", "kind"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.services = Gauge("netplane_proxy_services", "Services the proxy knows", ["mode"], registry=registry)
        self.entries = Gauge("netplane_proxy_service_ports", "Service ports programmed", ["mode"], registry=registry)
        self.mode = mode

    def observe(self, *, full: bool, seconds: float, ok: bool, services: int, entries: int) -> None:
        kind = "full" if full else "partial"
        self.syncs.labels(mode=self.mode, kind=kind, result="ok" if ok else "error").inc()
        if ok:
            self.sync_duration.labels(mode=self.mode, kind=kind).observe(seconds)
            self.services.labels(mode=self.mode).set(services)
            self.entries.labels(mode=self.mode).set(entries)
