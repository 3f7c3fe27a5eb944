"""`get` output, pure: kubectl's AGE format, columns and cells per kind, table alignment, the
v1 List of -o json, and describe's layout with events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator import describe, printing
from orchestrator.objects import meta

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def ago(seconds: float) -> str:
    return meta.format_time(NOW - timedelta(seconds=seconds))


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"),
    (192, "3m12s"), (600, "10m"), (179 * 60, "179m"), (3 * 3600 + 20 * 60, "3h20m"),
    (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (51 * 3600, "2d3h"), (8 * 86400, "8d"),
    (400 * 86400, "400d"), (2 * 365 * 86400 + 3 * 86400, "2y3d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration_is_kubectls(seconds: float, text: str) -> None:
    assert printing.human_duration(seconds) == text


def pod(name: str = "web-1", **status: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(192)},
            "spec": {"nodeName": "h1", "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
            "status": status}


def test_pod_row_ready_status_restarts_age_and_wide() -> None:
    p = pod(phase="Running", podIP="10.244.1.2", containerStatuses=[
        {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}},
         "lastState": {"terminated": {"finishedAt": ago(60)}}},
        {"name": "b", "ready": False, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}])
    t = printing.table(meta.POD, [p], NOW, wide=True)
    assert t.columns == ("NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES")
    assert t.rows == (("web-1", "1/2", "CrashLoopBackOff", "3 (60s ago)", "3m12s", "10.244.1.2", "h1", "<none>", "<none>"),)


def test_pod_status_terminating_and_pending() -> None:
    p = pod()
    assert printing.pod_status_text(p) == "Pending"
    p["metadata"]["deletionTimestamp"] = ago(-30)  # type: ignore[index]
    assert printing.pod_status_text(p) == "Terminating"


def test_table_alignment_like_tabwriter() -> None:
    t = printing.table(meta.NAMESPACE, [{"metadata": {"name": "default", "creationTimestamp": ago(5)}}], NOW)
    assert t.render() == "NAME      STATUS   AGE\ndefault   Active   5s"


def test_all_namespaces_adds_namespace_column_for_namespaced_kinds_only() -> None:
    assert printing.columns(meta.POD, namespaced_column=True)[0] == "NAMESPACE"
    assert printing.columns(meta.NODE, namespaced_column=True)[0] == "NAME"


def test_rc_svc_endpoints_node_event_cells() -> None:
    rc = {"metadata": {"name": "web", "creationTimestamp": ago(5)},
          "spec": {"replicas": 3, "selector": {"run": "web"},
                   "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
          "status": {"replicas": 2, "readyReplicas": 1}}
    assert printing.row(meta.REPLICATION_CONTROLLER, rc, NOW, wide=True) == (
        "web", "3", "2", "1", "5s", "web", "nginx", "run=web")
    svc = {"metadata": {"name": "np", "creationTimestamp": ago(5)},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "selector": {"app": "x"},
                    "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}}
    assert printing.row(meta.SERVICE, svc, NOW) == ("np", "NodePort", "10.96.0.9", "<none>", "80:30080/TCP,53/UDP", "5s")
    ep = {"metadata": {"name": "web"}, "subsets": [
        {"addresses": [{"ip": f"10.244.0.{i}"} for i in range(1, 6)],
         "notReadyAddresses": [{"ip": "10.244.9.9"}], "ports": [{"port": 8080}]}]}
    assert printing.endpoints_text(ep) == "10.244.0.1:8080,10.244.0.2:8080,10.244.0.3:8080 + 2 more..."
    assert printing.endpoints_text({"subsets": []}) == "<none>"
    node = {"metadata": {"name": "h1", "labels": {"node-role.kubernetes.io/worker": ""}},
            "spec": {"unschedulable": True}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert printing.row(meta.NODE, node, NOW)[:3] == ("h1", "NotReady,SchedulingDisabled", "worker")
    ev = {"metadata": {"name": "web-1.1"}, "involvedObject": {"kind": "Pod", "name": "web-1"},
          "type": "Warning", "reason": "FailedScheduling", "message": "0/3 nodes are available",
          "count": 4, "firstTimestamp": ago(600), "lastTimestamp": ago(5)}
    # LAST SEEN is the last time, as kube-apiserver's Table has it; the count is a wide column
    assert printing.row(meta.EVENT, ev, NOW) == (
        "5s", "Warning", "FailedScheduling", "pod/web-1", "0/3 nodes are available")
    assert printing.row(meta.EVENT, ev, NOW, wide=True)[-3:] == ("10m", "4", "web-1.1")
    assert printing.event_last_seen(ev, NOW) == "5s (x4 over 10m)"  # describe's Age


def test_list_shape_and_empty_message() -> None:
    assert printing.as_list([{"kind": "Pod"}]) == {
        "apiVersion": "v1", "items": [{"kind": "Pod"}], "kind": "List", "metadata": {"resourceVersion": ""}}
    assert printing.no_resources(meta.POD, "default") == "No resources found in default namespace."
    assert printing.no_resources(meta.NODE, "default") == "No resources found"


def test_describe_rc_with_events_and_without_last_applied() -> None:
    rc = {"kind": "ReplicationController",
          "metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"run": "web", "tier": "fe"},
                       "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
          "spec": {"replicas": 2, "selector": {"run": "web"},
                   "template": {"metadata": {"labels": {"run": "web"}},
                                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
          "status": {"replicas": 1}}
    ev = {"involvedObject": {"kind": "ReplicationController", "name": "web", "namespace": "default", "uid": "u1"},
          "type": "Normal", "reason": "SuccessfulCreate", "message": "Created pod: web-abcde",
          "source": {"component": "replication-controller"}, "lastTimestamp": ago(5), "count": 1}
    other = {**ev, "involvedObject": {"kind": "ReplicationController", "name": "web", "uid": "old"}}
    assert describe.involves(ev, meta.REPLICATION_CONTROLLER, rc)
    assert not describe.involves(other, meta.REPLICATION_CONTROLLER, rc)
    text = describe.describe(meta.REPLICATION_CONTROLLER, rc, events=[ev], now=NOW,
                             related=[pod(phase="Running")])
    lines = text.splitlines()
    assert lines[:5] == ["Name:         web", "Namespace:    default", "Selector:     run=web",
                         "Labels:       run=web", "              tier=fe"]
    assert "Annotations:  <none>" in lines
    assert "Replicas:     1 current / 2 desired" in lines
    assert "Pods Status:  1 Running / 0 Waiting / 0 Succeeded / 0 Failed" in lines
    assert lines[-3:] == ["  Type    Reason            Age   From                    Message",
                          "  ----    ------            ----  ----                    -------",
                          "  Normal  SuccessfulCreate  5s    replication-controller  Created pod: web-abcde"]
    assert lines[-4] == "Events:"
    assert describe.describe(meta.REPLICATION_CONTROLLER, rc, events=[], now=NOW).splitlines()[-1] == "Events:       <none>"


def test_describe_pod_shows_mounts_and_volumes_in_kubectls_words() -> None:
    p = pod(phase="Running")
    p["spec"] = {"nodeName": "h1", "containers": [
        {"name": "a", "image": "x", "volumeMounts": [{"name": "cache", "mountPath": "/cache"},
                                                     {"name": "logs", "mountPath": "/logs", "readOnly": True,
                                                      "subPath": "apt"}]},
        {"name": "b", "image": "y"}],
        "volumes": [{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                    {"name": "logs", "hostPath": {"path": "/var/log", "type": "Directory"}}]}
    lines = describe.describe(meta.POD, p, events=[], now=NOW).splitlines()
    i = lines.index("    Mounts:")
    assert lines[i + 1:i + 3] == ["      /cache from cache (rw)", '      /logs from logs (ro,path="apt")']
    assert lines.count("    Mounts:       <none>") == 1  # container b
    i = lines.index("Volumes:")
    assert lines[i + 1:i + 9] == [
        "  cache:", "    Type:       EmptyDir (a temporary directory that shares a pod's lifetime)",
        "    Medium:     Memory", "    SizeLimit:  8Mi",
        "  logs:", "    Type:          HostPath (bare host directory volume)", "    Path:          /var/log",
        "    HostPathType:  Directory"]
