"""`kubectl apply`'s client-side three-way merge, pure.

kubectl keeps the manifest it applied last in the annotation
`kubectl.kubernetes.io/last-applied-configuration` (compact JSON, without that annotation
itself). On the next apply it merges three objects: *original* (that annotation), *modified*
(the new manifest) and *current* (what is stored). A field set in modified wins; a field that
was in original but is gone from modified is removed; a field only current has (status,
defaults, what controllers or `scale` wrote) is kept. Lists of objects that Kubernetes merges
by a key under strategic merge patch (containers and env by `name`, container ports by
`containerPort`, service ports by `port`, ...) are merged item by item the same way, merged
lists of scalars (finalizers) as sets; other lists are replaced, as a JSON merge patch would.
Which list is which comes from `PATCH_TYPES`, Kubernetes' own tags per type, so a Service's
`ports` and a container's `ports` are told apart; the API server's strategic merge patch
reads the same table.

`merge` returns the object to store; whether the apply is `configured` or `unchanged` is
decided afterwards by comparing the admitted (defaulted) result with what is stored, so a
manifest that only leaves out defaults is `unchanged`, as kubectl reports it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.objects import meta

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
Outcome = Literal["created", "configured", "unchanged"]
Obj = dict[str, Any]

@dataclass(frozen=True)
class MergeList:
    """A list field Kubernetes merges under a strategic merge patch (`patchStrategy:"merge"`):
    objects matched by `key` (its `patchMergeKey`), or, with no key, a set of scalars. `item`
    names the items' entry in PATCH_TYPES when they carry merged lists of their own."""

    key: str = ""
    item: str = ""


