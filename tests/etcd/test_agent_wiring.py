"""The agent's component factories (`netplane.agent.wiring`) over a real etcd: the proxy is
built from the overlay's read-only face (`OverlayInfo`), never from the agent, is built again
when the subnet changes and keeps serving its metrics on the shared registry; wrong flags fail
when the factory is made. The overlay here is a stand-in holding one snapshot (the real one
needs root: tests/kernel/test_agent_inprocess.py), and the data plane a recording one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from netplane.agent import wiring
from netplane.agent.component import AgentContext, FollowsSubnet, HostOverlay
from netplane.errors import ConfigError
from netplane.proxy.backend import Placement
from netplane.proxy.desired import LbKey, ProxyState
from netplane.proxy.runner import ProxyComponent
from netplane.store import EtcdStore, Keys


def view(subnet: str) -> HostOverlay:
    net = IPv4Network(subnet)
    return HostOverlay(node_ip=IPv4Address("10.98.1.2"), underlay_iface="eth0", network=IPv4Network("10.244.0.0/16"),
                       subnet=net, device="np.1", device_ip=net.network_address, mtu=1450, bridge="np0",
                       gateway=IPv4Interface((net.network_address + 1, net.prefixlen)))


class StandInOverlay:
    """An `OverlayInfo` holding one snapshot; `move` is a re-lease."""

    def __init__(self, v: HostOverlay) -> None:
        self.view = v
        self.listeners: list[Callable[[HostOverlay], None]] = []

    def wait_ready(self, stop: threading.Event) -> bool:
        return True

    def current(self) -> HostOverlay:
        return self.view

    def on_subnet_change(self, listener: Callable[[HostOverlay], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def move(self, v: HostOverlay) -> None:
        self.view = v
        for listener in list(self.listeners):
            listener(v)


class Recorder:
    """A data plane that records syncs (a fake adapter), one per built proxy."""

    name = "recorder"

    def __init__(self, where: Placement) -> None:
        self.where = where
        self.syncs = 0
        self.closed = False

    def sync(self, state: ProxyState, *, full: bool, changed: set[LbKey] | None = None) -> None:
        self.syncs += 1

    def dump(self, service: str | None = None) -> str:
        return ""

    def close(self) -> None:
        self.closed = True

    def cleanup(self) -> None:
        pass


def context(store: EtcdStore, keys: Keys, overlay: StandInOverlay) -> AgentContext:
    return AgentContext(store=store, keys=keys, node="h1", overlay=overlay, registry=CollectorRegistry(auto_describe=True),
                        netns_name="np-x-h1")


def test_proxy_takes_underlay_and_subnet_from_the_overlay(store: EtcdStore, keys: Keys) -> None:
    """Node IP, interface, local subnet and the VXLAN device (name and address, for eBPF
    NodePort to other hosts' endpoints) come from the overlay's snapshot; built, not started."""
    comp = wiring.proxy(mode="iptables", cgroup=None)(context(store, keys, StandInOverlay(view("10.244.3.0/24"))))
    assert isinstance(comp, FollowsSubnet) and comp.name == "proxy"
    proxy = comp.inner
    assert isinstance(proxy, ProxyComponent)
    assert proxy.node == "h1" and proxy.backend.name == "iptables" and proxy.mode == "iptables"
    w = proxy.where
    assert (w.netns, w.cgroup, w.iface, str(w.node_ip), str(w.local_cidr)) == ("np-x-h1", None, "eth0", "10.98.1.2", "10.244.3.0/24")
    assert (w.overlay_iface, str(w.overlay_ip)) == ("np.1", "10.244.3.0")


def test_wrong_flags_fail_when_the_factory_is_made() -> None:
    with pytest.raises(ConfigError, match="needs --proxy-cgroup"):
        wiring.proxy(mode="ebpf", cgroup=None)
    with pytest.raises(ConfigError, match="expected ADDR:PORT"):
        wiring.stats(listen="nowhere")
    with pytest.raises(ConfigError, match="needs at least one cgroup"):
        wiring.stats(listen="127.0.0.1:0", sources=("cgroup",))
    comp = wiring.stats(listen="127.0.0.1:0", sources=("cgroup",), cgroups=("/netplane/x",))(None)  # type: ignore[arg-type]
    assert comp.name == "stats"


def test_unknown_proxy_mode_fails_when_built(store: EtcdStore, keys: Keys) -> None:
    with pytest.raises(ConfigError, match="unknown proxy mode"):
        wiring.proxy(mode="ipvs", cgroup=None)(context(store, keys, StandInOverlay(view("10.244.3.0/24"))))


def test_proxy_is_rebuilt_for_a_new_subnet_and_its_metrics_follow(store: EtcdStore, keys: Keys) -> None:
    overlay = StandInOverlay(view("10.244.3.0/24"))
    ctx = context(store, keys, overlay)
    backends: list[Recorder] = []

    def record(where: Placement) -> Recorder:
        backends.append(Recorder(where))
        return backends[-1]

    comp = wiring.proxy(mode="iptables", cgroup=None, backend=record)(ctx)
    assert isinstance(comp, FollowsSubnet)
    comp.start()
    try:
        first = comp.inner
        assert isinstance(first, ProxyComponent) and first.synced.wait(10)
        assert str(backends[0].where.local_cidr) == "10.244.3.0/24"
        assert ctx.registry.get_sample_value("netplane_proxy_syncs_total",
                                             {"mode": "recorder", "kind": "full", "result": "ok"}) == 1.0
        overlay.move(view("10.244.7.0/24"))  # re-lease: the old proxy stops, a new one starts
        second = comp.inner
        assert isinstance(second, ProxyComponent) and second is not first and second.synced.wait(10)
        assert backends[0].closed and not backends[1].closed
        assert (str(backends[1].where.local_cidr), str(backends[1].where.overlay_ip)) == ("10.244.7.0/24", "10.244.7.0")
        overlay.move(view("10.244.7.0/24"))  # the same snapshot again: nothing rebuilt
        assert comp.inner is second and len(backends) == 2
        # the shared registry serves the new proxy's metrics (no duplicate-timeseries error)
        text = generate_latest(ctx.registry).decode()
        assert text.count("# TYPE netplane_proxy_syncs_total counter") == 1
        assert ctx.registry.get_sample_value("netplane_proxy_syncs_total",
                                             {"mode": "recorder", "kind": "full", "result": "ok"}) == 1.0
    finally:
        comp.stop()
    assert backends[1].closed and overlay.listeners == []  # stopped, and no longer following
    overlay.move(view("10.244.9.0/24"))
    assert comp.inner is None and len(backends) == 2
