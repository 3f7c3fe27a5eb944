"""Semantic checks per kind: ObjectMeta, ReplicationController, Service, Endpoints, Node,
Namespace (Kubernetes' ValidateObjectMeta / ValidateReplicationController / ValidateService ...).
Pod specs are checked in `pods`."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any

from orchestrator.objects import names
from orchestrator.objects.meta import POD, Kind
from orchestrator.objects.quantity import QuantityError, parse_quantity
from orchestrator.validation import pods
from orchestrator.validation.field import (
    ROOT,
    FieldError,
    Path,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
    too_long,
)

ANNOTATIONS_MAX_BYTES = 256 * 1024
METADATA = ROOT.child("metadata")
SERVICE_TYPES = ("ClusterIP", "NodePort")
AFFINITIES = ("None", "ClientIP")
IP_FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
TRAFFIC_POLICIES = ("Cluster",)  # Local would need the proxies to send only to this node's endpoints: they do not
MAX_AFFINITY_TIMEOUT = 86400

# names of pods, RCs, nodes and endpoints are DNS-1123 subdomains; namespaces and services
# DNS-1123 labels (Services are DNS-1035 in Kubernetes; see objects.names)
_NAME_RULE = {
    "Pod": names.dns1123_subdomain,
    "ReplicationController": names.dns1123_subdomain,
    "Node": names.dns1123_subdomain,
    "Endpoints": names.dns1123_subdomain,
    "Namespace": names.dns1123_label,
    "Service": names.dns1123_label,
    "Event": names.dns1123_subdomain,
    "ConfigMap": names.dns1123_subdomain,
    "Secret": names.dns1123_subdomain,
    "Lease": names.dns1123_subdomain,
    "ServiceAccount": names.dns1123_subdomain,
    "PodDisruptionBudget": names.dns1123_subdomain,
    **dict.fromkeys(("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"), names.path_segment),
}
EVENT_TYPES = ("Normal", "Warning")


def object_meta(kind: Kind, md: Mapping[str, Any], out: list[FieldError], *,
                path: Path = METADATA, template: bool = False) -> None:
    """A pod template's metadata (`template=True`) needs no name and no namespace."""
    name = md.get("name")
    if not template and not name and not md.get("generateName"):
        out.append(required(path.child("name"), "name or generateName is required"))
    if name:
        out.extend(invalid(path.child("name"), name, e) for e in _NAME_RULE[kind.kind](name))
    gen = md.get("generateName")
    if gen and not name:
        # the prefix with its trailing dash masked must itself be a valid name (kube maskTrailingDash)
        masked = gen[:-1] if len(gen) > 1 and gen.endswith("-") else gen
        out.extend(invalid(path.child("generateName"), gen, e) for e in _NAME_RULE[kind.kind](masked))
    ns = md.get("namespace")
    if template:
        pass
    elif kind.namespaced:
        if not ns:
            out.append(required(path.child("namespace")))
        else:
            out.extend(invalid(path.child("namespace"), ns, e) for e in names.dns1123_label(ns))
    elif ns:
        out.append(forbidden(path.child("namespace"), "not allowed on this type"))
    pods.label_set(path.child("labels"), md.get("labels"), out)
    ann = md.get("annotations") or {}
    for k in ann:
        out.extend(invalid(path.child("annotations"), k, e) for e in names.qualified_name(k))
    if sum(len(k) + len(v) for k, v in ann.items()) > ANNOTATIONS_MAX_BYTES:
        out.append(too_long(path.child("annotations"), ANNOTATIONS_MAX_BYTES))
    refs = pods.entries(md.get("ownerReferences"))
    controllers = []
    for i, ref in enumerate(refs):
        rp = path.child("ownerReferences").index(i)
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                out.append(required(rp.child(f)))
        if ref.get("controller"):
            controllers.append(f"{ref.get('kind', '')}/{ref.get('name', '')}")
    if len(controllers) > 1:
        out.append(invalid(path.child("ownerReferences"), refs,
                           "Only one reference can have Controller set to true. Found \"true\" in "
                           f"references for {' and '.join(controllers)}"))
    gen_no = md.get("generation")
    pods.non_negative(path.child("generation"), gen_no, out)


