"""The proxy's per-change work is O(change), not O(services), and still means the same.

Three shortcuts an endpoint change at 10,000 services takes (bench/results/proxy.md), each
checked against the plain computation it replaces:
- `reflect(changes_only=True)` yields each batch's objects only, where the default yields a
  copy of the whole cache: a consumer replaying either ends with the same objects;
- the loop's state after a change is a snapshot over a shared base (`_Snapshot`), where it was
  a full copy: every snapshot keeps its contents while later changes come in;
- the nftables renderer hands back hairpin refcounts as a view of the ones it was given plus
  its changes (`RefCounts`), folded in place by the backend, where it copied all of them: the
  scripts equal those rendered from freshly counted refs."""

from __future__ import annotations

import builtins
import itertools
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address as IP
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netplane.errors import DecodeError
from netplane.proxy import nftables as nftmod
from netplane.proxy import nftables_render as R
from netplane.proxy import runner
from netplane.proxy.desired import Backend, LbEntry, LbKey, ProxyState, compute
from netplane.proxy.model import EndpointAddress, Endpoints, Service, ServicePort
from netplane.proxy.registry import endpoints_prefix, services_prefix
from netplane.store import Keys
from netplane.store.etcd import KeyValue, WatchEvent
from netplane.store.watch import View, reflect

NAMES = [f"s{i}" for i in range(5)]
IPS = [f"10.0.0.{i}" for i in range(1, 7)]  # few addresses: services share them (hairpin refcounts)


# ------------------------------------------------------------------ reflect(changes_only=True)
class FakeStore:
    """`list` then one `watch` of the given batches (then stop, as a consumer that is done)."""

    def __init__(self, items: list[KeyValue], batches: list[list[WatchEvent]], stop: threading.Event) -> None:
        self.items, self.batches, self.stop = items, batches, stop

    def list(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        return self.items, 1

    def watch(self, prefix: str, *, start_revision: int, stop: threading.Event) -> Iterator[builtins.list[WatchEvent]]:
        yield from self.batches
        self.stop.set()


def decode(key: str, raw: bytes) -> str:
    if raw == b"bad":
        raise DecodeError(f"{key}: bad")
    return raw.decode()


keys_st = st.sampled_from(["/p/a", "/p/b", "/p/c", "/p/d"])
value_st = st.sampled_from([b"1", b"2", b"bad"])
event_st = st.tuples(st.booleans(), keys_st, value_st)


@settings(deadline=None)
@given(st.dictionaries(keys_st, value_st), st.lists(st.lists(event_st, min_size=1, max_size=4), max_size=6))
def test_changes_only_views_replay_to_the_full_views(initial: dict[str, bytes], batches: list[list[Any]]) -> None:
    items = [KeyValue(k, v, 1, 1, 1, 0) for k, v in initial.items()]
    evs = [[WatchEvent("delete" if d else "put", k, None if d else v, 2 + i) for d, k, v in b] for i, b in enumerate(batches)]
    views: dict[bool, list[View[str]]] = {}
    for only in (False, True):
        stop = threading.Event()
        views[only] = list(reflect(FakeStore(items, evs, stop), "/p/", decode, stop=stop, changes_only=only))  # type: ignore[arg-type]
    mine: dict[str, str] = {}
    assert len(views[False]) == len(views[True]) == 1 + len(batches)
    for full, inc in zip(views[False], views[True], strict=True):
        assert (inc.changed, inc.revision) == (full.changed, full.revision)
        if inc.changed is None:
            assert dict(inc.objects) == dict(full.objects)
            mine = dict(inc.objects)
            continue
        assert dict(inc.objects) == {k: full.objects[k] for k in inc.changed if k in full.objects}
        for k in inc.changed:  # what the proxy's _absorb does
            if k in inc.objects:
                mine[k] = inc.objects[k]
            else:
                mine.pop(k, None)
        assert mine == dict(full.objects)


# ------------------------------------------------------------------ the loop's state snapshots
class NoBackend:
    name = "none"

    def sync(self, state: ProxyState, *, full: bool, changed: set[LbKey] | None = None) -> None: ...

    def dump(self, service: str | None = None) -> str:
        return ""

    def close(self) -> None: ...

    def cleanup(self) -> None: ...


def service(name: str, i: int, two_ports: bool) -> Service:
    ports = (ServicePort("http", "TCP", 80, 8080),) + ((ServicePort("dns", "UDP", 53, 53),) if two_ports else ())
    return Service(name=f"default/{name}", cluster_ip=IP(f"10.96.0.{i + 1}"), ports=ports)


op_st = st.tuples(st.sampled_from(["svc", "ep"]), st.sampled_from(NAMES), st.booleans(),
                  st.lists(st.sampled_from(IPS), unique=True, max_size=3))


@settings(deadline=None)
@given(st.lists(op_st, max_size=25), st.sampled_from([0, 1, 3, 64]))
def test_every_state_snapshot_keeps_its_entries_while_later_changes_come_in(ops: list[Any], compact_min: int) -> None:
    keys = Keys("/t")
    under = {"svc": services_prefix(keys), "ep": endpoints_prefix(keys)}
    comp = runner.ProxyComponent(None, keys, backend=NoBackend())  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "COMPACT_MIN", compact_min)
        for kind in ("svc", "ep"):
            comp._absorb(kind, View({}, 1, None))
        comp._recompute(None)
        taken: list[tuple[ProxyState, dict[LbKey, LbEntry]]] = [(comp.state, dict(comp.state.entries))]
        for rev, (kind, name, alive, ips) in enumerate(ops, start=2):
            k = under[kind] + "default/" + name
            obj: Any = None
            if alive:
                obj = (service(name, NAMES.index(name), len(ips) > 1) if kind == "svc" else
                       Endpoints(f"default/{name}", tuple(EndpointAddress(IP(ip)) for ip in ips)))
            names = comp._absorb(kind, View({k: obj} if alive else {}, rev, frozenset({k})))
            changed = comp._recompute(names)
            want = compute(comp._services, comp._endpoints).entries
            entries = comp.state.entries
            assert dict(entries) == dict(want) and len(entries) == len(want)
            assert dict(entries.items()) == dict(want) and set(entries.keys()) == set(want)
            assert sorted(e.key for e in entries.values()) == sorted(want) and len(entries.values()) == len(want)
            assert changed == {k for k in set(want) | set(taken[-1][1]) if want.get(k) != taken[-1][1].get(k)}
            for lk in [LbKey(f"default/{n}", p) for n in NAMES for p in ("http", "dns")]:
                assert (lk in entries) == (lk in want) and entries.get(lk) == want.get(lk)
            taken.append((comp.state, dict(want)))
            for state, then in taken:  # no snapshot moved on with the loop
                assert dict(state.entries) == then and sorted(state.entries) == sorted(then)


