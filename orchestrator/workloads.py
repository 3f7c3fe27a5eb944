"""`run` and `scale`: the ReplicationController old kubectl made, and changing its replicas.

`kubectl run NAME --image IMG` (before 1.18 turned it into "make one pod") created a
ReplicationController named NAME whose pods, selector and the RC itself carry the label
`run=NAME`, with one container named NAME. Arguments after `--` are the container's `args`,
or its `command` with `--command`, as kubectl does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from netplane.errors import UserError
from orchestrator.objects import meta
from orchestrator.objects.meta import REPLICATION_CONTROLLER
from orchestrator.storage import Obj, ObjectStore, not_found


def run_rc(name: str, *, image: str, namespace: str = meta.DEFAULT_NAMESPACE, replicas: int = 1,
           port: int | None = None, argv: Sequence[str] = (), command: bool = False,
           env: Sequence[tuple[str, str]] = (), labels: dict[str, str] | None = None) -> Obj:
    """The RC `kubectl run` (v1.0-1.17, generator run/v1) made: unvalidated, to be admitted."""
    lab = dict(labels) if labels else {"run": name}
    container: dict[str, Any] = {"name": name, "image": image}
    if argv:
        container["command" if command else "args"] = list(argv)
    if port is not None:
        container["ports"] = [{"containerPort": port}]
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env]
    return {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(lab)},
        "spec": {
            "replicas": replicas,
            "selector": dict(lab),
            "template": {"metadata": {"labels": dict(lab)}, "spec": {"containers": [container]}},
        },
    }


def scaled(rc: Obj, replicas: int, *, current_replicas: int | None = None) -> Obj | None:
    """The RC with `replicas` (None when it already has them). `current_replicas` is
    kubectl's precondition: the RC must have that many now."""
    have = (rc.get("spec") or {}).get("replicas", 1)
    if current_replicas is not None and have != current_replicas:
        raise UserError(f"Expected replicas to be {current_replicas}, was {have}")
    if have == replicas:
        return None
    rc["spec"]["replicas"] = replicas
    return rc


def scale(objects: ObjectStore, name: str, namespace: str, replicas: int, *,
          current_replicas: int | None = None) -> Obj:
    if replicas < 0:
        raise UserError("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    if objects.get(REPLICATION_CONTROLLER, name, namespace) is None:
        raise not_found(REPLICATION_CONTROLLER, name)
    return objects.guaranteed_update(
        REPLICATION_CONTROLLER, name, namespace,
        lambda rc: scaled(rc, replicas, current_replicas=current_replicas))
