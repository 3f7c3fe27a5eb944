"""Service operations over etcd: create (with race-safe ClusterIP/nodePort allocation), delete,
set endpoints, list.

Allocation is one create-only key per allocated value (`<prefix>/services/clusterips/<ip>`,
`<prefix>/services/nodeports/<port>`), whose value is the owning service's name. Two clients
creating services at once can never get the same IP: exactly one `create` wins, the loser
tries another address. Keys live outside `services/specs/` so the proxy's watch never sees them.
"""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from netplane.errors import ConfigError, NotFoundError
from netplane.proxy.model import (
    DEFAULT_SERVICE_RANGE,
    NODE_PORT_RANGE,
    EndpointAddress,
    Endpoints,
    Service,
    decode_endpoints,
    decode_service,
    encode_endpoints,
    encode_service,
    validate_service,
)
from netplane.store import EtcdStore, Keys

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
                 node_port_range: tuple[int, int] = NODE_PORT_RANGE, rng: random.Random | None = None) -> None:
        self.store = store
        self.keys = keys
        self.range = service_range
        self.node_ports = node_port_range
        self.rng = rng or random.Random()

    # ------------------------------------------------------------------ allocation
    def _claim_ip(self, ip: IPv4Address, name: str) -> bool:
        return self.store.create(clusterip_key(self.keys, ip), name)

    def allocate_ip(self, name: str, wanted: IPv4Address | None) -> IPv4Address:
        if wanted is not None:
            if wanted not in self.range:
                raise ConfigError(f"cluster IP {wanted} is outside the service range {self.range}")
            first, last = usable_hosts(self.range)
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
    def create(self, svc: Service, *, cluster_ip: IPv4Address | None, endpoints: tuple[IPv4Address, ...] = ()) -> Service:
        """Validate, allocate, store. `svc.cluster_ip` is ignored in favour of `cluster_ip`."""
        validate_service(svc)
        if self.store.get(self.keys.service(svc.name)) is not None:
            raise ConfigError(f"service {svc.name} already exists")
        claimed_ip: IPv4Address | None = None
        claimed_ports: list[int] = []
        try:
            claimed_ip = self.allocate_ip(svc.name, cluster_ip)
            ports = []
            for p in svc.ports:
                if svc.type == "NodePort":
                    np = self.allocate_node_port(svc.name, p.node_port)
                    claimed_ports.append(np)
                    p = replace(p, node_port=np)
                ports.append(p)
            final = replace(svc, cluster_ip=claimed_ip, ports=tuple(ports))
            if not self.store.create(self.keys.service(svc.name), encode_service(final)):
                raise ConfigError(f"service {svc.name} already exists")
        except BaseException:
            if claimed_ip is not None:
                self._release(clusterip_key(self.keys, claimed_ip), svc.name)
            for np in claimed_ports:
                self._release(nodeport_key(self.keys, np), svc.name)
            raise
        self.set_endpoints(svc.name, endpoints)
        return final

    def set_endpoints(self, name: str, ips: tuple[IPv4Address, ...]) -> Endpoints:
        if self.store.get(self.keys.service(name)) is None:
            raise NotFoundError(f"service {name} not found")
        ep = Endpoints(name=name, addresses=tuple(EndpointAddress(ip=ip) for ip in dict.fromkeys(ips)))
        self.store.put(self.keys.endpoints_of(name), encode_endpoints(ep))
        return ep

    def delete(self, name: str) -> None:
        kv = self.store.get(self.keys.service(name))
        if kv is None:
            raise NotFoundError(f"service {name} not found")
        svc = decode_service(kv.key, kv.value)
        self.store.delete(self.keys.service(name))
        self.store.delete(self.keys.endpoints_of(name))
        self._release(clusterip_key(self.keys, svc.cluster_ip), name)
        for p in svc.ports:
            if p.node_port:
                self._release(nodeport_key(self.keys, p.node_port), name)

    def get(self, name: str) -> tuple[Service, Endpoints | None]:
        kv = self.store.get(self.keys.service(name))
        if kv is None:
            raise NotFoundError(f"service {name} not found")
        ekv = self.store.get(self.keys.endpoints_of(name))
        return decode_service(kv.key, kv.value), decode_endpoints(ekv.key, ekv.value) if ekv else None

    def list(self) -> list[tuple[Service, Endpoints | None]]:
        from netplane.errors import DecodeError

        svcs, _ = self.store.list(self.keys.services)
        eps, _ = self.store.list(self.keys.endpoints)
        epm = {}
        for kv in eps:
            try:
                epm[Keys.name_of(kv.key, self.keys.endpoints)] = decode_endpoints(kv.key, kv.value)
            except DecodeError:
                continue
        out = []
        for kv in svcs:
            try:
                s = decode_service(kv.key, kv.value)
            except DecodeError:
                continue
            out.append((s, epm.get(s.name)))
        return sorted(out, key=lambda t: t[0].name)
