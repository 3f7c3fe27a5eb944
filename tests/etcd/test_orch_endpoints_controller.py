"""The endpoints controller against a real etcd: Endpoints follow pod readiness, IPs and named
target ports (resolved per pod); a Service without a selector keeps its hand-set Endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.controllers.base import Writer
from orchestrator.controllers.endpoints_controller import EndpointsController
from orchestrator.controllers.informers import Informers
from orchestrator.objects.meta import ENDPOINTS, POD, SERVICE
from orchestrator.storage import ObjectStore
from orchestrator.validation import admit
from tests.etcd._orch import Running, pod, set_status
from tests.waiting import wait_for


@pytest.fixture
def running(objects: ObjectStore) -> Iterator[Running]:
    r = Running()
    infs = Informers(objects)
    ctl = EndpointsController(objects, infs, writer=Writer())
    infs.start(r.stop)
    assert infs.wait_synced(10)
    r.start(ctl.run, "endpoints")
    yield r
    r.close()


def service(name: str, selector: dict[str, str] | None, target: int | str) -> dict[str, Any]:
    spec: dict[str, Any] = {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "targetPort": target}]}
    if selector:
        spec["selector"] = selector
    return admit({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}).object


def summary(objects: ObjectStore, name: str) -> list[tuple[int, list[str], list[str]]] | None:
    ep = objects.get(ENDPOINTS, name)
    if ep is None:
        return None
    return [(s["ports"][0]["port"], [a["ip"] for a in s.get("addresses", [])],
             [a["ip"] for a in s.get("notReadyAddresses", [])]) for s in ep.get("subsets", [])]


def test_endpoints_follow_readiness_and_named_ports(objects: ObjectStore, running: Running) -> None:
    objects.create(service("web", {"app": "web"}, "http"))
    for name, port in (("a", 8080), ("b", 8080), ("c", 9090)):
        objects.create(pod(name, labels={"app": "web"}, ports=[{"name": "http", "containerPort": port}]))
    objects.create(pod("unrelated", labels={"app": "db"}, ports=[{"name": "http", "containerPort": 1}]))
    wait_for(lambda: summary(objects, "web") == [], 10, "empty endpoints (no pod IPs yet)")
    set_status(objects, "a", ip="10.1.0.2", ready=True, node_name="n1")
    set_status(objects, "b", ip="10.1.0.3", ready=False, node_name="n1")
    set_status(objects, "c", ip="10.1.0.4", ready=True, node_name="n2")
    set_status(objects, "unrelated", ip="10.1.0.9", ready=True, node_name="n2")
    want = [(8080, ["10.1.0.2"], ["10.1.0.3"]), (9090, ["10.1.0.4"], [])]
    wait_for(lambda: summary(objects, "web") == want, 10, f"endpoints {want}")
    set_status(objects, "b", ready=True)
    set_status(objects, "a", ready=False)
    want = [(8080, ["10.1.0.3"], ["10.1.0.2"]), (9090, ["10.1.0.4"], [])]
    wait_for(lambda: summary(objects, "web") == want, 10, "readiness flipped")
    objects.delete(POD, "c")
    wait_for(lambda: summary(objects, "web") == want[:1], 10, "deleted pod gone")
    ep = objects.get(ENDPOINTS, "web")
    assert ep is not None
    addr = ep["subsets"][0]["addresses"][0]
    assert addr["nodeName"] == "n1" and addr["targetRef"]["name"] == "b"
    objects.delete(SERVICE, "web")
    wait_for(lambda: objects.get(ENDPOINTS, "web") is None, 10, "endpoints of a deleted service")


def test_a_service_without_selector_keeps_hand_set_endpoints(objects: ObjectStore, running: Running) -> None:
    objects.create(service("ext", None, 5432))
    objects.create(admit({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext"},
                          "subsets": [{"addresses": [{"ip": "192.0.2.7"}], "ports": [{"port": 5432}]}]}).object)
    objects.create(service("web", {"app": "web"}, 80))  # a selector service next to it, as a witness
    objects.create(pod("a", labels={"app": "web"}))
    set_status(objects, "a", ip="10.1.0.2", ready=True)
    wait_for(lambda: summary(objects, "web") == [(80, ["10.1.0.2"], [])], 10, "witness synced")
    assert summary(objects, "ext") == [(5432, ["192.0.2.7"], [])]
    objects.delete(SERVICE, "ext")
    objects.delete(POD, "a")
    wait_for(lambda: summary(objects, "web") == [], 10, "witness synced again")
    assert summary(objects, "ext") == [(5432, ["192.0.2.7"], [])]  # not the controller's to delete
