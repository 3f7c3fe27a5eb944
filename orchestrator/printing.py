"""`kubectl get` output, pure: the columns kubectl shows per kind, its AGE format, its table
alignment, and the `v1 List` it prints for `-o json|yaml` of several objects.

Everything takes plain objects and a `now`, and returns strings, so the CLI only prints and
the tests compare text. Columns and cells are kube-apiserver's (k8s.io/kubernetes
pkg/printers/internalversion/printers.go), defined once here for both `netplane get` and the
API server's `as=Table` answers (`orchestrator.apiserver.tables`), so `netplane get` and
`kubectl get` print the same: every kind's full column list with priorities (priority 1 only
with `-o wide`: pods NAME READY STATUS RESTARTS AGE, wide IP NODE NOMINATED NODE READINESS
GATES; rc NAME DESIRED CURRENT READY AGE, ...) and typed cells (counts as integers, as the
server sends them); absent values print as `<none>`; tables are aligned like kubectl's
tabwriter (3 spaces of padding, cells at least 6 wide, the last column unpadded).
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


# --------------------------------------------------------------------------- columns
Cell = str | int  # what a Table cell holds: kube-apiserver sends counts as integers


@dataclass(frozen=True)
class Column:
    """One column as kube-apiserver's Table defines it (pkg/printers/internalversion):
    `name` as the API spells it ("Cluster-IP"); kubectl prints it upper-cased and hides
    priority > 0 columns unless `-o wide`."""

    name: str
    description: str
    type: str = "string"
    priority: int = 0
    format: str = ""

    @property
    def header(self) -> str:
        return self.name.upper()


def column_defs(kind: Kind) -> tuple[Column, ...]:
    """Every column of `kind`, wide ones included, in kube-apiserver's order."""
    return _COLUMNS[kind.kind]


def cells(kind: Kind, obj: Obj, now: datetime) -> tuple[Cell, ...]:
    """A row's cells for every column of `column_defs(kind)`."""
    return _CELLS[kind.kind](obj, now)


def columns(kind: Kind, *, wide: bool = False, namespaced_column: bool = False) -> tuple[str, ...]:
    cols = tuple(c.header for c in column_defs(kind) if wide or c.priority == 0)
    return (("NAMESPACE",) + cols) if namespaced_column and kind.namespaced else cols


def row(kind: Kind, obj: Obj, now: datetime, *, wide: bool = False,
        namespaced_column: bool = False) -> tuple[str, ...]:
    out = tuple(str(v) for c, v in zip(column_defs(kind), cells(kind, obj, now), strict=True)
                if wide or c.priority == 0)
    return ((meta.namespace(obj),) + out) if namespaced_column and kind.namespaced else out


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
    """`pod/web`, `replicationcontroller/web`, `lease.coordination.k8s.io/lock`: kubectl's
    resource/name of a kind."""
    k = meta.kind_named(kind_name)
    if k is None:
        return f"{kind_name.lower()}/{name}"
    return f"{k.kind.lower()}{'.' + k.group if k.group else ''}/{name}"


# --------------------------------------------------------------------------- per kind
def labels_text(sel: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((sel or {}).items())) or NONE


@dataclass(frozen=True)
class PodSummary:
    """What kubectl's pod row says: READY (ready/total), STATUS, RESTARTS and the last one."""

    ready: int
    total: int
    reason: str
    restarts: int
    last_restart: datetime | None


def _finished_at(cs: Mapping[str, Any]) -> datetime | None:
    fin = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
    try:
        return meta.parse_time(fin) if isinstance(fin, str) and fin else None
    except ValueError:
        return None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None or (b is not None and b > a) else a


def _terminated_text(term: Mapping[str, Any], prefix: str = "") -> str:
    if term.get("reason"):
        return prefix + str(term["reason"])
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode', 0)}"


