"""Structure checks against the real Kubernetes OpenAPI schemas, via `kubernetes-validate`.

`kubernetes-validate` (PyPI) ships Kubernetes' JSON schemas for every release it supports,
including "strict" variants that forbid unknown properties. Its own `validate()` rebuilds the
validator from a 1.4 MB definitions file on every call (13 ms) and stops at the first error.
We load the schemas once (≈ 90 ms, on first use, never at import) and compile each kind's into
one closure per schema node (`_Compiler`), which knows only the keywords these schemas use and
collects every error: ≈ 20 µs for a stored pod, against ≈ 90 µs for a plain walk of the schema
dicts and ≈ 0.5 ms with `jsonschema`'s validator over the same schemas (kept as
`check_with_jsonschema`, the reference a property test holds the compiled check to). Everything runs
offline from package data.

What the schema catches we turn into our field-path form:

* wrong JSON types (`spec.replicas: Invalid value: "x": must be of type integer`) — errors,
  and nothing else is checked then (Kubernetes also stops at a decode failure);
* unknown fields — warnings (`unknown field "spec.foo"`, kube-apiserver's wording under
  `fieldValidation=Warn`), and the field is pruned from the stored object as Kubernetes does;
* `required` — left to the semantic checks, which word it as Kubernetes does.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from netplane.errors import ConfigError
from orchestrator.objects.meta import KINDS, kind_named
from orchestrator.validation.field import ROOT, FieldError, Path, invalid

# The Kubernetes release whose schemas we check against: the kubectl the project tests with.
SCHEMA_VERSION = "1.33.0"


@dataclass(frozen=True)
class SchemaResult:
    errors: list[FieldError]
    unknown: list[tuple[Any, ...]]  # JSON paths of unknown fields, root first
    warnings: list[str]  # one 'unknown field "path"' per unknown field


class _Validators:
    """Per-kind validators, built on first use and shared by all threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._defs: Any = None
        self._by_kind: dict[str, Any] = {}
        self._compiled: dict[str, tuple[Mapping[str, Any], _Check]] = {}
        self._compiler: _Compiler | None = None

    def _dir(self) -> Any:
        return resources.files("kubernetes_validate").joinpath(
            "kubernetes-json-schema", f"v{SCHEMA_VERSION}-local-strict")

    def get(self, kind: str) -> Any:
        with self._lock:
            v = self._by_kind.get(kind)
            if v is not None:
                return v
            try:
                import jsonschema
                from referencing import Registry, Resource

                d = self._dir()
                if self._defs is None:
                    self._defs = Resource.from_contents(
                        json.loads(d.joinpath("_definitions.json").read_text()))
                schema = json.loads(d.joinpath(_schema_file(kind)).read_text())
            except (ImportError, OSError) as e:
                raise ConfigError(
                    f"Kubernetes {SCHEMA_VERSION} schemas not available (kubernetes-validate): {e}"
                ) from e
            registry = Resource.from_contents(schema) @ Registry()
            registry = self._defs @ registry
            v = jsonschema.Draft202012Validator(schema, registry=registry,
                                                format_checker=_format_checker(jsonschema))
            self._by_kind[kind] = v
            return v

    def compiled(self, kind: str) -> tuple[Mapping[str, Any], _Check]:
        """A kind's root schema and its compiled check (`_Compiler`), made on first use."""
        got = self._compiled.get(kind)
        if got is not None:
            return got
        schema = self.get(kind).schema
        with self._lock:
            if self._compiler is None:
                self._compiler = _Compiler(self.definitions())
            got = self._compiled[kind] = (schema, self._compiler.compile(schema))
            return got

    def definitions(self) -> Mapping[str, Any]:
        """The shared `$defs` (loaded by the first `get`)."""
        return self._defs.contents.get("$defs", {}) if self._defs is not None else {}


_VALIDATORS = _Validators()


def _schema_file(kind: str) -> str:
    """kubernetes-validate's file of a kind: `pod-v1.json`, `lease-coordination-v1.json` (the
    group's first label)."""
    k = kind_named(kind)
    group = f"-{k.group.split('.')[0]}" if k is not None and k.group else ""
    return f"{kind.lower()}{group}-{k.version if k is not None else 'v1'}.json"


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
FORMAT_DETAIL = {
    "int32": "must fit in a 32-bit integer",
    "int64": "must fit in a 64-bit integer",
    "date-time": "must be an RFC 3339 time (e.g. 2006-01-02T15:04:05Z)",
}


