"""`coordination.k8s.io/v1` Lease: what kube-apiserver does to one before storing it
(pkg/registry/coordination/lease/strategy.go, pkg/apis/coordination/validation).

* `spec.strategy` and `spec.preferredHolder` belong to coordinated leader election, behind the
  CoordinatedLeaderElection feature gate, off by default in Kubernetes 1.33: kube-apiserver
  drops both on a write (`dropDisabledFields`), and so do we.
* `acquireTime` and `renewTime` are MicroTimes: kube-apiserver decodes them into Go and writes
  them back as RFC 3339 with six fractional digits in UTC (`2026-12-07T10:00:00.123456Z`),
  whatever offset or precision the client sent (the official Python client sends `+00:00`).
* Validation: `leaseDurationSeconds` must be greater than 0 and `leaseTransitions` not
  negative, in kube's words.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator.objects.meta import format_micro_time
from orchestrator.validation.field import ROOT, FieldError, invalid

SPEC = ROOT.child("spec")
GATED = ("strategy", "preferredHolder")  # CoordinatedLeaderElection's fields
MICRO_TIMES = ("acquireTime", "renewTime")


def micro_time(text: str) -> str | None:
    """`text` in MicroTime's wire form, or None when it is no RFC 3339 time (left to the schema)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return format_micro_time(t.replace(tzinfo=UTC) if t.tzinfo is None else t)


def prepare(lease: dict[str, Any]) -> None:
    """In place, on the defaulted copy: drop the gated fields, put the times in wire form."""
    spec = lease.get("spec")
    if not isinstance(spec, dict):
        return
    for f in GATED:
        spec.pop(f, None)
    for f in MICRO_TIMES:
        v = spec.get(f)
        if isinstance(v, str) and (norm := micro_time(v)) is not None:
            spec[f] = norm


def lease(obj: dict[str, Any], out: list[FieldError]) -> None:
    """ValidateLeaseSpec (the object's metadata is checked by the caller)."""
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        out.append(invalid(SPEC.child("leaseDurationSeconds"), duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if isinstance(transitions, int) and transitions < 0:
        out.append(invalid(SPEC.child("leaseTransitions"), transitions, "must be greater than or equal to 0"))
