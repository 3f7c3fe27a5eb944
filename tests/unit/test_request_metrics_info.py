"""How the API server's request metrics label a request: kube-apiserver's verbs and scopes,
and nothing a client can invent (an unknown resource is an empty label)."""

from __future__ import annotations

import pytest

from orchestrator.apiserver.requestmetrics import RequestInfo, request_info


@pytest.mark.parametrize(("method", "path", "query", "ctype", "want"), [
    ("GET", "/api/v1/namespaces/default/pods", {}, "", ("LIST", "", "v1", "pods", "", "namespace")),
    ("GET", "/api/v1/pods", {"watch": "true"}, "", ("WATCH", "", "v1", "pods", "", "cluster")),
    ("GET", "/api/v1/watch/namespaces/a/pods", {}, "", ("WATCH", "", "v1", "pods", "", "namespace")),
    ("GET", "/api/v1/namespaces/a/pods/p", {}, "", ("GET", "", "v1", "pods", "", "resource")),
    ("POST", "/api/v1/namespaces/a/pods", {}, "application/json", ("POST", "", "v1", "pods", "", "namespace")),
    ("PATCH", "/api/v1/namespaces/a/pods/p", {}, "application/apply-patch+yaml",
     ("APPLY", "", "v1", "pods", "", "resource")),
    ("PATCH", "/api/v1/namespaces/a/replicationcontrollers/r/scale", {}, "application/merge-patch+json",
     ("PATCH", "", "v1", "replicationcontrollers", "scale", "resource")),
    ("DELETE", "/api/v1/namespaces/a/pods", {}, "", ("DELETECOLLECTION", "", "v1", "pods", "", "namespace")),
    ("POST", "/api/v1/namespaces/a/pods/p/exec", {}, "", ("CONNECT", "", "v1", "pods", "exec", "resource")),
    ("GET", "/api/v1/namespaces", {}, "", ("LIST", "", "v1", "namespaces", "", "cluster")),
    ("GET", "/api/v1/namespaces/a", {}, "", ("GET", "", "v1", "namespaces", "", "resource")),
    ("PUT", "/api/v1/namespaces/a/status", {}, "", ("PUT", "", "v1", "namespaces", "status", "resource")),
    ("GET", "/api/v1/nodes/n1", {}, "", ("GET", "", "v1", "nodes", "", "resource")),
    ("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", {}, "",
     ("GET", "coordination.k8s.io", "v1", "leases", "", "resource")),
    ("GET", "/apis/metrics.k8s.io/v1beta1/nodes", {}, "", ("LIST", "metrics.k8s.io", "v1beta1", "nodes", "", "cluster")),
    # unknown resources and subresources: empty labels, a fixed set of series
    ("GET", "/api/v1/namespaces/a/nosuch-1234", {}, "", ("LIST", "", "", "", "", "namespace")),
    ("GET", "/apis/made.up/v9/things", {}, "", ("LIST", "", "", "", "", "cluster")),
    ("BREW", "/api/v1/pods", {}, "", ("other", "", "v1", "pods", "", "cluster")),
    ("BREW", "/healthz", {}, "", ("other", "", "", "", "", "")),
    ("GET", "/api/v1/namespaces/a/pods/p/nosuch", {}, "", ("GET", "", "v1", "pods", "", "resource")),
    # non-resource requests
    ("GET", "/version", {}, "", ("GET", "", "", "", "", "")),
    ("GET", "/api/v1", {}, "", ("GET", "", "", "", "", "")),
    ("GET", "/apis/coordination.k8s.io/v1", {}, "", ("GET", "", "", "", "", "")),
])
def test_request_info(method: str, path: str, query: dict[str, str], ctype: str, want: tuple[str, ...]) -> None:
    assert request_info(method, path, query, ctype) == RequestInfo(*want)


def test_long_running() -> None:
    assert request_info("GET", "/api/v1/pods", {"watch": "1"}, "").long_running
    assert request_info("GET", "/api/v1/namespaces/a/pods/p/portforward", {}, "").long_running
    assert not request_info("GET", "/api/v1/namespaces/a/pods/p/log", {}, "").long_running


def test_etcd_calls_are_labelled_by_operation_and_resource() -> None:
    from orchestrator.apiserver.requestmetrics import RequestMetrics

    m = RequestMetrics()
    m.observe_etcd("txn /np/registry/pods/default/web-1", 0.002, False)
    m.observe_etcd("get /np/registry/secrets/default/creds", 0.001, True)
    m.observe_etcd("list /np/nodes/", 0.01, False)  # a heartbeat key: no resource of the API
    m.observe_etcd("grant", 0.001, False)  # an operation the server does not name
    m.observe_etcd("get /np/registry/made-up/x", 0.001, False)
    got = {(s.name, s.labels.get("operation"), s.labels.get("type")): s.value
           for fam in m.registry.collect() for s in fam.samples
           if s.name in ("etcd_request_duration_seconds_count", "etcd_request_errors_total")}
    count = "etcd_request_duration_seconds_count"
    assert got == {(count, "txn", "pods"): 1, (count, "get", "secrets"): 1, (count, "list", "other"): 1,
                   (count, "other", "other"): 1, (count, "get", "other"): 1,
                   ("etcd_request_errors_total", "get", "secrets"): 1}
