"""iptables rendering (pure): kube-proxy's layout under our names, partial sync, cleanup text."""

from __future__ import annotations

from ipaddress import IPv4Address as IP

from netplane.proxy import iptables_render as R
from netplane.proxy.desired import Backend, LbEntry, LbKey, ProxyState


def entry(name: str, n: int, *, vip: str = "10.96.0.10", proto: str = "TCP", node_port: int | None = None,
          affinity: int | None = None) -> LbEntry:
    k = LbKey(name, "http")
    return LbEntry(k, IP(vip), 80, proto, tuple(Backend(IP(f"10.244.1.{i + 1}"), 8080) for i in range(n)),  # type: ignore[arg-type]
                   node_port=node_port, affinity_timeout=affinity)


def st(*es: LbEntry) -> ProxyState:
    return ProxyState({e.key: e for e in es})


def rules(text: str, chain: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(f"-A {chain} ")]


def test_full_sync_layout_probabilities_and_hairpin() -> None:
    e = entry("web", 3)
    plan = R.render(st(e), previous=None)
    t = plan.text
    assert t.startswith("*nat\n") and "COMMIT\n*filter\n" in t and t.endswith("COMMIT\n")
    svc = R.svc_chain(e)
    assert f"-A {R.SERVICES} -m comment --comment \"web:http\" -d 10.96.0.10/32 -p tcp --dport 80 -j {svc}" in t
    svc_rules = rules(t, svc)
    assert "--probability 0.33333333333" in svc_rules[0] and "--probability 0.50000000000" in svc_rules[1]
    assert "statistic" not in svc_rules[2]  # the last endpoint is unconditional
    sep = R.sep_chain(e, e.backends[0])
    assert rules(t, sep) == [
        f"-A {sep} -m comment --comment \"web:http\" -s 10.244.1.1/32 -j {R.MARK_MASQ}",
        f"-A {sep} -m comment --comment \"web:http\" -p tcp -j DNAT --to-destination 10.244.1.1:8080",
    ]
    assert rules(t, R.SERVICES)[-1] == f"-A {R.SERVICES} -m addrtype --dst-type LOCAL -j {R.NODEPORTS}"
    assert f"-A {R.POSTROUTING} -j MASQUERADE" in t.replace(' -m comment --comment "netplane hairpin and nodeport"', "")
    assert rules(t, R.FILTER) == []  # has endpoints: nothing rejected


def test_chain_names_are_ours_short_and_stable() -> None:
    e = entry("web", 2)
    for c in R.chains_of(e):
        assert c.startswith(("NP-SVC-", "NP-SEP-")) and len(c) <= 28 and R.is_ours(c)
    assert R.svc_chain(e) == R.svc_chain(entry("web", 5))
    assert R.svc_chain(e) != R.svc_chain(entry("web", 2, proto="UDP"))
    assert not R.is_ours("KUBE-SERVICES") and not R.is_ours("INPUT")


def test_no_endpoints_rejects_vip_and_nodeport() -> None:
    t = R.render(st(entry("empty", 0, node_port=30080)), previous=None).text
    f = rules(t, R.FILTER)
    assert any("-d 10.96.0.10/32 -p tcp --dport 80 -j REJECT" in r for r in f)
    assert any("--dst-type LOCAL -p tcp --dport 30080 -j REJECT" in r for r in f)


def test_nodeport_goes_through_ext_chain_that_masquerades() -> None:
    e = entry("np", 2, node_port=30080)
    t = R.render(st(e), previous=None).text
    ext = R.ext_chain(e)
    assert f"-A {R.NODEPORTS} -m comment --comment \"np:http\" -p tcp --dport 30080 -j {ext}" in t
    assert rules(t, ext)[0].endswith(f"-j {R.MARK_MASQ}") and rules(t, ext)[1].endswith(f"-j {R.svc_chain(e)}")


