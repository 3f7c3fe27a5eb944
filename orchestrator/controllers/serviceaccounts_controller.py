"""kube-controller-manager's serviceaccounts-controller: every namespace has a ServiceAccount
`default` (made when the namespace appears, made again when someone deletes it), the identity
a pod's in-cluster client gets a token for (`apiserver.satokens`). A namespace being deleted
gets none (the namespace controller is emptying it)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from orchestrator.controllers.base import KeyLoop, Writer
from orchestrator.informer import Informer, wait_all_synced
from orchestrator.objects import meta
from orchestrator.objects.meta import NAMESPACE, SERVICE_ACCOUNT
from orchestrator.storage import AlreadyExists, ObjectStore
from orchestrator.validation import admit

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT = "default"


class ServiceAccountsController:
    def __init__(self, objects: ObjectStore, *, writer: Writer, resync: float = 30.0) -> None:
        self.objects = objects
        self.writer = writer
        self.namespaces = Informer(objects, NAMESPACE, resync_period=resync)
        self.accounts = Informer(objects, SERVICE_ACCOUNT, resync_period=resync)
        self.loop = KeyLoop("serviceaccounts-controller", self.sync, writer=writer, workers=1)
        self.namespaces.add_handler(self._on_namespace)
        self.accounts.add_handler(self._on_account)

    def _on_namespace(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None:
            self.loop.queue.add(meta.name(new))

    def _on_account(self, old: Obj | None, new: Obj | None) -> None:
        if new is None and old is not None and meta.name(old) == DEFAULT:
            self.loop.queue.add(meta.namespace(old))

    def run(self, stop: threading.Event) -> None:
        self.namespaces.start(stop)
        self.accounts.start(stop)
        if wait_all_synced(stop, self.namespaces, self.accounts):
            self.loop.run(stop)

    def sync(self, namespace: str) -> None:
        ns = self.namespaces.get(namespace)
        if ns is None or meta.is_deleting(ns) or self.accounts.get(DEFAULT, namespace) is not None:
            return
        sa = admit({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": DEFAULT, "namespace": namespace}}).object
        try:
            self.objects.create(sa, guards=self.writer.guards)
            log.info("serviceaccount %s/%s created", namespace, DEFAULT)
        except AlreadyExists:
            pass  # our cache is behind
