"""The overlay a host should have, as plain data computed from (our lease, all leases).

flannel's vxlan backend, per remote host: a permanent neighbor `remote_subnet.0 -> VtepMAC` on
the VXLAN device, an FDB entry `VtepMAC -> PublicIP`, and an onlink route
`remote_subnet via remote_subnet.0 dev np.<VNI>`. With DirectRouting, a peer whose PublicIP is
on our underlay's L2 segment gets a plain route `remote_subnet via PublicIP dev <underlay>`
instead. Pure: the reconciler turns this into netlink calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from netplane.subnet.config import NetworkConfig
from netplane.subnet.lease import Lease

BRIDGE = "np0"


@dataclass(frozen=True)
class Underlay:
    """The interface that carries VXLAN traffic."""

    ifname: str
    address: IPv4Interface  # our PublicIP with its prefix
    mtu: int

    @property
    def public_ip(self) -> IPv4Address:
        return self.address.ip


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    vni: int
    port: int
    local: IPv4Address
    mtu: int
    address: IPv4Interface  # <subnet>.0/32
    underlay: str


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    address: IPv4Interface  # <subnet>.1/<SubnetLen>
    mtu: int


@dataclass(frozen=True)
class Neighbor:
    ip: IPv4Address
    mac: str


@dataclass(frozen=True)
class Fdb:
    mac: str
    dst: IPv4Address


@dataclass(frozen=True)
class Route:
    dst: IPv4Network
    gateway: IPv4Address
    dev: str
    onlink: bool


@dataclass(frozen=True)
class Peer:
    """One remote host, and how we reach it."""

    subnet: IPv4Network
    public_ip: IPv4Address
    vtep_mac: str
    direct: bool

    @property
    def vtep_ip(self) -> IPv4Address:
        return self.subnet.network_address


@dataclass(frozen=True)
class DesiredOverlay:
    network: IPv4Network
    subnet: IPv4Network
    device: DeviceSpec
    bridge: BridgeSpec
    peers: tuple[Peer, ...]

    @property
    def neighbors(self) -> frozenset[Neighbor]:
        return frozenset(Neighbor(p.vtep_ip, p.vtep_mac) for p in self.peers if not p.direct)

    @property
    def fdb(self) -> frozenset[Fdb]:
        return frozenset(Fdb(p.vtep_mac, p.public_ip) for p in self.peers if not p.direct)

    @property
    def routes(self) -> frozenset[Route]:
        out = set()
        for p in self.peers:
            if p.direct:
                out.add(Route(p.subnet, p.public_ip, self.device.underlay, onlink=False))
            else:
                out.add(Route(p.subnet, p.vtep_ip, self.device.name, onlink=True))
        return frozenset(out)


def gateway(subnet: IPv4Network) -> IPv4Interface:
    return IPv4Interface((int(subnet.network_address) + 1, subnet.prefixlen))


def device_spec(config: NetworkConfig, underlay: Underlay, subnet: IPv4Network) -> DeviceSpec:
    return DeviceSpec(
        name=config.device_name,
        vni=config.backend.vni,
        port=config.backend.port,
        local=underlay.public_ip,
        mtu=config.mtu_for(underlay.mtu),
        address=IPv4Interface((subnet.network_address, 32)),
        underlay=underlay.ifname,
    )


def desired(config: NetworkConfig, underlay: Underlay, ours: Lease, leases: Iterable[Lease]) -> DesiredOverlay:
    """Everything the kernel should hold for `ours`, given every lease currently in etcd.

    Leases outside the configured network, of another VNI, or claiming our own PublicIP or
    subnet are ignored (they cannot be reached through this overlay).
    """
    dev = device_spec(config, underlay, ours.subnet)
    peers: dict[IPv4Network, Peer] = {}
    segment = underlay.address.network
    last: IPv4Network | None = None
    for l in sorted(leases, key=lambda x: (int(x.subnet.network_address), x.subnet.prefixlen)):
        if l.subnet == ours.subnet or l.public_ip == underlay.public_ip:
            continue
        if not l.subnet.subnet_of(config.network) or l.attrs.vni != config.backend.vni:
            continue
        if last is not None and l.subnet.network_address <= last.broadcast_address:
            continue  # overlaps the previous kept subnet (sorted order: O(n), not O(n^2))
        direct = config.backend.direct_routing and l.public_ip in segment
        peers[l.subnet] = Peer(subnet=l.subnet, public_ip=l.public_ip, vtep_mac=l.vtep_mac, direct=direct)
        last = l.subnet
    return DesiredOverlay(
        network=config.network,
        subnet=ours.subnet,
        device=dev,
        bridge=BridgeSpec(name=BRIDGE, address=gateway(ours.subnet), mtu=dev.mtu),
        peers=tuple(sorted(peers.values(), key=lambda p: int(p.subnet.network_address))),
    )
