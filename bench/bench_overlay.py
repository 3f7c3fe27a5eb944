"""Overlay benchmarks, each against a baseline or goal measured in the same run.

1. throughput: iperf3 TCP pod-to-pod across two lab hosts over the VXLAN overlay, vs iperf3
   between the same two hosts straight over the underlay; rounds interleaved, median of each,
   reported as a ratio (goal >= 0.9). Also with tx checksum offload off on the VXLAN device.
2. convergence: from a new lease's `put` in etcd to its route, FDB and neighbor entries being
   present on every other host (3 agents), over many joins; p50/p99 (goal p99 <= 200 ms).
   Leaves (lease delete -> entries gone everywhere) are measured the same way.
3. leases: 100 lease clients (own etcd connection each) acquiring at once: all distinct,
   failures, lost races retried, total time; once with random choices, once with every client
   remembering the same subnet (the worst case for create-only races).

Run as root from the repo root: `.venv/bin/python bench/bench_overlay.py [--quick]`.
Writes bench/results/overlay.md and overlay.json.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def iperf(client_ns: str, server_ns: str, server_ip: str, seconds: int) -> float:
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_ip, "-p", "5201"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-p", "5201", "-t", str(seconds), "-J"],
                             capture_output=True, check=True, timeout=seconds + 30).stdout
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait(timeout=10)


def bench_throughput(rounds: int, seconds: int) -> dict[str, Any]:
    """Interleaved rounds (each path once per round) so slow phases of a noisy machine hit all
    paths alike. Paths: underlay host->host (baseline), overlay host->host (encapsulation
    only), overlay pod->pod (encapsulation + pod veth/bridge hops), then the same pods with
    DirectRouting (pod hops, no encapsulation) and with tx checksum offload off."""
    from netplane.lab import Lab, cluster, default_topology, pods
    from netplane.lab.builder import LAB_PREFIX
    from netplane.store import Keys, codec
    from netplane.vxlan import hostsetup

    lab = Lab.up(default_topology("bt" + uuid.uuid4().hex[:6], hosts=2, underlay="10.96.1.0/24"))
    try:
        cluster.start(lab)
        while not all((lab.host_dir(h) / "subnet.env").exists() for h in ("h1", "h2")):
            time.sleep(0.05)
        a, b = pods.add(lab, "h1", "pa"), pods.add(lab, "h2", "pb")
        h1_ns, h2_ns = lab.netns("h1"), lab.netns("h2")
        h2_ip = str(lab.topology.host("h2").underlay_ip)
        h2_gw = str(IPv4Address(b["ip"]) - int(IPv4Address(b["ip"])) % 256 + 1)
        res: dict[str, list[float]] = {k: [] for k in ("underlay", "overlay_host", "overlay_pod", "underlay_2", "overlay_pod_txcsum_off", "underlay_3", "direct_routing_pod")}
        paths = {
            "underlay": (h1_ns, h2_ns, h2_ip), "underlay_2": (h1_ns, h2_ns, h2_ip), "underlay_3": (h1_ns, h2_ns, h2_ip),
            "overlay_host": (h1_ns, h2_ns, h2_gw),
            "overlay_pod": (a["netns"], b["netns"], b["ip"]), "overlay_pod_txcsum_off": (a["netns"], b["netns"], b["ip"]),
            "direct_routing_pod": (a["netns"], b["netns"], b["ip"]),
        }

        def phase(keys: list[str]) -> None:
            for r in range(rounds):  # rotate the order each round so drift hits every path alike
                order = keys[r % len(keys):] + keys[: r % len(keys)]
                for k in order:
                    res[k].append(iperf(*paths[k], seconds))

        phase(["underlay", "overlay_pod", "overlay_host"])
        for h in ("h1", "h2"):
            hostsetup.set_tx_checksum("np.1", False, lab.netns(h))
        phase(["underlay_2", "overlay_pod_txcsum_off"])
        for h in ("h1", "h2"):
            hostsetup.set_tx_checksum("np.1", True, lab.netns(h))
        # DirectRouting: same hosts, same pods, plain routes (agents restarted to read the config)
        with cluster.store_for(lab) as s:
            keys = Keys(LAB_PREFIX)
            cfg = json.loads(s.get(keys.network_config).value)  # type: ignore[union-attr]
            cfg["Backend"]["DirectRouting"] = True
            s.put(keys.network_config, codec.dumps(cfg))
        for h in ("h1", "h2"):
            lab.stop_process(lab.state.find("process", role="agent", host=h)[0])
            cluster.start_agent(lab, h)
        deadline = time.monotonic() + 20
        while subprocess.run(["ip", "netns", "exec", h1_ns, "ip", "route", "get", b["ip"]], capture_output=True, text=True, check=False).stdout.find("dev eth0") < 0:
            if time.monotonic() > deadline:
                raise RuntimeError("DirectRouting route did not appear")
            time.sleep(0.1)
        phase(["underlay_3", "direct_routing_pod"])
        med = {k: statistics.median(v) for k, v in res.items()}

        def paired(k: str, base: str) -> float:
            """Median over rounds of (path / baseline in the same round)."""
            return statistics.median(x / y for x, y in zip(res[k], res[base]))

        return {"rounds": rounds, "seconds": seconds, "gbps": res, "median_gbps": med,
                "ratio": paired("overlay_pod", "underlay"),
                "ratio_host": paired("overlay_host", "underlay"),
                "ratio_txcsum_off": paired("overlay_pod_txcsum_off", "underlay_2"),
                "ratio_direct_routing": paired("direct_routing_pod", "underlay_3"),
                "ratio_of_medians": med["overlay_pod"] / med["underlay"]}
    finally:
        lab.down()


def bench_convergence(joins: int) -> dict[str, Any]:
    from netplane.lab import Lab, cluster, default_topology
    from netplane.lab.builder import LAB_PREFIX
    from netplane.store import Keys
    from netplane.subnet.lease import LeaseAttrs
    from netplane.vxlan.netlink import Netlink

    keys = Keys(LAB_PREFIX)
    lab = Lab.up(default_topology("bc" + uuid.uuid4().hex[:6], hosts=3, underlay="10.96.2.0/24"))
    nls: list[Netlink] = []
    try:
        cluster.start(lab)
        store = cluster.store_for(lab)
        nls = [Netlink(netns_name=lab.netns(h.name)) for h in lab.topology.hosts]
        idx = []
        for nl in nls:
            while nl.index("np.1") is None:
                time.sleep(0.05)
            idx.append(nl.index("np.1"))

        def routed(nl: Netlink, i: int, subnet: IPv4Network) -> bool:
            """Cheap probe: does the kernel route this subnet out of np.1 (a single lookup)?"""
            try:
                r = nl.ipr.route("get", dst=str(subnet.network_address + 2))[0]
            except Exception:  # noqa: BLE001 - ENETUNREACH: no route
                return False
            return bool(r.get_attr("RTA_OIF") == i)

        def present(subnet: IPv4Network, mac: str, pub: IPv4Address) -> bool:
            # the agent writes neighbor, FDB, then route; poll the route cheaply, then verify all
            for nl, i in zip(nls, idx):
                if not routed(nl, i, subnet):
                    return False
            for nl, i in zip(nls, idx):
                if (str(subnet.network_address), mac) not in {(str(n.ip), n.mac) for n in nl.neighbors(i)}:
                    return False
                if (mac, str(pub)) not in {(f.mac, str(f.dst)) for f in nl.fdb(i)}:
                    return False
            return True

        def absent(subnet: IPv4Network) -> bool:
            # removal order is route, FDB, neighbor: the neighbor going is the last step
            for nl, i in zip(nls, idx):
                if routed(nl, i, subnet):
                    return False
            return all(str(subnet.network_address) not in {str(n.ip) for n in nl.neighbors(i)} for nl, i in zip(nls, idx))

        join_ms, leave_ms = [], []
        added = []
        from netplane.subnet.lease import list_leases

        taken = {l.subnet for l in list_leases(store, keys, with_ttl=False)}
        free = [IPv4Network(f"10.244.{k}.0/24") for k in range(1, 256) if IPv4Network(f"10.244.{k}.0/24") not in taken]
        joins = min(joins, len(free))
        for j in range(joins):
            subnet = free[j]
            pub = IPv4Address(int(IPv4Address("10.96.3.1")) + j)
            mac = f"02:00:00:aa:{j // 256:02x}:{j % 256:02x}"
            t0 = time.perf_counter()
            store.put(keys.subnet(subnet), LeaseAttrs(public_ip=pub, vtep_mac=mac, vni=1).encode())
            while not present(subnet, mac, pub):
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"join {j} did not converge in 10 s")
                time.sleep(0.005)
            join_ms.append((time.perf_counter() - t0) * 1000)
            added.append(subnet)
        for subnet in added:
            t0 = time.perf_counter()
            store.delete(keys.subnet(subnet))
            while not absent(subnet):
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"leave of {subnet} did not converge in 10 s")
                time.sleep(0.005)
            leave_ms.append((time.perf_counter() - t0) * 1000)
        store.close()
        # the agents' own view: time spent in reconcile passes (from h1's /metrics)
        import urllib.request

        from netplane import netns as _netns

        url = f"http://{lab.topology.host('h1').underlay_ip}:9100/metrics"
        with _netns.inside(lab.netns("h1")):
            text = urllib.request.urlopen(url, timeout=5).read().decode()
        vals = {l.split()[0]: float(l.split()[1]) for l in text.splitlines() if l.startswith("netplane_overlay_reconcile_duration_seconds_")}
        count = vals.get("netplane_overlay_reconcile_duration_seconds_count", 0.0)
        mean_reconcile_ms = 1000 * vals.get("netplane_overlay_reconcile_duration_seconds_sum", 0.0) / count if count else None
        return {
            "joins": joins, "hosts": 3, "agent_reconciles": count, "agent_reconcile_mean_ms": mean_reconcile_ms,
            "join_ms": {"p50": pct(join_ms, 50), "p99": pct(join_ms, 99), "max": max(join_ms), "mean": statistics.mean(join_ms)},
            "leave_ms": {"p50": pct(leave_ms, 50), "p99": pct(leave_ms, 99), "max": max(leave_ms), "mean": statistics.mean(leave_ms)},
            "join_first_half_p50": pct(join_ms[: joins // 2], 50), "join_second_half_p50": pct(join_ms[joins // 2 :], 50),
        }
    finally:
        for nl in nls:
            nl.close()
        lab.down()


def bench_leases(clients: int) -> dict[str, Any]:

    from netplane.store import EtcdConfig, EtcdStore, Keys
    from netplane.store.embedded import EmbeddedEtcd
    from netplane.subnet.config import parse_config
    from netplane.subnet.lease import LeaseAttrs, list_leases
    from netplane.subnet.manager import LeaseManager

    d = Path(tempfile.mkdtemp(prefix="bench-leases-"))
    etcd = EmbeddedEtcd.on_loopback(d, "bl")
    lost_races = [0]

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "taken by another host" in record.getMessage():
                lost_races[0] += 1

    logging.getLogger("netplane.subnet.manager").addHandler(Count())
    logging.getLogger("netplane.subnet.manager").setLevel(logging.INFO)
    cfg = parse_config({"Network": "10.244.0.0/16"})
    out: dict[str, Any] = {"clients": clients, "subnets_available": cfg.subnet_count()}
    try:
        for mode in ("random", "same-remembered"):
            keys = Keys("/bench" + uuid.uuid4().hex[:6])
            stores = [EtcdStore(EtcdConfig(endpoints=(etcd.endpoint,), timeout=10.0)) for _ in range(clients)]
            for s in stores:
                s.wait_healthy(10)
            got: dict[int, IPv4Network] = {}
            errors: list[str] = []
            lat: list[float] = []
            barrier = threading.Barrier(clients + 1)
            lost_races[0] = 0

            def run(i: int, stores=stores, keys=keys, barrier=barrier, got=got, mode=mode, errors=errors, lat=lat) -> None:  # type: ignore[no-untyped-def]
                m = LeaseManager(stores[i], keys, ttl=600, rng=random.Random(i))
                attrs = LeaseAttrs(public_ip=IPv4Address(int(IPv4Address("10.200.0.1")) + i), vtep_mac=f"02:00:00:bb:00:{i:02x}", vni=1)
                barrier.wait()
                t0 = time.perf_counter()
                try:
                    got[i] = m.acquire(cfg, attrs, remembered=IPv4Network("10.244.7.0/24") if mode != "random" else None).subnet
                except Exception as e:  # noqa: BLE001 - counted
                    errors.append(f"{type(e).__name__}: {e}")
                lat.append((time.perf_counter() - t0) * 1000)

            ts = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
            for t in ts:
                t.start()
            barrier.wait()
            t0 = time.perf_counter()
            for t in ts:
                t.join()
            total = (time.perf_counter() - t0) * 1000
            stored = list_leases(stores[0], keys, with_ttl=False)
            out[mode] = {
                "acquired": len(got), "distinct": len(set(got.values())), "failures": len(errors), "errors": errors[:3],
                "stored_leases": len(stored), "lost_races_retried": lost_races[0],
                "total_ms": total, "per_client_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat)},
            }
            stores[0].delete_prefix(keys.prefix + "/")
            for s in stores:
                s.close()
    finally:
        etcd.stop()
        shutil.rmtree(d, ignore_errors=True)
    return out


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "overlay.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    L = ["# Overlay benchmarks", "", (f"Last run {results['when']} on {results['machine']} (`bench/bench_overlay.py`); "
                                     "each section says when it was measured (`--only` re-runs one section)."), ""]
    t = results.get("throughput")
    if t:
        m, g = t["median_gbps"], t["gbps"]

        def row(label: str, key: str, base: str, ratio: float | None) -> str:
            r = "1.00 (baseline)" if ratio is None else f"{ratio:.2f}"
            return f"| {label} | {m[key]:.2f} | {', '.join(f'{x:.1f}' for x in g[key])} | {r} vs {base} |"

        L += ["## Pod-to-pod TCP throughput across hosts (iperf3)", "", f"Measured {t.get('when', results['when'])}.", "",
              (f"Two lab hosts on a veth/bridge underlay; {t['rounds']} rounds of {t['seconds']} s per path, the "
               "order rotated each round. Ratio = median over rounds of (path / underlay in the same round); each "
               "phase has its own underlay baseline."), "",
              "| path | Gbit/s (median) | rounds | ratio |", "|---|---|---|---|",
              row("underlay, host h1 -> host h2", "underlay", "underlay", None),
              row("**overlay, pod on h1 -> pod on h2 (VXLAN)**", "overlay_pod", "underlay", t["ratio"]),
              row("overlay, host h1 -> h2's bridge address (VXLAN, no pod hops)", "overlay_host", "underlay", t["ratio_host"]),
              row("underlay (phase 2)", "underlay_2", "underlay_2", None),
              row("overlay pod -> pod, tx checksum offload off on np.1", "overlay_pod_txcsum_off", "underlay_2", t["ratio_txcsum_off"]),
              row("underlay (phase 3)", "underlay_3", "underlay_3", None),
              row("DirectRouting pod -> pod (no encapsulation)", "direct_routing_pod", "underlay_3", t["ratio_direct_routing"]),
              "", (f"Goal: pod-to-pod overlay / underlay >= 0.9 — {'met' if t['ratio'] >= 0.9 else 'NOT met'} "
                   f"({t['ratio']:.2f}; ratio of the medians {t['ratio_of_medians']:.2f})."), "",
              ("The floor for this path with no netplane code at all (bare namespaces, the same veth/bridge/VXLAN "
               "layout, no netfilter rules) is in `vxlan_ceiling.md` (`bench/bench_vxlan_ceiling.py`): every "
               "pod hop runs on the same two cores as both iperf3 ends, so the goal is out of reach on one machine "
               "whatever the overlay does."), ""]
    c = results.get("convergence")
    if c:
        L += ["## Convergence: lease put -> route + FDB + neighbor on every other host", "", f"Measured {c.get('when', results['when'])}.", "",
              (f"{c['joins']} joins into a {c['hosts']}-host lab (agents watching etcd), one after another, "
               "peers accumulating; then the same number of leaves (lease delete -> entries gone everywhere)."), "",
              "| event | p50 ms | p99 ms | max ms | mean ms |", "|---|---|---|---|---|",
              f"| join | {c['join_ms']['p50']:.1f} | {c['join_ms']['p99']:.1f} | {c['join_ms']['max']:.1f} | {c['join_ms']['mean']:.1f} |",
              f"| leave | {c['leave_ms']['p50']:.1f} | {c['leave_ms']['p99']:.1f} | {c['leave_ms']['max']:.1f} | {c['leave_ms']['mean']:.1f} |",
              "", f"Join p50 with few peers (first half) {c['join_first_half_p50']:.1f} ms, with many (second half) {c['join_second_half_p50']:.1f} ms.",
              (f"Inside the agent (h1's /metrics): {c.get('agent_reconciles', 0):.0f} reconcile passes, mean "
               f"{c.get('agent_reconcile_mean_ms') or 0:.2f} ms each; the rest of the join time is etcd (put + fsync + "
               "watch delivery) and scheduling on a shared 2-core machine."),
              f"Goal: join p99 <= 200 ms — {'met' if c['join_ms']['p99'] <= 200 else 'NOT met'}.", ""]
    le = results.get("leases")
    if le:
        L += [f"## {le['clients']} lease clients acquiring at once", "", f"Measured {le.get('when', results['when'])}.", "",
              f"Each client has its own etcd connection; {le['subnets_available']} /24 subnets available in 10.244.0.0/16.", "",
              "| mode | acquired | distinct | failures | lost races retried | total ms | per-client p50 ms | p99 ms |",
              "|---|---|---|---|---|---|---|---|"]
        for mode in ("random", "same-remembered"):
            r = le[mode]
            L.append(f"| {mode} | {r['acquired']} | {r['distinct']} | {r['failures']} | {r['lost_races_retried']} | "
                     f"{r['total_ms']:.0f} | {r['per_client_ms']['p50']:.0f} | {r['per_client_ms']['p99']:.0f} |")
        L.append("")
    (RESULTS / "overlay.md").write_text("\n".join(L) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("throughput", "convergence", "leases"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    if "NETPLANE_STATE_DIR" not in os.environ:
        state = tempfile.mkdtemp(prefix="bench-overlay-state-")
        os.environ["NETPLANE_STATE_DIR"] = state
        atexit.register(shutil.rmtree, state, True)  # the labs inside were torn down already
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "machine": f"{os.cpu_count()} cores, kernel {os.uname().release}"}
    old = RESULTS / "overlay.json"
    if args.only and old.exists():
        results = {**json.loads(old.read_text()), "when": results["when"]}
    if args.only in (None, "leases"):
        results["leases"] = {**bench_leases(100), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        print(json.dumps(results["leases"], indent=1, default=str))
    if args.only in (None, "convergence"):
        results["convergence"] = {**bench_convergence(40 if args.quick else 200), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        print(json.dumps(results["convergence"], indent=1))
    if args.only in (None, "throughput"):
        results["throughput"] = {**bench_throughput(2 if args.quick else 5, 3 if args.quick else 8), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        print(json.dumps(results["throughput"], indent=1))
    write(results)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
