"""The proxy's per-change work is O(change), not O(services), and still means the same.

One shortcut an endpoint change at 10,000 services takes (bench/results/proxy.md), checked
against the plain computation it replaces:
- the nftables renderer hands back hairpin refcounts as a view of the ones it was given plus
  its changes (`RefCounts`), folded in place by the backend, where it copied all of them: the
  scripts equal those rendered from freshly counted refs."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address as IP

from hypothesis import given, settings
from hypothesis import strategies as st

from netplane.proxy import nftables as nftmod
from netplane.proxy import nftables_render as R
from netplane.proxy.desired import Backend, LbEntry, LbKey, ProxyState

NAMES = [f"s{i}" for i in range(5)]
IPS = [f"10.0.0.{i}" for i in range(1, 7)]  # few addresses: services share them (hairpin refcounts)


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
