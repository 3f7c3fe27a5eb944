"""Defaulting: what kube-apiserver fills in before validating and storing an object.

Applied to a deep copy, never in place. Values follow Kubernetes' `SetDefaults_*` functions
(pkg/apis/core/v1/defaults.go): namespace "default"; Pod restartPolicy Always,
terminationGracePeriodSeconds 30, an empty securityContext, port protocol TCP (and, with
hostNetwork, hostPort = containerPort), imagePullPolicy Always for `:latest` (or
no tag) else IfNotPresent, requests copied from limits where only limits are given; probe
initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1, successThreshold 1,
failureThreshold 3, httpGet path "/" and scheme HTTP; RC replicas 1, selector and labels from
the template's labels; Service type ClusterIP, sessionAffinity None (ClientIP timeout 10800),
protocol TCP, targetPort = port; Node allocatable = capacity. JSON nulls count as absent and
are dropped first, as they are when Kubernetes decodes into its Go types, and integral
floats become ints.
"""

from __future__ import annotations

from typing import Any

from orchestrator.objects.meta import DEFAULT_NAMESPACE, kind_named
from orchestrator.validation import configdata, leases, rbac

PROBE_DEFAULTS = {
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "successThreshold": 1,
    "failureThreshold": 3,
}
TERMINATION_GRACE_SECONDS = 30
AFFINITY_TIMEOUT_SECONDS = 10800


# leaves kept as they are, tested by exact type: a float may be integral, and goes the long way
_PLAIN = frozenset({str, int, bool})


