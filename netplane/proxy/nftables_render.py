"""Rendering of the desired proxy state as an `nft -f` script for one table, `ip netplane` (pure).

kube-proxy's nftables layout (pkg/proxy/nftables), with one measured departure:

    nat-prerouting, nat-output     -> services
    services                       ip daddr . meta l4proto . th dport vmap @service_ips
                                   fib daddr type local ... meta l4proto . th dport vmap @service_nodeports
    service_ips[vip . proto . port]            goto pick-<proto>-<N>     (N = number of endpoints)
    pick-<proto>-<N>               dnat to ip daddr . meta l4proto . th dport . numgen random mod N
                                   map @endpoints_<proto>
    endpoints_<proto>[vip . proto . port . i]  endpoint i's ip . port
    service_nodeports[proto . nodePort]        goto nodeport-pick-<proto>-<N> (marks for masquerade,
                                   then dnat through @nodeport_endpoints_<proto>[proto . nodePort . i])
    filter-input/-forward/-output  ct state new: @no_endpoint_services / @no_endpoint_nodeports
                                   -> goto reject-chain (services without endpoints refuse)
    nat-postrouting -> masquerading: hairpin (ct status dnat, ip saddr . ip daddr in @hairpin,
                                   i.e. a pod reaching itself) and packets marked 0x4000 (NodePort)

The departure: kube-proxy gives every service a chain (`service-<hash>-...`, a `numgen random
mod N vmap` of gotos) and every endpoint one (`endpoint-<hash>-...`: hairpin mark, dnat). At
10,000 services × 5 that is 60,000 chains, and here every `nft -f` fetches all chains of the
table before it does anything (~0.2 s) and every commit that adds a jump re-validates the whole
graph from each base chain (0.2-0.8 s), so one endpoint change took 0.4-1 s and a full sync 16 s
in batches (134 s in one transaction): measured in docs/ARCHITECTURE.md. Here the per-service
and per-endpoint data are elements of shared maps, and the chains are a fixed set plus one
`pick-<proto>-<N>` per protocol and endpoint count in use: an endpoint change is a handful of element updates with
no jump in them (nothing to fetch, nothing to re-validate). Services with ClientIP affinity keep
kube-proxy's per-service and per-endpoint chains, because the affinity set (`affinity-<hash>`,
`flags dynamic,timeout`, `update @set { ip saddr }`) is per endpoint.

A partial sync is one transaction holding only the changed services' elements and chains.
Chains (and affinity sets) a partial sync leaves unreferenced are deleted by the next sync, as
kube-proxy defers them; pick chains no longer used are swept by the next full sync.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from netplane.proxy.desired import Backend, LbEntry, LbKey, ProxyState

TABLE = "netplane"
FAMILY = "ip"
MASQ_MARK = "0x4000"
ELEMENTS_PER_STATEMENT = 1000  # long `add element` lines are split; all in the one transaction

# maps and sets that the state fills (flushed and refilled by a full sync)
SERVICE_IPS = "service_ips"
SERVICE_NODEPORTS = "service_nodeports"
NO_ENDPOINT_SERVICES = "no_endpoint_services"
NO_ENDPOINT_NODEPORTS = "no_endpoint_nodeports"
PROTOS = ("tcp", "udp")


def endpoints_map(proto: str) -> str:
    return f"endpoints_{proto}"


def nodeport_endpoints_map(proto: str) -> str:
    return f"nodeport_endpoints_{proto}"


HAIRPIN = "hairpin"

MAPS: tuple[tuple[str, str], ...] = (
    (SERVICE_IPS, "type ipv4_addr . inet_proto . inet_service : verdict ;"),
    (SERVICE_NODEPORTS, "type inet_proto . inet_service : verdict ;"),
    (NO_ENDPOINT_SERVICES, "type ipv4_addr . inet_proto . inet_service : verdict ;"),
    (NO_ENDPOINT_NODEPORTS, "type inet_proto . inet_service : verdict ;"),
    # `typeof` because the key ends in numgen's (host-endian) integer, which has no type name. One
    # map per protocol: the value's `tcp dport`/`udp dport` makes nft match the protocol first
    # (`th dport` there would do for both, but nft 1.0.6 cannot read such a map back: "conflicting
    # protocols specified: ip vs. th" on the next rule that uses it).
    *((endpoints_map(p), f"typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . {p} dport ;")
      for p in PROTOS),
    *((nodeport_endpoints_map(p), f"typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . {p} dport ;")
      for p in PROTOS),
    (HAIRPIN, "type ipv4_addr . ipv4_addr ;"),
)
MAP_NAMES = frozenset(m for m, _ in MAPS)

BASE_CHAINS: tuple[tuple[str, str], ...] = (
    ("nat-prerouting", "type nat hook prerouting priority dstnat ;"),
    ("nat-output", "type nat hook output priority -100 ;"),
    ("nat-postrouting", "type nat hook postrouting priority srcnat ;"),
    ("filter-input", "type filter hook input priority -110 ;"),
    ("filter-forward", "type filter hook forward priority -110 ;"),
    ("filter-output", "type filter hook output priority -110 ;"),
)

FIXED_RULES: tuple[tuple[str, str], ...] = (
    ("nat-prerouting", "jump services"),
    ("nat-output", "jump services"),
    ("nat-postrouting", "jump masquerading"),
    ("filter-input", "ct state new jump nodeport-endpoints-check"),
    ("filter-input", "ct state new jump service-endpoints-check"),
    ("filter-forward", "ct state new jump service-endpoints-check"),
    ("filter-output", "ct state new jump nodeport-endpoints-check"),
    ("filter-output", "ct state new jump service-endpoints-check"),
    ("services", f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
    ("services", f"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
    ("service-endpoints-check", f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
    ("nodeport-endpoints-check", f"fib daddr type local meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"),
    ("reject-chain", "reject"),
    ("mark-for-masquerade", f"meta mark set meta mark or {MASQ_MARK}"),
    ("masquerading", f"ct status dnat ip saddr . ip daddr @{HAIRPIN} masquerade"),
    ("masquerading", f"meta mark & {MASQ_MARK} == 0 return"),
    ("masquerading", f"meta mark set meta mark xor {MASQ_MARK}"),
    ("masquerading", "masquerade fully-random"),
)
FIXED_CHAINS: tuple[str, ...] = tuple(dict.fromkeys([c for c, _ in BASE_CHAINS] + [c for c, _ in FIXED_RULES]))


def _hash(*parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return base64.b32encode(digest).decode()[:8]


def _label(e: LbEntry) -> str:
    return f"{e.key.service}/{e.protocol.lower()}/{e.key.port_name}"


# ------------------------------------------------------------------ names (kube-proxy style)
def pick_chain(proto: str, n: int) -> str:
    return f"pick-{proto}-{n}"


def nodeport_pick_chain(proto: str, n: int) -> str:
    return f"nodeport-pick-{proto}-{n}"


def service_chain(e: LbEntry) -> str:
    return f"service-{_hash(str(e.key), e.protocol)}-{_label(e)}"


def external_chain(e: LbEntry) -> str:
    return f"external-{_hash(str(e.key), e.protocol)}-{_label(e)}"


def endpoint_chain(e: LbEntry, b: Backend) -> str:
    return f"endpoint-{_hash(str(e.key), e.protocol, f'{b.ip}:{b.port}')}-{_label(e)}__{b.ip}/{b.port}"


def affinity_set(e: LbEntry, b: Backend) -> str:
    return f"affinity-{_hash(str(e.key), e.protocol, f'{b.ip}:{b.port}')}-{_label(e)}__{b.ip}/{b.port}"


def affinity_sets_of_chains(chains: Iterable[str]) -> set[str]:
    """The affinity set each endpoint chain has (same suffix): how a full sync finds stale sets
    without listing sets (which fetches every element)."""
    return {"affinity-" + c[len("endpoint-"):] for c in chains if c.startswith("endpoint-")}


def is_service_chain(name: str) -> bool:
    return name.startswith(("service-", "external-", "endpoint-"))


# ------------------------------------------------------------------ what an entry puts in the table
ElemKey = tuple[str, str]  # (map, key text)


def elements_of(e: LbEntry) -> dict[ElemKey, str]:
    """The map elements an entry owns: (map, key) -> value, as nft text."""
    proto = e.protocol.lower()
    front = f"{e.vip} . {proto} . {e.port}"
    out: dict[ElemKey, str] = {}
    n = len(e.backends)
    if n == 0:
        out[(NO_ENDPOINT_SERVICES, front)] = "goto reject-chain"
        if e.node_port is not None:
            out[(NO_ENDPOINT_NODEPORTS, f"{proto} . {e.node_port}")] = "goto reject-chain"
        return out
    if e.affinity_timeout is not None:
        out[(SERVICE_IPS, front)] = f"goto {service_chain(e)}"
        if e.node_port is not None:
            out[(SERVICE_NODEPORTS, f"{proto} . {e.node_port}")] = f"goto {external_chain(e)}"
        return out
    out[(SERVICE_IPS, front)] = f"goto {pick_chain(proto, n)}"
    for i, b in enumerate(e.backends):
        out[(endpoints_map(proto), f"{front} . {i}")] = f"{b.ip} . {b.port}"
    if e.node_port is not None:
        out[(SERVICE_NODEPORTS, f"{proto} . {e.node_port}")] = f"goto {nodeport_pick_chain(proto, n)}"
        for i, b in enumerate(e.backends):
            out[(nodeport_endpoints_map(proto), f"{proto} . {e.node_port} . {i}")] = f"{b.ip} . {b.port}"
    return out


def picks_of(e: LbEntry) -> set[str]:
    """The shared pick chains an entry's elements jump to."""
    n = len(e.backends)
    if n == 0 or e.affinity_timeout is not None:
        return set()
    proto = e.protocol.lower()
    return {pick_chain(proto, n)} | ({nodeport_pick_chain(proto, n)} if e.node_port is not None else set())


