"""Server-side apply: field ownership in `metadata.managedFields`, as structured-merge-diff
(kube-apiserver's field manager) keeps it, pure.

An object's *field set* is the set of its members, each a path of FieldsV1 elements:
`f:<name>` (a field of a struct or a key of a map), `k:<json>` (an item of a list that is a
map by its keys: containers by name, container ports by containerPort and protocol), `v:<json>`
(an item of a set of scalars). Members are the leaves (scalars, atomic lists and maps, empty
structs), the items of keyed lists and sets, and the maps themselves (`labels` as a whole,
`.` in FieldsV1). What is a struct, a map, a keyed list or a set, and by which keys, is read
from Kubernetes' own schemas of the kinds (`discovery._component_schemas`: the
`x-kubernetes-list-type`, `-list-map-keys` and `-map-type` markers), as the field manager reads
its OpenAPI models. Untyped parts (a field the schema does not know) are atomic leaves.
`apiVersion`, `kind`, `status` and the server's own metadata are never members (`_IGNORED`).

Each `managedFields` entry owns a field set: one per (manager, operation), operation `Apply`
(a server-side apply) or `Update` (any other write). `apply` merges an applied configuration
into the live object:

* the configuration's fields are merged in (structs and maps key by key, keyed lists item by
  item, sets as a union; everything else replaced);
* a field the configuration sets that another manager owns, with a different value, is a
  **conflict** (409, listing each field and its manager) unless `force`, which takes it over;
* a field this manager applied before and no longer applies is **removed**, unless another
  manager owns it (or something under it);
* the manager's Apply entry becomes the configuration's field set.

`update` is the bookkeeping of every other write to an object that has managed fields: the
writer (`fieldManager`, else the User-Agent's product) takes over every field it changed or
added, and removed fields leave every entry. An object with no managedFields at its first apply
has its fields owned by `before-first-apply` (Update), as Kubernetes does for objects from
before server-side apply.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from orchestrator.objects.meta import kind_named

Obj = dict[str, Any]
Path = tuple[str, ...]
FieldSet = set[Path]
Entry = tuple[str, str]  # (manager, operation)

APPLY, UPDATE = "Apply", "Update"
BEFORE_FIRST_APPLY = "before-first-apply"
_IGNORED_TOP = frozenset({"apiVersion", "kind", "status"})
_IGNORED_META = frozenset({"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                           "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"})
_PREFIX = "#/components/schemas/"


class ApplyConflict(Exception):
    """Fields the configuration sets that other managers own with other values."""

    def __init__(self, conflicts: list[tuple[str, Path]], api_version: str = "v1") -> None:
        self.conflicts = conflicts  # (manager, path), in path order
        n = len(conflicts)
        super().__init__(f"Apply failed with {n} conflict{'s' if n != 1 else ''}: " + "\n".join(
            f'conflict with "{m}" using {api_version}: {path_text(p)}' for m, p in conflicts))


# --------------------------------------------------------------------------- schemas
class _Schemas:
    def __init__(self) -> None:
        self._defs: Obj | None = None

    @property
    def defs(self) -> Obj:
        if self._defs is None:
            from orchestrator.apiserver.discovery import _component_schemas

            self._defs = _component_schemas()
        return self._defs

    def resolve(self, s: Any) -> Obj | None:
        """The schema a node stands for (its `$ref`, or its single `allOf` one), or None."""
        for _ in range(8):
            if not isinstance(s, dict):
                return None
            ref = s.get("$ref")
            if ref is None and isinstance(s.get("allOf"), list) and len(s["allOf"]) == 1 and "properties" not in s:
                ref = s["allOf"][0].get("$ref") if isinstance(s["allOf"][0], dict) else None
            if not isinstance(ref, str) or not ref.startswith(_PREFIX):
                return s
            s = self.defs.get(ref[len(_PREFIX):])
        return None

    def of_kind(self, kind: str) -> Obj | None:
        k = kind_named(kind)
        return self.resolve({"$ref": _PREFIX + (k.definition if k is not None else f"io.k8s.api.core.v1.{kind}")})


SCHEMAS = _Schemas()


def _shape(s: Obj | None) -> str:
    """struct, map, listmap, set or leaf."""
    if s is None:
        return "leaf"
    if "properties" in s:
        return "struct"
    if s.get("type") == "object" and isinstance(s.get("additionalProperties"), dict):
        return "leaf" if s.get("x-kubernetes-map-type") == "atomic" else "map"
    if s.get("type") == "array":
        lt = s.get("x-kubernetes-list-type")
        if lt == "map" and s.get("x-kubernetes-list-map-keys"):
            return "listmap"
        if lt == "set":
            return "set"
    return "leaf"


def _child(s: Obj | None, shape: str, name: str) -> Obj | None:
    if s is None:
        return None
    if shape == "struct":
        return SCHEMAS.resolve((s.get("properties") or {}).get(name))
    if shape == "map":
        return SCHEMAS.resolve(s.get("additionalProperties"))
    return None


def _item(s: Obj | None) -> Obj | None:
    return SCHEMAS.resolve(s.get("items")) if s is not None else None


def _key(item: Any, keys: Iterable[str], s: Obj | None = None) -> str | None:
    """An item's `k:` element; a key field it leaves out counts with the schema's default (a
    container port without its protocol is the TCP one)."""
    if not isinstance(item, dict):
        return None
    props = (s or {}).get("properties") or {}
    values = {}
    for k in sorted(keys):
        if k in item:
            values[k] = item[k]
        elif isinstance(props.get(k), dict) and "default" in props[k]:
            values[k] = props[k]["default"]
    return "k:" + json.dumps(values, separators=(",", ":"), sort_keys=True)


def _value(item: Any) -> str:
    return "v:" + json.dumps(item, separators=(",", ":"), sort_keys=True)


# --------------------------------------------------------------------------- field sets
def field_set(obj: Mapping[str, Any], kind: str) -> FieldSet:
    out: FieldSet = set()
    schema = SCHEMAS.of_kind(kind)
    for name, value in obj.items():
        if name in _IGNORED_TOP:
            continue
        sub = _child(schema, _shape(schema), name)
        if name == "metadata" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _IGNORED_META}
            if not value:
                continue
        _members(value, sub, ("f:" + name,), out)
    return out


def _members(value: Any, s: Obj | None, path: Path, out: FieldSet) -> None:
    shape = _shape(s)
    if shape in ("struct", "map") and isinstance(value, dict):
        before = len(out)
        for k, v in value.items():
            _members(v, _child(s, shape, k), (*path, "f:" + k), out)
        if shape == "map" or len(out) == before:
            out.add(path)  # a map as a whole (FieldsV1's "."), or an empty struct
    elif shape == "listmap" and isinstance(value, list):
        assert s is not None
        keys, item_s = s["x-kubernetes-list-map-keys"], _item(s)
        for item in value:
            k = _key(item, keys, item_s)
            if k is None:
                out.add(path)
                return
            out.add((*path, k))
            _members(item, item_s, (*path, k), out)
        if not value:
            out.add(path)
    elif shape == "set" and isinstance(value, list):
        for item in value:
            out.add((*path, _value(item)))
        if not value:
            out.add(path)
    else:
        out.add(path)


def to_fields_v1(fs: Iterable[Path]) -> Obj:
    root: Obj = {}
    paths = set(fs)
    for p in sorted(paths):
        node = root
        for el in p:
            node = node.setdefault(el, {})
    for p in paths:  # a member that also has members under it carries "."
        node = root
        for el in p:
            node = node[el]
        if any(k != "." for k in node):
            node["."] = {}
    return root


def from_fields_v1(tree: Any, prefix: Path = ()) -> FieldSet:
    out: FieldSet = set()
    if not isinstance(tree, dict):
        return out
    for k, v in tree.items():
        if k == ".":
            out.add(prefix)
        elif isinstance(v, dict) and v:
            out |= from_fields_v1(v, (*prefix, k))
        else:
            out.add((*prefix, k))
    return out


def managers(obj: Mapping[str, Any]) -> dict[Entry, FieldSet]:
    """The field sets of `obj`'s managedFields, by (manager, operation); malformed entries and
    subresource entries (not ours to move) are skipped."""
    out: dict[Entry, FieldSet] = {}
    for e in (obj.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(e, dict) or e.get("subresource") or not isinstance(e.get("manager"), str) \
                or e.get("operation") not in (APPLY, UPDATE):
            continue
        out.setdefault((e["manager"], e["operation"]), set()).update(from_fields_v1(e.get("fieldsV1")))
    return out


def _api_version(kind: str) -> str:
    k = kind_named(kind)
    return k.api_version if k is not None else "v1"


def entries(sets: Mapping[Entry, FieldSet], times: Mapping[Entry, str], kind: str) -> list[Obj]:
    api_version = _api_version(kind)
    out = []
    for (m, op), fs in sets.items():
        if fs:
            out.append({"manager": m, "operation": op, "apiVersion": api_version, "time": times[(m, op)],
                        "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(fs)})
    return out


def _times(obj: Mapping[str, Any]) -> dict[Entry, str]:
    return {(e["manager"], e["operation"]): str(e.get("time") or "")
            for e in (obj.get("metadata") or {}).get("managedFields") or []
            if isinstance(e, dict) and isinstance(e.get("manager"), str) and not e.get("subresource")}


def now_text(now: float) -> str:
    return datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- values at paths
_MISSING = object()


def value_at(obj: Any, path: Path, kind: str) -> Any:
    node, s = obj, SCHEMAS.of_kind(kind)
    for el in path:
        shape = _shape(s)
        if el.startswith("f:"):
            if not isinstance(node, dict) or el[2:] not in node:
                return _MISSING
            node, s = node[el[2:]], _child(s, shape, el[2:])
        elif el.startswith("k:") and isinstance(node, list) and s is not None:
            keys, item_s = s.get("x-kubernetes-list-map-keys") or [], _item(s)
            node = next((i for i in node if _key(i, keys, item_s) == el), _MISSING)
            s = item_s
            if node is _MISSING:
                return node
        elif el.startswith("v:") and isinstance(node, list):
            return next((i for i in node if _value(i) == el), _MISSING)
        else:
            return _MISSING
    return node


def _remove(obj: Any, path: Path, kind: str) -> None:
    parent = value_at(obj, path[:-1], kind) if len(path) > 1 else obj
    el = path[-1]
    if el.startswith("f:") and isinstance(parent, dict):
        parent.pop(el[2:], None)
    elif isinstance(parent, list):
        target = value_at(obj, path, kind)
        if target is not _MISSING:
            for i, item in enumerate(parent):
                if item is target:
                    del parent[i]
                    break


# --------------------------------------------------------------------------- merge
def merge(live: Any, applied: Any, s: Obj | None) -> Any:
    shape = _shape(s)
    if shape in ("struct", "map") and isinstance(applied, dict):
        out = copy.deepcopy(live) if isinstance(live, dict) else {}
        for k, v in applied.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(out.get(k), v, _child(s, shape, k))
        return out
    if shape == "listmap" and isinstance(applied, list):
        assert s is not None
        keys, item_s = s["x-kubernetes-list-map-keys"], _item(s)
        live_items = live if isinstance(live, list) else []
        by_key = {_key(i, keys, item_s): i for i in live_items}
        out_list, seen = [], set()
        for item in applied:
            k = _key(item, keys, item_s)
            seen.add(k)
            out_list.append(merge(by_key.get(k), item, item_s) if k in by_key else copy.deepcopy(item))
        out_list += [copy.deepcopy(i) for i in live_items if _key(i, keys, item_s) not in seen]
        return out_list
    if shape == "set" and isinstance(applied, list):
        live_items = live if isinstance(live, list) else []
        return copy.deepcopy(applied) + [copy.deepcopy(i) for i in live_items if i not in applied]
    return copy.deepcopy(applied)


def _leaves(fs: FieldSet) -> FieldSet:
    """The members with no member under them (the ones with values to compare)."""
    prefixes = {p[:i] for p in fs for i in range(len(p))}
    return fs - prefixes


def _strip(obj: Mapping[str, Any]) -> Obj:
    return {k: v for k, v in obj.items() if k != "status"}


def apply(live: Mapping[str, Any] | None, applied: Mapping[str, Any], kind: str, manager: str, *,
          force: bool, now: float) -> Obj:
    """The object after `manager` applies `applied` to `live` (None: it does not exist yet),
    with its managedFields; ApplyConflict when other managers own what it changes."""
    new_set = field_set(applied, kind)
    if live is None:
        out = copy.deepcopy(dict(applied))
        out.setdefault("metadata", {})["managedFields"] = entries({(manager, APPLY): new_set},
                                                                  {(manager, APPLY): now_text(now)}, kind)
        return out
    sets = managers(live)
    times = _times(live)
    if not sets:
        sets = {(BEFORE_FIRST_APPLY, UPDATE): field_set(live, kind)}
        times = {(BEFORE_FIRST_APPLY, UPDATE): str((live.get("metadata") or {}).get("creationTimestamp") or now_text(now))}
    me = (manager, APPLY)
    leaves = _leaves(new_set)
    conflicts: list[tuple[str, Path]] = []
    for entry, fs in sets.items():
        if entry == me:  # (its own Update entry conflicts, as kube's "kubectl" scale with its apply)
            continue
        for p in sorted(leaves & fs):
            if value_at(live, p, kind) != value_at(applied, p, kind):
                conflicts.append((entry[0], p))
    if conflicts and not force:
        raise ApplyConflict(sorted(conflicts, key=lambda c: c[1]), _api_version(kind))
    for m, p in conflicts:  # forced: the fields change hands
        for entry, fs in sets.items():
            if entry != me:
                fs.discard(p)
    merged = merge(_strip(live), _strip(applied), SCHEMAS.of_kind(kind))
    if "status" in live:
        merged["status"] = copy.deepcopy(live["status"])
    others: FieldSet = set().union(*(fs for e, fs in sets.items() if e != me))
    dropped = sorted(sets.get(me, set()) - new_set, key=len)
    removed: list[Path] = []
    for p in dropped:
        if any(q[:len(p)] == p for q in others) or any(p[:len(r)] == r for r in removed):
            continue  # another manager still owns it (or something under it); or its parent went
        _remove(merged, p, kind)
        removed.append(p)
    sets[me] = new_set
    times[me] = now_text(now)
    merged.setdefault("metadata", {})["managedFields"] = entries(sets, times, kind)
    return merged


def update(old: Mapping[str, Any], new: Obj, kind: str, manager: str, *, now: float) -> None:
    """`new` (written by `manager` over `old`) gets its managedFields: the writer takes over what
    it changed or added, and what it removed leaves every entry; a write that leaves them out
    keeps the old ones. A no-op when `old` has none, or when the writer set other ones itself
    (they are then taken as given; `[{}]` removes them, as in Kubernetes)."""
    old_md, new_md = old.get("metadata") or {}, new.setdefault("metadata", {})
    given = new_md.get("managedFields")
    if given == [{}]:  # kube's way to reset them
        new_md.pop("managedFields")
        return
    if not old_md.get("managedFields"):
        return
    if given and given != old_md["managedFields"]:
        return  # set by the writer: taken as given
    before, after = field_set(old, kind), field_set(new, kind)
    leaves = _leaves(after & before)
    changed = (after - before) | {p for p in leaves if value_at(old, p, kind) != value_at(new, p, kind)}
    gone = before - after
    sets = managers(old)
    times = _times(old)
    if not changed and not gone:
        new_md["managedFields"] = copy.deepcopy(old_md["managedFields"])
        return
    for fs in sets.values():
        fs -= gone
        fs -= changed
    me = (manager, UPDATE)
    sets.setdefault(me, set()).update(changed)
    times[me] = now_text(now)
    kept = [e for e in old_md["managedFields"] if isinstance(e, dict) and e.get("subresource")]
    new_md["managedFields"] = entries(sets, times, kind) + kept


def path_text(p: Path) -> str:
    """A member as structured-merge-diff prints it: `.spec.containers[name="c"].image`."""
    out = ""
    for el in p:
        if el.startswith("f:"):
            out += "." + el[2:]
        elif el.startswith("k:"):
            keys = json.loads(el[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        elif el.startswith("v:"):
            out += f"[={el[2:]}]"
    return out
