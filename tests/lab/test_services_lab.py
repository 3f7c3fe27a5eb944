"""Services across a 3-host lab, for every data plane (iptables, nftables, eBPF): pods on h1 and h2 behind one ClusterIP,
requests from h3 spread over both; a NodePort on h1 reached from h3; the proxy restarted on h3
without breaking h3's traffic; a pod reaching its own service (hairpin).

The proxy runs inside each host's agent (`lab_factory(..., proxy=mode)` starts the agents with
`--proxy-mode`), so restarting h3's agent restarts its proxy.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address

import pytest

from netplane import netns
from netplane.lab import Lab, pods
from netplane.lab.builder import LAB_PREFIX
from netplane.lab.cluster import start_agent, store_for
from netplane.proxy.api import ServiceAPI
from netplane.proxy.model import Service, parse_port_spec
from netplane.store import Keys


def wrap(lab: Lab, host: str, argv: list[str], *, ns: str | None = None) -> list[str]:
    """Run on a lab host (its cgroup; its netns or a pod's) without a Python preexec_fn (this
    test process runs gRPC threads, which makes preexec_fn forks unsafe)."""
    script = 'cg=$1; ns=$2; shift 2; echo $$ > "$cg" || exit 99; exec nsenter --net="$ns" "$@"'
    return ["sh", "-c", script, "sh", str(lab.cgroup(host) / "cgroup.procs"),
            netns.netns_path(ns or lab.netns(host)), *argv]


def probe(lab: Lab, host: str, target: str, n: int, *, ns: str | None = None, udp: bool = False) -> dict:  # type: ignore[type-arg]
    argv = [sys.executable, "-m", "netplane.proxy.probe", "probe", target, "-n", str(n), "--json"] + (["--udp"] if udp else [])
    p = subprocess.run(wrap(lab, host, argv, ns=ns), capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def unpin() -> Iterator[list[Lab]]:
    """Pinned BPF maps outlive the agents by design (restarts keep traffic flowing), so remove
    ours after the lab is down (this fixture is set up before, so torn down after, the labs)."""
    labs: list[Lab] = []
    yield labs
    from netplane.ebpf.loader import cleanup, instance_for

    for lab in labs:
        for h in lab.topology.hosts:
            cleanup(cgroup=None, instance=instance_for(lab.cgroup(h.name)))


@pytest.fixture(params=["iptables", "nftables", "ebpf"])
def cluster(request: pytest.FixtureRequest, unpin: list[Lab], lab_factory: Callable[..., Lab]) -> Iterator[tuple[Lab, str]]:
    mode = str(request.param)
    lab = lab_factory(3, agents=True, proxy=mode)
    unpin.append(lab)
    servers: list[subprocess.Popen[bytes]] = []
    for host, pod in (("h1", "pa"), ("h2", "pb")):
        rec = pods.add(lab, host, pod)
        servers.append(subprocess.Popen(
            wrap(lab, host, [sys.executable, "-m", "netplane.proxy.probe", "serve", "--name", pod, "--port", "8080"], ns=rec["netns"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for host, pod in (("h1", "pa"), ("h2", "pb")):
        wait_listening(lab, host, pods.find(lab, pod)["netns"], 8080)  # type: ignore[index]
    try:
        yield lab, mode
    finally:
        for p in servers:
            p.send_signal(signal.SIGKILL)
            p.wait()


def wait_listening(lab: Lab, host: str, ns: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(wrap(lab, host, ["ss", "-Hltn", f"sport = :{port}"], ns=ns), capture_output=True, text=True,
                             check=False).stdout
        if out.strip():
            return
        assert time.monotonic() < deadline, f"nothing listens on :{port} in {ns}"
        time.sleep(0.05)


def make(lab: Lab, name: str, ips: list[str], *, port: str = "80:8080", node_port: int | None = None) -> IPv4Address:
    with store_for(lab) as store:
        api = ServiceAPI(store, Keys(LAB_PREFIX))
        spec = port + (f"/tcp:{node_port}" if node_port else "")
        svc = Service(name=name, cluster_ip=IPv4Address(0), ports=(parse_port_spec(spec),),
                      type="NodePort" if node_port else "ClusterIP")
        return api.create(svc, cluster_ip=None, endpoints=tuple(IPv4Address(i) for i in ips)).cluster_ip


def eventually(fn: Callable[[], dict], ok: Callable[[dict], bool], timeout: float = 20) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if ok(r) or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def test_service_spread_nodeport_hairpin_and_restart(cluster: tuple[Lab, str]) -> None:
    lab, _mode = cluster
    pa, pb = pods.find(lab, "pa"), pods.find(lab, "pb")
    assert pa and pb
    vip = make(lab, "web", [pa["ip"], pb["ip"]])
    # spread from a third host (the proxies pick the service up within a moment)
    r = eventually(lambda: probe(lab, "h3", f"{vip}:80", 200), lambda r: not r["errors"] and len(r["answers"]) == 2)
    assert r["errors"] == {} and set(r["answers"]) == {"pa", "pb"}, r
    assert all(60 <= c <= 140 for c in r["answers"].values()), r

    # NodePort on h1, from h3 over the underlay
    make(lab, "np", [pa["ip"], pb["ip"]], node_port=30080)
    h1_ip = str(lab.topology.host("h1").underlay_ip)
    r = eventually(lambda: probe(lab, "h3", f"{h1_ip}:30080", 40), lambda r: not r["errors"])
    assert r["errors"] == {} and sum(r["answers"].values()) == 40, r
    # externalTrafficPolicy=Cluster in every data plane: any endpoint (iptables, nftables: masqueraded;
    # eBPF: pb on h2 is SNATed to h1's VXLAN address at tc, pa on h1 sees the client)
    assert set(r["answers"]) == {"pa", "pb"}, r
    # a host without endpoints of its own forwards through the overlay to the others'
    h3_ip = str(lab.topology.host("h3").underlay_ip)
    r = eventually(lambda: probe(lab, "h1", f"{h3_ip}:30080", 40), lambda r: not r["errors"])
    assert r["errors"] == {} and set(r["answers"]) == {"pa", "pb"}, r

    # restart h3's agent (which runs its proxy) while h3 keeps connecting
    loop = subprocess.Popen(wrap(lab, "h3", [sys.executable, "-m", "netplane.proxy.probe", "probe", f"{vip}:80",
                                             "-n", "300", "--interval", "0.01", "--json"]),
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    (item,) = [p for p in lab.state.find("process", role="agent") if p["host"] == "h3"]
    lab.stop_process(item)
    start_agent(lab, "h3")
    out, _ = loop.communicate(timeout=120)
    r = json.loads(out)
    assert r["errors"] == {} and sum(r["answers"].values()) == 300, r

    # hairpin: pod pa reaches a service whose only endpoint is pa itself (iptables mode needs
    # hairpin mode on the pod's bridge port, as kubelet sets it: the DNATed frame goes back out
    # the port it came in on)
    self_vip = make(lab, "self", [pa["ip"]])
    r = eventually(lambda: probe(lab, "h1", f"{self_vip}:80", 10, ns=pa["netns"]), lambda r: not r["errors"])
    assert r == {**r, "errors": {}, "answers": {"pa": 10}}, r
