"""`replicationcontrollers/scale`: an RC's replicas as an autoscaling/v1 `Scale`.

GET shows `spec.replicas` (desired) and `status.replicas` (observed) with the RC's selector as
a string; PUT and PATCH change only `spec.replicas` of the RC, through the same optimistic
update as every other write (`orchestrator.workloads.scaled`, what `netplane scale` uses). A
resourceVersion in the Scale is a precondition on the RC's, as in Kubernetes. On an RC with
managedFields, the writer takes `spec.replicas` over (`fieldmanager.update`; kube records it
under the entry's `subresource: scale`, we under the writer's Update entry).
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.apiserver.status import APIError, bad_request, not_found
from orchestrator.objects import meta
from orchestrator.objects import replicationcontroller as rcs
from orchestrator.objects.meta import REPLICATION_CONTROLLER, Kind
from orchestrator.storage import Conflict, Obj, ObjectStore
from orchestrator.workloads import scaled

SCALE = Kind("Scale", "scale", True, api_version="autoscaling/v1")
PATCH_RETRIES = 16


def scale_of(rc: Obj) -> Obj:
    md = meta.meta(rc)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: v for k, v in md.items()
                     if k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
        "spec": {"replicas": rcs.replicas(rc)},
        "status": {"replicas": int((rc.get("status") or {}).get("replicas") or 0),
                   "selector": str(rcs.selector(rc))},
    }


def _replicas(name: str, scale: Any) -> int:
    if not isinstance(scale, dict):
        raise bad_request("the body of the request was in an unknown format")
    n = (scale.get("spec") or {}).get("replicas", 0)
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        shown = n if isinstance(n, int | float) and not isinstance(n, bool) else f'"{n}"'
        raise APIError(422, f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                            f"{shown}: must be greater than or equal to 0", reason="Invalid",
                       details={"name": name, "group": "autoscaling", "kind": "Scale", "causes": [
                           {"reason": "FieldValueInvalid", "field": "spec.replicas",
                            "message": f"Invalid value: {shown}: must be greater than or equal to 0"}]})
    return n


class Scales:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def get(self, namespace: str, name: str) -> Obj:
        rc = self.objects.get(REPLICATION_CONTROLLER, name, namespace)
        if rc is None:
            raise not_found("replicationcontrollers", name)
        return scale_of(rc)

    def update(self, namespace: str, name: str, body: Any, manager: str = "") -> Obj:
        replicas = _replicas(name, body)
        want = ((body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None)
        return self._write(namespace, name, replicas, want, manager)

    def patch(self, namespace: str, name: str, patch: bytes, content_type: str, manager: str = "") -> Obj:
        from orchestrator.apiserver.registry import patched

        current = self.get(namespace, name)
        new = patched(SCALE, current, patch, content_type)
        replicas = _replicas(name, new)
        want = (new.get("metadata") or {}).get("resourceVersion") if isinstance(new, dict) else None
        pinned = want if want and want != current["metadata"].get("resourceVersion") else None
        return self._write(namespace, name, replicas, pinned, manager)

    def _write(self, namespace: str, name: str, replicas: int, want_rv: str | None, manager: str = "") -> Obj:
        from orchestrator.apiserver import fieldmanager
        from orchestrator.objects import tree

        def mutate(rc: Obj) -> Obj | None:
            if want_rv and meta.meta(rc).get("resourceVersion") != want_rv:
                raise Conflict(REPLICATION_CONTROLLER, name)
            old = tree.copy(rc) if manager and meta.meta(rc).get("managedFields") else None
            new = scaled(rc, replicas)
            if new is not None and old is not None:
                fieldmanager.update(old, new, "ReplicationController", manager, now=time.time())
            return new

        rc = self.objects.guaranteed_update(REPLICATION_CONTROLLER, name, namespace, mutate,
                                            retries=PATCH_RETRIES)
        return scale_of(rc)
