"""A fast check of stored objects, for readers (list, watch): does every field a controller
reads have the type its accessor expects, and do its quantities and times parse?

Writers run the full `validate` (0.3-0.6 ms per object, most of it the JSON schema). Readers
cannot afford that for 10,000 pods at every re-list, yet a value written around the API (by
etcdctl, an older version, a bug) must not crash a control loop when an accessor meets
`cpu: "abc"` or `conditions: "x"`. This check (tens of microseconds) guards exactly the fields
`objects.*`, `scheduling`, `replication`, `endpoints` and `node_lifecycle` read; storage logs
and skips any object that fails it. It is not a substitute for validation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.objects.meta import parse_time
from orchestrator.objects.quantity import QuantityError, parse_quantity


class _Bad(Exception):
    pass


def _obj(v: Any, where: str, *, optional: bool = True) -> Mapping[str, Any]:
    if v is None and optional:
        return {}
    if not isinstance(v, Mapping):
        raise _Bad(f"{where}: expected an object")
    return v


def _list(v: Any, where: str) -> list[Mapping[str, Any]]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
        raise _Bad(f"{where}: expected a list of objects")
    return v


def _typed(m: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> None:
    v = m.get(key)
    if v is None:
        return
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _Bad(f"{where}.{key}: wrong type")
    if not isinstance(v, types):
        raise _Bad(f"{where}.{key}: wrong type")


def _strmap(v: Any, where: str) -> None:
    m = _obj(v, where)
    if not all(isinstance(k, str) and isinstance(x, str) for k, x in m.items()):
        raise _Bad(f"{where}: expected strings")


def _time(m: Mapping[str, Any], key: str, where: str) -> None:
    v = m.get(key)
    if v is None:
        return
    try:
        parse_time(v)
    except (TypeError, ValueError) as e:
        raise _Bad(f"{where}.{key}: not a time") from e


def _quantities(v: Any, where: str) -> None:
    for name, q in _obj(v, where).items():
        try:
            parse_quantity(q)
        except (QuantityError, TypeError) as e:
            raise _Bad(f"{where}[{name}]: {e}") from e


def _conditions(status: Mapping[str, Any], where: str) -> None:
    for i, c in enumerate(_list(status.get("conditions"), f"{where}.conditions")):
        w = f"{where}.conditions[{i}]"
        _typed(c, "type", str, w)
        _typed(c, "status", str, w)
        _time(c, "lastTransitionTime", w)
        _time(c, "lastHeartbeatTime", w)


def _metadata(obj: Mapping[str, Any]) -> None:
    md = _obj(obj.get("metadata"), "metadata", optional=False)
    for k in ("name", "namespace", "uid", "generateName", "resourceVersion"):
        _typed(md, k, str, "metadata")
    _typed(md, "generation", int, "metadata")
    _strmap(md.get("labels"), "metadata.labels")
    _strmap(md.get("annotations"), "metadata.annotations")
    for i, ref in enumerate(_list(md.get("ownerReferences"), "metadata.ownerReferences")):
        for k in ("uid", "kind", "name"):
            _typed(ref, k, str, f"metadata.ownerReferences[{i}]")
    _time(md, "creationTimestamp", "metadata")
    _time(md, "deletionTimestamp", "metadata")


def _pod_spec(spec: Mapping[str, Any], where: str) -> None:
    _typed(spec, "nodeName", str, where)
    _strmap(spec.get("nodeSelector"), f"{where}.nodeSelector")
    _list(spec.get("tolerations"), f"{where}.tolerations")
    for i, c in enumerate(_list(spec.get("containers"), f"{where}.containers")):
        w = f"{where}.containers[{i}]"
        res = _obj(c.get("resources"), f"{w}.resources")
        _quantities(res.get("requests"), f"{w}.resources.requests")
        _quantities(res.get("limits"), f"{w}.resources.limits")
        for j, p in enumerate(_list(c.get("ports"), f"{w}.ports")):
            for k in ("containerPort", "hostPort"):
                _typed(p, k, int, f"{w}.ports[{j}]")
            for k in ("name", "protocol", "hostIP"):
                _typed(p, k, str, f"{w}.ports[{j}]")


def _pod(obj: Mapping[str, Any]) -> None:
    _pod_spec(_obj(obj.get("spec"), "spec"), "spec")
    st = _obj(obj.get("status"), "status")
    for k in ("phase", "podIP", "hostIP"):
        _typed(st, k, str, "status")
    _conditions(st, "status")
    for i, cs in enumerate(_list(st.get("containerStatuses"), "status.containerStatuses")):
        _typed(cs, "restartCount", int, f"status.containerStatuses[{i}]")


def _node(obj: Mapping[str, Any]) -> None:
    _typed(_obj(obj.get("spec"), "spec"), "unschedulable", bool, "spec")
    st = _obj(obj.get("status"), "status")
    _quantities(st.get("capacity"), "status.capacity")
    _quantities(st.get("allocatable"), "status.allocatable")
    _conditions(st, "status")


def _rc(obj: Mapping[str, Any]) -> None:
    spec = _obj(obj.get("spec"), "spec")
    _typed(spec, "replicas", int, "spec")
    _typed(spec, "minReadySeconds", int, "spec")
    _strmap(spec.get("selector"), "spec.selector")
    tmpl = _obj(spec.get("template"), "spec.template")
    _strmap(_obj(tmpl.get("metadata"), "spec.template.metadata").get("labels"), "spec.template.metadata.labels")
    _pod_spec(_obj(tmpl.get("spec"), "spec.template.spec"), "spec.template.spec")


def _service(obj: Mapping[str, Any]) -> None:
    spec = _obj(obj.get("spec"), "spec")
    _strmap(spec.get("selector"), "spec.selector")
    for k in ("clusterIP", "type", "sessionAffinity"):
        _typed(spec, k, str, "spec")
    for i, p in enumerate(_list(spec.get("ports"), "spec.ports")):
        w = f"spec.ports[{i}]"
        _typed(p, "port", int, w)
        _typed(p, "nodePort", int, w)
        _typed(p, "targetPort", (int, str), w)
        _typed(p, "name", str, w)
        _typed(p, "protocol", str, w)


def _endpoints(obj: Mapping[str, Any]) -> None:
    for i, s in enumerate(_list(obj.get("subsets"), "subsets")):
        for section in ("addresses", "notReadyAddresses"):
            for j, a in enumerate(_list(s.get(section), f"subsets[{i}].{section}")):
                _typed(a, "ip", str, f"subsets[{i}].{section}[{j}]")
        for j, p in enumerate(_list(s.get("ports"), f"subsets[{i}].ports")):
            _typed(p, "port", int, f"subsets[{i}].ports[{j}]")


def _config_data(obj: Mapping[str, Any]) -> None:
    for field in ("data", "binaryData", "stringData"):
        v = obj.get(field)
        if v is not None and not (isinstance(v, dict) and all(isinstance(x, str) for x in v.values())):
            raise ValueError(f"{field} is not a map of strings")


_BY_KIND: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "Pod": _pod, "Node": _node, "ReplicationController": _rc, "Service": _service,
    "Endpoints": _endpoints, "Namespace": lambda _o: None, "Event": lambda _o: None,
    "ConfigMap": _config_data, "Secret": _config_data,
}


def read_check(obj: Mapping[str, Any]) -> str | None:
    """None when controllers can read `obj` safely, else what is wrong (one line)."""
    try:
        _metadata(obj)
        _BY_KIND.get(str(obj.get("kind")), lambda _o: None)(obj)
    except _Bad as e:
        return str(e)
    return None
