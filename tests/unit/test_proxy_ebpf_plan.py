"""BPF map update planning (pure): slot layout, write ordering, minimal diffs, restart no-op."""

from __future__ import annotations

from ipaddress import IPv4Address as IP
from ipaddress import IPv4Network

from netplane.ebpf.maps import LB_F_AFFINITY, ip_u32, port_u16
from netplane.ebpf.plan import MapState, plan_sync
from netplane.proxy.desired import Backend, LbEntry, LbKey, ProxyState


def entry(name: str, ips: list[str], *, vip: str = "10.96.0.10", node_port: int | None = None, affinity: int | None = None) -> LbEntry:
    return LbEntry(LbKey(name, "p"), IP(vip), 80, "TCP", tuple(Backend(IP(i), 8080) for i in ips),
                   node_port=node_port, affinity_timeout=affinity)


def st(*es: LbEntry) -> ProxyState:
    return ProxyState({e.key: e for e in es})


def apply(cur: MapState, state: ProxyState, **kw: object) -> MapState:
    return plan_sync(cur, state, **kw).result  # type: ignore[arg-type]


def test_cilium_slot_layout() -> None:
    p = plan_sync(MapState(), st(entry("a", ["10.0.0.1", "10.0.0.2"])))
    f = (ip_u32(IP("10.96.0.10")), port_u16(80), 6)
    r = p.result
    sid, count, flags, _ = r.heads[f]
    assert count == 2 and flags == 0
    b1, b2 = r.slots[(*f, 1)], r.slots[(*f, 2)]
    assert {r.backends[b1][:2], r.backends[b2][:2]} == {(ip_u32(IP("10.0.0.1")), port_u16(8080)), (ip_u32(IP("10.0.0.2")), port_u16(8080))}
    assert r.backends[b1][3] == sid
    # backends and slots are written before the head that makes them reachable
    assert p.put_backends and p.put_slots and p.put_heads and not p.del_slots


def test_unchanged_state_writes_nothing() -> None:
    s = st(entry("a", ["10.0.0.1", "10.0.0.2"]), entry("b", ["10.0.0.3"], vip="10.96.0.11", node_port=30001, affinity=5))
    cur = apply(MapState(), s)
    again = plan_sync(cur, s)
    assert again.writes == 0  # a restarted agent touches nothing


def test_shrink_deletes_slot_and_backend_after_head() -> None:
    cur = apply(MapState(), st(entry("a", ["10.0.0.1", "10.0.0.2", "10.0.0.3"])))
    p = plan_sync(cur, st(entry("a", ["10.0.0.1", "10.0.0.3"])))
    f = (ip_u32(IP("10.96.0.10")), port_u16(80), 6)
    assert p.put_heads[0][1][1] == 2
    assert p.del_slots == [(*f, 3)] and len(p.del_backends) == 1
    assert {v[0] for v in p.result.backends.values()} == {ip_u32(IP("10.0.0.1")), ip_u32(IP("10.0.0.3"))}


def test_removed_service_deletes_head_first_then_everything() -> None:
    a, b = entry("a", ["10.0.0.1"]), entry("b", ["10.0.0.2"], vip="10.96.0.11")
    cur = apply(MapState(), st(a, b))
    p = plan_sync(cur, st(a))
    assert len(p.del_heads) == 1 and len(p.del_slots) == 1 and len(p.del_backends) == 1
    assert len(p.result.heads) == 1 and len(p.result.backends) == 1


def test_partial_plan_touches_only_changed_keys() -> None:
    es = [entry(f"s{i}", [f"10.0.{i}.1", f"10.0.{i}.2"], vip=f"10.96.1.{i}") for i in range(50)]
    old = st(*es)
    cur = apply(MapState(), old)
    new_e = entry("s7", ["10.0.7.1", "10.0.7.9"], vip="10.96.1.7")
    new = ProxyState({**old.entries, new_e.key: new_e})
    p = plan_sync(cur, new, changed={new_e.key}, previous=old)
    assert p.writes == 3  # one backend added, one slot rewritten, one backend deleted
    counts = {f: h[1] for f, h in p.result.heads.items()}
    assert counts == {f: h[1] for f, h in apply(MapState(), new).heads.items()}
    f7 = (ip_u32(IP("10.96.1.7")), port_u16(80), 6)
    ips = {p.result.backends[p.result.slots[(*f7, s)]][0] for s in (1, 2)}
    assert ips == {ip_u32(IP("10.0.7.1")), ip_u32(IP("10.0.7.9"))}


def test_nodeport_frontend_uses_local_backends_only() -> None:
    e = entry("np", ["10.244.1.5", "10.244.2.5"], node_port=30080, affinity=60)
    r = apply(MapState(), st(e), local_cidr=IPv4Network("10.244.2.0/24"))
    nf = (0, port_u16(30080), 6)
    _sid, count, flags, timeout = r.heads[nf]
    assert count == 1 and flags == LB_F_AFFINITY and timeout == 60
    assert r.backends[r.slots[(*nf, 1)]][0] == ip_u32(IP("10.244.2.5"))
    r2 = apply(MapState(), st(e), local_cidr=None)
    assert r2.heads[nf][1] == 2
    r3 = apply(MapState(), st(e), local_cidr=IPv4Network("10.244.9.0/24"))  # no pod here: refuse
    assert r3.heads[nf][1] == 0 and r3.heads[(ip_u32(IP("10.96.0.10")), port_u16(80), 6)][1] == 2


def test_no_backends_keeps_head_with_zero_count() -> None:
    r = apply(MapState(), st(entry("e", [])))
    (head,) = r.heads.values()
    assert head[1] == 0 and not r.slots


def test_inplace_partial_plans_track_a_full_plan() -> None:
    """Many in-place partial syncs leave the same map contents a fresh full plan would give
    (modulo ids), and their derived index stays consistent."""
    import random

    rng = random.Random(7)
    old = st(*(entry(f"s{i}", [f"10.1.{i}.{j}" for j in range(3)], vip=f"10.96.2.{i}") for i in range(20)))
    cur = apply(MapState(), old)
    for step in range(60):
        i = rng.randrange(20)
        n = rng.randrange(0, 5)
        e = entry(f"s{i}", [f"10.1.{i}.{rng.randrange(9)}" for _ in range(n)], vip=f"10.96.2.{i}")
        new = ProxyState({**old.entries, e.key: e})
        plan_sync(cur, new, changed={e.key}, previous=old, inplace=True)
        old = new

    def canon(m: MapState) -> dict[tuple[int, int, int], list[tuple[int, int]]]:
        return {f: sorted(m.backends[m.slots[(*f, s)]][:2] for s in range(1, h[1] + 1)) for f, h in m.heads.items()}

    assert canon(cur) == canon(apply(MapState(), old))
    rebuilt = MapState(dict(cur.heads), dict(cur.slots), dict(cur.backends))
    assert rebuilt.index() == {s: m for s, m in cur.index().items() if m}
    assert set(cur.backends) == {cur.slots[k] for k in cur.slots}  # no orphan backends
