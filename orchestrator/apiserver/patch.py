"""PATCH bodies, pure: JSON merge patch, JSON patch and strategic merge patch.

kubectl and the client libraries change objects with PATCH, in one of three media types:

* `application/merge-patch+json` (RFC 7386): an object whose members replace the target's,
  recursively; `null` removes a member; arrays are replaced whole. `kubectl label`,
  `annotate` and `scale` send these.
* `application/json-patch+json` (RFC 6902): a list of add/remove/replace/move/copy/test
  operations at JSON pointers (RFC 6901: `~1` is `/`, `~0` is `~`, `-` is the end of an
  array). Applied in order, all or nothing; a failing `test` fails the whole patch.
* `application/strategic-merge-patch+json`, Kubernetes' own: a merge patch that merges the
  lists Kubernetes tags with a `patchMergeKey` (containers and env by name, container ports by
  containerPort, service ports by port, conditions by type, ...) item by item instead of
  replacing them, and carries directives. `kubectl apply` (client-side), `edit` and `cordon`
  send these. The rules follow k8s.io/apimachinery's strategicpatch as the API server runs it
  (`MergeParallelList` and `IgnoreUnmatchedNulls` on):

  - `null` deletes a field; a null inside a new value is dropped;
  - a merged list's items are matched by the merge key and merged as objects; new items are
    appended; the result is ordered by the patch, with the server's other items kept where
    they were relative to them; a merged list of scalars is a set (union);
  - `{"$patch": "delete", <key>: v}` in a merged list deletes the item(s) with that key;
    `{"$patch": "replace"}` in a list replaces the list with the patch's other items;
    `"$patch": "replace"` in an object replaces the object, `"$patch": "delete"` empties it;
    `"$patch": "merge"` is the default and is accepted (Kubernetes refuses it);
  - `$setElementOrder/<list>: [...]` gives the order of the merged list (kubectl apply sends
    it for every list it touches); `$deleteFromPrimitiveList/<list>: [...]` removes scalars
    from a merged scalar list; `$retainKeys: [...]` clears every other field of that object
    (kubectl sends it for volumes, whose source is a one-of);
  - every other list is replaced, as in a merge patch.

  Which list is merged by which key is `orchestrator.apply.PATCH_TYPES`, the table of
  Kubernetes' tags that client-side `netplane apply` uses too. A kind or a field the table
  does not know is merged as plain JSON (objects key by key, lists replaced), which is what
  Kubernetes does for every untagged field.

Errors are `PatchError`s carrying the HTTP status the API server answers with: 400 BadRequest
for a body that is not a patch (bad JSON, bad directive), 422 Invalid for a patch that cannot
be applied to this object (a failing `test`, a path that does not exist, a merged-list item
without its key), 415 UnsupportedMediaType for another content type (server-side apply's
`application/apply-patch+yaml` is no patch of these: `orchestrator.apiserver.fieldmanager`). `apply_patch` never changes `current`; what it
returns still has to pass the control plane's validation like any other write.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from netplane.errors import NetplaneError
from orchestrator.apply import MergeList, patch_field
from orchestrator.objects import tree
from orchestrator.objects.meta import Kind

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # server-side apply: registry.apply, not apply_patch
CONTENT_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"

Obj = dict[str, Any]


class PatchError(NetplaneError):
    """A patch that could not be applied: `code` and `reason` are the Status the API server
    answers with (400 BadRequest, 422 Invalid, 415 UnsupportedMediaType)."""

    def __init__(self, reason: str, message: str, *, code: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code


def _bad(message: str) -> PatchError:
    return PatchError("BadRequest", message, code=400)


def _invalid(message: str) -> PatchError:
    return PatchError("Invalid", message, code=422)


def media_type(content_type: str) -> str:
    """`application/merge-patch+json; charset=utf-8` -> `application/merge-patch+json`."""
    return content_type.split(";", 1)[0].strip().lower()


def apply_patch(kind: str | Kind, current: Mapping[str, Any], patch: bytes, content_type: str) -> Obj:
    """The object `current` (of `kind`: "Pod" or `meta.POD`) becomes after `patch`."""
    kind_name = kind.kind if isinstance(kind, Kind) else kind
    mt = media_type(content_type)
    if mt not in CONTENT_TYPES:
        raise PatchError(
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(CONTENT_TYPES)}", code=415)
    body = _parse(patch)
    target = tree.copy_decoded(dict(current))  # a stored object (or a Scale made of one)
    if mt == MERGE_PATCH:
        if not isinstance(body, dict):
            raise _bad("a merge patch of an object must be a JSON object")
        out = merge_patch(target, body)
    elif mt == JSON_PATCH:
        out = json_patch(target, body)
    else:
        if not isinstance(body, dict):
            raise _bad("a strategic merge patch must be a JSON object")
        out = strategic_merge_patch(kind_name, target, body)
    if not isinstance(out, dict):
        raise _invalid("the patched object is not a JSON object")
    return out


def _parse(patch: bytes) -> Any:
    try:
        return json.loads(patch)
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(f"the patch is not valid JSON: {e}") from e


# --------------------------------------------------------------------------- RFC 7386
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(Target, Patch). `target` may be changed in place."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = target if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# --------------------------------------------------------------------------- RFC 6902
def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902: apply `ops` in order to `doc` (changed in place; the root may be replaced)."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise _bad("a JSON patch must be a JSON array of operation objects")
    for i, op in enumerate(ops):
        doc = _operation(doc, op, i)
    return doc


def _operation(doc: Any, op: Mapping[str, Any], i: int) -> Any:
    name = op.get("op")
    path = _member(op, "path", i)
    if name == "add":
        return _add(doc, _pointer(path), copy.deepcopy(_value(op, i)), path)
    if name == "remove":
        return _remove(doc, _pointer(path), path)
    if name == "replace":
        tokens = _pointer(path)
        value = copy.deepcopy(_value(op, i))
        if not tokens:
            return value
        return _add(_remove(doc, tokens, path), tokens, value, path)  # _remove: it must exist
    if name == "move":
        src = _member(op, "from", i)
        fr, to = _pointer(src), _pointer(path)
        if len(fr) < len(to) and to[:len(fr)] == fr:
            raise _invalid(f"operation {i}: cannot move {src!r} into its own child {path!r}")
        value = _get(doc, fr, src)
        return _add(_remove(doc, fr, src), to, value, path)
    if name == "copy":
        src = _member(op, "from", i)
        return _add(doc, _pointer(path), copy.deepcopy(_get(doc, _pointer(src), src)), path)
    if name == "test":
        if not _json_equal(_get(doc, _pointer(path), path), _value(op, i)):
            raise _invalid(f"operation {i}: testing value {path} failed")
        return doc
    raise _invalid(f"operation {i}: unknown op {name!r}")


def _member(op: Mapping[str, Any], name: str, i: int) -> str:
    v = op.get(name)
    if not isinstance(v, str):
        raise _invalid(f"operation {i} ({op.get('op')}): missing {name!r}")
    return v


def _value(op: Mapping[str, Any], i: int) -> Any:
    if "value" not in op:
        raise _invalid(f"operation {i} ({op.get('op')}): missing 'value'")
    return op["value"]


def _pointer(path: str) -> list[str]:
    """RFC 6901 reference tokens of `path` ("" is the whole document)."""
    if path == "":
        return []
    if not path.startswith("/"):
        raise _invalid(f"JSON pointer {path!r} does not start with '/'")
    tokens = []
    for raw in path[1:].split("/"):
        rest = raw.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise _invalid(f"JSON pointer {path!r} has a bad '~' escape")
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def _index(token: str, length: int, path: str, *, end_ok: bool) -> int:
    if end_ok and token == "-":
        return length
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise _invalid(f"path {path}: {token!r} is not an array index")
    i = int(token)
    if i > length or (i == length and not end_ok):
        raise _invalid(f"path {path}: index {i} is out of bounds")
    return i


def _get(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for t in tokens:
        if isinstance(cur, dict):
            if t not in cur:
                raise _invalid(f"path {path} does not exist")
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(t, len(cur), path, end_ok=False)]
        else:
            raise _invalid(f"path {path} does not exist")
    return cur


def _add(doc: Any, tokens: list[str], value: Any, path: str) -> Any:
    if not tokens:
        return value
    parent = _get(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), path, end_ok=True), value)
    else:
        raise _invalid(f"path {path}: the parent is not an object or an array")
    return doc


def _remove(doc: Any, tokens: list[str], path: str) -> Any:
    if not tokens:
        raise _invalid("cannot remove the whole document")
    parent = _get(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid(f"path {path} does not exist")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(last, len(parent), path, end_ok=False)]
    else:
        raise _invalid(f"path {path} does not exist")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality (RFC 6902 `test`): numbers by value, true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- strategic
def strategic_merge_patch(kind: str, current: Obj, patch: Mapping[str, Any]) -> Obj:
    """Kubernetes' strategic merge patch of an object of `kind` (`current` is changed)."""
    return _merge_map(current, tree.copy(dict(patch)), kind)


