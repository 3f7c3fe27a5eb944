"""The kubectl-style verbs end to end: the real `netplane` entry point in its own process
against the session's real etcd (a unique prefix per test) — apply / get / describe / delete /
scale / run / cordon / drain, and bad manifests: one line with the field path, exit 2, and
nothing in etcd."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netplane.store import EtcdStore, Keys
from orchestrator.objects import meta
from orchestrator.objects.meta import EVENT, NODE, POD, REPLICATION_CONTROLLER, SERVICE
from orchestrator.storage import ObjectStore

NETPLANE = str(Path(sys.executable).parent / "netplane")

GUESTBOOK = """\
apiVersion: v1
kind: ReplicationController
metadata:
  name: redis-master
  labels: {app: redis, role: master, tier: backend}
spec:
  replicas: 1
  template:
    metadata:
      labels: {app: redis, role: master, tier: backend}
    spec:
      containers:
      - name: master
        image: registry.k8s.io/redis:e2e
        resources:
          requests: {cpu: 100m, memory: 100Mi}
        ports:
        - containerPort: 6379
---
apiVersion: v1
kind: Service
metadata:
  name: redis-master
  labels: {app: redis, role: master, tier: backend}
spec:
  ports:
  - port: 6379
    targetPort: 6379
  selector: {app: redis, role: master, tier: backend}
"""


def run(store: EtcdStore, keys: Keys, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    p = subprocess.run([NETPLANE, "--etcd", store.config.endpoints[0], "--prefix", keys.prefix, *args],
                       capture_output=True, text=True, timeout=60, check=False, input=stdin)
    return p.returncode, p.stdout, p.stderr


def test_apply_get_describe_guestbook(store: EtcdStore, keys: Keys, objects: ObjectStore, tmp_path: Path) -> None:
    f = tmp_path / "guestbook.yaml"
    f.write_text(GUESTBOOK)
    assert run(store, keys, "apply", "-f", str(f)) == (
        0, "replicationcontroller/redis-master created\nservice/redis-master created\n", "")
    assert run(store, keys, "apply", "-f", str(f))[1] == (
        "replicationcontroller/redis-master unchanged\nservice/redis-master unchanged\n")
    rc = objects.get(REPLICATION_CONTROLLER, "redis-master")
    assert rc is not None and json.loads(meta.annotations_of(rc)["kubectl.kubernetes.io/last-applied-configuration"])[
        "spec"]["replicas"] == 1
    svc = objects.get(SERVICE, "redis-master")
    assert svc is not None and svc["spec"]["clusterIP"].startswith("10.")
    owner = store.get(f"{keys.prefix}/services/clusterips/{svc['spec']['clusterIP']}")
    assert owner is not None and owner.value == b"default/redis-master"

    # edit: more replicas, one label dropped, an unknown field: configured, with a warning line
    edited = GUESTBOOK.replace("replicas: 1", "replicas: 3\n  foo: bar").replace(
        "labels: {app: redis, role: master, tier: backend}\nspec:\n  replicas",
        "labels: {app: redis, role: master}\nspec:\n  replicas")
    code, out, err = run(store, keys, "apply", "-f", "-", stdin=edited)
    assert (code, err) == (0, 'Warning: unknown field "spec.foo"\n'), err
    assert out == "replicationcontroller/redis-master configured\nservice/redis-master unchanged\n"
    rc = objects.get(REPLICATION_CONTROLLER, "redis-master")
    assert rc is not None and rc["spec"]["replicas"] == 3 and "tier" not in meta.labels(rc)
    assert "foo" not in rc["spec"]

    code, out, _ = run(store, keys, "get", "rc")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert lines[1].split()[:4] == ["redis-master", "3", "0", "0"] and lines[1].split()[4].endswith("s")
    code, out, _ = run(store, keys, "get", "services", "-o", "wide")
    assert out.splitlines()[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert out.splitlines()[1].split()[1:5] == ["ClusterIP", svc["spec"]["clusterIP"], "<none>", "6379/TCP"]
    code, out, _ = run(store, keys, "get", "svc", "-A", "-o", "json")
    doc = json.loads(out)
    assert (doc["kind"], doc["apiVersion"], [meta.name(i) for i in doc["items"]]) == ("List", "v1", ["redis-master"])
    code, out, _ = run(store, keys, "get", "rc", "-l", "app=nope")
    assert (code, out) == (0, "")

    objects.create({"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": "redis-master.1", "namespace": "default"},
                    "involvedObject": {"kind": "ReplicationController", "name": "redis-master",
                                       "namespace": "default", "uid": meta.uid(rc)},
                    "type": "Normal", "reason": "SuccessfulCreate", "message": "Created pod: redis-master-x2z4b",
                    "source": {"component": "replication-controller"}, "count": 1,
                    "firstTimestamp": meta.from_epoch(time.time()), "lastTimestamp": meta.from_epoch(time.time())})
    code, out, _ = run(store, keys, "describe", "rc", "redis-master")
    assert code == 0 and out.startswith("Name:         redis-master\nNamespace:    default\n")
    assert "Replicas:     0 current / 3 desired" in out
    assert "SuccessfulCreate" in out.split("Events:")[1] and "Created pod: redis-master-x2z4b" in out
    code, out, _ = run(store, keys, "get", "ev")
    assert out.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "replicationcontroller/redis-master" in out


BAD = [
    pytest.param("""\
