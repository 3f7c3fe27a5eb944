"""`kubectl describe`, pure: an object, what it relates to, and its recent events as text.

The layout follows kubectl's describers (k8s.io/kubectl pkg/describe): `Key:` lines aligned
per block, nested blocks indented, `<none>` for absent values, the last-applied annotation
left out, and an `Events:` table (Type Reason Age From Message, `<none>` when there are none)
of the events whose involvedObject is the object, oldest first.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from orchestrator import printing
from orchestrator.apply import LAST_APPLIED
from orchestrator.objects import meta
from orchestrator.objects import pod as pods
from orchestrator.objects.meta import Kind

Obj = Mapping[str, Any]
NONE = printing.NONE
Line = tuple[int, str, str]  # (indent, key, value); key "" is a bare line


def render(lines: Sequence[Line]) -> str:
    """Align values: top-level `Key:` lines share one column (as kubectl's tabwriter lines
    them up; a key without a value, which opens a block, does not count), nested ones per run
    of lines at the same indent. Key "" is a bare line, key
    CONT a further value of the key above."""
    top = max((len(k) + 3 for ind, k, v in lines if ind == 0 and k and k != CONT and v), default=0)
    out: list[str] = []
    i = 0
    while i < len(lines):
        indent = lines[i][0]
        j = i
        while j < len(lines) and lines[j][0] == indent and lines[j][1]:
            j += 1
        if j == i:
            out.append(" " * indent + lines[i][2])
            i += 1
            continue
        width = top if indent == 0 else max(
            (len(k) + 3 for _, k, v in lines[i:j] if k != CONT and v), default=0)
        for _, k, v in lines[i:j]:
            label = "" if k == CONT else k + ":"
            out.append((" " * indent + (label.ljust(width) if v else label) + v).rstrip())
        i = j
    return "\n".join(out)


CONT = "\x00"


def _map(m: Mapping[str, str] | None, indent: int, key: str, *, sep: str = "=") -> list[Line]:
    items = sorted((m or {}).items())
    if not items:
        return [(indent, key, NONE)]
    first, *rest = [f"{k}{sep}{v}" for k, v in items]
    return [(indent, key, first)] + [(indent, CONT, r) for r in rest]


def _annotations(obj: Obj) -> dict[str, str]:
    return {k: v for k, v in meta.annotations_of(obj).items() if k != LAST_APPLIED}


def _header(obj: Obj, kind: Kind) -> list[Line]:
    lines: list[Line] = [(0, "Name", meta.name(obj))]
    if kind.namespaced:
        lines.append((0, "Namespace", meta.namespace(obj)))
    lines += _map(meta.labels(obj), 0, "Labels")
    lines += _map(_annotations(obj), 0, "Annotations", sep=": ")
    return lines


def _table(rows: Sequence[Sequence[str]], *, indent: int = 0) -> list[Line]:
    """A table inside a describe block: two spaces in, columns two apart (kubectl's)."""
    widths = printing.column_widths(rows, padding=2, min_width=0)
    return [(indent, "", "  " + printing.align(r, widths, padding=2)) for r in rows]


def events_table(events: Iterable[Obj], now: datetime) -> list[Line]:
    evs = sorted(events, key=lambda e: printing.sort_key(meta.EVENT, e))
    if not evs:
        return [(0, "Events", NONE)]
    rows: list[tuple[str, ...]] = [("Type", "Reason", "Age", "From", "Message"), ("----", "------", "----", "----", "-------")]
    for e in evs:
        rows.append((str(e.get("type") or ""), str(e.get("reason") or ""),
                     printing.event_last_seen(e, now),
                     str((e.get("source") or {}).get("component") or ""), str(e.get("message") or "")))
    return [(0, "Events", "")] + _table(rows)


def _container(c: Mapping[str, Any], status: Mapping[str, Any] | None, indent: int) -> list[Line]:
    lines: list[Line] = [(indent, c.get("name", ""), "")]
    i = indent + 2
    lines.append((i, "Image", str(c.get("image") or "")))
    ports = c.get("ports") or []
    lines.append((i, "Port", ", ".join(f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}"
                                       for p in ports) or NONE))
    lines.append((i, "Host Port", ", ".join(f"{p.get('hostPort') or 0}/{p.get('protocol') or 'TCP'}"
                                            for p in ports) or NONE))
    if c.get("command"):
        lines.append((i, "Command", " ".join(c["command"])))
    if c.get("args"):
        lines.append((i, "Args", " ".join(c["args"])))
    if status is not None:
        state = status.get("state") or {}
        lines.append((i, "State", next(iter(state), "Waiting").capitalize()))
        lines.append((i, "Ready", "True" if status.get("ready") else "False"))
        lines.append((i, "Restart Count", str(status.get("restartCount") or 0)))
    res = c.get("resources") or {}
    for section in ("limits", "requests"):
        if res.get(section):
            lines.append((i, section.capitalize(), ""))
            lines += [(i + 2, k, str(v)) for k, v in sorted(res[section].items())]
    env = c.get("env") or []
    lines.append((i, "Environment", "" if env else NONE))
    lines += [(i + 2, e.get("name", ""), str(e.get("value", ""))) for e in env]
    mounts = c.get("volumeMounts") or []
    lines.append((i, "Mounts", "" if mounts else NONE))
    for m in mounts:  # kubectl's wording: "/cache from cache (rw)", with the subPath as path="..."
        flags = "ro" if m.get("readOnly") else "rw"
        if m.get("subPath"):
            flags += f',path="{m["subPath"]}"'
        lines.append((i + 2, "", f"{m.get('mountPath')} from {m.get('name')} ({flags})"))
    return lines


