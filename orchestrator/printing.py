"""`kubectl get` output, pure: the columns kubectl shows per kind, its AGE format, its table
alignment, and the `v1 List` it prints for `-o json|yaml` of several objects.

Everything takes plain objects and a `now`, and returns strings, so the CLI only prints and
the tests compare text. Column sets and cell rules follow kubectl's printers
(k8s.io/kubernetes pkg/printers/internalversion/printers.go): pods NAME READY STATUS RESTARTS
AGE (wide: IP NODE NOMINATED NODE READINESS GATES), rc NAME DESIRED CURRENT READY AGE, ...;
absent values print as `<none>`; tables are aligned like its tabwriter (3 spaces of padding,
cells at least 6 wide, the last column unpadded).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.objects import meta
from orchestrator.objects import node as nodes
from orchestrator.objects import pod as pods
from orchestrator.objects.meta import Kind

Obj = Mapping[str, Any]
NONE = "<none>"
TAB_MIN_WIDTH = 6
TAB_PADDING = 3
MAX_ENDPOINTS = 3  # kubectl's formatEndpoints shows three, then " + N more..."


# --------------------------------------------------------------------------- AGE
def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery duration.HumanDuration: 5s, 119s, 3m12s, 10m, 3h20m, 9h, 2d, 2d3h,
    8d, 2y3d ... (a clock up to 2 s behind counts as now)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def since(ts: Any, now: datetime) -> str:
    """kubectl's translateTimestampSince: `<unknown>` for a missing or unparsable time."""
    if not isinstance(ts, str) or not ts:
        return "<unknown>"
    try:
        t = meta.parse_time(ts)
    except ValueError:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def age(obj: Obj, now: datetime) -> str:
    return since(meta.meta(obj).get("creationTimestamp"), now)


# --------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def widths(self) -> list[int]:
        return column_widths([self.columns, *self.rows])

    def render(self, *, header: bool = True, widths: Sequence[int] | None = None) -> str:
        lines = [self.columns, *self.rows] if header else list(self.rows)
        w = list(widths) if widths is not None else self.widths()
        return "\n".join(align(r, w) for r in lines)


def column_widths(lines: Sequence[Sequence[str]], *, padding: int = TAB_PADDING,
                  min_width: int = TAB_MIN_WIDTH) -> list[int]:
    n = max((len(r) for r in lines), default=0)
    return [max(min_width, max(len(r[i]) for r in lines if i < len(r)) + padding)
            for i in range(n)]


def align(cells: Sequence[str], widths: Sequence[int], *, padding: int = TAB_PADDING) -> str:
    """One line; a cell longer than its column pushes the rest right (kubectl's watch rows)."""
    out = []
    for i, c in enumerate(cells):
        last = i == len(cells) - 1
        w = widths[i] if i < len(widths) else len(c) + padding
        out.append(c if last else c.ljust(max(w, len(c) + padding)))
    return "".join(out).rstrip()


def columns(kind: Kind, *, wide: bool = False, namespaced_column: bool = False) -> tuple[str, ...]:
    cols: tuple[str, ...]
    if kind.kind == "Event" and wide:
        cols = _EVENT_WIDE  # kubectl's wide events put SUBOBJECT and SOURCE before MESSAGE
    else:
        cols = _COLUMNS[kind.kind] + (_WIDE[kind.kind] if wide else ())
    return (("NAMESPACE",) + cols) if namespaced_column and kind.namespaced else cols


def row(kind: Kind, obj: Obj, now: datetime, *, wide: bool = False,
        namespaced_column: bool = False) -> tuple[str, ...]:
    cells = _ROW[kind.kind](obj, now, wide)
    return ((meta.namespace(obj),) + cells) if namespaced_column and kind.namespaced else cells


def table(kind: Kind, objs: Iterable[Obj], now: datetime, *, wide: bool = False,
          namespaced_column: bool = False) -> Table:
    return Table(columns(kind, wide=wide, namespaced_column=namespaced_column),
                 tuple(row(kind, o, now, wide=wide, namespaced_column=namespaced_column)
                       for o in objs))


def sort_key(kind: Kind, obj: Obj) -> tuple[str, ...]:
    """kubectl lists by namespace and name; events read best oldest first."""
    if kind.kind == "Event":
        return (meta.namespace(obj), _event_time(obj), meta.name(obj))
    return (meta.namespace(obj) if kind.namespaced else "", meta.name(obj))


