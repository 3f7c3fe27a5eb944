"""The bare-kernel VXLAN ceiling on this machine: what the overlay's throughput ratio can reach.

DESIGN.md quotes bare kernel VXLAN between two namespaces at 0.89-0.93 of the veth underlay.
This measures it again, here, with nothing of netplane involved: two namespaces, a VXLAN device
each (static FDB + neighbor, no netfilter rules at all), iperf3 over the underlay and over the
VXLAN, alternating, in two layouts: through a bridge "switch" namespace (the lab's layout) and
over one direct veth pair. A third run adds bare "pods" to the switch layout (a namespace per
host behind a veth on a host bridge, routed by the host, still no netfilter rules and no netplane
code): the floor for netplane's pod-to-pod path, encapsulated and routed directly.
Writes bench/results/vxlan_ceiling.md.

Run as root: .venv/bin/python bench/bench_vxlan_ceiling.py [--rounds 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import uuid
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "vxlan_ceiling.md"


def sh(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout


def build(tag: str, *, switch: bool) -> list[str]:
    a, b, s = f"npc-a-{tag}", f"npc-b-{tag}", f"npc-s-{tag}"
    made = [a, b] + ([s] if switch else [])
    for n in made:
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
    if switch:
        sh("ip", "-n", s, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", s, "link", "set", "br0", "up")
        for ns, port in ((a, "pa"), (b, "pb")):
            sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", s)
            sh("ip", "-n", s, "link", "set", port, "master", "br0", "up")
    else:
        sh("ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
    macs = {}
    for i, ns in enumerate((a, b), start=1):
        sh("ip", "-n", ns, "addr", "add", f"10.77.0.{i}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", "1", "local", f"10.77.0.{i}",
           "dstport", "4789", "nolearning", "noudpcsum")
        sh("ip", "-n", ns, "link", "set", "vx0", "mtu", "1450", "up")
        sh("ip", "-n", ns, "addr", "add", f"10.78.0.{i}/24", "dev", "vx0")
        macs[ns] = json.loads(sh("ip", "-j", "-n", ns, "link", "show", "vx0"))[0]["address"]
    for ns, peer, pi in ((a, b, 2), (b, a, 1)):
        sh("bridge", "-n", ns, "fdb", "append", macs[peer], "dev", "vx0", "dst", f"10.77.0.{pi}")
        sh("ip", "-n", ns, "neigh", "replace", f"10.78.0.{pi}", "lladdr", macs[peer], "dev", "vx0", "nud", "permanent")
    return made


def add_pods(tag: str, hosts: list[str]) -> list[str]:
    """A pod per host as netplane lays it out (veth to a host bridge holding <subnet>.1, MTU of
    the VXLAN device, the host forwarding), with no netfilter rules. Pod subnets 10.80.<i>.0/24."""
    pods = []
    for i, host in enumerate(hosts, start=1):
        pod = f"npc-p{i}-{tag}"
        sh("ip", "netns", "add", pod)
        pods.append(pod)
        sh("ip", "-n", pod, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", host, "link", "add", "cni0", "type", "bridge")
        sh("ip", "-n", host, "addr", "add", f"10.80.{i}.1/24", "dev", "cni0")
        sh("ip", "-n", host, "link", "set", "cni0", "mtu", "1450", "up")
        sh("ip", "-n", host, "link", "add", "vp0", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "mtu", "1450",
           "netns", pod)
        sh("ip", "-n", host, "link", "set", "vp0", "master", "cni0", "up")
        sh("ip", "-n", pod, "addr", "add", f"10.80.{i}.2/24", "dev", "eth0")
        sh("ip", "-n", pod, "link", "set", "eth0", "up")
        sh("ip", "-n", pod, "route", "add", "default", "via", f"10.80.{i}.1")
    return pods


def route_pods(hosts: list[str], *, encap: bool) -> None:
    """Each host's route to the other pod subnet: over the VXLAN device (flannel's onlink route via
    the peer's VTEP address) or straight over the underlay (DirectRouting)."""
    for i, host in enumerate(hosts, start=1):
        j = 3 - i
        if encap:
            sh("ip", "-n", host, "route", "replace", f"10.80.{j}.0/24", "via", f"10.78.0.{j}", "dev", "vx0", "onlink")
        else:
            sh("ip", "-n", host, "route", "replace", f"10.80.{j}.0/24", "via", f"10.77.0.{j}", "dev", "eth0")


