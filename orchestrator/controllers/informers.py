"""The shared informers: one list+watch per kind for all the controllers of a master
(client-go's SharedInformerFactory), with the indexes they read through.

    pods       by "namespace", by "node" (spec.nodeName, "" for unscheduled), by "label"
               ("<ns>/<key>=<value>" per label, so a selector's candidates are one lookup),
               by "controller" ("<ns>/<kind>/<name>" of the controller reference)
    nodes, replicationcontrollers, services, endpoints   by "namespace" where namespaced

Handlers are registered by the controllers before `start`; `wait_synced` must hold before any
controller acts (a controller acting on a half-listed cache would over-create or delete).
Each informer may be built by the caller instead (`Informers(..., pods=...)`), which is how a
test delays the watch feed of one controller without touching the controller itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from orchestrator.informer import IndexFunc, Informer
from orchestrator.objects import meta
from orchestrator.objects import pod as podobj
from orchestrator.objects.meta import ENDPOINTS, NODE, POD, REPLICATION_CONTROLLER, SERVICE, Kind
from orchestrator.storage import ObjectStore

DEFAULT_RESYNC = 30.0  # seconds between periodic resyncs (handlers see (obj, obj) for all)

Obj = dict[str, Any]


def by_namespace(o: Obj) -> Iterable[str]:
    return [meta.namespace(o)]


def by_node(p: Obj) -> Iterable[str]:
    return [podobj.node_name(p)]


def by_label(o: Obj) -> Iterable[str]:
    ns = meta.namespace(o)
    return [f"{ns}/{k}={v}" for k, v in meta.labels(o).items()]


def by_controller(o: Obj) -> Iterable[str]:
    ref = meta.controller_ref(o)
    if ref is None:
        return []
    return [f"{meta.namespace(o)}/{ref.get('kind', '')}/{ref.get('name', '')}"]


def controller_index_key(namespace: str, kind: Kind, name: str) -> str:
    return f"{namespace}/{kind.kind}/{name}"


POD_INDEXERS: dict[str, IndexFunc] = {"namespace": by_namespace, "node": by_node, "label": by_label,
                                      "controller": by_controller}


def pod_informer(objects: ObjectStore, *, resync: float = DEFAULT_RESYNC) -> Informer:
    return Informer(objects, POD, indexers=POD_INDEXERS, resync_period=resync)


class Informers:
    """The informers of one master (or one controller in a test)."""

    def __init__(self, objects: ObjectStore, *, resync: float = DEFAULT_RESYNC,
                 pods: Informer | None = None, nodes: Informer | None = None,
                 rcs: Informer | None = None, services: Informer | None = None,
                 endpoints: Informer | None = None) -> None:
        ns = {"namespace": by_namespace}
        # `is None`, not `or`: an informer with an empty cache is falsy (it has a length)
        self.pods = pod_informer(objects, resync=resync) if pods is None else pods
        self.nodes = Informer(objects, NODE, resync_period=resync) if nodes is None else nodes
        self.rcs = (Informer(objects, REPLICATION_CONTROLLER, indexers=ns, resync_period=resync)
                    if rcs is None else rcs)
        self.services = Informer(objects, SERVICE, indexers=ns, resync_period=resync) if services is None else services
        self.endpoints = (Informer(objects, ENDPOINTS, indexers=ns, resync_period=resync)
                          if endpoints is None else endpoints)
        self._threads: list[threading.Thread] = []

    @property
    def all(self) -> tuple[Informer, ...]:
        return (self.pods, self.nodes, self.rcs, self.services, self.endpoints)

    def start(self, stop: threading.Event) -> None:
        self._threads = [i.start(stop) for i in self.all]

    def wait_synced(self, timeout: float, stop: threading.Event | None = None) -> bool:
        deadline = time.monotonic() + timeout
        for inf in self.all:
            while not inf.wait_synced(0.1):
                if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                    return False
        return True

    def join(self, timeout: float = 10.0) -> None:
        for t in self._threads:
            t.join(timeout)
