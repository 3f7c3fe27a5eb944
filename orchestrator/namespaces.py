"""Namespace lifecycle, as kube-apiserver's NamespaceLifecycle admission and the namespace
controller keep it.

* New namespaced objects go only into a namespace that exists and is not being deleted
  (`check_can_create`, called by every user write: `netplane apply`, the API server). The
  namespaces every cluster has (`default`, `kube-system`, `kube-public`) count as existing
  even before their object is written.
* Deleting a namespace marks it (`deletionTimestamp`, phase Terminating); the namespace
  controller (`orchestrator.controllers.namespace_controller`) then deletes what it holds, pods
  gracefully (their nodes stop them), and removes the namespace once it is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from netplane.errors import NotFoundError, UserError
from orchestrator.objects import meta
from orchestrator.objects.meta import NAMESPACE
from orchestrator.storage import ObjectStore

IMPLICIT = frozenset({"default", "kube-system", "kube-public"})  # exist in every cluster
PROTECTED = IMPLICIT  # may not be deleted

Obj = dict[str, Any]


class NamespaceNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f'namespaces "{name}" not found')
        self.name = name


class NamespaceTerminating(UserError):
    """403 Forbidden in the API, as kube-apiserver answers."""

    http_status = 403

    def __init__(self, name: str) -> None:
        super().__init__(f"unable to create new content in namespace {name} because it is being terminated")
        self.name = name


class ProtectedNamespace(UserError):
    http_status = 403

    def __init__(self, name: str) -> None:
        super().__init__(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        self.name = name


Lookup = Callable[[str], Obj | None]


def check_can_create(objects: ObjectStore, obj: Mapping[str, Any], *, cached: Lookup | None = None) -> None:
    """Raise unless `obj` (a namespaced kind) may be created in its namespace now.

    `cached`: the namespace as a watch cache has it (the API server's), asked first, as
    kube's NamespaceLifecycle asks its informer; one it does not have is looked up live, so a
    namespace created a moment ago is never refused."""
    kind = meta.kind_named(str(obj.get("kind")))
    if kind is None or not kind.namespaced:
        return
    name = meta.namespace(obj)
    ns = cached(name) if cached is not None else None
    if ns is None:
        ns = objects.get(NAMESPACE, name)
    if ns is None:
        if name in IMPLICIT:
            return
        raise NamespaceNotFound(name)
    if meta.is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
        raise NamespaceTerminating(name)


def terminating_mark(ns: Obj, *, now: float) -> Obj | None:
    """The namespace marked for the controller (None when it already is)."""
    if meta.is_deleting(ns):
        return None
    ns.setdefault("metadata", {})["deletionTimestamp"] = meta.from_epoch(now)
    ns.setdefault("status", {})["phase"] = "Terminating"
    return ns
