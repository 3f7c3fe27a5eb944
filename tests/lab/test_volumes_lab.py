"""Volumes for real, on both runtimes: a 1-host lab (master and node runtime) runs a pod whose
two containers share an emptyDir that outlives a container restart (a crash, and a changed
image), with a Memory emptyDir (a
tmpfs), a hostPath the kubelet makes (DirectoryOrCreate) and a read-only mount; a pod whose
hostPath check fails waits in ContainerCreating, saying why; deleting the pods removes their
emptyDirs (the tmpfs unmounted) and leaves the hostPath's data. ConfigMap and Secret volumes
on both runtimes: their files in the running pod, a change of the ConfigMap reaching them.

The mount points are /mnt and /srv, which exist on the host (the namespace runtime runs
containers in the host's filesystem and never makes a directory there) and nested ones made
inside the emptyDir mounted at /mnt.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netplane.lab import Lab, cluster
from orchestrator.node.volumes import EMPTY_DIR, mounts_below
from tests.lab.test_pods_lab import apply, get, np
from tests.waiting import wait_for

IMAGE = "netplane/busybox:latest"
# first run: record it and fail; the restart sees the first run's line (the emptyDir outlived
# the container) and stays
WRITER = ("echo run >> /mnt/runs; wc -l < /mnt/runs > /mnt/host/count; "
          "[ $(wc -l < /mnt/runs) -ge 2 ] || exit 1; grep ' /mnt/shm ' /proc/mounts > /mnt/shm-mount; "
          "exec sleep 3600")



def token_volume(pod: dict[str, Any]) -> str:
    """The kube-api-access-* volume ServiceAccount admission gave the pod."""
    (name,) = [v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-")]
    return str(name)

def pod(name: str, host_dir: Path, *, host_type: str = "DirectoryOrCreate") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "64Mi"}},  # kept: never evicted
                        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                        {"name": "host", "hostPath": {"path": str(host_dir), "type": host_type}}],
            "containers": [
                {"name": "writer", "image": IMAGE, "command": ["sh", "-c", WRITER],
                 "volumeMounts": [{"name": "cache", "mountPath": "/mnt"}, {"name": "host", "mountPath": "/mnt/host"},
                                  {"name": "shm", "mountPath": "/mnt/shm"}]},
                {"name": "reader", "image": IMAGE, "command": ["sleep", "3600"],
                 "volumeMounts": [{"name": "cache", "mountPath": "/srv", "readOnly": True}]},
            ],
        },
    }


def filler(name: str) -> dict[str, Any]:
    """Writes 2 MiB into an emptyDir of 1 MiB, then waits."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 30,
                     "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Mi"}}],
                     "containers": [{"name": "fill", "image": IMAGE,
                                     "command": ["sh", "-c", "head -c 2097152 /dev/zero > /mnt/fill; exec sleep 3600"],
                                     "volumeMounts": [{"name": "data", "mountPath": "/mnt"}]}]}}


def status(lab: Lab, name: str) -> dict[str, Any]:
    return get(lab, f"pod/{name}").get("status") or {}


def restarts(lab: Lab, name: str, container: str) -> int | None:
    for cs in status(lab, name).get("containerStatuses") or []:
        if cs["name"] == container and "running" in (cs.get("state") or {}):
            return int(cs.get("restartCount") or 0)
    return None


