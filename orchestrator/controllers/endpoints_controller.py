"""The endpoints controller loop: Services with a selector -> v1 Endpoints
(`orchestrator.endpoints.desired` decides; this module keeps it current).

Keys are Service keys ("ns/name"). A pod change queues the Services of its namespace whose
selector matched the pod before or after the change — only when something endpoints depend
on changed (IP, readiness, labels, ports, node, deletion, phase). A sync reads the Service and
the candidate pods from the caches: the pods carrying the selector's rarest label (one index
lookup, not a scan of the namespace), computes the Endpoints and writes them only when they
differ from what is stored (create-only when absent, else an update at the revision read).

A Service without a selector is left alone: its Endpoints are set by hand and never touched.
When a Service is deleted, its Endpoints go too (as in Kubernetes) — unless they were hand-set
for a selector-less Service, which the controller recognises because it never wrote them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from orchestrator import endpoints as epdecide
from orchestrator.controllers.base import KeyLoop, Writer
from orchestrator.controllers.informers import Informers
from orchestrator.objects import meta
from orchestrator.objects import pod as podobj
from orchestrator.objects.meta import ENDPOINTS
from orchestrator.objects.selector import Selector, from_set
from orchestrator.storage import ObjectStore

log = logging.getLogger(__name__)

MANAGED_BY = "endpoints.netplane.io/managed-by"  # label on Endpoints this controller writes
MANAGER = "endpoints-controller"

Obj = dict[str, Any]


class EndpointsController:
    def __init__(self, objects: ObjectStore, informers: Informers, *, writer: Writer, workers: int = 2) -> None:
        self.objects = objects
        self.inf = informers
        self.writer = writer
        self.loop = KeyLoop("endpoints-controller", self.sync, writer=writer, workers=workers)
        self._lock = threading.Lock()
        self._selectors: dict[str, dict[str, Selector]] = {}  # namespace -> service key -> selector
        self.writes = 0
        informers.services.add_handler(self._on_service)
        informers.pods.add_handler(self._on_pod)
        informers.endpoints.add_handler(self._on_endpoints)

    # ------------------------------------------------------------------ handlers
    def _on_service(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        key, ns = meta.namespaced_name(obj), meta.namespace(obj)
        sel = ((new or {}).get("spec") or {}).get("selector") if new is not None else None
        with self._lock:
            if sel:
                self._selectors.setdefault(ns, {})[key] = from_set(sel)
            else:
                self._selectors.get(ns, {}).pop(key, None)
        self.loop.queue.add(key)

    def _on_endpoints(self, old: Obj | None, new: Obj | None) -> None:
        if new is None and old is not None:  # someone deleted what we keep: rewrite it
            self.loop.queue.add(meta.namespaced_name(old))

    def _services_matching(self, p: Mapping[str, Any]) -> list[str]:
        labels = meta.labels(p)
        with self._lock:
            sels = self._selectors.get(meta.namespace(p))
            if not sels:
                return []
            return [k for k, s in sels.items() if s.matches(labels)]

    def _on_pod(self, old: Obj | None, new: Obj | None) -> None:
        if old is not None and new is not None and old is not new and _facts(old) == _facts(new):
            return
        keys: set[str] = set()
        for p in (old, new):
            if p is not None:
                keys.update(self._services_matching(p))
        for k in keys:
            self.loop.queue.add(k)

    # ------------------------------------------------------------------ running
    def run(self, stop: threading.Event) -> None:
        self.loop.run(stop)

    def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.inf.services.get(name, ns)
        current = self.inf.endpoints.get(name, ns)
        if svc is None:
            if current is not None and meta.labels(current).get(MANAGED_BY) == MANAGER:
                self.objects.delete(ENDPOINTS, name, ns, resource_version=meta.meta(current).get("resourceVersion"),
                                    guards=self.writer.guards)
            return
        sel = (svc.get("spec") or {}).get("selector")
        if not sel:
            return  # hand-set endpoints: not ours
        want = epdecide.desired(svc, self._candidates(ns, sel))
        if want is None:
            return
        want["metadata"].setdefault("labels", {})[MANAGED_BY] = MANAGER
        if not epdecide.needs_update(current, want):
            return
        if current is None:
            self.objects.create(dict(want), guards=self.writer.guards)
        else:
            want["metadata"]["resourceVersion"] = meta.meta(current).get("resourceVersion", "")
            self.objects.update(dict(want), guards=self.writer.guards)
        self.writes += 1

    def _candidates(self, ns: str, sel: Mapping[str, str]) -> list[Obj]:
        best: list[Obj] | None = None
        for k, v in sel.items():
            found = self.inf.pods.by_index("label", f"{ns}/{k}={v}")
            if best is None or len(found) < len(best):
                best = found
            if not best:
                break
        return best or []


def _facts(p: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a pod its Endpoints depend on."""
    st = podobj.status(p)
    ports = [c.get("ports") for c in podobj.spec(p).get("containers") or []]
    return (st.get("podIP"), podobj.is_ready(p), meta.labels(p), ports, podobj.node_name(p),
            meta.is_deleting(p), podobj.is_terminal(p), meta.uid(p))