def _is_time(v: object) -> bool:
    if not isinstance(v, str) or not _RFC3339.match(v):
        return False
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


def _format_checker(jsonschema: Any) -> Any:
    """The formats Kubernetes' decoder enforces: int32/int64 ranges and RFC 3339 times."""
    fc = jsonschema.FormatChecker(formats=())
    fc.checks("int32")(lambda v: not isinstance(v, int) or -(2**31) <= v < 2**31)
    fc.checks("int64")(lambda v: not isinstance(v, int) or -(2**63) <= v < 2**63)
    fc.checks("date-time")(lambda v: not isinstance(v, str) or _is_time(v))
    return fc


def check_with_jsonschema(obj: Mapping[str, Any]) -> SchemaResult:
    """The reference: the same check done by `jsonschema` (about 10x slower than `check`);
    tests hold `check` to the same answers."""
    kind = obj.get("kind")
    if kind not in {k.kind for k in KINDS}:
        raise ValueError(f"not a kind we serve: {kind!r}")
    validator = _VALIDATORS.get(str(kind))
    errors: list[FieldError] = []
    unknown: list[tuple[Any, ...]] = []
    fmt = _Formatter(validator.schema, _VALIDATORS.definitions())
    for e in validator.iter_errors(obj):
        where = tuple(e.absolute_path)
        if e.validator == "additionalProperties":
            props = e.schema.get("properties") or {}
            if isinstance(e.instance, dict):
                unknown.extend(where + (k,) for k in e.instance if k not in props)
        elif e.validator in ("type", "oneOf"):
            errors.append(invalid(fmt.path(where), e.instance, _type_detail(e)))
        elif e.validator == "enum":
            errors.append(invalid(fmt.path(where), e.instance,
                                  "must be one of " + ", ".join(json.dumps(x) for x in e.validator_value)))
        elif e.validator == "required":
            continue
        elif e.validator == "format" and e.validator_value in FORMAT_DETAIL:
            errors.append(invalid(fmt.path(where), e.instance, FORMAT_DETAIL[e.validator_value]))
        else:  # format and the like: report rather than drop silently
            errors.append(invalid(fmt.path(where), e.instance, e.message))
    unknown.sort(key=lambda p: [str(x) for x in p])
    errors.sort(key=lambda fe: fe.path)
    warnings = [f'unknown field "{fmt.path(p)}"' for p in unknown]
    return SchemaResult(errors, unknown, warnings)


def warm() -> None:
    """Load and compile every served kind's schema now (a server's start): the first check
    otherwise pays for it, ~60 ms, and every request waiting behind it on the loop with it."""
    for k in KINDS:
        _VALIDATORS.compiled(k.kind)


