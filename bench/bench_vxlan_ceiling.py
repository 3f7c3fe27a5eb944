"""The bare-kernel VXLAN ceiling on this machine: what the overlay's throughput ratio can reach.

DESIGN.md quotes bare kernel VXLAN between two namespaces at 0.89-0.93 of the veth underlay.
This measures it again, here, with nothing of netplane involved: two namespaces, a VXLAN device
each (static FDB + neighbor, no netfilter rules at all), iperf3 over the underlay and over the
VXLAN, alternating, in two layouts: through a bridge "switch" namespace (the lab's layout) and
over one direct veth pair. Writes bench/results/vxlan_ceiling.md.

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


def gbps(client_ns: str, dst: str, seconds: int) -> float:
    out = sh("ip", "netns", "exec", client_ns, "iperf3", "-c", dst, "-t", str(seconds), "-J")
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def measure(tag: str, *, switch: bool, rounds: int, seconds: int) -> dict[str, list[float]]:
    made = build(tag, switch=switch)
    pidfile = Path(f"/tmp/npc-iperf-{tag}.pid")
    try:
        sh("ip", "netns", "exec", made[1], "iperf3", "-s", "-D", "--pidfile", str(pidfile))
        time.sleep(0.5)
        res: dict[str, list[float]] = {"underlay": [], "vxlan": []}
        for r in range(rounds):
            order = ("underlay", "vxlan") if r % 2 == 0 else ("vxlan", "underlay")
            for path in order:
                res[path].append(gbps(made[0], "10.77.0.2" if path == "underlay" else "10.78.0.2", seconds))
        return res
    finally:
        if pidfile.exists():
            subprocess.run(["kill", pidfile.read_text().strip()], check=False)
            pidfile.unlink(missing_ok=True)
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
    lines += [
        "",
        ("This is the most the overlay's pod-to-pod / underlay ratio can reach on this machine with kernel VXLAN; "
         "compare `overlay.md` (host to host over netplane's overlay, and pod to pod)."),
    ]
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
