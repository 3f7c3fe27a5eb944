"""Node lifecycle decisions: grace period, pods marked not ready, eviction after the
toleration, pods' own tolerations, orphans of deleted nodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.node_lifecycle import Note, assess, toleration_seconds
from orchestrator.objects import meta, node, pod

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return meta.format_time(NOW - timedelta(seconds=seconds_ago))


def mknode(name: str, *, status: str = "True", heartbeat_ago: float = 5, since_ago: float = 3600) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": status, "reason": "KubeletReady",
                                       "lastHeartbeatTime": ts(heartbeat_ago),
                                       "lastTransitionTime": ts(since_ago)}]}}


def mkpod(name: str, node_name: str, *, ready: bool = True, tolerations: list[dict[str, Any]] | None = None,
          deleting: bool = False, phase: str = "Running") -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "default"}
    if deleting:
        md["deletionTimestamp"] = ts(1)
    spec: dict[str, Any] = {"nodeName": node_name, "containers": [{"name": "c", "image": "i"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec,
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                       "lastTransitionTime": ts(600)}]}}


def names(objs: list[Any]) -> list[str]:
    return [meta.name(o) for o in objs]


def test_healthy_cluster_needs_nothing() -> None:
    plan = assess([mknode("h1"), mknode("h2")], [mkpod("a", "h1"), mkpod("b", "h2")], now=NOW)
    assert plan.node_updates == [] and plan.pods_not_ready == [] and plan.evict == [] and plan.orphans == []


def test_grace_period_boundary_and_lease_heartbeats() -> None:
    assert assess([mknode("h1", heartbeat_ago=40)], [], now=NOW).node_updates == []
    (upd,) = assess([mknode("h1", heartbeat_ago=41)], [], now=NOW).node_updates
    (c,) = upd["status"]["conditions"]
    assert c == {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                 "message": "Kubelet stopped posting node status.",
                 "lastHeartbeatTime": ts(41), "lastTransitionTime": meta.format_time(NOW)}
    # the etcd lease renewal counts as a heartbeat too
    plan = assess([mknode("h1", heartbeat_ago=100)], [], now=NOW, heartbeats={"h1": NOW - timedelta(seconds=3)})
    assert plan.node_updates == []
    assert assess([mknode("h1", heartbeat_ago=15)], [], now=NOW, grace_period=10).node_updates != []


def test_lost_node_pods_marked_not_ready_and_noted() -> None:
    plan = assess([mknode("h1", heartbeat_ago=60), mknode("h2")],
                  [mkpod("a", "h1"), mkpod("b", "h1", ready=False), mkpod("c", "h2")], now=NOW)
    assert names(plan.node_updates) == ["h1"]
    assert names(plan.pods_not_ready) == ["a"]  # b already not ready: no write
    assert not pod.is_ready(plan.pods_not_ready[0])
    assert plan.evict == []  # just went unknown: 300 s to go
    assert plan.notes == [Note("Node", "", "h1", "NodeNotReady", "Node h1 status is now: NodeNotReady")]
    assert node.ready_status(plan.node_updates[0]) == "Unknown"


def test_already_unknown_node_is_not_rewritten() -> None:
    n = mknode("h1", status="Unknown", heartbeat_ago=100, since_ago=50)
    plan = assess([n], [mkpod("a", "h1", ready=False)], now=NOW)
    assert plan.node_updates == [] and plan.notes == [] and plan.evict == []


def test_eviction_after_default_toleration() -> None:
    for since, evicted in ((299, []), (300, ["a"]), (1000, ["a"])):
        n = mknode("h1", status="Unknown", heartbeat_ago=since + 40, since_ago=since)
        plan = assess([n], [mkpod("a", "h1", ready=False), mkpod("gone", "h1", deleting=True),
                            mkpod("done", "h1", phase="Succeeded")], now=NOW)
        assert names(plan.evict) == evicted, since
    plan = assess([mknode("h1", status="Unknown", heartbeat_ago=400, since_ago=100)],
                  [mkpod("a", "h1")], now=NOW, eviction_timeout=60)
    assert names(plan.evict) == ["a"]
    assert plan.notes[-1] == Note("Pod", "default", "a", "TaintManagerEviction", "Marking for deletion Pod default/a")


def test_not_ready_reported_by_the_node_uses_the_not_ready_taint() -> None:
    n = mknode("h1", status="False", heartbeat_ago=2, since_ago=400)
    tol = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 600}]
    plan = assess([n], [mkpod("a", "h1"), mkpod("patient", "h1", tolerations=tol)], now=NOW)
    assert names(plan.pods_not_ready) == ["a", "patient"]
    assert names(plan.evict) == ["a"]
    assert plan.node_updates == []  # heartbeats are fresh: the node's own report stands


def test_pod_tolerations() -> None:
    p = mkpod("p", "h1")
    assert toleration_seconds(p, "node.kubernetes.io/unreachable") == 300
    p["spec"]["tolerations"] = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                                 "tolerationSeconds": 30}]
    assert toleration_seconds(p, "node.kubernetes.io/unreachable") == 30
    assert toleration_seconds(p, "node.kubernetes.io/not-ready") == 300
    p["spec"]["tolerations"].append({"operator": "Exists"})  # tolerates everything, forever
    assert toleration_seconds(p, "node.kubernetes.io/unreachable") is None
    p["spec"]["tolerations"] = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}]
    assert toleration_seconds(p, "node.kubernetes.io/unreachable") == 300  # NoSchedule does not count
    forever = mkpod("f", "h1", tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}])
    plan = assess([mknode("h1", status="Unknown", heartbeat_ago=9999, since_ago=9000)], [forever], now=NOW)
    assert plan.evict == []


def test_orphans_of_deleted_nodes() -> None:
    plan = assess([mknode("h1")], [mkpod("a", "h1"), mkpod("lost", "gone-node"),
                                   mkpod("lost-deleting", "gone-node", deleting=True),
                                   mkpod("unbound", ""), mkpod("finished", "gone-node", phase="Failed")], now=NOW)
    assert names(plan.orphans) == ["lost", "lost-deleting"]


def test_node_that_never_posted_status() -> None:
    def bare(age: float) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "h1", "creationTimestamp": ts(age)}, "status": {}}

    assert assess([bare(59)], [], now=NOW).node_updates == []  # still starting up
    plan = assess([bare(61)], [mkpod("a", "h1")], now=NOW)
    (upd,) = plan.node_updates
    assert upd["status"]["conditions"] == [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                                            "message": "Kubelet never posted node status.",
                                            "lastTransitionTime": meta.format_time(NOW)}]
    assert plan.evict == []  # not ready only from now on
    assert names(plan.pods_not_ready) == ["a"]
    # once the condition is written, the next pass leaves it alone
    assert assess([upd], [], now=NOW + timedelta(seconds=5)).node_updates == []


def test_inputs_are_not_modified() -> None:
    n = mknode("h1", heartbeat_ago=60)
    p = mkpod("a", "h1")
    before = (repr(n), repr(p))
    assess([n], [p], now=NOW)
    assert (repr(n), repr(p)) == before
