"""The overlay's network configuration (flannel's field names) and its validation.

Stored as JSON at `<prefix>/network/config`. Everything that reads or writes it goes through
`parse_config` / `NetworkConfig.to_json`, so a bad CIDR, an impossible SubnetLen or a range that
is off a subnet boundary is reported as one clear `ConfigError` before anything acts on it.
Pure logic: no etcd, no kernel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from netplane.errors import ConfigError, DecodeError
from netplane.store import codec

DEFAULT_SUBNET_LEN = 24
DEFAULT_VNI = 1
DEFAULT_PORT = 4789
MAX_SUBNET_LEN = 30  # .0 (VTEP), .1 (gateway), at least one pod, broadcast
VXLAN_OVERHEAD = 50

_TOP_FIELDS = {"Network", "SubnetLen", "SubnetMin", "SubnetMax", "Backend"}
_BACKEND_FIELDS = {"Type", "VNI", "Port", "MTU", "DirectRouting"}


@dataclass(frozen=True)
class BackendConfig:
    type: str = "vxlan"
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_PORT
    mtu: int | None = None  # None: underlay MTU - 50
    direct_routing: bool = False

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"Type": self.type, "VNI": self.vni, "Port": self.port}
        if self.mtu is not None:
            d["MTU"] = self.mtu
        d["DirectRouting"] = self.direct_routing
        return d


@dataclass(frozen=True)
class NetworkConfig:
    network: IPv4Network
    subnet_len: int
    subnet_min: IPv4Network
    subnet_max: IPv4Network
    backend: BackendConfig

    @property
    def device_name(self) -> str:
        """The VXLAN device: `np.<VNI>` (like flannel.1)."""
        return f"np.{self.backend.vni}"

    def subnet_count(self) -> int:
        """How many subnets lie in [SubnetMin, SubnetMax]."""
        step = 1 << (32 - self.subnet_len)
        return (int(self.subnet_max.network_address) - int(self.subnet_min.network_address)) // step + 1

    def subnets(self) -> list[IPv4Network]:
        """Every leasable subnet, in address order."""
        step = 1 << (32 - self.subnet_len)
        base = int(self.subnet_min.network_address)
        return [IPv4Network((base + i * step, self.subnet_len)) for i in range(self.subnet_count())]

    def contains_subnet(self, net: IPv4Network) -> bool:
        return (
            net.prefixlen == self.subnet_len
            and self.subnet_min.network_address <= net.network_address <= self.subnet_max.network_address
        )

    def mtu_for(self, underlay_mtu: int) -> int:
        return self.backend.mtu if self.backend.mtu is not None else underlay_mtu - VXLAN_OVERHEAD

    def to_json(self) -> dict[str, Any]:
        return {
            "Network": str(self.network),
            "SubnetLen": self.subnet_len,
            "SubnetMin": str(self.subnet_min.network_address),
            "SubnetMax": str(self.subnet_max.network_address),
            "Backend": self.backend.to_json(),
        }

    def check_underlay(self, underlay: Iterable[IPv4Network]) -> None:
        """ConfigError if the cluster network overlaps an underlay network."""
        for u in underlay:
            if self.network.overlaps(u):
                raise ConfigError(f"Network {self.network} overlaps the underlay network {u}")


def _int(m: Mapping[str, Any], name: str, default: int | None, *, what: str) -> int | None:
    v = m.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{what}{name} must be an integer, got {v!r}")
    return v


def _subnet_at(value: Any, name: str, network: IPv4Network, subnet_len: int) -> IPv4Network:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be an IPv4 address string, got {value!r}")
    text = value.split("/")[0]
    try:
        addr = IPv4Address(text)
    except ValueError as e:
        raise ConfigError(f"{name} {value!r} is not an IPv4 address") from e
    if addr not in network:
        raise ConfigError(f"{name} {addr} is outside Network {network}")
    net = IPv4Network((int(addr), subnet_len), strict=False)
    if net.network_address != addr:
        raise ConfigError(f"{name} {addr} is not on a /{subnet_len} subnet boundary (nearest: {net.network_address})")
    return net


def parse_config(raw: Any, *, underlay: Iterable[IPv4Network] = ()) -> NetworkConfig:
    """Validate a decoded JSON object and return a NetworkConfig (ConfigError on any problem)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"network config must be a JSON object, got {type(raw).__name__}")
    unknown = set(raw) - _TOP_FIELDS
    if unknown:
        raise ConfigError(f"unknown network config field(s): {', '.join(sorted(unknown))}")
    if "Network" not in raw:
        raise ConfigError("network config: missing field 'Network'")
    nw = raw["Network"]
    if not isinstance(nw, str):
        raise ConfigError(f"Network must be a CIDR string, got {nw!r}")
    try:
        network = IPv4Network(nw, strict=True)
    except ValueError as e:
        raise ConfigError(f"Network {nw!r} is not a valid IPv4 CIDR: {e}") from e
    if network.prefixlen >= MAX_SUBNET_LEN:
        raise ConfigError(f"Network {network} is too small: it must hold at least two /{MAX_SUBNET_LEN} subnets")
    subnet_len = _int(raw, "SubnetLen", None, what="")
    if subnet_len is None:
        subnet_len = DEFAULT_SUBNET_LEN if network.prefixlen < DEFAULT_SUBNET_LEN else network.prefixlen + 1
    if not network.prefixlen < subnet_len <= MAX_SUBNET_LEN:
        raise ConfigError(
            f"SubnetLen {subnet_len} out of range: must be greater than the Network's /{network.prefixlen} "
            f"and at most {MAX_SUBNET_LEN}"
        )
    total = 1 << (subnet_len - network.prefixlen)
    step = 1 << (32 - subnet_len)
    first = IPv4Network((int(network.network_address) + step, subnet_len))
    last = IPv4Network((int(network.network_address) + (total - 1) * step, subnet_len))
    smin = _subnet_at(raw["SubnetMin"], "SubnetMin", network, subnet_len) if raw.get("SubnetMin") else first
    smax = _subnet_at(raw["SubnetMax"], "SubnetMax", network, subnet_len) if raw.get("SubnetMax") else last
    if smin.network_address > smax.network_address:
        raise ConfigError(f"SubnetMin {smin.network_address} is above SubnetMax {smax.network_address}")
    backend = _parse_backend(raw.get("Backend") or {})
    cfg = NetworkConfig(network=network, subnet_len=subnet_len, subnet_min=smin, subnet_max=smax, backend=backend)
    cfg.check_underlay(underlay)
    return cfg