def _volumes(spec: Mapping[str, Any]) -> list[Line]:
    vols = spec.get("volumes") or []
    lines: list[Line] = [(0, "Volumes", "" if vols else NONE)]
    for v in vols:
        lines.append((2, str(v.get("name") or ""), ""))
        if v.get("emptyDir") is not None:
            ed = v["emptyDir"] or {}
            lines += [(4, "Type", "EmptyDir (a temporary directory that shares a pod's lifetime)"),
                      (4, "Medium", str(ed.get("medium") or "")),
                      (4, "SizeLimit", str(ed.get("sizeLimit") or "<unset>"))]
        elif v.get("hostPath") is not None:
            hp = v["hostPath"] or {}
            lines += [(4, "Type", "HostPath (bare host directory volume)"), (4, "Path", str(hp.get("path") or "")),
                      (4, "HostPathType", str(hp.get("type") or ""))]
    return lines


def _pod(pod: Obj, now: datetime) -> list[Line]:
    st = pods.status(pod)
    node = pods.node_name(pod)
    lines = _header(pod, meta.POD)
    lines.insert(2, (0, "Node", f"{node}/{st['hostIP']}" if node and st.get("hostIP") else node or NONE))
    if st.get("startTime"):
        lines.insert(3, (0, "Start Time", str(st["startTime"])))
    status = printing.pod_status_text(pod)
    if meta.is_deleting(pod):
        grace = int(meta.meta(pod).get("deletionGracePeriodSeconds") or 0)
        requested = meta.parse_time(str(meta.meta(pod).get("deletionTimestamp"))) - timedelta(seconds=grace)
        status = f"Terminating (lasts {printing.human_duration((now - requested).total_seconds())})"
        lines.append((0, "Termination Grace Period", f"{grace}s"))
    lines.append((0, "Status", status))
    lines.append((0, "IP", st.get("podIP") or ""))
    ref = meta.controller_ref(pod)
    if ref:
        lines.append((0, "Controlled By", f"{ref.get('kind')}/{ref.get('name')}"))
    lines.append((0, "Containers", ""))
    statuses = {cs.get("name"): cs for cs in st.get("containerStatuses") or []}
    for c in pods.spec(pod).get("containers") or []:
        lines += _container(c, statuses.get(c.get("name")), 2)
    conds = st.get("conditions") or []
    lines.append((0, "Conditions", "" if conds else NONE))
    if conds:
        rows: list[tuple[str, ...]] = [("Type", "Status"), *((str(c.get("type")), str(c.get("status"))) for c in conds)]
        lines += _table(rows)
    lines += _volumes(pods.spec(pod))
    lines.append((0, "Node-Selectors", ",".join(f"{k}={v}" for k, v in sorted(
        (pods.spec(pod).get("nodeSelector") or {}).items())) or NONE))
    return lines


