"""kube-controller-manager's clusterrole-aggregation controller: an aggregated ClusterRole (one
with an `aggregationRule`: kube's admin, edit and view) gets, in its `.rules`, the rules of
every ClusterRole its selectors match, kept in step as those change. So `kubectl describe
clusterrole admin` shows what admin grants, and a role labelled
`rbac.authorization.k8s.io/aggregate-to-view: "true"` extends view.

The API server's authorizer resolves aggregation itself (`rbacpolicy`) and ignores an
aggregated role's stored rules, so what is written here is for readers, never a step late for
authorization."""

from __future__ import annotations

import logging
import threading
from typing import Any

from orchestrator.apiserver.rbacpolicy import aggregated_rules
from orchestrator.controllers.base import KeyLoop, Writer
from orchestrator.informer import Informer, wait_all_synced
from orchestrator.objects import meta
from orchestrator.objects.meta import CLUSTER_ROLE
from orchestrator.storage import Conflict, ObjectStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class ClusterRoleAggregationController:
    def __init__(self, objects: ObjectStore, *, writer: Writer, resync: float = 30.0) -> None:
        self.objects = objects
        self.writer = writer
        self.roles = Informer(objects, CLUSTER_ROLE, resync_period=resync)
        self.loop = KeyLoop("clusterrole-aggregation", self.sync, writer=writer, workers=1)
        self.roles.add_handler(self._on_role)

    def _on_role(self, old: Obj | None, new: Obj | None) -> None:
        # any role may be selected by any aggregated one (its labels, its rules): look at them all
        for role in self.roles.list():
            if role.get("aggregationRule") is not None:
                self.loop.queue.add(meta.name(role))

    def run(self, stop: threading.Event) -> None:
        self.roles.start(stop)
        if wait_all_synced(stop, self.roles):
            self.loop.run(stop)

    def sync(self, name: str) -> None:
        role = self.roles.get(name)
        if role is None or role.get("aggregationRule") is None:
            return
        rules = aggregated_rules(self.roles.list()).get(name, [])
        if role.get("rules") == rules:
            return
        try:
            self.objects.update({**role, "rules": rules}, guards=self.writer.guards, current=role)
            log.info("clusterrole %s: %d aggregated rules", name, len(rules))
        except Conflict:
            self.loop.queue.add(name)  # changed meanwhile: again, from the newer copy