def replication_controller(rc: Mapping[str, Any], out: list[FieldError]) -> None:
    sp = ROOT.child("spec")
    spec = rc.get("spec") or {}
    pods.non_negative(sp.child("replicas"), spec.get("replicas"), out)
    pods.non_negative(sp.child("minReadySeconds"), spec.get("minReadySeconds"), out)
    selector = spec.get("selector") or {}
    if not selector:
        out.append(required(sp.child("selector")))
    pods.label_set(sp.child("selector"), selector, out)
    tmpl = spec.get("template")
    if tmpl is None:
        out.append(required(sp.child("template")))
        return
    tp = sp.child("template")
    tmeta = tmpl.get("metadata") or {}
    tlabels = tmeta.get("labels") or {}
    if selector and not all(tlabels.get(k) == v for k, v in selector.items()):
        out.append(invalid(tp.child("metadata").child("labels"), tlabels,
                           "`selector` does not match template `labels`"))
    object_meta(POD, tmeta, out, path=tp.child("metadata"), template=True)
    tspec = tmpl.get("spec") or {}
    pods.pod_spec(tp.child("spec"), tspec, out)
    rp = tspec.get("restartPolicy", "Always")
    if rp != "Always" and rp in pods.RESTART_POLICIES:
        out.append(not_supported(tp.child("spec").child("restartPolicy"), rp, ("Always",)))


