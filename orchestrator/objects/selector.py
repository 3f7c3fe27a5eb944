"""Label selectors: the string form (`a=b,c!=d,e in (x,y),!f`) and the object forms.

Three ways a selector reaches us, all compiled to one `Selector` (a conjunction of requirements):

* a string, as `kubectl get -l` takes it — `parse("tier=db,env in (prod,qa),!canary")`;
* a set (`{"app": "web"}`), as ReplicationController and Service selectors are — `from_set`;
* a `LabelSelector` object (`matchLabels` + `matchExpressions`) — `from_label_selector`.

Semantics follow k8s.io/apimachinery/pkg/labels: `!=` and `notin` also match objects that lack
the key; `in`/`notin` need at least one value; an empty selector matches everything, while a
null LabelSelector (None) matches nothing. `Gt`/`Lt` compare integer label values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.objects import names

Operator = Literal["=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"]

_EXPR_OPS: dict[str, Operator] = {"In": "in", "NotIn": "notin", "Exists": "exists",
                                  "DoesNotExist": "!"}


class SelectorError(ValueError):
    """A selector that does not parse or breaks a rule; the message names the problem."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.op in ("=", "==", "in"):
            return has and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return not has or labels[self.key] not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if not has:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if self.op == "gt" else have < want

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        sym = {"gt": ">", "lt": "<"}.get(self.op, self.op)
        return f"{self.key}{sym}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; `everything()` when empty, `nothing()` never matches."""

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False

    @classmethod
    def everything(cls) -> Selector:
        return cls()

    @classmethod
    def nothing(cls) -> Selector:
        return cls(matches_nothing=True)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.matches_nothing:
            return False
        lab = labels or {}
        return all(r.matches(lab) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.matches_nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def requirement(key: str, op: Operator, values: Sequence[str] = ()) -> Requirement:
    """Build one requirement, checking it the way labels.NewRequirement does."""
    errs = names.qualified_name(key)
    if errs:
        raise SelectorError(f"invalid label key {key!r}: {'; '.join(errs)}")
    vals = tuple(values)
    if op in ("in", "notin"):
        if not vals:
            raise SelectorError("for 'in', 'notin' operators, values set can't be empty")
    elif op in ("=", "==", "!="):
        if len(vals) != 1:
            raise SelectorError("exact-match compatibility requires one single value")
    elif op in ("exists", "!"):
        if vals:
            raise SelectorError("values set must be empty for exists and does not exist")
    else:
        if len(vals) != 1:
            raise SelectorError("for 'Gt', 'Lt' operators, exactly one value is required")
        if not re.fullmatch(r"[+-]?[0-9]+", vals[0]):
            raise SelectorError(f"for 'Gt', 'Lt' operators, the value must be an integer: {vals[0]!r}")
    if op not in ("gt", "lt"):
        for v in vals:
            verrs = names.label_value(v)
            if verrs:
                raise SelectorError(f"invalid label value: {v!r}: {'; '.join(verrs)}")
    # a set's order does not matter; keep it sorted and unique like sets.String
    if op in ("in", "notin"):
        vals = tuple(sorted(set(vals)))
    return Requirement(key, op, vals)


def _sorted(reqs: list[Requirement]) -> Selector:
    return Selector(tuple(sorted(reqs, key=lambda r: r.key)))


def from_set(labels: Mapping[str, str] | None) -> Selector:
    """`{"app": "web", "tier": "fe"}` -> app=web,tier=fe. An empty set matches everything.
    Like Kubernetes' SelectorFromSet the keys and values are not checked: this compiles
    stored selectors (validation checks them on the way in), and must not fail a reader."""
    return _sorted([Requirement(str(k), "=", (str(v),)) for k, v in (labels or {}).items()])


def from_label_selector(sel: Mapping[str, Any] | None) -> Selector:
    """A LabelSelector object. None matches nothing; {} matches everything."""
    if sel is None:
        return Selector.nothing()
    reqs = [requirement(k, "=", [v]) for k, v in (sel.get("matchLabels") or {}).items()]
    for expr in sel.get("matchExpressions") or []:
        op_name = expr.get("operator")
        if op_name not in _EXPR_OPS:
            raise SelectorError(f"{op_name!r} is not a valid label selector operator")
        reqs.append(requirement(expr.get("key", ""), _EXPR_OPS[op_name], expr.get("values") or []))
    return _sorted(reqs)


# --------------------------------------------------------------------------- string parser
_TOKEN = re.compile(
    r"\s*(?:(?P<op>==|!=|=|>|<|\(|\)|,|!)|(?P<word>[^\s=!<>(),]+))"
)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any non-space character
            raise SelectorError(f"unable to parse requirement: {text[pos:]!r}")
        out.append(m["op"] or m["word"])
        pos = m.end()
    return out


def parse(text: str) -> Selector:
    """Parse `kubectl -l` syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`,
    `!a`, `a>1`, `a<1`, comma-separated (AND). An empty string matches everything."""
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def need(what: str) -> str:
        nonlocal i
        if i >= len(toks):
            raise SelectorError(f"unable to parse requirement: expected {what} at end of {text!r}")
        t = toks[i]
        i += 1
        return t

    while i < len(toks):
        t = need("a key")
        if t == "!":
            key = need("a key after '!'")
            reqs.append(requirement(key, "!"))
        else:
            key = t
            if key in ("=", "==", "!=", "(", ")", ",", ">", "<"):
                raise SelectorError(f"found '{key}', expected: !, identifier, or 'end of string'")
            if i >= len(toks) or toks[i] == ",":
                reqs.append(requirement(key, "exists"))
            else:
                op = need("an operator")
                if op in ("=", "==", "!="):
                    val = ""
                    if i < len(toks) and toks[i] != ",":
                        val = need("a value")
                    reqs.append(requirement(key, op, [val]))  # type: ignore[arg-type]
                elif op in (">", "<"):
                    reqs.append(requirement(key, "gt" if op == ">" else "lt", [need("a number")]))
                elif op in ("in", "notin"):
                    if need("'('") != "(":
                        raise SelectorError(f"found '{toks[i - 1]}', expected: '('")
                    vals: list[str] = []
                    while True:
                        v = need("a value or ')'")
                        if v == ")":
                            break
                        if v == ",":
                            continue
                        if v in ("(", "=", "==", "!=", "!", ">", "<"):
                            raise SelectorError(f"found '{v}', expected: ',', ')' or identifier")
                        vals.append(v)
                    reqs.append(requirement(key, op, vals))  # type: ignore[arg-type]
                else:
                    raise SelectorError(
                        f"found '{op}', expected: in, notin, =, ==, !=, gt, lt"
                    )
        if i < len(toks):
            if toks[i] != ",":
                raise SelectorError(f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
            if i >= len(toks):
                raise SelectorError("found 'end of string', expected: identifier")
    return _sorted(reqs)
