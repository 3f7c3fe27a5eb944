"""`rbac.authorization.k8s.io/v1`: what kube-apiserver does to a Role, ClusterRole,
RoleBinding or ClusterRoleBinding before storing it (pkg/apis/rbac/v1/defaults.go,
pkg/apis/rbac/validation/validation.go). The escalation check (a user may grant only what
they hold) needs the requesting user and the stored policy: `orchestrator.apiserver.rbac`.

* Names are path segments (`ValidateRBACName`): anything but `.`, `..`, and names holding `/`
  or `%`. So `system:basic-user` is a name, as in kube.
* A rule needs verbs; a resource rule needs apiGroups and resources; a rule for
  nonResourceURLs may have neither, and only a ClusterRole's rules may name URLs.
* A ClusterRole's `aggregationRule` needs at least one selector, each a valid label selector.
* A binding's `roleRef.apiGroup` defaults to the group, and a User or Group subject's
  `apiGroup` too. A RoleBinding may refer to a Role or a ClusterRole, a ClusterRoleBinding to a
  ClusterRole; a ServiceAccount subject of a ClusterRoleBinding needs its namespace. An update
  may not change `roleRef` (kube: "cannot change roleRef").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.objects import names
from orchestrator.objects.selector import SelectorError, from_label_selector
from orchestrator.validation.field import ROOT, FieldError, Path, invalid, not_supported, required

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")
ROLE_REF_KINDS = {"RoleBinding": ("Role", "ClusterRole"), "ClusterRoleBinding": ("ClusterRole",)}


def defaults(obj: dict[str, Any]) -> None:
    """In place, on the defaulted copy: roleRef's and User and Group subjects' apiGroup."""
    if obj.get("kind") not in ROLE_REF_KINDS:
        return
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    for s in obj.get("subjects") or []:
        if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
            s["apiGroup"] = GROUP


def _strings(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def policy_rule(rule: Mapping[str, Any], namespaced: bool, path: Path, out: list[FieldError]) -> None:
    """ValidatePolicyRule."""
    if not _strings(rule.get("verbs")):
        out.append(required(path.child("verbs"), "verbs must contain at least one value"))
    urls = _strings(rule.get("nonResourceURLs"))
    if urls:
        if namespaced:
            out.append(invalid(path.child("nonResourceURLs"), urls, "namespaced rules cannot apply to non-resource URLs"))
        if _strings(rule.get("apiGroups")) or _strings(rule.get("resources")) or _strings(rule.get("resourceNames")):
            out.append(invalid(path.child("nonResourceURLs"), urls,
                               "rules cannot apply to both regular resources and non-resource URLs"))
        return
    if not _strings(rule.get("apiGroups")):
        out.append(required(path.child("apiGroups"), "resource rules must supply at least one api group"))
    if not _strings(rule.get("resources")):
        out.append(required(path.child("resources"), "resource rules must supply at least one resource"))


def role(obj: Mapping[str, Any], out: list[FieldError]) -> None:
    """ValidateRole / ValidateClusterRole (the metadata is checked by the caller)."""
    namespaced = obj.get("kind") == "Role"
    for i, rule in enumerate(_strings(obj.get("rules"))):
        if isinstance(rule, Mapping):
            policy_rule(rule, namespaced, ROOT.child("rules").index(i), out)
    agg = obj.get("aggregationRule")
    if namespaced or not isinstance(agg, Mapping):
        return
    path = ROOT.child("aggregationRule").child("clusterRoleSelectors")
    selectors = _strings(agg.get("clusterRoleSelectors"))
    if not selectors:
        out.append(required(path, "at least one clusterRoleSelector required if aggregationRule is non-nil"))
    for i, sel in enumerate(selectors):
        try:
            from_label_selector(sel if isinstance(sel, Mapping) else {})
        except SelectorError as e:
            out.append(invalid(path.index(i), sel, str(e)))


def binding(obj: Mapping[str, Any], out: list[FieldError]) -> None:
    """ValidateRoleBinding / ValidateClusterRoleBinding."""
    kind = str(obj.get("kind"))
    namespaced = kind == "RoleBinding"
    ref = obj.get("roleRef")
    ref = ref if isinstance(ref, Mapping) else {}
    path = ROOT.child("roleRef")
    if ref.get("apiGroup") != GROUP:
        out.append(not_supported(path.child("apiGroup"), ref.get("apiGroup"), (GROUP,)))
    if ref.get("kind") not in ROLE_REF_KINDS[kind]:
        out.append(not_supported(path.child("kind"), ref.get("kind"), ROLE_REF_KINDS[kind]))
    name = ref.get("name")
    if not name:
        out.append(required(path.child("name")))
    elif isinstance(name, str):
        out.extend(invalid(path.child("name"), name, e) for e in names.path_segment(name))
    for i, s in enumerate(_strings(obj.get("subjects"))):
        if isinstance(s, Mapping):
            subject(s, namespaced, ROOT.child("subjects").index(i), out)


def subject(s: Mapping[str, Any], namespaced: bool, path: Path, out: list[FieldError]) -> None:
    """ValidateRoleBindingSubject."""
    name = s.get("name")
    if not name:
        out.append(required(path.child("name")))
    kind = s.get("kind")
    if kind == "ServiceAccount":
        if isinstance(name, str) and name:
            out.extend(invalid(path.child("name"), name, e) for e in names.dns1123_subdomain(name))
        if s.get("apiGroup"):
            out.append(not_supported(path.child("apiGroup"), s.get("apiGroup"), ("",)))
        if not namespaced and not s.get("namespace"):
            out.append(required(path.child("namespace")))
    elif kind in ("User", "Group"):
        if s.get("apiGroup") != GROUP:
            out.append(not_supported(path.child("apiGroup"), s.get("apiGroup"), (GROUP,)))
    else:
        out.append(not_supported(path.child("kind"), kind, SUBJECT_KINDS))


def update_errors(current: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """ValidateRoleBindingUpdate: the roleRef stays."""
    if new.get("kind") in ROLE_REF_KINDS and current.get("roleRef") != new.get("roleRef"):
        return [invalid(ROOT.child("roleRef"), new.get("roleRef"), "cannot change roleRef")]
    return []