def chains_of(e: LbEntry) -> dict[str, list[str]]:
    """Per-service chains (ClientIP affinity only): name -> rules."""
    if e.affinity_timeout is None or not e.backends:
        return {}
    proto = e.protocol.lower()
    svc = service_chain(e)
    rules: dict[str, list[str]] = {svc: []}
    for b in e.backends:
        rules[svc].append(f"ip saddr @{affinity_set(e, b)} goto {endpoint_chain(e, b)}")
    vmap = ", ".join(f"{i} : goto {endpoint_chain(e, b)}" for i, b in enumerate(e.backends))
    rules[svc].append(f"numgen random mod {len(e.backends)} vmap {{ {vmap} }}")
    for b in e.backends:
        rules[endpoint_chain(e, b)] = [f"update @{affinity_set(e, b)} {{ ip saddr }}",
                                       f"meta l4proto {proto} dnat to {b.ip}:{b.port}"]
    if e.node_port is not None:
        rules[external_chain(e)] = ["jump mark-for-masquerade", f"goto {svc}"]
    return rules


def sets_of(e: LbEntry) -> dict[str, str]:
    """Affinity sets of an entry: name -> declaration body (never flushed: it holds the clients)."""
    if e.affinity_timeout is None or not e.backends:
        return {}
    return {affinity_set(e, b): f"type ipv4_addr ; flags dynamic,timeout ; timeout {e.affinity_timeout}s ;"
            for b in e.backends}


