"""Make the kernel match a `DesiredOverlay`.

`diff` is pure: observed entries vs desired entries -> what to add and what to remove. The
`Reconciler` observes through the netlink adapter, applies the diff in flannel's order (per
peer: neighbor, FDB, route; removals in the reverse order, routes first) and also removes
entries on our device that match no lease — which is how stale state from before a restart,
a departed host or an old VtepMAC disappears.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from ipaddress import IPv4Interface

from netplane.errors import KernelError
from netplane.vxlan.desired import BridgeSpec, DesiredOverlay, DeviceSpec, Fdb, Neighbor, Route
from netplane.vxlan.netlink import RTPROT_NETPLANE, LinkInfo, Netlink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observed:
    neighbors: frozenset[Neighbor]
    fdb: frozenset[Fdb]
    routes: frozenset[Route]


@dataclass(frozen=True)
class Changes:
    add_neighbors: tuple[Neighbor, ...] = ()
    add_fdb: tuple[Fdb, ...] = ()
    add_routes: tuple[Route, ...] = ()
    del_routes: tuple[Route, ...] = ()
    del_fdb: tuple[Fdb, ...] = ()
    del_neighbors: tuple[Neighbor, ...] = ()

    @property
    def empty(self) -> bool:
        return not any(
            (self.add_neighbors, self.add_fdb, self.add_routes, self.del_routes, self.del_fdb, self.del_neighbors)
        )

    def summary(self) -> str:
        return (
            f"+{len(self.add_neighbors)} neigh +{len(self.add_fdb)} fdb +{len(self.add_routes)} route, "
            f"-{len(self.del_routes)} route -{len(self.del_fdb)} fdb -{len(self.del_neighbors)} neigh"
        )


def _key(x: object) -> str:
    return str(x)


def diff(desired: DesiredOverlay, observed: Observed) -> Changes:
    want_n, want_f, want_r = desired.neighbors, desired.fdb, desired.routes
    want_n_ips = {n.ip for n in want_n}
    want_r_dsts = {r.dst for r in want_r}
    return Changes(
        add_neighbors=tuple(sorted(want_n - observed.neighbors, key=_key)),
        add_fdb=tuple(sorted(want_f - observed.fdb, key=_key)),
        add_routes=tuple(sorted(want_r - observed.routes, key=_key)),
        # a replaced route / neighbor (same key, new value) needs no delete
        del_routes=tuple(sorted((r for r in observed.routes - want_r if r.dst not in want_r_dsts), key=_key)),
        del_fdb=tuple(sorted(observed.fdb - want_f, key=_key)),
        del_neighbors=tuple(sorted((n for n in observed.neighbors - want_n if n.ip not in want_n_ips), key=_key)),
    )


@dataclass
class Reconciler:
    nl: Netlink
    _device_index: int | None = field(default=None, init=False)

    # ---------------------------------------------------------------- device + bridge
    def ensure_device(self, spec: DeviceSpec, *, with_address: bool = True) -> LinkInfo:
        """Create or fix the VXLAN device; returns it (its MAC is our VtepMAC)."""
        underlay = self.nl.index(spec.underlay)
        if underlay is None:
            raise KernelError(f"underlay interface {spec.underlay} does not exist")
        cur = self.nl.link(spec.name)
        if cur is not None and (
            cur.kind != "vxlan"
            or cur.vni != spec.vni
            or cur.port != spec.port
            or cur.local != spec.local
            or cur.learning
            or (cur.link not in (None, 0, underlay))
        ):
            log.info("recreating %s: it does not match the config (vni %s port %s local %s)", spec.name, cur.vni, cur.port, cur.local)
            self.nl.delete_link(spec.name)
            cur = None
        if cur is None:
            log.info("creating %s: VNI %d, port %d, local %s, MTU %d", spec.name, spec.vni, spec.port, spec.local, spec.mtu)
            self.nl.add_vxlan(spec, underlay_index=underlay)
            cur = self.nl.link(spec.name)
            assert cur is not None
        if cur.mtu != spec.mtu:
            self.nl.set_link(spec.name, mtu=spec.mtu)
        if with_address:
            self._ensure_addresses(cur, {spec.address})
        if not cur.up:
            self.nl.set_link(spec.name, state="up")
        self._device_index = cur.index
        return self.nl.link(spec.name) or cur

    def ensure_bridge(self, spec: BridgeSpec) -> LinkInfo:
        cur = self.nl.link(spec.name)
        if cur is not None and cur.kind != "bridge":
            raise KernelError(f"{spec.name} exists and is not a bridge ({cur.kind})")
        if cur is None:
            log.info("creating pod bridge %s with %s", spec.name, spec.address)
            self.nl.add_bridge(spec.name, mtu=spec.mtu)
            cur = self.nl.link(spec.name)
            assert cur is not None
        if cur.mtu != spec.mtu:
            self.nl.set_link(spec.name, mtu=spec.mtu)
        self._ensure_addresses(cur, {spec.address})
        if not cur.up:
            self.nl.set_link(spec.name, state="up")
        return cur

    def _ensure_addresses(self, link: LinkInfo, want: set[IPv4Interface]) -> None:
        for a in link.addresses:
            if a not in want:
                log.info("removing stale address %s from %s", a, link.name)
                self.nl.del_address(link.name, a)
        for a in want - set(link.addresses):
            self.nl.add_address(link.name, a)

    # ---------------------------------------------------------------- peers
    def observe(self, desired: DesiredOverlay) -> Observed:
        idx = self._index(desired.device.name)
        names = {l.index: l.name for l in self.nl.links()}
        routes = self.nl.routes(names=names, oif=idx, proto=RTPROT_NETPLANE)
        # only routes into the cluster network are ours to manage
        routes = {r for r in routes if r.dst.subnet_of(desired.network)}
        return Observed(frozenset(self.nl.neighbors(idx)), frozenset(self.nl.fdb(idx)), frozenset(routes))

    def _index(self, name: str) -> int:
        if self._device_index is None or self.nl.index(name) != self._device_index:
            idx = self.nl.index(name)
            if idx is None:
                raise KernelError(f"VXLAN device {name} does not exist")
            self._device_index = idx
        return self._device_index

    def apply(self, desired: DesiredOverlay, *, previous: DesiredOverlay | None = None) -> Changes:
        """Bring peer entries (neighbors, FDB, routes) in line with `desired`.

        Without `previous` the kernel is observed (full reconcile: also removes entries that
        match no lease). With `previous` — what the last successful apply programmed — only
        the difference between the two desired states is written, with no kernel dumps: the
        cheap path for a watch event; the periodic full reconcile repairs any other drift.
        """
        if previous is not None and previous.device == desired.device:
            ch = diff(desired, Observed(previous.neighbors, previous.fdb, previous.routes))
        else:
            ch = diff(desired, self.observe(desired))
        if ch.empty:
            return ch
        idx = self._index(desired.device.name)
        underlay_idx = self.nl.index(desired.device.underlay)
        for r in ch.del_routes:
            log.info("removing route %s via %s dev %s (no lease)", r.dst, r.gateway, r.dev)
            self.nl.route_del(r)
        for f in ch.del_fdb:
            log.info("removing fdb %s -> %s", f.mac, f.dst)
            self.nl.fdb_del(idx, f)
        for n in ch.del_neighbors:
            log.info("removing neighbor %s -> %s", n.ip, n.mac)
            self.nl.neigh_del(idx, n)
        # flannel's order per peer: neighbor, FDB, then the onlink route
        add_n, add_f, add_r = set(ch.add_neighbors), set(ch.add_fdb), set(ch.add_routes)
        for p in desired.peers:
            if not p.direct:
                n = Neighbor(p.vtep_ip, p.vtep_mac)
                if n in add_n:
                    self.nl.neigh_replace(idx, n)
                f = Fdb(p.vtep_mac, p.public_ip)
                if f in add_f:
                    self.nl.fdb_replace(idx, f)
                r = Route(p.subnet, p.vtep_ip, desired.device.name, onlink=True)
                oif = idx
            else:
                r = Route(p.subnet, p.public_ip, desired.device.underlay, onlink=False)
                oif = underlay_idx or 0
            if r in add_r:
                self.nl.route_replace(r, oif=oif)
        log.info("reconciled %d peers: %s", len(desired.peers), ch.summary())
        return ch
