"""Service operations over etcd: create (with race-safe ClusterIP/nodePort allocation), delete,
set endpoints, list. What `netplane svc` does; the objects are the registry's v1 Service and
Endpoints (`netplane.proxy.registry`), the same ones `netplane apply` writes.

Allocation is one create-only key per allocated value (`<prefix>/services/clusterips/<ip>`,
`<prefix>/services/nodeports/<port>`), whose value is the owning service's `namespace/name`. Two clients
creating services at once can never get the same IP: exactly one `create` wins, the loser
tries another address. Keys live outside `services/specs/` so the proxy's watch never sees them.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from netplane.errors import ConfigError, NotFoundError
from netplane.proxy.model import (
    DEFAULT_SERVICE_RANGE,
    NODE_PORT_RANGE,
    EndpointAddress,
    Endpoints,
    Service,
    validate_service,
)
from netplane.proxy.registry import (
    DEFAULT_NAMESPACE,
    migrate_legacy,
    proxy_name,
    service_endpoints_object,
)
from netplane.store import EtcdStore, Keys
from netplane.store.keys import check_name
from orchestrator.objects.meta import ENDPOINTS, SERVICE
from orchestrator.objects.service import from_legacy_service, to_proxy_endpoints, to_proxy_service
from orchestrator.storage import AlreadyExists, Conflict, ObjectStore

Obj = dict[str, Any]

log = logging.getLogger(__name__)

RANDOM_TRIES = 32


def clusterip_key(keys: Keys, ip: IPv4Address) -> str:
    return f"{keys.prefix}/services/clusterips/{ip}"


def nodeport_key(keys: Keys, port: int) -> str:
    return f"{keys.prefix}/services/nodeports/{port}"


def usable_hosts(net: IPv4Network) -> tuple[int, int]:
    """First and last allocatable address as ints (skip network, .1 and broadcast)."""
    first = int(net.network_address) + 2 if net.num_addresses > 4 else int(net.network_address)
    last = int(net.broadcast_address) - 1 if net.num_addresses > 4 else int(net.broadcast_address)
    return first, last


class ServiceAPI:
    """What `netplane svc` (and later the orchestrator) does to services."""

    def __init__(self, store: EtcdStore, keys: Keys, *, service_range: IPv4Network = DEFAULT_SERVICE_RANGE,
                 node_port_range: tuple[int, int] = NODE_PORT_RANGE, rng: random.Random | None = None,
                 namespace: str = DEFAULT_NAMESPACE) -> None:
        self.store = store
        self.keys = keys
        self.namespace = namespace
        self._store: ObjectStore | None = None
        self.range = service_range
        self.node_ports = node_port_range
        self.rng = rng or random.Random()

    # ------------------------------------------------------------------ allocation
    def _claim_ip(self, ip: IPv4Address, name: str) -> bool:
        return self.store.create(clusterip_key(self.keys, ip), name)

    def allocate_ip(self, name: str, wanted: IPv4Address | None, *, reserved_ok: bool = False) -> IPv4Address:
        """`wanted`, or a free address of the range, claimed for `name`. The range's first host
        address (.1) is reserved for `default/kubernetes` (`reserved_ok` lets its controller
        claim it); the network and broadcast addresses are never given."""
        if wanted is not None:
            if wanted not in self.range:
                raise ConfigError(f"cluster IP {wanted} is outside the service range {self.range}")
            first, last = usable_hosts(self.range)
            if reserved_ok and int(wanted) == first - 1 and self.range.num_addresses > 4:
                first = int(wanted)
            if not first <= int(wanted) <= last:
                raise ConfigError(f"cluster IP {wanted} is reserved in {self.range}")
            if not self._claim_ip(wanted, name):
                raise ConfigError(f"cluster IP {wanted} is already allocated")
            return wanted
        first, last = usable_hosts(self.range)
        for _ in range(RANDOM_TRIES):
            ip = IPv4Address(self.rng.randint(first, last))
            if self._claim_ip(ip, name):
                return ip
        taken = {kv.key.rsplit("/", 1)[1] for kv in self.store.list(f"{self.keys.prefix}/services/clusterips/")[0]}
        for n in range(first, last + 1):
            ip = IPv4Address(n)
            if str(ip) not in taken and self._claim_ip(ip, name):
                return ip
        raise ConfigError(f"service range {self.range} is full")

    def allocate_node_port(self, name: str, wanted: int | None) -> int:
        lo, hi = self.node_ports
        if wanted is not None:
            if not lo <= wanted <= hi:
                raise ConfigError(f"nodePort {wanted} is outside the node port range {lo}-{hi}")
            if not self.store.create(nodeport_key(self.keys, wanted), name):
                raise ConfigError(f"nodePort {wanted} is already allocated")
            return wanted
        for _ in range(RANDOM_TRIES):
            p = self.rng.randint(lo, hi)
            if self.store.create(nodeport_key(self.keys, p), name):
                return p
        for p in range(lo, hi + 1):
            if self.store.create(nodeport_key(self.keys, p), name):
                return p
        raise ConfigError("node port range is full")

    def _release(self, key: str, name: str) -> None:
        kv = self.store.get(key)
        if kv is not None and kv.value.decode(errors="replace") == name:
            self.store.delete(key, mod_revision=kv.mod_revision)

    # ------------------------------------------------------------------ objects
    def _objects(self) -> ObjectStore:
        if self._store is None:
            self._store = ObjectStore(self.store, self.keys)
            migrate_legacy(self.store, self.keys)
        return self._store

    def _get_v1(self, name: str) -> Obj | None:
        return self._objects().get(SERVICE, check_name("service", name), self.namespace)

    def create(self, svc: Service, *, cluster_ip: IPv4Address | None, endpoints: tuple[IPv4Address, ...] = ()) -> Service:
        """Validate, allocate, store a v1 Service (and, without a selector, its Endpoints).
        `svc.cluster_ip` is ignored in favour of `cluster_ip`."""
        validate_service(svc)
        check_name("service", svc.name)
        if svc.selector and endpoints:
            raise ConfigError(f"service {svc.name} has a selector: its endpoints follow its pods, not --endpoint")
        objects = self._objects()
        if self._get_v1(svc.name) is not None:
            raise ConfigError(f"service {svc.name} already exists")
        owner = proxy_name(self.namespace, svc.name)
        claimed_ip: IPv4Address | None = None
        claimed_ports: list[int] = []
        try:
            claimed_ip = self.allocate_ip(owner, cluster_ip)
            ports = []
            for p in svc.ports:
                if svc.type == "NodePort":
                    np = self.allocate_node_port(owner, p.node_port)
                    claimed_ports.append(np)
                    p = replace(p, node_port=np)
                ports.append(p)
            final = replace(svc, cluster_ip=claimed_ip, ports=tuple(ports))
            v1: dict[str, Any] = dict(from_legacy_service(final))
            v1["metadata"] = {"name": svc.name, "namespace": self.namespace}
            try:
                objects.create(v1)
            except AlreadyExists:
                raise ConfigError(f"service {svc.name} already exists") from None
        except BaseException:
            if claimed_ip is not None:
                self._release(clusterip_key(self.keys, claimed_ip), owner)
            for np in claimed_ports:
                self._release(nodeport_key(self.keys, np), owner)
            raise
        if not svc.selector:
            self.set_endpoints(svc.name, endpoints)
        return final

    def set_endpoints(self, name: str, ips: tuple[IPv4Address, ...]) -> Endpoints:
        """Hand-set the endpoints of a selector-less service (all ready)."""
        current = self._get_v1(name)
        if current is None:
            raise NotFoundError(f"service {name} not found")
        svc = to_proxy_service(current)
        if svc.selector:
            raise ConfigError(f"service {name} has a selector: its endpoints follow its pods "
                              "(the endpoints controller writes them)")
        addrs = {str(ip): True for ip in dict.fromkeys(ips)}
        body = service_endpoints_object(svc, self.namespace, addrs)
        objects = self._objects()
        for _ in range(RANDOM_TRIES):
            have = objects.get(ENDPOINTS, name, self.namespace)
            try:
                if have is None:
                    objects.create(body)
                else:
                    body["metadata"] = {**have["metadata"]}
                    objects.update(body)
                break
            except (AlreadyExists, Conflict):
                continue
        else:
            raise ConfigError(f"endpoints of {name} kept changing under us; try again")
        return Endpoints(name=name, addresses=tuple(EndpointAddress(ip=ip) for ip in dict.fromkeys(ips)))

    def delete(self, name: str) -> None:
        current = self._get_v1(name)
        if current is None:
            raise NotFoundError(f"service {name} not found")
        svc = to_proxy_service(current)
        objects = self._objects()
        objects.delete(SERVICE, name, self.namespace)
        try:
            objects.delete(ENDPOINTS, name, self.namespace)
        except NotFoundError:
            pass
        owner = proxy_name(self.namespace, name)
        self._release(clusterip_key(self.keys, svc.cluster_ip), owner)
        for p in svc.ports:
            if p.node_port:
                self._release(nodeport_key(self.keys, p.node_port), owner)

    def get(self, name: str) -> tuple[Service, Endpoints | None]:
        current = self._get_v1(name)
        if current is None:
            raise NotFoundError(f"service {name} not found")
        ep = self._objects().get(ENDPOINTS, name, self.namespace)
        return to_proxy_service(current), to_proxy_endpoints(ep) if ep is not None else None

    def list(self) -> list[tuple[Service, Endpoints | None]]:
        """The namespace's services the proxy can express (others are logged and skipped)."""
        objects = self._objects()
        svcs, _ = objects.list(SERVICE, self.namespace)
        eps, _ = objects.list(ENDPOINTS, self.namespace)
        epm = {}
        for e in eps:
            try:
                epm[e["metadata"]["name"]] = to_proxy_endpoints(e)
            except ConfigError as err:
                log.warning("skipping endpoints %s: %s", e["metadata"]["name"], err)
        out = []
        for v in svcs:
            try:
                s = to_proxy_service(v)
            except ConfigError as err:
                log.warning("skipping service %s: %s", v["metadata"]["name"], err)
                continue
            out.append((s, epm.get(s.name)))
        return sorted(out, key=lambda t: t[0].name)
