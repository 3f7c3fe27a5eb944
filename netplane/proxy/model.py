"""Service and Endpoints: the objects the proxy balances, their JSON form in etcd, validation.

A Service is a virtual IP (ClusterIP) and ports; its Endpoints are the pod addresses behind it.
They are stored under two keys (`Keys.service`, `Keys.endpoints_of`) because they change at
different rates and are written by different parties (a user or the orchestrator writes the
spec; the endpoints controller, or a user by hand, writes the endpoints). Everything here is
pure: parse/validate user input, encode to and decode from etcd's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal, TypedDict

from netplane.errors import ConfigError, DecodeError
from netplane.store import codec

Protocol = Literal["TCP", "UDP"]
ServiceType = Literal["ClusterIP", "NodePort"]
Affinity = Literal["None", "ClientIP"]

PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP")
DEFAULT_SERVICE_RANGE = IPv4Network("10.96.0.0/12")
NODE_PORT_RANGE = (30000, 32767)
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, Kubernetes' default


@dataclass(frozen=True)
class ServicePort:
    name: str
    protocol: Protocol
    port: int
    target_port: int
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    name: str
    cluster_ip: IPv4Address
    ports: tuple[ServicePort, ...]
    selector: tuple[tuple[str, str], ...] = ()
    type: ServiceType = "ClusterIP"
    session_affinity: Affinity = "None"
    affinity_timeout: int = DEFAULT_AFFINITY_TIMEOUT


@dataclass(frozen=True)
class EndpointPort:
    name: str
    port: int
    protocol: Protocol


@dataclass(frozen=True)
class EndpointAddress:
    ip: IPv4Address
    ready: bool = True
    node: str | None = None
    # this address's own port numbers, when they differ from the Endpoints' (a named
    # targetPort that resolves to another number on this pod: v1 puts it in its own subset)
    ports: tuple[EndpointPort, ...] = ()


@dataclass(frozen=True)
class Endpoints:
    name: str
    addresses: tuple[EndpointAddress, ...] = ()
    ports: tuple[EndpointPort, ...] = field(default=())

    def ready_ips(self) -> tuple[IPv4Address, ...]:
        return tuple(sorted({a.ip for a in self.addresses if a.ready}))


# --------------------------------------------------------------------------- JSON shapes
class PortJSON(TypedDict, total=False):
    name: str
    protocol: str
    port: int
    targetPort: int
    nodePort: int


class ServiceJSON(TypedDict):
    name: str
    clusterIP: str
    ports: list[PortJSON]
    selector: dict[str, str]
    type: str
    sessionAffinity: str
    sessionAffinityTimeout: int


class AddressJSON(TypedDict, total=False):
    ip: str
    ready: bool
    node: str


class EndpointsJSON(TypedDict):
    name: str
    addresses: list[AddressJSON]
    ports: list[dict[str, Any]]


# --------------------------------------------------------------------------- validation
def check_port(what: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{what} {value} is out of range (1-65535)")
    return value


def check_protocol(value: str) -> Protocol:
    up = value.upper()
    if up not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {value!r}: use tcp or udp")
    return "TCP" if up == "TCP" else "UDP"


def check_node_port(value: int, rng: tuple[int, int] = NODE_PORT_RANGE) -> int:
    if not rng[0] <= value <= rng[1]:
        raise ConfigError(f"nodePort {value} is outside the node port range {rng[0]}-{rng[1]}")
    return value


def parse_port_spec(spec: str, *, index: int = 0) -> ServicePort:
    """`80:8080/tcp`, `53/udp`, `web=80:8080`, `80:8080/tcp:30080` (with a nodePort)."""
    raw = spec.strip()
    name = f"p{index}" if index else "default"
    if "=" in raw:
        name, raw = raw.split("=", 1)
    node_port: int | None = None
    proto = "tcp"
    ports = raw
    if "/" in raw:
        ports, rest = raw.split("/", 1)
        if ":" in rest:
            proto, np = rest.split(":", 1)
            node_port = _int(np, spec)
        else:
            proto = rest
    parts = ports.split(":")
    if len(parts) not in (1, 2) or not all(parts):
        raise ConfigError(f"bad port {spec!r}: expected PORT[:TARGETPORT][/tcp|/udp]")
    port = check_port("port", _int(parts[0], spec))
    target = check_port("targetPort", _int(parts[-1], spec))
    if node_port is not None:
        check_node_port(node_port)
    return ServicePort(name=name, protocol=check_protocol(proto), port=port, target_port=target, node_port=node_port)


def _int(s: str, spec: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise ConfigError(f"bad port {spec!r}: {s!r} is not a number") from None


def parse_ip(what: str, value: str) -> IPv4Address:
    try:
        return IPv4Address(value)
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not an IPv4 address") from None


def validate_service(svc: Service) -> Service:
    """Checks that do not need the store (ranges and uniqueness are the allocator's job)."""
    if not svc.ports:
        raise ConfigError(f"service {svc.name}: at least one --port is required")
    seen: set[tuple[int, str]] = set()
    names: set[str] = set()
    for p in svc.ports:
        check_port("port", p.port)
        check_port("targetPort", p.target_port)
        if (p.port, p.protocol) in seen:
            raise ConfigError(f"service {svc.name}: port {p.port}/{p.protocol.lower()} given twice")
        if p.name in names:
            raise ConfigError(f"service {svc.name}: port name {p.name!r} given twice")
        seen.add((p.port, p.protocol))
        names.add(p.name)
        if p.node_port is not None:
            check_node_port(p.node_port)
            if svc.type != "NodePort":
                raise ConfigError(f"service {svc.name}: nodePort needs --type NodePort")
    if svc.affinity_timeout <= 0:
        raise ConfigError("affinity timeout must be positive")
    return svc


# --------------------------------------------------------------------------- encode / decode
def encode_service(svc: Service) -> str:
    ports: list[PortJSON] = []
    for p in svc.ports:
        pj: PortJSON = {"name": p.name, "protocol": p.protocol, "port": p.port, "targetPort": p.target_port}
        if p.node_port is not None:
            pj["nodePort"] = p.node_port
        ports.append(pj)
    body: ServiceJSON = {
        "name": svc.name,
        "clusterIP": str(svc.cluster_ip),
        "ports": ports,
        "selector": dict(svc.selector),
        "type": svc.type,
        "sessionAffinity": svc.session_affinity,
        "sessionAffinityTimeout": svc.affinity_timeout,
    }
    return codec.dumps(body)


def decode_service(key: str, raw: bytes | str) -> Service:
    m = codec.obj(codec.loads(raw), key)
    name = codec.field(m, "name", str, what=key)
    ip = codec.convert(f"{key}.clusterIP", lambda: IPv4Address(codec.field(m, "clusterIP", str, what=key)))
    ports = []
    for i, pv in enumerate(codec.field(m, "ports", list, what=key)):
        w = f"{key}.ports[{i}]"
        pm = codec.obj(pv, w)
        proto = codec.field(pm, "protocol", str, what=w)
        if proto not in PROTOCOLS:
            raise DecodeError(f"{w}.protocol: {proto!r} is not TCP or UDP")
        port = codec.field(pm, "port", int, what=w)
        target = codec.opt(pm, "targetPort", int, port, what=w)
        np = codec.opt(pm, "nodePort", int, 0, what=w) or None
        for label, v in (("port", port), ("targetPort", target), ("nodePort", np or 1)):
            if not 1 <= v <= 65535:
                raise DecodeError(f"{w}.{label}: {v} out of range")
        ports.append(ServicePort(codec.opt(pm, "name", str, f"p{i}", what=w), _proto(proto), port, target, np))
    if not ports:
        raise DecodeError(f"{key}: no ports")
    typ = codec.opt(m, "type", str, "ClusterIP", what=key)
    if typ not in ("ClusterIP", "NodePort"):
        raise DecodeError(f"{key}.type: {typ!r}")
    aff = codec.opt(m, "sessionAffinity", str, "None", what=key)
    if aff not in ("None", "ClientIP"):
        raise DecodeError(f"{key}.sessionAffinity: {aff!r}")
    timeout = codec.opt(m, "sessionAffinityTimeout", int, DEFAULT_AFFINITY_TIMEOUT, what=key)
    if timeout <= 0:
        raise DecodeError(f"{key}.sessionAffinityTimeout: {timeout}")
    sel = codec.opt(m, "selector", dict, {}, what=key)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in sel.items()):
        raise DecodeError(f"{key}.selector: must map strings to strings")
    return Service(
        name=name,
        cluster_ip=ip,
        ports=tuple(ports),
        selector=tuple(sorted(sel.items())),
        type=typ,  # type: ignore[arg-type]
        session_affinity=aff,  # type: ignore[arg-type]
        affinity_timeout=timeout,
    )


