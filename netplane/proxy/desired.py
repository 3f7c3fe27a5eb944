"""The proxy's desired state: what every backend (iptables, eBPF) must make the kernel do.

Computed once per change from Services + Endpoints (pure), then handed to the selected backend.
One `LbEntry` per service port: a VIP:port/protocol, an optional nodePort, optional ClientIP
affinity, and the ready backends (sorted, so equal states compare equal and diffs are cheap).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from netplane.proxy.model import EndpointAddress, Endpoints, Protocol, Service


@dataclass(frozen=True, order=True)
class Backend:
    ip: IPv4Address
    port: int


@dataclass(frozen=True, order=True)
class LbKey:
    service: str
    port_name: str

    def __str__(self) -> str:
        return f"{self.service}:{self.port_name}"


@dataclass(frozen=True)
class LbEntry:
    key: LbKey
    vip: IPv4Address
    port: int
    protocol: Protocol
    backends: tuple[Backend, ...]
    node_port: int | None = None
    affinity_timeout: int | None = None  # seconds when ClientIP affinity is on


@dataclass(frozen=True)
class ProxyState:
    entries: Mapping[LbKey, LbEntry]

    def changed(self, other: ProxyState) -> set[LbKey]:
        """Keys whose entry differs between the two states (added, removed or modified)."""
        keys = set(self.entries) | set(other.entries)
        return {k for k in keys if self.entries.get(k) != other.entries.get(k)}

    def for_service(self, name: str) -> list[LbEntry]:
        return [e for k, e in sorted(self.entries.items()) if k.service == name]


EMPTY = ProxyState({})


def backend_port(svc_port_name: str, target_port: int, ep: Endpoints, addr: EndpointAddress | None = None) -> int:
    """The port a service port reaches on an endpoint: the address's own port of that name,
    else the Endpoints' port of that name, else the service's targetPort."""
    for p in (addr.ports if addr is not None else ()):
        if p.name == svc_port_name:
            return p.port
    for p in ep.ports:
        if p.name == svc_port_name:
            return p.port
    return target_port


def compute(services: Mapping[str, Service], endpoints: Mapping[str, Endpoints]) -> ProxyState:
    """Services and Endpoints keyed by service name -> desired LB entries (ready addresses only)."""
    out: dict[LbKey, LbEntry] = {}
    for name, svc in services.items():
        ep = endpoints.get(name)
        ready = [a for a in ep.addresses if a.ready] if ep else []
        for p in svc.ports:
            key = LbKey(name, p.name)
            backends = {Backend(a.ip, backend_port(p.name, p.target_port, ep, a)) for a in ready} if ep else set()
            out[key] = LbEntry(
                key=key,
                vip=svc.cluster_ip,
                port=p.port,
                protocol=p.protocol,
                backends=tuple(sorted(backends)),
                node_port=p.node_port if svc.type == "NodePort" else None,
                affinity_timeout=svc.affinity_timeout if svc.session_affinity == "ClientIP" else None,
            )
    return ProxyState(out)


def removed_udp_backends(old: ProxyState, new: ProxyState, changed: Iterable[LbKey] | None = None) -> list[tuple[LbEntry, Backend]]:
    """UDP (entry, backend) pairs present before and gone now: their conntrack must go."""
    out: list[tuple[LbEntry, Backend]] = []
    keys = old.entries.keys() if changed is None else [k for k in changed if k in old.entries]
    for k in keys:
        e = old.entries[k]
        if e.protocol != "UDP":
            continue
        now = new.entries.get(k)
        keep = set(now.backends) if now and now.vip == e.vip and now.port == e.port else set()
        out.extend((e, b) for b in e.backends if b not in keep)
    return out
