"""Benchmark: what a port-forward costs, against a direct connection to the same pod in the same
run (run as root from the repo root: `.venv/bin/python bench/bench_portforward.py`).

A 1-host lab (namespace runtime, one master serving the Kubernetes API) runs one pod with a
small server on 0.0.0.0:8080 (`SERVER` below: per connection, a 9-byte request, `U` upload:
read to EOF and answer the count; `D<n>` download: send n bytes and close). Three paths reach it:

* **direct**: from the host's network namespace to the pod IP (the floor: bridge and veth);
* **netplane**: `netplane port-forward` on the root namespace's loopback (CLI → node agent's
  `/portForward` over TLS → the pod's localhost);
* **kubectl**: `kubectl port-forward` (v1.33: SPDY inside a WebSocket → the API server, which
  ends SPDY and opens the node agent's `/portForward` per connection over TLS).

For each path: **connection latency** (connect, a 9-byte download request for 100 bytes, read
them to EOF: one fresh connection per sample, sequentially; p50/p99 over `--samples`), and
**throughput** (a `--megabytes` download and upload, best of 3, MB/s). Ratios are against
the direct path in the same run. Writes bench/results/portforward.md and .json (`--out`). The
lab is removed in a `finally` (its logs kept under /tmp/pfbench-logs-<lab> on failure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netplane import netns
from netplane.lab import (
    Lab,
    cluster,
)
from netplane.lab.builder import LAB_PREFIX, up_on_free_underlay

NETPLANE = str(Path(sys.executable).parent / "netplane")
KUBECTL = "/usr/local/lib/netplane/kubectl"
API_PORT = 6443
SERVER = """
import socket, sys, threading
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", 8080))
ls.listen(64)
print("listening", flush=True)
CHUNK = b"x" * 65536
def serve(c):
    with c:
        req = b""
        while len(req) < 9 and (d := c.recv(9 - len(req))):
            req += d
        if req[:1] == b"U":
            n = 0
            while d := c.recv(1 << 20):
                n += len(d)
            c.sendall(str(n).encode())
        elif req[:1] == b"D":
            left = int(req[1:])
            while left > 0:
                c.sendall(CHUNK[:min(left, len(CHUNK))])
                left -= min(left, len(CHUNK))
while True:
    threading.Thread(target=serve, args=(ls.accept()[0],), daemon=True).start()
"""

Connect = Callable[[], socket.socket]


def np(*args: str, input: str | None = None, lab: Lab) -> str:
    p = subprocess.run([NETPLANE, "--etcd", lab.etcd_endpoint, "--prefix", LAB_PREFIX, *args], input=input,
                       capture_output=True, text=True, timeout=120, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"netplane {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


# --------------------------------------------------------------------------- measurements
def download(connect: Connect, size: int) -> float:
    """Seconds from connect to the last of `size` bytes."""
    t0 = time.perf_counter()
    with connect() as s:
        s.sendall(b"D%08d" % size)
        got = 0
        while d := s.recv(1 << 20):
            got += len(d)
    if got != size:
        raise RuntimeError(f"downloaded {got} of {size} bytes")
    return time.perf_counter() - t0


def upload(connect: Connect, size: int) -> float:
    chunk = b"y" * (1 << 20)
    t0 = time.perf_counter()
    with connect() as s:
        s.sendall(b"U00000000")
        left = size
        while left > 0:
            s.sendall(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while d := s.recv(64):
            answer += d
    if int(answer or 0) != size:
        raise RuntimeError(f"the pod counted {answer!r} of {size} bytes")
    return time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def measure(name: str, connect: Connect, samples: int, megabytes: int) -> dict[str, Any]:
    download(connect, 100)  # warm: the first connection may pay for imports, contexts, caches
    lat = [download(connect, 100) * 1000 for _ in range(samples)]
    size = megabytes << 20
    down = min(download(connect, size) for _ in range(3))
    up = min(upload(connect, size) for _ in range(3))
    r = {"path": name, "latency_ms": lat, "p50_ms": statistics.median(lat), "p99_ms": pct(lat, 0.99),
         "download_MBps": size / down / 1e6, "upload_MBps": size / up / 1e6}
    print(f"  {name}: connect+100 B p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms; "
          f"download {r['download_MBps']:.0f} MB/s, upload {r['upload_MBps']:.0f} MB/s", flush=True)
    return r


# --------------------------------------------------------------------------- the paths
@contextmanager
def forwarder(argv: list[str]) -> Iterator[int]:
    """A port-forward process; the local port it prints (kubectl's and our line alike)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("Forwarding from 127.0.0.1:"):
            p.kill()
            raise RuntimeError(f"{argv[0]} port-forward: {line!r} {p.stderr.read()}")  # type: ignore[union-attr]
        yield int(line.split("127.0.0.1:")[1].split()[0])
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def loopback(port: int) -> Connect:
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=60)


