"""Node and Namespace: their v1 shapes and what the scheduler reads from a Node.

A Node's `status.allocatable` (cpu, memory, pods) is what pods may request in total; its Ready
condition says whether the kubelet (our node agent) is heartbeating; `spec.unschedulable` is
what `cordon` sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from orchestrator.objects.meta import ObjectMeta
from orchestrator.objects.pod import Resources
from orchestrator.objects.quantity import cpu_millis, memory_bytes


class NodeCondition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    lastHeartbeatTime: str
    lastTransitionTime: str


class NodeAddress(TypedDict):
    type: str
    address: str


class NodeSpec(TypedDict, total=False):
    podCIDR: str
    unschedulable: bool


class NodeStatus(TypedDict, total=False):
    capacity: dict[str, str | int]
    allocatable: dict[str, str | int]
    conditions: list[NodeCondition]
    addresses: list[NodeAddress]


class Node(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: NodeSpec
    status: NodeStatus


class NamespaceStatus(TypedDict, total=False):
    phase: str


class Namespace(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]
    status: NamespaceStatus


def allocatable(node: Mapping[str, Any]) -> Resources:
    """What pods may use on the node; capacity when allocatable is not given. A resource the
    node does not list is zero (so a node without `pods` takes no pods, as in Kubernetes)."""
    st = node.get("status") or {}
    alloc = st.get("allocatable") or st.get("capacity") or {}
    return Resources(
        milli_cpu=cpu_millis(alloc["cpu"]) if "cpu" in alloc else 0,
        memory=memory_bytes(alloc["memory"]) if "memory" in alloc else 0,
        pods=memory_bytes(alloc["pods"]) if "pods" in alloc else 0,
    )


def ready_status(node: Mapping[str, Any]) -> str:
    """"True", "False" or "Unknown" (no Ready condition yet counts as Unknown)."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status") or "Unknown")
    return "Unknown"


def unschedulable(node: Mapping[str, Any]) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


def internal_ip(node: Mapping[str, Any]) -> str:
    """The node's InternalIP address ("" when it has none)."""
    return next((str(a.get("address") or "") for a in (node.get("status") or {}).get("addresses") or []
                 if isinstance(a, dict) and a.get("type") == "InternalIP"), "")


def node_api_port(node: Mapping[str, Any]) -> int:
    """The port its node API (our kubelet's) announces, 0 when none: daemonEndpoints.kubeletEndpoint."""
    port = (((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0
    return port if isinstance(port, int) and 0 < port < 65536 else 0
