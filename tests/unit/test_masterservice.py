"""What the masters register, and the Services made of it (`orchestrator.masterservice`)."""

from __future__ import annotations

import logging
from ipaddress import IPv4Network

import pytest

from orchestrator import dns, masterservice
from orchestrator.validation import admit


def test_a_registration_names_what_the_master_serves() -> None:
    raw = b'{"api": "10.99.0.2:6443", "dns": "10.99.0.2:10053"}'
    assert masterservice.registered(raw, "api") == ("10.99.0.2", 6443)
    assert masterservice.registered(raw, "dns") == ("10.99.0.2", 10053)
    assert dns.registered_dns(raw) == ("10.99.0.2", 10053)
    # a master serving no API is simply not an endpoint of default/kubernetes: nothing logged
    assert masterservice.registered(b'{"dns": "10.99.0.2:10053"}', "api") is None


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"api": "nowhere"}', b'{"api": "10.0.0.1:99999"}',
                                 b'{"api": "example.org:443"}'])
def test_a_malformed_registration_is_logged_and_skipped(raw: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="orchestrator.masterservice"):
        assert masterservice.registered(raw, "api") is None
    assert "malformed master registration" in caplog.text


def test_default_kubernetes_is_kubes_own_shape() -> None:
    spec = masterservice.kubernetes_service()
    svc = admit(spec.service()).object
    assert (svc["metadata"]["namespace"], svc["metadata"]["name"]) == ("default", "kubernetes")
    assert svc["spec"]["clusterIP"] == "10.96.0.1" and "selector" not in svc["spec"]
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]
    assert svc["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    # masters on two ports: a subset each, addresses sorted numerically and once each
    assert spec.subsets([("10.0.0.10", 6443), ("10.0.0.9", 6443), ("10.0.0.9", 6443), ("10.0.0.2", 7443)]) == [
        {"addresses": [{"ip": "10.0.0.9"}, {"ip": "10.0.0.10"}], "ports": [{"name": "https", "port": 6443,
                                                                            "protocol": "TCP"}]},
        {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]},
    ]
    assert masterservice.kubernetes_service_ip(IPv4Network("172.20.0.0/16")).exploded == "172.20.0.1"


def test_kube_dns_keeps_its_shape() -> None:
    spec = dns.kube_dns("10.96.0.10")
    assert [(p["name"], p["port"], p["protocol"]) for p in spec.service()["spec"]["ports"]] == \
        [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]
    assert spec.subsets([("10.0.0.2", 10053)]) == [
        {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "dns", "port": 10053, "protocol": "UDP"},
                                                     {"name": "dns-tcp", "port": 10053, "protocol": "TCP"}]}]
