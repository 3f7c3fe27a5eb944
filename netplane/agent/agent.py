"""The per-host agent: lease, overlay, health — and room for more components.

Flow (DESIGN §1): wait for the network config in etcd, pick the underlay, bind the health
server (a taken port ends the start at once, with its reason), create the VXLAN device (its MAC
is our VtepMAC), acquire a subnet lease, set up bridge, forwarding and iptables (both retried
with back-off: etcd may be away, no subnet free yet, an iptables or netlink call may fail once),
follow every lease with list+watch and reconcile the kernel after each change (and every
`resync` seconds, to repair drift), start the other components, and only then write the subnet
file, which tells local runtimes and the lab that the host is ready. A lease thread keeps the etcd lease
alive with keepalives only and re-acquires when it is lost. etcd being away does not touch the
kernel: pods keep talking; when etcd returns the watch re-lists and the agent resyncs.

Other parts of the node agent (service proxy, stats server) plug in as `extra_components`:
objects with `name`, `start()` and `stop()`, or factories `agent -> component`; they are
started once the lease is held and the overlay first reconciled, and stopped in reverse order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Protocol

from netplane.agent import underlay as underlay_mod
from netplane.agent.health import HealthServer
from netplane.agent.metrics import Metrics
from netplane.errors import ConfigError, DecodeError, KernelError, NetplaneError, StoreError
from netplane.store import EtcdStore, Keys
from netplane.store.watch import reflect
from netplane.subnet import subnetfile
from netplane.subnet.config import NetworkConfig, decode_config
from netplane.subnet.lease import Lease, LeaseAttrs, decoder
from netplane.subnet.manager import DEFAULT_TTL, LeaseManager
from netplane.vxlan import hostsetup
from netplane.vxlan.desired import BRIDGE, DesiredOverlay, Underlay, desired, device_spec
from netplane.vxlan.netlink import Netlink
from netplane.vxlan.reconcile import Reconciler

log = logging.getLogger(__name__)


class Component(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


ComponentSpec = Component | Callable[["Agent"], Component]


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


@dataclass
class AgentState:
    config: NetworkConfig | None = None
    underlay: Underlay | None = None
    lease: Lease | None = None
    leases: Mapping[str, Lease] = field(default_factory=dict)
    desired: DesiredOverlay | None = None
    synced: bool = False
    last_reconcile_ok: bool = False
    last_reconcile_at: float = 0.0
    etcd_ok: bool = True


class Agent:
    def __init__(
        self,
        store: EtcdStore,
        keys: Keys,
        options: AgentOptions,
        *,
        netlink: Netlink | None = None,
        extra_components: Sequence[ComponentSpec] = (),
    ) -> None:
        self.store = store
        self.keys = keys
        self.opts = options
        self.nl = netlink or Netlink(netns_name=options.netns_name)
        self.reconciler = Reconciler(self.nl)
        self.leases = LeaseManager(store, keys, ttl=options.lease_ttl)
        self.metrics = Metrics()
        self.state = AgentState()
        self.ready = threading.Event()  # lease held and overlay reconciled once
        self._lock = threading.RLock()
        self._config_warned: NetworkConfig | None = None
        self._applied: DesiredOverlay | None = None  # what the last successful pass programmed
        self._wake = threading.Event()  # lease lost, or shutting down
        self._lost = False
        self._extra_specs = list(extra_components)
        self._components: list[Component] = []
        self._derived: list[tuple[Callable[[Agent], Component], Component]] = []  # built by a factory from our state
        self._components_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set; then stop components (and release the lease if asked)."""
        try:
            if not self._start(stop):
                return
            stop.wait()
        finally:
            self._shutdown()

    def _start(self, stop: threading.Event) -> bool:
        config = self._wait_config(stop)
        if config is None:
            return False
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
        if self.opts.health_listen is not None:
            # bound before anything else: a taken port fails the start at once, with its reason,
            # instead of after the host looked ready (it answers 503 until the overlay is up)
            self._add_component(
                HealthServer(self.opts.health_listen, health=self.health, registry=self.metrics.registry, netns_name=self.opts.netns_name)
            )
        lease = self._acquire(stop)
        if lease is None:
            return False
        if not self._retrying("setting the host up", stop, lambda: self._setup_host(lease)):
            return False
        self._spawn("lease", lambda: self._lease_loop(stop))
        self._spawn("watch", lambda: self._watch_loop(stop))
        while not stop.is_set() and not self.ready.wait(0.2):
            pass
        with self._components_lock:
            for spec in self._extra_specs:
                if callable(spec) and not hasattr(spec, "start"):
                    comp = spec(self)
                    self._derived.append((spec, comp))
                    self._add_component(comp)
                else:
                    self._add_component(spec)  # type: ignore[arg-type]
        if stop.is_set():
            return False
        # last: the subnet file tells local runtimes (and the lab) the host is ready for pods
        self._write_subnet_file(lease)
        return True

    def _retrying(self, what: str, stop: threading.Event, step: Callable[[], None]) -> bool:
        """Run a start-up step until it succeeds, backing off 0.5 s to 5 s; a failure is logged
        with its cause each time (etcd away, an iptables or netlink error that may pass). False
        if we were stopped first."""
        delay = 0.5
        while not stop.is_set():
            try:
                step()
                return True
            except NetplaneError as e:
                kind = "etcd" if isinstance(e, StoreError) else "kernel" if isinstance(e, KernelError) else "startup"
                self.metrics.errors.labels(kind=kind).inc()
                log.warning("%s failed: %s; retrying in %.1fs", what, e, delay, exc_info=not isinstance(e, StoreError))
                stop.wait(delay)
                delay = min(delay * 2, 5.0)
        return False

    def _add_component(self, comp: Component) -> None:
        comp.start()
        self._components.append(comp)
        log.info("started component %s", comp.name)

    def _rebuild_derived(self) -> None:
        """Components built from the agent's state (the proxy takes our subnet and VXLAN address)
        are built again after that state changed; the others keep running."""
        with self._components_lock:
            for i, (spec, old) in enumerate(self._derived):
                try:
                    old.stop()
                except Exception as e:  # noqa: BLE001
                    log.warning("stopping %s: %s", old.name, e)
                new = spec(self)
                new.start()
                self._derived[i] = (spec, new)
                self._components[self._components.index(old)] = new
                log.info("restarted component %s for the new subnet", new.name)

    def _spawn(self, name: str, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=self._guard(name, fn), name=f"agent-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _guard(self, name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception:
                log.exception("agent %s loop failed", name)
                self.metrics.errors.labels(kind=f"{name}_crash").inc()

        return run

    def _shutdown(self) -> None:
        self._wake.set()
        with self._components_lock:
            for comp in reversed(self._components):
                try:
                    comp.stop()
                except Exception as e:  # noqa: BLE001
                    log.warning("stopping %s: %s", comp.name, e)
            self._components.clear()
            self._derived.clear()
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

    # ------------------------------------------------------------------ start-up steps
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
        log.info("host %s has subnet %s (gateway %s on np0, %s on %s)", self.opts.node, lease.subnet, d.bridge.address, spec.address, spec.name)

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
            self._write_subnet_file(lease)
            if old is not None:
                self._rebuild_derived()
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


def _placeholder(cfg: NetworkConfig) -> IPv4Network:
    """Any subnet: only the device's address depends on it, and that is set after leasing."""
    return cfg.subnet_min


def check_options(opts: AgentOptions) -> None:
    if opts.lease_ttl < 5:
        raise ConfigError(f"--lease-ttl {opts.lease_ttl}: must be at least 5 seconds")
