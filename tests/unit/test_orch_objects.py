"""Object accessors and the bridge between v1 Services/Endpoints and the proxy's model."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any

import pytest

from netplane.errors import ConfigError
from netplane.proxy import model
from orchestrator.objects import meta, names, node, pod, replicationcontroller, service
from orchestrator.objects.pod import Resources


def mkpod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_pod_requests_sum_containers_and_default_to_limits() -> None:
    p = mkpod(containers=[
        {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
        {"name": "b", "resources": {"limits": {"cpu": "0.5", "memory": "1G"}}},
        {"name": "c"},
    ])
    assert pod.requests(p) == Resources(600, 64 * 2**20 + 10**9, 1)
    assert pod.requests(mkpod(containers=[])) == Resources(0, 0, 1)


def test_host_ports_and_conflicts() -> None:
    p = mkpod(containers=[{"name": "a", "ports": [
        {"containerPort": 80, "hostPort": 8080},
        {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
        {"containerPort": 90},
    ]}])
    hp = pod.host_ports(p)
    assert hp == {("0.0.0.0", "TCP", 8080), ("10.0.0.1", "UDP", 53)}
    assert pod.host_ports_conflict(hp, {("TCP", 8080): {"10.0.0.9"}})  # wildcard vs any IP
    assert pod.host_ports_conflict(hp, {("UDP", 53): {"10.0.0.1"}})
    assert not pod.host_ports_conflict(hp, {("UDP", 53): {"10.0.0.2"}})
    assert pod.host_ports_conflict(hp, {("UDP", 53): {"0.0.0.0"}})
    assert not pod.host_ports_conflict(hp, {("UDP", 8080): {"0.0.0.0"}})  # other protocol


def test_readiness_restarts_activity() -> None:
    p: dict[str, Any] = mkpod(containers=[])
    assert pod.phase(p) == "Pending" and not pod.is_ready(p) and pod.ready_since(p) is None
    p["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"}],
        "containerStatuses": [{"name": "a", "restartCount": 2}, {"name": "b", "restartCount": 5}],
    }
    assert pod.is_ready(p) and pod.restart_count(p) == 5
    assert pod.ready_since(p) == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert pod.is_active(p)
    p["metadata"]["deletionTimestamp"] = "2024-05-01T11:00:00Z"
    assert not pod.is_active(p) and meta.is_deleting(p)
    assert not pod.is_active({"status": {"phase": "Succeeded"}})


def test_named_container_port() -> None:
    p = mkpod(containers=[{"name": "a", "ports": [{"name": "http", "containerPort": 8080},
                                                  {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}])
    assert pod.container_port_by_name(p, "http", "TCP") == 8080
    assert pod.container_port_by_name(p, "dns", "TCP") is None
    assert pod.container_port_by_name(p, "dns", "UDP") == 53


def test_node_accessors() -> None:
    n = {"status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True"}]}}
    assert node.allocatable(n) == Resources(4000, 8 * 2**30, 110)
    n["status"]["allocatable"] = {"cpu": "3500m", "memory": "7Gi"}
    assert node.allocatable(n) == Resources(3500, 7 * 2**30, 0)
    assert node.ready_status(n) == "True"
    assert node.ready_status({}) == "Unknown"
    assert not node.unschedulable(n) and node.unschedulable({"spec": {"unschedulable": True}})


def test_rc_selector_defaults_to_template_labels_and_never_everything() -> None:
    rc: dict[str, Any] = {"spec": {"template": {"metadata": {"labels": {"app": "web"}}}}}
    assert replicationcontroller.replicas(rc) == 1
    assert replicationcontroller.selector(rc).matches({"app": "web", "x": "y"})
    assert not replicationcontroller.selector({"spec": {}}).matches({})
    rc["spec"]["selector"] = {"app": "web", "tier": "fe"}
    assert not replicationcontroller.selector(rc).matches({"app": "web"})


def test_meta_accessors_and_controller_ref() -> None:
    owner = {"metadata": {"name": "rc1", "uid": "u-1"}}
    ref = meta.controller_ref_to(owner, kind=meta.REPLICATION_CONTROLLER)
    assert ref == {"apiVersion": "v1", "kind": "ReplicationController", "name": "rc1", "uid": "u-1",
                   "controller": True, "blockOwnerDeletion": True}
    p = {"metadata": {"name": "p", "ownerReferences": [{"kind": "X", "uid": "o"}, ref],
                      "resourceVersion": "42"}}
    assert meta.controller_ref(p) == ref
    assert meta.namespace(p) == "default" and meta.namespaced_name(p) == "default/p"
    assert meta.resource_version(p) == 42 and meta.resource_version({}) == 0
    assert meta.kind_for_alias("rc") is meta.REPLICATION_CONTROLLER
    assert meta.kind_for_alias("pod") is meta.POD and meta.kind_for_alias("Services") is meta.SERVICE
    assert meta.kind_named("pod") is None and meta.kind_named("Pod") is meta.POD


def test_time_format_round_trip() -> None:
    t = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert meta.format_time(t) == "2024-01-02T03:04:05Z"
    assert meta.parse_time("2024-01-02T03:04:05Z") == t
    assert meta.parse_time("2024-01-02T05:04:05.123+02:00").replace(microsecond=0) == t


@pytest.mark.parametrize(
    ("fn", "value", "ok"),
    [
        (names.dns1123_label, "my-name", True), (names.dns1123_label, "My-name", False),
        (names.dns1123_label, "a" * 64, False), (names.dns1123_label, "-a", False),
        (names.dns1123_subdomain, "a.b-c.d", True), (names.dns1123_subdomain, "a..b", False),
        (names.dns1123_subdomain, "a" * 254, False),
        (names.qualified_name, "example.com/My_Name", True), (names.qualified_name, "/x", False),
        (names.label_value, "", True), (names.label_value, "a_b.C", True), (names.label_value, "a b", False),
        (names.iana_svc_name, "http", True), (names.iana_svc_name, "80", False),
        (names.iana_svc_name, "a--b", False), (names.iana_svc_name, "a" * 16, False),
    ],
)
def test_name_rules(fn: Any, value: str, ok: bool) -> None:
    assert (fn(value) == []) is ok


def test_dns_label_message_is_kubernetes_wording() -> None:
    (msg,) = names.dns1123_label("Bad")
    assert msg.startswith("a lowercase RFC 1123 label must consist of lower case alphanumeric")
    assert "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'" in msg


# --------------------------------------------------------------------------- service bridge
LEGACY = model.Service(
    name="web",
    cluster_ip=IPv4Address("10.96.0.10"),
    ports=(model.ServicePort("default", "TCP", 80, 8080), model.ServicePort("dns", "UDP", 53, 5353, 30053)),
    selector=(("app", "web"),),
    type="NodePort",
    session_affinity="ClientIP",
    affinity_timeout=600,
)


def test_legacy_service_lifts_to_v1_and_back_unchanged() -> None:
    v1 = service.from_legacy_service(LEGACY)
    assert v1["metadata"] == {"name": "web", "namespace": "default"}
    assert v1["spec"]["ports"][1] == {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353, "nodePort": 30053}
    assert v1["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 600}}
    back = service.to_proxy_service(v1)
    assert back == LEGACY
    # and through the proxy's own etcd encoding: what an old cluster stored decodes the same
    stored = model.decode_service("k", model.encode_service(back))
    assert stored == LEGACY


def test_plain_legacy_service_round_trip() -> None:
    plain = model.Service("db", IPv4Address("10.96.0.11"), (model.ServicePort("default", "TCP", 5432, 5432),))
    v1 = service.from_legacy_service(plain)
    assert "selector" not in v1["spec"] and "sessionAffinityConfig" not in v1["spec"]
    assert service.to_proxy_service(v1) == plain


def test_named_target_port_falls_back_to_endpoints_then_port() -> None:
    v1 = {"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.12", "ports": [
        {"name": "http", "port": 80, "targetPort": "web"}]}}
    svc = service.to_proxy_service(v1)
    assert svc.ports[0].target_port == 80
    ep = service.to_proxy_endpoints({"metadata": {"name": "web"}, "subsets": [
        {"addresses": [{"ip": "10.244.1.5", "nodeName": "h1"}], "ports": [{"name": "http", "port": 8080}]}]})
    from netplane.proxy.desired import compute

    entries = compute({"web": svc}, {"web": ep}).entries
    (entry,) = entries.values()
    assert [(str(b.ip), b.port) for b in entry.backends] == [("10.244.1.5", 8080)]


def test_endpoints_round_trip_and_readiness() -> None:
    ep = model.Endpoints("web", (model.EndpointAddress(IPv4Address("10.244.1.2"), True, "h1"),
                                 model.EndpointAddress(IPv4Address("10.244.2.2"), False)),
                         (model.EndpointPort("default", 8080, "TCP"),))
    v1 = service.from_legacy_endpoints(ep)
    (subset,) = v1["subsets"]
    assert subset["addresses"] == [{"ip": "10.244.1.2", "nodeName": "h1"}]
    assert subset["notReadyAddresses"] == [{"ip": "10.244.2.2"}]
    assert service.to_proxy_endpoints(v1) == ep
    assert service.to_proxy_endpoints(v1).ready_ips() == (IPv4Address("10.244.1.2"),)
    assert service.from_legacy_endpoints(model.Endpoints("e"))["subsets"] == []


def test_proxy_refuses_what_it_cannot_express() -> None:
    with pytest.raises(ConfigError, match="LoadBalancer"):
        service.to_proxy_service({"spec": {"type": "LoadBalancer", "ports": [{"port": 1}]}})


def test_a_named_target_port_resolving_differently_per_pod_reaches_each_pod_on_its_own_port() -> None:
    from netplane.proxy.desired import compute

    svc = service.to_proxy_service({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.5", "ports": [
        {"name": "http", "port": 80, "targetPort": "web"}]}})
    ep = service.to_proxy_endpoints({"metadata": {"name": "web"}, "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "http", "port": 8080}]},
        {"addresses": [{"ip": "10.0.0.2"}], "notReadyAddresses": [{"ip": "10.0.0.3"}],
         "ports": [{"name": "http", "port": 9090}]}]})
    (entry,) = compute({"web": svc}, {"web": ep}).entries.values()
    assert [(str(b.ip), b.port) for b in entry.backends] == [("10.0.0.1", 8080), ("10.0.0.2", 9090)]


def test_an_unnamed_endpoints_port_is_the_unnamed_service_ports() -> None:
    from netplane.proxy.desired import compute

    svc = service.to_proxy_service({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.5", "ports": [
        {"port": 80, "targetPort": "http"}]}})
    ep = service.to_proxy_endpoints({"metadata": {"name": "web"}, "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 8080}]}]})
    (entry,) = compute({"web": svc}, {"web": ep}).entries.values()
    assert [(str(b.ip), b.port) for b in entry.backends] == [("10.0.0.1", 8080)]
