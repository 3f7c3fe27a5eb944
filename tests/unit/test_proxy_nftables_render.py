"""The nftables renderer (pure): full and partial scripts for table ip netplane.

The strongest check here replays a partial script's element changes on the elements of the
previous full script and compares with a full script of the new state: a partial sync must
leave the maps exactly as a full sync would."""

from __future__ import annotations

import re
from ipaddress import IPv4Address as IP

import pytest

from netplane.proxy import nftables_render as R
from netplane.proxy.desired import Backend, LbEntry, LbKey, ProxyState


def entry(name: str, ips: list[str], vip: str, *, proto: str = "TCP", port: int = 80, **kw: object) -> LbEntry:
    return LbEntry(LbKey(name, "http"), IP(vip), port, proto, tuple(Backend(IP(i), 8080) for i in ips), **kw)  # type: ignore[arg-type]


def st(*es: LbEntry) -> ProxyState:
    return ProxyState({e.key: e for e in es})


ELEM = re.compile(r"^(add|delete) element ip netplane (\S+) \{ (.*) \}$")


def elements(script: str) -> dict[tuple[str, str], str | None]:
    """(map, key) -> value of every `add element` line (a full script adds into flushed maps)."""
    out: dict[tuple[str, str], str | None] = {}
    apply(out, script)
    return out


def apply(table: dict[tuple[str, str], str | None], script: str) -> None:
    """Replay a script's element lines on `table`, failing like the kernel would (ENOENT on a
    missing key, EEXIST on a present one)."""
    for ln in script.splitlines():
        m = ELEM.match(ln)
        if not m:
            continue
        verb, name, body = m.groups()
        for item in body.split(", "):
            key, _, value = item.partition(" : ")
            if verb == "delete":
                assert (name, key) in table, f"ENOENT: {name} {key}"
                del table[(name, key)]
            else:
                assert (name, key) not in table, f"EEXIST: {name} {key}"
                table[(name, key)] = value or None


def chains_added(script: str) -> set[str]:
    return {ln.split()[4] for ln in script.splitlines() if ln.startswith("add chain ip netplane ")}


S1 = st(entry("a", ["10.0.0.1", "10.0.0.2"], "10.96.0.1"),
        entry("b", ["10.0.0.3"], "10.96.0.2", node_port=30002),
        entry("c", [], "10.96.0.3", affinity_timeout=60),
        entry("d", ["10.0.0.1", "10.0.0.4"], "10.96.0.4", affinity_timeout=60, node_port=30004),
        entry("u", ["10.0.0.5", "10.0.0.6", "10.0.0.7"], "10.96.0.5", proto="UDP", port=53, node_port=30053))
S2 = st(entry("a", ["10.0.0.2", "10.0.0.7"], "10.96.0.1"),
        entry("c", ["10.0.0.4"], "10.96.0.3", affinity_timeout=60),
        entry("d", ["10.0.0.4"], "10.96.0.4", affinity_timeout=60, node_port=30004),
        entry("e", [], "10.96.0.6", node_port=30006),
        entry("u", ["10.0.0.5", "10.0.0.6"], "10.96.0.5", proto="UDP", port=53, node_port=30053))


def partial(new: ProxyState, old: ProxyState, **kw: object) -> R.Plan:
    full = R.render_full(old)
    return R.render_partial(new, old, picks=full.picks, refs=full.refs, **kw)  # type: ignore[arg-type]


def test_full_script_is_one_table_with_kube_proxy_maps_and_base_chains() -> None:
    text = R.render_full(S1).script
    lines = text.splitlines()
    assert lines[0] == "add table ip netplane"
    assert all(re.search(r" ip netplane( |$)", ln) for ln in lines), "every statement names our table"
    assert "flush ruleset" not in text and "delete table" not in text
    for m in ("service_ips", "service_nodeports", "no_endpoint_services", "no_endpoint_nodeports"):
        assert f"add map ip netplane {m} {{ type " in text and f"flush map ip netplane {m}" in text
    assert "add chain ip netplane nat-prerouting { type nat hook prerouting priority dstnat ; }" in text
    assert "add rule ip netplane services ip daddr . meta l4proto . th dport vmap @service_ips" in text
    # a service with 2 endpoints goes to the shared pick chain; its endpoints are slot elements
    els = elements(text)
    assert els[("service_ips", "10.96.0.1 . tcp . 80")] == "goto pick-tcp-2"
    assert els[("endpoints_tcp", "10.96.0.1 . tcp . 80 . 0")] == "10.0.0.1 . 8080"
    assert els[("endpoints_tcp", "10.96.0.1 . tcp . 80 . 1")] == "10.0.0.2 . 8080"
    assert "add rule ip netplane pick-tcp-2 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @endpoints_tcp" in text
    # UDP services use their own maps and pick chains
    assert els[("service_ips", "10.96.0.5 . udp . 53")] == "goto pick-udp-3"
    assert els[("service_nodeports", "udp . 30053")] == "goto nodeport-pick-udp-3"
    assert els[("nodeport_endpoints_udp", "udp . 30053 . 2")] == "10.0.0.7 . 8080"
    assert "add rule ip netplane nodeport-pick-udp-3 jump mark-for-masquerade" in text