def pick_rules(name: str) -> list[str]:
    proto, n = name.split("-")[-2], int(name.rsplit("-", 1)[1])
    if name.startswith("nodeport-"):
        return ["jump mark-for-masquerade",
                f"dnat ip to meta l4proto . th dport . numgen random mod {n} map @{nodeport_endpoints_map(proto)}"]
    return [f"dnat ip to ip daddr . meta l4proto . th dport . numgen random mod {n} map @{endpoints_map(proto)}"]


def hairpin_refs(state: ProxyState) -> Counter[IPv4Address]:
    """How many (entry, backend) pairs use each endpoint address (one hairpin element each)."""
    refs: Counter[IPv4Address] = Counter()
    for e in state.entries.values():
        refs.update({b.ip for b in e.backends})
    return refs


class RefCounts(Mapping[IPv4Address, int]):
    """Hairpin refcounts after a partial sync, without copying the ones before it (50,000 at
    10,000 services × 5; copying them was 2 ms of every endpoint change): `base` read through
    `changes` (address -> count after, 0 = gone). It reads `base` live, so it is what it says only
    while `base` is unchanged; the backend folds `changes` into its own dict once the transaction
    applied (`NftablesBackend`), after which the two agree again."""

    __slots__ = ("base", "changes")
    base: Mapping[IPv4Address, int]
    changes: Mapping[IPv4Address, int]

    def __init__(self, base: Mapping[IPv4Address, int], changes: Mapping[IPv4Address, int]) -> None:
        if isinstance(base, RefCounts):  # a plan's refs handed to the next render: stay one level deep
            changes = {**base.changes, **changes}
            base = base.base
        self.base = base
        self.changes = changes

    def __getitem__(self, ip: IPv4Address) -> int:
        n = self.changes[ip] if ip in self.changes else self.base[ip]
        if n <= 0:
            raise KeyError(ip)
        return n

    def __iter__(self) -> Iterator[IPv4Address]:
        for ip in self.base:
            if self.changes.get(ip, 1) > 0:
                yield ip
        for ip, n in self.changes.items():
            if n > 0 and ip not in self.base:
                yield ip

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"RefCounts({dict(self)!r})"