def as_list(objs: Iterable[Obj]) -> dict[str, Any]:
    """What `kubectl get -o json|yaml` prints for several objects."""
    return {"apiVersion": "v1", "items": [dict(o) for o in objs], "kind": "List",
            "metadata": {"resourceVersion": ""}}


def no_resources(kind: Kind, namespace: str | None) -> str:
    """kubectl's message (on stderr) for an empty list."""
    if namespace is None or not kind.namespaced:
        return "No resources found"
    return f"No resources found in {namespace} namespace."


def kind_slash_name(kind_name: str, name: str) -> str:
    """`pod/web`, `replicationcontroller/web`: kubectl's resource/name of a kind."""
    k = meta.kind_named(kind_name)
    return f"{(k.kind if k else kind_name).lower()}/{name}"


# --------------------------------------------------------------------------- per kind
def labels_text(sel: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((sel or {}).items())) or NONE


def pod_status_text(pod: Obj) -> str:
    """kubectl's STATUS: the phase, or the pod's reason, or a container's waiting/terminated
    reason; Terminating once deletion started (Unknown for a pod lost with its node)."""
    st = pods.status(pod)
    reason = st.get("reason") or pods.phase(pod)
    running = False
    for cs in reversed(st.get("containerStatuses") or []):
        state = cs.get("state") or {}
        waiting, term = state.get("waiting"), state.get("terminated")
        if isinstance(waiting, dict) and waiting.get("reason"):
            reason = waiting["reason"]
        elif isinstance(term, dict) and term.get("reason"):
            reason = term["reason"]
        elif isinstance(term, dict):
            reason = (f"Signal:{term['signal']}" if term.get("signal")
                      else f"ExitCode:{term.get('exitCode', 0)}")
        elif state.get("running") is not None and cs.get("ready"):
            running = True
    if reason == "Completed" and running:
        reason = "Running" if pods.is_ready(pod) else "NotReady"
    if meta.is_deleting(pod):
        return "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    return str(reason)


def _pod_row(pod: Obj, now: datetime, wide: bool) -> tuple[str, ...]:
    containers = pods.spec(pod).get("containers") or []
    statuses = pods.status(pod).get("containerStatuses") or []
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    last = ""
    for cs in statuses:
        fin = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if isinstance(fin, str) and fin > last:
            last = fin
    restart_text = f"{restarts} ({since(last, now)} ago)" if restarts and last else str(restarts)
    cells: tuple[str, ...] = (meta.name(pod), f"{ready}/{len(containers)}", pod_status_text(pod),
                              restart_text, age(pod, now))
    if wide:
        cells += (pods.status(pod).get("podIP") or NONE, pods.node_name(pod) or NONE, NONE, NONE)
    return cells


def _rc_row(rc: Obj, now: datetime, wide: bool) -> tuple[str, ...]:
    spec, st = rc.get("spec") or {}, rc.get("status") or {}
    desired = spec.get("replicas")
    cells: tuple[str, ...] = (meta.name(rc), str(1 if desired is None else desired),
                              str(st.get("replicas") or 0), str(st.get("readyReplicas") or 0),
                              age(rc, now))
    if wide:
        cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        cells += (",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs),
                  labels_text(spec.get("selector")))
    return cells


def service_ports_text(svc: Obj) -> str:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        proto = p.get("protocol") or "TCP"
        np = p.get("nodePort")
        out.append(f"{p.get('port')}:{np}/{proto}" if np else f"{p.get('port')}/{proto}")
    return ",".join(out) or NONE


def _svc_row(svc: Obj, now: datetime, wide: bool) -> tuple[str, ...]:
    spec = svc.get("spec") or {}
    ext = ",".join(spec.get("externalIPs") or []) or NONE
    cells: tuple[str, ...] = (meta.name(svc), spec.get("type") or "ClusterIP",
                              spec.get("clusterIP") or NONE, ext, service_ports_text(svc),
                              age(svc, now))
    if wide:
        cells += (labels_text(spec.get("selector")),)
    return cells


def endpoints_text(ep: Obj, limit: int = MAX_ENDPOINTS) -> str:
    """kubectl's formatEndpoints: ready ip:port pairs, three at most, then ` + N more...`."""
    shown: list[str] = []
    count = 0
    for s in ep.get("subsets") or []:
        addrs = s.get("addresses") or []
        ports = s.get("ports") or []
        pairs = ([f"{a.get('ip')}:{p.get('port')}" for p in ports for a in addrs] if ports
                 else [str(a.get("ip")) for a in addrs])
        for pair in pairs:
            if count < limit:
                shown.append(pair)
            count += 1
    if not shown:
        return NONE
    more = count - len(shown)
    return ",".join(shown) + (f" + {more} more..." if more else "")


