"""Namespace lifecycle over a real etcd: objects go only into namespaces that exist and are not
terminating; deleting a namespace empties it (the namespace controller) and then removes it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netplane.proxy.api import clusterip_key
from netplane.store import EtcdStore, Keys
from orchestrator.controllers.base import Writer
from orchestrator.controllers.namespace_controller import NamespaceController
from orchestrator.objects.meta import (
    NAMESPACE,
    POD,
    REPLICATION_CONTROLLER,
    ROLE,
    ROLE_BINDING,
    SERVICE,
)
from orchestrator.storage import ObjectStore
from tests.etcd._orch import running
from tests.waiting import wait_for

NETPLANE = str(Path(sys.executable).parent / "netplane")

SHOP = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web", "namespace": "shop"},
     "spec": {"replicas": 2, "selector": {"app": "web"},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{"name": "web", "image": "busybox"}]}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
     "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lone", "namespace": "shop"},
     "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "shop:reader", "namespace": "shop"},
     "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "readers", "namespace": "shop"},
     "roleRef": {"kind": "Role", "name": "shop:reader"}, "subjects": [{"kind": "Group", "name": "clerks"}]},
]


def run(store: EtcdStore, keys: Keys, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    p = subprocess.run([NETPLANE, "--etcd", store.config.endpoints[0], "--prefix", keys.prefix, *args],
                       capture_output=True, text=True, timeout=60, check=False, input=stdin)
    return p.returncode, p.stdout, p.stderr


def docs(*objs: dict[str, object]) -> str:
    return "\n---\n".join(json.dumps(o) for o in objs)


@pytest.fixture
def controller(objects: ObjectStore) -> Iterator[NamespaceController]:
    c = NamespaceController(objects, writer=Writer(), recheck=0.1)
    with running(c.run, "namespace-controller"):
        yield c


def test_objects_need_an_existing_namespace(store: EtcdStore, keys: Keys) -> None:
    code, out, err = run(store, keys, "apply", "-f", "-", stdin=docs(*SHOP[1:3]))
    assert (code, out) == (2, "") and err.strip().endswith('namespaces "shop" not found'), err
    assert len(err.strip().splitlines()) == 1
    assert store.list(f"{keys.prefix}/registry/")[0] == []  # nothing written, not even the first
    # in one file after its Namespace, as kubectl applies documents in order
    code, out, err = run(store, keys, "apply", "-f", "-", stdin=docs(*SHOP))
    assert code == 0, err
    assert out.splitlines() == ["namespace/shop created", "replicationcontroller/web created",
                                "service/web created", "pod/lone created",
                                "role.rbac.authorization.k8s.io/shop:reader created",
                                "rolebinding.rbac.authorization.k8s.io/readers created"]
    # the namespaces every cluster has need no object
    assert run(store, keys, "run", "x", "--image", "busybox", "-n", "kube-system")[0] == 0


def test_deleting_a_namespace_empties_it_then_removes_it(store: EtcdStore, keys: Keys, objects: ObjectStore,
                                                          controller: NamespaceController) -> None:
    assert run(store, keys, "apply", "-f", "-", stdin=docs(*SHOP))[0] == 0
    svc = objects.get(SERVICE, "web", "shop")
    assert svc is not None
    ip = IPv4Address(svc["spec"]["clusterIP"])
    assert store.get(clusterip_key(keys, ip)) is not None
    # a node-bound pod is only marked: its node stops it and confirms
    bound = objects.get(POD, "lone", "shop")
    assert bound is not None
    bound["spec"]["nodeName"] = "h1"
    objects.update(bound)
    code, _, err = run(store, keys, "delete", "namespace", "shop")
    assert code == 0, err
    ns = objects.get(NAMESPACE, "shop")
    assert ns is not None and ns["metadata"].get("deletionTimestamp") and ns["status"]["phase"] == "Terminating"
    code, _, err = run(store, keys, "run", "late", "--image", "busybox", "-n", "shop")
    assert code == 2 and "unable to create new content in namespace shop because it is being terminated" in err
    wait_for(lambda: objects.get(REPLICATION_CONTROLLER, "web", "shop") is None and
             objects.get(SERVICE, "web", "shop") is None and objects.get(ROLE, "shop:reader", "shop") is None
             and objects.get(ROLE_BINDING, "readers", "shop") is None, what="RC, Service, Role and binding deleted")
    assert store.get(clusterip_key(keys, ip)) is None, "the Service's cluster IP given back"
    lone = objects.get(POD, "lone", "shop")
    assert lone is not None and lone["metadata"].get("deletionTimestamp"), "the bound pod waits for its node"
    assert objects.get(NAMESPACE, "shop") is not None, "not removed while a pod is still stopping"
    objects.delete(POD, "lone", "shop")  # what the node does once the pod is stopped
    # the controller notes the removal just after its delete: wait for both
    wait_for(lambda: objects.get(NAMESPACE, "shop") is None and controller.removed == ["shop"],
             what="the empty namespace removed")
    assert store.list(f"{keys.prefix}/registry/pods/shop/")[0] == []


def test_the_clusters_own_namespaces_cannot_be_deleted(store: EtcdStore, keys: Keys, objects: ObjectStore) -> None:
    objects.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    code, _, err = run(store, keys, "delete", "namespace", "default")
    assert code == 2 and 'namespaces "default" is forbidden: this namespace may not be deleted' in err
    ns = objects.get(NAMESPACE, "default")
    assert ns is not None and not ns["metadata"].get("deletionTimestamp")
