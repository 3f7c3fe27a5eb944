"""One validation layer for every writer (the CLI now, the API server later).

    validate(obj) -> list[FieldError]         defaults applied first, on a copy
    admit(obj)    -> Admitted(object, warnings)  or raises InvalidObject with every error
    admit(obj, prior=stored)                     an update of `stored`: what it left unchanged
                                                 is not checked again (below)

Order, as in kube-apiserver: drop nulls and apply defaults (`defaults`), check structure
against the real Kubernetes schema (`schema`, via kubernetes-validate: JSON types, and unknown
fields as warnings, pruned), then semantic checks (`kinds`, `pods`) with Kubernetes' field
paths and wording. Nothing here touches the store: uniqueness, allocation and immutability on
update belong to the storage and API layers.

Ratcheting: an update of a pod (`prior`, the stored state it replaces) whose `spec` or
`status`, after defaulting, is the stored one byte for byte (canonical JSON, so `1`, `1.0`
and `true` differ) skips that field's schema and semantic checks. Both checks are functions
of the field alone, so they cannot find anything new there; what they would find in a
stored value written by another tool, or under older rules, is kept as it is, as kube's
validation ratcheting keeps unchanged invalid values. A label patch or a status write (a
node's, every few seconds per pod) then checks only what it changed: the pod spec's checks
are the largest part of admission (bench/results/api.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netplane.errors import UserError
from netplane.store import codec
from orchestrator.objects.meta import KINDS, Kind, kind_named
from orchestrator.validation import (
    configdata,
    defaults,
    disruption,
    kinds,
    leases,
    pods,
    rbac,
    schema,
)
from orchestrator.validation.field import ROOT, FieldError, invalid, not_supported, required

__all__ = ["Admitted", "FieldError", "InvalidObject", "admit", "validate"]


class InvalidObject(UserError):
    """A manifest that must not be written; `errors` holds every problem found."""

    def __init__(self, kind: str, name: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.name = name
        self.errors = errors
        if len(errors) == 1:
            detail = str(errors[0])
        else:
            detail = "[" + ", ".join(str(e) for e in errors) + "]"
        k = kind_named(kind)
        shown = f"{kind}.{k.group}" if k is not None and k.group else kind  # Lease.coordination.k8s.io
        super().__init__(f'{shown or "object"} "{name}" is invalid: {detail}')


@dataclass(frozen=True)
class Admitted:
    """A defaulted, validated object ready to store, and the warnings for the user."""

    object: dict[str, Any]
    warnings: list[str]


def _kind(obj: Mapping[str, Any], out: list[FieldError]) -> Kind | None:
    api = obj.get("apiVersion")
    k = obj.get("kind")
    if not k:
        out.append(required(ROOT.child("kind")))
    if not api:
        out.append(required(ROOT.child("apiVersion")))
    if out:
        return None
    kind = kind_named(k) if isinstance(k, str) else None
    if kind is None:
        out.append(not_supported(ROOT.child("kind"), k, tuple(x.kind for x in KINDS)))
        return None
    if api != kind.api_version:
        out.append(not_supported(ROOT.child("apiVersion"), api, (kind.api_version,)))
        return None
    return kind


# the top-level fields of a kind an update may leave unchecked when unchanged (see above)
RATCHETED: dict[str, tuple[str, ...]] = {"Pod": ("spec", "status")}


def _unchanged(kind: Kind, out: Mapping[str, Any], prior: Mapping[str, Any] | None) -> frozenset[str]:
    """The ratcheted fields of `out` equal, byte for byte as stored, to `prior`'s."""
    fields = RATCHETED.get(kind.kind)
    if not fields or not isinstance(prior, Mapping) or prior.get("kind") != kind.kind:
        return frozenset()
    same = []
    for f in fields:
        a, b = out.get(f), prior.get(f)
        if a is None or b is None:
            continue
        # == first: cheap, and false for nearly every changed field; then the exact bytes
        # (== holds for 1, 1.0 and True alike). A stored value with nulls in it (kube's
        # `lastProbeTime: null`) is compared as admission reads it, without them
        if _same(a, b) or _same(a, defaults.drop_nulls(b)):
            same.append(f)
    return frozenset(same)


def _same(a: Any, b: Any) -> bool:
    if a is b:  # an owned update's tree may hold the stored one's (`admit(in_place=True)`)
        return True
    return bool(a == b) and codec.dump_bytes(a, sort_keys=True) == codec.dump_bytes(b, sort_keys=True)


def _check(obj: Mapping[str, Any], prior: Mapping[str, Any] | None = None, *, in_place: bool = False,
           ) -> tuple[dict[str, Any], list[FieldError], list[str]]:
    errors: list[FieldError] = []
    if not isinstance(obj, Mapping):
        return {}, [invalid(ROOT, obj, "must be a JSON object")], []
    kind = _kind(obj, errors)
    if kind is None:
        return dict(obj), errors, []
    out = defaults.apply(obj, in_place=True) if in_place and type(obj) is dict else defaults.apply(dict(obj))
    same = _unchanged(kind, out, prior) if prior is not None else frozenset()
    result = schema.check(out, same)
    warnings = result.warnings
    schema.prune(out, result.unknown)
    if result.errors:
        return out, result.errors, warnings
    md = out.get("metadata") or {}
    kinds.object_meta(kind, md, errors)
    if kind.kind == "Pod":
        if "spec" not in same:
            pods.pod_spec(ROOT.child("spec"), out.get("spec") or {}, errors)
    elif kind.kind == "ReplicationController":
        kinds.replication_controller(out, errors)
    elif kind.kind == "Service":
        kinds.service(out, errors)
    elif kind.kind == "Endpoints":
        kinds.endpoints(out, errors)
    elif kind.kind == "Node":
        kinds.node(out, errors)
    elif kind.kind == "Event":
        kinds.event(out, errors)
    elif kind.kind == "ConfigMap":
        configdata.config_map(out, errors)
    elif kind.kind == "Secret":
        configdata.secret(out, errors)
    elif kind.kind == "Lease":
        leases.lease(out, errors)
    elif kind.kind == "PodDisruptionBudget":
        disruption.pod_disruption_budget(out, errors)
    elif kind.kind in ("Role", "ClusterRole"):
        rbac.role(out, errors)
    elif kind.kind in ("RoleBinding", "ClusterRoleBinding"):
        rbac.binding(out, errors)
    return out, errors, warnings


def validate(obj: Mapping[str, Any]) -> list[FieldError]:
    """Every error in the manifest (after defaulting); empty when it may be written."""
    return _check(obj)[1]


def admit(obj: Mapping[str, Any], *, prior: Mapping[str, Any] | None = None, in_place: bool = False) -> Admitted:
    """The object to store (defaulted, unknown fields pruned) and warnings, or InvalidObject.
    `prior`: the stored object this one replaces (an update), for ratcheting (above).
    `in_place`: `obj` is the caller's own whole (it may share parts with `prior`, when that is
    the caller's too), and becomes the object to store, instead of a copy being made: one
    tree fewer built and freed a patch."""
    out, errors, warnings = _check(obj, prior, in_place=in_place)
    if errors:
        md = out.get("metadata") if isinstance(out, dict) else None
        name = (md.get("name") or md.get("generateName") or "") if isinstance(md, dict) else ""
        raise InvalidObject(str(obj.get("kind", "")) if isinstance(obj, Mapping) else "", name, errors)
    return Admitted(out, warnings)