def _parse_backend(raw: Any) -> BackendConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"Backend must be a JSON object, got {type(raw).__name__}")
    unknown = set(raw) - _BACKEND_FIELDS
    if unknown:
        raise ConfigError(f"unknown Backend field(s): {', '.join(sorted(unknown))}")
    typ = raw.get("Type", "vxlan")
    if typ != "vxlan":
        raise ConfigError(f"Backend.Type {typ!r} is not supported (only 'vxlan')")
    vni = _int(raw, "VNI", DEFAULT_VNI, what="Backend.")
    port = _int(raw, "Port", DEFAULT_PORT, what="Backend.")
    mtu = _int(raw, "MTU", None, what="Backend.")
    assert vni is not None and port is not None
    if not 1 <= vni <= 0xFFFFFF:
        raise ConfigError(f"Backend.VNI {vni} out of range 1..16777215")
    if not 1 <= port <= 65535:
        raise ConfigError(f"Backend.Port {port} out of range 1..65535")
    if mtu is not None and not 576 <= mtu <= 65535:
        raise ConfigError(f"Backend.MTU {mtu} out of range 576..65535")
    dr = raw.get("DirectRouting", False)
    if not isinstance(dr, bool):
        raise ConfigError(f"Backend.DirectRouting must be true or false, got {dr!r}")
    return BackendConfig(type="vxlan", vni=vni, port=port, mtu=mtu, direct_routing=dr)


def load_config(raw: bytes | str) -> NetworkConfig:
    """Decode the stored JSON (DecodeError for unparseable bytes, ConfigError for bad content)."""
    return parse_config(codec.loads(raw))


def decode_config(raw: bytes | str) -> NetworkConfig:
    """Like load_config, but every problem is a DecodeError (for values read from etcd)."""
    try:
        return load_config(raw)
    except ConfigError as e:
        raise DecodeError(f"network config: {e}") from e