def _proto(p: str) -> Protocol:
    return "TCP" if p == "TCP" else "UDP"


def encode_endpoints(ep: Endpoints) -> str:
    addrs: list[AddressJSON] = []
    for a in ep.addresses:
        aj: AddressJSON = {"ip": str(a.ip), "ready": a.ready}
        if a.node:
            aj["node"] = a.node
        addrs.append(aj)
    body: EndpointsJSON = {
        "name": ep.name,
        "addresses": addrs,
        "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in ep.ports],
    }
    return codec.dumps(body)


def decode_endpoints(key: str, raw: bytes | str) -> Endpoints:
    m = codec.obj(codec.loads(raw), key)
    name = codec.field(m, "name", str, what=key)
    addrs = []
    for i, av in enumerate(codec.opt(m, "addresses", list, [], what=key)):
        w = f"{key}.addresses[{i}]"
        am = codec.obj(av, w)
        ip_text = codec.field(am, "ip", str, what=w)
        ip = codec.convert(f"{w}.ip", lambda: IPv4Address(ip_text))  # noqa: B023 - called at once
        addrs.append(
            EndpointAddress(ip=ip, ready=codec.opt(am, "ready", bool, True, what=w), node=codec.opt(am, "node", str, "", what=w) or None)
        )
    ports = []
    for i, pv in enumerate(codec.opt(m, "ports", list, [], what=key)):
        w = f"{key}.ports[{i}]"
        pm = codec.obj(pv, w)
        proto = codec.opt(pm, "protocol", str, "TCP", what=w)
        if proto not in PROTOCOLS:
            raise DecodeError(f"{w}.protocol: {proto!r}")
        port = codec.field(pm, "port", int, what=w)
        if not 1 <= port <= 65535:
            raise DecodeError(f"{w}.port: {port} out of range")
        ports.append(EndpointPort(codec.opt(pm, "name", str, "", what=w), port, _proto(proto)))
    return Endpoints(name=name, addresses=tuple(addrs), ports=tuple(ports))


def service_to_json(svc: Service, ep: Endpoints | None) -> dict[str, Any]:
    """The `svc show/list -o json` shape (snake_case, like the rest of the CLI)."""
    return {
        "name": svc.name,
        "cluster_ip": str(svc.cluster_ip),
        "type": svc.type,
        "selector": dict(svc.selector),
        "session_affinity": svc.session_affinity,
        "ports": [
            {"name": p.name, "protocol": p.protocol, "port": p.port, "target_port": p.target_port, "node_port": p.node_port}
            for p in svc.ports
        ],
        "endpoints": [{"ip": str(a.ip), "ready": a.ready, **({"node": a.node} if a.node else {})} for a in (ep.addresses if ep else ())],
    }
