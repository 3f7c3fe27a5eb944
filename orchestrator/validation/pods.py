"""Semantic checks of a pod spec (Kubernetes' ValidatePodSpec, the parts netplane runs).

Run after defaulting and after the schema check passed, so types are right; fields may still
be absent. Every function appends FieldErrors with Kubernetes' paths and wording.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.objects import names
from orchestrator.objects.quantity import QuantityError, parse_quantity
from orchestrator.validation import volumes
from orchestrator.validation.field import (
    ROOT,
    FieldError,
    Path,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)

PROTOCOLS = ("TCP", "UDP")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
PORT_RANGE = "must be between 1 and 65535, inclusive"
NON_NEGATIVE = "must be greater than or equal to 0"


def entries(v: Any) -> list[Mapping[str, Any]]:
    """A list of objects as validation walks it: a JSON null item is an empty object (what
    Go decodes it to), so it is reported field by field instead of crashing the check."""
    return [x if isinstance(x, Mapping) else {} for x in (v or [])]


def _name_errors(path: Path, value: str, errs: list[str], out: list[FieldError]) -> None:
    out.extend(invalid(path, value, e) for e in errs)


def label_set(path: Path, labels: Mapping[str, Any] | None, out: list[FieldError]) -> None:
    """metadata.labels, nodeSelector, selectors: qualified-name keys and label values."""
    for k, v in (labels or {}).items():
        _name_errors(path, k, names.qualified_name(k), out)
        _name_errors(path.key(k), v, names.label_value(v), out)


def port_number(path: Path, value: int, out: list[FieldError]) -> None:
    if not 1 <= value <= 65535:
        out.append(invalid(path, value, PORT_RANGE))


def port_number_or_name(path: Path, value: int | str, out: list[FieldError]) -> None:
    """A probe's or a Service's targetPort: 1-65535 or an IANA service name."""
    if isinstance(value, int):
        port_number(path, value, out)
    else:
        _name_errors(path, value, names.iana_svc_name(value), out)


def non_negative(path: Path, value: int | None, out: list[FieldError]) -> None:
    if value is not None and value < 0:
        out.append(invalid(path, value, NON_NEGATIVE))


def pod_spec(path: Path, spec: Mapping[str, Any], out: list[FieldError]) -> None:
    containers = entries(spec.get("containers"))
    if not containers:
        out.append(required(path.child("containers")))
    seen_names: set[str] = set()
    port_names: set[str] = set()
    host_ports: set[tuple[str, str, int]] = set()
    volume_names = volumes.volumes(path.child("volumes"), spec.get("volumes"), out)
    for i, c in enumerate(containers):
        container(path.child("containers").index(i), c, seen_names, port_names, host_ports, out)
        volumes.volume_mounts(path.child("containers").index(i).child("volumeMounts"), c.get("volumeMounts"),
                              volume_names, out)
        if spec.get("hostNetwork") is True:
            for j, p in enumerate(entries(c.get("ports"))):
                if p.get("hostPort") and p.get("containerPort") and p["hostPort"] != p["containerPort"]:
                    out.append(invalid(path.child("containers").index(i).child("ports").index(j).child("hostPort"),
                                       p["hostPort"], "must match `containerPort` when `hostNetwork` is true"))
    app_names = set(seen_names)
    for i, c in enumerate(entries(spec.get("ephemeralContainers"))):
        ephemeral_container(path.child("ephemeralContainers").index(i), c, seen_names, app_names, out)
        volumes.volume_mounts(path.child("ephemeralContainers").index(i).child("volumeMounts"),
                              c.get("volumeMounts"), volume_names, out)
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in RESTART_POLICIES:
        out.append(not_supported(path.child("restartPolicy"), rp, RESTART_POLICIES))
    if spec.get("shareProcessNamespace") is True and spec.get("hostPID") is True:
        out.append(invalid(path.child("securityContext").child("shareProcessNamespace"), True,
                           "ShareProcessNamespace and HostPID cannot both be enabled"))
    label_set(path.child("nodeSelector"), spec.get("nodeSelector"), out)
    nn = spec.get("nodeName")
    if nn:
        _name_errors(path.child("nodeName"), nn, names.dns1123_subdomain(nn), out)
    non_negative(path.child("terminationGracePeriodSeconds"),
                 spec.get("terminationGracePeriodSeconds"), out)
    non_negative(path.child("activeDeadlineSeconds"), spec.get("activeDeadlineSeconds"), out)


EPHEMERAL_FORBIDDEN = ("ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "resources")


def ephemeral_container(path: Path, c: Mapping[str, Any], seen_names: set[str], app_names: set[str],
                        out: list[FieldError]) -> None:
    """A debugging container (`kubectl debug`): a container without ports, probes, lifecycle
    hooks or resources, whose targetContainerName, if any, is one of the pod's containers."""
    container(path, {k: v for k, v in c.items() if k not in EPHEMERAL_FORBIDDEN}, seen_names, set(), set(), out)
    for f in EPHEMERAL_FORBIDDEN:
        if c.get(f):
            out.append(forbidden(path.child(f), "cannot be set for an Ephemeral Container"))
    target = c.get("targetContainerName")
    if target and target not in app_names:
        out.append(FieldError(str(path.child("targetContainerName")), "Not found", "", target))


