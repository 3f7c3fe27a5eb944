"""What the agent's components are to each other: the contract, the overlay's read-only face,
and the context a component is built from.

The agent (`netplane.agent.agent`) is only a composition root: it builds the overlay, then every
other component from an `AgentContext`, starts them in that order and stops them in reverse. No
component imports the agent. A component that needs the overlay's state (the proxy needs the
subnet and the VXLAN device, the node runtime the bridge, gateway and MTU) reads it through
`OverlayInfo`, a read-only interface, never through the overlay's internals.

`OverlayInfo.current()` is one frozen `HostOverlay` snapshot, not separate attributes, so a
re-lease can never hand a reader the new subnet with the old gateway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry

from netplane.errors import NetplaneError
from netplane.store import EtcdStore, Keys

log = logging.getLogger(__name__)


class NotReadyError(NetplaneError):
    """The overlay was asked for its state before it held a lease."""


class Component(Protocol):
    """One plane of the agent. `start()` returns once the component runs (it may spawn
    threads); `stop()` ends it and leaves the kernel as a restarting agent needs it."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class ReportsHealth(Protocol):
    """Optional: a component with `health()` takes part in the agent's `/healthz`."""

    def health(self) -> tuple[bool, dict[str, Any]]: ...


@dataclass(frozen=True)
class HostOverlay:
    """This host's place on the overlay, once it holds a lease (one consistent snapshot)."""

    node_ip: IPv4Address  # our PublicIP on the underlay
    underlay_iface: str  # the interface carrying VXLAN traffic
    network: IPv4Network  # the cluster's pod network
    subnet: IPv4Network  # our leased subnet
    device: str  # the VXLAN device, np.<VNI>
    device_ip: IPv4Address  # its address, <subnet>.0
    mtu: int  # the VXLAN device's MTU: pods on the bridge use the same
    bridge: str  # the pod bridge, np0
    gateway: IPv4Interface  # the bridge's address, <subnet>.1/<len>: pods' default gateway


SubnetListener = Callable[[HostOverlay], None]


class OverlayInfo(Protocol):
    """The overlay as other components see it: read-only."""

    def wait_ready(self, stop: threading.Event) -> bool:
        """Block until the overlay holds a lease and has programmed the kernel once (True), or
        `stop` is set (False). A start-up failure of the overlay is raised here."""
        ...

    def current(self) -> HostOverlay:
        """The overlay now; `NotReadyError` before the first lease."""
        ...

    def on_subnet_change(self, listener: SubnetListener) -> Callable[[], None]:
        """Call `listener` with the new snapshot after the host moved to another subnet (a
        re-lease: our old one went to another host) and the host was set up for it. Called on
        the overlay's lease thread; an exception is logged, never raised into the overlay.
        Returns a function that removes the listener."""
        ...


@dataclass(frozen=True)
class AgentContext:
    """What every component factory is given: the shared store, this node, the overlay's
    read-only face and the one metrics registry that `/metrics` serves."""

    store: EtcdStore
    keys: Keys
    node: str
    overlay: OverlayInfo
    registry: CollectorRegistry
    netns_name: str | None = None  # the host's network namespace when not our own (tests, lab)


ComponentFactory = Callable[[AgentContext], Component]
"""Builds one component once the overlay is ready (so it may read `ctx.overlay.current()`)."""


class FollowsSubnet:
    """A component built from the overlay's snapshot, and built again (the old one stopped first)
    when the subnet changes: for components that take the subnet once, at construction, like
    the proxy (`Placement`). The first one is built here, so a factory fails at once on what its
    component refuses."""

    def __init__(self, name: str, overlay: OverlayInfo, build: Callable[[HostOverlay], Component]) -> None:
        self.name = name
        self._overlay = overlay
        self._build = build
        self._lock = threading.Lock()
        self._running = False
        self._built_for: HostOverlay | None = overlay.current()
        self._inner: Component | None = build(self._built_for)
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def inner(self) -> Component | None:
        """The component built for the current subnet (None after `stop`)."""
        return self._inner

    def start(self) -> None:
        with self._lock:
            if self._unsubscribe is None:  # before reading the snapshot: no change is missed
                self._unsubscribe = self._overlay.on_subnet_change(self._changed)
            view = self._overlay.current()
            if self._inner is None or view != self._built_for:  # restarted, or moved since built
                self._inner, self._built_for = self._build(view), view
            self._inner.start()
            self._running = True

    def stop(self) -> None:
        with self._lock:
            self._running = False
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            comp, self._inner = self._inner, None
            if comp is not None:
                comp.stop()

    def _changed(self, view: HostOverlay) -> None:
        with self._lock:
            if not self._running or view == self._built_for:
                return  # not running (start builds afresh), or already built for this snapshot
            old, self._inner = self._inner, None
            if old is not None:
                try:
                    old.stop()
                except Exception as e:  # noqa: BLE001 - the new one is started regardless
                    log.warning("stopping %s: %s", self.name, e)
            self._built_for = view
            comp = self._build(view)  # a failure is logged by the overlay; health shows it
            comp.start()
            self._inner = comp
            log.info("restarted component %s for the new subnet %s", self.name, view.subnet)

    def health(self) -> tuple[bool, dict[str, Any]]:
        inner = self._inner
        if isinstance(inner, ReportsHealth):
            return inner.health()
        return inner is not None, {}
