"""The proxy loop: list+watch Services and Endpoints, compute the desired state, hand it to a
backend. One loop for every data plane (iptables, nftables, eBPF).

It reads the registry's v1 Services and Endpoints, across namespaces, as `ns/name`
(`netplane.proxy.registry`); a cluster's flat pre-orchestrator keys are migrated at start.

Two `reflect` threads (services, endpoints) feed one queue; the loop drains it, recomputes the
LB entries of only the services that changed (so one endpoint change at 10,000 services costs
microseconds of Python, not a full recompute) and calls `backend.sync(changed=...)`. A resync of
either watch (start, etcd reconnect, compaction) and a periodic timer cause a full sync, which
repairs any drift in the kernel. The first sync waits until both watches have listed, so a
restarting proxy never programs services without their endpoints (that would refuse traffic).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from netplane.errors import ConfigError, NetplaneError
from netplane.proxy import registry as svc_registry
from netplane.proxy.backend import Placement, ProxyBackend
from netplane.proxy.desired import LbEntry, LbKey, ProxyState, compute
from netplane.proxy.metrics import ProxyMetrics
from netplane.proxy.model import Endpoints, Service
from netplane.store import EtcdStore, Keys
from netplane.store.watch import View, reflect

log = logging.getLogger(__name__)

RETRY_MIN, RETRY_MAX = 1.0, 30.0  # back-off between retries of a failed sync (doubling)

Mode = Literal["iptables", "nftables", "ebpf"]
COMPACT_MIN = 64  # changed entries a state snapshot carries on top of its base before a new base


class _Snapshot(Mapping[LbKey, LbEntry]):
    """An immutable view of the loop's entries: a shared `base` that nobody mutates, overlaid
    with this snapshot's own copy of the entries changed since (None = gone). Lookups are two
    dict reads; iterating materializes a plain dict once (a full sync, a dump)."""

    __slots__ = ("_base", "_delta", "_flat", "_len")

    def __init__(self, base: Mapping[LbKey, LbEntry], delta: dict[LbKey, LbEntry | None], length: int) -> None:
        self._base, self._delta, self._len = base, delta, length
        self._flat: dict[LbKey, LbEntry] | None = None

    def __getitem__(self, k: LbKey) -> LbEntry:
        if k in self._delta:
            e = self._delta[k]
            if e is None:
                raise KeyError(k)
            return e
        return self._base[k]

    def __contains__(self, k: object) -> bool:
        if k in self._delta:
            return self._delta[k] is not None
        return k in self._base

    def flat(self) -> dict[LbKey, LbEntry]:
        if self._flat is None:
            d = dict(self._base)
            for k, e in self._delta.items():
                if e is None:
                    d.pop(k, None)
                else:
                    d[k] = e
            self._flat = d
        return self._flat

    def __iter__(self) -> Iterator[LbKey]:
        return iter(self.flat())

    def __len__(self) -> int:
        return self._len

    # views as cheap as a dict's to make (plan_sync takes `.values()` before it knows whether it
    # iterates), iterating the materialized dict when they are iterated
    def keys(self) -> KeysView[LbKey]:
        return _Keys(self)

    def items(self) -> ItemsView[LbKey, LbEntry]:
        return _Items(self)

    def values(self) -> ValuesView[LbEntry]:
        return _Values(self)

    def __repr__(self) -> str:
        return f"_Snapshot({self.flat()!r})"


class _Keys(KeysView[LbKey]):
    _mapping: _Snapshot

    def __iter__(self) -> Iterator[LbKey]:
        return iter(self._mapping.flat())


class _Items(ItemsView[LbKey, LbEntry]):
    _mapping: _Snapshot

    def __iter__(self) -> Iterator[tuple[LbKey, LbEntry]]:
        return iter(self._mapping.flat().items())


class _Values(ValuesView[LbEntry]):
    _mapping: _Snapshot

    def __iter__(self) -> Iterator[LbEntry]:
        return iter(self._mapping.flat().values())


@dataclass
class ProxyStats:
    syncs: int = 0
    full_syncs: int = 0
    errors: int = 0
    retry_delay: float = 0.0  # seconds before the next retry after a failed sync (0 after a success)
    last_sync_seconds: float = 0.0
    last_full_seconds: float = 0.0
    last_sync_at: float = 0.0
    services: int = 0
    history: list[tuple[float, float, bool]] = field(default_factory=list)  # (at, seconds, full)


def make_backend(mode: str, where: Placement, *, instance: str | None = None) -> ProxyBackend:
    if mode == "iptables":
        from netplane.proxy.iptables import IptablesBackend

        return IptablesBackend(netns=where.netns)
    if mode == "nftables":
        from netplane.proxy.nftables import NftablesBackend

        return NftablesBackend(netns=where.netns)
    if mode == "ebpf":
        if not where.cgroup:
            raise ConfigError("the eBPF proxy needs --proxy-cgroup (a cgroup v2 directory of this host)")
        from netplane.ebpf.loader import EbpfBackend, instance_for

        return EbpfBackend(cgroup=where.cgroup, instance=instance or instance_for(where.cgroup), iface=where.iface,
                           node_ip=where.node_ip, local_cidr=where.local_cidr, netns=where.netns,
                           overlay_iface=where.overlay_iface, overlay_ip=where.overlay_ip)
    raise ConfigError(f"unknown proxy mode {mode!r}: use iptables, nftables or ebpf")


class ProxyComponent:
    """The service proxy as an agent component (`name`, `start()`, `stop()`) or standalone
    (`run(stop_event)`)."""

    name = "proxy"

    def __init__(
        self,
        store: EtcdStore,
        keys: Keys,
        *,
        mode: str = "iptables",
        node: str = "local",
        where: Placement | None = None,
        instance: str | None = None,
        resync_interval: float = 60.0,
        backend: ProxyBackend | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.mode = mode
        self.node = node
        self.where = where or Placement()
        self.backend = backend or make_backend(mode, self.where, instance=instance)
        self.resync_interval = resync_interval
        self.metrics = ProxyMetrics(registry, mode=self.backend.name) if registry is not None else None
        self.stats = ProxyStats()
        self.state: ProxyState = ProxyState({})
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._q: queue.Queue[tuple[str, View[Any]] | None] = queue.Queue()
        self._services: dict[str, Service] = {}
        self._endpoints: dict[str, Endpoints] = {}
        self._entries: dict[LbKey, LbEntry] = {}  # the truth, updated in place
        self._base: dict[LbKey, LbEntry] = {}  # a copy of _entries at the last compaction: never mutated
        self._delta: dict[LbKey, LbEntry | None] = {}  # _entries vs _base (None = gone)
        self._svc_keys: dict[str, set[LbKey]] = {}
        self.on_sync: Callable[[ProxyState], None] | None = None
        # the v1 registry: services named `ns/name` (netplane.proxy.registry)
        self._under = {"svc": svc_registry.services_prefix(keys), "ep": svc_registry.endpoints_prefix(keys)}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._q.put(None)
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def run(self, stop: threading.Event) -> None:
        try:
            svc_registry.migrate_legacy(self.store, self.keys)
        except Exception as e:  # noqa: BLE001 - etcd down at start: the next start migrates; the watch retries
            log.warning("legacy service migration failed: %s", e)
        feeders = [
            threading.Thread(target=self._feed, args=("svc", self._under["svc"], svc_registry.decode_service, stop),
                             daemon=True, name="proxy-svc"),
            threading.Thread(target=self._feed, args=("ep", self._under["ep"], svc_registry.decode_endpoints, stop),
                             daemon=True, name="proxy-ep"),
        ]
        for t in feeders:
            t.start()
        if stop is not self._stop:
            def relay() -> None:
                stop.wait()
                self._q.put(None)

            threading.Thread(target=relay, daemon=True).start()
        try:
            self._loop(stop)
        finally:
            self.backend.close()

    def _feed(self, kind: str, prefix: str, decode: Callable[[str, bytes], Any], stop: threading.Event) -> None:
        try:
            # the loop keeps its own copy (`_absorb`): only each batch's changes, no cache copy per batch
            for view in reflect(self.store, prefix, decode, stop=stop, changes_only=True):
                self._q.put((kind, view))
        except Exception:
            log.exception("proxy watch %s failed", prefix)

    # ------------------------------------------------------------------ the loop
    def _loop(self, stop: threading.Event) -> None:
        listed = {"svc": False, "ep": False}
        need_full = True
        dirty: set[str] = set()
        last_full = 0.0
        backoff = RETRY_MIN
        while not stop.is_set():
            # periodic full resync repairs drift; never let it take more than ~5% of the time
            # (an iptables full sync at 10,000 services takes seconds)
            interval = max(self.resync_interval, 20 * self.stats.last_full_seconds)
            timeout = max(0.05, interval - (time.monotonic() - last_full)) if last_full else None
            try:
                item = self._q.get(timeout=timeout)
            except queue.Empty:
                item = ("tick", None)  # type: ignore[assignment]
            batch = [item]
            while True:  # coalesce whatever else is already queued
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            for it in batch:
                if it is None:
                    continue
                kind, view = it
                if kind == "tick":
                    need_full = True
                    continue
                if view.changed is None:
                    listed[kind] = True
                    need_full = True
                names = self._absorb(kind, view)
                dirty |= names
            if stop.is_set():
                break
            if not all(listed.values()) or (not dirty and not need_full):
                continue
            changed = self._recompute(None if need_full else dirty)
            try:
                self._sync(full=need_full, changed=changed)
                if need_full:
                    last_full = time.monotonic()
                need_full = False
                dirty = set()
                backoff = RETRY_MIN
                self.stats.retry_delay = 0.0
            except Exception as e:
                self.stats.errors += 1
                if self.metrics is not None:
                    self.metrics.observe(full=need_full, seconds=0.0, ok=False, services=0, entries=0)
                if isinstance(e, NetplaneError):
                    log.error("proxy sync (%s) failed: %s; retrying with a full sync in %.0f s", self.backend.name, e, backoff)
                else:
                    log.exception("proxy sync (%s) failed; retrying with a full sync in %.0f s", self.backend.name, backoff)
                need_full = True
                self.stats.retry_delay = backoff
                if stop.wait(backoff):
                    break
                backoff = min(RETRY_MAX, backoff * 2)
                self._q.put(("tick", None))  # type: ignore[arg-type]  # retry even if etcd is quiet

    def _absorb(self, kind: str, view: View[Any]) -> set[str]:
        under = self._under[kind]
        target: dict[str, Any] = self._services if kind == "svc" else self._endpoints
        if view.changed is None:
            old = set(target)
            target.clear()
            for k, v in view.objects.items():
                target[Keys.name_of(k, under)] = v
            return old | set(target)
        names = set()
        for k in view.changed:
            name = Keys.name_of(k, under)
            names.add(name)
            v = view.objects.get(k)
            if v is None:
                target.pop(name, None)
            else:
                target[name] = v
        return names

    def _recompute(self, names: set[str] | None) -> set[LbKey] | None:
        """Update LB entries for `names` (all when None); return the keys that changed.

        `self.state` is a new snapshot every time (backends keep the one they applied to diff
        against it later): a full one after a full recompute, else the last full one plus the
        entries changed since (`_Snapshot`), so a change costs O(changes), not a copy of 10,000."""
        if names is None:
            self._entries = dict(compute(self._services, self._endpoints).entries)
            self._svc_keys = {}
            for k in self._entries:
                self._svc_keys.setdefault(k.service, set()).add(k)
            self._base = dict(self._entries)
            self._delta = {}
            self.state = ProxyState(self._base)
            return None
        changed: set[LbKey] = set()
        for name in names:
            old = {k: self._entries[k] for k in self._svc_keys.get(name, ())}
            svc = self._services.get(name)
            eps = {name: self._endpoints[name]} if name in self._endpoints else {}
            new = dict(compute({name: svc}, eps).entries) if svc else {}
            for k in set(old) | set(new):
                if old.get(k) != new.get(k):
                    changed.add(k)
                    if k in new:
                        self._entries[k] = new[k]
                    else:
                        del self._entries[k]
                    self._delta[k] = new.get(k)
            if new:
                self._svc_keys[name] = set(new)
            else:
                self._svc_keys.pop(name, None)
        if len(self._delta) > max(COMPACT_MIN, math.isqrt(len(self._entries))):
            self._base = dict(self._entries)  # amortized: one O(n) copy per ~sqrt(n) changed entries
            self._delta = {}
            self.state = ProxyState(self._base)
        else:
            self.state = ProxyState(_Snapshot(self._base, dict(self._delta), len(self._entries)))
        return changed

    def _sync(self, *, full: bool, changed: set[LbKey] | None) -> None:
        t0 = time.perf_counter()
        if full or changed is None:
            self.backend.sync(self.state, full=True)
        else:
            if not changed:
                return
            self.backend.sync(self.state, full=False, changed=changed)
        dt = time.perf_counter() - t0
        self.stats.syncs += 1
        self.stats.full_syncs += int(full)
        self.stats.last_sync_seconds = dt
        if full:
            self.stats.last_full_seconds = dt
        if self.metrics is not None:
            self.metrics.observe(full=full, seconds=dt, ok=True, services=len(self._services), entries=len(self.state.entries))
        self.stats.last_sync_at = time.time()
        self.stats.services = len(self._services)
        self.stats.history = (self.stats.history + [(self.stats.last_sync_at, dt, full)])[-100:]
        log.info("proxy %s sync: %d entries in %.1f ms", "full" if full else "partial", len(self.state.entries), dt * 1e3)
        self.synced.set()
        if self.on_sync is not None:
            self.on_sync(self.state)
