"""Desired proxy state: entries per service port, ready endpoints only, diffs, UDP removals."""

from __future__ import annotations

from ipaddress import IPv4Address as IP

from netplane.proxy.desired import Backend, LbKey, compute, removed_udp_backends
from netplane.proxy.model import EndpointAddress, EndpointPort, Endpoints, Service, ServicePort


def svc(name: str, *ports: ServicePort, **kw: object) -> Service:
    return Service(name=name, cluster_ip=IP("10.96.0.10"), ports=ports, **kw)  # type: ignore[arg-type]


def eps(name: str, *ips: str, ready: bool = True, ports: tuple[EndpointPort, ...] = ()) -> Endpoints:
    return Endpoints(name, tuple(EndpointAddress(IP(i), ready=ready) for i in ips), ports)


def test_one_entry_per_port_with_sorted_ready_backends() -> None:
    s = svc("dns", ServicePort("udp", "UDP", 53, 5353), ServicePort("tcp", "TCP", 53, 5353))
    e = Endpoints("dns", (EndpointAddress(IP("10.0.0.9")), EndpointAddress(IP("10.0.0.1")), EndpointAddress(IP("10.0.0.5"), ready=False)))
    st = compute({"dns": s}, {"dns": e})
    assert set(st.entries) == {LbKey("dns", "udp"), LbKey("dns", "tcp")}
    assert st.entries[LbKey("dns", "udp")].backends == (Backend(IP("10.0.0.1"), 5353), Backend(IP("10.0.0.9"), 5353))


def test_named_endpoint_port_wins_over_target_port() -> None:
    s = svc("web", ServicePort("http", "TCP", 80, 8080))
    st = compute({"web": s}, {"web": eps("web", "10.0.0.1", ports=(EndpointPort("http", 9090, "TCP"),))})
    assert st.entries[LbKey("web", "http")].backends == (Backend(IP("10.0.0.1"), 9090),)


def test_no_endpoints_object_means_empty_backends() -> None:
    st = compute({"web": svc("web", ServicePort("http", "TCP", 80, 8080))}, {})
    assert st.entries[LbKey("web", "http")].backends == ()


def test_affinity_and_nodeport_carried_only_when_enabled() -> None:
    s = svc("web", ServicePort("http", "TCP", 80, 8080, 30080), type="NodePort", session_affinity="ClientIP", affinity_timeout=30)
    e = compute({"web": s}, {}).entries[LbKey("web", "http")]
    assert (e.node_port, e.affinity_timeout) == (30080, 30)
    s2 = svc("web", ServicePort("http", "TCP", 80, 8080, 30080))  # nodePort without type NodePort: ignored
    e2 = compute({"web": s2}, {}).entries[LbKey("web", "http")]
    assert (e2.node_port, e2.affinity_timeout) == (None, None)


def test_changed_and_removed_udp_backends() -> None:
    s = {"dns": svc("dns", ServicePort("u", "UDP", 53, 53)), "web": svc("web", ServicePort("h", "TCP", 80, 80))}
    a = compute(s, {"dns": eps("dns", "10.0.0.1", "10.0.0.2"), "web": eps("web", "10.0.0.3", "10.0.0.4")})
    b = compute(s, {"dns": eps("dns", "10.0.0.2"), "web": eps("web", "10.0.0.3")})
    assert a.changed(b) == {LbKey("dns", "u"), LbKey("web", "h")}
    gone = removed_udp_backends(a, b)
    assert [(e.key, be.ip) for e, be in gone] == [(LbKey("dns", "u"), IP("10.0.0.1"))]  # TCP is not listed
    assert removed_udp_backends(a, b, changed={LbKey("web", "h")}) == []
