"""iptables backend specifics, in a test namespace: partial sync equals a full sync, restart
removes stale chains, cleanup removes exactly ours (a foreign chain and rule survive), dump and
cleanup through the CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from ipaddress import IPv4Address as IP

from netplane.proxy import iptables_render as R
from netplane.proxy import registry
from netplane.proxy.api import ServiceAPI
from netplane.proxy.desired import Backend, LbEntry, LbKey, ProxyState
from netplane.proxy.iptables import IptablesBackend
from netplane.proxy.model import Service, ServicePort
from netplane.store import EtcdStore, Keys


def entry(name: str, ips: list[str], vip: str, **kw: object) -> LbEntry:
    return LbEntry(LbKey(name, "http"), IP(vip), 80, "TCP", tuple(Backend(IP(i), 8080) for i in ips), **kw)  # type: ignore[arg-type]


def st(*es: LbEntry) -> ProxyState:
    return ProxyState({e.key: e for e in es})


def ours(ns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", ns, "iptables-save"], capture_output=True, text=True, check=True).stdout
    keep = []
    for ln in out.splitlines():
        if ln.startswith(":") and R.is_ours(ln[1:].split()[0]):
            keep.append(ln.split()[0])
        elif ln.startswith("-A") and (R.is_ours(ln.split()[1]) or R.is_ours(ln.split()[-1])):
            keep.append(ln)
    return sorted(keep)


def test_partial_sync_gives_the_same_kernel_state_as_a_full_sync(make_netns: Callable[[str], str]) -> None:
    a, b = make_netns("ipa"), make_netns("ipb")
    s1 = st(entry("a", ["10.0.0.1", "10.0.0.2"], "10.96.0.1"), entry("b", ["10.0.0.3"], "10.96.0.2", node_port=30002),
            entry("c", [], "10.96.0.3", affinity_timeout=60))
    s2 = st(entry("a", ["10.0.0.2", "10.0.0.7"], "10.96.0.1"), entry("c", ["10.0.0.4"], "10.96.0.3", affinity_timeout=60),
            entry("d", [], "10.96.0.4"))
    inc = IptablesBackend(netns=a)
    inc.sync(s1, full=True)
    inc.sync(s2, full=False)
    assert inc.last_plan is not None and R.svc_chain(s2.entries[LbKey("a", "http")]) in inc.last_plan.rewritten
    full = IptablesBackend(netns=b)
    full.sync(s2, full=True)
    assert ours(a) == ours(b)
    # and a partial sync that changes nothing rewrites nothing
    inc.sync(s2, full=False)
    assert inc.last_plan is not None and inc.last_plan.rewritten == frozenset()


def test_restart_full_sync_deletes_chains_of_deleted_services(make_netns: Callable[[str], str]) -> None:
    ns = make_netns("ipr")
    IptablesBackend(netns=ns).sync(st(entry("a", ["10.0.0.1"], "10.96.0.1"), entry("gone", ["10.0.0.9"], "10.96.0.9")), full=True)
    fresh = IptablesBackend(netns=ns)  # a restarted proxy knows nothing of the previous run
    fresh.sync(st(entry("a", ["10.0.0.1"], "10.96.0.1")), full=True)
    gone = entry("gone", ["10.0.0.9"], "10.96.0.9")
    names = " ".join(ours(ns))
    assert R.svc_chain(gone) not in names and R.sep_chain(gone, gone.backends[0]) not in names
    assert names.count(":NETPLANE-SERVICES") == 1 and names.count("-j NETPLANE-SERVICES") == 2  # jumps not duplicated


def test_cleanup_removes_exactly_ours(make_netns: Callable[[str], str]) -> None:
    ns = make_netns("ipc")

    def ipt(*a: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, "iptables", *a], check=True, capture_output=True)

    ipt("-t", "nat", "-N", "SOMEONE-ELSE")
    ipt("-t", "nat", "-N", "NETPLANE-POSTROUTING")  # the overlay's chain: same prefix, not ours
    ipt("-t", "nat", "-A", "POSTROUTING", "-j", "NETPLANE-POSTROUTING")
    ipt("-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "1", "-j", "SOMEONE-ELSE")
    ipt("-A", "INPUT", "-p", "udp", "--dport", "2", "-j", "ACCEPT")
    be = IptablesBackend(netns=ns)
    be.sync(st(entry("a", ["10.0.0.1"], "10.96.0.1", node_port=30001), entry("e", [], "10.96.0.2")), full=True)
    assert ours(ns)
    be.cleanup()
    assert ours(ns) == []
    left = subprocess.run(["ip", "netns", "exec", ns, "iptables-save"], capture_output=True, text=True, check=True).stdout
    assert ":SOMEONE-ELSE" in left and "-j SOMEONE-ELSE" in left and "--dport 2 -j ACCEPT" in left
    assert ":NETPLANE-POSTROUTING" in left and "-A POSTROUTING -j NETPLANE-POSTROUTING" in left
    be.cleanup()  # idempotent


def test_cli_dump_and_cleanup(make_netns: Callable[[str], str], store: EtcdStore, keys: Keys) -> None:
    ns = make_netns("ipd")
    api = ServiceAPI(store, keys)
    made = api.create(Service(name="web", cluster_ip=IP(0), ports=(ServicePort("http", "TCP", 80, 8080),)),
                      cluster_ip=None, endpoints=(IP("10.0.0.5"),))
    api.create(Service(name="other", cluster_ip=IP(0), ports=(ServicePort("http", "TCP", 80, 8080),)), cluster_ip=None)
    from netplane.proxy.desired import compute

    svcs, eps = registry.load(store, keys)  # what the proxy would program
    IptablesBackend(netns=ns).sync(compute(svcs, eps), full=True)
    base = [sys.executable, "-m", "netplane", "--etcd", store.config.endpoints[0], "--prefix", keys.prefix, "proxy"]
    p = subprocess.run([*base, "dump", "--netns", ns, "web"], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert f"-d {made.cluster_ip}/32" in p.stdout and "DNAT --to-destination 10.0.0.5:8080" in p.stdout
    assert '"other:http"' not in p.stdout and "other:http" not in p.stdout
    assert ":NETPLANE-SERVICES - [0:0]" in p.stdout and ":NP-SVC-" in p.stdout and ":NP-SEP-" in p.stdout
    p = subprocess.run([*base, "dump", "--netns", ns, "nope"], capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "service nope not found" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([*base, "cleanup", "--netns", ns, "--mode", "iptables"], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert ours(ns) == []
    # kube-proxy style: `proxy run --cleanup` in the namespace itself (needs no etcd)
    IptablesBackend(netns=ns).sync(compute(svcs, eps), full=True)
    assert ours(ns)
    p = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-m", "netplane", "proxy", "run",
                        "--mode", "iptables", "--cleanup"], capture_output=True, text=True, check=False, timeout=60)
    assert p.returncode == 0, p.stderr
    assert ours(ns) == []


def _jump_targets(ns: str) -> set[str]:
    return {ln.split()[-1] for ln in ours(ns) if ln.startswith("-A ") and " -j " in ln}


def test_removed_endpoint_chain_is_unreachable_after_the_partial_sync(make_netns: Callable[[str], str]) -> None:
    """The partial sync that drops an endpoint rewrites the service chain and deletes the endpoint's
    chain in one transaction: nothing jumps to it afterwards, and it is gone."""
    ns = make_netns("iprm")
    old = entry("a", ["10.0.0.1", "10.0.0.2"], "10.96.0.1")
    new = entry("a", ["10.0.0.2", "10.0.0.3"], "10.96.0.1")
    be = IptablesBackend(netns=ns)
    be.sync(st(old), full=True)
    gone = R.sep_chain(old, old.backends[0])
    assert gone in _jump_targets(ns)
    be.sync(st(new), full=False)
    assert be.last_plan is not None and gone in be.last_plan.deleted
    assert gone not in _jump_targets(ns) and gone not in " ".join(ours(ns))
    assert {R.sep_chain(new, x) for x in new.backends} <= _jump_targets(ns)


def test_standalone_proxy_run_follows_etcd_and_exits_cleanly_on_sigterm(
    make_netns: Callable[[str], str], store: EtcdStore, keys: Keys
) -> None:
    """`netplane proxy run --netns` (the proxy without an agent): a service created in etcd
    gets its chains, a deleted one loses them, SIGTERM ends it with exit 0 and leaves the rules."""
    import signal
    import time

    ns = make_netns("iprun")
    api = ServiceAPI(store, keys)
    p = subprocess.Popen([sys.executable, "-m", "netplane", "--etcd", store.config.endpoints[0], "--prefix", keys.prefix,
                          "proxy", "run", "--mode", "iptables", "--netns", ns],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(cond: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while not cond():
            assert p.poll() is None, p.communicate()[1]
            assert time.monotonic() < deadline, ours(ns)
            time.sleep(0.1)

    try:
        made = api.create(Service("web", IP(0), (ServicePort("http", "TCP", 80, 8080),)), cluster_ip=None,
                          endpoints=(IP("10.0.0.5"),))
        wait(lambda: any(f"-d {made.cluster_ip}/32" in ln for ln in ours(ns)))
        kept = api.create(Service("keep", IP(0), (ServicePort("http", "TCP", 80, 8080),)), cluster_ip=None,
                          endpoints=(IP("10.0.0.6"),))
        wait(lambda: any("DNAT --to-destination 10.0.0.6:8080" in ln for ln in ours(ns)))
        api.delete("web")
        wait(lambda: not any(f"-d {made.cluster_ip}/32" in ln for ln in ours(ns)))
        before = ours(ns)
        keep = R.svc_chain(entry("default/keep", ["10.0.0.6"], str(kept.cluster_ip)))
        assert f":{keep}" in before and not any("10.0.0.5" in ln for ln in before)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0, p.communicate()[1]
        # the rules stay exactly as they were (keep's included): the kernel keeps balancing while
        # the proxy is away
        assert ours(ns) == before
        assert any(ln.startswith(f"-A {R.SERVICES} -d {kept.cluster_ip}/32") and ln.endswith(f"-j {keep}")
                   for ln in before), before
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        IptablesBackend(netns=ns).cleanup()
