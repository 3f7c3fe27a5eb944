"""The overlay component: this host's subnet lease and its VXLAN overlay, kept equal to etcd.

Flow (DESIGN §1): wait for the network config in etcd, pick the underlay, create the VXLAN
device (its MAC is our VtepMAC), acquire a subnet lease, set up bridge, forwarding and iptables
(both retried with back-off: etcd may be away, no subnet free yet, an iptables or netlink call
may fail once), then follow every lease with list+watch and reconcile the kernel after each
change (and every `resync` seconds, to repair drift). A lease thread keeps the etcd lease alive
with keepalives only and re-acquires when it is lost. etcd being away does not touch the
kernel: pods keep talking; when etcd returns the watch re-lists and the overlay resyncs.

`start()` returns at once and the start-up runs on a thread, so the agent can be stopped while
it waits; `wait_ready()` blocks until the lease is held and the kernel programmed once, and
raises what ended the start-up (a `ConfigError`: a wrong `--iface`). The subnet file, which
tells local runtimes and the lab that the host is ready, is written by `announce_ready()`: the
agent calls it once every other component has started. Others read the overlay through
`OverlayInfo` (`netplane.agent.component`) and hear of a subnet change from
`on_subnet_change`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from netplane.agent import underlay as underlay_mod
from netplane.agent.component import HostOverlay, NotReadyError, SubnetListener
from netplane.agent.metrics import Metrics
from netplane.agent.retry import retrying
from netplane.errors import DecodeError, NetplaneError, StoreError
from netplane.store import EtcdStore, Keys
from netplane.store.watch import reflect
from netplane.subnet import subnetfile
from netplane.subnet.config import NetworkConfig, decode_config
from netplane.subnet.lease import Lease, LeaseAttrs, decoder
from netplane.subnet.manager import DEFAULT_TTL, LeaseManager
from netplane.vxlan import hostsetup
from netplane.vxlan.desired import BRIDGE, DesiredOverlay, Underlay, desired, device_spec, gateway
from netplane.vxlan.netlink import Netlink
from netplane.vxlan.reconcile import Reconciler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OverlayOptions:
    node: str
    subnet_file: Path
    iface: str | None = None
    public_ip: IPv4Address | None = None
    lease_ttl: int = DEFAULT_TTL
    release_on_exit: bool = False
    tx_checksum_off: bool = False
    masquerade: bool = True
    netns_name: str | None = None  # run against another namespace (tests); None: our own
    resync_interval: float = 10.0
    config_poll_interval: float = 1.0


@dataclass
class OverlayState:
    config: NetworkConfig | None = None
    underlay: Underlay | None = None
    lease: Lease | None = None
    leases: Mapping[str, Lease] = field(default_factory=dict)
    desired: DesiredOverlay | None = None
    synced: bool = False
    last_reconcile_ok: bool = False
    last_reconcile_at: float = 0.0
    etcd_ok: bool = True


class OverlayComponent:
    """Lease + VXLAN overlay as an agent component; implements `OverlayInfo`."""

    name = "overlay"

    def __init__(
        self,
        store: EtcdStore,
        keys: Keys,
        options: OverlayOptions,
        *,
        netlink: Netlink | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.opts = options
        self.nl = netlink or Netlink(netns_name=options.netns_name)
        self.reconciler = Reconciler(self.nl)
        self.leases = LeaseManager(store, keys, ttl=options.lease_ttl)
        self.metrics = metrics or Metrics()
        self.state = OverlayState()
        self.ready = threading.Event()  # lease held and overlay reconciled once
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._failure: Exception | None = None  # what ended the start-up thread
        self._announced = False  # the subnet file was written once every component had started
        self._config_warned: NetworkConfig | None = None
        self._applied: DesiredOverlay | None = None  # what the last successful pass programmed
        self._wake = threading.Event()  # lease lost, or shutting down
        self._lost = False
        self._listeners: list[SubnetListener] = []
        self._listeners_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopped = False

    # ------------------------------------------------------------------ Component
    def start(self) -> None:
        self._spawn("start", self._startup, startup=True)

    def stop(self) -> None:
        """End the loops, then give the lease back if asked (by default it is kept, with the
        kernel state, for the next start)."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=10)
        lease = self.state.lease
        if lease is not None and self.opts.release_on_exit:
            try:
                self.leases.release(lease)
            except StoreError as e:
                log.warning("could not release %s: %s", lease.subnet, e)
        elif lease is not None:
            log.info("keeping lease %s for the next start (pass --release-on-exit to give it back)", lease.subnet)

    # ------------------------------------------------------------------ OverlayInfo
    def wait_ready(self, stop: threading.Event) -> bool:
        while not self.ready.wait(0.2):
            if self._failure is not None:
                raise self._failure
            if stop.is_set() or self._stop.is_set():
                return False
        return True

    def current(self) -> HostOverlay:
        with self._lock:
            cfg, ul, lease = self.state.config, self.state.underlay, self.state.lease
        if cfg is None or ul is None or lease is None:
            raise NotReadyError(f"the overlay of {self.opts.node} holds no lease yet")
        return _snapshot(cfg, ul, lease.subnet)

    def on_subnet_change(self, listener: SubnetListener) -> Callable[[], None]:
        with self._listeners_lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def _notify_subnet_change(self) -> None:
        view = self.current()
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:  # outside our locks: a listener may read us or unsubscribe
            try:
                listener(view)
            except Exception:
                self.metrics.errors.labels(kind="subnet_listener").inc()
                log.exception("a component failed to follow the subnet change to %s", view.subnet)

    # ------------------------------------------------------------------ readiness
    def announce_ready(self) -> None:
        """Write the subnet file: it tells local runtimes (and the lab) the host is ready for
        pods. From now on a re-lease rewrites it at once."""
        with self._lock:
            lease = self.state.lease
            if lease is None:
                raise NotReadyError(f"the overlay of {self.opts.node} holds no lease yet")
            self._announced = True
            self._write_subnet_file(lease)

    def health(self) -> tuple[bool, dict[str, Any]]:
        s = self.state
        ok = s.lease is not None and s.last_reconcile_ok
        return ok, {
            "node": self.opts.node,
            "subnet": str(s.lease.subnet) if s.lease else None,
            "public_ip": str(s.underlay.public_ip) if s.underlay else None,
            "leases_seen": len(s.leases),
            "peers": len(s.desired.peers) if s.desired else 0,
            "etcd_ok": s.etcd_ok,
            "last_reconcile_ok": s.last_reconcile_ok,
            "last_reconcile_at": s.last_reconcile_at,
        }

    # ------------------------------------------------------------------ threads
    def _spawn(self, what: str, fn: Callable[[], None], *, startup: bool = False) -> None:
        t = threading.Thread(target=self._guard(what, fn, startup=startup), name=f"agent-{what}", daemon=True)
        self._threads.append(t)
        t.start()

    def _guard(self, what: str, fn: Callable[[], None], *, startup: bool) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception as e:
                if startup:  # `wait_ready` raises it to the agent, which logs it and exits
                    self._failure = e
                    return
                log.exception("agent %s loop failed", what)
                self.metrics.errors.labels(kind=f"{what}_crash").inc()

        return run

    # ------------------------------------------------------------------ start-up steps
    def _startup(self) -> None:
        stop = self._stop
        config = self._wait_config(stop)
        if config is None:
            return
        links = self.nl.links()
        choice = underlay_mod.choose(
            links, iface=self.opts.iface, public_ip=self.opts.public_ip, default_route_ifindex=self.nl.default_route_oif()
        )
        if len(choice.candidates) > 1:
            log.info("underlay %s (%s) chosen because %s; candidates: %s", choice.underlay.ifname,
                     choice.underlay.address, choice.reason, ", ".join(choice.candidates))
        else:
            log.info("underlay %s (%s): %s", choice.underlay.ifname, choice.underlay.address, choice.reason)
        config.check_underlay([l.addresses[0].network for l in links if l.addresses and l.name != "lo" and not l.name.startswith("np")])
        with self._lock:
            self.state.config, self.state.underlay = config, choice.underlay
        lease = self._acquire(stop)
        if lease is None:
            return
        if not self._retrying("setting the host up", stop, lambda: self._setup_host(lease)):
            return
        self._spawn("lease", lambda: self._lease_loop(stop))
        self._spawn("watch", lambda: self._watch_loop(stop))

    def _retrying(self, what: str, stop: threading.Event, step: Callable[[], None]) -> bool:
        return retrying(what, stop, step, counted=lambda kind: self.metrics.errors.labels(kind=kind).inc(), logger=log)

    def _wait_config(self, stop: threading.Event) -> NetworkConfig | None:
        said = ""
        while not stop.is_set():
            try:
                kv = self.store.get(self.keys.network_config)
                if kv is not None:
                    return decode_config(kv.value)
                msg = f"waiting for the network config at {self.keys.network_config} (set it with `netplane net config set`)"
            except DecodeError as e:
                msg = f"network config at {self.keys.network_config} is invalid, waiting for a valid one: {e}"
            except StoreError as e:
                msg = f"waiting for etcd: {e}"
            if msg != said:
                log.warning("%s", msg)
                said = msg
            stop.wait(self.opts.config_poll_interval)
        return None

    def _attrs(self) -> LeaseAttrs:
        cfg, ul = self.state.config, self.state.underlay
        assert cfg is not None and ul is not None
        dev = self.reconciler.ensure_device(device_spec(cfg, ul, _placeholder(cfg)), with_address=False)
        assert dev.mac is not None
        return LeaseAttrs(public_ip=ul.public_ip, vtep_mac=dev.mac, vni=cfg.backend.vni, node=self.opts.node)

    def _acquire(self, stop: threading.Event) -> Lease | None:
        """A lease, retried until we have one or are stopped: etcd being away, a lost race, no
        free subnet yet and a failure creating the VXLAN device (whose MAC the lease carries)
        can all pass."""
        cfg = self.state.config
        assert cfg is not None
        got: list[Lease] = []

        def attempt() -> None:
            remembered = subnetfile.read(self.opts.subnet_file)
            hint = remembered.subnet if remembered and remembered.network == cfg.network else None
            lease = self.leases.acquire(cfg, self._attrs(), remembered=hint)
            self.metrics.acquisitions.inc()
            with self._lock:
                self.state.lease = lease
            got.append(lease)

        return got[0] if self._retrying("acquiring a lease", stop, attempt) else None

    def _setup_host(self, lease: Lease) -> None:
        cfg, ul = self.state.config, self.state.underlay
        assert cfg is not None and ul is not None
        ns = self.opts.netns_name
        spec = device_spec(cfg, ul, lease.subnet)
        self.reconciler.ensure_device(spec)
        if self.opts.tx_checksum_off:
            hostsetup.set_tx_checksum(spec.name, False, ns)
        d = desired(cfg, ul, lease, [])
        self.reconciler.ensure_bridge(d.bridge)
        hostsetup.enable_forwarding(ns)
        hostsetup.apply_rules(cfg.network, masquerade=self.opts.masquerade, netns_name=ns)
        log.info("host %s has subnet %s (gateway %s on %s, %s on %s)", self.opts.node, lease.subnet, d.bridge.address,
                 d.bridge.name, spec.address, spec.name)

    def _write_subnet_file(self, lease: Lease) -> None:
        cfg, ul = self.state.config, self.state.underlay
        assert cfg is not None and ul is not None
        subnetfile.write(
            self.opts.subnet_file,
            subnetfile.SubnetFile(network=cfg.network, subnet=lease.subnet, mtu=device_spec(cfg, ul, lease.subnet).mtu,
                                  ipmasq=self.opts.masquerade),
        )
        log.info("wrote subnet file %s: host %s is ready for pods on %s", self.opts.subnet_file, self.opts.node, lease.subnet)

    # ------------------------------------------------------------------ loops
    def _lease_loop(self, stop: threading.Event) -> None:
        renew_every = max(1.0, min(self.opts.lease_ttl / 3.0, 600.0))
        next_renew = time.monotonic() + renew_every
        while not stop.is_set():
            timeout = max(0.0, min(next_renew - time.monotonic(), self.opts.resync_interval))
            self._wake.wait(timeout)
            if stop.is_set():
                return
            self._wake.clear()
            lost, self._lost = self._lost, False
            lease = self.state.lease
            assert lease is not None
            try:
                if lost and not self.leases.still_ours(lease):
                    self._reacquire(stop, "our lease key was deleted or changed in etcd")
                    continue
                if time.monotonic() >= next_renew:
                    ttl = self.leases.renew(lease)
                    if ttl <= 0:
                        self._reacquire(stop, "our etcd lease expired")
                        continue
                    self.metrics.renewals.inc()
                    self.metrics.lease_ttl.set(ttl)
                    next_renew = time.monotonic() + renew_every
                    self.state.etcd_ok = True
            except StoreError as e:
                self.state.etcd_ok = False
                self.metrics.errors.labels(kind="etcd").inc()
                log.warning("lease renewal: %s (kernel state kept; retrying)", e)
                next_renew = time.monotonic() + 1.0
            if not lost:
                self._check_config()
                self.reconcile("periodic resync")

    def _check_config(self) -> None:
        """The config is read once at start (like flannel); say so when it changed in etcd."""
        try:
            kv = self.store.get(self.keys.network_config)
            current = decode_config(kv.value) if kv is not None else None
        except (StoreError, DecodeError):
            return
        if current is not None and current != self.state.config and current != self._config_warned:
            log.warning("the network config in etcd changed; restart the agent to apply it (running with %s)",
                        self.state.config.to_json() if self.state.config else None)
            self._config_warned = current

    def _reacquire(self, stop: threading.Event, why: str) -> None:
        old = self.state.lease
        log.warning("%s; re-acquiring", why)
        lease = self._acquire(stop)
        if lease is None:
            return
        if old is None or lease.subnet != old.subnet:
            if old is not None:  # our old subnet went to another host while we could not renew
                self.metrics.errors.labels(kind="subnet_changed").inc()
                log.error("subnet changed from %s to %s: pods already on %s keep addresses from %s and lose "
                          "connectivity until they are recreated", old.subnet, lease.subnet, BRIDGE, old.subnet)
            if not self._retrying("setting the host up", stop, lambda: self._setup_host(lease)):
                return
            with self._lock:
                if self._announced:  # before that, the agent writes it once every component started
                    self._write_subnet_file(lease)
            if old is not None:
                self._notify_subnet_change()
        self.reconcile("lease re-acquired")

    def _watch_loop(self, stop: threading.Event) -> None:
        for view in reflect(self.store, self.keys.subnets, decoder(self.keys), stop=stop):
            with self._lock:
                self.state.leases = view.objects
                self.state.synced = True
                self.state.etcd_ok = True
            self.metrics.leases_seen.set(len(view.objects))
            lease = self.state.lease
            if lease is not None:
                ours = self.keys.subnet(lease.subnet)
                mine = view.objects.get(ours)
                gone = mine is None or mine.attrs != lease.attrs
                if gone and (view.changed is None or ours in view.changed):
                    self._lost = True
                    self._wake.set()
            if view.changed is None:
                self.reconcile("resync")
            else:
                self.reconcile(f"{len(view.changed)} lease change(s)", incremental=True)

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, why: str, *, incremental: bool = False) -> None:
        """Full (observe the kernel, fix device, remove strays) unless `incremental`: then only
        what changed since the last successful pass is written (watch events)."""
        with self._lock:
            cfg, ul, lease = self.state.config, self.state.underlay, self.state.lease
            if cfg is None or ul is None or lease is None or not self.state.synced:
                return
            d = desired(cfg, ul, lease, self.state.leases.values())
            t0 = time.perf_counter()
            previous = self._applied if incremental else None
            try:
                if previous is None:
                    self.reconciler.ensure_device(d.device)
                ch = self.reconciler.apply(d, previous=previous)
                self._applied = d
                ok = True
            except NetplaneError as e:
                ok = False
                ch = None
                self._applied = None  # next pass observes the kernel again
                self.metrics.errors.labels(kind="kernel").inc()
                log.error("reconcile (%s) failed: %s", why, e)
            self.metrics.reconcile_duration.observe(time.perf_counter() - t0)
            self.metrics.reconciles.labels(result="ok" if ok else "error").inc()
            self.metrics.peers.set(len(d.peers))
            self.state.desired = d
            self.state.last_reconcile_ok = ok
            self.state.last_reconcile_at = time.time()
            if ok and ch is not None and not ch.empty:
                log.info("reconciled (%s): %s", why, ch.summary())
            if ok:
                self.ready.set()


def _snapshot(cfg: NetworkConfig, ul: Underlay, subnet: IPv4Network) -> HostOverlay:
    dev = device_spec(cfg, ul, subnet)
    return HostOverlay(
        node_ip=ul.public_ip,
        underlay_iface=ul.ifname,
        network=cfg.network,
        subnet=subnet,
        device=dev.name,
        device_ip=dev.address.ip,
        mtu=dev.mtu,
        bridge=BRIDGE,
        gateway=gateway(subnet),
    )


def _placeholder(cfg: NetworkConfig) -> IPv4Network:
    """Any subnet: only the device's address depends on it, and that is set after leasing."""
    return cfg.subnet_min
