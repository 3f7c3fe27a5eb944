"""The overlay's Prometheus metrics, on the registry it is given (the agent's, which every
component shares so one `/metrics` endpoint serves them all), or a registry of its own: never
the global one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.leases_seen = Gauge(
            "netplane_subnet_leases_seen", "Well-formed subnet leases in the last etcd view", registry=self.registry
        )
        self.peers = Gauge("netplane_overlay_peers", "Remote hosts programmed into the overlay", registry=self.registry)
        self.reconcile_duration = Histogram(
            "netplane_overlay_reconcile_duration_seconds",
            "Time to reconcile the kernel's overlay state with etcd",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.reconciles = Counter(
            "netplane_overlay_reconciles", "Reconcile passes that changed the kernel", ["result"], registry=self.registry
        )
        self.errors = Counter("netplane_agent_errors", "Errors by kind", ["kind"], registry=self.registry)
        self.renewals = Counter("netplane_lease_renewals", "Successful lease keepalives", registry=self.registry)
        self.acquisitions = Counter("netplane_lease_acquisitions", "Leases acquired or re-acquired", registry=self.registry)
        self.lease_ttl = Gauge("netplane_lease_ttl_seconds", "TTL of our lease after the last renewal", registry=self.registry)