def _rc(rc: Obj, related: Sequence[Obj]) -> list[Line]:
    spec, st = rc.get("spec") or {}, rc.get("status") or {}
    lines = _header(rc, meta.REPLICATION_CONTROLLER)
    lines.insert(2, (0, "Selector", printing.labels_text(spec.get("selector"))))
    lines.append((0, "Replicas", f"{st.get('replicas') or 0} current / {spec.get('replicas', 1)} desired"))
    phases = [pods.phase(p) for p in related if not meta.is_deleting(p)]
    counts = (f"{phases.count('Running')} Running / {phases.count('Pending')} Waiting / "
              f"{phases.count('Succeeded')} Succeeded / {phases.count('Failed')} Failed")
    lines.append((0, "Pods Status", counts))
    tmpl = spec.get("template") or {}
    lines.append((0, "Pod Template", ""))
    lines += _map((tmpl.get("metadata") or {}).get("labels"), 2, "Labels")
    lines.append((2, "Containers", ""))
    for c in (tmpl.get("spec") or {}).get("containers") or []:
        lines += _container(c, None, 3)
    return lines


def _service(svc: Obj, endpoints: Obj | None) -> list[Line]:
    spec = svc.get("spec") or {}
    lines = _header(svc, meta.SERVICE)
    lines.append((0, "Selector", printing.labels_text(spec.get("selector"))))
    lines.append((0, "Type", spec.get("type") or "ClusterIP"))
    lines.append((0, "IP", spec.get("clusterIP") or NONE))
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        lines.append((0, "Port", f"{p.get('name') or '<unset>'}  {p.get('port')}/{proto}"))
        tp = p.get("targetPort", p.get("port"))
        lines.append((0, "TargetPort", f"{tp}/{proto}"))
        if p.get("nodePort"):
            lines.append((0, "NodePort", f"{p.get('name') or '<unset>'}  {p['nodePort']}/{proto}"))
        lines.append((0, "Endpoints", printing.endpoints_text(endpoints or {}, limit=1 << 30)
                      if endpoints else NONE))
    lines.append((0, "Session Affinity", spec.get("sessionAffinity") or "None"))
    return lines


def _endpoints(ep: Obj) -> list[Line]:
    lines = _header(ep, meta.ENDPOINTS)
    lines.append((0, "Subsets", ""))
    for s in ep.get("subsets") or []:
        ready = ",".join(str(a.get("ip")) for a in s.get("addresses") or []) or NONE
        not_ready = ",".join(str(a.get("ip")) for a in s.get("notReadyAddresses") or []) or NONE
        lines += [(2, "Addresses", ready), (2, "NotReadyAddresses", not_ready), (2, "Ports", "")]
        rows: list[tuple[str, ...]] = [("Name", "Port", "Protocol"), ("----", "----", "--------")]
        rows += [(p.get("name") or "<unset>", str(p.get("port")), p.get("protocol") or "TCP")
                 for p in s.get("ports") or []]
        lines += _table(rows, indent=2)
    return lines


def _config_map(cm: Obj) -> list[Line]:
    """kubectl's ConfigMapDescriber: each key, a dashed rule, its value; binary keys by size."""
    lines = _header(cm, meta.CONFIG_MAP) + [(0, "", ""), (0, "", "Data"), (0, "", "====")]
    for k, v in sorted((cm.get("data") or {}).items()):
        lines += [(0, "", f"{k}:"), (0, "", "----"), (0, "", str(v)), (0, "", "")]
    lines += [(0, "", ""), (0, "", "BinaryData"), (0, "", "====")]
    for k, v in sorted((cm.get("binaryData") or {}).items()):
        lines.append((0, "", f"{k}: {len(base64.b64decode(str(v)))} bytes"))
    return lines + [(0, "", "")]


def _secret(sec: Obj) -> list[Line]:
    """kubectl's SecretDescriber: the type and each key's size, never a value."""
    lines = _header(sec, meta.SECRET) + [(0, "", ""), (0, "Type", str(sec.get("type") or "Opaque")),
                                         (0, "", ""), (0, "", "Data"), (0, "", "====")]
    for k, v in sorted((sec.get("data") or {}).items()):
        lines.append((0, "", f"{k}:  {len(base64.b64decode(str(v)))} bytes"))
    return lines