def _merge_map(original: Obj, patch: Obj, typ: str | None) -> Obj:
    if DIRECTIVE in patch:
        directive = patch.pop(DIRECTIVE)
        if directive == "replace":
            return _clean_map(patch)
        if directive == "delete":
            return {}
        if directive != "merge":
            raise _bad(f"unknown patch type: {directive!r} in map")
    _retain_keys(original, patch)
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        _set_element_order(original, patch, key, typ)
    for k, pv in patch.items():
        deleting = k.startswith(DELETE_FROM_PRIMITIVE_LIST)
        if deleting:
            k = k[len(DELETE_FROM_PRIMITIVE_LIST):]
            if not k or not isinstance(pv, list):
                raise _bad("invalid patch format of primitive list")
        if pv is None:
            original.pop(k, None)
            continue
        ov = original.get(k)
        if isinstance(ov, dict) and isinstance(pv, dict):
            f = patch_field(typ, k)
            original[k] = _merge_map(ov, pv, f if isinstance(f, str) else None)
        elif isinstance(ov, list) and isinstance(pv, list):
            original[k] = _merge_list_field(ov, pv, patch_field(typ, k), deleting=deleting)
        elif not deleting:  # absent, or of another JSON type: the patch's value
            keep, value = _clean(pv)
            if keep:
                original[k] = value
            else:
                original.pop(k, None)
    return original