def test_no_endpoints_rejects_and_nodeport_marks_for_masquerade() -> None:
    els = elements(R.render_full(S2).script)
    assert els[("no_endpoint_services", "10.96.0.6 . tcp . 80")] == "goto reject-chain"
    assert els[("no_endpoint_nodeports", "tcp . 30006")] == "goto reject-chain"
    assert ("service_ips", "10.96.0.6 . tcp . 80") not in els
    text = R.render_full(S2).script
    assert "add rule ip netplane reject-chain reject" in text
    assert "add rule ip netplane masquerading meta mark & 0x4000 == 0 return" in text
    assert "add rule ip netplane mark-for-masquerade meta mark set meta mark or 0x4000" in text


def test_affinity_service_keeps_kube_proxy_chains_and_a_timeout_set() -> None:
    d = S1.entries[LbKey("d", "http")]
    text = R.render_full(S1).script
    svc = R.service_chain(d)
    assert re.fullmatch(r"service-[A-Z2-7]{8}-d/tcp/http", svc)
    ep = R.endpoint_chain(d, d.backends[0])
    aff = R.affinity_set(d, d.backends[0])
    assert ep.endswith("-d/tcp/http__10.0.0.1/8080") and aff.startswith("affinity-")
    assert f"add set ip netplane {aff} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }}" in text
    assert f"flush set ip netplane {aff}" not in text  # the clients it remembers survive a full sync
    assert f"add rule ip netplane {svc} ip saddr @{aff} goto {ep}" in text
    assert f"add rule ip netplane {ep} update @{aff} {{ ip saddr }}" in text
    assert f"add rule ip netplane {ep} meta l4proto tcp dnat to 10.0.0.1:8080" in text
    assert re.search(rf"add rule ip netplane {re.escape(svc)} numgen random mod 2 vmap \{{ 0 : goto {re.escape(ep)}, 1 : goto ", text)
    els = elements(text)
    assert els[("service_ips", "10.96.0.4 . tcp . 80")] == f"goto {svc}"
    assert els[("service_nodeports", "tcp . 30004")] == f"goto {R.external_chain(d)}"


def test_chain_names_are_stable_hashes_of_service_port_and_protocol() -> None:
    a, u = S1.entries[LbKey("a", "http")], entry("a", ["10.0.0.1"], "10.96.0.1", proto="UDP")
    assert R.service_chain(a) == R.service_chain(entry("a", ["10.9.9.9"], "10.96.9.9"))  # not the VIP or endpoints
    assert R.service_chain(a) != R.service_chain(u)
    assert R.endpoint_chain(a, a.backends[0]) != R.endpoint_chain(a, a.backends[1])
    assert all(len(n) <= 256 for n in (R.service_chain(a), R.endpoint_chain(a, a.backends[0])))


@pytest.mark.parametrize("old,new", [(S1, S2), (S2, S1), (S1, st()), (st(), S1)])
def test_partial_script_leaves_the_maps_as_a_full_sync_would(old: ProxyState, new: ProxyState) -> None:
    table = elements(R.render_full(old).script)
    apply(table, partial(new, old).script)
    assert table == elements(R.render_full(new).script)


def test_endpoint_change_touches_only_that_service_and_adds_no_jump() -> None:
    old = st(*(entry(f"s{i}", [f"10.1.{i}.{j}" for j in range(1, 6)], f"10.96.1.{i}") for i in range(50)))
    ents = dict(old.entries)
    k = LbKey("s7", "http")
    ents[k] = entry("s7", [f"10.2.7.{j}" for j in range(1, 6)], "10.96.1.7")
    new = ProxyState(ents)
    plan = partial(new, old, changed={k})
    lines = plan.script.splitlines()
    assert lines and all(ln.startswith(("add element", "delete element")) for ln in lines), plan.script
    assert "goto" not in plan.script and "jump" not in plan.script  # no verdict: no graph re-validation
    assert "10.96.1.7 . tcp . 80" in plan.script and "10.96.1.8 " not in plan.script
    assert plan.elements_deleted == 5 + 5 and plan.elements_added == 5 + 5  # slots, hairpin pairs
    assert plan.touched == {"s7"} and plan.chains_written == frozenset()


