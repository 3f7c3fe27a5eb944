"""The endpoints controller's decision, pure (pkg/controller/endpoint, syncService).

`desired(service, pods)` is the Endpoints object a Service with a selector should have:

* a pod counts when it is in the Service's namespace, matches the selector, has a pod IP, is
  not being deleted and has not finished (Succeeded/Failed);
* it goes to `addresses` when Ready, else `notReadyAddresses` (both, with
  `spec.publishNotReadyAddresses`, go to `addresses`), with `nodeName` and a `targetRef`;
* each Service port's `targetPort` is resolved per pod: a number is itself, a name is the pod's
  container port of that name and protocol (FindPort); a pod without that named port is left
  out of that port only;
* addresses with the same resolved ports share a subset (RepackSubsets), so a Service whose
  named port maps to 8080 on some pods and 9090 on others gets two subsets.

Subsets are sorted by their ports and addresses by IP, so the same cluster always yields the
same object and `needs_update` can skip writes that would change nothing (Kubernetes sorts by
hash; any fixed order serves). A Service without a selector gets None: its Endpoints are
hand-set (`svc endpoints --set`) and the controller leaves them alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address
from typing import Any

from orchestrator.objects import meta
from orchestrator.objects import pod as pods
from orchestrator.objects.meta import ObjectMeta
from orchestrator.objects.selector import from_set
from orchestrator.objects.service import EndpointAddress, EndpointPort, Endpoints, EndpointSubset

Obj = Mapping[str, Any]
PortKey = tuple[tuple[str, int, str], ...]  # (name, port, protocol) per service port


def _address(p: Obj) -> EndpointAddress:
    a: EndpointAddress = {
        "ip": pods.status(p).get("podIP", ""),
        "targetRef": {"kind": "Pod", "namespace": meta.namespace(p), "name": meta.name(p),
                      "uid": meta.uid(p)},
    }
    node = pods.node_name(p)
    if node:
        a["nodeName"] = node
    return a


def resolve_port(p: Obj, target: int | str, protocol: str) -> int | None:
    """A Service port's targetPort on this pod (kube podutil.FindPort)."""
    if isinstance(target, int):
        return target
    return pods.container_port_by_name(p, target, protocol)


def desired(svc: Obj, candidates: Iterable[Obj]) -> Endpoints | None:
    spec = svc.get("spec") or {}
    sel_set = spec.get("selector")
    if not sel_set:
        return None
    sel = from_set(sel_set)
    ns = meta.namespace(svc)
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    svc_ports = spec.get("ports") or []
    groups: dict[PortKey, tuple[list[EndpointAddress], list[EndpointAddress]]] = {}
    for p in candidates:
        if meta.namespace(p) != ns or not sel.matches(meta.labels(p)):
            continue
        if not pods.status(p).get("podIP") or meta.is_deleting(p) or pods.is_terminal(p):
            continue
        resolved = []
        for sp in svc_ports:
            proto = sp.get("protocol") or "TCP"
            port = resolve_port(p, sp.get("targetPort", sp.get("port")), proto)
            if port is not None:
                resolved.append((sp.get("name") or "", port, proto))
        if svc_ports and not resolved:
            continue
        key: PortKey = tuple(sorted(resolved))
        ready, not_ready = groups.setdefault(key, ([], []))
        (ready if publish_not_ready or pods.is_ready(p) else not_ready).append(_address(p))
    subsets: list[EndpointSubset] = []
    for key in sorted(groups):
        ready, not_ready = groups[key]
        s: EndpointSubset = {}
        if ready:
            s["addresses"] = sorted(ready, key=_addr_order)
        if not_ready:
            s["notReadyAddresses"] = sorted(not_ready, key=_addr_order)
        if key:
            s["ports"] = [_port(n, port, proto) for n, port, proto in key]
        subsets.append(s)
    md: ObjectMeta = {"name": meta.name(svc), "namespace": ns}
    if meta.labels(svc):
        md["labels"] = dict(meta.labels(svc))
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": md, "subsets": subsets}


def _port(name: str, port: int, protocol: str) -> EndpointPort:
    out: EndpointPort = {"port": port, "protocol": protocol}
    if name:
        out["name"] = name
    return out


def _addr_order(a: EndpointAddress) -> tuple[int, str]:
    try:
        ip = int(IPv4Address(a.get("ip", "")))
    except ValueError:
        ip = -1
    return ip, a.get("targetRef", {}).get("name", "")


def needs_update(current: Obj | None, want: Obj) -> bool:
    """Whether writing `want` would change what is stored (subsets and labels)."""
    if current is None:
        return True
    return ((current.get("subsets") or []) != (want.get("subsets") or [])
            or meta.labels(current) != meta.labels(want))