def _hairpin(ip: IPv4Address) -> str:
    return f"{ip} . {ip}"


# ------------------------------------------------------------------ script text
def _t(rest: str) -> str:
    return rest.replace("@T", f"{FAMILY} {TABLE}")


def _element_lines(verb: str, items: Iterable[tuple[str, str | None]], map_name: str) -> list[str]:
    chunk: list[str] = []
    out: list[str] = []
    for key, value in items:
        chunk.append(key if value is None else f"{key} : {value}")
        if len(chunk) >= ELEMENTS_PER_STATEMENT:
            out.append(f"{verb} element {FAMILY} {TABLE} {map_name} {{ {', '.join(chunk)} }}")
            chunk = []
    if chunk:
        out.append(f"{verb} element {FAMILY} {TABLE} {map_name} {{ {', '.join(chunk)} }}")
    return out


def _chain_lines(name: str, rules: list[str], *, decl: str | None = None) -> list[str]:
    head = f"add chain {FAMILY} {TABLE} {name}" + (f" {{ {decl} }}" if decl else "")
    return [head, f"flush chain {FAMILY} {TABLE} {name}", *(f"add rule {FAMILY} {TABLE} {name} {r}" for r in rules)]


def _drop_lines(chains: Iterable[str], sets: Iterable[str]) -> list[str]:
    cs, ss = sorted(chains), sorted(sets)
    # rules first (they refer to each other and to the sets), then the objects
    return ([f"flush chain {FAMILY} {TABLE} {c}" for c in cs] + [f"delete chain {FAMILY} {TABLE} {c}" for c in cs]
            + [f"delete set {FAMILY} {TABLE} {s}" for s in ss])


@dataclass(frozen=True)
class Plan:
    """One nft transaction (`script`) and what the backend must remember after it applies."""

    script: str
    full: bool
    elements_added: int
    elements_deleted: int
    chains_written: frozenset[str]
    deleted: frozenset[str]  # chains and sets this transaction deletes
    picks: frozenset[str]  # pick chains present afterwards
    refs: Mapping[IPv4Address, int]  # hairpin element refcounts afterwards (partial: a RefCounts view)
    deferred_chains: frozenset[str] = frozenset()  # unreferenced now; the next sync deletes them
    deferred_sets: frozenset[str] = frozenset()
    touched: frozenset[str] = field(default_factory=frozenset)  # services whose objects changed