def _node(node: Obj, related: Sequence[Obj], now: datetime) -> list[Line]:
    st, spec = node.get("status") or {}, node.get("spec") or {}
    lines = _header(node, meta.NODE)
    lines.insert(1, (0, "Roles", printing.node_roles(node)))
    lines.append((0, "CreationTimestamp", str(meta.meta(node).get("creationTimestamp") or "")))
    lines.append((0, "Unschedulable", "true" if spec.get("unschedulable") else "false"))
    conds = st.get("conditions") or []
    lines.append((0, "Conditions", "" if conds else NONE))
    if conds:
        rows: list[tuple[str, ...]] = [("Type", "Status", "LastHeartbeatTime", "Reason", "Message"),
                ("----", "------", "-----------------", "------", "-------")]
        rows += [(str(c.get("type")), str(c.get("status")), str(c.get("lastHeartbeatTime") or ""),
                  str(c.get("reason") or ""), str(c.get("message") or "")) for c in conds]
        lines += _table(rows)
    addrs = st.get("addresses") or []
    lines.append((0, "Addresses", "" if addrs else NONE))
    lines += [(2, str(a.get("type")), str(a.get("address"))) for a in addrs]
    for section in ("capacity", "allocatable"):
        if st.get(section):
            lines.append((0, section.capitalize(), ""))
            lines += [(2, k, str(v)) for k, v in sorted(st[section].items())]
    if spec.get("podCIDR"):
        lines.append((0, "PodCIDR", spec["podCIDR"]))
    active = [p for p in related if not pods.is_terminal(p)]
    lines.append((0, "Non-terminated Pods", f"({len(active)} in total)"))
    if active:
        lines += _table([("Namespace", "Name", "Age"), ("---------", "----", "---"),
                         *((meta.namespace(p), meta.name(p), printing.age(p, now)) for p in active)])
    return lines


def describe(kind: Kind, obj: Obj, *, events: Iterable[Obj], now: datetime,
             related: Sequence[Obj] = (), endpoints: Obj | None = None) -> str:
    """The text of `describe KIND NAME`: `related` are the RC's pods or the node's pods,
    `endpoints` the Service's Endpoints."""
    if kind == meta.POD:
        lines = _pod(obj, now)
    elif kind == meta.REPLICATION_CONTROLLER:
        lines = _rc(obj, related)
    elif kind == meta.SERVICE:
        lines = _service(obj, endpoints)
    elif kind == meta.ENDPOINTS:
        lines = _endpoints(obj)
    elif kind == meta.NODE:
        lines = _node(obj, related, now)
    elif kind == meta.NAMESPACE:
        lines = _header(obj, kind) + [(0, "Status", (obj.get("status") or {}).get("phase") or "Active")]
    elif kind == meta.CONFIG_MAP:
        lines = _config_map(obj)
    elif kind == meta.SECRET:
        lines = _secret(obj)
    else:
        lines = _header(obj, kind)
        for k in ("type", "reason", "message", "count", "firstTimestamp", "lastTimestamp"):
            if k in obj:
                lines.append((0, k[0].upper() + k[1:], str(obj[k])))
        ref = obj.get("involvedObject") or {}
        lines.append((0, "Involved Object", printing.kind_slash_name(str(ref.get("kind") or ""),
                                                                     str(ref.get("name") or ""))))
        return render(lines)
    return render(lines + events_table(events, now))


def involves(ev: Obj, kind: Kind, obj: Obj) -> bool:
    """Whether event `ev` is about `obj` (kind, name, namespace and, when both know it, uid)."""
    ref = ev.get("involvedObject") or {}
    if ref.get("kind") != kind.kind or ref.get("name") != meta.name(obj):
        return False
    if kind.namespaced and (ref.get("namespace") or meta.DEFAULT_NAMESPACE) != meta.namespace(obj):
        return False
    return not (ref.get("uid") and meta.uid(obj) and ref["uid"] != meta.uid(obj))