def _retain_keys(original: Obj, patch: Obj) -> None:
    if RETAIN_KEYS not in patch:
        return
    keys = patch.pop(RETAIN_KEYS)
    if not isinstance(keys, list):
        raise _bad("invalid patch format of retainKeys")
    for k, v in patch.items():
        if v is None or k.startswith((SET_ELEMENT_ORDER, DELETE_FROM_PRIMITIVE_LIST)):
            continue
        if k not in keys:
            raise _bad(f"invalid patch format of retainKeys: {k!r} is patched but not retained")
    for k in [k for k in original if k not in keys]:
        del original[k]


def _set_element_order(original: Obj, patch: Obj, key: str, typ: str | None) -> None:
    """Merge the list `key` names (when the patch has it) and put it in the given order."""
    order = patch.pop(key)
    field = key[len(SET_ELEMENT_ORDER):]
    if not field or not isinstance(order, list):
        raise _bad("invalid patch format of setElementOrder list")
    f = patch_field(typ, field)
    mkey = f.key if isinstance(f, MergeList) else ""
    ov, pv = original.get(field), patch.pop(field, None)
    if (ov is not None and not isinstance(ov, list)) or (pv is not None and not isinstance(pv, list)):
        raise _bad(f"invalid patch format of setElementOrder list: {field} is not a list")
    _check_order(pv or [], order, mkey)
    if ov is None and pv is None:
        return
    server_order = list(ov or [])
    if pv is None:
        merged = list(server_order)
    elif ov is None:
        merged = _clean(pv)[1]
    else:
        merged = _merge_list_field(ov, pv, f, deleting=False)
    in_order, server_only = _partition(merged, order, mkey)
    original[field] = _ordered(in_order, server_only, order, server_order, mkey)


def _check_order(patch_list: list[Any], order: list[Any], key: str) -> None:
    """The patch list's items (deletions aside) appear in `order`, in the same order."""
    items = [x for x in patch_list if not (isinstance(x, dict) and DIRECTIVE in x)]
    j = 0
    for x in items:
        while j < len(order) and not _same_item(x, order[j], key):
            j += 1
        if j == len(order):
            raise _bad("the order in the patch list does not match its $setElementOrder list")
        j += 1


def _merge_list_field(original: list[Any], patch: list[Any], f: Any, *, deleting: bool) -> list[Any]:
    if isinstance(f, MergeList) or deleting:
        ml = f if isinstance(f, MergeList) else MergeList()
        return _merge_list(original, patch, ml, deleting=deleting)
    return _clean(patch)[1]


def _merge_list(original: list[Any], patch: list[Any], ml: MergeList, *, deleting: bool) -> list[Any]:
    if not original and not patch:
        return original
    maps = _element_kind(original + patch)
    if maps and deleting:
        raise _bad("$deleteFromPrimitiveList is for lists of scalars")
    if not maps:
        if deleting:
            return [x for x in original if not any(_json_equal(x, d) for d in patch)]
        merged: list[Any] = []
        for x in original + patch:
            if not any(_json_equal(x, m) for m in merged):
                merged.append(x)
        in_patch, server_only = _partition(merged, patch, "")
        return _ordered(in_patch, server_only, patch, original, "")
    if not ml.key:
        raise _invalid("cannot merge a list of objects that has no merge key")
    key = ml.key
    server, patch = _special_elements(original, patch, key)
    merged = list(server)
    item_type = ml.item or None
    for item in patch:
        if key not in item:
            raise _invalid(f"map: {_short(item)} does not contain declared merge key: {key}")
        i = _find(merged, key, item[key])
        if i is None:
            merged.append(_clean_map(item))
        else:
            merged[i] = _merge_map(merged[i], item, item_type)
    # a new item is not in the server's order, so it goes before the server's own items (as
    # in Kubernetes) unless $setElementOrder places it
    in_patch, server_only = _partition(merged, patch, key)
    return _ordered(in_patch, server_only, patch, server, key)


