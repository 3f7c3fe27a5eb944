"""`policy/v1` PodDisruptionBudget: what kube-apiserver checks before storing one
(pkg/apis/policy/validation: ValidatePodDisruptionBudgetSpec).

* `minAvailable` and `maxUnavailable` are each a non-negative integer or a percentage of at
  most 100 %, and not both set.
* `selector` is a label selector (policy/v1: absent selects no pods, `{}` every pod of the
  namespace).
* `unhealthyPodEvictionPolicy` is `IfHealthyBudget` (the behaviour when unset) or `AlwaysAllow`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from orchestrator.objects import meta
from orchestrator.objects.selector import SelectorError, from_label_selector
from orchestrator.validation.field import ROOT, FieldError, Path, invalid, not_supported

SPEC = ROOT.child("spec")
POLICIES = ("IfHealthyBudget", "AlwaysAllow")
_PERCENT = re.compile(r"^(\d+)%$")


def int_or_percent(path: Path, value: Any, out: list[FieldError]) -> None:
    """kube's ValidatePositiveIntOrPercent and IsNotMoreThan100Percent."""
    if isinstance(value, bool):
        out.append(invalid(path, value, "must be an integer or percentage (e.g '5%')"))
    elif isinstance(value, int):
        if value < 0:
            out.append(invalid(path, value, "must be greater than or equal to 0"))
    elif isinstance(value, str):
        m = _PERCENT.match(value)
        if m is None:
            out.append(invalid(path, value, "a valid percent string must be a numeric string followed by an "
                                            "ending '%' (e.g. '1%',  or '93%', regex used for validation is "
                                            "'[0-9]+%')"))
        elif int(m.group(1)) > 100:
            out.append(invalid(path, value, "must not be greater than 100%"))


def pod_disruption_budget(obj: Mapping[str, Any], out: list[FieldError]) -> None:
    spec = obj.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        out.append(invalid(SPEC, dict(spec), "minAvailable and maxUnavailable cannot be both set"))
    for f in ("minAvailable", "maxUnavailable"):
        if spec.get(f) is not None:
            int_or_percent(SPEC.child(f), spec[f], out)
    sel = spec.get("selector")
    if isinstance(sel, Mapping):
        try:
            from_label_selector(sel)
        except SelectorError as e:
            out.append(invalid(SPEC.child("selector"), dict(sel), str(e)))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in POLICIES:
        out.append(not_supported(SPEC.child("unhealthyPodEvictionPolicy"), policy, POLICIES))


def matching_pods(pdb: Mapping[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods of `pods` a budget's selector picks (policy/v1: no selector, none)."""
    sel = (pdb.get("spec") or {}).get("selector")
    if sel is None:
        return []
    try:
        selector = from_label_selector(sel)
    except SelectorError:
        return []
    return [p for p in pods if selector.matches(meta.labels(p))]


def scaled(value: Any, total: int, *, round_up: bool) -> int:
    """An IntOrString against `total` (kube's GetScaledValueFromIntOrPercent)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _PERCENT.match(str(value))
    if m is None:
        return 0
    n = int(m.group(1)) * total
    return -(-n // 100) if round_up else n // 100