apiVersion: v1
kind: ReplicationController
metadata: {name: web}
spec:
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{containerPort: 70000}]}]
""", "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000", id="port-range"),
    pytest.param("""\
apiVersion: v1
kind: ReplicationController
metadata: {name: web}
spec:
  replicas: two
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
""", 'spec.replicas: Invalid value: "two"', id="wrong-type"),
    pytest.param("""\
apiVersion: v1
kind: ReplicationController
metadata: {name: web}
spec:
  selector: {app: other}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
""", "spec.template.metadata.labels: Invalid value", id="selector-mismatch"),
    pytest.param("""\
apiVersion: v1
kind: Service
metadata: {name: Web}
spec: {ports: [{port: 80}]}
""", 'metadata.name: Invalid value: "Web"', id="bad-name"),
    pytest.param("apiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n", 'kind: Unsupported value: "Gadget"',
                 id="unknown-kind"),
    pytest.param("apiVersion: v1\nkind: Pod\nmetadata: {name: p\n", "error converting YAML to JSON", id="yaml"),
]


@pytest.mark.parametrize(("bad", "path"), BAD)
def test_bad_manifest_one_line_exit_2_nothing_written(store: EtcdStore, keys: Keys, tmp_path: Path,
                                                      bad: str, path: str) -> None:
    good = tmp_path / "a-good.yaml"  # read first: applied if validation did not come first
    good.write_text(GUESTBOOK)
    (tmp_path / "b-bad.yaml").write_text(bad)
    code, out, err = run(store, keys, "apply", "-f", str(tmp_path))
    assert (code, out) == (2, ""), (code, out, err)
    assert err.count("\n") == 1 and err.startswith("netplane: error: ") and path in err, err
    assert "b-bad.yaml" in err
    assert store.list(keys.prefix + "/")[0] == []


def test_run_scale_and_delete_cascades(store: EtcdStore, keys: Keys, objects: ObjectStore) -> None:
    assert run(store, keys, "run", "web", "--image", "nginx", "--replicas", "2", "--port", "80", "--", "-g", "x") == (
        0, "replicationcontroller/web created\n", "")
    rc = objects.get(REPLICATION_CONTROLLER, "web")
    assert rc is not None and rc["spec"]["selector"] == {"run": "web"} and rc["spec"]["replicas"] == 2
    assert rc["spec"]["template"]["spec"]["containers"][0]["args"] == ["-g", "x"]
    assert run(store, keys, "run", "web", "--image", "nginx")[0:2] == (2, "")
    assert run(store, keys, "scale", "rc", "web", "--replicas", "5") == (0, "replicationcontroller/web scaled\n", "")
    assert objects.get(REPLICATION_CONTROLLER, "web")["spec"]["replicas"] == 5  # type: ignore[index]
    code, _, err = run(store, keys, "scale", "rc/web", "--replicas", "1", "--current-replicas", "2")
    assert (code, err) == (2, "netplane: error: Expected replicas to be 2, was 5\n")

    def pod(name: str, owner: dict[str, object], node: str = "") -> None:
        spec: dict[str, object] = {"containers": [{"name": "web", "image": "nginx"}]}
        if node:
            spec["nodeName"] = node
        objects.create({"apiVersion": "v1", "kind": "Pod", "spec": spec, "metadata": {
            "name": name, "labels": {"run": "web"},
            "ownerReferences": [meta.controller_ref_to(owner, kind=REPLICATION_CONTROLLER)]}})

    pod("web-a", rc)
    pod("web-b", rc, node="h1")
    code, out, _ = run(store, keys, "delete", "rc", "web", "--cascade=orphan")
    assert (code, out) == (0, 'replicationcontroller "web" deleted\n')
    assert objects.get(REPLICATION_CONTROLLER, "web") is None
    kept = objects.list(POD)[0]
    assert [meta.name(p) for p in kept] == ["web-a", "web-b"] and all(not meta.owner_references(p) for p in kept)
    assert not any(meta.is_deleting(p) for p in kept)

    run(store, keys, "run", "web", "--image", "nginx")
    rc2 = objects.get(REPLICATION_CONTROLLER, "web")
    assert rc2 is not None
    for p in kept:
        objects.delete(POD, meta.name(p))
    pod("web-a", rc2)
    pod("web-b", rc2, node="h1")
    pod("other", rc)  # controlled by the old RC's uid: not this one's
    assert run(store, keys, "delete", "rc", "web")[1] == 'replicationcontroller "web" deleted\n'
    left = {meta.name(p): p for p in objects.list(POD)[0]}
    assert set(left) == {"web-b", "other"}  # unbound web-a removed at once
    assert meta.is_deleting(left["web-b"]) and left["web-b"]["metadata"]["deletionGracePeriodSeconds"] == 30
    assert not meta.is_deleting(left["other"])
    code, _, err = run(store, keys, "delete", "pod", "nosuch")
    assert (code, err) == (2, 'netplane: error: pods "nosuch" not found\n')
    assert run(store, keys, "delete", "po", "web-b", "--force", "--grace-period=0")[1] == 'pod "web-b" deleted\n'
    assert objects.get(POD, "web-b") is None


def test_delete_service_by_manifest_releases_its_cluster_ip(store: EtcdStore, keys: Keys, objects: ObjectStore,
                                                            tmp_path: Path) -> None:
    f = tmp_path / "gb.yaml"
    f.write_text(GUESTBOOK)
    run(store, keys, "apply", "-f", str(f))
    ip = objects.get(SERVICE, "redis-master")["spec"]["clusterIP"]  # type: ignore[index]
    assert run(store, keys, "delete", "-f", str(f)) == (
        0, 'replicationcontroller "redis-master" deleted\nservice "redis-master" deleted\n', "")
    assert store.get(f"{keys.prefix}/services/clusterips/{ip}") is None
    assert store.list(keys.prefix + "/")[0] == []


def node(objects: ObjectStore, name: str) -> None:
    objects.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}],
                               "capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"}}})


def test_cordon_uncordon_drain(store: EtcdStore, keys: Keys, objects: ObjectStore) -> None:
    node(objects, "h1")
    node(objects, "h2")
    rc = objects.create({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
                         "spec": {"replicas": 1, "selector": {"run": "web"}, "template": {
                             "metadata": {"labels": {"run": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
    for name, owned, where in (("web-a", True, "h1"), ("bare", False, "h1"), ("web-c", True, "h2")):
        md: dict[str, object] = {"name": name}
        if owned:
            md["ownerReferences"] = [meta.controller_ref_to(rc, kind=REPLICATION_CONTROLLER)]
        objects.create({"apiVersion": "v1", "kind": "Pod", "metadata": md,
                        "spec": {"nodeName": where, "containers": [{"name": "c", "image": "busybox"}]}})
    before = store.list(keys.prefix + "/")[0]
    code, out, err = run(store, keys, "drain", "h1")
    assert (code, out) == (2, "")
    assert err == ('netplane: error: unable to drain node "h1": cannot delete Pods that declare no controller '
                   "(use --force to override): default/bare\n")
    assert [(kv.key, kv.mod_revision) for kv in store.list(keys.prefix + "/")[0]] == [
        (kv.key, kv.mod_revision) for kv in before]  # refused: nothing written, not even the cordon

    assert run(store, keys, "cordon", "h2") == (0, "node/h2 cordoned\n", "")
    assert run(store, keys, "cordon", "h2")[1] == "node/h2 already cordoned\n"
    code, out, _ = run(store, keys, "get", "nodes")
    assert [ln.split()[:2] for ln in out.splitlines()] == [["NAME", "STATUS"], ["h1", "Ready"],
                                                         ["h2", "Ready,SchedulingDisabled"]]
    assert run(store, keys, "uncordon", "no/h2")[1] == "node/h2 uncordoned\n"
    assert not objects.get(NODE, "h2")["spec"].get("unschedulable")  # type: ignore[index]

    code, out, err = run(store, keys, "drain", "h1", "--force")
    assert code == 0 and err == "Warning: deleting Pods that declare no controller: default/bare\n"
    assert out.splitlines()[0] == "node/h1 cordoned" and out.splitlines()[-1] == "node/h1 drained"
    assert "pod/web-a evicted" in out and "pod/bare evicted" in out
    assert objects.get(NODE, "h1")["spec"]["unschedulable"] is True  # type: ignore[index]
    pods = {meta.name(p): p for p in objects.list(POD)[0]}
    assert meta.is_deleting(pods["web-a"]) and meta.is_deleting(pods["bare"])
    assert not meta.is_deleting(pods["web-c"])
    code, _, err = run(store, keys, "cordon", "h9")
    assert (code, err) == (2, 'netplane: error: nodes "h9" not found\n')


def test_get_watch_prints_changes_and_stops_on_sigint(store: EtcdStore, keys: Keys, objects: ObjectStore) -> None:
    objects.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "first"},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    p = subprocess.Popen([NETPLANE, "--etcd", store.config.endpoints[0], "--prefix", keys.prefix,
                          "get", "pods", "-w"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline().split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert p.stdout.readline().split()[:3] == ["first", "0/1", "Pending"]
        objects.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "second"},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        assert p.stdout.readline().split()[:3] == ["second", "0/1", "Pending"]
        objects.delete(POD, "first")
        assert p.stdout.readline().split()[0] == "first"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=10)
        assert (p.returncode, err) == (0, "")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert objects.get(EVENT, "x") is None


def test_taken_or_changed_cluster_ip_is_refused_before_anything_is_written(
        store: EtcdStore, keys: Keys, objects: ObjectStore) -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: NAME}\nspec: {clusterIP: ADDR, ports: [{port: 80}]}\n"
    assert run(store, keys, "apply", "-f", "-", stdin=svc.replace("NAME", "a").replace("ADDR", "10.96.0.50"))[0] == 0
    before = [(kv.key, kv.mod_revision) for kv in store.list(keys.prefix + "/")[0]]
    for manifest, detail in (
            (svc.replace("NAME", "b").replace("ADDR", "10.96.0.50"),
             'spec.clusterIP: Invalid value: "10.96.0.50": provided IP is already allocated'),
            (svc.replace("NAME", "a").replace("ADDR", "10.96.0.51"),
             'spec.clusterIP: Invalid value: "10.96.0.51": field is immutable')):
        code, out, err = run(store, keys, "apply", "-f", "-", stdin=GUESTBOOK + "---\n" + manifest)
        assert (code, out) == (2, "") and err.count("\n") == 1 and detail in err, err
        assert [(kv.key, kv.mod_revision) for kv in store.list(keys.prefix + "/")[0]] == before


def test_get_several_types_at_once_names_each_row_by_type(store: EtcdStore, keys: Keys, tmp_path: Path) -> None:
    f = tmp_path / "guestbook.yaml"
    f.write_text(GUESTBOOK)
    assert run(store, keys, "apply", "-f", str(f))[0] == 0
    code, out, err = run(store, keys, "get", "rc,svc")
    assert (code, err) == (0, ""), err
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 2, out
    assert blocks[0].splitlines()[0].split()[:2] == ["NAME", "DESIRED"]
    assert blocks[0].splitlines()[1].startswith("replicationcontroller/redis-master ")
    assert blocks[1].splitlines()[1].startswith("service/redis-master ")
    code, out, _ = run(store, keys, "get", "rc,svc", "-o", "name")
    assert out.split() == ["replicationcontroller/redis-master", "service/redis-master"]
    code, out, _ = run(store, keys, "get", "rc,svc", "-o", "json")
    assert [i["kind"] for i in json.loads(out)["items"]] == ["ReplicationController", "Service"]
    code, _, err = run(store, keys, "get", "rc,nope")
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_a_lease_through_the_cli_is_the_apis(store: EtcdStore, keys: Keys, objects: ObjectStore) -> None:
    """A kind outside core/v1: applied, listed and deleted with kubectl's names for it."""
    lease = ("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: lock}\n"
             "spec: {holderIdentity: a, leaseDurationSeconds: 15, renewTime: '2026-12-07T09:00:00+01:00'}\n")
    rc, out, err = run(store, keys, "apply", "-f", "-", stdin=lease)
    assert (rc, out.strip()) == (0, "lease.coordination.k8s.io/lock created"), err
    stored = objects.get(meta.LEASE, "lock", "default")
    assert stored is not None and stored["spec"]["renewTime"] == "2026-12-07T08:00:00.000000Z"
    rc, out, err = run(store, keys, "get", "leases")
    assert rc == 0 and out.splitlines()[0].split() == ["NAME", "HOLDER", "AGE"] and out.splitlines()[1].split()[:2] == \
        ["lock", "a"], (out, err)
    rc, out, err = run(store, keys, "apply", "-f", "-", stdin=lease.replace("15", "0"))
    assert rc == 2 and "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0" in err and "Traceback" not in err
    rc, out, err = run(store, keys, "delete", "lease", "lock")
    assert rc == 0 and objects.get(meta.LEASE, "lock", "default") is None, (out, err)
