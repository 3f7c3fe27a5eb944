"""Field selectors (`?fieldSelector=spec.nodeName=n1,status.phase!=Running`), kube's subset.

A field selector is a conjunction of `field=value`, `field==value` and `field!=value` terms
(k8s.io/apimachinery/pkg/fields; `\\,`, `\\=` and `\\\\` escape those characters in a value).
Each kind supports only the fields kube-apiserver indexes for it (its `GetAttrs`/field label
conversion funcs); anything else is a 400, with kube's words: `field label not supported: x`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.objects.meta import Kind

Obj = Mapping[str, Any]


class FieldSelectorError(ValueError):
    pass


def _get(*path: str) -> Callable[[Obj], str]:
    def read(obj: Obj) -> str:
        v: Any = obj
        for p in path:
            v = v.get(p) if isinstance(v, Mapping) else None
            if v is None:
                return ""
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    return read


_COMMON = {
    "metadata.name": _get("metadata", "name"),
    "metadata.namespace": _get("metadata", "namespace"),
}
FIELDS: dict[str, dict[str, Callable[[Obj], str]]] = {
    "Pod": {
        "spec.nodeName": _get("spec", "nodeName"),
        "spec.restartPolicy": _get("spec", "restartPolicy"),
        "spec.schedulerName": _get("spec", "schedulerName"),
        "spec.serviceAccountName": _get("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: "true" if (o.get("spec") or {}).get("hostNetwork") else "false",
        "status.phase": _get("status", "phase"),
        "status.podIP": _get("status", "podIP"),
        "status.nominatedNodeName": _get("status", "nominatedNodeName"),
    },
    "Node": {"spec.unschedulable": lambda o: "true" if (o.get("spec") or {}).get("unschedulable") else "false"},
    "Namespace": {"status.phase": _get("status", "phase")},
    "ReplicationController": {"status.replicas": _get("status", "replicas")},
    "Event": {
        **{f"involvedObject.{f}": _get("involvedObject", f) for f in
           ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": _get("reason"),
        "reportingComponent": _get("reportingComponent"),
        "source": _get("source", "component"),
        "type": _get("type"),
    },
    "Service": {"spec.clusterIP": _get("spec", "clusterIP"), "spec.type": _get("spec", "type")},
    "Endpoints": {},
    "ConfigMap": {},
    "Secret": {"type": _get("type")},
    "Lease": {},
    "PodDisruptionBudget": {},
    **{k: {} for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")},
}


@dataclass(frozen=True)
class Term:
    field: str
    value: str
    equal: bool  # = / == ; False for !=


@dataclass(frozen=True)
class FieldSelector:
    kind: str
    terms: tuple[Term, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, obj: Obj) -> bool:
        fields = FIELDS.get(self.kind, {})
        for t in self.terms:
            read = _COMMON.get(t.field) or fields[t.field]
            if (read(obj) == t.value) != t.equal:
                return False
        return True

    def exact(self, field: str) -> str | None:
        """The value `field` must equal, when a term says so (a name lookup needs no scan)."""
        for t in self.terms:
            if t.field == field and t.equal:
                return t.value
        return None


def _split(text: str, sep: str) -> list[str]:
    out, cur, esc = [], [], False
    for ch in text:
        if esc:
            cur.append("\\" + ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if esc:
        cur.append("\\")
    out.append("".join(cur))
    return out


def _unescape(text: str) -> str:
    out, esc = [], False
    for ch in text:
        if esc:
            if ch not in "\\,=":
                raise FieldSelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        else:
            out.append(ch)
    return "".join(out)


def parse(kind: Kind, text: str | None) -> FieldSelector:
    if not text:
        return FieldSelector(kind.kind)
    terms = []
    for part in _split(text, ","):
        if not part.strip():
            continue
        for op, equal in (("!=", False), ("==", True), ("=", True)):
            idx = _find(part, op)
            if idx >= 0:
                field, value = part[:idx].strip(), _unescape(part[idx + len(op):])
                break
        else:
            raise FieldSelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        if field not in _COMMON and field not in FIELDS.get(kind.kind, {}):
            raise FieldSelectorError(f'field label not supported: {field}')
        terms.append(Term(field, value, equal))
    return FieldSelector(kind.kind, tuple(terms))


def _find(part: str, op: str) -> int:
    """Index of the first unescaped `op` in `part`, -1 if none."""
    i = 0
    while i < len(part):
        if part[i] == "\\":
            i += 2
            continue
        if part.startswith(op, i):
            return i
        i += 1
    return -1
