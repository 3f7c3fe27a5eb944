"""nftables backend specifics, in test namespaces: partial sync equals a full sync in the
kernel, cleanup removes our table and nothing else, an nft error is a clear KernelError that
leaves nothing half-applied and the proxy loop retries with back-off, dump and cleanup through
the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address as IP

import pytest

from netplane.errors import KernelError
from netplane.proxy import nftables_render as R
from netplane.proxy import registry
from netplane.proxy.api import ServiceAPI
from netplane.proxy.desired import Backend, LbEntry, LbKey, ProxyState, compute
from netplane.proxy.model import Service, ServicePort
from netplane.proxy.nftables import Nft, NftablesBackend
from netplane.proxy.runner import ProxyComponent
from netplane.store import EtcdStore, Keys


def entry(name: str, ips: list[str], vip: str, **kw: object) -> LbEntry:
    return LbEntry(LbKey(name, "http"), IP(vip), 80, "TCP", tuple(Backend(IP(i), 8080) for i in ips), **kw)  # type: ignore[arg-type]


def st(*es: LbEntry) -> ProxyState:
    return ProxyState({e.key: e for e in es})


CONFLICT = "table ip netplane {\n map service_ips {\n  type ipv4_addr : verdict\n }\n}\n"
OTHER = "table ip other {\n chain c {\n  type filter hook input priority 0; policy accept;\n  tcp dport 1 accept\n }\n}\n"


def nft(ns: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "nft", *args], input=stdin, capture_output=True, text=True,
                          check=False)


def table(ns: str) -> dict[str, object]:
    """Our table as comparable data: chains -> rules, maps/sets -> sorted elements (JSON)."""
    p = nft(ns, "-j", "list", "table", "ip", "netplane")
    if p.returncode != 0:
        return {}
    out: dict[str, object] = {}
    for o in json.loads(p.stdout)["nftables"]:
        if "rule" in o:
            r = o["rule"]
            # nft names the same match `th dport` or `tcp dport` depending on whether the map the
            # rule uses came from the kernel or from the same script (identical bytecode)
            text = json.dumps(r["expr"], sort_keys=True).replace('"protocol": "tcp"', '"protocol": "th"')
            out.setdefault(f"chain {r['chain']}", []).append(text)  # type: ignore[union-attr]
        elif "chain" in o:
            out.setdefault(f"chain {o['chain']['name']}", [])
        elif "map" in o or "set" in o:
            m = o.get("map") or o["set"]
            out[f"set {m['name']}"] = sorted(json.dumps(e, sort_keys=True) for e in m.get("elem", []))
    return out


S1 = st(entry("a", ["10.0.0.1", "10.0.0.2"], "10.96.0.1"), entry("b", ["10.0.0.3"], "10.96.0.2", node_port=30002),
        entry("c", [], "10.96.0.3", affinity_timeout=60), entry("d", ["10.0.0.1", "10.0.0.4"], "10.96.0.4", affinity_timeout=60))
S2 = st(entry("a", ["10.0.0.2", "10.0.0.7"], "10.96.0.1"), entry("c", ["10.0.0.4"], "10.96.0.3", affinity_timeout=60),
        entry("d", ["10.0.0.4"], "10.96.0.4", affinity_timeout=60), entry("e", [], "10.96.0.5"))


def test_partial_syncs_give_the_kernel_state_of_a_full_sync(make_netns: Callable[[str], str]) -> None:
    a, b = make_netns("nfa"), make_netns("nfb")
    inc = NftablesBackend(netns=a)
    inc.sync(S1, full=True)
    inc.sync(S2, full=False)
    inc.sync(S2, full=False)  # deletes the chains the previous partial sync left unreferenced
    full = NftablesBackend(netns=b)
    full.sync(S2, full=True)
    got, want = table(a), table(b)
    # partial syncs keep pick chains no service uses any more (the next full sync sweeps them)
    unused = {c for c in got if c.startswith(("chain pick-", "chain nodeport-pick-")) and c not in want}
    assert unused == {"chain pick-tcp-1", "chain nodeport-pick-tcp-1"}
    assert not any(f'"target": "{c[6:]}"' in json.dumps(got) for c in unused)  # nothing goes there
    assert {k: v for k, v in got.items() if k not in unused} == want
    assert inc.nft.via == "libnftables"  # python3-nftables is installed here (scripts/install.sh)
    inc.close()
    full.close()


def test_cleanup_removes_our_table_and_nothing_else(make_netns: Callable[[str], str]) -> None:
    ns = make_netns("nfc")
    assert nft(ns, "-f", "-", stdin=OTHER).returncode == 0
    subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "iptables", "-A", "INPUT", "-p", "udp", "--dport", "2", "-j", "ACCEPT"],
                   check=True, capture_output=True)
    be = NftablesBackend(netns=ns)
    be.sync(S1, full=True)
    assert table(ns)
    be.cleanup()
    assert table(ns) == {} and nft(ns, "list", "table", "ip", "netplane").returncode != 0
    left = nft(ns, "list", "ruleset").stdout
    assert "table ip other" in left and "tcp dport 1 accept" in left and "udp dport 2" in left, left
    be.cleanup()  # idempotent: no table is not an error


def test_nft_error_is_a_clear_kernel_error_and_nothing_is_half_applied(make_netns: Callable[[str], str]) -> None:
    ns = make_netns("nfe")
    # someone else's map under one of our names, with another type: our `add map` must fail
    assert nft(ns, "-f", "-", stdin=CONFLICT).returncode == 0
    before = table(ns)
    be = NftablesBackend(netns=ns)
    with pytest.raises(KernelError) as ei:
        be.sync(S1, full=True)
    msg = str(ei.value)
    assert msg.startswith("nft transaction on table ip netplane failed, nothing applied: Error:"), msg
    assert "\n" not in msg
    assert table(ns) == before  # not one chain or element of the failed transaction is there
    assert be.applied is None  # the next sync is a full one


def test_loop_retries_a_failed_sync_with_back_off_then_recovers(make_netns: Callable[[str], str], store: EtcdStore,
                                                                 keys: Keys) -> None:
    ns = make_netns("nfr")
    ServiceAPI(store, keys).create(Service(name="web", cluster_ip=IP(0), ports=(ServicePort("http", "TCP", 80, 8080),)),
                                   cluster_ip=None, endpoints=(IP("10.0.0.5"),))
    assert nft(ns, "-f", "-", stdin=CONFLICT).returncode == 0
    comp = ProxyComponent(store, keys, mode="nftables", node="n", backend=NftablesBackend(netns=ns), resync_interval=60)
    comp.start()
    try:
        deadline = time.monotonic() + 10
        delays: list[float] = []
        while len(delays) < 2 and time.monotonic() < deadline:
            if comp.stats.retry_delay and (not delays or delays[-1] != comp.stats.retry_delay):
                delays.append(comp.stats.retry_delay)
            time.sleep(0.02)
        assert comp.stats.errors >= 2 and not comp.synced.is_set()
        assert delays[:2] == [1.0, 2.0], delays  # doubling
        assert nft(ns, "delete", "table", "ip", "netplane").returncode == 0  # the conflict goes away
        assert comp.synced.wait(10), "the loop did not recover"
        assert comp.stats.retry_delay == 0.0
        assert "10.0.0.5 . 8080" in nft(ns, "list", "table", "ip", "netplane").stdout
    finally:
        comp.stop()
        comp.backend.cleanup()


def test_cli_dump_and_cleanup(make_netns: Callable[[str], str], store: EtcdStore, keys: Keys) -> None:
    ns = make_netns("nfd")
    api = ServiceAPI(store, keys)
    made = api.create(Service(name="web", cluster_ip=IP(0), ports=(ServicePort("http", "TCP", 80, 8080),)),
                      cluster_ip=None, endpoints=(IP("10.0.0.5"), IP("10.0.0.6")))
    api.create(Service(name="other", cluster_ip=IP(0), ports=(ServicePort("http", "TCP", 80, 8080),)), cluster_ip=None,
               endpoints=(IP("10.0.0.9"),))
    NftablesBackend(netns=ns).sync(compute(*registry.load(store, keys)), full=True)  # what the proxy would program
    base = [sys.executable, "-m", "netplane", "--etcd", store.config.endpoints[0], "--prefix", keys.prefix, "proxy"]
    p = subprocess.run([*base, "dump", "--netns", ns, "web"], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "# nftables (table ip netplane)" in out
    assert f"{made.cluster_ip} . tcp . 80 : goto pick-tcp-2   # default/web:http" in out, out
    assert f"{made.cluster_ip} . tcp . 80 . 1 : 10.0.0.6 . 8080   # default/web:http" in out, out
    assert "chain pick-tcp-2" in out and "numgen random mod 2 map @endpoints_tcp" in out, out
    assert "other:http" not in out and "10.0.0.9" not in out and "pick-tcp-1" not in out, out
    p = subprocess.run([*base, "cleanup", "--netns", ns, "--mode", "nftables"], capture_output=True, text=True, check=False)
    assert p.returncode == 0 and "removed nftables table ip netplane" in p.stdout, p.stderr
    assert table(ns) == {}
    assert Nft(netns=ns).chains() == set()


def test_full_sync_sweeps_unused_pick_chains(make_netns: Callable[[str], str]) -> None:
    ns = make_netns("nfp")
    be = NftablesBackend(netns=ns)
    be.sync(st(entry("a", ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "10.96.0.1")), full=True)
    be.sync(st(entry("a", ["10.0.0.1"], "10.96.0.1")), full=False)
    assert {"pick-tcp-1", "pick-tcp-3"} <= be.nft.chains()  # partial syncs keep them
    be.sync(st(entry("a", ["10.0.0.1"], "10.96.0.1")), full=True)
    assert "pick-tcp-3" not in be.nft.chains() and "pick-tcp-1" in be.nft.chains()
    assert R.TABLE == "netplane"
    be.cleanup()