def service(svc: Mapping[str, Any], out: list[FieldError]) -> None:
    sp = ROOT.child("spec")
    spec = svc.get("spec") or {}
    typ = spec.get("type", "ClusterIP")
    if typ not in SERVICE_TYPES:
        out.append(not_supported(sp.child("type"), typ, SERVICE_TYPES))
    ip = spec.get("clusterIP")
    if ip:
        try:
            IPv4Address(ip)
        except ValueError:
            out.append(invalid(sp.child("clusterIP"), ip, "must be a valid IPv4 address"))
    ports = pods.entries(spec.get("ports"))
    if not ports:
        out.append(required(sp.child("ports")))
    seen_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    for i, p in enumerate(ports):
        pp = sp.child("ports").index(i)
        name = p.get("name") or ""
        if len(ports) > 1 and not name:
            out.append(required(pp.child("name")))
        if name:
            # a DNS-1123 label (kube's ValidateService): the IANA rule is containers' ports'
            out.extend(invalid(pp.child("name"), name, e) for e in names.dns1123_label(name))
            if name in seen_names:
                out.append(duplicate(pp.child("name"), name))
            seen_names.add(name)
        proto = p.get("protocol", "TCP")
        if proto not in pods.PROTOCOLS:
            out.append(not_supported(pp.child("protocol"), proto, pods.PROTOCOLS))
        port = p.get("port")
        if port is None:
            out.append(required(pp.child("port")))
        else:
            pods.port_number(pp.child("port"), port, out)
            if (port, proto) in seen_ports:
                out.append(duplicate(pp, {"port": port, "protocol": proto}))
            seen_ports.add((port, proto))
        tp = p.get("targetPort")
        if tp is not None:
            pods.port_number_or_name(pp.child("targetPort"), tp, out)
        np = p.get("nodePort")
        if np:
            if typ != "NodePort":
                out.append(forbidden(pp.child("nodePort"), f"may not be used when `type` is '{typ}'"))
            else:
                pods.port_number(pp.child("nodePort"), np, out)
    pods.label_set(sp.child("selector"), spec.get("selector"), out)
    aff = spec.get("sessionAffinity", "None")
    if aff not in AFFINITIES:
        out.append(not_supported(sp.child("sessionAffinity"), aff, AFFINITIES))
    t = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    tpath = sp.child("sessionAffinityConfig").child("clientIP").child("timeoutSeconds")
    if t is not None and not 0 < t <= MAX_AFFINITY_TIMEOUT:
        out.append(invalid(tpath, t, f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}"))
    _ip_families(sp, spec, out)


def _ip_families(sp: Path, spec: Mapping[str, Any], out: list[FieldError]) -> None:
    """A single-stack IPv4 cluster's rules for clusterIPs, ipFamilies, ipFamilyPolicy and
    internalTrafficPolicy (kube-apiserver's, without an IPv6 service range)."""
    ips = spec.get("clusterIPs")
    if isinstance(ips, list) and ips:
        if len(ips) > 1:
            out.append(invalid(sp.child("clusterIPs"), ips, "may specify no more than one IP for each IP family"))
        elif spec.get("clusterIP") and ips[0] != spec.get("clusterIP"):
            out.append(invalid(sp.child("clusterIPs").index(0), ips[0], "must match `clusterIP` value"))
    fams = spec.get("ipFamilies")
    if isinstance(fams, list):
        for i, f in enumerate(fams):
            if f != "IPv4":
                out.append(invalid(sp.child("ipFamilies").index(i), f, "not configured on this cluster"
                                   if f == "IPv6" else 'must be "IPv4"'))
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        out.append(not_supported(sp.child("ipFamilyPolicy"), policy, IP_FAMILY_POLICIES))
    elif policy == "RequireDualStack":
        out.append(invalid(sp.child("ipFamilyPolicy"), policy, "this cluster is not configured for dual-stack services"))
    itp = spec.get("internalTrafficPolicy")
    if itp is not None and itp not in TRAFFIC_POLICIES:
        out.append(not_supported(sp.child("internalTrafficPolicy"), itp, TRAFFIC_POLICIES))


def endpoints(ep: Mapping[str, Any], out: list[FieldError]) -> None:
    for i, s in enumerate(pods.entries(ep.get("subsets"))):
        spath = ROOT.child("subsets").index(i)
        for section in ("addresses", "notReadyAddresses"):
            for j, a in enumerate(pods.entries(s.get(section))):
                ap = spath.child(section).index(j)
                ip = a.get("ip")
                if not ip:
                    out.append(required(ap.child("ip")))
                    continue
                try:
                    IPv4Address(ip)
                except ValueError:
                    out.append(invalid(ap.child("ip"), ip, "must be a valid IPv4 address"))
        ports = pods.entries(s.get("ports"))
        seen: set[str] = set()
        for j, p in enumerate(ports):
            pp = spath.child("ports").index(j)
            name = p.get("name") or ""
            if len(ports) > 1 and not name:
                out.append(required(pp.child("name")))
            if name in seen:
                out.append(duplicate(pp.child("name"), name))
            seen.add(name)
            if p.get("port") is None:
                out.append(required(pp.child("port")))
            else:
                pods.port_number(pp.child("port"), p["port"], out)
            proto = p.get("protocol", "TCP")
            if proto not in pods.PROTOCOLS:
                out.append(not_supported(pp.child("protocol"), proto, pods.PROTOCOLS))


def node(n: Mapping[str, Any], out: list[FieldError]) -> None:
    st = n.get("status") or {}
    for section in ("capacity", "allocatable"):
        for rname, raw in (st.get(section) or {}).items():
            rp = ROOT.child("status").child(section).key(rname)
            try:
                q = parse_quantity(raw)
            except QuantityError as e:
                out.append(invalid(rp, raw, str(e)))
                continue
            if q.amount < 0:
                out.append(invalid(rp, raw, pods.NON_NEGATIVE))



def event(ev: Mapping[str, Any], out: list[FieldError]) -> None:
    """ValidateEvent's core: an involved object, a known type, a non-negative count, and the
    event in its object's namespace."""
    ref = ev.get("involvedObject") or {}
    if not ref.get("kind"):
        out.append(required(ROOT.child("involvedObject").child("kind")))
    if not ref.get("name"):
        out.append(required(ROOT.child("involvedObject").child("name")))
    ns = (ev.get("metadata") or {}).get("namespace")
    if ref.get("namespace") and ns != ref["namespace"]:
        out.append(invalid(ROOT.child("involvedObject").child("namespace"), ref["namespace"],
                           "does not match event.namespace"))
    typ = ev.get("type")
    if typ is not None and typ not in EVENT_TYPES:
        out.append(not_supported(ROOT.child("type"), typ, EVENT_TYPES))
    pods.non_negative(ROOT.child("count"), ev.get("count"), out)