def in_netns(ns: str, address: str, port: int) -> Connect:
    def connect() -> socket.socket:
        with netns.inside(ns):
            s = socket.socket()
        s.settimeout(60)
        s.connect((address, port))
        return s

    return connect


def run(args: argparse.Namespace) -> dict[str, Any]:
    lab_name = "pf" + os.urandom(3).hex()
    state = Path("/tmp") / f"pfbench-{lab_name}"
    lab = up_on_free_underlay(lab_name, range(200, 250), hosts=1, runtime="namespaces", masters=1,
                              master_args=("--apiserver-listen", f"0.0.0.0:{API_PORT}",
                                           "--apiserver-state-dir", str(state)))
    try:
        with cluster.started(lab, keep_logs_in=Path("/tmp") / f"pfbench-logs-{lab.name}", wait=120):
            return measure_all(lab, state, args)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def measure_all(lab: Lab, state: Path, args: argparse.Namespace) -> dict[str, Any]:
    wait(lambda: (state / "apiserver.json").exists(), 60, "the master's API server")
    api_port = lab.add_relay(f"{lab.topology.etcd_ip}:{API_PORT}", "api-relay.log")
    kubeconfig = state / "bench.kubeconfig"
    subprocess.run([NETPLANE, "kubeconfig", "--state-dir", str(state), "--server", f"https://127.0.0.1:{api_port}",
                    "-o", str(kubeconfig)], check=True, capture_output=True, timeout=60)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sink"},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
               "name": "sink", "image": "busybox", "command": [sys.executable, "-c", SERVER]}]}}
    np("apply", "-f", "-", input=json.dumps(pod), lab=lab)
    wait(lambda: "listening" in np("logs", "sink", lab=lab), 60, "pod sink listening")
    ip = json.loads(np("get", "pod", "sink", "-o", "json", lab=lab))["status"]["podIP"]
    host_ns = lab.netns(lab.topology.hosts[0].name)
    results = [measure("direct (host netns → pod IP)", in_netns(host_ns, ip, 8080), args.samples, args.megabytes)]
    with forwarder([NETPLANE, "--etcd", lab.etcd_endpoint, "--prefix", LAB_PREFIX, "port-forward", "sink",
                    ":8080"]) as port:
        results.append(measure("netplane port-forward", loopback(port), args.samples, args.megabytes))
    with forwarder([KUBECTL, "--kubeconfig", str(kubeconfig), "port-forward", "pod/sink", ":8080",
                    "--address", "127.0.0.1"]) as port:
        results.append(measure("kubectl port-forward", loopback(port), args.samples, args.megabytes))
    return {"results": results}


def render(doc: dict[str, Any]) -> str:
    rs = doc["results"]
    base = rs[0]
    out = [
        "# Port-forward: what the tunnel costs (`bench/bench_portforward.py`)", "",
        (f"Machine: {os.cpu_count()} cores, kernel {platform.release()}, Python {platform.python_version()}; "
         f"load average {doc['load']} at the start (shared with other sessions: noisy). Code: commit {doc['commit']}. "
         f"1-host lab, namespace runtime; {doc['samples']} latency samples, {doc['megabytes']} MB transfers "
         "(best of 3). Raw samples in `portforward.json`."), "",
        "| path | connect + 100 B p50 / p99 (ms) | × direct (p50) | download MB/s | × direct | upload MB/s | × direct |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rs:
        out.append(f"| {r['path']} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | {r['p50_ms'] / base['p50_ms']:.1f}× | "
                   f"{r['download_MBps']:.0f} | {r['download_MBps'] / base['download_MBps']:.2f}× | "
                   f"{r['upload_MBps']:.0f} | {r['upload_MBps'] / base['upload_MBps']:.2f}× |")
    if doc.get("notes"):
        out += ["", doc["notes"].rstrip()]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--megabytes", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "portforward")
    ap.add_argument("--render", type=Path, help="write the .md of an earlier run's JSON")
    ap.add_argument("--notes", type=Path, help="text appended to the .md")
    args = ap.parse_args()
    if args.render:
        doc = json.loads(args.render.read_text())
    else:
        load = "/".join(f"{x:.2f}" for x in os.getloadavg())
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT,
                                check=False).stdout.strip()
        doc = {"load": load, "commit": commit, "samples": args.samples, "megabytes": args.megabytes, **run(args)}
        args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    if args.notes:
        doc["notes"] = args.notes.read_text()
    args.out.with_suffix(".md").write_text(render(doc))
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
