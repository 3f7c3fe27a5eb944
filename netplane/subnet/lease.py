"""A host's subnet lease as stored in etcd, and reading all of them.

Key `<prefix>/network/subnets/10.244.3.0-24`, value (flannel's shape)
`{"PublicIP": "...", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "..."}}`
plus an optional `Node` name (ours, ignored by anything that does not know it). The key is
bound to an etcd lease; the TTL left is read from etcd, not stored in the value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any, TypedDict

from netplane.errors import DecodeError, StoreError
from netplane.store import EtcdStore, Keys, codec

log = logging.getLogger(__name__)

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class BackendDataJSON(TypedDict):
    VNI: int
    VtepMAC: str


class LeaseJSON(TypedDict, total=False):
    PublicIP: str
    BackendType: str
    BackendData: BackendDataJSON
    Node: str


@dataclass(frozen=True)
class LeaseAttrs:
    """What a host publishes about itself."""

    public_ip: IPv4Address
    vtep_mac: str
    vni: int
    backend_type: str = "vxlan"
    node: str | None = None

    def to_json(self) -> LeaseJSON:
        d: LeaseJSON = {
            "PublicIP": str(self.public_ip),
            "BackendType": self.backend_type,
            "BackendData": {"VNI": self.vni, "VtepMAC": self.vtep_mac},
        }
        if self.node:
            d["Node"] = self.node
        return d

    def encode(self) -> str:
        return codec.dumps(self.to_json())


@dataclass(frozen=True)
class Lease:
    subnet: IPv4Network
    attrs: LeaseAttrs
    lease_id: int = 0  # the etcd lease the key is bound to (0: none)
    mod_revision: int = 0
    ttl_left: int | None = None  # seconds, when asked for

    @property
    def public_ip(self) -> IPv4Address:
        return self.attrs.public_ip

    @property
    def vtep_mac(self) -> str:
        return self.attrs.vtep_mac

    def with_ttl(self, ttl: int | None) -> Lease:
        return replace(self, ttl_left=ttl)

    def row(self) -> dict[str, Any]:
        """A flat record for `net subnets` and `lab status`."""
        return {
            "subnet": str(self.subnet),
            "public_ip": str(self.public_ip),
            "vtep_mac": self.vtep_mac,
            "vni": self.attrs.vni,
            "node": self.attrs.node,
            "ttl_left": self.ttl_left,
        }


def normalize_mac(mac: str) -> str:
    m = mac.strip().lower().replace("-", ":")
    if not _MAC.match(m):
        raise ValueError(f"not a MAC address: {mac!r}")
    return m


def decode_attrs(raw: bytes | str, what: str = "lease") -> LeaseAttrs:
    m = codec.obj(codec.loads(raw), what)
    ip = codec.convert(f"{what}.PublicIP", lambda: IPv4Address(codec.field(m, "PublicIP", str, what=what)))
    btype = codec.opt(m, "BackendType", str, "vxlan", what=what)
    bd = codec.obj(codec.field(m, "BackendData", dict, what=what), f"{what}.BackendData")
    vni = codec.field(bd, "VNI", int, what=f"{what}.BackendData")
    if not 1 <= vni <= 0xFFFFFF:
        raise DecodeError(f"{what}.BackendData.VNI: {vni} out of range")
    mac = codec.convert(
        f"{what}.BackendData.VtepMAC", lambda: normalize_mac(codec.field(bd, "VtepMAC", str, what=f"{what}.BackendData"))
    )
    node = codec.opt(m, "Node", str, "", what=what) or None
    return LeaseAttrs(public_ip=ip, vtep_mac=mac, vni=vni, backend_type=btype, node=node)


def decoder(keys: Keys) -> Callable[[str, bytes], Lease]:
    """A `reflect` decoder: (key, raw) -> Lease; DecodeError for a bad key or value."""

    def decode(key: str, raw: bytes) -> Lease:
        subnet = codec.convert(f"lease key {key}", lambda: keys.subnet_of(key))
        return Lease(subnet=subnet, attrs=decode_attrs(raw, f"lease {subnet}"))

    return decode


def list_leases(store: EtcdStore, keys: Keys, *, with_ttl: bool = True) -> list[Lease]:
    """Every well-formed lease under the prefix, sorted by subnet; malformed ones are logged and
    skipped. With `with_ttl`, `ttl_left` holds the seconds left on each key's etcd lease (None
    for a key bound to no lease)."""
    items, _ = store.list(keys.subnets)
    decode = decoder(keys)
    out: list[Lease] = []
    for kv in items:
        try:
            lease = decode(kv.key, kv.value)
        except DecodeError as e:
            log.warning("skipping malformed lease at %s: %s", kv.key, e)
            continue
        lease = replace(lease, lease_id=kv.lease, mod_revision=kv.mod_revision)
        if with_ttl and kv.lease:
            try:
                lease = lease.with_ttl(max(store.time_to_live(kv.lease), 0))
            except StoreError as e:
                log.warning("TTL of lease %s: %s", lease.subnet, e)
        out.append(lease)
    out.sort(key=lambda l: int(l.subnet.network_address))
    return out