def _ep_row(ep: Obj, now: datetime, wide: bool) -> tuple[str, ...]:
    return (meta.name(ep), endpoints_text(ep), age(ep, now))


def node_status_text(node: Obj) -> str:
    ready = None
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            ready = "Ready" if c.get("status") == "True" else "NotReady"
    parts = [ready or "Unknown"]
    if nodes.unschedulable(node):
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(node: Obj) -> str:
    roles = set()
    for k, v in meta.labels(node).items():
        if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]:
            roles.add(k.split("/", 1)[1])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(roles)) or NONE


def _node_address(node: Obj, typ: str) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == typ:
            return str(a.get("address"))
    return NONE


def _node_row(node: Obj, now: datetime, wide: bool) -> tuple[str, ...]:
    info = (node.get("status") or {}).get("nodeInfo") or {}
    cells: tuple[str, ...] = (meta.name(node), node_status_text(node), node_roles(node),
                              age(node, now), info.get("kubeletVersion") or "")
    if wide:
        cells += (_node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
                  info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
                  info.get("containerRuntimeVersion") or "<unknown>")
    return cells


def _ns_row(ns: Obj, now: datetime, wide: bool) -> tuple[str, ...]:
    return (meta.name(ns), (ns.get("status") or {}).get("phase") or "Active", age(ns, now))


def _event_time(ev: Obj) -> str:
    return str(ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp")
               or meta.meta(ev).get("creationTimestamp") or "")


def event_last_seen(ev: Obj, now: datetime) -> str:
    last = since(_event_time(ev), now)
    count = int(ev.get("count") or 1)
    if count > 1:
        first = since(ev.get("firstTimestamp") or _event_time(ev), now)
        return f"{last} (x{count} over {first})"
    return last


def _event_row(ev: Obj, now: datetime, wide: bool) -> tuple[str, ...]:
    ref = ev.get("involvedObject") or {}
    obj = kind_slash_name(str(ref.get("kind") or ""), str(ref.get("name") or ""))
    cells: tuple[str, ...] = (event_last_seen(ev, now), ev.get("type") or "", ev.get("reason") or "",
                              obj)
    if wide:
        src = ev.get("source") or {}
        source = ", ".join(x for x in (src.get("component"), src.get("host")) if x)
        cells += (ref.get("fieldPath") or "", source, ev.get("message") or "",
                  since(ev.get("firstTimestamp"), now), str(ev.get("count") or 1), meta.name(ev))
        return cells
    return cells + (ev.get("message") or "",)


_COLUMNS: dict[str, tuple[str, ...]] = {
    "Pod": ("NAME", "READY", "STATUS", "RESTARTS", "AGE"),
    "ReplicationController": ("NAME", "DESIRED", "CURRENT", "READY", "AGE"),
    "Service": ("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"),
    "Endpoints": ("NAME", "ENDPOINTS", "AGE"),
    "Node": ("NAME", "STATUS", "ROLES", "AGE", "VERSION"),
    "Namespace": ("NAME", "STATUS", "AGE"),
    "Event": ("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"),
}
_WIDE: dict[str, tuple[str, ...]] = {
    "Pod": ("IP", "NODE", "NOMINATED NODE", "READINESS GATES"),
    "ReplicationController": ("CONTAINERS", "IMAGES", "SELECTOR"),
    "Service": ("SELECTOR",),
    "Endpoints": (),
    "Node": ("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"),
    "Namespace": (),
    "Event": (),
}
_EVENT_WIDE = ("LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE",
               "FIRST SEEN", "COUNT", "NAME")
_ROW = {
    "Pod": _pod_row,
    "ReplicationController": _rc_row,
    "Service": _svc_row,
    "Endpoints": _ep_row,
    "Node": _node_row,
    "Namespace": _ns_row,
    "Event": _event_row,
}



def dump(data: Any, fmt: str) -> str:
    """`-o json` (kubectl's 4-space indent, fields in stored order) or `-o yaml` (keys sorted,
    as kubectl's YAML from JSON has them)."""
    import json

    import yaml

    if fmt == "json":
        return json.dumps(data, indent=4)
    return str(yaml.safe_dump(data, sort_keys=True, default_flow_style=False)).rstrip("\n")
