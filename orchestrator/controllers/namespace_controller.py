"""The namespace controller: a namespace being deleted is emptied, then removed.

A namespace marked for deletion (`deletionTimestamp`, phase Terminating: `netplane delete ns`
or the API's DELETE) gets its contents deleted the way a user's delete would do it: RCs with
their pods (background cascade), pods gracefully (their nodes stop them and confirm), services
with their cluster IP claims, endpoints and events. While anything is left (a pod still
stopping on its node) the namespace is looked at again every second; once nothing is left it is
removed, at the resourceVersion read (a namespace recreated meanwhile is never removed). New
objects cannot be created in it meanwhile (`orchestrator.namespaces.check_can_create`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from orchestrator.controllers.base import KeyLoop, Writer
from orchestrator.deletion import Deleter
from orchestrator.informer import Informer
from orchestrator.objects import meta
from orchestrator.objects.meta import (
    CONFIG_MAP,
    ENDPOINTS,
    EVENT,
    LEASE,
    NAMESPACE,
    POD,
    POD_DISRUPTION_BUDGET,
    REPLICATION_CONTROLLER,
    ROLE,
    ROLE_BINDING,
    SECRET,
    SERVICE,
    SERVICE_ACCOUNT,
)
from orchestrator.storage import Conflict, ObjectStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# in the order they are deleted: the pods before the ConfigMaps and Secrets they may mount
CONTENTS = (REPLICATION_CONTROLLER, SERVICE, POD, ENDPOINTS, EVENT, CONFIG_MAP, SECRET, SERVICE_ACCOUNT, LEASE, ROLE,
            ROLE_BINDING, POD_DISRUPTION_BUDGET)
RECHECK = 1.0  # seconds between looks at a namespace that still holds something


class NamespaceController:
    def __init__(self, objects: ObjectStore, *, writer: Writer, recheck: float = RECHECK) -> None:
        self.objects = objects
        self.writer = writer
        self.recheck = recheck
        self.deleter = Deleter(objects)
        self.namespaces = Informer(objects, NAMESPACE, resync_period=30.0)
        self.loop = KeyLoop("namespace-controller", self.sync, writer=writer, workers=1)
        self.namespaces.add_handler(self._on_namespace)
        self.removed: list[str] = []

    def _on_namespace(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None and meta.is_deleting(new):
            self.loop.queue.add(meta.name(new))

    def run(self, stop: threading.Event) -> None:
        self.namespaces.start(stop)
        self.loop.run(stop)

    def sync(self, name: str) -> None:
        ns = self.objects.get(NAMESPACE, name)
        if ns is None or not meta.is_deleting(ns):
            return
        left = 0
        for kind in CONTENTS:
            items, _ = self.objects.list(kind, name)
            for obj in items:
                left += 1
                if meta.is_deleting(obj) and kind in (POD, REPLICATION_CONTROLLER):
                    continue  # already on its way (a node is stopping it)
                self.deleter.delete(kind, meta.name(obj), name)
        if left:
            self.loop.queue.add_after(name, self.recheck)
            return
        try:
            self.objects.delete(NAMESPACE, name, resource_version=ns["metadata"]["resourceVersion"],
                                guards=self.writer.guards)
            self.removed.append(name)
            log.info("namespace %s is empty and removed", name)
        except Conflict:
            self.loop.queue.add(name)  # changed meanwhile: look again
