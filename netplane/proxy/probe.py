"""A tiny client and server for seeing a service work: who answered, and how often.

`serve` answers every TCP connection and UDP datagram with its own name; `probe` opens N fresh
connections (or sends N datagrams from fresh sockets) to an address and counts the answers.
Used by the conformance tests, the benchmarks and the demo (`python -m netplane.proxy.probe`).
Each probe also records failures by errno name, so a refused service is visible as such.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ProbeResult:
    answers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    peers: Counter[str] = field(default_factory=Counter)  # where UDP replies came from
    latencies_us: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"answers": dict(self.answers), "errors": dict(self.errors), "peers": dict(self.peers),
                "latencies_us": self.latencies_us}


def _err(e: OSError) -> str:
    if isinstance(e, socket.timeout):
        return "TIMEOUT"
    return errno.errorcode.get(e.errno or 0, str(e))


def probe_tcp(host: str, port: int, n: int, *, timeout: float = 2.0, interval: float = 0.0) -> ProbeResult:
    r = ProbeResult()
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            t0 = time.perf_counter()
            s.connect((host, port))
            r.latencies_us.append((time.perf_counter() - t0) * 1e6)
            data = s.recv(256)
            r.answers[data.decode(errors="replace").strip() or "(empty)"] += 1
        except OSError as e:
            r.errors[_err(e)] += 1
        finally:
            s.close()
        if interval:
            time.sleep(interval)
    return r


def probe_udp(host: str, port: int, n: int, *, timeout: float = 1.0) -> ProbeResult:
    r = ProbeResult()
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        try:
            s.sendto(b"who", (host, port))
            data, peer = s.recvfrom(256)
            r.answers[data.decode(errors="replace").strip()] += 1
            r.peers[f"{peer[0]}:{peer[1]}"] += 1
        except OSError as e:
            r.errors[_err(e)] += 1
        finally:
            s.close()
    return r


class Server:
    """TCP + UDP responders on one port, answering `name`. Sockets are created by the caller's
    thread (so in whatever network namespace it is in); serving runs on daemon threads.
    With `tell_peer` the answer is `name@<source address it saw>` (to observe SNAT)."""

    def __init__(self, name: str, *, host: str = "0.0.0.0", port: int, tell_peer: bool = False) -> None:
        self.name = name.encode()
        self.tell_peer = tell_peer
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, port))
        self.tcp.listen(1024)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, port))
        self.held: list[socket.socket] = []
        self._stop = False
        for fn in (self._tcp_loop, self._udp_loop):
            threading.Thread(target=fn, daemon=True).start()

    def _tcp_loop(self) -> None:
        while not self._stop:
            try:
                c, peer = self.tcp.accept()
            except OSError:
                return
            try:
                c.sendall(self._answer(peer))
            except OSError:
                pass
            # keep the connection open for clients that want to keep talking (echo)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _answer(self, peer: tuple[str, int]) -> bytes:
        return self.name + (f"@{peer[0]}".encode() if self.tell_peer else b"") + b"\n"

    def _echo(self, c: socket.socket) -> None:
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    def _udp_loop(self) -> None:
        while not self._stop:
            try:
                _, peer = self.udp.recvfrom(2048)
            except OSError:
                return
            if self._stop or not peer:  # shutdown wakes recvfrom with an empty datagram
                return
            try:
                self.udp.sendto(self._answer(peer), peer)
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        for s in (self.tcp, self.udp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netplane.proxy.probe")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("target", help="HOST:PORT")
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--udp", action="store_true")
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--json", action="store_true")
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--port", type=int, required=True)
    a = ap.parse_args(argv)
    if a.cmd == "serve":
        Server(a.name, port=a.port)
        threading.Event().wait()
        return 0
    host, _, port = a.target.rpartition(":")
    r = probe_udp(host, int(port), a.n) if a.udp else probe_tcp(host, int(port), a.n, interval=a.interval)
    if a.json:
        print(json.dumps(r.to_json()))
    else:
        total = sum(r.answers.values())
        for name, c in sorted(r.answers.items()):
            print(f"{name:<20} {c:>5}  {'#' * max(1, round(40 * c / max(1, total)))}")
        for name, c in sorted(r.errors.items()):
            print(f"{'error ' + name:<20} {c:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
