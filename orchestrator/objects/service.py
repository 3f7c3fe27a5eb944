"""Service and Endpoints in their v1 shape, and the bridge to the proxy's model.

The proxy (`netplane.proxy.model`) predates the orchestrator: it stores a flat Service JSON
(`{name, clusterIP, ports, selector, type, sessionAffinity, sessionAffinityTimeout}`) and flat
Endpoints (`{name, addresses[{ip, ready, node}], ports}`) under `Keys.service` /
`Keys.endpoints_of`, with no namespace. The orchestrator speaks Kubernetes v1 (`metadata`,
`spec.ports[].targetPort` as a number *or a container port's name*, `subsets` with
`addresses` / `notReadyAddresses`). Rather than change what the proxy reads, this module
converts both ways, losslessly for everything the flat form can say:

* `from_legacy_service` / `from_legacy_endpoints` lift what existing clusters have stored
  (namespace "default"), so an upgraded cluster keeps every Service;
* `to_proxy_service` / `to_proxy_endpoints` give the proxy its model from v1 objects. A named
  targetPort cannot be resolved without pods: the proxy takes the port from the Endpoints
  (the endpoints controller resolves names per pod), and falls back to the service port.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any, TypedDict

from netplane.errors import ConfigError
from netplane.proxy import model
from orchestrator.objects.meta import DEFAULT_NAMESPACE, ObjectMeta

DEFAULT_AFFINITY_TIMEOUT = model.DEFAULT_AFFINITY_TIMEOUT


class ServicePort(TypedDict, total=False):
    name: str
    protocol: str
    port: int
    targetPort: int | str
    nodePort: int


class ClientIPConfig(TypedDict, total=False):
    timeoutSeconds: int


class SessionAffinityConfig(TypedDict, total=False):
    clientIP: ClientIPConfig


class ServiceSpec(TypedDict, total=False):
    clusterIP: str
    ports: list[ServicePort]
    selector: dict[str, str]
    type: str
    sessionAffinity: str
    sessionAffinityConfig: SessionAffinityConfig


class Service(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: ServiceSpec
    status: dict[str, Any]


class ObjectReference(TypedDict, total=False):
    kind: str
    namespace: str
    name: str
    uid: str


class EndpointAddress(TypedDict, total=False):
    ip: str
    nodeName: str
    hostname: str
    targetRef: ObjectReference


class EndpointPort(TypedDict, total=False):
    name: str
    port: int
    protocol: str


class EndpointSubset(TypedDict, total=False):
    addresses: list[EndpointAddress]
    notReadyAddresses: list[EndpointAddress]
    ports: list[EndpointPort]


class Endpoints(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    subsets: list[EndpointSubset]


# --------------------------------------------------------------------------- legacy -> v1
def from_legacy_service(svc: model.Service) -> Service:
    ports: list[ServicePort] = []
    for p in svc.ports:
        sp: ServicePort = {"name": p.name, "protocol": p.protocol, "port": p.port,
                           "targetPort": p.target_port}
        if p.node_port is not None:
            sp["nodePort"] = p.node_port
        ports.append(sp)
    spec: ServiceSpec = {
        "clusterIP": str(svc.cluster_ip),
        "ports": ports,
        "type": svc.type,
        "sessionAffinity": svc.session_affinity,
    }
    if svc.selector:
        spec["selector"] = dict(svc.selector)
    if svc.session_affinity == "ClientIP" or svc.affinity_timeout != DEFAULT_AFFINITY_TIMEOUT:
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": svc.affinity_timeout}}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name, "namespace": DEFAULT_NAMESPACE},
        "spec": spec,
    }


def from_legacy_endpoints(ep: model.Endpoints) -> Endpoints:
    def addr(a: model.EndpointAddress) -> EndpointAddress:
        out: EndpointAddress = {"ip": str(a.ip)}
        if a.node:
            out["nodeName"] = a.node
        return out

    subset: EndpointSubset = {}
    ready = [addr(a) for a in ep.addresses if a.ready]
    not_ready = [addr(a) for a in ep.addresses if not a.ready]
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    if ep.ports:
        subset["ports"] = [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in ep.ports]
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": ep.name, "namespace": DEFAULT_NAMESPACE},
        "subsets": [subset] if subset else [],
    }


# --------------------------------------------------------------------------- v1 -> proxy
def _proto(p: str | None) -> model.Protocol:
    return model.check_protocol(p or "TCP")


def _ip(text: Any) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not an IPv4 address") from None


def to_proxy_service(svc: Mapping[str, Any]) -> model.Service:
    """The proxy's model of a (validated) v1 Service. Raises ConfigError on what the proxy
    cannot express (a protocol other than TCP/UDP, a type other than ClusterIP/NodePort)."""
    spec = svc.get("spec") or {}
    ports = []
    for i, p in enumerate(spec.get("ports") or []):
        if not isinstance(p.get("port"), int):
            raise ConfigError(f"service port {i} has no port number")
        tp = p.get("targetPort", p["port"])
        ports.append(model.ServicePort(
            name=p.get("name") or ("default" if i == 0 else f"p{i}"),
            protocol=_proto(p.get("protocol")),
            port=p["port"],
            target_port=tp if isinstance(tp, int) else p["port"],
            node_port=p.get("nodePort"),
        ))
    typ = spec.get("type") or "ClusterIP"
    if typ not in ("ClusterIP", "NodePort"):
        raise ConfigError(f"service type {typ!r} is not supported by the proxy")
    aff = spec.get("sessionAffinity") or "None"
    if aff not in ("None", "ClientIP"):
        raise ConfigError(f"session affinity {aff!r} is not supported by the proxy")
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
        "timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
    return model.Service(
        name=(svc.get("metadata") or {}).get("name") or "",
        cluster_ip=_ip(spec.get("clusterIP") or "0.0.0.0"),
        ports=tuple(ports),
        selector=tuple(sorted((spec.get("selector") or {}).items())),
        type=typ,  # type: ignore[arg-type]  # checked above
        session_affinity=aff,  # type: ignore[arg-type]  # checked above
        affinity_timeout=timeout,
    )


def to_proxy_endpoints(ep: Mapping[str, Any]) -> model.Endpoints:
    """Flatten subsets into the proxy's one list of addresses. The Endpoints' ports are the
    first subset's; the addresses of a subset with other port numbers (pods whose named
    targetPort resolved to another number) carry their own. An unnamed port is the proxy's
    "default", as an unnamed service port is."""
    addrs: list[model.EndpointAddress] = []
    ports: tuple[model.EndpointPort, ...] | None = None
    for s in ep.get("subsets") or []:
        if any(not isinstance(p.get("port"), int) for p in s.get("ports") or []):
            raise ConfigError("an endpoints port has no port number")
        if any(not isinstance(p.get("name") or "", str) for p in s.get("ports") or []):
            raise ConfigError("an endpoints port name is not a string")
        sp = tuple(model.EndpointPort(p.get("name") or "default", p["port"], _proto(p.get("protocol")))
                   for p in s.get("ports") or [])
        if ports is None and sp:
            ports = sp
        own = sp if sp and set(sp) != set(ports or ()) else ()
        for a in s.get("addresses") or []:
            addrs.append(model.EndpointAddress(_ip(a.get("ip")), True, a.get("nodeName") or None, own))
        for a in s.get("notReadyAddresses") or []:
            addrs.append(model.EndpointAddress(_ip(a.get("ip")), False, a.get("nodeName") or None, own))
    return model.Endpoints(name=(ep.get("metadata") or {}).get("name") or "",
                           addresses=tuple(addrs), ports=ports or ())