def ephemeral_update_errors(current: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """pods/ephemeralcontainers may add ephemeral containers, never change or remove one."""
    path = ROOT.child("spec").child("ephemeralContainers")
    old = {c.get("name"): c for c in entries((current.get("spec") or {}).get("ephemeralContainers"))}
    now = {c.get("name"): c for c in entries((new.get("spec") or {}).get("ephemeralContainers"))}
    out = []
    for name, c in old.items():
        if name not in now:
            out.append(forbidden(path, f'existing ephemeral containers "{name}" may not be removed'))
        elif now[name] != c:
            out.append(forbidden(path, f'existing ephemeral containers "{name}" may not be changed'))
    return out


def container(
    path: Path,
    c: Mapping[str, Any],
    seen_names: set[str],
    port_names: set[str],
    host_ports: set[tuple[str, str, int]],
    out: list[FieldError],
) -> None:
    name = c.get("name")
    if not name:
        out.append(required(path.child("name")))
    else:
        _name_errors(path.child("name"), name, names.dns1123_label(name), out)
        if name in seen_names:
            out.append(duplicate(path.child("name"), name))
        seen_names.add(name)
    if not c.get("image"):
        out.append(required(path.child("image")))
    for i, p in enumerate(entries(c.get("ports"))):
        container_port(path.child("ports").index(i), p, port_names, host_ports, out)
    for i, e in enumerate(entries(c.get("env"))):
        ep = path.child("env").index(i)
        if not e.get("name"):
            out.append(required(ep.child("name")))
        else:
            _name_errors(ep.child("name"), e["name"], names.env_var_name(e["name"]), out)
        if isinstance(e.get("valueFrom"), dict):
            _value_from(ep, e, out)
    for i, src in enumerate(entries(c.get("envFrom"))):
        sp = path.child("envFrom").index(i)
        refs = [f for f in ("configMapRef", "secretRef") if isinstance(src.get(f), dict)]
        if len(refs) != 1:
            out.append(invalid(sp, "", "may not have more than one field specified at a time") if refs else
                       required(sp, "must specify one of: `configMapRef` or `secretRef`"))
        for f in refs:
            if not src[f].get("name"):
                out.append(required(sp.child(f).child("name")))
        if src.get("prefix"):
            _name_errors(sp.child("prefix"), src["prefix"], names.env_var_name(str(src["prefix"])), out)
    resources(path.child("resources"), c.get("resources") or {}, out)
    for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
        pr = c.get(probe_name)
        if pr is not None:
            probe(path.child(probe_name), pr, liveness=probe_name != "readinessProbe", out=out)


def container_port(
    path: Path,
    p: Mapping[str, Any],
    port_names: set[str],
    host_ports: set[tuple[str, str, int]],
    out: list[FieldError],
) -> None:
    name = p.get("name")
    if name:
        _name_errors(path.child("name"), name, names.iana_svc_name(name), out)
        if name in port_names:
            out.append(duplicate(path.child("name"), name))
        port_names.add(name)
    cp = p.get("containerPort")
    if cp is None:
        out.append(required(path.child("containerPort")))
    else:
        port_number(path.child("containerPort"), cp, out)
    proto = p.get("protocol") or "TCP"
    if proto not in PROTOCOLS:
        out.append(not_supported(path.child("protocol"), proto, PROTOCOLS))
    hp = p.get("hostPort")
    if hp:  # 0 means "no host port"
        if not 1 <= hp <= 65535:
            out.append(invalid(path.child("hostPort"), hp, PORT_RANGE))
        else:
            key = (p.get("hostIP") or "", proto, hp)
            if key in host_ports:
                out.append(duplicate(path.child("hostPort"), f"{hp}/{proto}"))
            host_ports.add(key)


def resources(path: Path, res: Mapping[str, Any], out: list[FieldError]) -> None:
    parsed: dict[str, dict[str, Any]] = {}
    for section in ("limits", "requests"):
        parsed[section] = {}
        for rname, raw in (res.get(section) or {}).items():
            rp = path.child(section).key(rname)
            if rname not in RESOURCE_NAMES:
                out.append(not_supported(rp, rname, RESOURCE_NAMES))
                continue
            try:
                q = parse_quantity(raw)
            except QuantityError as e:
                out.append(invalid(rp, raw, str(e)))
                continue
            if q.amount < 0:
                out.append(invalid(rp, raw, NON_NEGATIVE))
                continue
            parsed[section][rname] = q
    for rname, req in parsed["requests"].items():
        lim = parsed["limits"].get(rname)
        if lim is not None and req.amount > lim.amount:
            raw = res["requests"][rname]
            out.append(invalid(path.child("requests").key(rname), str(raw),
                               f"must be less than or equal to {rname} limit of {res['limits'][rname]}"))


def probe(path: Path, pr: Mapping[str, Any], *, liveness: bool, out: list[FieldError]) -> None:
    given = [h for h in HANDLERS if h in pr]
    if not given:
        out.append(required(path, "must specify a handler type"))
    for h in given[1:]:
        out.append(forbidden(path.child(h), "may not specify more than 1 handler type"))
    if "grpc" in pr:
        out.append(forbidden(path.child("grpc"), "grpc probes are not supported by netplane"))
    if "exec" in pr and not (pr["exec"].get("command") or []):
        out.append(required(path.child("exec").child("command")))
    for h in ("httpGet", "tcpSocket"):
        if h in pr:
            port = pr[h].get("port")
            if port is None:
                out.append(required(path.child(h).child("port")))
            else:
                port_number_or_name(path.child(h).child("port"), port, out)
    hg = pr.get("httpGet")
    if hg is not None and hg.get("scheme", "HTTP") not in ("HTTP", "HTTPS"):
        out.append(not_supported(path.child("httpGet").child("scheme"), hg["scheme"], ("HTTP", "HTTPS")))
    for k in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold",
              "failureThreshold", "terminationGracePeriodSeconds"):
        non_negative(path.child(k), pr.get(k), out)
    if liveness and pr.get("successThreshold", 1) != 1:
        out.append(invalid(path.child("successThreshold"), pr["successThreshold"], "must be 1"))


FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
               "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs")


def _value_from(path: Path, e: Mapping[str, Any], out: list[FieldError]) -> None:
    """kube's validateEnvVarValueFrom: one source, no `value` beside it, references complete."""
    vf = e["valueFrom"]
    vp = path.child("valueFrom")
    sources = [f for f in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef") if vf.get(f) is not None]
    if e.get("value"):
        out.append(invalid(vp, "", "may not be specified when `value` is not empty"))
    if not sources:
        out.append(invalid(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or "
                                   "`secretKeyRef`"))
    elif len(sources) > 1:
        out.append(invalid(vp, "", "may not have more than one field specified at a time"))
    for f in ("configMapKeyRef", "secretKeyRef"):
        ref = vf.get(f)
        if isinstance(ref, dict):
            for need in ("name", "key"):
                if not ref.get(need):
                    out.append(required(vp.child(f).child(need)))
    ref = vf.get("resourceFieldRef")
    if isinstance(ref, dict):
        resource_field_ref(vp.child("resourceFieldRef"), ref, out, container_required=False)
    ref = vf.get("fieldRef")
    if isinstance(ref, dict):
        field_ref(vp.child("fieldRef"), ref, FIELD_PATHS, ("metadata.annotations", "metadata.labels", *FIELD_PATHS), out)


def field_ref(path: Path, ref: Mapping[str, Any], allowed: tuple[str, ...], named: tuple[str, ...],
              out: list[FieldError]) -> None:
    """A downward API `fieldRef`: one of `allowed`, or one label or annotation by key
    (`metadata.labels['k']`); `named` are the supported values its error lists."""
    fp = str(ref.get("fieldPath") or "")
    if not fp:
        out.append(required(path.child("fieldPath")))
    elif fp not in allowed and not any(fp.startswith(f"metadata.{m}['") and fp.endswith("']")
                                       for m in ("labels", "annotations")):
        out.append(not_supported(path.child("fieldPath"), fp, named))


RESOURCE_FIELDS = ("limits.cpu", "limits.ephemeral-storage", "limits.memory",
                   "requests.cpu", "requests.ephemeral-storage", "requests.memory")
CPU_DIVISORS = ("1m", "1")
MEMORY_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")


def resource_field_ref(path: Path, ref: Mapping[str, Any], out: list[FieldError], *, container_required: bool) -> None:
    """kube's validateContainerResourceFieldSelector: a known resource, a divisor of its unit
    (cpu: 1m or 1; memory and storage: 1 or a power of 1000 or 1024), a container in volumes."""
    if container_required and not ref.get("containerName"):
        out.append(required(path.child("containerName")))
    resource = str(ref.get("resource") or "")
    if not resource:
        out.append(required(path.child("resource")))
        return
    if resource not in RESOURCE_FIELDS:
        out.append(not_supported(path.child("resource"), resource, RESOURCE_FIELDS))
        return
    divisor = ref.get("divisor")
    if divisor is None:
        return
    try:
        amount = parse_quantity(divisor).amount
    except QuantityError:
        out.append(invalid(path.child("divisor"), divisor, "must be a valid quantity"))
        return
    allowed = CPU_DIVISORS if resource.endswith(".cpu") else MEMORY_DIVISORS
    if amount not in {parse_quantity(d).amount for d in allowed}:
        unit = "cpu" if resource.endswith(".cpu") else "memory"
        out.append(invalid(path.child("divisor"), divisor,
                           f"only divisor's values {', '.join(allowed)} are supported with the {unit} resource"))
