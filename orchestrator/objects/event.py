"""Events, as Kubernetes records them (core/v1 Event), and their de-duplication.

An event says something happened to an object: `Scheduled`, `FailedScheduling`,
`SuccessfulCreate`, `SuccessfulDelete`, `NodeNotReady`, ... It lives in the involved object's
namespace ("default" for cluster-scoped objects like Nodes, as Kubernetes does), is named
`<object name>.<unix nanoseconds in hex>`, and is kept in etcd with a TTL (the store's lease;
Kubernetes' default is one hour). Repeats of the same event (same source, object, reason,
message, type) are not new objects: like client-go's EventLogger, the existing one gets
`count + 1` and a new `lastTimestamp`, so a crash-looping pod makes one event, not thousands.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from orchestrator.objects import meta
from orchestrator.objects.meta import ObjectMeta

EventType = Literal["Normal", "Warning"]
EVENT_TYPES: tuple[EventType, ...] = ("Normal", "Warning")
DEFAULT_TTL_SECONDS = 3600  # kube-apiserver --event-ttl

# reasons netplane's controllers record (Kubernetes' own names)
SCHEDULED = "Scheduled"
FAILED_SCHEDULING = "FailedScheduling"
SUCCESSFUL_CREATE = "SuccessfulCreate"
FAILED_CREATE = "FailedCreate"
SUCCESSFUL_DELETE = "SuccessfulDelete"
FAILED_DELETE = "FailedDelete"
NODE_NOT_READY = "NodeNotReady"
TAINT_MANAGER_EVICTION = "TaintManagerEviction"


class ObjectReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    namespace: str
    name: str
    uid: str
    resourceVersion: str


class EventSource(TypedDict, total=False):
    component: str
    host: str


class Event(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    involvedObject: ObjectReference
    reason: str
    message: str
    source: EventSource
    firstTimestamp: str
    lastTimestamp: str
    count: int
    type: str
    reportingComponent: str
    reportingInstance: str


def reference(obj: Mapping[str, Any]) -> ObjectReference:
    """An ObjectReference to `obj` (kind and apiVersion from the object itself)."""
    ref: ObjectReference = {"kind": str(obj.get("kind", "")), "name": meta.name(obj)}
    kind = meta.kind_named(ref["kind"])
    if kind is not None:
        ref["apiVersion"] = kind.api_version
        if kind.namespaced:
            ref["namespace"] = meta.namespace(obj)
    uid = meta.uid(obj)
    if uid:
        ref["uid"] = uid
    rv = meta.meta(obj).get("resourceVersion")
    if rv:
        ref["resourceVersion"] = rv
    return ref


def new_event(
    involved: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    type: EventType = "Normal",
    component: str,
    host: str = "",
    now: datetime,
) -> Event:
    """A first occurrence (count 1) of an event about `involved`."""
    ref = reference(involved)
    ts = meta.format_time(now)
    nanos = int(now.astimezone(UTC).timestamp() * 1_000_000) * 1000
    source: EventSource = {"component": component}
    if host:
        source["host"] = host
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref.get('name', '')}.{nanos:x}",
                     "namespace": ref.get("namespace") or meta.DEFAULT_NAMESPACE},
        "involvedObject": ref,
        "reason": reason,
        "message": message,
        "type": type,
        "source": source,
        "reportingComponent": component,
        "reportingInstance": host,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
    }


def dedup_key(ev: Mapping[str, Any]) -> tuple[str, ...]:
    """What makes two events "the same" (client-go getEventKey)."""
    src = ev.get("source") or {}
    ref = ev.get("involvedObject") or {}
    return (src.get("component", ""), src.get("host", ""), ref.get("kind", ""),
            ref.get("namespace", ""), ref.get("name", ""), ref.get("uid", ""),
            ev.get("type", ""), ev.get("reason", ""), ev.get("message", ""))


def repeated(existing: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """The stored event after one more occurrence: count + 1, lastTimestamp now."""
    out: dict[str, Any] = copy.deepcopy(dict(existing))
    out["count"] = int(out.get("count") or 1) + 1
    out["lastTimestamp"] = meta.format_time(now)
    return out