def test_client_ip_affinity_uses_recent() -> None:
    e = entry("s", 2, affinity=30)
    t = R.render(st(e), previous=None).text
    svc_rules = rules(t, R.svc_chain(e))
    sep0 = R.sep_chain(e, e.backends[0])
    assert f"-m recent --name {sep0} --rcheck --seconds 30 --reap -j {sep0}" in svc_rules[0]
    assert f"-m recent --name {sep0} --set -j DNAT" in rules(t, sep0)[1]


def test_partial_sync_rewrites_only_changed_service() -> None:
    a, b = entry("a", 2, vip="10.96.0.1"), entry("b", 3, vip="10.96.0.2")
    old = st(a, b)
    b2 = entry("b", 2, vip="10.96.0.2")
    plan = R.render(st(a, b2), previous=old)
    assert R.svc_chain(a) not in plan.rewritten and R.SERVICES not in plan.rewritten
    assert R.svc_chain(b2) in plan.rewritten
    assert plan.deleted == {R.sep_chain(b, b.backends[2])}
    assert f"-X {R.sep_chain(b, b.backends[2])}" in plan.text
    assert "*filter" not in plan.text  # nothing changed there
    # the same, told which keys changed
    assert R.render(st(a, b2), previous=old, changed={b2.key}).text == plan.text


def test_partial_sync_removing_a_service_rewrites_dispatch_and_deletes_chains() -> None:
    a, b = entry("a", 1, vip="10.96.0.1"), entry("b", 1, vip="10.96.0.2")
    plan = R.render(st(a), previous=st(a, b))
    assert R.SERVICES in plan.rewritten
    assert plan.deleted == set(R.chains_of(b))
    assert R.svc_chain(b) not in "".join(rules(plan.text, R.SERVICES))


def test_endpoints_going_to_zero_updates_filter() -> None:
    a = entry("a", 1)
    plan = R.render(st(entry("a", 0)), previous=st(a))
    assert R.FILTER in plan.rewritten and len(rules(plan.text, R.FILTER)) == 1


def test_full_sync_deletes_stale_chains_of_ours_only() -> None:
    a = entry("a", 1)
    plan = R.render(st(a), previous=None, existing={"NP-SVC-OLDOLDOLDOLDOLDO", "KUBE-SVC-X", "INPUT", R.svc_chain(a)})
    assert plan.deleted == {"NP-SVC-OLDOLDOLDOLDOLDO"}


def test_cleanup_text_touches_only_our_chains() -> None:
    runs = R.render_cleanup({"NETPLANE-SERVICES", "NP-SEP-X", "KUBE-SERVICES", "PREROUTING", "NETPLANE-POSTROUTING"},
                            {"NETPLANE-SVC-FILTER", "INPUT", "NETPLANE-FORWARD"})
    t = "".join(runs)
    assert t.index(":NP-SEP-X") < t.index("-X NETPLANE-SERVICES")  # everything flushed before deletes
    assert "-X NETPLANE-SERVICES" in t and "-X NP-SEP-X" in t and "-X NETPLANE-SVC-FILTER" in t
    assert "NETPLANE-POSTROUTING" not in t and "NETPLANE-FORWARD" not in t  # the overlay's chains
    assert "KUBE" not in t and "PREROUTING" not in t and "-X INPUT" not in t


def test_large_sync_is_split_with_dispatch_last() -> None:
    es = [entry(f"s{i:04d}", 2, vip=f"10.97.{i // 250}.{i % 250 + 1}") for i in range(R.BATCH * 2 + 10)]
    plan = R.render(st(*es), previous=None)
    assert len(plan.batches) == 4  # three batches of service chains, then the dispatch run
    assert f":{R.MARK_MASQ}" in plan.batches[0]  # fixed chains before SEP chains use them
    assert all(R.SERVICES not in b for b in plan.batches[:-1])
    assert f":{R.SERVICES} - [0:0]" in plan.batches[-1] and "*filter" in plan.batches[-1]
    assert plan.text == "".join(plan.batches)
    small = R.render(st(*es[:3]), previous=None)
    assert len(small.batches) == 1  # small syncs stay one atomic run