def pod_summary(pod: Obj) -> PodSummary:
    """kube-apiserver's printPod: the phase, or the pod's reason, or the first failing init
    container's state (Init:N/M, Init:<reason>), or a container's waiting/terminated reason
    (CrashLoopBackOff, Error, ExitCode:N); Terminating once deletion started on a pod not yet
    finished (Unknown for one lost with its node). Restarts count the app containers and
    sidecars (init containers with restartPolicy Always), with the last one's time."""
    spec: Mapping[str, Any] = pods.spec(pod)
    st: Mapping[str, Any] = pods.status(pod)
    phase = pods.phase(pod)
    reason = str(st.get("reason") or phase)
    for cond in st.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    sidecar = {n for n, c in init_specs.items() if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or []) + len(sidecar)
    ready = restarts = sidecar_restarts = 0
    last: datetime | None = None
    sidecar_last: datetime | None = None
    initializing = False
    for i, cs in enumerate(st.get("initContainerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        last = _later(last, _finished_at(cs))
        is_sidecar = cs.get("name") in sidecar
        if is_sidecar:
            sidecar_restarts += int(cs.get("restartCount") or 0)
            sidecar_last = _later(sidecar_last, _finished_at(cs))
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(term, dict) and int(term.get("exitCode") or 0) == 0:
            continue
        if is_sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if isinstance(term, dict):
            reason = _terminated_text(term, "Init:")
        elif isinstance(waiting, dict) and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    initialized = pods.condition(pod, "Initialized")
    if not initializing or (initialized is not None and initialized.get("status") == "True"):
        restarts, last = sidecar_restarts, sidecar_last
        running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            last = _later(last, _finished_at(cs))
            state = cs.get("state") or {}
            term, waiting = state.get("terminated"), state.get("waiting")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(term, dict):
                reason = _terminated_text(term)
            elif cs.get("ready") and state.get("running") is not None:
                running = True
                ready += 1
        if reason == "Completed" and running:
            reason = "Running" if pods.is_ready(pod) else "NotReady"
    if meta.is_deleting(pod) and st.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.is_deleting(pod) and not pods.is_terminal(pod):
        reason = "Terminating"
    return PodSummary(ready, total, reason, restarts, last)


def pod_status_text(pod: Obj) -> str:
    """kubectl's STATUS of a pod (see `pod_summary`)."""
    return pod_summary(pod).reason


def pod_restarts_text(summary: PodSummary, now: datetime) -> str:
    """`3`, or `3 (5m ago)` when the last restart's time is known."""
    if summary.restarts and summary.last_restart is not None:
        return f"{summary.restarts} ({human_duration((now - summary.last_restart).total_seconds())} ago)"
    return str(summary.restarts)


def _pod_cells(pod: Obj, now: datetime) -> tuple[Cell, ...]:
    s = pod_summary(pod)
    spec: Mapping[str, Any] = pods.spec(pod)
    st: Mapping[str, Any] = pods.status(pod)
    ips = st.get("podIPs") or []
    ip = (ips[0].get("ip") if ips else None) or st.get("podIP") or NONE
    gates = spec.get("readinessGates") or []
    gates_text = NONE
    if gates:
        true = sum(1 for g in gates
                   if (c := pods.condition(pod, str(g.get("conditionType")))) and c.get("status") == "True")
        gates_text = f"{true}/{len(gates)}"
    return (meta.name(pod), f"{s.ready}/{s.total}", s.reason, pod_restarts_text(s, now), age(pod, now),
            ip, pods.node_name(pod) or NONE, st.get("nominatedNodeName") or NONE, gates_text)


def _rc_cells(rc: Obj, now: datetime) -> tuple[Cell, ...]:
    spec, st = rc.get("spec") or {}, rc.get("status") or {}
    desired = spec.get("replicas")
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return (meta.name(rc), 1 if desired is None else int(desired), int(st.get("replicas") or 0),
            int(st.get("readyReplicas") or 0), age(rc, now),
            ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs),
            labels_text(spec.get("selector")))


def service_ports_text(svc: Obj) -> str:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        proto = p.get("protocol") or "TCP"
        np = p.get("nodePort")
        out.append(f"{p.get('port')}:{np}/{proto}" if np else f"{p.get('port')}/{proto}")
    return ",".join(out) or NONE


def service_external_ip(svc: Obj) -> str:
    """kubectl's EXTERNAL-IP: externalIPs, a load balancer's ingress (`<pending>` until it
    has one), an ExternalName's name."""
    spec = svc.get("spec") or {}
    typ = spec.get("type") or "ClusterIP"
    ext = list(spec.get("externalIPs") or [])
    if typ in ("ClusterIP", "NodePort"):
        return ",".join(ext) or NONE
    if typ == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb = sorted({i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")})
        return ",".join([*lb, *ext]) or "<pending>"
    if typ == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def _svc_cells(svc: Obj, now: datetime) -> tuple[Cell, ...]:
    spec = svc.get("spec") or {}
    ips = spec.get("clusterIPs") or []
    return (meta.name(svc), spec.get("type") or "ClusterIP", (ips[0] if ips else None) or spec.get("clusterIP")
            or NONE, service_external_ip(svc), service_ports_text(svc), age(svc, now),
            labels_text(spec.get("selector")))


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def endpoints_text(ep: Obj, limit: int = MAX_ENDPOINTS) -> str:
    """kubectl's formatEndpoints: ready ip:port pairs, three at most, then ` + N more...`;
    `<none>` without subsets, nothing when no address is ready."""
    subsets = ep.get("subsets") or []
    if not subsets:
        return NONE
    shown: list[str] = []
    count = 0
    for s in subsets:
        addrs = s.get("addresses") or []
        ports = s.get("ports") or []
        pairs = ([_host_port(str(a.get("ip")), p.get("port")) for p in ports for a in addrs] if ports
                 else [str(a.get("ip")) for a in addrs])
        for pair in pairs:
            if count < limit:
                shown.append(pair)
            count += 1
    more = count - len(shown)
    return ",".join(shown) + (f" + {more} more..." if more else "")


def _ep_cells(ep: Obj, now: datetime) -> tuple[Cell, ...]:
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


def _node_cells(node: Obj, now: datetime) -> tuple[Cell, ...]:
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return (meta.name(node), node_status_text(node), node_roles(node), age(node, now),
            info.get("kubeletVersion") or "", _node_address(node, "InternalIP"),
            _node_address(node, "ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>")


def _data_count(obj: Obj) -> int:
    return sum(len(v) for f in ("data", "binaryData") if isinstance(v := obj.get(f), dict))


def _cm_cells(cm: Obj, now: datetime) -> tuple[Cell, ...]:
    return (meta.name(cm), _data_count(cm), age(cm, now))


def _sa_cells(sa: Obj, now: datetime) -> tuple[Cell, ...]:
    return (meta.name(sa), len(sa.get("secrets") or []), age(sa, now))


def _secret_cells(s: Obj, now: datetime) -> tuple[Cell, ...]:
    return (meta.name(s), str(s.get("type") or "Opaque"), _data_count(s), age(s, now))


def _lease_cells(le: Obj, now: datetime) -> tuple[Cell, ...]:
    spec = le.get("spec") or {}
    return (meta.name(le), str(spec.get("holderIdentity") or ""), age(le, now))


def _created_at(obj: Obj, now: datetime) -> tuple[Cell, ...]:
    """A Role's or ClusterRole's row: its name and creationTimestamp as is (RFC 3339, UTC)."""
    return (meta.name(obj), str(meta.meta(obj).get("creationTimestamp") or ""))


def _binding_cells(b: Obj, now: datetime) -> tuple[Cell, ...]:
    ref = b.get("roleRef") or {}
    subjects = [s for s in b.get("subjects") or [] if isinstance(s, dict)]

    def named(kind: str) -> str:
        return ", ".join(str(s.get("name") or "") for s in subjects if s.get("kind") == kind)

    accounts = ", ".join(f"{s.get('namespace') or ''}/{s.get('name') or ''}" for s in subjects
                         if s.get("kind") == "ServiceAccount")
    return (meta.name(b), f"{ref.get('kind') or ''}/{ref.get('name') or ''}", age(b, now),
            named("User"), named("Group"), accounts)


def _pdb_cells(pdb: Obj, now: datetime) -> tuple[Cell, ...]:
    spec, status = pdb.get("spec") or {}, pdb.get("status") or {}

    def shown(v: Any) -> str:
        return "N/A" if v is None else str(v)

    return (meta.name(pdb), shown(spec.get("minAvailable")), shown(spec.get("maxUnavailable")),
            int(status.get("disruptionsAllowed") or 0), age(pdb, now))


def _ns_cells(ns: Obj, now: datetime) -> tuple[Cell, ...]:
    return (meta.name(ns), (ns.get("status") or {}).get("phase") or "Active", age(ns, now))


def _event_time(ev: Obj) -> str:
    return str(ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp")
               or meta.meta(ev).get("creationTimestamp") or "")


def event_last_seen(ev: Obj, now: datetime) -> str:
    """`describe`'s event age: `5s`, or `5s (x4 over 10m)` for a repeated event."""
    last = since(_event_time(ev), now)
    count = int(ev.get("count") or 1)
    if count > 1:
        first = since(ev.get("firstTimestamp") or _event_time(ev), now)
        return f"{last} (x{count} over {first})"
    return last


def _event_cells(ev: Obj, now: datetime) -> tuple[Cell, ...]:
    """printEvent: LAST SEEN is lastTimestamp (else the first time: firstTimestamp, else
    eventTime), or a series' last observation; COUNT the count or the series' count."""
    first = since(ev.get("firstTimestamp") or ev.get("eventTime"), now)
    last = since(ev["lastTimestamp"], now) if ev.get("lastTimestamp") else first
    count = int(ev.get("count") or 0)
    series = ev.get("series")
    if isinstance(series, dict):
        last = since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1
    ref = ev.get("involvedObject") or {}
    kind = str(ref.get("kind") or "").lower()
    target = f"{kind}/{ref['name']}" if ref.get("name") else kind
    src = ev.get("source") or {}
    component = src.get("component") or ev.get("reportingController") or ""
    instance = src.get("host") or ev.get("reportingInstance") or ""
    return (last, ev.get("type") or "", ev.get("reason") or "", target, ref.get("fieldPath") or "",
            f"{component}, {instance}" if instance else component, str(ev.get("message") or "").strip(),
            first, count, meta.name(ev))


_NAME = "Name must be unique within a namespace (or the cluster, for cluster-scoped kinds)."
_AGE = "Time since the object was created (metadata.creationTimestamp)."
_CONTAINERS = "Names of each container in the template."
_IMAGES = "Images referenced by each container in the template."
_COLUMNS: dict[str, tuple[Column, ...]] = {
    "Pod": (
        Column("Name", _NAME, format="name"),
        Column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        Column("Status", "The aggregate status of the containers in this pod."),
        Column("Restarts", "The number of times the containers in this pod have been restarted "
               "and when the last container in this pod has restarted."),
        Column("Age", _AGE),
        Column("IP", "The pod's IP address (status.podIPs[0]).", priority=1),
        Column("Node", "The node the pod is bound to (spec.nodeName).", priority=1),
        Column("Nominated Node", "The node a preempting pod is expected to run on "
               "(status.nominatedNodeName).", priority=1),
        Column("Readiness Gates", "Readiness gates whose condition is True, of all.", priority=1),
    ),
    "ReplicationController": (
        Column("Name", _NAME, format="name"),
        Column("Desired", "The number of replicas wanted (spec.replicas).", type="integer"),
        Column("Current", "The number of replicas observed (status.replicas).", type="integer"),
        Column("Ready", "The number of ready replicas (status.readyReplicas).", type="integer"),
        Column("Age", _AGE),
        Column("Containers", _CONTAINERS, priority=1),
        Column("Images", _IMAGES, priority=1),
        Column("Selector", "The label selector of the pods it controls (spec.selector).", priority=1),
    ),
    "Service": (
        Column("Name", _NAME, format="name"),
        Column("Type", "How the service is exposed (spec.type)."),
        Column("Cluster-IP", "The service's virtual IP (spec.clusterIPs[0])."),
        Column("External-IP", "Addresses outside the cluster the service answers on."),
        Column("Port(s)", "The service's ports, with node ports (spec.ports)."),
        Column("Age", _AGE),
        Column("Selector", "The label selector of the pods behind it (spec.selector).", priority=1),
    ),
    "Endpoints": (
        Column("Name", _NAME, format="name"),
        Column("Endpoints", "The ready addresses and ports behind the service (subsets)."),
        Column("Age", _AGE),
    ),
    "Node": (
        Column("Name", _NAME, format="name"),
        Column("Status", "The status of the node"),
        Column("Roles", "The roles of the node"),
        Column("Age", _AGE),
        Column("Version", "The kubelet's version (status.nodeInfo.kubeletVersion)."),
        Column("Internal-IP", "The node's InternalIP address (status.addresses).", priority=1),
        Column("External-IP", "The node's ExternalIP address (status.addresses).", priority=1),
        Column("OS-Image", "The operating system (status.nodeInfo.osImage).", priority=1),
        Column("Kernel-Version", "The kernel (status.nodeInfo.kernelVersion).", priority=1),
        Column("Container-Runtime", "The container runtime "
               "(status.nodeInfo.containerRuntimeVersion).", priority=1),
    ),
    "Namespace": (
        Column("Name", _NAME, format="name"),
        Column("Status", "The status of the namespace"),
        Column("Age", _AGE),
    ),
    "ConfigMap": (
        Column("Name", _NAME, format="name"),
        Column("Data", "The number of keys (data and binaryData).", type="integer"),
        Column("Age", _AGE),
    ),
    "Secret": (
        Column("Name", _NAME, format="name"),
        Column("Type", "The type of the secret"),
        Column("Data", "The number of keys (data).", type="integer"),
        Column("Age", _AGE),
    ),
    "ServiceAccount": (
        Column("Name", _NAME, format="name"),
        Column("Secrets", "The number of secrets listed (secrets).", type="integer"),
        Column("Age", _AGE),
    ),
    "Lease": (
        Column("Name", _NAME, format="name"),
        Column("Holder", "holderIdentity contains the identity of the holder of a current lease."),
        Column("Age", _AGE),
    ),
    "PodDisruptionBudget": (
        Column("Name", _NAME, format="name"),
        Column("Min Available", "The minimum number of pods that must be available simultaneously. This can be "
               "either an integer or a string specifying a percentage, e.g. \"28%\"."),
        Column("Max Unavailable", "The maximum number of pods that may be unavailable simultaneously. This can be "
               "either an integer or a string specifying a percentage, e.g. \"28%\"."),
        Column("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.",
               type="integer"),
        Column("Age", _AGE),
    ),
    **dict.fromkeys(("Role", "ClusterRole"), (
        Column("Name", _NAME, format="name"),
        Column("Created At", "Time at which the object was created.", type="date"),
    )),
    **dict.fromkeys(("RoleBinding", "ClusterRoleBinding"), (
        Column("Name", _NAME, format="name"),
        Column("Role", "The role the binding grants (roleRef: kind/name)."),
        Column("Age", _AGE),
        Column("Users", "Users in the binding.", priority=1),
        Column("Groups", "Groups in the binding.", priority=1),
        Column("ServiceAccounts", "Service accounts in the binding (namespace/name).", priority=1),
    )),
    "Event": (
        Column("Last Seen", "When the event was last seen (lastTimestamp)."),
        Column("Type", "Normal or Warning."),
        Column("Reason", "Why the event happened, in one word."),
        Column("Object", "The object the event is about (involvedObject)."),
        Column("Subobject", "The part of the object (involvedObject.fieldPath).", priority=1),
        Column("Source", "The component (and host) that reported it.", priority=1),
        Column("Message", "What happened, for a human."),
        Column("First Seen", "When the event was first seen (firstTimestamp).", priority=1),
        Column("Count", "How many times it happened.", priority=1),
        Column("Name", _NAME, priority=1, format="name"),
    ),
}
_CELLS = {
    "Pod": _pod_cells,
    "ReplicationController": _rc_cells,
    "Service": _svc_cells,
    "Endpoints": _ep_cells,
    "Node": _node_cells,
    "Namespace": _ns_cells,
    "Event": _event_cells,
    "ConfigMap": _cm_cells,
    "Secret": _secret_cells,
    "ServiceAccount": _sa_cells,
    "Lease": _lease_cells,
    "PodDisruptionBudget": _pdb_cells,
    "Role": _created_at,
    "ClusterRole": _created_at,
    "RoleBinding": _binding_cells,
    "ClusterRoleBinding": _binding_cells,
}


def dump(data: Any, fmt: str) -> str:
    """`-o json` (kubectl's 4-space indent, fields in stored order) or `-o yaml` (keys sorted,
    as kubectl's YAML from JSON has them)."""
    import json

    import yaml

    if fmt == "json":
        return json.dumps(data, indent=4)
    return str(yaml.safe_dump(data, sort_keys=True, default_flow_style=False)).rstrip("\n")
