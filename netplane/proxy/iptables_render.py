"""Rendering of the desired proxy state as `iptables-restore --noflush` input (pure).

kube-proxy's layout under our own names (DESIGN.md §4):

    nat PREROUTING, OUTPUT   -> NETPLANE-SERVICES
    NETPLANE-SERVICES        -d VIP -p P --dport PORT -j NP-SVC-<h>        (one per service port)
                             -m addrtype --dst-type LOCAL -j NETPLANE-NODEPORTS   (last)
    NETPLANE-NODEPORTS       -p P --dport NODEPORT -j NP-EXT-<h>
    NP-EXT-<h>               -j NETPLANE-MARK-MASQ ; -j NP-SVC-<h>
    NP-SVC-<h>               [ClientIP: -m recent --rcheck per endpoint]
                             endpoint i of n: -m statistic --probability 1/(n-i) -j NP-SEP-<h>
    NP-SEP-<h>               -s EP -j NETPLANE-MARK-MASQ (hairpin) ; -j DNAT --to EP:PORT
    NETPLANE-MARK-MASQ       -j MARK --set-xmark 0x4000/0x4000
    nat POSTROUTING          -> NETPLANE-SVC-POSTROUTING: masquerade marked packets
    filter INPUT/FORWARD/OUTPUT (ctstate NEW) -> NETPLANE-SVC-FILTER: REJECT services without
                             endpoints (VIP and nodePort)

A declared chain (`:NAME - [0:0]`) is flushed by iptables-restore even with --noflush, so a
partial sync declares and rewrites only the chains of changed services (plus the dispatch chains
when the set of frontends changed) and deletes the chains that are no longer wanted.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from netplane.proxy.desired import Backend, LbEntry, LbKey, ProxyState

SERVICES = "NETPLANE-SERVICES"
NODEPORTS = "NETPLANE-NODEPORTS"
POSTROUTING = "NETPLANE-SVC-POSTROUTING"  # not NETPLANE-POSTROUTING: the overlay owns that one
MARK_MASQ = "NETPLANE-MARK-MASQ"
FILTER = "NETPLANE-SVC-FILTER"
MASQ_MARK = "0x4000"
CHAIN_PREFIXES = ("NP-SVC-", "NP-SEP-", "NP-EXT-")
BATCH = 250  # services per iptables-restore run in a large sync
NAT_FIXED = (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ)
FILTER_FIXED = (FILTER,)

# (table, built-in chain, rule spec) of the jumps we insert into built-in chains.
JUMPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("nat", "PREROUTING", ("-m", "comment", "--comment", "netplane services", "-j", SERVICES)),
    ("nat", "OUTPUT", ("-m", "comment", "--comment", "netplane services", "-j", SERVICES)),
    ("nat", "POSTROUTING", ("-m", "comment", "--comment", "netplane masquerade", "-j", POSTROUTING)),
    ("filter", "INPUT", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "netplane reject", "-j", FILTER)),
    ("filter", "FORWARD", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "netplane reject", "-j", FILTER)),
    ("filter", "OUTPUT", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "netplane reject", "-j", FILTER)),
)


def _hash(*parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def svc_chain(e: LbEntry) -> str:
    return "NP-SVC-" + _hash(str(e.key), e.protocol)


def ext_chain(e: LbEntry) -> str:
    return "NP-EXT-" + _hash(str(e.key), e.protocol)


def sep_chain(e: LbEntry, b: Backend) -> str:
    return "NP-SEP-" + _hash(str(e.key), e.protocol, f"{b.ip}:{b.port}")


def is_ours(chain: str) -> bool:
    return chain.startswith(CHAIN_PREFIXES) or chain in NAT_FIXED or chain in FILTER_FIXED


def chains_of(e: LbEntry) -> list[str]:
    out = [svc_chain(e)] + [sep_chain(e, b) for b in e.backends]
    if e.node_port is not None:
        out.append(ext_chain(e))
    return out


def _frontends(state: ProxyState, keys: set[LbKey]) -> set[tuple[object, ...]]:
    """The dispatch-relevant part of the entries in `keys` (only these can differ)."""
    out: set[tuple[object, ...]] = set()
    for k in keys:
        e = state.entries.get(k)
        if e is not None:
            out.add((k, e.vip, e.port, e.protocol, e.node_port))
    return out


def _rejects(state: ProxyState, keys: set[LbKey]) -> set[tuple[object, ...]]:
    out: set[tuple[object, ...]] = set()
    for k in keys:
        e = state.entries.get(k)
        if e is not None and not e.backends:
            out.add((k, e.vip, e.port, e.protocol, e.node_port))
    return out


@dataclass(frozen=True)
class Plan:
    """What one iptables-restore run will do, plus its text."""

    text: str
    rewritten: frozenset[str]
    deleted: frozenset[str]
    batches: tuple[str, ...] = ()  # `text` split into iptables-restore runs, applied in order


def _comment(e: LbEntry) -> list[str]:
    return ["-m", "comment", "--comment", f'"{e.key}"']


def _svc_rules(e: LbEntry) -> list[str]:
    chain = svc_chain(e)
    lines = []
    proto = e.protocol.lower()
    n = len(e.backends)
    if e.affinity_timeout is not None:
        for b in e.backends:
            sep = sep_chain(e, b)
            lines.append(" ".join([
                "-A", chain, *_comment(e), "-m", "recent", "--name", sep, "--rcheck",
                "--seconds", str(e.affinity_timeout), "--reap", "-j", sep,
            ]))
    for i, b in enumerate(e.backends):
        sep = sep_chain(e, b)
        stat = [] if i == n - 1 else ["-m", "statistic", "--mode", "random", "--probability", f"{1.0 / (n - i):.11f}"]
        lines.append(" ".join(["-A", chain, *_comment(e), *stat, "-j", sep]))
    for b in e.backends:
        sep = sep_chain(e, b)
        lines.append(" ".join(["-A", sep, *_comment(e), "-s", f"{b.ip}/32", "-j", MARK_MASQ]))
        recent = ["-m", "recent", "--name", sep, "--set"] if e.affinity_timeout is not None else []
        lines.append(" ".join(["-A", sep, *_comment(e), "-p", proto, *recent, "-j", "DNAT", "--to-destination", f"{b.ip}:{b.port}"]))
    if e.node_port is not None:
        ext = ext_chain(e)
        lines.append(" ".join(["-A", ext, *_comment(e), "-j", MARK_MASQ]))
        lines.append(" ".join(["-A", ext, *_comment(e), "-j", chain]))
    return lines


def _dispatch_rules(state: ProxyState) -> list[str]:
    lines = []
    for _, e in sorted(state.entries.items()):
        proto = e.protocol.lower()
        lines.append(" ".join([
            "-A", SERVICES, *_comment(e), "-d", f"{e.vip}/32", "-p", proto, "--dport", str(e.port), "-j", svc_chain(e),
        ]))
    for _, e in sorted(state.entries.items()):
        if e.node_port is not None:
            lines.append(" ".join([
                "-A", NODEPORTS, *_comment(e), "-p", e.protocol.lower(), "--dport", str(e.node_port), "-j", ext_chain(e),
            ]))
    lines.append(f"-A {SERVICES} -m addrtype --dst-type LOCAL -j {NODEPORTS}")
    return lines


def _filter_rules(state: ProxyState) -> list[str]:
    lines = []
    for _, e in sorted(state.entries.items()):
        if e.backends:
            continue
        proto = e.protocol.lower()
        lines.append(" ".join([
            "-A", FILTER, *_comment(e), "-d", f"{e.vip}/32", "-p", proto, "--dport", str(e.port),
            "-j", "REJECT", "--reject-with", "icmp-port-unreachable",
        ]))
        if e.node_port is not None:
            lines.append(" ".join([
                "-A", FILTER, *_comment(e), "-m", "addrtype", "--dst-type", "LOCAL", "-p", proto,
                "--dport", str(e.node_port), "-j", "REJECT", "--reject-with", "icmp-port-unreachable",
            ]))
    return lines


def _fixed_nat_rules() -> list[str]:
    return [
        f"-A {MARK_MASQ} -j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}",
        f"-A {POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A {POSTROUTING} -j MARK --set-xmark 0x0/{MASQ_MARK}",
        f"-A {POSTROUTING} -m comment --comment \"netplane hairpin and nodeport\" -j MASQUERADE",
    ]


def render(
    state: ProxyState, *, previous: ProxyState | None, existing: Iterable[str] = (), changed: Iterable[LbKey] | None = None
) -> Plan:
    """Full sync when `previous` is None (every chain rewritten, every other chain of ours in
    `existing` deleted); otherwise a partial sync of what changed since `previous`."""
    full = previous is None
    prev = previous if previous is not None else ProxyState({})
    if full:
        changed = set(state.entries)
    elif changed is None:
        changed = state.changed(prev)
    else:
        changed = set(changed)
    if full:
        want_chains: set[str] = set()
        for e in state.entries.values():
            want_chains.update(chains_of(e))
        stale = {c for c in existing if c.startswith(CHAIN_PREFIXES)} - want_chains
    else:  # only the changed entries' chains can appear or disappear (names hash the key)
        stale = set()
        keep: set[str] = set()
        for k in changed:
            old = prev.entries.get(k)
            if old is not None:
                stale.update(chains_of(old))
            new = state.entries.get(k)
            if new is not None:
                keep.update(chains_of(new))
        stale -= keep
    rewrite_dispatch = full or _frontends(state, changed) != _frontends(prev, changed)
    rewrite_filter = full or _rejects(state, changed) != _rejects(prev, changed)

    rewritten: set[str] = set()
    first: list[str] = []  # fixed chains, before any service chain refers to them
    if full:
        first += [f":{c} - [0:0]" for c in (MARK_MASQ, POSTROUTING)] + _fixed_nat_rules()
        rewritten.update((MARK_MASQ, POSTROUTING))
    svc_blocks: list[list[str]] = []
    for k in sorted(changed):
        ce = state.entries.get(k)
        if ce is None:
            continue
        block = []
        for c in chains_of(ce):
            block.append(f":{c} - [0:0]")
            rewritten.add(c)
        svc_blocks.append(block + _svc_rules(ce))
    last: list[str] = []  # what makes new chains reachable and old ones unreachable, at once
    if rewrite_dispatch:
        last += [f":{SERVICES} - [0:0]", f":{NODEPORTS} - [0:0]", *_dispatch_rules(state)]
        rewritten.update((SERVICES, NODEPORTS))
    last += [f":{c} - [0:0]" for c in sorted(stale)] + [f"-X {c}" for c in sorted(stale)]
    filt: list[str] = []
    if rewrite_filter:
        filt = ["*filter", f":{FILTER} - [0:0]", *_filter_rules(state), "COMMIT"]
        rewritten.add(FILTER)

    # iptables-nft-restore is quadratic in the chains one run creates (10,000 services in one
    # run: minutes); in runs of BATCH services it is linear. Splitting is safe: service chains
    # are rewritten whole (each atomically) before the last run makes them reachable.
    batches: list[str] = []
    groups = [svc_blocks[i : i + BATCH] for i in range(0, len(svc_blocks), BATCH)] or [[]]
    if len(groups) == 1:
        lines = ["*nat", *first, *(ln for blk in groups[0] for ln in blk), *last, "COMMIT", *filt]
        batches.append("\n".join(lines) + "\n")
    else:
        for i, g in enumerate(groups):
            lines = ["*nat", *(first if i == 0 else []), *(ln for blk in g for ln in blk), "COMMIT"]
            batches.append("\n".join(lines) + "\n")
        batches.append("\n".join(["*nat", *last, "COMMIT", *filt]) + "\n")
    return Plan(text="".join(batches), rewritten=frozenset(rewritten), deleted=frozenset(stale), batches=tuple(batches))


def render_cleanup(existing_nat: Iterable[str], existing_filter: Iterable[str], *, batch: int = 1500) -> list[str]:
    """iptables-restore runs that flush, then delete, every chain of ours (the built-in jumps
    must be removed first). Once all are flushed none refers to another, so deletes may go in
    any order; batching keeps nft-restore linear."""
    out: list[str] = []
    for table, chains in (("nat", sorted(c for c in existing_nat if is_ours(c))), ("filter", sorted(c for c in existing_filter if is_ours(c)))):
        for i in range(0, len(chains), batch):
            out.append("\n".join([f"*{table}", *[f":{c} - [0:0]" for c in chains[i : i + batch]], "COMMIT"]) + "\n")
        for i in range(0, len(chains), batch):
            out.append("\n".join([f"*{table}", *[f"-X {c}" for c in chains[i : i + batch]], "COMMIT"]) + "\n")
    return out
