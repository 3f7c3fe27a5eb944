"""`netplane net trace`: send one probe across the overlay and show the path it took.

scapy builds an ICMP echo with a unique id, sent from a host's (or a pod's) namespace through a
raw socket opened there; a packet socket on the host's underlay interface captures the VXLAN
packets both ways, and scapy decodes the outer headers (addresses, UDP port, VNI) and the inner
packet. The result says whether the reply arrived, which is the command's exit status.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from netplane import netns
from netplane.errors import KernelError

ETH_P_ALL = 0x0003


@dataclass(frozen=True)
class Hop:
    direction: str  # request | reply
    outer_src: str
    outer_dst: str
    sport: int
    dport: int
    vni: int
    inner_src: str
    inner_dst: str
    inner: str
    at_ms: float

    def line(self) -> str:
        return (
            f"{self.direction:7} outer {self.outer_src}:{self.sport} -> {self.outer_dst}:{self.dport} "
            f"UDP VXLAN vni {self.vni} | inner {self.inner_src} -> {self.inner_dst} {self.inner} (+{self.at_ms:.2f} ms)"
        )


@dataclass
class TraceResult:
    src: str
    dst: str
    route: str
    capture: str
    host_route: str | None = None
    error: str | None = None
    arrived: bool = False
    rtt_ms: float | None = None
    hops: list[Hop] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.src,
            "to": self.dst,
            "route": self.route,
            "host_route": self.host_route,
            "error": self.error,
            "capture": self.capture,
            "arrived": self.arrived,
            "rtt_ms": self.rtt_ms,
            "vxlan": [h.__dict__ for h in self.hops],
        }

    def text(self) -> str:
        lines = [f"probe  {self.src} -> {self.dst}", f"route  {self.route}"]
        if self.host_route:
            lines.append(f"host   {self.host_route}")
        lines.append(f"capture on {self.capture}")
        if self.error:
            lines.append(f"send   failed: {self.error}")
        lines += ["  " + h.line() for h in self.hops] or ["  no VXLAN packet carrying the probe was seen on the underlay"]
        lines.append(f"reply  received after {self.rtt_ms:.2f} ms" if self.arrived else "reply  NOT received: the probe did not arrive")
        return "\n".join(lines)


def _decode(frame: bytes, port: int, ident: int, t0: float) -> Hop | None:
    try:
        eth = Ether(frame)
    except Exception:  # noqa: BLE001 - anything unparsable is not ours
        return None
    if IP not in eth or UDP not in eth or eth[UDP].dport != port:
        return None
    udp = eth[UDP]
    vx = udp[VXLAN] if VXLAN in udp else VXLAN(bytes(udp.payload))
    inner = vx.payload
    if IP not in inner or ICMP not in inner or inner[ICMP].id != ident:
        return None
    icmp = inner[ICMP]
    kind = {8: "request", 0: "reply"}.get(int(icmp.type), f"icmp-{icmp.type}")
    return Hop(
        direction=kind,
        outer_src=eth[IP].src,
        outer_dst=eth[IP].dst,
        sport=int(udp.sport),
        dport=int(udp.dport),
        vni=int(vx.vni),
        inner_src=inner[IP].src,
        inner_dst=inner[IP].dst,
        inner=f"ICMP echo-{kind} id {icmp.id} seq {icmp.seq}",
        at_ms=(time.monotonic() - t0) * 1000,
    )


def route_of(netns_name: str | None, dst: IPv4Address) -> str:
    from netplane.vxlan.netlink import Netlink

    with Netlink(netns_name=netns_name) as nl:
        try:
            r = nl.ipr.route("get", dst=str(dst))[0]
        except Exception as e:  # noqa: BLE001
            return f"no route to {dst} ({e})"
        names = {l.index: l.name for l in nl.links()}
        gw, src, oif = r.get_attr("RTA_GATEWAY"), r.get_attr("RTA_PREFSRC"), r.get_attr("RTA_OIF")
        return f"{dst}" + (f" via {gw}" if gw else "") + f" dev {names.get(oif, oif)}" + (f" src {src}" if src else "")


def trace(
    *,
    src_netns: str | None,
    src_label: str,
    capture_netns: str | None,
    capture_iface: str,
    dst: IPv4Address,
    port: int,
    timeout: float = 2.0,
) -> TraceResult:
    ident = int.from_bytes(os.urandom(2), "big") or 1
    result = TraceResult(src=src_label, dst=str(dst), route=route_of(src_netns, dst), capture=f"{capture_iface} ({capture_netns or 'this namespace'})")
    if src_netns != capture_netns:
        result.host_route = route_of(capture_netns, dst)
    try:
        with netns.inside(capture_netns):
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            cap.bind((capture_iface, 0))
        with netns.inside(src_netns):
            probe = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError as e:
        raise KernelError(f"trace: cannot open sockets: {e.strerror or e}", errno=e.errno) from e
    stop = threading.Event()
    t0 = time.monotonic()

    def capture() -> None:
        while not stop.is_set():
            r, _, _ = select.select([cap], [], [], 0.05)
            if r:
                hop = _decode(cap.recv(65535), port, ident, t0)
                if hop is not None:
                    result.hops.append(hop)

    th = threading.Thread(target=capture, name="trace-capture", daemon=True)
    th.start()
    try:
        pkt = ICMP(type=8, id=ident, seq=1) / (b"netplane-trace-" + os.urandom(8).hex().encode())
        t0 = time.monotonic()
        try:
            probe.sendto(bytes(pkt), (str(dst), 0))
        except OSError as e:
            result.error = e.strerror or str(e)
            return result
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([probe], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            data, addr = probe.recvfrom(65535)
            ip = IP(data)
            if ICMP in ip and ip[ICMP].type == 0 and ip[ICMP].id == ident and addr[0] == str(dst):
                result.arrived = True
                result.rtt_ms = (time.monotonic() - t0) * 1000
                break
        time.sleep(0.05)  # let the capture see the reply frame
    finally:
        stop.set()
        th.join(timeout=1)
        cap.close()
        probe.close()
    return result
