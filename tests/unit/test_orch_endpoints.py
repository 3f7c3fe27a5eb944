"""Endpoints controller decisions: which pods, ready vs not ready, targetPort per pod,
subsets by resolved ports, determinism, and the hand-off to the proxy's model."""

from __future__ import annotations

import random
from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any

from orchestrator.endpoints import desired, needs_update, resolve_port
from orchestrator.objects import service
from orchestrator.validation import validate


def svc(ports: list[dict[str, Any]] | None = None, selector: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"} if selector is None else selector,
                     "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
                     **spec}}


def pod(name: str, ip: str = "", *, ready: bool = True, labels: dict[str, str] | None = None,
        ports: list[dict[str, Any]] | None = None, phase: str = "Running", deleting: bool = False,
        ns: str = "default", node: str = "h1") -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"u-{name}",
                          "labels": {"app": "web"} if labels is None else labels}
    if deleting:
        md["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    st: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        st["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i", "ports": ports or []}]},
            "status": st}


def ips(subset: Mapping[str, Any], section: str = "addresses") -> list[str]:
    return [a["ip"] for a in subset.get(section, [])]


def test_which_pods_and_where() -> None:
    ps = [
        pod("ready", "10.244.1.2"),
        pod("notready", "10.244.1.3", ready=False),
        pod("noip"),
        pod("deleting", "10.244.1.4", deleting=True),
        pod("done", "10.244.1.5", phase="Succeeded"),
        pod("failed", "10.244.1.6", phase="Failed"),
        pod("other-app", "10.244.1.7", labels={"app": "db"}),
        pod("other-ns", "10.244.1.8", ns="prod"),
    ]
    ep = desired(svc(), ps)
    assert ep is not None
    (s,) = ep["subsets"]
    assert ips(s) == ["10.244.1.2"] and ips(s, "notReadyAddresses") == ["10.244.1.3"]
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert s["addresses"][0] == {"ip": "10.244.1.2", "nodeName": "h1",
                                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "ready", "uid": "u-ready"}}
    assert ep["metadata"] == {"name": "web", "namespace": "default", "labels": {"team": "a"}}


def test_named_target_port_resolved_per_pod_into_subsets() -> None:
    s = svc([{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}])
    ps = [
        pod("a", "10.244.1.2", ports=[{"name": "web", "containerPort": 8080, "protocol": "TCP"}]),
        pod("b", "10.244.2.2", ports=[{"name": "web", "containerPort": 9090, "protocol": "TCP"}]),
        pod("c", "10.244.3.2", ports=[{"name": "web", "containerPort": 8080, "protocol": "TCP"}], ready=False),
        pod("d", "10.244.4.2", ports=[{"name": "web", "containerPort": 8080, "protocol": "UDP"}]),  # wrong protocol
        pod("e", "10.244.5.2"),  # no such port
    ]
    ep = desired(s, ps)
    assert ep is not None
    assert [(sub["ports"][0]["port"], ips(sub), ips(sub, "notReadyAddresses")) for sub in ep["subsets"]] == [
        (8080, ["10.244.1.2"], ["10.244.3.2"]),
        (9090, ["10.244.2.2"], []),
    ]


def test_several_ports_partially_resolved() -> None:
    s = svc([{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
             {"name": "metrics", "port": 9100, "targetPort": 9100, "protocol": "TCP"}])
    ps = [pod("a", "10.244.1.2", ports=[{"name": "web", "containerPort": 8080, "protocol": "TCP"}]),
          pod("b", "10.244.1.3")]
    ep = desired(s, ps)
    assert ep is not None
    got = [([p["name"] for p in sub["ports"]], ips(sub)) for sub in ep["subsets"]]
    assert got == [(["http", "metrics"], ["10.244.1.2"]), (["metrics"], ["10.244.1.3"])]


def test_publish_not_ready_addresses() -> None:
    ep = desired(svc(publishNotReadyAddresses=True), [pod("a", "10.244.1.3", ready=False)])
    assert ep is not None and ips(ep["subsets"][0]) == ["10.244.1.3"]
    assert "notReadyAddresses" not in ep["subsets"][0]


def test_no_selector_means_hand_set_endpoints() -> None:
    assert desired(svc(selector={}), [pod("a", "10.244.1.2")]) is None


def test_no_pods_means_empty_subsets() -> None:
    ep = desired(svc(), [])
    assert ep is not None and ep["subsets"] == []


def test_deterministic_whatever_the_pod_order() -> None:
    ps = [pod(f"p{i}", f"10.244.{i % 3}.{i + 2}", ready=i % 4 != 0) for i in range(30)]
    first = desired(svc(), ps)
    for seed in range(5):
        shuffled = ps[:]
        random.Random(seed).shuffle(shuffled)
        assert desired(svc(), shuffled) == first
    assert first is not None
    addrs = [int(IPv4Address(a)) for a in ips(first["subsets"][0])]
    assert addrs == sorted(addrs)  # numeric, not string order (10.244.0.10 after 10.244.0.9)


def test_needs_update() -> None:
    want = desired(svc(), [pod("a", "10.244.1.2")])
    assert want is not None
    assert needs_update(None, want)
    stored = {**want, "metadata": {**want["metadata"], "resourceVersion": "7", "uid": "x"}}
    assert not needs_update(stored, want)
    other = desired(svc(), [pod("a", "10.244.1.2", ready=False)])
    assert other is not None and needs_update(stored, other)


def test_result_is_valid_and_feeds_the_proxy() -> None:
    ep = desired(svc(), [pod("a", "10.244.1.2"), pod("b", "10.244.1.3", ready=False)])
    assert ep is not None
    assert validate(ep) == []
    flat = service.to_proxy_endpoints(ep)
    assert flat.ready_ips() == (IPv4Address("10.244.1.2"),)
    assert [(p.name, p.port) for p in flat.ports] == [("http", 8080)]


def test_resolve_port() -> None:
    p = pod("a", ports=[{"name": "web", "containerPort": 8080, "protocol": "TCP"}])
    assert resolve_port(p, 81, "TCP") == 81
    assert resolve_port(p, "82", "TCP") is None  # a string is always a name, as in FindPort
    assert resolve_port(p, "web", "TCP") == 8080
    assert resolve_port(p, "web", "UDP") is None
