"""Pure planning of BPF map updates: current map contents + desired proxy state -> ordered ops.

Ordering keeps every intermediate map state valid for a program reading it concurrently:
  1. delete the head (slot 0) of frontends that go away (they stop matching at once)
  2. put new/changed backends
  3. put slots 1..n
  4. put heads (count last, so a grown service only uses slots already written)
  5. delete slots beyond the new count and of removed frontends
  6. delete backends nobody references
Only entries whose value changes are written, so a restart that finds the maps already right
writes nothing and traffic never notices.

Numbers are kept as the raw map integers (network-order u32/u16) for speed at 10,000 services.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network

from netplane.ebpf.maps import IPPROTO, LB_F_AFFINITY, ip_u32, port_u16
from netplane.proxy.desired import LbEntry, LbKey, ProxyState

Frontend = tuple[int, int, int]  # (vip u32, port u16, proto)
SlotKey = tuple[int, int, int, int]  # frontend + slot
Head = tuple[int, int, int, int]  # (svc_id, count, flags, timeout)
BackendT = tuple[int, int, int, int]  # (ip u32, port u16, proto, svc_id)


@dataclass
class MapState:
    heads: dict[Frontend, Head] = field(default_factory=dict)
    slots: dict[SlotKey, int] = field(default_factory=dict)  # -> backend id
    backends: dict[int, BackendT] = field(default_factory=dict)
    # derived, built on first use and then kept up to date by plan_sync (so a one-endpoint
    # change at 10,000 services does not rescan 50,000 backends)
    _by_svc: dict[int, dict[tuple[int, int, int], int]] | None = field(default=None, repr=False, compare=False)
    _next_bid: int = field(default=0, repr=False, compare=False)
    _next_sid: int = field(default=0, repr=False, compare=False)

    def copy(self) -> MapState:
        return MapState(dict(self.heads), dict(self.slots), dict(self.backends))

    def index(self) -> dict[int, dict[tuple[int, int, int], int]]:
        if self._by_svc is None:
            by_svc: dict[int, dict[tuple[int, int, int], int]] = {}
            for bid, (ip, port, pr, s) in self.backends.items():
                by_svc.setdefault(s, {})[(ip, port, pr)] = bid
            self._by_svc = by_svc
            self._next_bid = max(self.backends, default=0) + 1
            self._next_sid = max((h[0] for h in self.heads.values()), default=0) + 1
        return self._by_svc


@dataclass
class Plan:
    del_heads: list[Frontend] = field(default_factory=list)
    put_backends: list[tuple[int, BackendT]] = field(default_factory=list)
    put_slots: list[tuple[SlotKey, int]] = field(default_factory=list)
    put_heads: list[tuple[Frontend, Head]] = field(default_factory=list)
    del_slots: list[SlotKey] = field(default_factory=list)
    del_backends: list[int] = field(default_factory=list)
    result: MapState = field(default_factory=MapState)

    @property
    def writes(self) -> int:
        return sum(len(x) for x in (self.del_heads, self.put_backends, self.put_slots, self.put_heads, self.del_slots, self.del_backends))


def frontends_of(e: LbEntry, local_cidr: IPv4Network | None) -> list[tuple[Frontend, list[tuple[int, int]], int, int]]:
    """(frontend, backends [(ip u32, port u16)], flags, timeout) for one LB entry."""
    proto = IPPROTO[e.protocol]
    flags = LB_F_AFFINITY if e.affinity_timeout is not None else 0
    timeout = e.affinity_timeout or 0
    bes = [(ip_u32(b.ip), port_u16(b.port)) for b in e.backends]
    out = [((ip_u32(e.vip), port_u16(e.port), proto), bes, flags, timeout)]
    if e.node_port is not None:
        # `local_cidr` given: this host's pods only (Kubernetes' externalTrafficPolicy=Local; a
        # host without one refuses). The loader passes it only when it cannot SNAT remote
        # backends through the overlay (no VXLAN device configured); otherwise None: all
        # endpoints (externalTrafficPolicy=Cluster, the program tells local from remote).
        nbes = bes if local_cidr is None else [(ip_u32(b.ip), port_u16(b.port)) for b in e.backends if b.ip in local_cidr]
        out.append(((0, port_u16(e.node_port), proto), nbes, flags, timeout))
    return out


def plan_sync(
    current: MapState,
    state: ProxyState,
    *,
    local_cidr: IPv4Network | None = None,
    changed: Iterable[LbKey] | None = None,
    previous: ProxyState | None = None,
    inplace: bool = False,
) -> Plan:
    """Full reconcile when `changed` is None; else only the frontends of the changed keys
    (looked up in `state` and `previous`). `inplace` updates `current` itself (the backend's
    own copy; it re-reads the maps if applying the plan fails) instead of a copy."""
    res = current if inplace else current.copy()
    plan = Plan(result=res)
    by_svc = res.index()
    next_bid, next_sid = res._next_bid, res._next_sid

    desired: dict[Frontend, tuple[list[tuple[int, int]], int, int]] = {}
    scope: set[Frontend] | None = None
    entries: Iterable[LbEntry] = state.entries.values()
    if changed is not None:
        ch = set(changed)
        scope = set()
        entries = [state.entries[k] for k in ch if k in state.entries]
        if previous is not None:
            for k in ch:
                old = previous.entries.get(k)
                if old is not None:
                    scope.update(f for f, _, _, _ in frontends_of(old, local_cidr))
    for e in entries:
        for f, bes, flags, timeout in frontends_of(e, local_cidr):
            desired[f] = (bes, flags, timeout)
            if scope is not None:
                scope.add(f)

    considered = list(res.heads) if scope is None else [f for f in scope if f in res.heads]
    for f in considered:
        if f in desired:
            continue
        sid, count, _, _ = res.heads.pop(f)
        plan.del_heads.append(f)
        for s in range(1, count + 1):
            if res.slots.pop((*f, s), None) is not None:
                plan.del_slots.append((*f, s))
        for bid in by_svc.pop(sid, {}).values():
            res.backends.pop(bid, None)
            plan.del_backends.append(bid)

    for f, (bes, flags, timeout) in desired.items():
        head = res.heads.get(f)
        if head is not None:
            sid, old_count = head[0], head[1]
        else:
            sid, old_count = next_sid, 0
            next_sid += 1
        proto = f[2]
        mine = by_svc.setdefault(sid, {})
        ids = []
        for ip, port in bes:
            found = mine.get((ip, port, proto))
            if found is not None:
                bid = found
            else:
                bid = next_bid
                next_bid += 1
                mine[(ip, port, proto)] = bid
                val = (ip, port, proto, sid)
                res.backends[bid] = val
                plan.put_backends.append((bid, val))
            ids.append(bid)
        for i, bid in enumerate(ids, start=1):
            sk = (*f, i)
            if res.slots.get(sk) != bid:
                res.slots[sk] = bid
                plan.put_slots.append((sk, bid))
        new_head = (sid, len(ids), flags, timeout)
        if head != new_head:
            res.heads[f] = new_head
            plan.put_heads.append((f, new_head))
        for s in range(len(ids) + 1, old_count + 1):
            if res.slots.pop((*f, s), None) is not None:
                plan.del_slots.append((*f, s))
        if len(mine) != len(set(ids)):
            keep = set(ids)
            for bk, bid in list(mine.items()):
                if bid not in keep:
                    del mine[bk]
                    res.backends.pop(bid, None)
                    plan.del_backends.append(bid)
    res._next_bid, res._next_sid = next_bid, next_sid
    return plan