# The strategic-merge metadata of the v1 types netplane serves, from the `patchStrategy` /
# `patchMergeKey` tags in k8s.io/api core/v1 types.go (and metav1 ObjectMeta). A field is a
# nested object's type or a merged list; anything not listed is a plain field: objects merge
# key by key, lists are replaced. Used by `merge` below and by the API server's strategic
# merge patch (orchestrator.apiserver.patch), so both merge a list the same way.
PatchField = str | MergeList
PATCH_TYPES: dict[str, dict[str, PatchField]] = {
    "ObjectMeta": {"ownerReferences": MergeList("uid"), "finalizers": MergeList()},
    "Pod": {"metadata": "ObjectMeta", "spec": "PodSpec", "status": "PodStatus"},
    "PodTemplateSpec": {"metadata": "ObjectMeta", "spec": "PodSpec"},
    "PodSpec": {
        "volumes": MergeList("name"),  # also retainKeys: kubectl sends $retainKeys per volume
        "initContainers": MergeList("name", "Container"),
        "containers": MergeList("name", "Container"),
        "ephemeralContainers": MergeList("name", "Container"),
        "imagePullSecrets": MergeList("name"),
        "hostAliases": MergeList("ip"),
        "topologySpreadConstraints": MergeList("topologyKey"),
        "schedulingGates": MergeList("name"),
        "resourceClaims": MergeList("name"),
    },
    "Container": {"ports": MergeList("containerPort"), "env": MergeList("name"),
                  "volumeMounts": MergeList("mountPath"), "volumeDevices": MergeList("devicePath")},
    "PodStatus": {"conditions": MergeList("type"), "hostIPs": MergeList("ip"),
                  "podIPs": MergeList("ip"), "resourceClaimStatuses": MergeList("name")},
    "ReplicationController": {"metadata": "ObjectMeta", "spec": "ReplicationControllerSpec",
                              "status": "ReplicationControllerStatus"},
    "ReplicationControllerSpec": {"template": "PodTemplateSpec"},
    "ReplicationControllerStatus": {"conditions": MergeList("type")},
    "Service": {"metadata": "ObjectMeta", "spec": "ServiceSpec", "status": "ServiceStatus"},
    "ServiceSpec": {"ports": MergeList("port")},  # by port alone, as Kubernetes (not protocol)
    "ServiceStatus": {"conditions": MergeList("type")},
    "Endpoints": {"metadata": "ObjectMeta"},  # subsets and their lists are replaced
    "Node": {"metadata": "ObjectMeta", "spec": "NodeSpec", "status": "NodeStatus"},
    "NodeSpec": {"podCIDRs": MergeList()},
    "NodeStatus": {"conditions": MergeList("type"), "addresses": MergeList("type")},
    "Namespace": {"metadata": "ObjectMeta", "status": "NamespaceStatus"},
    "NamespaceStatus": {"conditions": MergeList("type")},
    "Event": {"metadata": "ObjectMeta"},
    "ConfigMap": {"metadata": "ObjectMeta"},  # data and binaryData: maps, merged key by key
    "Secret": {"metadata": "ObjectMeta"},
    "ServiceAccount": {"metadata": "ObjectMeta", "secrets": MergeList("name"), "imagePullSecrets": MergeList("name")},
    "Lease": {"metadata": "ObjectMeta"},  # a LeaseSpec has no lists
    "PodDisruptionBudget": {"metadata": "ObjectMeta", "status": "PodDisruptionBudgetStatus"},
    "PodDisruptionBudgetStatus": {"conditions": MergeList("type")},
    # rules, subjects and aggregationRule's selectors have no patch strategy: replaced whole
    **{k: {"metadata": "ObjectMeta"} for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")},
}
# An object without a known `kind`: lists are matched by field name alone, with every key
# that field name has anywhere above (container ports by containerPort, service ports by port)
_ANY = "*"


def _keys_by_name() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for fields in PATCH_TYPES.values():
        for name, f in fields.items():
            if isinstance(f, MergeList) and f.key and f.key not in out.get(name, ()):
                out[name] = (*out.get(name, ()), f.key)
    return out


_KEYS_BY_NAME = _keys_by_name()


def patch_field(typ: str | None, name: str) -> PatchField | None:
    """What field `name` of type `typ` is (None: a plain field, or an untyped parent)."""
    return PATCH_TYPES.get(typ, {}).get(name) if typ else None


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
    kind = modified.get("kind") or current.get("kind")
    out = _merge_map(original, modified, current, kind if kind in PATCH_TYPES else _ANY)
    md = out.setdefault("metadata", {})
    cur_md = meta.meta(current)
    for f in _SERVER_FIELDS:
        md.pop(f, None)
        if f in cur_md:
            md[f] = copy.deepcopy(cur_md[f])  # type: ignore[literal-required]
    return out


def _merge_map(original: Mapping[str, Any], modified: Mapping[str, Any],
               current: Mapping[str, Any], typ: str | None) -> Obj:
    out: Obj = copy.deepcopy(dict(current))
    for k in original:
        if k not in modified:
            out.pop(k, None)
    for k, v in modified.items():
        out[k] = _merge_value(k, original.get(k), v, current.get(k), typ)
    return out


def _merge_value(field: str, original: Any, modified: Any, current: Any, typ: str | None) -> Any:
    f = patch_field(typ, field)
    if isinstance(modified, dict) and isinstance(current, dict):
        child = _ANY if typ == _ANY else f if isinstance(f, str) else None
        return _merge_map(original if isinstance(original, dict) else {}, modified, current, child)
    if isinstance(modified, list) and isinstance(current, list):
        orig = original if isinstance(original, list) else []
        if typ == _ANY:
            key = _list_key(_KEYS_BY_NAME.get(field, ()), modified, current)
            if key is not None:
                return _merge_list(key, orig, modified, current, _ANY)
        elif isinstance(f, MergeList) and f.key:
            if _list_key((f.key,), modified, current) is not None:
                return _merge_list(f.key, orig, modified, current, f.item or None)
        elif isinstance(f, MergeList) and _all_scalars(modified, current):
            return _merge_set(orig, modified, current)
    return copy.deepcopy(modified)


def _list_key(keys: tuple[str, ...], *lists: list[Any]) -> str | None:
    items = [x for lst in lists for x in lst]
    if not items or not all(isinstance(x, dict) for x in items):
        return None
    for k in keys:
        if all(k in x for x in items):
            return k
    return None


def _all_scalars(*lists: list[Any]) -> bool:
    return all(not isinstance(x, dict | list) for lst in lists for x in lst)


def _merge_list(key: str, original: list[Any], modified: list[Any], current: list[Any],
                item_type: str | None) -> list[Any]:
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
            out.append(_merge_map(orig.get(k, {}), item, cur[k], item_type))
        else:
            out.append(copy.deepcopy(item))
    for item in current:
        k = _k(item, key)
        if k not in seen and k not in orig:
            out.append(copy.deepcopy(item))
    return out


def _merge_set(original: list[Any], modified: list[Any], current: list[Any]) -> list[Any]:
    """A merged list of scalars (finalizers, podCIDRs): modified's items, then current's items
    that no apply ever set; an item original had and modified dropped is removed."""
    out = list(modified)
    out += [x for x in current if x not in modified and x not in original]
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