def render_full(state: ProxyState, *, existing_chains: Iterable[str] = (), existing_sets: Iterable[str] = ()) -> Plan:
    """Make the table equal to `state`: declare everything, flush the filled maps and every chain
    we write, refill; delete chains and sets of ours that `state` no longer needs (`existing_*`
    are read from the kernel). One transaction: traffic never sees a half-written table."""
    lines = [f"add table {FAMILY} {TABLE}"]
    for name, decl in MAPS:
        lines.append(f"add {'set' if name == HAIRPIN else 'map'} {FAMILY} {TABLE} {name} {{ {decl} }}")
        lines.append(f"flush {'set' if name == HAIRPIN else 'map'} {FAMILY} {TABLE} {name}")
    decls = dict(BASE_CHAINS)
    fixed_rules: dict[str, list[str]] = {c: [] for c in FIXED_CHAINS}
    for c, r in FIXED_RULES:
        fixed_rules[c].append(r)
    want_chains: dict[str, list[str]] = {}
    want_sets: dict[str, str] = {}
    picks: set[str] = set()
    elements: dict[str, list[tuple[str, str | None]]] = {m: [] for m in MAP_NAMES}
    for _, e in sorted(state.entries.items()):
        want_chains.update(chains_of(e))
        want_sets.update(sets_of(e))
        picks |= picks_of(e)
        for (m, k), v in elements_of(e).items():
            elements[m].append((k, v))
    refs = hairpin_refs(state)
    elements[HAIRPIN] = [(_hairpin(ip), None) for ip in sorted(refs)]
    # chains before anything that jumps to them: fixed (non-base) first, base chains last
    for c in FIXED_CHAINS:
        if c not in decls:
            lines.append(f"add chain {FAMILY} {TABLE} {c}")
    for name in sorted(picks):
        lines += _chain_lines(name, pick_rules(name))
    for name, decl in sorted(want_sets.items()):
        lines.append(f"add set {FAMILY} {TABLE} {name} {{ {decl} }}")
    for name in sorted(want_chains):  # declare all, then fill (service chains goto endpoint chains)
        lines.append(f"add chain {FAMILY} {TABLE} {name}")
    for name, rules in sorted(want_chains.items()):
        lines += _chain_lines(name, rules)[1:]
    for c in FIXED_CHAINS:
        if c not in decls:
            lines += _chain_lines(c, fixed_rules[c])[1:]
    for c, decl in BASE_CHAINS:
        lines += _chain_lines(c, fixed_rules[c], decl=decl)
    added = 0
    for m, _ in MAPS:
        lines += _element_lines("add", elements[m], m)
        added += len(elements[m])
    keep = set(FIXED_CHAINS) | set(want_chains) | picks
    stale_chains = {c for c in existing_chains if c not in keep}
    stale_sets = {s for s in existing_sets if s not in want_sets and s not in MAP_NAMES}
    lines += _drop_lines(stale_chains, stale_sets)
    written = frozenset(keep)
    return Plan(script="\n".join(lines) + "\n", full=True, elements_added=added, elements_deleted=0,
                chains_written=written, deleted=frozenset(stale_chains | stale_sets), picks=frozenset(picks), refs=refs,
                touched=frozenset(k.service for k in state.entries))


