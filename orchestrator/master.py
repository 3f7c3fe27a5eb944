"""The master process (`netplane master`): leader election, and while leading, every controller.

Several masters may run against one etcd; one leads (`orchestrator.leader.Elector`, lease TTL
15 s by default) and the others wait. A term starts from nothing: the leader lists every kind
into fresh informers, waits until they are synced, then runs the scheduler, the replication
manager, the endpoints, namespace, serviceaccounts, root CA and node lifecycle controllers, all writing with the
term's fence (`Fence.guards()`), so a deposed leader's writes are refused by etcd. The term
ends when leadership is lost (a refused write, a failed renewal) or the process is asked to
stop; every loop is stopped and joined, and the lease is revoked so the next master takes over
at once. A follower holds no caches and writes nothing.

Cluster DNS (`orchestrator.dns`): a master given a DNS listen address serves DNS whether it
leads or not (reads only), and registers that address in etcd on its own lease once its DNS
has listed the Services; the leader also runs the kube-dns controller, which keeps the Service
`kube-system/kube-dns` on the DNS service IP with one endpoint per registered master.

The Kubernetes API server (`orchestrator.apiserver`): a master given an API listen address
serves the API whether it leads or not (it needs only etcd), from before it campaigns until it
stops. It registers its address (the advertise address, else the listen address when that is
a specific IPv4 one) beside its DNS's (`orchestrator.masterservice`), and the leader keeps the
Service `default/kubernetes` (10.96.0.1:443) on the registered API servers: the in-cluster way
to the API.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netplane.proxy.registry import migrate_legacy
from netplane.store import EtcdStore, Keys
from orchestrator import dns as dnsmod
from orchestrator import leader
from orchestrator import masterservice as msvc
from orchestrator import node_lifecycle as nl
from orchestrator.controllers import informers as infmod
from orchestrator.controllers.base import Writer
from orchestrator.controllers.clusterrole_aggregation import ClusterRoleAggregationController
from orchestrator.controllers.disruption import DisruptionController
from orchestrator.controllers.endpoints_controller import EndpointsController
from orchestrator.controllers.events import Recorder
from orchestrator.controllers.informers import Informers
from orchestrator.controllers.namespace_controller import NamespaceController
from orchestrator.controllers.node_lifecycle_controller import (
    MONITOR_PERIOD,
    NodeLifecycleController,
)
from orchestrator.controllers.replication_manager import ReplicationManager
from orchestrator.controllers.rootca_publisher import RootCAPublisher
from orchestrator.controllers.scheduler import Scheduler
from orchestrator.controllers.serviceaccounts_controller import ServiceAccountsController
from orchestrator.leader import Elector, Fence
from orchestrator.objects import event as ev
from orchestrator.storage import ObjectStore

if TYPE_CHECKING:
    from orchestrator.apiserver.server import APIServer, APIServerConfig

log = logging.getLogger(__name__)

SYNC_TIMEOUT = 120.0


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def leader_key(keys: Keys) -> str:
    return f"{keys.prefix}/master/leader"


@dataclass(frozen=True)
class MasterConfig:
    identity: str
    leader_ttl: int = leader.DEFAULT_TTL
    node_grace_period: float = nl.GRACE_PERIOD
    pod_eviction_timeout: float = nl.EVICTION_TIMEOUT
    node_startup_grace_period: float = nl.STARTUP_GRACE_PERIOD
    node_monitor_period: float = MONITOR_PERIOD
    resync_period: float = infmod.DEFAULT_RESYNC
    event_ttl: int = ev.DEFAULT_TTL_SECONDS
    dns_listen: tuple[str, int] | None = None  # serve cluster DNS here (port 0: any free port)
    dns_advertise: str | None = None  # the address registered for the endpoints (default: listen's)
    dns_service_ip: str | None = dnsmod.DEFAULT_SERVICE_IP  # kube-dns' cluster IP; None: no kube-dns
    cluster_domain: str = dnsmod.DEFAULT_DOMAIN
    apiserver: APIServerConfig | None = None  # serve the Kubernetes API (None: no API server)
    kubernetes_service: bool = True  # the leader keeps default/kubernetes on the registered API servers


class Master:
    def __init__(self, store: EtcdStore, keys: Keys, config: MasterConfig, *,
                 on_term: Callable[[Fence], None] | None = None) -> None:
        self.store = store
        self.keys = keys
        self.config = config
        self.elector = Elector(store, leader_key(keys), config.identity, ttl=config.leader_ttl)
        self._on_term = on_term
        self.terms = 0
        self.dns: dnsmod.ClusterDNS | None = None
        self.api: APIServer | None = None

    def start_apiserver(self) -> tuple[str, int] | None:
        """Bind and serve the API when configured (OSError when its address is taken,
        ConfigError for bad TLS material); the address it listens on. `run` calls it when the
        caller did not."""
        if self.config.apiserver is not None and self.api is None:
            from orchestrator.apiserver.server import APIServer

            api = APIServer(self.store, self.keys, self.config.apiserver)
            api.start()
            self.api = api
        return self.api.address if self.api is not None else None

    def start_dns(self) -> tuple[str, int] | None:
        """Bind the DNS server when configured (OSError when its address is taken); the
        address it listens on. `run` calls it when the caller did not."""
        cfg = self.config
        if cfg.dns_listen is not None and self.dns is None:
            dns = dnsmod.ClusterDNS(ObjectStore(self.store, self.keys), cfg.dns_listen, domain=cfg.cluster_domain)
            dns.start()
            self.dns = dns
        return self.dns.address if self.dns is not None else None

    def registration(self, dns_addr: tuple[str, int] | None) -> dict[str, str]:
        """What this master registers for the services that front the masters: `dns` (for
        kube-dns) and `api` (for default/kubernetes, `masterservice.api_address`), each
        `ip:port`, as pods reach them."""
        cfg = self.config
        value: dict[str, str] = {}
        if self.dns is not None and dns_addr is not None:
            value["dns"] = f"{cfg.dns_advertise or dns_addr[0]}:{dns_addr[1]}"
        bound = self.api.address if self.api is not None else None
        if bound is not None and cfg.apiserver is not None:
            api = msvc.api_address(cfg.apiserver.advertise, bound)
            if api:
                value["api"] = api
        return value

    def run(self, stop: threading.Event) -> None:
        """Serve DNS (when configured), campaign and lead until `stop` is set (blocking)."""
        addr = self.start_dns()
        try:
            self.start_apiserver()
        except BaseException:
            if self.dns is not None:
                self.dns.stop()
                self.dns = None
            raise
        reg: threading.Thread | None = None
        value = self.registration(addr)
        if value:
            dns = self.dns
            registration = msvc.Registration(self.store, self.keys, self.config.identity, value,
                                             ttl=self.config.leader_ttl,
                                             ready=dns.wait_synced if dns is not None else lambda _t: True)
            reg = threading.Thread(target=registration.run, args=(stop,), name="registration", daemon=True)
            reg.start()
        try:
            self.elector.run(stop, self._lead)
        finally:
            if reg is not None:
                reg.join(timeout=10)  # revokes our registration: the leader drops our endpoint
            if self.dns is not None:
                self.dns.stop()
                self.dns = None
            if self.api is not None:
                self.api.stop()
                self.api = None

    def _lead(self, fence: Fence, lost: threading.Event) -> None:
        self.terms += 1
        cfg = self.config
        writer = Writer(guards=tuple(fence.guards()), on_fenced=lost.set)
        objects = ObjectStore(self.store, self.keys)
        # a cluster made before the orchestrator: its flat services join the registry first, so
        # the endpoints controller and the informers see them (idempotent, safe to race proxies)
        migrate_legacy(self.store, self.keys)
        infs = Informers(objects, resync=cfg.resync_period)

        def recorder(component: str) -> Recorder:
            return Recorder(objects, component, writer=writer, host=cfg.identity, ttl=cfg.event_ttl)

        rec_sched, rec_rc, rec_node = recorder("default-scheduler"), recorder("replication-controller"), \
            recorder("node-controller")
        loops: list[tuple[str, Callable[[threading.Event], None]]] = [
            ("scheduler", Scheduler(objects, infs, writer=writer, recorder=rec_sched).run),
            ("replication-manager", ReplicationManager(objects, infs, writer=writer, recorder=rec_rc).run),
            ("endpoints-controller", EndpointsController(objects, infs, writer=writer).run),
            ("namespace-controller", NamespaceController(objects, writer=writer).run),
            ("serviceaccounts-controller", ServiceAccountsController(objects, writer=writer,
                                                                     resync=cfg.resync_period).run),
            ("disruption", DisruptionController(objects, infs, writer=writer, resync=cfg.resync_period).run),
            ("clusterrole-aggregation", ClusterRoleAggregationController(objects, writer=writer,
                                                                         resync=cfg.resync_period).run),
            ("root-ca-cert-publisher", RootCAPublisher(objects, writer=writer, resync=cfg.resync_period).run),
            ("node-lifecycle", NodeLifecycleController(
                objects, infs, writer=writer, recorder=rec_node, grace_period=cfg.node_grace_period,
                eviction_timeout=cfg.pod_eviction_timeout, startup_grace_period=cfg.node_startup_grace_period,
                monitor_period=cfg.node_monitor_period).run),
            *[(f"events-{r.component}", r.run) for r in (rec_sched, rec_rc, rec_node)],
        ]
        if cfg.kubernetes_service:
            loops.append(("kubernetes-service-controller", msvc.KubernetesServiceController(
                objects, infs, writer=writer).run))
        if cfg.dns_service_ip is not None:
            loops.append(("kube-dns-controller", dnsmod.KubeDNSController(
                objects, infs, writer=writer, service_ip=cfg.dns_service_ip).run))
        infs.start(lost)
        if not infs.wait_synced(SYNC_TIMEOUT, lost):
            log.warning("informers not synced within %.0fs; ending the term", SYNC_TIMEOUT)
            return
        log.info("%s: caches synced, controllers starting", cfg.identity)
        if self._on_term is not None:
            self._on_term(fence)
        threads = [threading.Thread(target=fn, args=(lost,), name=name, daemon=True) for name, fn in loops]
        for t in threads:
            t.start()
        lost.wait()
        for t in threads:
            t.join(timeout=15)
        infs.join(5)
        log.info("%s: controllers stopped", cfg.identity)