def _element_kind(items: list[Any]) -> bool:
    """True for a list of objects, False for scalars; mixed or nested lists are refused."""
    if any(isinstance(x, list) for x in items):
        raise _invalid("lists of lists are not supported")
    maps = [isinstance(x, dict) for x in items]
    if any(maps) and not all(maps):
        raise _invalid("list element types are not identical")
    return all(maps)


def _special_elements(original: list[Any], patch: list[Any], key: str) -> tuple[list[Any], list[Any]]:
    """Apply the list items carrying `$patch` (delete by key, replace the list)."""
    plain, replace = [], False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        d = item[DIRECTIVE]
        if d == "delete":
            if key not in item:
                raise _invalid(f"map: {_short(item)} does not contain declared merge key: {key}")
            original = [x for x in original if not (isinstance(x, dict) and key in x
                                                    and _json_equal(x[key], item[key]))]
        elif d == "replace":
            replace = True
        elif d != "merge":
            raise _bad(f"unknown patch type: {d!r} in list")
    if replace:
        return [_clean_map(x) for x in plain], []
    return original, plain


def _find(items: list[Any], key: str, value: Any) -> int | None:
    for i, x in enumerate(items):
        if not isinstance(x, dict):
            raise _invalid("a merged list holds a value that is not an object")
        if key in x and _json_equal(x[key], value):
            return i
    return None


def _same_item(a: Any, b: Any, key: str) -> bool:
    """The same list item: by merge key, or by value in a list without one."""
    if key:
        return (isinstance(a, dict) and isinstance(b, dict) and key in a and key in b
                and _json_equal(a[key], b[key]))
    return _json_equal(a, b)


def _position(items: list[Any], x: Any, key: str) -> int:
    for i, y in enumerate(items):
        if _same_item(x, y, key):
            return i
    return -1


def _partition(merged: list[Any], by: list[Any], key: str) -> tuple[list[Any], list[Any]]:
    inside = [x for x in merged if _position(by, x, key) >= 0]
    outside = [x for x in merged if _position(by, x, key) < 0]
    return inside, outside


def _ordered(patch_items: list[Any], server_only: list[Any], patch_order: list[Any],
             server_order: list[Any], key: str) -> list[Any]:
    """strategicpatch's normalizeElementOrder: the patch's items in the patch's order, the
    server's other items in the server's order, the two interleaved so a server item that
    came before a patched item on the server still does."""
    def sort(items: list[Any], order: list[Any]) -> list[Any]:
        found = sorted((x for x in items if _position(order, x, key) >= 0),
                       key=lambda x: _position(order, x, key))
        return found + [x for x in items if _position(order, x, key) < 0]

    left, right = sort(server_only, server_order), sort(patch_items, patch_order)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            out.append(left[i])
            i += 1
        elif i >= len(left):
            out.append(right[j])
            j += 1
        else:
            li, ri = _position(server_order, left[i], key), _position(server_order, right[j], key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _clean(value: Any) -> tuple[bool, Any]:
    """A patch value going in where nothing merges with it: without nulls and directives.
    (False, None) for an object that is only a `$patch: delete`."""
    if isinstance(value, dict):
        if value.get(DIRECTIVE) == "delete":
            return False, None
        return True, _clean_map(value)
    if isinstance(value, list):
        out = []
        for x in value:
            if isinstance(x, dict) and DIRECTIVE in x:
                continue  # list directives mean nothing without a list to apply them to
            out.append(_clean(x)[1])
        return True, out
    return True, value


def _clean_map(value: Mapping[str, Any]) -> Obj:
    out: Obj = {}
    for k, v in value.items():
        if v is None or k == DIRECTIVE or k == RETAIN_KEYS \
                or k.startswith((SET_ELEMENT_ORDER, DELETE_FROM_PRIMITIVE_LIST)):
            continue
        keep, cv = _clean(v)
        if keep:
            out[k] = cv
    return out


def _short(item: Mapping[str, Any]) -> str:
    text = json.dumps(item, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