def check(obj: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> SchemaResult:
    """Check a manifest whose `apiVersion`/`kind` we serve (the caller checked them), all
    but its top-level fields named in `skip` (those the caller knows were checked before)."""
    kind = obj.get("kind")
    if kind not in {k.kind for k in KINDS}:
        raise ValueError(f"not a kind we serve: {kind!r}")
    root, walk = _VALIDATORS.compiled(str(kind))
    found = _Found()
    walk({k: v for k, v in obj.items() if k not in skip} if skip else obj, (), found)
    if found.clean():
        return SchemaResult([], [], [])
    fmt = _Formatter(root, _VALIDATORS.definitions())
    errors = [invalid(fmt.path(_flat(at)), value, detail) for at, value, detail in found.errors]
    errors.sort(key=lambda fe: fe.path)
    unknown = sorted((_flat(at) for at in found.unknown), key=lambda p: [str(x) for x in p])
    return SchemaResult(errors, unknown, [f'unknown field "{fmt.path(p)}"' for p in unknown])


_JSON_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
_FORMATS: dict[str, Any] = {
    "int32": lambda v: not isinstance(v, int) or -(2**31) <= v < 2**31,
    "int64": lambda v: not isinstance(v, int) or -(2**63) <= v < 2**63,
    "date-time": lambda v: not isinstance(v, str) or _is_time(v),
}


class _Found:
    """What a walk found: (path, value, detail) errors and unknown fields' paths. Paths are
    linked pairs, (parent, key) with `()` at the root, flattened only when reported."""

    __slots__ = ("errors", "unknown")

    def __init__(self) -> None:
        self.errors: list[tuple[Any, Any, str]] = []
        self.unknown: list[Any] = []

    def clean(self) -> bool:
        return not self.errors and not self.unknown


def _flat(at: Any) -> tuple[Any, ...]:
    out: list[Any] = []
    while at:
        at, k = at
        out.append(k)
    out.reverse()
    return tuple(out)


_Check = Callable[[Any, Any, _Found], None]  # (value, linked path, found)
_NOTHING: Mapping[str, Any] = {}


def _noop(v: Any, at: Any, found: _Found) -> None:
    return None


class _Compiler:
    """Kubernetes' schemas turned into one closure per schema node, made once per kind: the
    keywords these schemas use (type, $ref, properties, additionalProperties, items, enum,
    format, oneOf; required is the semantic checks' job), reporting what
    `check_with_jsonschema` reports. Schema nodes are keyed by identity: they all live as
    long as the loaded schemas do."""

    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs
        self.done: dict[int, _Check] = {}

    def compile(self, s: Mapping[str, Any]) -> _Check:
        got = self.done.get(id(s))
        if got is not None:
            return got
        slot: list[_Check] = []

        def forward(v: Any, at: Any, found: _Found) -> None:  # a schema that refers to itself
            slot[0](v, at, found)

        self.done[id(s)] = forward
        f = self._build(s)
        slot.append(f)
        self.done[id(s)] = f
        return f

    def _build(self, s: Mapping[str, Any]) -> _Check:
        parts: list[_Check] = []
        ref = s.get("$ref")
        if isinstance(ref, str) and "#/$defs/" in ref:
            parts.append(self.compile(self.defs.get(ref.split("#/$defs/", 1)[1], _NOTHING)))
        one_of = s.get("oneOf")
        if one_of is not None:
            parts.append(self._one_of(one_of))
        t = s.get("type")
        if t is not None:
            parts.append(_type_check([t] if isinstance(t, str) else list(t),
                                     "must be of type " + " or ".join(_types(s))))
        enum = s.get("enum")
        if enum is not None:
            parts.append(_enum_check(enum))
        f = s.get("format")
        if f in _FORMATS:
            parts.append(_format_check(_FORMATS[f], FORMAT_DETAIL[f]))
        props = s.get("properties")
        extra = s.get("additionalProperties")
        if props is not None or isinstance(extra, Mapping) or extra is False:
            parts.append(self._object(props, extra))
        items = s.get("items")
        if isinstance(items, Mapping):
            parts.append(self._array(items))
        if not parts:
            return _noop
        if len(parts) == 1:
            return parts[0]
        if len(parts) == 2:
            a, b = parts

            def both(v: Any, at: Any, found: _Found) -> None:
                a(v, at, found)
                b(v, at, found)
            return both
        run = tuple(parts)

        def each(v: Any, at: Any, found: _Found) -> None:
            for p in run:
                p(v, at, found)
        return each

    def _one_of(self, branches: list[Mapping[str, Any]]) -> _Check:
        compiled = [self.compile(b) for b in branches]
        names: list[str] = []
        for b in branches:
            names.extend(n for n in _types(b) if n not in names)
        detail = "must be of type " + " or ".join(names)

        def one_of(v: Any, at: Any, found: _Found) -> None:
            matched = 0
            for b in compiled:
                sub = _Found()
                b(v, (), sub)
                matched += sub.clean()
            if matched != 1:
                found.errors.append((at, v, detail))
        return one_of

    def _object(self, props: Mapping[str, Any] | None, extra: Any) -> _Check:
        fields = {k: self.compile(x) for k, x in (props or {}).items()}
        rest = self.compile(extra) if isinstance(extra, Mapping) else None
        forbid = extra is False

        def obj(v: Any, at: Any, found: _Found) -> None:
            if not isinstance(v, dict):
                return
            for k, x in v.items():
                f = fields.get(k)
                if f is not None:
                    f(x, (at, k), found)
                elif rest is not None:
                    rest(x, (at, k), found)
                elif forbid:
                    found.unknown.append((at, k))
        return obj

    def _array(self, items: Mapping[str, Any]) -> _Check:
        each = self.compile(items)

        def arr(v: Any, at: Any, found: _Found) -> None:
            if isinstance(v, list):
                for i, x in enumerate(v):
                    each(x, (at, i), found)
        return arr


_PY_TYPES: dict[str, type] = {"string": str, "boolean": bool, "object": dict, "array": list,
                             "null": type(None)}


def _type_check(allowed: list[str], detail: str) -> _Check:
    """JSON types: one isinstance for those Python's types say alone (most of the schemas'
    are `["string", "null"]` and the like), kube's decoder rules for integer and number."""
    simple = tuple(_PY_TYPES[a] for a in allowed if a in _PY_TYPES)
    preds = tuple(_JSON_TYPES[a] for a in allowed if a not in _PY_TYPES)
    if not preds:
        def one_type(v: Any, at: Any, found: _Found) -> None:
            if not isinstance(v, simple):
                found.errors.append((at, v, detail))
        return one_type

    def types(v: Any, at: Any, found: _Found) -> None:
        if isinstance(v, simple):
            return
        for p in preds:
            if p(v):
                return
        found.errors.append((at, v, detail))
    return types


def _enum_check(enum: list[Any]) -> _Check:
    detail = "must be one of " + ", ".join(json.dumps(x) for x in enum)

    def in_enum(v: Any, at: Any, found: _Found) -> None:
        if v not in enum:
            found.errors.append((at, v, detail))
    return in_enum


def _format_check(ok: Callable[[Any], bool], detail: str) -> _Check:
    def formatted(v: Any, at: Any, found: _Found) -> None:
        if not ok(v):
            found.errors.append((at, v, detail))
    return formatted


class _Formatter:
    """Kubernetes' path form for a JSON path: struct fields as `.name`, list items as `[i]`,
    map entries as `[key]` (`resources.requests[cpu]`, `metadata.labels[app]`). Telling a map
    from a struct needs the schema, so the path is walked through it, following `$ref`s."""

    def __init__(self, root: Mapping[str, Any], defs: Mapping[str, Any]) -> None:
        self.root = root
        self.defs = defs

    def _resolve(self, s: Any) -> Mapping[str, Any]:
        for _ in range(32):
            if not isinstance(s, Mapping):
                return {}
            ref = s.get("$ref")
            if isinstance(ref, str) and "#/$defs/" in ref:
                s = self.defs.get(ref.split("#/$defs/", 1)[1], {})
                continue
            return s
        return {}

    def path(self, parts: tuple[Any, ...]) -> Path:
        out = ROOT
        s: Mapping[str, Any] = self._resolve(self.root)
        for p in parts:
            if isinstance(p, int):
                out = out.index(p)
                s = self._resolve(s.get("items", {}))
            elif p in (s.get("properties") or {}):
                out = out.child(p)
                s = self._resolve(s["properties"][p])
            elif isinstance(s.get("additionalProperties"), Mapping):
                out = out.key(p)
                s = self._resolve(s["additionalProperties"])
            else:
                out = out.child(p)
                s = {}
        return out


def _types(schema: Mapping[str, Any]) -> list[str]:
    t = schema.get("type")
    names = [t] if isinstance(t, str) else list(t or [])
    return [n for n in names if n != "null"]


def _type_detail(e: Any) -> str:
    if e.validator == "oneOf":
        names: list[str] = []
        for sub in e.validator_value:
            names.extend(n for n in _types(sub) if n not in names)
        return "must be of type " + " or ".join(names)
    return "must be of type " + " or ".join(_types({"type": e.validator_value}))


def prune(obj: Any, unknown: list[tuple[Any, ...]]) -> None:
    """Remove the unknown fields (paths from `check`) from `obj` in place."""
    for path in sorted(unknown, key=len, reverse=True):
        node = obj
        try:
            for p in path[:-1]:
                node = node[p]
            del node[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
