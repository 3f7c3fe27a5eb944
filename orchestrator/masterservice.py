"""Services whose endpoints are the masters themselves: `kube-system/kube-dns` (the masters'
cluster DNS) and `default/kubernetes` (their API servers), so that a pod reaches either at a
fixed cluster IP, through the node's service proxy, on whichever masters are alive.

* `Registration`: every master keeps `<prefix>/masters/<identity>` = `{"dns": "ip:port",
  "api": "ip:port"}` (what it serves, each field only when it serves it) on its own etcd lease
  (the leader TTL), written once it is ready and revoked when it stops: a dead master's key is
  gone within the TTL. This is kube-apiserver's `--endpoint-reconciler-type=lease` (its
  `/masterleases/<ip>` keys), shared by the two services.
* `MasterServiceController` (leader only, fenced like every controller write), one per
  `MasterService`: the Service's Namespace, the selector-less Service on its fixed cluster IP
  and its hand-set Endpoints: one address per registered master, on the port its server really
  listens on (masters on different ports get separate subsets). Someone deleting or changing
  the Service or the Endpoints gets them put back.

`default/kubernetes` is Kubernetes' own: cluster IP the first address of the service range
(10.96.0.1, reserved for it: no other Service is given it), port 443 `https` (targetPort
`https`, resolved per subset from the Endpoints), labels `component: apiserver` and `provider:
kubernetes`. Pods then get `KUBERNETES_SERVICE_HOST`/`_PORT` in their environment (kubelet's
service variables, `node.envvars`), which in-cluster clients (client-go's `InClusterConfig`,
the Python client's `load_incluster_config`) connect to; the API server's certificate names
that address and `kubernetes.default.svc` (`apiserver.certs.default_sans`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from netplane.errors import ConfigError, StoreError
from netplane.proxy.api import ServiceAPI, clusterip_key
from netplane.proxy.model import DEFAULT_SERVICE_RANGE
from netplane.store import EtcdStore, Keys
from netplane.store.watch import Resync, list_watch
from orchestrator.controllers.base import KeyLoop, Writer
from orchestrator.controllers.informers import Informers
from orchestrator.objects import meta
from orchestrator.objects.meta import NAMESPACE
from orchestrator.storage import AlreadyExists, ObjectStore
from orchestrator.validation import admit

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MANAGED_BY = "endpoints.netplane.io/managed-by"  # the endpoints controller's label, other value

KUBERNETES_NAMESPACE = "default"
KUBERNETES_SERVICE = "kubernetes"
KUBERNETES_PORT_NAME = "https"


def kubernetes_service_ip(service_range: IPv4Network = DEFAULT_SERVICE_RANGE) -> IPv4Address:
    """The first address of the service range (kube-apiserver's choice), 10.96.0.1 by default."""
    return service_range.network_address + 1


# --------------------------------------------------------------------------- registration
def masters_prefix(keys: Keys) -> str:
    return f"{keys.prefix}/masters/"


def master_key(keys: Keys, identity: str) -> str:
    return masters_prefix(keys) + identity


class Registration:
    """`<prefix>/masters/<identity>` = `value` on our own lease, kept while running: re-granted
    and re-written when the lease is lost (etcd away longer than the TTL), revoked at stop."""

    def __init__(self, store: EtcdStore, keys: Keys, identity: str, value: Mapping[str, Any], *,
                 ttl: int, ready: Callable[[float], bool] = lambda _t: True) -> None:
        self.store = store
        self.key = master_key(keys, identity)
        self.value = json.dumps(dict(value), sort_keys=True)
        self.ttl = ttl
        self.ready = ready
        self.lease = 0
        self.registered = threading.Event()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set() and not self.ready(0.2):
            pass
        delay = 0.2
        while not stop.is_set():
            try:
                if not self.lease:
                    lease = self.store.grant(self.ttl)
                    self.store.put(self.key, self.value, lease=lease)
                    self.lease = lease
                    self.registered.set()
                    log.info("registered %s on lease %x", self.key, lease)
                elif self.store.keepalive(self.lease) <= 0:
                    log.warning("%s: lease %x expired; registering again", self.key, self.lease)
                    self.lease = 0
                    continue
                delay = 0.2
                stop.wait(self.ttl / 3.0)
            except StoreError as e:
                log.warning("%s: %s; retrying in %.1fs", self.key, e, delay)
                stop.wait(delay)
                delay = min(delay * 2, self.ttl / 3.0)
        if self.lease:
            try:
                self.store.revoke(self.lease)  # our key goes at once
            except StoreError as e:
                log.warning("could not revoke lease %x (it expires by itself): %s", self.lease, e)


def api_address(advertise: str | None, bound: tuple[str, int]) -> str | None:
    """`ip:port` an API server registers for default/kubernetes: its advertise address, else the
    address it is bound to, on the port bound. None (logged) when that is no IPv4 address or is
    0.0.0.0: there is nothing to put into the Endpoints."""
    host = advertise or bound[0]
    try:
        ip = IPv4Address(host)
    except ValueError:
        ip = None
    if ip is None or ip.is_unspecified:
        log.warning("the API server on %s:%d is not put into default/kubernetes' endpoints: give it an "
                    "IPv4 advertise address (the address pods reach it at)", *bound)
        return None
    return f"{ip}:{bound[1]}"


def parse_hostport(text: str) -> tuple[str, int]:
    """`ip:port` (an IPv4 address, a port 0-65535) or ConfigError."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{text!r}: expected IP:PORT")
    try:
        return str(IPv4Address(host)), int(port)
    except ValueError:
        raise ConfigError(f"{text!r}: {host!r} is not an IPv4 address") from None


def registered(raw: bytes, what: str) -> tuple[str, int] | None:
    """The `what` ("dns", "api") address a master registered; None when it serves no such
    thing, or (logged) when the registration is malformed."""
    try:
        v = json.loads(raw)
        if not isinstance(v, dict):
            raise TypeError("not a JSON object")
        return parse_hostport(str(v[what])) if what in v else None
    except (ValueError, TypeError, ConfigError) as e:
        log.warning("skipping malformed master registration %r: %s", raw[:80], e)
        return None


# --------------------------------------------------------------------------- the services
@dataclass(frozen=True)
class MasterService:
    """One Service fronting the masters: where, on which IP, and how its ports are named."""

    namespace: str
    name: str
    registered: str  # the registration's field: "dns", "api"
    cluster_ip: str
    ports: tuple[Mapping[str, Any], ...]  # the Service's (name, port, protocol, targetPort)
    endpoint_ports: tuple[tuple[str, str], ...]  # (name, protocol) of an endpoint port, each on the registered port
    labels: Mapping[str, str] = field(default_factory=dict)  # the Service's
    endpoint_labels: Mapping[str, str] = field(default_factory=dict)  # the Endpoints' (besides MANAGED_BY)
    manager: str = ""
    reserved_ip: bool = False  # the cluster IP is the range's reserved first address

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def service(self) -> Obj:
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels)},
                "spec": {"clusterIP": self.cluster_ip, "type": "ClusterIP", "sessionAffinity": "None",
                         "ports": [dict(p) for p in self.ports]}}

    def subsets(self, addresses: Iterable[tuple[str, int]]) -> list[Obj]:
        """One subset per port in use (sorted), each with its addresses (sorted, once each)."""
        by_port: dict[int, set[str]] = {}
        for ip, port in addresses:
            by_port.setdefault(port, set()).add(ip)
        return [{"addresses": [{"ip": ip} for ip in sorted(ips, key=lambda t: int(IPv4Address(t)))],
                 "ports": [{"name": n, "port": port, "protocol": proto} for n, proto in self.endpoint_ports]}
                for port, ips in sorted(by_port.items())]


def kubernetes_service(service_range: IPv4Network = DEFAULT_SERVICE_RANGE) -> MasterService:
    return MasterService(
        namespace=KUBERNETES_NAMESPACE, name=KUBERNETES_SERVICE, registered="api",
        cluster_ip=str(kubernetes_service_ip(service_range)),
        ports=({"name": KUBERNETES_PORT_NAME, "port": 443, "protocol": "TCP", "targetPort": KUBERNETES_PORT_NAME},),
        endpoint_ports=((KUBERNETES_PORT_NAME, "TCP"),),
        labels={"component": "apiserver", "provider": "kubernetes"},
        endpoint_labels={"endpointslice.kubernetes.io/skip-mirror": "true"},
        manager="apiserver-endpoints-controller", reserved_ip=True)


class MasterServiceController:
    """The leader's loop keeping one `MasterService` (Namespace, Service, Endpoints) as the
    masters' registrations say. One key; queued by the registrations' watch, by any change of
    the Service or Endpoints (also someone deleting them), and by the informers' resync."""

    def __init__(self, objects: ObjectStore, informers: Informers, spec: MasterService, *, writer: Writer) -> None:
        self.objects = objects
        self.inf = informers
        self.writer = writer
        self.ms = spec
        self.loop = KeyLoop(spec.manager, self.sync, writer=writer, workers=1)
        self._lock = threading.Lock()
        self._masters: dict[str, tuple[str, int]] = {}  # registration key -> address
        self._listed = threading.Event()
        self._warned_ip = False
        self._ports = admit(spec.service()).object["spec"]["ports"]
        informers.services.add_handler(self._on_object)
        informers.endpoints.add_handler(self._on_object)

    def _on_object(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None and meta.namespaced_name(obj) == self.ms.key and self._listed.is_set():
            self.loop.queue.add(self.ms.key)

    def run(self, stop: threading.Event) -> None:
        watcher = threading.Thread(target=self._follow, args=(stop,), name=f"{self.ms.manager}-masters",
                                   daemon=True)
        watcher.start()
        self.loop.run(stop)
        watcher.join(timeout=5)

    def _follow(self, stop: threading.Event) -> None:
        prefix = masters_prefix(self.objects.keys)
        what = self.ms.registered
        for item in list_watch(self.objects.store, prefix, stop=stop):
            with self._lock:
                if isinstance(item, Resync):
                    self._masters = {kv.key: a for kv in item.items if (a := registered(kv.value, what))}
                else:
                    for ev in item:
                        addr = registered(ev.value, what) if ev.kind == "put" and ev.value is not None else None
                        if addr is None:
                            self._masters.pop(ev.key, None)
                        else:
                            self._masters[ev.key] = addr
            self._listed.set()
            self.loop.queue.add(self.ms.key)

    def masters(self) -> list[tuple[str, int]]:
        with self._lock:
            return sorted(self._masters.values())

    def sync(self, key: str) -> None:
        if not self._listed.is_set():
            return  # never write the Endpoints from a registration list we have not read
        ns = self.ms.namespace
        if self.objects.get(NAMESPACE, ns) is None:
            try:
                self.objects.create(admit({"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": ns}}).object, guards=self.writer.guards)
                log.info("%s: created namespace %s", self.ms.manager, ns)
            except AlreadyExists:
                pass
        self._sync_service()
        self._sync_endpoints()

    def _sync_service(self) -> None:
        ms = self.ms
        svc = self.inf.services.get(ms.name, ms.namespace)
        guards = self.writer.guards
        if svc is None:
            want = admit(ms.service()).object
            self._claim(self.ms.cluster_ip)
            try:
                self.objects.create(want, guards=guards)
            except AlreadyExists:
                return  # our cache is behind: the informer's event queues us again
            log.info("%s: created service %s on %s", ms.manager, self.ms.key, self.ms.cluster_ip)
            return
        spec = svc.get("spec") or {}
        if spec.get("clusterIP") != self.ms.cluster_ip and not self._warned_ip:
            self._warned_ip = True
            log.warning("%s: service %s has cluster IP %s, not %s (cluster IPs are immutable: "
                        "delete the service to move it)", ms.manager, self.ms.key, spec.get("clusterIP"),
                        self.ms.cluster_ip)
        if spec.get("ports") == self._ports and not spec.get("selector"):
            return
        changed = {**svc, "spec": {**spec, "ports": self._ports}}
        changed["spec"].pop("selector", None)
        self.objects.update(changed, guards=guards)
        log.info("%s: reset the ports of service %s", ms.manager, self.ms.key)

    def _claim(self, ip: str) -> None:
        """The cluster IP's allocation key, owned by `<namespace>/<name>` (the owner `netplane
        apply`/`delete` use, so deleting the Service gives it back); ours already is fine."""
        owner = self.ms.key
        kv = self.objects.store.get(clusterip_key(self.objects.keys, IPv4Address(ip)))
        if kv is not None and kv.value.decode(errors="replace") == owner:
            return
        try:
            ServiceAPI(self.objects.store, self.objects.keys).allocate_ip(
                owner, IPv4Address(ip), reserved_ok=self.ms.reserved_ip)
        except ConfigError as e:
            log.warning("%s: cannot create service %s: %s (owner: %s)", self.ms.manager, self.ms.key, e,
                        kv.value.decode(errors="replace") if kv is not None else "?")
            raise

    def _sync_endpoints(self) -> None:
        ms = self.ms
        current = self.inf.endpoints.get(ms.name, ms.namespace)
        subsets = ms.subsets(self.masters())
        guards = self.writer.guards
        if current is None:
            body: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                         "metadata": {"name": ms.name, "namespace": ms.namespace,
                                      "labels": {**ms.endpoint_labels, MANAGED_BY: ms.manager}},
                         "subsets": subsets}
            try:
                self.objects.create(admit(body).object, guards=guards)
            except AlreadyExists:
                return
        elif (current.get("subsets") or []) == subsets and meta.labels(current).get(MANAGED_BY) == ms.manager:
            return
        else:
            md = {**meta.meta(current), "labels": {**meta.labels(current), MANAGED_BY: ms.manager}}
            self.objects.update({**current, "metadata": md, "subsets": subsets}, guards=guards)
        log.info("%s: endpoints %s", ms.manager, ", ".join(f"{ip}:{p}" for ip, p in self.masters()) or "none")


class KubernetesServiceController(MasterServiceController):
    """`default/kubernetes`, fronting the masters' API servers."""

    def __init__(self, objects: ObjectStore, informers: Informers, *, writer: Writer,
                 service_range: IPv4Network = DEFAULT_SERVICE_RANGE) -> None:
        super().__init__(objects, informers, kubernetes_service(service_range), writer=writer)