def render_partial(
    state: ProxyState,
    previous: ProxyState,
    *,
    changed: Iterable[LbKey] | None = None,
    picks: Iterable[str],
    refs: Mapping[IPv4Address, int],
    deferred_chains: Iterable[str] = (),
    deferred_sets: Iterable[str] = (),
) -> Plan:
    """Only what changed between `previous` (what the kernel holds) and `state`: element
    deletions and additions, new pick chains, and the affinity chains of changed services.
    Chains and sets left unreferenced are handed back (`deferred_*`) for the next sync; the ones
    handed back by the previous sync are deleted now."""
    keys = sorted(state.changed(previous) if changed is None else set(changed))
    have_picks = set(picks)
    counts: dict[IPv4Address, int] = {}  # refcounts this sync changes (the rest stay as in `refs`)
    dels: dict[str, list[tuple[str, str | None]]] = {m: [] for m in MAP_NAMES}
    adds: dict[str, list[tuple[str, str | None]]] = {m: [] for m in MAP_NAMES}
    chain_lines: list[str] = []
    set_lines: list[str] = []
    new_pick_lines: list[str] = []
    written: set[str] = set()
    orphan_chains: set[str] = set()
    orphan_sets: set[str] = set()
    still_wanted_chains: set[str] = set()
    still_wanted_sets: set[str] = set()
    touched: set[str] = set()
    for k in keys:
        old, new = previous.entries.get(k), state.entries.get(k)
        if old == new:
            continue
        touched.add(k.service)
        before = elements_of(old) if old else {}
        after = elements_of(new) if new else {}
        for mk, v in before.items():
            if after.get(mk) != v:
                dels[mk[0]].append((mk[1], None))
        for mk, v in after.items():
            if before.get(mk) != v:
                adds[mk[0]].append((mk[1], v))
        old_ips = {b.ip for b in old.backends} if old else set()
        new_ips = {b.ip for b in new.backends} if new else set()
        for ip in old_ips - new_ips:
            n = counts[ip] if ip in counts else refs.get(ip, 0)
            counts[ip] = max(0, n - 1)
            if n <= 1:
                dels[HAIRPIN].append((_hairpin(ip), None))
        for ip in new_ips - old_ips:
            n = counts[ip] if ip in counts else refs.get(ip, 0)
            counts[ip] = n + 1
            if n == 0:
                adds[HAIRPIN].append((_hairpin(ip), None))
        if new is not None:
            for p in sorted(picks_of(new) - have_picks):
                new_pick_lines += _chain_lines(p, pick_rules(p))
                have_picks.add(p)
                written.add(p)
            new_chains = chains_of(new)
            for name, decl in sorted(sets_of(new).items()):
                set_lines.append(f"add set {FAMILY} {TABLE} {name} {{ {decl} }}")
                still_wanted_sets.add(name)
            for name in sorted(new_chains):
                chain_lines.append(f"add chain {FAMILY} {TABLE} {name}")
            for name, rules in sorted(new_chains.items()):
                chain_lines += _chain_lines(name, rules)[1:]
                written.add(name)
            still_wanted_chains |= set(new_chains)
        if old is not None:
            orphan_chains |= set(chains_of(old))
            orphan_sets |= set(sets_of(old))
    orphan_chains -= still_wanted_chains
    orphan_sets -= still_wanted_sets
    # deferred objects from the last sync that this one brings back are simply kept
    drop_chains = set(deferred_chains) - still_wanted_chains
    drop_sets = set(deferred_sets) - still_wanted_sets
    lines: list[str] = []
    lines += _drop_lines(drop_chains, drop_sets)
    lines += new_pick_lines + set_lines + chain_lines
    n_del = n_add = 0
    for m, _ in MAPS:  # deletions first: a changed value is delete + add of its key
        kind = "delete"
        lines += _element_lines(kind, dels[m], m)
        n_del += len(dels[m])
    for m, _ in MAPS:
        lines += _element_lines("add", adds[m], m)
        n_add += len(adds[m])
    return Plan(script="\n".join(lines) + ("\n" if lines else ""), full=False, elements_added=n_add,
                elements_deleted=n_del, chains_written=frozenset(written), deleted=frozenset(drop_chains | drop_sets),
                picks=frozenset(have_picks), refs=RefCounts(refs, counts), deferred_chains=frozenset(orphan_chains),
                deferred_sets=frozenset(orphan_sets), touched=frozenset(touched))


def render_cleanup() -> str:
    """Remove the table (everything of ours is in it; nothing else is touched)."""
    return f"delete table {FAMILY} {TABLE}\n"
