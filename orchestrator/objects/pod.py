"""Pod: its v1 shape and the facts controllers read from it (requests, ports, readiness).

The accessors turn the JSON into the few plain values scheduling and replication need, with
quantities parsed exactly (see `quantity`). They assume an object that passed validation;
on a malformed value they raise `ValueError` rather than guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict

from orchestrator.objects.meta import ObjectMeta, is_deleting, parse_time
from orchestrator.objects.quantity import cpu_millis, memory_bytes

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
PHASES: tuple[Phase, ...] = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
ConditionStatus = Literal["True", "False", "Unknown"]


class ContainerPort(TypedDict, total=False):
    name: str
    containerPort: int
    hostPort: int
    hostIP: str
    protocol: str


class ExecAction(TypedDict, total=False):
    command: list[str]


class HTTPGetAction(TypedDict, total=False):
    path: str
    port: int | str
    host: str
    scheme: str


class TCPSocketAction(TypedDict, total=False):
    port: int | str
    host: str


class Probe(TypedDict, total=False):
    exec: ExecAction
    httpGet: HTTPGetAction
    tcpSocket: TCPSocketAction
    initialDelaySeconds: int
    periodSeconds: int
    timeoutSeconds: int
    successThreshold: int
    failureThreshold: int


class EnvVar(TypedDict, total=False):
    name: str
    value: str


class ResourceRequirements(TypedDict, total=False):
    requests: dict[str, str | float]
    limits: dict[str, str | float]


class Container(TypedDict, total=False):
    name: str
    image: str
    command: list[str]
    args: list[str]
    env: list[EnvVar]
    ports: list[ContainerPort]
    resources: ResourceRequirements
    readinessProbe: Probe
    livenessProbe: Probe
    imagePullPolicy: str


class Toleration(TypedDict, total=False):
    key: str
    operator: str
    value: str
    effect: str
    tolerationSeconds: int


class PodSpec(TypedDict, total=False):
    containers: list[Container]
    ephemeralContainers: list[Container]  # kubectl debug's, added through pods/ephemeralcontainers
    tolerations: list[Toleration]
    restartPolicy: str
    nodeSelector: dict[str, str]
    nodeName: str
    terminationGracePeriodSeconds: int
    hostNetwork: bool


class PodCondition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str
    lastProbeTime: str


class ContainerStatus(TypedDict, total=False):
    name: str
    ready: bool
    restartCount: int
    image: str
    containerID: str
    state: dict[str, Any]
    lastState: dict[str, Any]


class PodStatus(TypedDict, total=False):
    phase: str
    conditions: list[PodCondition]
    podIP: str
    hostIP: str
    startTime: str
    message: str
    reason: str
    containerStatuses: list[ContainerStatus]


class Pod(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus


class PodTemplateSpec(TypedDict, total=False):
    metadata: ObjectMeta
    spec: PodSpec


@dataclass(frozen=True)
class Resources:
    """Requests or capacity in the units the scheduler adds up: millicores, bytes, pods."""

    milli_cpu: int = 0
    memory: int = 0
    pods: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.milli_cpu + other.milli_cpu, self.memory + other.memory,
                         self.pods + other.pods)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.milli_cpu - other.milli_cpu, self.memory - other.memory,
                         self.pods - other.pods)


HostPort = tuple[str, str, int]  # (hostIP or "0.0.0.0", protocol, port)


def spec(pod: Mapping[str, Any]) -> PodSpec:
    s = pod.get("spec")
    return s if isinstance(s, dict) else {}  # type: ignore[return-value]


def status(pod: Mapping[str, Any]) -> PodStatus:
    s = pod.get("status")
    return s if isinstance(s, dict) else {}  # type: ignore[return-value]


def requests(pod: Mapping[str, Any]) -> Resources:
    """Summed container requests, counting the pod itself as one pod. A container with limits
    but no requests requests its limits (the API server's defaulting does the same)."""
    cpu = mem = 0
    for c in spec(pod).get("containers") or []:
        res = c.get("resources") or {}
        req = res.get("requests") or {}
        lim = res.get("limits") or {}
        if "cpu" in req or "cpu" in lim:
            cpu += cpu_millis(req.get("cpu", lim.get("cpu", 0)))
        if "memory" in req or "memory" in lim:
            mem += memory_bytes(req.get("memory", lim.get("memory", 0)))
    return Resources(cpu, mem, 1)


def host_ports(pod: Mapping[str, Any]) -> frozenset[HostPort]:
    out = set()
    for c in spec(pod).get("containers") or []:
        for p in c.get("ports") or []:
            hp = p.get("hostPort") or 0
            if hp > 0:
                out.add((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", hp))
    return frozenset(out)


def host_ports_conflict(want: frozenset[HostPort], used: Mapping[tuple[str, int], set[str]]) -> bool:
    """Kubernetes' rule: same protocol and port conflict when either IP is 0.0.0.0 or they are
    equal. `used` maps (protocol, port) to the host IPs already taken on the node."""
    for ip, proto, port in want:
        ips = used.get((proto, port))
        if ips and (ip == "0.0.0.0" or "0.0.0.0" in ips or ip in ips):
            return True
    return False


def phase(pod: Mapping[str, Any]) -> str:
    return status(pod).get("phase") or "Pending"


def node_name(pod: Mapping[str, Any]) -> str:
    return spec(pod).get("nodeName") or ""


def condition(pod: Mapping[str, Any], kind: str) -> PodCondition | None:
    for c in status(pod).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def ready_since(pod: Mapping[str, Any]) -> datetime | None:
    """When the pod last became Ready (its Ready condition's lastTransitionTime)."""
    c = condition(pod, "Ready")
    if c is None or c.get("status") != "True" or not c.get("lastTransitionTime"):
        return None
    return parse_time(c["lastTransitionTime"])


def restart_count(pod: Mapping[str, Any]) -> int:
    """The highest restart count among the pod's containers (what ActivePods compares)."""
    return max((cs.get("restartCount", 0) for cs in status(pod).get("containerStatuses") or []),
               default=0)


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return phase(pod) in ("Succeeded", "Failed")


def is_active(pod: Mapping[str, Any]) -> bool:
    """Counts toward an RC's replicas: not finished and not being deleted (kube IsPodActive)."""
    return not is_terminal(pod) and not is_deleting(pod)


def container_port_by_name(pod: Mapping[str, Any], port_name: str, protocol: str) -> int | None:
    """Resolve a Service's named targetPort against this pod (kube FindPort)."""
    for c in spec(pod).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == port_name and (p.get("protocol") or "TCP") == protocol:
                return p.get("containerPort")
    return None


def config_refs(pod: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The ConfigMaps and Secrets the pod reads: ("ConfigMap"|"Secret", name), from its volumes,
    and every container's envFrom and env valueFrom."""
    s: Mapping[str, Any] = spec(pod)
    refs: set[tuple[str, str]] = set()
    for v in s.get("volumes") or []:
        if isinstance(v.get("configMap"), dict) and v["configMap"].get("name"):
            refs.add(("ConfigMap", str(v["configMap"]["name"])))
        if isinstance(v.get("secret"), dict) and v["secret"].get("secretName"):
            refs.add(("Secret", str(v["secret"]["secretName"])))
        projected = v.get("projected") if isinstance(v.get("projected"), dict) else {}
        for src in projected.get("sources") or []:
            for field, kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
                if isinstance(src.get(field), dict) and src[field].get("name"):
                    refs.add((kind, str(src[field]["name"])))
    for c in [*(s.get("initContainers") or []), *(s.get("containers") or []), *(s.get("ephemeralContainers") or [])]:
        for src in c.get("envFrom") or []:
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if isinstance(src.get(field), dict) and src[field].get("name"):
                    refs.add((kind, str(src[field]["name"])))
        for e in c.get("env") or []:
            vf = e.get("valueFrom") if isinstance(e, dict) else None
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if isinstance(vf, dict) and isinstance(vf.get(field), dict) and vf[field].get("name"):
                    refs.add((kind, str(vf[field]["name"])))
    return refs
