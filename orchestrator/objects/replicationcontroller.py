"""ReplicationController: the v1 shape (replicas, selector, template) and its accessors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from orchestrator.objects.meta import ObjectMeta
from orchestrator.objects.pod import PodTemplateSpec
from orchestrator.objects.selector import Selector, from_set


class ReplicationControllerSpec(TypedDict, total=False):
    replicas: int
    minReadySeconds: int
    selector: dict[str, str]
    template: PodTemplateSpec


class ReplicationControllerStatus(TypedDict, total=False):
    replicas: int
    fullyLabeledReplicas: int
    readyReplicas: int
    availableReplicas: int
    observedGeneration: int


class ReplicationController(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: ReplicationControllerSpec
    status: ReplicationControllerStatus


def replicas(rc: Mapping[str, Any]) -> int:
    r = (rc.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def selector(rc: Mapping[str, Any]) -> Selector:
    """The RC's selector; a missing one is the template's labels (the defaulting rule). An
    RC whose selector is still empty selects nothing, never everything: validation rejects
    it, and a controller must not adopt every pod in the namespace because of a bad write."""
    sp = rc.get("spec") or {}
    sel = sp.get("selector") or ((sp.get("template") or {}).get("metadata") or {}).get("labels")
    if not sel:
        return Selector.nothing()
    return from_set(sel)