# ------------------------------------------------------------------ nftables hairpin refcounts
class FakeNft:
    def __init__(self) -> None:
        self.scripts: list[str] = []

    def apply(self, script: str, *, missing_ok: bool = False) -> None:
        self.scripts.append(script)

    def chains(self) -> set[str]:
        return set()

    def close(self) -> None: ...


state_st = st.dictionaries(st.sampled_from(NAMES), st.lists(st.sampled_from(IPS), unique=True, max_size=3))


def proxy_state(spec: dict[str, list[str]]) -> ProxyState:
    return ProxyState({LbKey(n, "http"): LbEntry(LbKey(n, "http"), IP(f"10.96.0.{NAMES.index(n) + 1}"), 80, "TCP",
                                                 tuple(sorted(Backend(IP(i), 8080) for i in ips)))
                       for n, ips in spec.items()})


@settings(deadline=None)
@given(st.lists(state_st, min_size=1, max_size=8))
def test_partial_syncs_render_as_from_freshly_counted_hairpin_refs(specs: list[dict[str, list[str]]]) -> None:
    be = nftmod.NftablesBackend()
    fake = FakeNft()
    be.nft = fake  # type: ignore[assignment]
    states = [proxy_state(s) for s in specs]
    be.sync(states[0], full=True)
    assert be._refs == dict(R.hairpin_refs(states[0]))
    for old, new in itertools.pairwise(states):
        picks, deferred = be._picks, (be._deferred_chains, be._deferred_sets)
        be.sync(new, full=False, changed=new.changed(old))
        fresh = R.render_partial(new, old, changed=new.changed(old), picks=picks, refs=R.hairpin_refs(old),
                                 deferred_chains=deferred[0], deferred_sets=deferred[1])
        assert be.last_plan is not None
        assert be.last_plan.script == fresh.script
        assert dict(be.last_plan.refs) == dict(fresh.refs) == dict(R.hairpin_refs(new)) == be._refs
