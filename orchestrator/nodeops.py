"""`cordon`, `uncordon`, `drain`: taking a node out of scheduling and emptying it.

Cordon sets the Node's `spec.unschedulable` (the scheduler's filter skips it). Drain cordons,
then deletes the node's pods like `kubectl drain` does (k8s.io/kubectl pkg/drain filters),
deciding per pod in `drain_plan`:

* finished pods (Succeeded/Failed) and pods already being deleted need no permission;
* a pod with no controller (nothing would recreate it elsewhere) is refused unless `force`;
* a pod with `emptyDir` volumes (its data goes with it) is refused unless `delete_local_data`.

Any refusal stops the drain before anything is written (kubectl cordons first and then
reports; we refuse first, so a refused drain leaves the node as it was). Pods are deleted
gracefully (`deletion.Deleter.delete_pod`); drain does not wait for the node agent to
confirm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netplane.errors import UserError
from orchestrator.deletion import Deleter
from orchestrator.objects import meta
from orchestrator.objects import node as nodes
from orchestrator.objects import pod as pods
from orchestrator.objects.meta import NODE, POD
from orchestrator.storage import Obj, ObjectStore, not_found


def with_unschedulable(node: Obj, value: bool) -> Obj | None:
    """The node cordoned (or uncordoned); None when it already is."""
    if nodes.unschedulable(node) == value:
        return None
    spec = node.setdefault("spec", {})
    if value:
        spec["unschedulable"] = True
    else:
        spec.pop("unschedulable", None)
    return node


def set_unschedulable(objects: ObjectStore, name: str, value: bool) -> bool:
    """Cordon/uncordon; False when the node already was."""
    if objects.get(NODE, name) is None:
        raise not_found(NODE, name)
    changed: list[bool] = []

    def mutate(n: Obj) -> Obj | None:
        out = with_unschedulable(n, value)
        changed[:] = [out is not None]
        return out

    objects.guaranteed_update(NODE, name, None, mutate)
    return bool(changed and changed[0])


@dataclass(frozen=True)
class DrainPlan:
    delete: list[Obj] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)  # ns/name of pods with no controller
    local_data: list[str] = field(default_factory=list)  # ns/name of pods with emptyDir
    forced: list[str] = field(default_factory=list)  # unmanaged, deleted because of --force

    def refusal(self, node: str) -> str | None:
        problems = []
        if self.unmanaged:
            problems.append("cannot delete Pods that declare no controller (use --force to "
                            f"override): {', '.join(self.unmanaged)}")
        if self.local_data:
            problems.append("cannot delete Pods with local storage (use --delete-emptydir-data "
                            f"to override): {', '.join(self.local_data)}")
        if not problems:
            return None
        return f'unable to drain node "{node}": ' + "; ".join(problems)


def _has_empty_dir(pod: Mapping[str, Any]) -> bool:
    return any("emptyDir" in v for v in (pod.get("spec") or {}).get("volumes") or []
               if isinstance(v, dict))


def drain_plan(node: str, candidates: Iterable[Obj], *, force: bool = False,
               delete_local_data: bool = False) -> DrainPlan:
    plan = DrainPlan()
    for p in candidates:
        if pods.node_name(p) != node or meta.is_deleting(p):
            continue
        plan.delete.append(p)
        if pods.is_terminal(p):
            continue
        if meta.controller_ref(p) is None:
            (plan.forced if force else plan.unmanaged).append(meta.namespaced_name(p))
        if _has_empty_dir(p) and not delete_local_data:
            plan.local_data.append(meta.namespaced_name(p))
    return plan


def plan_drain(objects: ObjectStore, node: str, *, force: bool = False,
               delete_local_data: bool = False) -> DrainPlan:
    """What draining `node` would delete; UserError when a pod must not be deleted."""
    if objects.get(NODE, node) is None:
        raise not_found(NODE, node)
    items, _ = objects.list(POD)
    plan = drain_plan(node, items, force=force, delete_local_data=delete_local_data)
    refusal = plan.refusal(node)
    if refusal:
        raise UserError(refusal)
    return plan


def evict(objects: ObjectStore, pod: Obj, *, grace: int | None = None) -> None:
    Deleter(objects).delete_pod(pod, grace=grace)
