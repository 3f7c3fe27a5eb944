"""Pod network plumbing: a pod's network namespace joined to its host's pod bridge.

For a pod (a network namespace; the lab's stand-in pods, later the orchestrator's namespace
runtime) this makes a veth pair, puts one end on the host's bridge `np0` and the other into the
pod as `eth0` with an address from the host's subnet and a default route via `<subnet>.1`.
The host end gets hairpin mode on its bridge port, as kubelet sets it, so a pod reaching a
service whose backend is itself gets its DNATed frame back. `remove_pod_network` deletes exactly the veth it made. The pod namespace itself belongs to the
caller (`create_netns` / `delete_netns` are here for callers that want us to make it).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from netplane import netns
from netplane.errors import ConfigError, KernelError
from netplane.subnet import subnetfile
from netplane.vxlan.desired import BRIDGE
from netplane.vxlan.netlink import Netlink


@dataclass(frozen=True)
class PodNetwork:
    pod_netns: str
    host_netns: str | None
    host_veth: str
    address: IPv4Interface
    gateway: IPv4Address
    mtu: int


def host_veth_name(pod_netns: str) -> str:
    """A stable, unique (hashed) name of at most 15 characters for the host end."""
    return "npv" + hashlib.sha1(pod_netns.encode()).hexdigest()[:10]


def pod_address(subnet: IPv4Network, index: int) -> IPv4Interface:
    """The `index`-th pod address of a host subnet (1 -> <subnet>.2; .0 and .1 are the host's)."""
    addr = int(subnet.network_address) + 1 + index
    if index < 1 or addr >= int(subnet.broadcast_address):
        raise ConfigError(f"pod index {index} does not fit in {subnet}")
    return IPv4Interface((addr, subnet.prefixlen))


def create_netns(name: str) -> None:
    """Create a named network namespace (like `ip netns add`), with lo up."""
    from pyroute2 import netns as pnetns

    try:
        pnetns.create(name)
    except OSError as e:
        raise KernelError(f"create netns {name}: {e.strerror or e}", errno=e.errno) from e
    with Netlink(netns_name=name) as nl:
        nl.set_link("lo", state="up")


def delete_netns(name: str) -> None:
    from pyroute2 import netns as pnetns

    if netns.exists(name):
        pnetns.remove(name)


def add_pod_network(
    pod_netns: str,
    *,
    host_netns: str | None,
    address: IPv4Interface,
    mtu: int,
    bridge: str = BRIDGE,
    ifname: str = "eth0",
) -> PodNetwork:
    """Plumb `pod_netns` into the host's bridge; the gateway is `<subnet>.1` of `address`."""
    gateway = IPv4Address(int(address.network.network_address) + 1)
    if address.ip in (address.network.network_address, gateway, address.network.broadcast_address):
        raise ConfigError(f"{address} is reserved in {address.network} (.0 VTEP, .1 gateway, broadcast)")
    hv = host_veth_name(pod_netns)
    tmp = "npt" + hv[3:]
    with Netlink(netns_name=host_netns) as host:
        if host.index(bridge) is None:
            raise KernelError(f"the pod bridge {bridge} does not exist on this host (is the agent running?)")
        host.delete_link(hv)  # a leftover from an earlier, interrupted attempt for this pod
        host.add_veth(hv, tmp)
        try:
            fd = os.open(netns.netns_path(pod_netns), os.O_RDONLY)
            try:
                host.set_link(tmp, net_ns_fd=fd)
            finally:
                os.close(fd)
            host.set_link(hv, master=host.index(bridge), mtu=mtu)
            host.set_hairpin(hv)  # like kubelet's hairpin-veth: a pod can reach itself via a service VIP
            host.set_link(hv, state="up")
            with Netlink(netns_name=pod_netns) as pod:
                pod.set_link(tmp, ifname=ifname)
                pod.set_link(ifname, mtu=mtu)
                pod.add_address(ifname, address)
                pod.set_link(ifname, state="up")
                pod.set_link("lo", state="up")
                pod.add_default_route(gateway)
        except BaseException:
            host.delete_link(hv)
            raise
    return PodNetwork(pod_netns=pod_netns, host_netns=host_netns, host_veth=hv, address=address, gateway=gateway, mtu=mtu)


def add_pod_from_subnet_file(pod_netns: str, *, host_netns: str | None, subnet_file: Path, index: int) -> PodNetwork:
    """Same, taking subnet and MTU from the host agent's subnet file."""
    sf = subnetfile.read(subnet_file)
    if sf is None:
        raise ConfigError(f"no subnet file at {subnet_file} (has the host's agent leased a subnet?)")
    return add_pod_network(pod_netns, host_netns=host_netns, address=pod_address(sf.subnet, index), mtu=sf.mtu)


def remove_pod_network(pod_netns: str, *, host_netns: str | None) -> None:
    """Delete the pod's veth pair (its host end is enough); nothing else is touched."""
    with Netlink(netns_name=host_netns) as host:
        host.delete_link(host_veth_name(pod_netns))