def gbps(client_ns: str, dst: str, seconds: int) -> float:
    out = sh("ip", "netns", "exec", client_ns, "iperf3", "-c", dst, "-t", str(seconds), "-J")
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def measure(tag: str, *, switch: bool, rounds: int, seconds: int, pods: bool = False) -> dict[str, list[float]]:
    made = build(tag, switch=switch)
    pidfiles = [Path(f"/tmp/npc-iperf-{tag}.pid")]
    try:
        servers = [made[1]]
        if pods:
            pod_ns = add_pods(tag, made[:2])
            made += pod_ns
            servers.append(pod_ns[1])
            pidfiles.append(Path(f"/tmp/npc-iperf-{tag}-pod.pid"))
        for ns, pf in zip(servers, pidfiles):
            sh("ip", "netns", "exec", ns, "iperf3", "-s", "-D", "--pidfile", str(pf))
        time.sleep(0.5)
        # path -> (client namespace, destination, pod route over VXLAN?)
        paths: dict[str, tuple[str, str, bool | None]] = {
            "underlay": (made[0], "10.77.0.2", None),
            "vxlan": (made[0], "10.78.0.2", None),
        }
        if pods:
            paths = {"underlay": paths["underlay"], "pod_vxlan": (made[-2], "10.80.2.2", True),
                     "pod_direct": (made[-2], "10.80.2.2", False)}
        res: dict[str, list[float]] = {p: [] for p in paths}
        names = list(paths)
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for path in order:
                client, dst, encap = paths[path]
                if encap is not None:
                    route_pods(made[:2], encap=encap)
                res[path].append(gbps(client, dst, seconds))
        return res
    finally:
        for pf in pidfiles:
            if pf.exists():
                subprocess.run(["kill", pf.read_text().strip()], check=False)
                pf.unlink(missing_ok=True)
        for n in made:
            subprocess.run(["ip", "netns", "del", n], check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args()
    lines = [
        "# Bare-kernel VXLAN ceiling",
        "",
        (f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/bench_vxlan_ceiling.py`: two namespaces, "
         "a VXLAN device each with static FDB/neighbor entries, no netfilter rules, no netplane code; iperf3, "
         f"{a.rounds} rounds of {a.seconds} s per path, order alternating. Ratio = median over rounds of vxlan/underlay."),
        "",
        "| layout | underlay Gbit/s (median) | VXLAN Gbit/s (median) | ratio (median of per-round ratios) |",
        "|---|---|---|---|",
    ]
    for switch in (True, False):
        res = measure(uuid.uuid4().hex[:5], switch=switch, rounds=a.rounds, seconds=a.seconds)
        ratios = [v / u for u, v in zip(res["underlay"], res["vxlan"])]
        name = "via a bridge switch namespace (the lab's layout)" if switch else "direct veth pair"
        lines.append(f"| {name} | {statistics.median(res['underlay']):.2f} | {statistics.median(res['vxlan']):.2f} | "
                     f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}) |")
        print(lines[-1], flush=True)
    res = measure(uuid.uuid4().hex[:5], switch=True, rounds=a.rounds, seconds=a.seconds, pods=True)
    lines += [
        "",
        "## Bare pods (the switch layout plus a pod namespace per host behind a veth on a host bridge)",
        "",
        ("No netfilter rules, no netplane code; the host routes the other pod subnet over the VXLAN device "
         "(flannel's onlink route) or straight over the underlay. Paths measured in rotating order each round."),
        "",
        "| path | Gbit/s (median) | ratio to underlay (median of per-round ratios) |",
        "|---|---|---|",
    ]
    for path, label in (("underlay", "underlay, host a -> host b"), ("pod_vxlan", "pod a -> pod b over VXLAN"),
                        ("pod_direct", "pod a -> pod b routed over the underlay (no encapsulation)")):
        ratios = [v / u for u, v in zip(res["underlay"], res[path])]
        lines.append(f"| {label} | {statistics.median(res[path]):.2f} | {statistics.median(ratios):.2f} "
                     f"({', '.join(f'{r:.2f}' for r in ratios)}) |")
        print(lines[-1], flush=True)
    lines += [
        "",
        ("The first table is the most a host-to-host overlay ratio can reach on this machine with kernel VXLAN; the "
         "second is the floor for pod to pod, where every extra veth and bridge hop runs on the same two cores as "
         "both iperf3 ends. Compare `overlay.md` (the same paths through netplane's agents)."),
    ]
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
