"""Service model: parsing user input, validation errors, etcd JSON round trips, malformed data."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from netplane.errors import ConfigError, DecodeError
from netplane.proxy.model import (
    EndpointAddress,
    EndpointPort,
    Endpoints,
    Service,
    ServicePort,
    decode_endpoints,
    decode_service,
    encode_endpoints,
    encode_service,
    parse_port_spec,
    service_to_json,
    validate_service,
)


def test_parse_port_forms() -> None:
    assert parse_port_spec("80:8080") == ServicePort("default", "TCP", 80, 8080)
    assert parse_port_spec("53/udp", index=1) == ServicePort("p1", "UDP", 53, 53)
    assert parse_port_spec("web=80:8080/TCP") == ServicePort("web", "TCP", 80, 8080)
    assert parse_port_spec("80:8080/tcp:30080") == ServicePort("default", "TCP", 80, 8080, 30080)


@pytest.mark.parametrize(
    ("spec", "msg"),
    [
        ("0:80", "port 0 is out of range"),
        ("80:70000", "targetPort 70000 is out of range"),
        ("80/sctp", "unknown protocol 'sctp'"),
        ("80:8080/tcp:80", "nodePort 80 is outside the node port range 30000-32767"),
        ("http", "'http' is not a number"),
        ("1:2:3", "expected PORT[:TARGETPORT]"),
    ],
)
def test_parse_port_errors(spec: str, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace("[", r"\[")):
        parse_port_spec(spec)


def _svc(**kw: object) -> Service:
    base: dict[str, object] = {"name": "web", "cluster_ip": IPv4Address("10.96.0.10"), "ports": (ServicePort("default", "TCP", 80, 8080),)}
    base.update(kw)
    return Service(**base)  # type: ignore[arg-type]


def test_validate_rejects_duplicates_and_nodeport_without_type() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        validate_service(_svc(ports=(ServicePort("a", "TCP", 80, 1), ServicePort("b", "TCP", 80, 2))))
    with pytest.raises(ConfigError, match="needs --type NodePort"):
        validate_service(_svc(ports=(ServicePort("a", "TCP", 80, 1, 30001),)))
    with pytest.raises(ConfigError, match="at least one --port"):
        validate_service(_svc(ports=()))
    # same port number on TCP and UDP is fine (DNS)
    validate_service(_svc(ports=(ServicePort("a", "TCP", 53, 53), ServicePort("b", "UDP", 53, 53))))


def test_service_round_trip() -> None:
    s = _svc(type="NodePort", ports=(ServicePort("x", "UDP", 53, 5353, 30053),), session_affinity="ClientIP",
             affinity_timeout=60, selector=(("app", "dns"),))
    assert decode_service("k", encode_service(s)) == s


def test_endpoints_round_trip_and_ready_filter() -> None:
    e = Endpoints("web", (EndpointAddress(IPv4Address("10.0.0.2")), EndpointAddress(IPv4Address("10.0.0.1"), ready=False, node="h1")),
                  (EndpointPort("default", 8080, "TCP"),))
    assert decode_endpoints("k", encode_endpoints(e)) == e
    assert e.ready_ips() == (IPv4Address("10.0.0.2"),)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"name":"x","clusterIP":"10.0.0.300","ports":[{"protocol":"TCP","port":80}]}',
        b'{"name":"x","clusterIP":"10.0.0.3","ports":[]}',
        b'{"name":"x","clusterIP":"10.0.0.3","ports":[{"protocol":"SCTP","port":80}]}',
        b'{"name":"x","clusterIP":"10.0.0.3","ports":[{"protocol":"TCP","port":0}]}',
        b'{"name":"x","clusterIP":"10.0.0.3","ports":[{"protocol":"TCP","port":true}]}',
        b'{"name":"x","clusterIP":"10.0.0.3","ports":[{"protocol":"TCP","port":80}],"type":"LoadBalancer"}',
    ],
)
def test_malformed_service_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_service("/p/services/specs/x", raw)


def test_malformed_endpoints_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_endpoints("k", b'{"name":"x","addresses":[{"ip":"nope"}]}')


def test_json_shape_for_cli() -> None:
    e = Endpoints("web", (EndpointAddress(IPv4Address("10.0.0.2")),))
    j = service_to_json(_svc(), e)
    assert j["cluster_ip"] == "10.96.0.10"
    assert j["ports"] == [{"name": "default", "protocol": "TCP", "port": 80, "target_port": 8080, "node_port": None}]
    assert j["endpoints"] == [{"ip": "10.0.0.2", "ready": True}]