def events_of(lab: Lab, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the events about pod `name`."""
    return [(e["type"], e["reason"], e["message"]) for e in get(lab, "events").get("items") or []
            if e["involvedObject"]["name"] == name]


def pod_exec(lab: Lab, name: str, container: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return np(lab, "exec", name, "-c", container, "--timeout", "20", "--", *argv, check=False)


@pytest.mark.parametrize("runtime", ["namespaces", "docker"])
def test_volumes_are_shared_outlive_restarts_and_go_with_the_pod(
        runtime: str, lab_factory: Callable[..., Lab], tmp_path: Path) -> None:
    lab = lab_factory(1, agents=True, runtime=runtime, masters=1,
                      agent_args=("--crashloop-backoff", "1:4:600", "--housekeeping-interval", "1"))
    assert cluster.resolved_runtime(lab) == runtime
    host_dir = tmp_path / "node-data" / "made"  # made by the kubelet (DirectoryOrCreate), parents too
    apply(lab, pod("vol", host_dir))
    wait_for(lambda: restarts(lab, "vol", "writer") == 1 and restarts(lab, "vol", "reader") == 0, 90,
             "the writer restarted once and running, the reader running")
    assert (host_dir / "count").read_text().strip() == "2"  # the emptyDir kept the first run's line

    r = pod_exec(lab, "vol", "reader", "cat", "/srv/runs")
    assert (r.returncode, r.stdout) == (0, "run\nrun\n"), r.stderr
    r = pod_exec(lab, "vol", "reader", "touch", "/srv/x")
    assert r.returncode != 0 and "Read-only file system" in r.stdout + r.stderr, r
    r = pod_exec(lab, "vol", "writer", "cat", "/mnt/shm-mount")
    assert r.returncode == 0 and r.stdout.split()[2] == "tmpfs" and "size=8192k" in r.stdout, r.stdout
    # a new image for the reader (the same image, named in full): kubelet's "definition changed"
    # restart of that container alone, and the emptyDir is still there for the new instance
    changed = pod("vol", host_dir)
    changed["spec"]["containers"][1]["image"] = "docker.io/" + IMAGE
    apply(lab, changed)
    wait_for(lambda: restarts(lab, "vol", "reader") == 1, 60, "the reader restarted for its new image")
    assert restarts(lab, "vol", "writer") == 1
    wait_for(lambda: ("Normal", "Killing", "Container reader definition changed, will be restarted")
             in events_of(lab, "vol"), 10, "kubelet's Killing event")
    (reader,) = [cs for cs in status(lab, "vol")["containerStatuses"] if cs["name"] == "reader"]
    assert reader["image"] == "docker.io/" + IMAGE and "terminated" in reader["lastState"], reader
    r = pod_exec(lab, "vol", "reader", "cat", "/srv/runs")
    assert (r.returncode, r.stdout) == (0, "run\nrun\n"), r.stderr
    uid = get(lab, "pod/vol")["metadata"]["uid"]
    node_dir = cluster.runtime_dir(lab, "h1")
    pod_dir = node_dir / "kubelet" / "pods" / uid
    assert (pod_dir / "volumes" / EMPTY_DIR / "cache" / "runs").read_text() == "run\nrun\n"
    # the Memory emptyDir, and the service account token volume admission added (a tmpfs too)
    assert sorted(mounts_below(node_dir)) == sorted([str(pod_dir / "volumes" / EMPTY_DIR / "shm"),
                                                     str(pod_dir / "volumes" / "kubernetes.io~projected" /
                                                         token_volume(get(lab, "pod/vol")))])
    r = pod_exec(lab, "vol", "reader", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    assert (r.returncode, r.stdout) == (0, "default"), r.stderr

    # a hostPath that must be a file and is a directory: the pod waits, saying so
    apply(lab, pod("bad", host_dir, host_type="File"))
    wait_for(lambda: any("hostPath type check failed" in ((cs.get("state") or {}).get("waiting") or {})
                         .get("message", "") for cs in status(lab, "bad").get("containerStatuses") or []),
             30, "the bad pod's ContainerCreating message")
    assert status(lab, "bad")["phase"] == "Pending"
    waiting = status(lab, "bad")["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating" and str(host_dir) in waiting["message"], waiting
    wait_for(lambda: any(t == "Warning" and r == "FailedMount" and "hostPath type check failed" in m
                         for t, r, m in events_of(lab, "bad")), 10, "kubelet's FailedMount event")

    # an emptyDir past its sizeLimit: the pod is evicted (kubelet's local-storage eviction), at
    # once and not after its 30 s grace period; it stays as Failed/Evicted, its volume gone
    apply(lab, filler("fill"))
    wait_for(lambda: status(lab, "fill").get("phase") == "Failed", 20, "the filler evicted")  # < its grace period
    st = status(lab, "fill")
    assert (st["reason"], st["message"]) == ("Evicted", 'Usage of EmptyDir volume "data" exceeds the limit "1Mi". '), st
    assert "terminated" in st["containerStatuses"][0]["state"], st
    wait_for(lambda: ("Warning", "Evicted", 'Usage of EmptyDir volume "data" exceeds the limit "1Mi".')
             in events_of(lab, "fill"), 10, "kubelet's Evicted event")
    fill_dir = cluster.runtime_dir(lab, "h1") / "kubelet" / "pods" / get(lab, "pod/fill")["metadata"]["uid"]
    wait_for(lambda: not fill_dir.exists(), 10, "the evicted pod's volumes removed")
    assert restarts(lab, "vol", "writer") == 1  # within its limit: running on

    np(lab, "delete", "pod", "vol", "bad", "fill")
    wait_for(lambda: np(lab, "get", "pods", "-o", "name").stdout.strip() == "", 60, "both pods gone")
    wait_for(lambda: not pod_dir.exists(), 10, "the pod's volumes removed")
    assert mounts_below(node_dir) == []  # the tmpfs went with it
    assert (host_dir / "count").read_text().strip() == "2"  # a hostPath keeps its data


@pytest.mark.parametrize("runtime", ["namespaces", "docker"])
def test_config_map_and_secret_volumes_follow_their_objects(runtime: str, lab_factory: Callable[..., Lab]) -> None:
    """A ConfigMap's and a Secret's keys and the pod's own fields (downwardAPI) as files in a
    running pod, on both runtimes: a change of the ConfigMap, or of the pod's labels, reaches
    the files; the Secret is a tmpfs, unmounted with the pod."""
    import base64

    lab = lab_factory(1, agents=True, runtime=runtime, masters=1)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"}, "data": {"app.conf": "x=1"}}
    apply(lab, cm)
    apply(lab, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                "data": {"token": base64.b64encode(b"t0k3n").decode()}})
    reads = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reads", "labels": {"tier": "web"}}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "conf"}},
                    {"name": "creds", "secret": {"secretName": "creds"}},
                    {"name": "both", "projected": {"sources": [
                        {"configMap": {"name": "conf", "items": [{"key": "app.conf", "path": "conf"}]}},
                        {"secret": {"name": "creds"}}]}},
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                                             "divisor": "1Mi"}}]}}],
        "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"],
                        "resources": {"limits": {"memory": "64Mi"}},
                        "env": [{"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu",
                                                                                       "divisor": "1m"}}}],
                        "volumeMounts": [
            {"name": "scratch", "mountPath": "/mnt"}, {"name": "conf", "mountPath": "/mnt/conf"},
            {"name": "creds", "mountPath": "/mnt/creds", "readOnly": True}, {"name": "info", "mountPath": "/mnt/info"},
            {"name": "both", "mountPath": "/mnt/both"}]}]}}
    apply(lab, reads)
    wait_for(lambda: status(lab, "reads").get("phase") == "Running", 60, "the pod Running")
    r = pod_exec(lab, "reads", "c", "cat", "/mnt/conf/app.conf", "/mnt/creds/token", "/mnt/both/conf", "/mnt/both/token")
    assert (r.returncode, r.stdout) == (0, "x=1t0k3nx=1t0k3n"), r.stderr
    r = pod_exec(lab, "reads", "c", "sh", "-c", "cat /mnt/info/labels; echo; cat /mnt/info/mem; echo; echo $CPU_REQ")
    assert (r.returncode, r.stdout) == (0, 'tier="web"\n64\n0\n'), (r.stdout, r.stderr)
    apply(lab, {**reads, "metadata": {"name": "reads", "labels": {"tier": "db"}}})  # a label change: the file follows
    wait_for(lambda: pod_exec(lab, "reads", "c", "cat", "/mnt/info/labels").stdout == 'tier="db"', 20,
             "the pod's new label in its downwardAPI volume")
    apply(lab, {**cm, "data": {"app.conf": "x=2"}})
    wait_for(lambda: pod_exec(lab, "reads", "c", "cat", "/mnt/conf/app.conf").stdout == "x=2", 20,
             "the ConfigMap's change in the running pod")
    r = pod_exec(lab, "reads", "c", "touch", "/mnt/creds/x")
    assert r.returncode != 0, r
    node_dir = cluster.runtime_dir(lab, "h1")
    uid = get(lab, "pod/reads")["metadata"]["uid"]
    volumes = node_dir / "kubelet" / "pods" / uid / "volumes"
    assert sorted(mounts_below(node_dir)) == sorted([str(volumes / "kubernetes.io~secret" / "creds"),
                                                     str(volumes / "kubernetes.io~projected" / "both"),
                                                     str(volumes / "kubernetes.io~projected" /
                                                         token_volume(get(lab, "pod/reads")))])
    np(lab, "delete", "pod", "reads")
    wait_for(lambda: not (node_dir / "kubelet" / "pods" / uid).exists(), 60, "the pod's volumes removed")
    assert mounts_below(node_dir) == []
