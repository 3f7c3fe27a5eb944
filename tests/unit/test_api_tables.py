"""`as=Table` answers: kube-apiserver's columns (with priorities) and cells per kind, the rows'
objects, and `netplane get` printing the same cells."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator import printing
from orchestrator.apiserver import tables
from orchestrator.apiserver.tables import TableError, table
from orchestrator.objects import meta

NOW = 1_700_000_000.0
Obj = dict[str, Any]


def ago(seconds: float) -> str:
    return meta.from_epoch(NOW - seconds)


def cells(kind: str, obj: Obj) -> list[Any]:
    t = table(kind, [obj], now=NOW)
    assert len(t["rows"]) == 1
    return t["rows"][0]["cells"]


def columns(kind: str) -> list[tuple[str, str, str, int]]:
    return [(c["name"], c["type"], c["format"], c["priority"])
            for c in table(kind, [], now=NOW)["columnDefinitions"]]


def pod(name: str = "web-1", **status: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": "u1", "resourceVersion": "42",
                         "labels": {"app": "web"}, "creationTimestamp": ago(192)},
            "spec": {"nodeName": "h1", "containers": [{"name": "web", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.2", **status}}


RUNNING = [{"name": "web", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": ago(100)}}}]


# --------------------------------------------------------------------------- columns
def test_pod_columns_are_kube_apiservers_with_wide_ones_at_priority_1() -> None:
    assert columns("Pod") == [
        ("Name", "string", "name", 0), ("Ready", "string", "", 0), ("Status", "string", "", 0),
        ("Restarts", "string", "", 0), ("Age", "string", "", 0), ("IP", "string", "", 1),
        ("Node", "string", "", 1), ("Nominated Node", "string", "", 1), ("Readiness Gates", "string", "", 1)]
    assert all(c["description"] for c in table("Pod", [], now=NOW)["columnDefinitions"])


@pytest.mark.parametrize(("kind", "names", "wide"), [
    ("ReplicationController", ["Name", "Desired", "Current", "Ready", "Age"], ["Containers", "Images", "Selector"]),
    ("Service", ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"], ["Selector"]),
    ("Endpoints", ["Name", "Endpoints", "Age"], []),
    ("Node", ["Name", "Status", "Roles", "Age", "Version"],
     ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]),
    ("Namespace", ["Name", "Status", "Age"], []),
])
def test_columns_per_kind(kind: str, names: list[str], wide: list[str]) -> None:
    cols = columns(kind)
    assert [c[0] for c in cols if c[3] == 0] == names
    assert [c[0] for c in cols if c[3] == 1] == wide
    assert [c[0] for c in cols] == names + wide  # wide columns come last
    assert cols[0][2] == "name"


def test_rc_counts_are_integer_columns_and_event_columns_interleave_wide_ones() -> None:
    assert [c[1] for c in columns("ReplicationController")][1:4] == ["integer"] * 3
    assert [(c[0], c[3]) for c in columns("Event")] == [
        ("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Subobject", 1), ("Source", 1),
        ("Message", 0), ("First Seen", 1), ("Count", 1), ("Name", 1)]


def test_table_envelope_and_kinds_by_any_name() -> None:
    t = table("pods", [pod(), pod("web-2")], now=NOW, resource_version="77", continue_token="c1")
    assert (t["apiVersion"], t["kind"]) == ("meta.k8s.io/v1", "Table")
    assert t["metadata"] == {"resourceVersion": "77", "continue": "c1"}
    assert [r["cells"][0] for r in t["rows"]] == ["web-1", "web-2"]
    assert table("po", [pod()], now=NOW) == table(meta.POD, [pod()], now=NOW) == table("Pod", [pod()], now=NOW)
    assert table("Pod", [pod()], now=NOW, wide=True) == table("Pod", [pod()], now=NOW)  # the server sends all
    assert table("Pod", [pod()], now=NOW, no_headers=True)["columnDefinitions"] == []
    with pytest.raises(TableError) as e:
        table("Widget", [], now=NOW)
    assert e.value.code == 400


# --------------------------------------------------------------------------- rows' objects
def test_rows_carry_partial_object_metadata_by_default() -> None:
    row = table("Pod", [pod()], now=NOW)["rows"][0]
    assert row["object"] == {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                             "metadata": pod()["metadata"]}
    full = table("Pod", [pod()], now=NOW, include_object="Object")["rows"][0]["object"]
    assert full == pod()
    bare = {k: v for k, v in pod().items() if k not in ("apiVersion", "kind")}
    assert table("Pod", [bare], now=NOW, include_object="Object")["rows"][0]["object"] == pod()
    assert "object" not in table("Pod", [pod()], now=NOW, include_object="None")["rows"][0]
    with pytest.raises(TableError, match='unrecognized includeObject value: "Everything"'):
        table("Pod", [pod()], now=NOW, include_object="Everything")


def test_row_objects_are_copies() -> None:
    p = pod()
    row = table("Pod", [p], now=NOW)["rows"][0]
    row["object"]["metadata"]["labels"]["app"] = "changed"
    assert p["metadata"]["labels"]["app"] == "web"


# --------------------------------------------------------------------------- pods
def test_running_pod_cells() -> None:
    assert cells("Pod", pod(containerStatuses=RUNNING)) == [
        "web-1", "1/1", "Running", "0", "3m12s", "10.244.1.2", "h1", "<none>", "<none>"]


def test_crash_looping_pod_status_and_restarts() -> None:
    p = pod(containerStatuses=[{
        "name": "web", "ready": False, "restartCount": 5,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(65)}}}])
    assert cells("Pod", p)[1:4] == ["0/1", "CrashLoopBackOff", "5 (65s ago)"]
    # restarted, now running again: the time of the last restart stays
    p["status"]["containerStatuses"][0].update(ready=True, state={"running": {"startedAt": ago(30)}})
    p["status"]["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"] = ago(3 * 3600 + 600)
    assert cells("Pod", p)[1:4] == ["1/1", "Running", "5 (3h10m ago)"]
    # terminated without a reason: the exit code or signal
    p["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 137}}
    assert cells("Pod", p)[2] == "ExitCode:137"
    p["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 0, "signal": 9}}
    assert cells("Pod", p)[2] == "Signal:9"


def test_terminating_pod_and_lost_and_finished_ones() -> None:
    p = pod(containerStatuses=RUNNING)
    p["metadata"]["deletionTimestamp"] = ago(-30)
    assert cells("Pod", p)[2] == "Terminating"
    p["status"]["reason"] = "NodeLost"
    assert cells("Pod", p)[2] == "Unknown"
    done = pod(phase="Succeeded", containerStatuses=[
        {"name": "web", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}])
    done["metadata"]["deletionTimestamp"] = ago(-30)
    row = table("Pod", [done], now=NOW)["rows"][0]
    assert row["cells"][1:3] == ["0/1", "Completed"]  # finished: not Terminating
    assert row["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                  "message": "The pod has completed successfully."}]
    assert "conditions" not in table("Pod", [pod()], now=NOW)["rows"][0]
    assert cells("Pod", pod(phase="Pending", podIP=""))[2:] == ["Pending", "0", "3m12s", "<none>", "h1",
                                                                "<none>", "<none>"]


def test_init_containers_and_sidecars() -> None:
    p = pod(phase="Pending")
    p["spec"]["initContainers"] = [{"name": "migrate", "image": "m"}, {"name": "seed", "image": "s"}]
    p["status"]["initContainerStatuses"] = [
        {"name": "migrate", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}},
        {"name": "seed", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]
    assert cells("Pod", p)[1:4] == ["0/1", "Init:0/2", "0"]
    p["status"]["initContainerStatuses"][0] = {
        "name": "migrate", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(10)}}}
    assert cells("Pod", p)[1:4] == ["0/1", "Init:CrashLoopBackOff", "2 (10s ago)"]
    p["status"]["initContainerStatuses"][0]["state"] = {"terminated": {"exitCode": 3, "reason": "Error"}}
    assert cells("Pod", p)[2] == "Init:Error"
    # a sidecar (restartPolicy Always) that started counts as a container; done init ones do not
    p["spec"]["initContainers"] = [{"name": "migrate", "image": "m"},
                                   {"name": "proxy", "image": "p", "restartPolicy": "Always"}]
    p["status"]["phase"] = "Running"
    p["status"]["initContainerStatuses"] = [
        {"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "proxy", "restartCount": 1, "started": True, "ready": True, "state": {"running": {}}}]
    p["status"]["containerStatuses"] = RUNNING
    assert cells("Pod", p)[1:4] == ["2/2", "Running", "1"]
    # once initialized, restarts of finished init containers no longer count
    p["status"]["initContainerStatuses"][0].update(restartCount=3, lastState={
        "terminated": {"exitCode": 1, "finishedAt": ago(50)}})
    p["status"]["conditions"] = [{"type": "Initialized", "status": "True"}]
    assert cells("Pod", p)[3] == "1"


def test_status_of_several_containers() -> None:
    two = pod(containerStatuses=[
        {"name": "web", "ready": False, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(10)}}},
        {"name": "log", "ready": False, "restartCount": 1, "state": {"waiting": {"reason": "ContainerCreating"}},
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(65)}}}])
    two["spec"]["containers"].append({"name": "log", "image": "fluentd"})
    # the first container's reason wins (kubectl walks them last to first); the latest restart
    assert cells("Pod", two)[1:4] == ["0/2", "CrashLoopBackOff", "3 (10s ago)"]
    # one finished, one still running: Running while the pod is Ready, else NotReady
    two["status"]["containerStatuses"] = [
        {"name": "web", "ready": True, "restartCount": 0, "state": {"running": {}}},
        {"name": "log", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
    assert cells("Pod", two)[1:3] == ["1/2", "NotReady"]
    two["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert cells("Pod", two)[1:3] == ["1/2", "Running"]
    # ready but not running does not count; a last state without restarts shows no time
    two["status"]["containerStatuses"] = [
        {"name": "web", "ready": True, "restartCount": 0, "state": {},
         "lastState": {"terminated": {"exitCode": 0, "finishedAt": ago(10)}}}]
    assert cells("Pod", two)[1:4] == ["0/2", "Running", "0"]


def test_scheduling_gated_readiness_gates_nominated_node_and_pod_ips() -> None:
    p = pod(phase="Pending", podIPs=[{"ip": "fd00::5"}, {"ip": "10.244.1.2"}], nominatedNodeName="h2",
            conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                        {"type": "example.com/lb", "status": "True"}])
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]
    c = cells("Pod", p)
    assert c[2] == "SchedulingGated"
    assert c[5:] == ["fd00::5", "h1", "h2", "1/2"]


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (119, "119s"), (300, "5m"), (754, "12m"),
                                               (3 * 3600, "3h"), (27 * 3600, "27h"),
                                               (2 * 86400 + 3 * 3600, "2d3h"), (40 * 86400, "40d")])
def test_age_cells_are_kubectl_durations(seconds: int, text: str) -> None:
    p = pod()
    p["metadata"]["creationTimestamp"] = ago(seconds)
    assert cells("Pod", p)[4] == text


def test_now_defaults_to_the_clock() -> None:
    p = pod()
    p["metadata"]["creationTimestamp"] = meta.from_epoch(time.time() - 300)
    assert table("Pod", [p])["rows"][0]["cells"][4] in ("5m", "5m1s")


# --------------------------------------------------------------------------- other kinds
def rc(**status: Any) -> Obj:
    return {"kind": "ReplicationController", "metadata": {"name": "web", "creationTimestamp": ago(5)},
            "spec": {"replicas": 3, "selector": {"run": "web", "app": "x"}, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx"}, {"name": "log", "image": "fluentd"}]}}},
            "status": status}


def test_rc_cells_are_integers() -> None:
    assert cells("ReplicationController", rc(replicas=2, readyReplicas=1)) == [
        "web", 3, 2, 1, "5s", "web,log", "nginx,fluentd", "app=x,run=web"]
    no_replicas = rc()
    del no_replicas["spec"]["replicas"]
    assert cells("ReplicationController", no_replicas)[1:4] == [1, 0, 0]


def svc(**spec: Any) -> Obj:
    return {"kind": "Service", "metadata": {"name": "web", "creationTimestamp": ago(5)},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.9", "selector": {"app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], **spec}}


def test_service_cells() -> None:
    assert cells("Service", svc()) == ["web", "ClusterIP", "10.96.0.9", "<none>", "80/TCP,53/UDP", "5s", "app=web"]
    assert cells("Service", svc(externalIPs=["192.0.2.1", "192.0.2.2"], clusterIPs=["10.96.0.10"]))[2:4] == [
        "10.96.0.10", "192.0.2.1,192.0.2.2"]
    np = svc(type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])
    assert cells("Service", np)[1:5] == ["NodePort", "10.96.0.9", "<none>", "80:30080/TCP"]
    lb = svc(type="LoadBalancer")
    assert cells("Service", lb)[3] == "<pending>"
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example"}]}}
    assert cells("Service", lb)[3] == "203.0.113.9,lb.example"
    ext = svc(type="ExternalName", externalName="db.example.com", clusterIP="", ports=[])
    del ext["spec"]["selector"]
    assert cells("Service", ext)[1:] == ["ExternalName", "<none>", "db.example.com", "<none>", "5s", "<none>"]


def test_endpoints_cells() -> None:
    def ep(*subsets: Obj) -> Obj:
        return {"kind": "Endpoints", "metadata": {"name": "web", "creationTimestamp": ago(5)},
                "subsets": list(subsets)}

    five = {"addresses": [{"ip": f"10.244.0.{i}"} for i in range(1, 6)], "ports": [{"port": 8080}]}
    assert cells("Endpoints", ep(five)) == [
        "web", "10.244.0.1:8080,10.244.0.2:8080,10.244.0.3:8080 + 2 more...", "5s"]
    assert cells("Endpoints", ep())[1] == "<none>"
    assert cells("Endpoints", ep({"notReadyAddresses": [{"ip": "10.244.0.9"}], "ports": [{"port": 80}]}))[1] == ""
    assert cells("Endpoints", ep({"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]},
                                 {"addresses": [{"ip": "10.0.0.1"}]}))[1] == "[fd00::1]:80,10.0.0.1"


def test_node_cells() -> None:
    node: Obj = {"kind": "Node", "metadata": {"name": "h1", "creationTimestamp": ago(2 * 86400),
                                         "labels": {"node-role.kubernetes.io/control-plane": "",
                                                    "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                                     {"type": "Hostname", "address": "h1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0-netplane", "osImage": "Debian GNU/Linux 12",
                                    "kernelVersion": "6.1.0", "containerRuntimeVersion": "docker://24.0.7"}}}
    assert cells("Node", node) == ["h1", "Ready,SchedulingDisabled", "control-plane,worker", "2d",
                                   "v1.33.0-netplane", "10.0.0.1", "<none>", "Debian GNU/Linux 12", "6.1.0",
                                   "docker://24.0.7"]
    node["status"]["conditions"][0]["status"] = "Unknown"
    del node["spec"]["unschedulable"]
    assert cells("Node", node)[1] == "NotReady"
    bare = {"metadata": {"name": "h2"}}
    assert cells("Node", bare) == ["h2", "Unknown", "<none>", "<unknown>", "", "<none>", "<none>",
                                   "<unknown>", "<unknown>", "<unknown>"]


def test_namespace_cells() -> None:
    ns = {"kind": "Namespace", "metadata": {"name": "team-a", "creationTimestamp": ago(600)},
          "status": {"phase": "Terminating"}}
    assert cells("Namespace", ns) == ["team-a", "Terminating", "10m"]
    assert cells("Namespace", {"metadata": {"name": "default", "creationTimestamp": ago(5)}})[1] == "Active"


def event(**extra: Any) -> Obj:
    return {"kind": "Event", "metadata": {"name": "web-1.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "h1"},
            "count": 4, "firstTimestamp": ago(600), "lastTimestamp": ago(5), **extra}


def test_event_cells() -> None:
    assert cells("Event", event()) == [
        "5s", "Warning", "BackOff", "pod/web-1", "spec.containers{web}", "kubelet, h1",
        "Back-off restarting failed container", "10m", 4, "web-1.17a"]
    new_api = event(count=None, firstTimestamp=None, lastTimestamp=None, eventTime=ago(30), source={},
                    reportingController="netplane-scheduler", reportingInstance="",
                    involvedObject={"kind": "Node"})
    c = cells("Event", new_api)
    assert (c[0], c[3], c[5], c[7], c[8]) == ("30s", "node", "netplane-scheduler", "30s", 1)
    series = cells("Event", event(series={"count": 9, "lastObservedTime": ago(2)}))
    assert (series[0], series[8]) == ("2s", 9)


# --------------------------------------------------------------------------- netplane get
SAMPLES = {
    "Pod": [pod(containerStatuses=RUNNING), pod("web-2", phase="Pending")],
    "ReplicationController": [rc(replicas=2, readyReplicas=2)],
    "Service": [svc(), svc(type="LoadBalancer")],
    "Endpoints": [{"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}],
                                                             "ports": [{"port": 80}]}]}],
    "Node": [{"metadata": {"name": "h1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}],
    "Namespace": [{"metadata": {"name": "default", "creationTimestamp": ago(99)}}],
    "Event": [event()],
}


@pytest.mark.parametrize("kind_name", sorted(SAMPLES))
def test_netplane_get_prints_what_kubectl_prints_from_the_table(kind_name: str) -> None:
    """kubectl shows the priority-0 columns (all with -o wide), each cell as text;
    `netplane get` must print the same table."""
    kind = tables.table_kind(kind_name)
    now = datetime.fromtimestamp(NOW, UTC)
    t = table(kind_name, SAMPLES[kind_name], now=NOW)
    for wide in (False, True):
        shown = [i for i, c in enumerate(t["columnDefinitions"]) if wide or c["priority"] == 0]
        assert printing.columns(kind, wide=wide) == tuple(
            t["columnDefinitions"][i]["name"].upper() for i in shown)
        for obj, r in zip(SAMPLES[kind_name], t["rows"], strict=True):
            assert len(r["cells"]) == len(t["columnDefinitions"])
            assert printing.row(kind, obj, now, wide=wide) == tuple(str(r["cells"][i]) for i in shown)


def test_rbac_columns_and_cells() -> None:
    """kube's role and binding printers: NAME, CREATED AT; NAME, ROLE, AGE and, wide, who."""
    assert columns("ClusterRole") == [("Name", "string", "name", 0), ("Created At", "date", "", 0)]
    created = ago(60)
    assert cells("Role", {"kind": "Role", "metadata": {"name": "r", "namespace": "a", "creationTimestamp": created}}) \
        == ["r", created]
    assert [c[0] for c in columns("RoleBinding")] == ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
    b = {"kind": "ClusterRoleBinding", "metadata": {"name": "b", "creationTimestamp": ago(120)},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
         "subjects": [{"kind": "User", "name": "jane"}, {"kind": "Group", "name": "devs"},
                      {"kind": "User", "name": "joe"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}]}
    assert cells("ClusterRoleBinding", b) == ["b", "ClusterRole/view", "2m", "jane, joe", "devs", "build/ci"]
