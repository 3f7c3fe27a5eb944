"""Object metadata (ObjectMeta, OwnerReference) and the kinds netplane serves.

Objects are JSON dicts in Kubernetes' v1 wire shape (see `orchestrator.objects` for why);
this module holds the TypedDicts describing `metadata` and the accessors every controller uses,
so no caller digs through `obj["metadata"].get(...)` chains of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NewType, TypedDict

Uid = NewType("Uid", str)
DEFAULT_NAMESPACE = "default"


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    generateName: str
    namespace: str
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]
    creationTimestamp: str
    deletionTimestamp: str
    deletionGracePeriodSeconds: int
    resourceVersion: str
    generation: int
    finalizers: list[str]


@dataclass(frozen=True)
class Kind:
    """One kind: its name, plural resource name (URL and storage key), and scope."""

    kind: str
    resource: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    api_version: str = "v1"

    @property
    def group(self) -> str:
        """The API group: "" for core/v1, `coordination.k8s.io` for `coordination.k8s.io/v1`."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def definition(self) -> str:
        """Its name in Kubernetes' OpenAPI definitions: `io.k8s.api.core.v1.Pod`,
        `io.k8s.api.coordination.v1.Lease`."""
        return f"io.k8s.api.{self.group.split('.')[0] or 'core'}.{self.version}.{self.kind}"

    @property
    def qualified(self) -> str:
        """The resource as kube-apiserver names it in messages: `pods`, `leases.coordination.k8s.io`."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


NAMESPACE = Kind("Namespace", "namespaces", False, ("ns",))
NODE = Kind("Node", "nodes", False, ("no",))
POD = Kind("Pod", "pods", True, ("po",))
REPLICATION_CONTROLLER = Kind("ReplicationController", "replicationcontrollers", True, ("rc",))
SERVICE = Kind("Service", "services", True, ("svc",))
ENDPOINTS = Kind("Endpoints", "endpoints", True, ("ep",))
EVENT = Kind("Event", "events", True, ("ev",))
CONFIG_MAP = Kind("ConfigMap", "configmaps", True, ("cm",))
SECRET = Kind("Secret", "secrets", True)
SERVICE_ACCOUNT = Kind("ServiceAccount", "serviceaccounts", True, ("sa",))
LEASE = Kind("Lease", "leases", True, (), "coordination.k8s.io/v1")
POD_DISRUPTION_BUDGET = Kind("PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",), "policy/v1")
RBAC_VERSION = "rbac.authorization.k8s.io/v1"
ROLE = Kind("Role", "roles", True, (), RBAC_VERSION)
ROLE_BINDING = Kind("RoleBinding", "rolebindings", True, (), RBAC_VERSION)
CLUSTER_ROLE = Kind("ClusterRole", "clusterroles", False, (), RBAC_VERSION)
CLUSTER_ROLE_BINDING = Kind("ClusterRoleBinding", "clusterrolebindings", False, (), RBAC_VERSION)
RBAC_KINDS: tuple[Kind, ...] = (CLUSTER_ROLE, CLUSTER_ROLE_BINDING, ROLE, ROLE_BINDING)
# every kind stored and validated here; `/api/v1` serves the core ones, `/apis/<group>/<version>` the rest
KINDS: tuple[Kind, ...] = (NAMESPACE, NODE, POD, REPLICATION_CONTROLLER, SERVICE, ENDPOINTS, EVENT, CONFIG_MAP, SECRET,
                           SERVICE_ACCOUNT, LEASE, POD_DISRUPTION_BUDGET, *RBAC_KINDS)
CORE_KINDS: tuple[Kind, ...] = tuple(k for k in KINDS if not k.group)
_BY_KIND = {k.kind: k for k in KINDS}


def kind_named(name: str) -> Kind | None:
    """The Kind for a manifest's `kind` field (exact, like the API server), None if unknown."""
    return _BY_KIND.get(name)


def kind_for_alias(alias: str) -> Kind | None:
    """`pods`, `pod`, `po`, `Pod`, `rc`, `svc`... as kubectl accepts them."""
    a = alias.lower()
    for k in KINDS:
        if a in (k.kind.lower(), k.resource, *k.short_names) or a + "s" == k.resource:
            return k
    return None


# --------------------------------------------------------------------------- accessors
def meta(obj: Mapping[str, Any]) -> ObjectMeta:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}  # type: ignore[return-value]


def name(obj: Mapping[str, Any]) -> str:
    return meta(obj).get("name") or ""


def namespace(obj: Mapping[str, Any]) -> str:
    return meta(obj).get("namespace") or DEFAULT_NAMESPACE


def namespaced_name(obj: Mapping[str, Any]) -> str:
    """`ns/name`, the key client-go's work queues use."""
    return f"{namespace(obj)}/{name(obj)}"


def uid(obj: Mapping[str, Any]) -> str:
    return meta(obj).get("uid") or ""


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return meta(obj).get("labels") or {}


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return meta(obj).get("annotations") or {}


def resource_version(obj: Mapping[str, Any]) -> int:
    """The etcd mod revision the object was read at; 0 when it has none yet."""
    rv = meta(obj).get("resourceVersion")
    return int(rv) if isinstance(rv, str) and rv.isdigit() else 0


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def owner_references(obj: Mapping[str, Any]) -> list[OwnerReference]:
    return meta(obj).get("ownerReferences") or []


def controller_ref(obj: Mapping[str, Any]) -> OwnerReference | None:
    """The owner reference with `controller: true` (at most one is valid)."""
    for ref in owner_references(obj):
        if ref.get("controller"):
            return ref
    return None


def controller_ref_to(owner: Mapping[str, Any], *, kind: Kind) -> OwnerReference:
    """The reference a controller puts on what it owns (kube: metav1.NewControllerRef)."""
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "name": name(owner),
        "uid": uid(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


# --------------------------------------------------------------------------- time and ids
def new_uid() -> Uid:
    return Uid(str(uuid.uuid4()))


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC at second precision, Kubernetes' metav1.Time form."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(t: datetime) -> str:
    """A MicroTime as Kubernetes writes it: UTC, six fractional digits, `Z`."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (Z or an offset; fractional seconds allowed)."""
    t = datetime.fromisoformat(text)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def from_epoch(seconds: float) -> str:
    """`format_time` of a Unix time (without a datetime: this stamps every write)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
