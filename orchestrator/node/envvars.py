"""Service discovery as a container sees it: Kubernetes 1.0's service env vars and resolv.conf.

A pod learns about Services two ways (kubelet `pkg/kubelet/envvars`, `kubelet_pods.go`):

* **Environment variables** for every Service that exists in the pod's namespace when the
  container starts (they are never updated later). For a Service `redis-master` with cluster
  IP 10.0.0.11 and one TCP port 6379 named `db`::

      REDIS_MASTER_SERVICE_HOST=10.0.0.11
      REDIS_MASTER_SERVICE_PORT=6379            (the first port)
      REDIS_MASTER_SERVICE_PORT_DB=6379         (every *named* port)
      REDIS_MASTER_PORT=tcp://10.0.0.11:6379    (Docker links: the first port)
      REDIS_MASTER_PORT_6379_TCP=tcp://10.0.0.11:6379
      REDIS_MASTER_PORT_6379_TCP_PROTO=tcp
      REDIS_MASTER_PORT_6379_TCP_PORT=6379
      REDIS_MASTER_PORT_6379_TCP_ADDR=10.0.0.11

  Names are upper-cased with `-` turned into `_` (Service names are DNS-1035 labels, so no
  dots or leading digits occur). Services without a cluster IP (`None` for headless, or
  empty) get nothing. The master's `kubernetes` Service in `default` is given to pods of
  every namespace unless theirs has its own Service of that name, as kubelet does.
* **resolv.conf** pointing at the cluster DNS Service, with kubelet's search path
  `<ns>.svc.<domain> svc.<domain> <domain>` and `ndots:5`.

The container's own variables come from `envFrom` (every key of a ConfigMap's `data` or a
Secret's, with the source's `prefix`; keys that are no valid variable name are skipped, as
kubelet skips them), then `env` in the order declared, whose `valueFrom` reads a ConfigMap key
(`configMapKeyRef`), a Secret key (`secretKeyRef`, decoded) or a field of the pod
(`fieldRef`: metadata.name, .namespace, .uid, labels and annotations by key, spec.nodeName,
spec.serviceAccountName, status.podIP(s), status.hostIP(s)) or one of its containers'
resources (`resourceFieldRef`: limits.cpu / .memory / .ephemeral-storage and requests.*, in
units of `divisor`, rounded up as kubelet does; an unset limit is the node's allocatable). A
missing ConfigMap, Secret or key is `EnvError` (the container waits in
CreateContainerConfigError, as kubelet's does) unless the reference is `optional`, which leaves
the variable out. The container's own variables win over service
variables. `$(VAR)` references in `env[].value`, `command` and `args` are expanded as kubelet
does (its forked `expansion` package): a reference resolves to a variable declared earlier in
the same container, else a service variable; an unknown reference is left as written; `$$` is
a literal `$`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from orchestrator.objects.names import env_var_name
from orchestrator.objects.quantity import QuantityError, parse_quantity
from orchestrator.validation.configdata import decoded

DEFAULT_CLUSTER_DNS = "10.96.0.10"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
MASTER_SERVICE_NAMESPACE = "default"
MASTER_SERVICES = frozenset({"kubernetes"})


def env_name(name: str) -> str:
    """A Service or port name as it appears in a variable name (kubelet makeEnvVariableName)."""
    return name.replace("-", "_").upper()


def _has_cluster_ip(svc: Mapping[str, Any]) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def _ns(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("namespace") or "default"


def _name(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


def services_for(services: Iterable[Mapping[str, Any]], namespace: str) -> list[Mapping[str, Any]]:
    """The Services a pod in `namespace` gets variables for, sorted by name: those of its
    namespace with a cluster IP, plus the master's Services from `default` that its namespace
    does not shadow (kubelet getServiceEnvVarMap)."""
    own: dict[str, Mapping[str, Any]] = {}
    master: dict[str, Mapping[str, Any]] = {}
    for svc in services:
        if not _has_cluster_ip(svc) or not (svc.get("spec") or {}).get("ports"):
            continue
        if _ns(svc) == namespace:
            own[_name(svc)] = svc
        elif _ns(svc) == MASTER_SERVICE_NAMESPACE and _name(svc) in MASTER_SERVICES:
            master[_name(svc)] = svc
    chosen = {**master, **own}
    return [chosen[n] for n in sorted(chosen)]


def service_env(services: Iterable[Mapping[str, Any]], namespace: str) -> dict[str, str]:
    """Every service variable for a pod in `namespace`, in a stable order (kubelet FromServices
    over `services_for`)."""
    out: dict[str, str] = {}
    for svc in services_for(services, namespace):
        spec = svc.get("spec") or {}
        ip = spec["clusterIP"]
        ports = spec["ports"]
        prefix = env_name(_name(svc))
        out[f"{prefix}_SERVICE_HOST"] = ip
        out[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
        for p in ports:
            if p.get("name"):
                out[f"{prefix}_SERVICE_PORT_{env_name(p['name'])}"] = str(p.get("port"))
        for i, p in enumerate(ports):
            proto = (p.get("protocol") or "TCP")
            url = f"{proto.lower()}://{ip}:{p.get('port')}"
            if i == 0:
                out[f"{prefix}_PORT"] = url
            pp = f"{prefix}_PORT_{p.get('port')}_{proto.upper()}"
            out[pp] = url
            out[f"{pp}_PROTO"] = proto.lower()
            out[f"{pp}_PORT"] = str(p.get("port"))
            out[f"{pp}_ADDR"] = ip
    return out


# --------------------------------------------------------------------------- $(VAR) expansion
def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """Look a name up in each context in turn; an unknown name stays `$(name)`."""
    def look(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"
    return look


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Kubernetes' `$(VAR)` expansion: `$(NAME)` is replaced by mapping(NAME), `$$` is `$`,
    a `$` before anything else (or an unclosed `$(`) is kept as written."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 == n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                out.append(mapping(text[i + 2:close]))
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


class EnvError(Exception):
    """A container's environment that cannot be made (kubelet's CreateContainerConfigError)."""


Lookup = Callable[[str, str], Mapping[str, Any] | None]  # (kind "ConfigMap"|"Secret", name) -> object


def _source_data(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        return {}
    if kind == "Secret":
        return {str(k): (decoded(v) or b"").decode(errors="replace") for k, v in data.items()}
    return {str(k): str(v) for k, v in data.items()}


RESOURCES = ("limits.cpu", "limits.memory", "limits.ephemeral-storage",
             "requests.cpu", "requests.memory", "requests.ephemeral-storage")


def resource_value(container: Mapping[str, Any], ref: Mapping[str, Any],
                   allocatable: Mapping[str, str] | None) -> str:
    """kubelet's ExtractResourceValueByContainerName: a container's limit or request in units
    of `divisor` (default 1), rounded up; an unset limit is the node's allocatable, an unset
    request the limit (the API's defaulting), else 0."""
    resource = str(ref.get("resource") or "")
    if resource not in RESOURCES:
        return ""
    which, name = resource.split(".", 1)
    res = container.get("resources") or {}
    raw = (res.get(which) or {}).get(name)
    if raw is None and which == "requests":
        raw = (res.get("limits") or {}).get(name)
    if raw is None and which == "limits":
        raw = (allocatable or {}).get(name)
    try:
        amount = parse_quantity(raw).amount if raw is not None else Fraction(0)
        divisor = parse_quantity(ref.get("divisor") or "1").amount
    except QuantityError:
        return ""
    if divisor <= 0:
        return ""
    return str(math.ceil(amount / divisor))


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """A pod field as the downward API gives it (`fieldRef.fieldPath`)."""
    md, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    if path in ("metadata.labels", "metadata.annotations"):  # a downwardAPI volume's whole map
        pairs = md.get(path.split(".", 1)[1]) or {}
        return "\n".join(f"{k}={json.dumps(str(v))}" for k, v in sorted(pairs.items()))
    for prefix, where in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((md.get(where) or {}).get(path[len(prefix) + 2:-2], ""))
    simple = {"metadata.name": md.get("name"), "metadata.namespace": md.get("namespace"),
              "metadata.uid": md.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName"), "status.podIP": status.get("podIP"),
              "status.hostIP": status.get("hostIP"),
              "status.podIPs": ",".join(str(i.get("ip")) for i in status.get("podIPs") or [] if isinstance(i, dict)),
              "status.hostIPs": ",".join(str(i.get("ip")) for i in status.get("hostIPs") or [] if isinstance(i, dict))}
    return str(simple.get(path) or "")


class _Sources:
    """The ConfigMaps and Secrets one container reads, each fetched once."""

    def __init__(self, lookup: Lookup | None, namespace: str) -> None:
        self.lookup, self.namespace = lookup, namespace
        self._got: dict[tuple[str, str], Mapping[str, Any] | None] = {}

    def get(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        if (kind, name) not in self._got:
            self._got[(kind, name)] = self.lookup(kind, name) if self.lookup is not None else None
        obj = self._got[(kind, name)]
        if obj is None:
            if optional:
                return None
            raise EnvError(f'{"configmap" if kind == "ConfigMap" else "secret"} "{name}" not found')
        return _source_data(kind, obj)


def container_env(container: Mapping[str, Any], services: Mapping[str, str], *,
                  lookup: Lookup | None = None, pod: Mapping[str, Any] | None = None,
                  allocatable: Mapping[str, str] | None = None) -> dict[str, str]:
    """The container's final environment: `envFrom`'s variables, then its own `env` in the
    order declared (values expanded against earlier ones, then service variables; a repeated
    name keeps its first place and its last value), then the service variables it did not set.
    `lookup` finds the pod's ConfigMaps and Secrets; `pod` is what `fieldRef` reads and
    `allocatable` the node's (cpu, memory), what `resourceFieldRef` gives for an unset limit."""
    namespace = str(((pod or {}).get("metadata") or {}).get("namespace") or "default")
    sources = _Sources(lookup, namespace)
    own: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        ref, kind = (src.get("configMapRef"), "ConfigMap") if src.get("configMapRef") else (src.get("secretRef"), "Secret")
        if not isinstance(ref, dict):
            continue
        data = sources.get(kind, str(ref.get("name") or ""), bool(ref.get("optional")))
        for k, v in sorted((data or {}).items()):
            name = str(src.get("prefix") or "") + k
            if not env_var_name(name):
                own[name] = v
    look = mapping_for(own, services)
    for var in container.get("env") or []:
        name = var.get("name") or ""
        if not name:
            continue
        value_from = var.get("valueFrom")
        if isinstance(value_from, dict):
            resolved = _value_from(value_from, sources, pod or {}, container, allocatable)
            if resolved is not None:
                own[name] = resolved
            continue
        value = var.get("value") or ""
        own[name] = expand(value, look) if value else ""
    out = dict(own)
    for k, v in services.items():
        if k not in own:
            out[k] = v
    return out


def _value_from(value_from: Mapping[str, Any], sources: _Sources, pod: Mapping[str, Any],
                container: Mapping[str, Any], allocatable: Mapping[str, str] | None) -> str | None:
    """One `valueFrom`; None when an optional source or key is missing (no variable)."""
    for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
        ref = value_from.get(field)
        if isinstance(ref, dict):
            name, key, optional = str(ref.get("name") or ""), str(ref.get("key") or ""), bool(ref.get("optional"))
            data = sources.get(kind, name, optional)
            if data is None:
                return None
            if key not in data:
                if optional:
                    return None
                raise EnvError(f"couldn't find key {key} in {kind} {sources.namespace}/{name}")
            return data[key]
    ref = value_from.get("fieldRef")
    if isinstance(ref, dict):
        return field_value(pod, str(ref.get("fieldPath") or ""))
    ref = value_from.get("resourceFieldRef")
    if isinstance(ref, dict):
        named = ref.get("containerName")
        if named and named != container.get("name"):
            spec = pod.get("spec") or {}
            others = [c for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
                      if c.get("name") == named]
            container = others[0] if others else {}
        return resource_value(container, ref, allocatable)
    return ""


def expand_command(container: Mapping[str, Any],
                   env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """`command` and `args` with `$(VAR)` expanded against the final environment (kubelet
    ExpandContainerCommandAndArgs)."""
    look = mapping_for(env)
    cmd: Sequence[str] = container.get("command") or []
    args: Sequence[str] = container.get("args") or []
    return [expand(c, look) for c in cmd], [expand(a, look) for a in args]


# --------------------------------------------------------------------------- DNS
def search_path(namespace: str, *, domain: str = DEFAULT_CLUSTER_DOMAIN) -> list[str]:
    return [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]


def resolv_conf(namespace: str, *, nameserver: str = DEFAULT_CLUSTER_DNS,
                domain: str = DEFAULT_CLUSTER_DOMAIN) -> str:
    """A pod's /etc/resolv.conf for dnsPolicy ClusterFirst. The host's own search domains are
    not appended (kubelet does): names outside the cluster should fail at once here."""
    return (f"nameserver {nameserver}\n"
            f"search {' '.join(search_path(namespace, domain=domain))}\n"
            "options ndots:5\n")
