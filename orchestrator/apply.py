"""`kubectl apply`'s client-side three-way merge, pure.

kubectl keeps the manifest it applied last in the annotation
`kubectl.kubernetes.io/last-applied-configuration` (compact JSON, without that annotation
itself). On the next apply it merges three objects: *original* (that annotation), *modified*
(the new manifest) and *current* (what is stored). A field set in modified wins; a field that
was in original but is gone from modified is removed; a field only current has (status,
defaults, what controllers or `scale` wrote) is kept. Lists of objects that Kubernetes merges
by a key under strategic merge patch (containers and env by `name`, container ports by
`containerPort`, service ports by `port`, ...) are merged item by item the same way; other
lists are replaced, as a JSON merge patch would.

`merge` returns the object to store; whether the apply is `configured` or `unchanged` is
decided afterwards by comparing the admitted (defaulted) result with what is stored, so a
manifest that only leaves out defaults is `unchanged`, as kubectl reports it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Literal

from orchestrator.objects import meta

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
Outcome = Literal["created", "configured", "unchanged"]
Obj = dict[str, Any]

# strategic-merge keys of the lists netplane's kinds carry (k8s.io/api patchMergeKey tags)
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),  # container ports, service ports
    "conditions": ("type",),
    "ownerReferences": ("uid",),
}
# fields the server owns: never taken from a manifest on update
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation",
                  "deletionTimestamp", "deletionGracePeriodSeconds")


def last_applied_text(config: Mapping[str, Any]) -> str:
    """The annotation's value for `config`: compact JSON, without the annotation itself."""
    body = copy.deepcopy(dict(config))
    anns = (body.get("metadata") or {}).get("annotations")
    if isinstance(anns, dict):
        anns.pop(LAST_APPLIED, None)
        if not anns:
            body["metadata"].pop("annotations")
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def with_last_applied(config: Mapping[str, Any]) -> Obj:
    """`config` carrying its own last-applied annotation (what apply creates or merges in)."""
    out = copy.deepcopy(dict(config))
    md = out.setdefault("metadata", {})
    anns = md.get("annotations")
    if not isinstance(anns, dict):
        anns = md["annotations"] = {}
    anns[LAST_APPLIED] = last_applied_text(config) + "\n"  # kubectl ends it with a newline
    return out


def last_applied(current: Mapping[str, Any]) -> Obj:
    """The configuration applied last ({} when the object was never applied, or the
    annotation is not JSON: then nothing is deleted by this apply, as with kubectl)."""
    text = meta.annotations_of(current).get(LAST_APPLIED)
    if not text:
        return {}
    try:
        v = json.loads(text)
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def merge(original: Mapping[str, Any], modified: Mapping[str, Any],
          current: Mapping[str, Any]) -> Obj:
    """The object to store: current, with modified's fields set and the fields original had
    but modified dropped removed. Server-owned metadata stays current's."""
    out = _merge_map(original, modified, current)
    md = out.setdefault("metadata", {})
    cur_md = meta.meta(current)
    for f in _SERVER_FIELDS:
        md.pop(f, None)
        if f in cur_md:
            md[f] = copy.deepcopy(cur_md[f])  # type: ignore[literal-required]
    return out


def _merge_map(original: Mapping[str, Any], modified: Mapping[str, Any],
               current: Mapping[str, Any]) -> Obj:
    out: Obj = copy.deepcopy(dict(current))
    for k in original:
        if k not in modified:
            out.pop(k, None)
    for k, v in modified.items():
        out[k] = _merge_value(k, original.get(k), v, current.get(k))
    return out


def _merge_value(field: str, original: Any, modified: Any, current: Any) -> Any:
    if isinstance(modified, dict) and isinstance(current, dict):
        return _merge_map(original if isinstance(original, dict) else {}, modified, current)
    if isinstance(modified, list) and isinstance(current, list):
        key = _list_key(field, modified, current)
        if key is not None:
            return _merge_list(key, field, original if isinstance(original, list) else [],
                               modified, current)
    return copy.deepcopy(modified)


def _list_key(field: str, *lists: list[Any]) -> str | None:
    items = [x for lst in lists for x in lst]
    if not items or not all(isinstance(x, dict) for x in items):
        return None
    for k in _MERGE_KEYS.get(field, ()):
        if all(k in x for x in items):
            return k
    return None


def _merge_list(key: str, field: str, original: list[Any], modified: list[Any],
                current: list[Any]) -> list[Any]:
    """Strategic merge of keyed items: modified's items in its order (each merged with the
    current item of the same key), then current's items that no apply ever set."""
    orig = {_k(x, key): x for x in original if isinstance(x, dict)}
    cur = {_k(x, key): x for x in current}
    out = []
    seen = set()
    for item in modified:
        k = _k(item, key)
        seen.add(k)
        if k in cur:
            out.append(_merge_map(orig.get(k, {}), item, cur[k]))
        else:
            out.append(copy.deepcopy(item))
    for item in current:
        k = _k(item, key)
        if k not in seen and k not in orig:
            out.append(copy.deepcopy(item))
    return out


def _k(item: Mapping[str, Any], key: str) -> str:
    return json.dumps(item.get(key), sort_keys=True)


def comparable(obj: Mapping[str, Any]) -> Obj:
    """`obj` without what changes on every write (resourceVersion, generation), to tell
    `configured` from `unchanged`."""
    out = copy.deepcopy(dict(obj))
    md = out.get("metadata")
    if isinstance(md, dict):
        md.pop("resourceVersion", None)
        md.pop("generation", None)
    return out