def test_endpoint_count_change_adds_its_pick_chain_once() -> None:
    old = st(entry("a", ["10.0.0.1", "10.0.0.2"], "10.96.0.1"), entry("b", ["10.0.0.3", "10.0.0.4"], "10.96.0.2"))
    new = st(entry("a", ["10.0.0.1", "10.0.0.2", "10.0.0.5"], "10.96.0.1"), entry("b", ["10.0.0.3", "10.0.0.4", "10.0.0.6"], "10.96.0.2"))
    plan = partial(new, old)
    assert plan.script.count("add chain ip netplane pick-tcp-3") == 1
    assert "delete element ip netplane service_ips { 10.96.0.1 . tcp . 80, 10.96.0.2 . tcp . 80 }" in plan.script
    assert "goto pick-tcp-3" in plan.script and "pick-tcp-3" in plan.picks and "pick-tcp-2" in plan.picks
    again = R.render_partial(new, new, picks=plan.picks, refs=plan.refs)
    assert again.script == ""  # nothing changed, nothing written


def test_removed_affinity_chains_are_deleted_by_the_next_sync_not_this_one() -> None:
    d = S1.entries[LbKey("d", "http")]
    gone_ep, gone_set = R.endpoint_chain(d, d.backends[0]), R.affinity_set(d, d.backends[0])
    first = partial(S2, S1)  # d loses endpoint 10.0.0.1
    assert f"delete chain ip netplane {gone_ep}" not in first.script
    assert gone_ep in first.deferred_chains and gone_set in first.deferred_sets
    assert R.endpoint_chain(d, d.backends[1]) not in first.deferred_chains  # still used
    second = R.render_partial(S2, S2, picks=first.picks, refs=first.refs, deferred_chains=first.deferred_chains,
                              deferred_sets=first.deferred_sets)
    lines = second.script.splitlines()
    flush, delete, dset = (f"flush chain ip netplane {gone_ep}", f"delete chain ip netplane {gone_ep}",
                           f"delete set ip netplane {gone_set}")
    assert lines.index(flush) < lines.index(delete) < lines.index(dset)
    assert second.deferred_chains == frozenset()


def test_hairpin_element_stays_while_another_service_uses_the_address() -> None:
    old = st(entry("a", ["10.0.0.1"], "10.96.0.1"), entry("b", ["10.0.0.1"], "10.96.0.2"))
    new = st(entry("b", ["10.0.0.1"], "10.96.0.2"))
    plan = partial(new, old)
    assert "hairpin" not in plan.script and plan.refs == {IP("10.0.0.1"): 1}
    gone = R.render_partial(st(), new, picks=plan.picks, refs=plan.refs)
    assert "delete element ip netplane hairpin { 10.0.0.1 . 10.0.0.1 }" in gone.script and gone.refs == {}
    assert "add rule ip netplane masquerading ct status dnat ip saddr . ip daddr @hairpin masquerade" in R.render_full(new).script


def test_full_sync_deletes_only_stale_chains_and_sets_of_ours() -> None:
    d = S1.entries[LbKey("d", "http")]
    existing = set(R.FIXED_CHAINS) | {"pick-tcp-9", R.endpoint_chain(d, d.backends[0]), R.service_chain(d)}
    plan = R.render_full(S2, existing_chains=existing, existing_sets=R.affinity_sets_of_chains(existing))
    assert plan.deleted == {"pick-tcp-9", R.endpoint_chain(d, d.backends[0]), R.affinity_set(d, d.backends[0])}
    assert R.service_chain(d) not in plan.deleted  # d still has affinity and an endpoint
    assert not any(c in plan.deleted for c in R.FIXED_CHAINS)


def test_long_element_lists_are_split_into_statements_of_one_transaction() -> None:
    many = st(*(entry(f"s{i}", ["10.0.0.1"], str(IP(int(IP("10.96.0.0")) + i))) for i in range(2500)))
    text = R.render_full(many).script
    assert text.count("add element ip netplane service_ips {") == 3
    assert len(elements(text)) == 2500 * 2 + 1  # service_ips + endpoints_tcp + one hairpin pair


def test_cleanup_deletes_only_our_table() -> None:
    assert R.render_cleanup() == "delete table ip netplane\n"
