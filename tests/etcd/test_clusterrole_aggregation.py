"""The clusterrole-aggregation controller over a real etcd: kube's admin, edit and view get the
rules of the roles labelled for them, and follow a role that joins or leaves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.apiserver.rbac import ensure_bootstrap
from orchestrator.controllers.base import Writer
from orchestrator.controllers.clusterrole_aggregation import ClusterRoleAggregationController
from orchestrator.objects.meta import CLUSTER_ROLE
from orchestrator.storage import ObjectStore
from orchestrator.validation import admit
from tests.etcd._orch import running
from tests.waiting import wait_for

Obj = dict[str, Any]


@pytest.fixture
def controller(objects: ObjectStore) -> Iterator[ClusterRoleAggregationController]:
    c = ClusterRoleAggregationController(objects, writer=Writer(), resync=0.5)
    with running(c.run, "clusterrole-aggregation"):
        yield c


def resources(objects: ObjectStore, name: str) -> set[str]:
    role = objects.get(CLUSTER_ROLE, name)
    assert role is not None
    return {r for rule in role.get("rules") or [] for r in rule.get("resources") or []}


def test_aggregated_roles_get_and_follow_their_members(objects: ObjectStore,
                                                       controller: ClusterRoleAggregationController) -> None:
    assert "clusterroles/view" in ensure_bootstrap(objects, "readonly")
    assert ensure_bootstrap(objects, "readonly") == []  # made once
    wait_for(lambda: {"pods", "pods/log", "services"} <= resources(objects, "view"), what="view aggregated")
    assert "secrets" not in resources(objects, "view")
    wait_for(lambda: {"secrets", "pods/exec"} <= resources(objects, "edit"), what="edit: view's and its own")
    wait_for(lambda: {"rolebindings", "pods"} <= resources(objects, "admin"), what="admin: through edit and view")
    widgets = admit({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                     "metadata": {"name": "widget-reader",
                                  "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
                     "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]}).object
    objects.create(widgets)
    wait_for(lambda: all("widgets" in resources(objects, n) for n in ("view", "edit", "admin")),
             what="a new member in view, and so in edit and admin")
    stored = objects.get(CLUSTER_ROLE, "widget-reader")
    assert stored is not None
    stored["metadata"]["labels"] = {}
    objects.update(stored)
    wait_for(lambda: not any("widgets" in resources(objects, n) for n in ("view", "edit", "admin")),
             what="the member gone from all three")
