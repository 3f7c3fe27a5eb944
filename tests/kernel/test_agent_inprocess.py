"""The agent on a real kernel and etcd: several agents in one process, each driving its own
host namespace (AgentOptions.netns_name), against the session etcd on loopback. The agent is a
composition root: its overlay (`agent.overlay`) and the components its factories build."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from _switch import switched_hosts

from netplane import netns
from netplane.agent.agent import Agent, AgentOptions
from netplane.agent.component import AgentContext, FollowsSubnet, HostOverlay, OverlayInfo
from netplane.store import EtcdStore, Keys, codec
from netplane.subnet.lease import list_leases
from netplane.vxlan.netlink import Netlink
from tests.waiting import wait_for

CONFIG = {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 3}}


def hosts(make_netns: Callable[[str], str], n: int) -> list[str]:
    return switched_hosts(make_netns, n, net="10.78.0", label="a")[1]


class Running:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.stop = threading.Event()
        self.thread = threading.Thread(target=agent.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()
        self.agent.nl.close()


@pytest.fixture
def start(store: EtcdStore, keys: Keys, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def make(ns: str, node: str, components: list[object] | None = None, **kw: object) -> Running:
        opts = AgentOptions(node=node, subnet_file=tmp_path / node / "subnet.env", iface="eth0", netns_name=ns,
                            resync_interval=1.0, **kw)  # type: ignore[arg-type]
        r = Running(Agent(store, keys, opts, components=components or []))  # type: ignore[arg-type]
        running.append(r)
        return r

    yield make
    for r in running:
        if r.thread.is_alive():
            r.halt()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
            for fam in text_string_to_metric_families(text) for smp in fam.samples}


def routes_on(ns: str) -> set[str]:
    with Netlink(netns_name=ns) as nl:
        idx = nl.index("np.3")
        if idx is None:
            return set()
        return {str(r.dst) for r in nl.routes(names={}, oif=idx)}


def test_agents_wait_for_config_then_converge_and_serve_health(
    store: EtcdStore, keys: Keys, make_netns: Callable[[str], str], start: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    h1, h2 = hosts(make_netns, 2)
    caplog.set_level(logging.WARNING, logger="netplane.agent.overlay")
    a1 = start(h1, "h1", health_listen=("127.0.0.1", 0))
    a2 = start(h2, "h2")
    # both agents said they wait for the config (and were polling it) before it exists
    wait_for(lambda: caplog.text.count(f"waiting for the network config at {keys.network_config}") >= 2)
    assert a1.agent.overlay.state.lease is None and a1.thread.is_alive()  # waiting for the config, not crashed
    store.put(keys.network_config, codec.dumps(CONFIG))
    wait_for(lambda: a1.agent.ready.is_set() and a2.agent.ready.is_set())
    s1, s2 = a1.agent.overlay.current().subnet, a2.agent.overlay.current().subnet
    assert s1 != s2
    wait_for(lambda: routes_on(h1) == {str(s2)} and routes_on(h2) == {str(s1)})
    # subnet file for the local runtime
    text = (a1.agent.opts.subnet_file).read_text()
    assert f"FLANNEL_SUBNET={IPv4Interface((s1.network_address + 1, 24))}" in text
    # health + metrics, served inside the host's namespace
    port = a1.agent.components[0].port  # type: ignore[attr-defined]
    with netns.inside(h1):
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert health["ok"] is True and health["subnet"] == str(s1) and health["peers"] == 1
    values = samples(metrics)
    assert values[("netplane_subnet_leases_seen", ())] == 2.0
    assert values[("netplane_overlay_peers", ())] == 1.0
    assert values[("netplane_lease_acquisitions_total", ())] == 1.0  # one lease, taken once
    assert values[("netplane_overlay_reconciles_total", (("result", "ok"),))] >= 1.0
    assert values[("netplane_overlay_reconcile_duration_seconds_count", ())] >= 1.0
    assert "# TYPE netplane_agent_errors_total counter" in metrics
    errors = {k: v for k, v in values.items() if k[0] == "netplane_agent_errors_total"
              or k == ("netplane_overlay_reconciles_total", (("result", "error"),))}
    assert errors == {}, errors  # a clean start: no error counted, of any kind
    # a host whose lease is deleted disappears from the other host's kernel state
    a2.halt()
    store.delete(keys.subnet(s2))
    wait_for(lambda: routes_on(h1) == set(), timeout=5)


def test_clean_stop_keeps_the_lease_and_restart_reuses_it(
    store: EtcdStore, keys: Keys, make_netns: Callable[[str], str], start: Callable[..., Running]
) -> None:
    store.put(keys.network_config, codec.dumps(CONFIG))
    (h1,) = hosts(make_netns, 1)
    a = start(h1, "h1")
    wait_for(a.agent.ready.is_set)
    first = a.agent.overlay.state.lease
    assert first is not None
    a.halt()
    assert [l.subnet for l in list_leases(store, keys)] == [first.subnet]
    b = start(h1, "h1", release_on_exit=True)
    wait_for(b.agent.ready.is_set)
    assert b.agent.overlay.state.lease is not None and b.agent.overlay.state.lease.subnet == first.subnet
    b.halt()
    assert list_leases(store, keys) == []  # released on exit


def test_deleted_own_lease_is_reacquired_and_malformed_leases_are_skipped(
    store: EtcdStore, keys: Keys, make_netns: Callable[[str], str], start: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store.put(keys.network_config, codec.dumps(CONFIG))
    h1, h2 = hosts(make_netns, 2)
    a1, a2 = start(h1, "h1"), start(h2, "h2")
    wait_for(lambda: a1.agent.ready.is_set() and a2.agent.ready.is_set())
    s1 = a1.agent.overlay.state.lease.subnet  # type: ignore[union-attr]
    s2 = a2.agent.overlay.state.lease.subnet  # type: ignore[union-attr]
    # a key no host holds (leases are random: a fixed one may be a real lease)
    garbage = next(n for n in IPv4Network(str(CONFIG["Network"])).subnets(new_prefix=24) if n not in (s1, s2))
    store.put(keys.subnet(garbage), "{garbage")
    store.delete(keys.subnet(s1))
    # a1 notices its key is gone and takes its subnet back (remembered in its subnet file)
    wait_for(lambda: any(l.subnet == s1 for l in list_leases(store, keys)))
    wait_for(lambda: str(s1) in routes_on(h2))
    # h2's route to s1 may never have gone (delete and re-create seen together): wait until
    # the watchers have met the garbage, then check it left no trace
    wait_for(lambda: any("skipping malformed value" in r.getMessage() for r in caplog.records))
    wait_for(lambda: any(lease.subnet == s1 for lease in a2.agent.overlay.state.leases.values()))
    assert str(garbage) not in routes_on(h2) and str(s1) in routes_on(h2)
    assert a1.thread.is_alive() and a2.thread.is_alive()


def test_net_show_marks_drift_and_restart_or_resync_repairs_it(
    store: EtcdStore, keys: Keys, make_netns: Callable[[str], str], start: Callable[..., Running]
) -> None:
    from netplane.vxlan.desired import Route
    from netplane.vxlan.inspect import inspect_host

    store.put(keys.network_config, codec.dumps(CONFIG))
    h1, h2 = hosts(make_netns, 2)
    a1, a2 = start(h1, "h1"), start(h2, "h2")
    wait_for(lambda: a1.agent.ready.is_set() and a2.agent.ready.is_set())
    wait_for(lambda: inspect_host(store, keys, netns_name=h1, host_label="h1")["in_sync"])
    s1 = a1.agent.overlay.state.lease.subnet  # type: ignore[union-attr]
    s2 = a2.agent.overlay.state.lease.subnet  # type: ignore[union-attr]
    # a subnet of the network that neither host leased (leases are random: a fixed one collides)
    stale = next(n for n in IPv4Network(str(CONFIG["Network"])).subnets(new_prefix=24) if n not in (s1, s2))
    a1_stop = a1.stop
    a1_stop.set()  # stop h1's agent so nothing repairs behind our back
    a1.thread.join(timeout=15)
    with Netlink(netns_name=h1) as nl:
        nl.route_del(Route(s2, s2.network_address, "np.3", onlink=True))
        idx = nl.index("np.3")
        assert idx is not None
        nl.route_replace(Route(stale, stale.network_address, "np.3", onlink=True), oif=idx)
    st = inspect_host(store, keys, netns_name=h1, host_label="h1")
    status = {e["entry"]: e["status"] for e in st["entries"] if e["kind"] == "route"}
    assert status == {f"{s2} via {s2.network_address} dev np.3 onlink": "missing",
                      f"{stale} via {stale.network_address} dev np.3 onlink": "stale"}
    assert st["in_sync"] is False and st["drift"] == 2
    b = start(h1, "h1")  # a restart removes the stale route and restores the missing one
    wait_for(b.agent.ready.is_set)
    wait_for(lambda: inspect_host(store, keys, netns_name=h1, host_label="h1")["in_sync"], timeout=5)
    # while running, the periodic resync (1 s here) repairs drift that no etcd event announces
    with Netlink(netns_name=h1) as nl:
        nl.route_del(Route(s2, s2.network_address, "np.3", onlink=True))
    assert not inspect_host(store, keys, netns_name=h1, host_label="h1")["in_sync"]
    wait_for(lambda: inspect_host(store, keys, netns_name=h1, host_label="h1")["in_sync"], timeout=5)


def test_components_start_after_the_overlay_before_the_ready_file_and_stop_in_reverse(
    store: EtcdStore, keys: Keys, make_netns: Callable[[str], str], tmp_path: Path
) -> None:
    store.put(keys.network_config, codec.dumps(CONFIG))
    (h1,) = hosts(make_netns, 1)
    events: list[str] = []
    sfile = tmp_path / "subnet.env"

    class Comp:
        def __init__(self, name: str, overlay: OverlayInfo) -> None:
            self.name, self.overlay = name, overlay

        def start(self) -> None:
            view = self.overlay.current()  # the lease is held: the overlay is ready before us
            assert self.overlay.wait_ready(threading.Event())
            events.append(f"start {self.name} {view.subnet} ready-file={sfile.exists()}")

        def stop(self) -> None:
            events.append(f"stop {self.name}")

    contexts: list[AgentContext] = []

    def factory(name: str) -> Callable[[AgentContext], Comp]:
        def make(ctx: AgentContext) -> Comp:
            contexts.append(ctx)
            return Comp(name, ctx.overlay)

        return make

    opts = AgentOptions(node="h1", subnet_file=sfile, iface="eth0", netns_name=h1)
    agent = Agent(store, keys, opts, components=[factory("proxy"), factory("stats")])
    r = Running(agent)
    wait_for(agent.ready.is_set)
    subnet = agent.overlay.current().subnet
    # in order, each once the lease is held and before the subnet file (the lab's "ready")
    assert events == [f"start proxy {subnet} ready-file=False", f"start stats {subnet} ready-file=False"]
    assert sfile.exists()
    ctx = contexts[0]
    assert (ctx.node, ctx.netns_name, ctx.store, ctx.keys) == ("h1", h1, store, keys)
    assert ctx.registry is agent.registry and ctx.overlay is agent.overlay
    view = agent.overlay.current()
    assert (view.bridge, view.device, view.underlay_iface, str(view.node_ip)) == ("np0", "np.3", "eth0", "10.78.0.11")
    assert view.gateway.ip == subnet.network_address + 1 and view.device_ip == subnet.network_address
    assert view.mtu == 1450
    health = agent.health()
    assert health[0] is True and health[1]["components"] == {"proxy": {"ok": True}, "stats": {"ok": True}}
    r.halt()
    assert events[2:] == ["stop stats", "stop proxy"]

def _host_state(ns: str) -> tuple[set[str], str]:
    """Link names and the iptables chains and rules of a namespace (no counters; a built-in chain
    that is empty with policy ACCEPT counts as absent: iptables-nft leaves the empty tables behind)."""
    import subprocess

    with Netlink(netns_name=ns) as nl:
        links = {lk.name for lk in nl.links()}
    rules = subprocess.run(["ip", "netns", "exec", ns, "iptables-save"], capture_output=True, text=True, check=True).stdout
    kept = [ln.split(" [")[0] for ln in rules.splitlines() if ln.startswith(("-A ", ":"))]
    builtin = {f":{c} ACCEPT" for c in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")}
    return links, "\n".join(ln for ln in kept if ln not in builtin)


def test_net_cleanup_removes_what_the_agent_made(
    store: EtcdStore, keys: Keys, etcd_server: object, make_netns: Callable[[str], str],
    start: Callable[..., Running], tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from netplane import podnet

    cli = [str(Path(sys.executable).parent / "netplane"), "--etcd", etcd_server.endpoint,  # type: ignore[attr-defined]
           "--prefix", keys.prefix, "net", "cleanup"]
    store.put(keys.network_config, codec.dumps(CONFIG))
    h1, h2 = hosts(make_netns, 2)
    before = _host_state(h1)
    a1, a2 = start(h1, "h1"), start(h2, "h2")
    wait_for(lambda: a1.agent.ready.is_set() and a2.agent.ready.is_set())
    s1 = a1.agent.overlay.state.lease.subnet  # type: ignore[union-attr]
    sfile = tmp_path / "h1" / "subnet.env"
    pod = make_netns("pod")
    pn = podnet.add_pod_network(pod, host_netns=h1, address=podnet.pod_address(s1, 1), mtu=1450)
    a1.halt()  # a clean stop keeps device, bridge, rules and lease
    assert {"np.3", "np0"} <= _host_state(h1)[0] and "NETPLANE-FORWARD" in _host_state(h1)[1]

    # a pod is still attached: refused with one line, nothing touched
    r = subprocess.run([*cli, "--host", h1, "--subnet-file", str(sfile)], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and pn.host_veth in r.stderr, r.stderr
    assert {"np.3", "np0"} <= _host_state(h1)[0] and sfile.exists()

    r = subprocess.run([*cli, "--host", h1, "--subnet-file", str(sfile), "--force", "--release", "-o", "json"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    removed = json.loads(r.stdout)["removed"]
    assert any("np.3" in x for x in removed) and any("np0" in x for x in removed)
    assert any(f"released subnet lease {s1}" in x for x in removed), removed
    assert not sfile.exists()
    assert all(lease.subnet != s1 for lease in list_leases(store, keys))
    # the pod's host-side veth was left (its runtime owns it); with the pod gone, h1 is as before
    assert _host_state(h1)[0] == before[0] | {pn.host_veth}
    podnet.remove_pod_network(pod, host_netns=h1)
    assert _host_state(h1) == before
    # h2's agent sees the lease go and drops h1's route
    wait_for(lambda: str(s1) not in routes_on(h2))
    # a second run finds nothing to remove
    r = subprocess.run([*cli, "--host", h1], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "nothing to remove", r.stdout


def test_subnet_taken_by_another_host_moves_us_and_says_pods_must_be_recreated(
    store: EtcdStore, keys: Keys, make_netns: Callable[[str], str], start: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from netplane.subnet.lease import LeaseAttrs

    store.put(keys.network_config, codec.dumps(CONFIG))
    (h1,) = hosts(make_netns, 1)
    events: list[str] = []

    class Derived:  # stands in for the proxy: built from the overlay's subnet
        name = "derived"

        def __init__(self, view: HostOverlay) -> None:
            self.subnet = view.subnet

        def start(self) -> None:
            events.append(f"start {self.subnet}")

        def stop(self) -> None:
            events.append(f"stop {self.subnet}")

    a1 = start(h1, "h1", components=[lambda ctx: FollowsSubnet("derived", ctx.overlay, Derived)])
    wait_for(lambda: a1.agent.ready.is_set() and len(events) == 1)
    s1 = a1.agent.overlay.state.lease.subnet  # type: ignore[union-attr]
    # another host overwrites our key in one put (as after our lease lapsed): the subnet file
    # still remembers s1, but s1 is taken now, so we must move
    other = LeaseAttrs(public_ip=IPv4Address("10.78.0.200"), vtep_mac="02:00:00:00:00:c8", vni=3, node="intruder")
    store.put(keys.subnet(s1), other.encode())
    wait_for(lambda: a1.agent.overlay.state.lease is not None and a1.agent.overlay.state.lease.subnet != s1)
    s2 = a1.agent.overlay.state.lease.subnet  # type: ignore[union-attr]
    with Netlink(netns_name=h1) as nl:
        wait_for(lambda: [str(a) for a in nl.link("np0").addresses] == [f"{s2.network_address + 1}/{s2.prefixlen}"])  # type: ignore[union-attr]
    assert any("subnet changed from" in r.getMessage() and "recreated" in r.getMessage() for r in caplog.records)
    assert [lease.attrs.node for lease in list_leases(store, keys) if lease.subnet == s1] == ["intruder"]
    # what was built from the old subnet is built again from the new one
    wait_for(lambda: len(events) == 3)
    assert events == [f"start {s1}", f"stop {s1}", f"start {s2}"]
    a1.halt()
    assert events[3:] == [f"stop {s2}"]


def test_an_overlay_that_cannot_start_ends_the_agent_with_its_reason(
    store: EtcdStore, keys: Keys, make_netns: Callable[[str], str], tmp_path: Path
) -> None:
    from netplane.errors import ConfigError

    store.put(keys.network_config, codec.dumps(CONFIG))
    (h1,) = hosts(make_netns, 1)
    built: list[str] = []

    def factory(ctx: AgentContext) -> FollowsSubnet:
        built.append(ctx.node)
        raise AssertionError("built although the overlay never started")

    opts = AgentOptions(node="h1", subnet_file=tmp_path / "subnet.env", iface="nope", netns_name=h1,
                        health_listen=("127.0.0.1", 0))
    agent = Agent(store, keys, opts, components=[factory])
    stop = threading.Event()
    timer = threading.Timer(15, stop.set)  # a hang fails the test instead of blocking it
    timer.start()
    try:
        with pytest.raises(ConfigError, match="--iface nope: no such interface"):
            agent.run(stop)
    finally:
        timer.cancel()
    assert not stop.is_set() and built == [] and agent.components == []  # nothing built, all stopped
    assert not (tmp_path / "subnet.env").exists()
    agent.nl.close()