def drop_nulls(v: Any) -> Any:
    """A copy without null fields; also turn integral floats into ints (`port: 80.0` in YAML),
    as kubectl's YAML-to-JSON step does (Go prints float64 80 as `80`)."""
    t = type(v)
    if t is dict:
        return {k: x if type(x) in _PLAIN else drop_nulls(x) for k, x in v.items() if x is not None}
    if t is list:
        return [x if type(x) in _PLAIN else drop_nulls(x) for x in v]
    if isinstance(v, dict):
        return {k: drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [drop_nulls(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def drop_nulls_in_place(v: Any) -> Any:
    """What `drop_nulls` gives, done to `v` itself (a tree the caller owns whole: anything
    shared with another holder changes for it too), and `v` returned: no tree is built and
    none is freed later (a patch's admission, 2026-12-08)."""
    members: Any
    if isinstance(v, dict):
        if None in v.values():
            for k in [k for k, x in v.items() if x is None]:
                del v[k]
        members = v.items()
    elif isinstance(v, list):
        members = enumerate(v)
    else:
        return drop_nulls(v)
    for k, x in members:  # a member replaced, none added or removed: safe while iterating
        if type(x) in _PLAIN:
            continue
        if isinstance(x, dict | list):
            drop_nulls_in_place(x)
        else:  # a float (an integral one becomes an int), a null in a list, anything else as is
            y = drop_nulls(x)
            if y is not x:
                v[k] = y
    return v


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """parent[key] as a dict, creating it when absent; a non-dict is left for validation."""
    v = parent.get(key)
    if v is None:
        v = parent[key] = {}
    return v if isinstance(v, dict) else {}


def _dicts(v: Any) -> list[dict[str, Any]]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def apply(obj: dict[str, Any], *, in_place: bool = False) -> dict[str, Any]:
    """A defaulted deep copy of a manifest (of a kind we serve; others are copied as is); with
    `in_place`, `obj` itself defaulted (a tree the caller owns whole)."""
    # a new tree (every dict and list rebuilt, leaves immutable), or obj itself
    out: dict[str, Any] = drop_nulls_in_place(obj) if in_place else drop_nulls(obj)
    kind = kind_named(out.get("kind", "")) if isinstance(out.get("kind"), str) else None
    if kind is None:
        return out
    md = _obj(out, "metadata")
    if kind.namespaced and not md.get("namespace"):
        md["namespace"] = DEFAULT_NAMESPACE
    if kind.kind == "Pod":
        pod_spec(_obj(out, "spec"))
    elif kind.kind == "ReplicationController":
        replication_controller(out)
    elif kind.kind == "Service":
        service_spec(_obj(out, "spec"))
    elif kind.kind == "Endpoints":
        for s in _dicts(out.get("subsets")):
            for p in _dicts(s.get("ports")):
                p.setdefault("protocol", "TCP")
    elif kind.kind == "Secret":
        configdata.secret_defaults(out)
    elif kind.kind == "Lease":
        leases.prepare(out)
    elif kind.kind in ("RoleBinding", "ClusterRoleBinding"):
        rbac.defaults(out)
    elif kind.kind == "Node":
        st = out.get("status")
        if isinstance(st, dict) and "allocatable" not in st and isinstance(st.get("capacity"), dict):
            st["allocatable"] = dict(st["capacity"])
    return out


def replication_controller(rc: dict[str, Any]) -> None:
    spec = _obj(rc, "spec")
    spec.setdefault("replicas", 1)
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        return
    tmeta = tmpl.get("metadata")
    tlabels = tmeta.get("labels") if isinstance(tmeta, dict) else None
    if isinstance(tlabels, dict) and tlabels:
        if not spec.get("selector"):
            spec["selector"] = dict(tlabels)
        md = _obj(rc, "metadata")
        if not md.get("labels"):
            md["labels"] = dict(tlabels)
    pod_spec(_obj(tmpl, "spec"))


def pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", TERMINATION_GRACE_SECONDS)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})  # SetDefaults_PodSpec: clients (kubectl debug) dereference it
    for v in _dicts(spec.get("volumes")):
        if isinstance(v.get("hostPath"), dict):
            v["hostPath"].setdefault("type", "")  # SetDefaults_HostPathVolumeSource: HostPathUnset
        if isinstance(v.get("projected"), dict):
            for src in _dicts(v["projected"].get("sources")):
                if isinstance(src.get("serviceAccountToken"), dict):  # SetDefaults_ServiceAccountTokenProjection
                    src["serviceAccountToken"].setdefault("expirationSeconds", 3600)
    for c in _dicts(spec.get("containers")):
        container(c)
        if spec.get("hostNetwork") is True:  # SetDefaults_Pod: a host-network pod's ports are the node's
            for p in _dicts(c.get("ports")):
                if not p.get("hostPort") and p.get("containerPort"):
                    p["hostPort"] = p["containerPort"]


def _pull_policy(image: Any) -> str:
    if not isinstance(image, str):
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def container(c: dict[str, Any]) -> None:
    c.setdefault("imagePullPolicy", _pull_policy(c.get("image")))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    for p in _dicts(c.get("ports")):
        p.setdefault("protocol", "TCP")
    res = c.get("resources")
    if isinstance(res, dict) and isinstance(res.get("limits"), dict):
        req = res.get("requests")
        if req is None:
            req = res["requests"] = {}
        if isinstance(req, dict):
            for name, q in res["limits"].items():
                req.setdefault(name, q)
    for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
        pr = c.get(probe_name)
        if isinstance(pr, dict):
            probe(pr)


def probe(pr: dict[str, Any]) -> None:
    # Kubernetes' Go fields cannot tell 0 from absent: a 0 period/timeout/threshold is defaulted
    for k, v in PROBE_DEFAULTS.items():
        if pr.get(k) is None or (pr.get(k) == 0 and v != 0):
            pr[k] = v
    hg = pr.get("httpGet")
    if isinstance(hg, dict):
        hg.setdefault("path", "/")
        hg.setdefault("scheme", "HTTP")


def service_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    # kube-apiserver's single-stack IPv4 service (1.20+): the families it gives every Service,
    # a clusterIP taken from clusterIPs when only they are given (the allocator fills both)
    ips = spec.get("clusterIPs")
    if isinstance(ips, list) and ips and not spec.get("clusterIP"):
        spec["clusterIP"] = ips[0]
    elif spec.get("clusterIP") and not ips:  # normalizeClusterIPs
        spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["sessionAffinity"] == "ClientIP":
        cfg = _obj(_obj(spec, "sessionAffinityConfig"), "clientIP")
        cfg.setdefault("timeoutSeconds", AFFINITY_TIMEOUT_SECONDS)
    for p in _dicts(spec.get("ports")):
        p.setdefault("protocol", "TCP")
        if "targetPort" not in p and "port" in p:
            p["targetPort"] = p["port"]
