"""The per-host agent: a composition root of equal components, and nothing else.

It builds the health server and the overlay (`netplane.agent.overlay`: lease + VXLAN), then
every other component from a factory it is given (`netplane.agent.wiring`: service proxy,
stats; the node runtime next), each taking an `AgentContext` (store, keys, node name, the
overlay's read-only `OverlayInfo`, the shared metrics registry) and never the agent. Order:

1. the health server, bound before anything else: a taken port ends the start at once, with
   its reason, instead of after the host looked ready (it answers 503 until the overlay is up);
2. the overlay, which waits for the network config, leases a subnet and sets the host up,
   retrying with back-off what can pass; its start-up failure (`ConfigError`) ends the agent;
3. once the overlay holds its lease and has programmed the kernel once, the factories'
   components, in the order given;
4. last, the subnet file: it tells local runtimes and the lab that the host is ready.

`/healthz` aggregates: the overlay's fields at the top (as before components existed) and a
`components` entry per other component. On SIGTERM everything stops in reverse order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from netplane.agent.component import AgentContext, Component, ComponentFactory, ReportsHealth
from netplane.agent.health import HealthServer
from netplane.agent.metrics import Metrics
from netplane.agent.overlay import OverlayComponent, OverlayOptions
from netplane.errors import ConfigError
from netplane.store import EtcdStore, Keys
from netplane.subnet.manager import DEFAULT_TTL
from netplane.vxlan.netlink import Netlink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentOptions:
    node: str
    subnet_file: Path
    iface: str | None = None
    public_ip: IPv4Address | None = None
    lease_ttl: int = DEFAULT_TTL
    release_on_exit: bool = False
    health_listen: tuple[str, int] | None = None
    tx_checksum_off: bool = False
    masquerade: bool = True
    netns_name: str | None = None  # run against another namespace (tests); None: our own
    resync_interval: float = 10.0
    config_poll_interval: float = 1.0

    def overlay(self) -> OverlayOptions:
        return OverlayOptions(
            node=self.node, subnet_file=self.subnet_file, iface=self.iface, public_ip=self.public_ip,
            lease_ttl=self.lease_ttl, release_on_exit=self.release_on_exit, tx_checksum_off=self.tx_checksum_off,
            masquerade=self.masquerade, netns_name=self.netns_name, resync_interval=self.resync_interval,
            config_poll_interval=self.config_poll_interval,
        )


class Agent:
    def __init__(
        self,
        store: EtcdStore,
        keys: Keys,
        options: AgentOptions,
        *,
        netlink: Netlink | None = None,
        components: Sequence[ComponentFactory] = (),
    ) -> None:
        self.opts = options
        self.nl = netlink or Netlink(netns_name=options.netns_name)
        self.registry = CollectorRegistry(auto_describe=True)  # one /metrics for every component
        self.overlay = OverlayComponent(store, keys, options.overlay(), netlink=self.nl, metrics=Metrics(self.registry))
        self.context = AgentContext(store=store, keys=keys, node=options.node, overlay=self.overlay,
                                    registry=self.registry, netns_name=options.netns_name)
        self.ready = threading.Event()  # every component started and the subnet file written
        self._factories = list(components)
        self._components: list[Component] = []  # started, in start order


    @property
    def components(self) -> list[Component]:
        """The started components, in start order (health server and overlay first)."""
        return list(self._components)

    # ------------------------------------------------------------------ lifecycle
    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set; then stop every component, newest first."""
        try:
            if not self._start(stop):
                return
            stop.wait()
        finally:
            self._shutdown()

    def _start(self, stop: threading.Event) -> bool:
        if self.opts.health_listen is not None:
            self._add(HealthServer(self.opts.health_listen, health=self.health, registry=self.registry,
                                   netns_name=self.opts.netns_name))
        self._add(self.overlay)
        if not self.overlay.wait_ready(stop):
            return False
        for make in self._factories:
            if stop.is_set():
                return False
            self._add(make(self.context))
        if stop.is_set():
            return False
        # last: the subnet file tells local runtimes (and the lab) the host is ready for pods
        self.overlay.announce_ready()
        self.ready.set()
        return True

    def _add(self, comp: Component) -> None:
        comp.start()
        self._components.append(comp)
        log.info("started component %s", comp.name)

    def _shutdown(self) -> None:
        while self._components:
            comp = self._components.pop()
            try:
                comp.stop()
            except Exception as e:  # noqa: BLE001 - the others are stopped regardless
                log.warning("stopping %s: %s", comp.name, e)

    # ------------------------------------------------------------------ health
    def health(self) -> tuple[bool, dict[str, Any]]:
        ok, detail = self.overlay.health()
        parts: dict[str, Any] = {}
        for comp in list(self._components):
            if comp is self.overlay or isinstance(comp, HealthServer):
                continue
            c_ok, c_detail = comp.health() if isinstance(comp, ReportsHealth) else (True, {})
            parts[comp.name] = {"ok": c_ok, **c_detail}
            ok = ok and c_ok
        return ok, {**detail, "components": parts}


def check_options(opts: AgentOptions) -> None:
    if opts.lease_ttl < 5:
        raise ConfigError(f"--lease-ttl {opts.lease_ttl}: must be at least 5 seconds")
