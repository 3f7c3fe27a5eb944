"""Creating and deleting pods as controllers must (kube's controller.PodControl).

* `create_from_template` stores the RC's pod (generateName, controller reference), fenced.
* `delete` is the API server's graceful deletion, done by the writer itself since there is no
  API server: a pod not bound to any node, or finished, is deleted at once (nothing runs it); a
  bound pod is
  *marked* — `deletionTimestamp` = now + its grace period, `deletionGracePeriodSeconds` — and
  the node's runtime stops it and removes the object (a pod marked so is no longer active:
  RCs replace it and endpoints drop it at once). `force=True` deletes outright (pod GC of pods
  whose node is gone).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from netplane.errors import NotFoundError
from orchestrator import saadmission
from orchestrator.controllers.base import Writer
from orchestrator.objects import meta
from orchestrator.objects import pod as podobj
from orchestrator.objects.meta import POD, SERVICE_ACCOUNT
from orchestrator.replication import pod_from_template
from orchestrator.storage import ObjectStore

DEFAULT_GRACE = 30

Obj = dict[str, Any]


def create_from_template(objects: ObjectStore, rc: Mapping[str, Any], writer: Writer) -> Obj:
    """The RC's next pod, through ServiceAccount admission as the API server would take it."""
    pod = saadmission.admit_pod(pod_from_template(rc),
                                lambda ns, name: objects.get(SERVICE_ACCOUNT, name, ns))
    return objects.create(pod, guards=writer.guards)


def delete(objects: ObjectStore, pod: Mapping[str, Any], writer: Writer, *, now: datetime,
           force: bool = False) -> bool:
    """Delete (or mark for deletion) `pod`; False when it was gone already."""
    name, ns = meta.name(pod), meta.namespace(pod)
    if force or not podobj.node_name(pod) or podobj.is_terminal(pod):
        return objects.delete(POD, name, ns, guards=writer.guards)

    def mark(cur: Obj) -> Obj | None:
        if meta.is_deleting(cur):
            return None
        if not podobj.node_name(cur):
            raise _Unbound
        grace = podobj.spec(cur).get("terminationGracePeriodSeconds")
        grace = DEFAULT_GRACE if grace is None else int(grace)
        md = cur["metadata"]
        md["deletionTimestamp"] = meta.format_time(now + timedelta(seconds=grace))
        md["deletionGracePeriodSeconds"] = grace
        return cur

    try:
        objects.guaranteed_update(POD, name, ns, mark, guards=writer.guards)
    except NotFoundError:
        return False
    except _Unbound:
        return objects.delete(POD, name, ns, guards=writer.guards)
    return True


class _Unbound(Exception):
    """The pod was unbound when re-read: delete it outright."""
