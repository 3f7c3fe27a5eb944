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
