"""The node lifecycle controller's decisions, pure (pkg/controller/nodelifecycle, podgc).

`assess(nodes, pods, now=..., heartbeats=...)` returns what one pass of the controller does:

* **Heartbeat lost.** A node's last heartbeat is the later of its Ready condition's
  `lastHeartbeatTime` and its lease renewal (`heartbeats`, from the etcd lease the node agent
  keeps). Older than the grace period (default 40 s): its Ready condition becomes
  `Unknown` / `NodeStatusUnknown` / "Kubelet stopped posting node status." (kube's words), and
  a `NodeNotReady` event is noted.
  A node that never posted a status gets `NodeStatusNeverUpdated` once it is older than the
  startup grace period (60 s).
* **Pods of a node that is not Ready** (Unknown, or False as reported by the agent) are marked
  not ready (their Ready condition False), so the endpoints controller takes them out.
* **Eviction.** Kubernetes taints such nodes `node.kubernetes.io/unreachable` or `not-ready`
  (NoExecute) and the DefaultTolerationSeconds admission gives every pod 300 s of toleration.
  After that long since the Ready transition, the pod is *marked for deletion* (graceful: it
  stays Terminating until the node confirms, and RCs, which do not count terminating pods,
  replace it at once). A pod's own toleration for that taint wins: a longer (or shorter)
  `tolerationSeconds`, or none at all, which tolerates forever.
* **Orphans** (podgc): pods bound to a node that no longer exists are deleted outright; there
  is no kubelet left to confirm anything.

Nothing here writes; the controller loop applies the plan with optimistic updates, so a
heartbeat that lands meanwhile wins over a stale "Unknown".
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from orchestrator.objects import meta
from orchestrator.objects import node as nodes
from orchestrator.objects import pod as pods

Obj = Mapping[str, Any]

GRACE_PERIOD = 40.0  # node-monitor-grace-period, seconds
STARTUP_GRACE_PERIOD = 60.0  # node-startup-grace-period: a new node's time to post its status
EVICTION_TIMEOUT = 300.0  # DefaultTolerationSeconds
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
STATUS_UNKNOWN_REASON = "NodeStatusUnknown"
STATUS_UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
NEVER_UPDATED_REASON = "NodeStatusNeverUpdated"
NEVER_UPDATED_MESSAGE = "Kubelet never posted node status."


@dataclass(frozen=True)
class Note:
    """An event to record (reason and message as Kubernetes words them)."""

    kind: str
    namespace: str
    name: str
    reason: str
    message: str
    type: str = "Normal"


@dataclass(frozen=True)
class Plan:
    node_updates: list[dict[str, Any]] = field(default_factory=list)  # nodes with new conditions
    pods_not_ready: list[dict[str, Any]] = field(default_factory=list)  # pods with Ready=False
    evict: list[Obj] = field(default_factory=list)  # mark for deletion (graceful)
    orphans: list[Obj] = field(default_factory=list)  # delete now: their node is gone
    notes: list[Note] = field(default_factory=list)


def _ready_condition(node: Obj) -> Mapping[str, Any] | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def last_heartbeat(node: Obj, lease_renewed: datetime | None) -> datetime | None:
    c = _ready_condition(node)
    seen = [t for t in (meta.parse_time(c["lastHeartbeatTime"]) if c and c.get("lastHeartbeatTime") else None,
                        lease_renewed) if t is not None]
    return max(seen) if seen else None


def _with_ready_unknown(node: Obj, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(dict(node))
    st = out.setdefault("status", {})
    conds = st.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == "Ready":
            if c.get("status") != "Unknown":
                c["lastTransitionTime"] = meta.format_time(now)
            c.update(status="Unknown", reason=STATUS_UNKNOWN_REASON, message=STATUS_UNKNOWN_MESSAGE)
            break
    else:
        conds.append({"type": "Ready", "status": "Unknown", "reason": NEVER_UPDATED_REASON,
                      "message": NEVER_UPDATED_MESSAGE, "lastTransitionTime": meta.format_time(now)})
    return out


def _with_pod_not_ready(pod: Obj, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(dict(pod))
    conds = out.setdefault("status", {}).setdefault("conditions", [])
    for c in conds:
        if c.get("type") == "Ready":
            c["status"] = "False"
            c["lastTransitionTime"] = meta.format_time(now)
            break
    else:
        conds.append({"type": "Ready", "status": "False", "lastTransitionTime": meta.format_time(now)})
    return out


def toleration_seconds(pod: Obj, taint: str, default: float = EVICTION_TIMEOUT) -> float | None:
    """How long `pod` tolerates a NoExecute `taint`; None = forever. A pod without a matching
    toleration gets `default` (what DefaultTolerationSeconds would have added)."""
    matched: list[float | None] = []
    for t in pods.spec(pod).get("tolerations") or []:
        effect = t.get("effect") or ""
        if effect not in ("", "NoExecute"):
            continue
        op = t.get("operator") or "Equal"
        key = t.get("key") or ""
        if (op == "Exists" and key in ("", taint)) or (op == "Equal" and key == taint):
            secs = t.get("tolerationSeconds")
            matched.append(None if secs is None else max(float(secs), 0.0))
    if not matched:
        return default
    if any(m is None for m in matched):
        return None
    return min(m for m in matched if m is not None)


def assess(
    node_objs: Iterable[Obj],
    pod_objs: Iterable[Obj],
    *,
    now: datetime,
    heartbeats: Mapping[str, datetime] | None = None,
    grace_period: float = GRACE_PERIOD,
    startup_grace_period: float = STARTUP_GRACE_PERIOD,
    eviction_timeout: float = EVICTION_TIMEOUT,
) -> Plan:
    plan = Plan()
    hb = heartbeats or {}
    state: dict[str, tuple[str, datetime | None]] = {}  # node -> (Ready status, since)
    for n in node_objs:
        name = meta.name(n)
        status = nodes.ready_status(n)
        c = _ready_condition(n)
        since = meta.parse_time(c["lastTransitionTime"]) if c and c.get("lastTransitionTime") else None
        last = last_heartbeat(n, hb.get(name))
        if last is None:
            # never heard from: judge by its age against the (longer) startup grace period
            created = meta.meta(n).get("creationTimestamp")
            age = (now - meta.parse_time(created)).total_seconds() if created else 0.0
            stale = age > startup_grace_period
        else:
            stale = (now - last).total_seconds() > grace_period
        if stale and (status != "Unknown" or c is None):
            plan.node_updates.append(_with_ready_unknown(n, now))
            plan.notes.append(Note("Node", "", name, "NodeNotReady",
                                   f"Node {name} status is now: NodeNotReady"))
            status, since = "Unknown", now
        if status != "True" and since is None:
            since = now  # no transition time recorded: count from now, never evict at once
        state[name] = (status, since)
    for p in pod_objs:
        node_name = pods.node_name(p)
        if not node_name or pods.is_terminal(p):
            continue
        if node_name not in state:
            plan.orphans.append(p)
            continue
        status, since = state[node_name]
        if status == "True":
            continue
        if pods.is_ready(p):
            plan.pods_not_ready.append(_with_pod_not_ready(p, now))
        if meta.is_deleting(p):
            continue
        taint = TAINT_UNREACHABLE if status == "Unknown" else TAINT_NOT_READY
        secs = toleration_seconds(p, taint, eviction_timeout)
        assert since is not None
        if secs is not None and now >= since + timedelta(seconds=secs):
            plan.evict.append(p)
            plan.notes.append(Note("Pod", meta.namespace(p), meta.name(p), "TaintManagerEviction",
                                   f"Marking for deletion Pod {meta.namespaced_name(p)}"))
    return plan
