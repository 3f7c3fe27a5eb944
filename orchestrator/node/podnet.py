"""Pod network attachment for the node runtime, like the CNI bridge plugin (written here).

A pod is attached by one veth pair: the pod end is created directly inside the pod's network
namespace as `eth0` (no temporary name in the host namespace to leak), with an address from the
host-local IPAM at the subnet's prefix length, the overlay's MTU and a default route via the
gateway, the pod bridge's address (`<subnet>.1`); `lo` goes up. The host end, named
`npp<12 hex of sha256(owner)>` (distinct from the lab stand-in pods' `npv<hash>` of
netplane.podnet), carries the owner as its ifalias, is enslaved to the bridge `np0` with hairpin
mode (kubelet's hairpin-veth: a pod reaching itself through a service VIP gets its frame back),
and goes up. Deleting the host end deletes the pair, so detach needs no pod namespace: the pod
may already be gone.

Ownership is exact, never by pattern: an attachment exists only for an owner with an IPAM record
(the record is durable before the veth is made, and released only after it is deleted), so
`attached()` and `sweep()` start from the IPAM table and touch only the veths it names.

Host-side calls go to the calling thread's current network namespace (the agent runs inside its
host's namespace), or to `host_netns` when given (tests, a process serving emulated hosts).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, TypeVar

from pyroute2 import IPRoute

from netplane import netns
from netplane.errors import ConfigError, KernelError, NetplaneError
from netplane.vxlan.netlink import rtnl_call
from orchestrator.node.ipam import HostLocalIPAM

log = logging.getLogger(__name__)

T = TypeVar("T")

POD_IFNAME = "eth0"
HOST_VETH_PREFIX = "npp"
AF_INET = 2
RT_TABLE_MAIN = 254


def host_veth_name(owner: str) -> str:
    """The host end's name: stable, at most 15 characters (IFNAMSIZ - 1)."""
    return HOST_VETH_PREFIX + hashlib.sha256(owner.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class _Link:
    index: int
    name: str
    kind: str | None
    peer: int | None  # IFLA_LINK: a veth's peer ifindex (in the peer's namespace)
    master: int | None
    mtu: int
    up: bool
    alias: str | None


class _Rtnl:
    """The few rtnetlink calls pod attachment needs, on one namespace, as typed functions."""

    def __init__(self, where: str, ns: str | None) -> None:
        self.where = where
        with netns.inside(ns):
            self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    def _call(self, what: str, fn: Callable[[], T], *, ok: tuple[int, ...] = ()) -> T | None:
        return rtnl_call(f"{what} in {self.where}", fn, ok=ok)

    def link(self, name: str) -> _Link | None:
        msgs = self._call(f"look up {name}", lambda: self.ipr.link("get", ifname=name), ok=(errno.ENODEV,))
        return _link(msgs[0]) if msgs else None

    def links(self) -> list[_Link]:
        return [_link(m) for m in self._call("list links", lambda: self.ipr.get_links()) or []]

    def add_veth(self, name: str, *, peer: str, peer_netns_fd: int, mtu: int) -> None:
        self._call(
            f"create veth {name} with peer {peer}",
            lambda: self.ipr.link("add", ifname=name, kind="veth", mtu=mtu, peer={"ifname": peer, "net_ns_fd": peer_netns_fd, "mtu": mtu}),
        )

    def set_link(self, link: _Link, what: str, **kw: Any) -> None:
        self._call(f"{what} on {link.name}", lambda: self.ipr.link("set", index=link.index, **kw))

    def delete(self, link: _Link) -> None:
        self._call(f"delete {link.name}", lambda: self.ipr.link("del", index=link.index), ok=(errno.ENODEV,))

    def hairpin(self, link: _Link) -> bool | None:
        """Hairpin mode of a bridge port (None: not a bridge port). Bridge-family links can
        only be dumped, not got one by one."""
        for m in self._call("list bridge ports", lambda: self.ipr.brport("dump")) or []:
            if m["index"] == link.index:
                mode = m.get_nested("IFLA_PROTINFO", "IFLA_BRPORT_MODE")
                return None if mode is None else bool(mode)
        return None

    def set_hairpin(self, link: _Link) -> None:
        self._call(f"set hairpin mode on {link.name}", lambda: self.ipr.brport("set", index=link.index, mode=1))

    def addresses(self, link: _Link) -> set[IPv4Interface]:
        msgs = self._call(f"list addresses of {link.name}", lambda: self.ipr.get_addr(family=AF_INET, index=link.index)) or []
        out = set()
        for m in msgs:
            a = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
            if a and m["index"] == link.index:
                out.add(IPv4Interface(f"{a}/{m['prefixlen']}"))
        return out

    def add_address(self, link: _Link, a: IPv4Interface) -> None:
        self._call(
            f"add address {a} to {link.name}",
            lambda: self.ipr.addr("add", index=link.index, address=str(a.ip), prefixlen=a.network.prefixlen),
            ok=(errno.EEXIST,),
        )

    def del_address(self, link: _Link, a: IPv4Interface) -> None:
        self._call(
            f"remove address {a} from {link.name}",
            lambda: self.ipr.addr("del", index=link.index, address=str(a.ip), prefixlen=a.network.prefixlen),
            ok=(errno.EADDRNOTAVAIL, errno.ENOENT),
        )

    def default_route(self) -> tuple[IPv4Address | None, int | None] | None:
        """(gateway, oif) of the main table's IPv4 default route, or None."""
        msgs = self._call("list routes", lambda: self.ipr.route("dump", family=AF_INET, table=RT_TABLE_MAIN)) or []
        for m in msgs:
            if m["dst_len"] == 0 and m.get_attr("RTA_TABLE", m["table"]) == RT_TABLE_MAIN:
                gw = m.get_attr("RTA_GATEWAY")
                return (IPv4Address(gw) if gw else None, m.get_attr("RTA_OIF"))
        return None

    def replace_default_route(self, gateway: IPv4Address, link: _Link) -> None:
        self._call(
            f"default route via {gateway} dev {link.name}",
            lambda: self.ipr.route("replace", dst="0.0.0.0/0", gateway=str(gateway), oif=link.index, table=RT_TABLE_MAIN),
        )


def _link(m: Any) -> _Link:
    return _Link(
        index=m["index"],
        name=m.get_attr("IFLA_IFNAME"),
        kind=m.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
        peer=m.get_attr("IFLA_LINK"),
        master=m.get_attr("IFLA_MASTER"),
        mtu=m.get_attr("IFLA_MTU"),
        up=bool(m["flags"] & 1),
        alias=m.get_attr("IFLA_IFALIAS"),
    )


@contextmanager
def _rtnl(where: str, ns: str | None) -> Iterator[_Rtnl]:
    r = _Rtnl(where, ns)
    try:
        yield r
    finally:
        r.close()


class PodNetwork:
    def __init__(
        self,
        *,
        bridge: str,
        subnet: IPv4Network,
        gateway: IPv4Address,
        mtu: int,
        ipam: HostLocalIPAM,
        host_netns: str | None = None,
    ) -> None:
        if ipam.subnet != subnet:
            raise ConfigError(f"pod network for {subnet} given an IPAM of {ipam.subnet}")
        if gateway not in subnet or gateway not in ipam.reserved:
            raise ConfigError(f"gateway {gateway} must be an address of {subnet} that the IPAM never hands out")
        if not 68 <= mtu <= 65535:
            raise ConfigError(f"pod MTU {mtu} out of range (68-65535)")
        self.bridge = bridge
        self.subnet = subnet
        self.gateway = gateway
        self.mtu = mtu
        self.ipam = ipam
        self.host_netns = host_netns
        self._host_where = f"host netns {host_netns}" if host_netns else "the host netns"

    # ---------------------------------------------------------------- API
    def attach(self, owner: str, netns_path: str) -> IPv4Address:
        """Attach the pod whose network namespace is `netns_path`; returns its address.

        Idempotent: attaching an attached pod changes nothing and returns the same address;
        a missing or changed piece (link down, off the bridge, address, MTU, route) is put
        back. A failed first attach leaves nothing behind (veth deleted, address released)."""
        netns_path = netns.netns_path(netns_path)
        had = self.ipam.ip_of(owner)
        ip = self.ipam.allocate(owner)
        name = host_veth_name(owner)
        try:
            with _rtnl(self._host_where, self.host_netns) as host, _rtnl(f"pod netns {netns_path}", netns_path) as pod:
                created, repairs = self._attach(host, pod, owner=owner, name=name, netns_path=netns_path, ip=ip)
        except BaseException as e:
            if had is None:
                self._undo(owner, name)
            if isinstance(e, KernelError):
                raise KernelError(f"attach pod {owner} ({netns_path}): {e}", errno=e.errno) from e
            raise
        if created:
            log.info("attached pod %s (%s): %s on %s, %s via %s", owner, netns_path, ip, name, self.bridge, self.gateway)
        elif repairs:
            log.warning("re-attached pod %s (%s) %s: repaired %s", owner, netns_path, ip, ", ".join(repairs))
        return ip

    def detach(self, owner: str) -> None:
        """Remove the pod's veth pair (its host end is enough) and release its address.

        Idempotent; the pod's namespace may already be gone (then so is the pair)."""
        name = host_veth_name(owner)
        try:
            with _rtnl(self._host_where, self.host_netns) as host:
                hv = host.link(name)
                if hv is not None:
                    if hv.alias not in (None, owner):
                        raise KernelError(f"{name} belongs to pod {hv.alias!r}, not {owner!r}: left alone")
                    host.delete(hv)
        except KernelError as e:
            raise KernelError(f"detach pod {owner}: {e}", errno=e.errno) from e
        # only after the veth is gone: an address is never free while a pod still holds it
        if self.ipam.release(owner) or hv is not None:
            log.info("detached pod %s (%s)", owner, name)

    def attached(self) -> dict[str, IPv4Address]:
        """owner -> address of every pod with an address record and its host veth present
        (after an agent restart: what to adopt). A record whose owner holds addresses in an
        old subnet and the current one maps to the current one."""
        by_owner: dict[str, IPv4Address] = {}
        for ip, owner in sorted(self.ipam.allocations().items()):
            if owner not in by_owner or (ip in self.subnet and by_owner[owner] not in self.subnet):
                by_owner[owner] = ip
        with _rtnl(self._host_where, self.host_netns) as host:
            links = {lk.name: lk for lk in host.links()}
        out = {}
        for owner, ip in by_owner.items():
            lk = links.get(host_veth_name(owner))
            if lk is not None and lk.alias in (None, owner):
                out[owner] = ip
        return out

    def sweep(self, keep: set[str]) -> list[str]:
        """Detach every owner with an address record that is not in `keep`; returns them.

        Only owners the IPAM knows are touched (their veths and records), so the pods of
        another runtime or of the lab's stand-ins are left alone. Do not run it concurrently
        with attach() of a pod missing from `keep`."""
        gone = sorted(set(self.ipam.allocations().values()) - keep)
        for owner in gone:
            self.detach(owner)
        if gone:
            log.info("swept %d pod attachment(s): %s", len(gone), ", ".join(gone))
        return gone

    # ---------------------------------------------------------------- internals
    def _attach(self, host: _Rtnl, pod: _Rtnl, *, owner: str, name: str, netns_path: str, ip: IPv4Address) -> tuple[bool, list[str]]:
        br = host.link(self.bridge)
        if br is None or br.kind != "bridge":
            raise KernelError(f"the pod bridge {self.bridge} does not exist on this host (is the overlay up?)")
        hv, eth0 = host.link(name), pod.link(POD_IFNAME)
        if hv is not None:
            if hv.kind != "veth" or hv.alias not in (None, owner):
                raise KernelError(f"{name} exists and is not pod {owner}'s veth (kind {hv.kind}, alias {hv.alias!r})")
            if not (eth0 is not None and hv.peer == eth0.index and eth0.peer == hv.index):
                log.warning("replacing %s of pod %s: its peer is not %s in %s", name, owner, POD_IFNAME, netns_path)
                host.delete(hv)
                hv = None
        created = False
        if hv is None:
            if eth0 is not None:
                raise KernelError(f"{netns_path} already has an {POD_IFNAME} that is not pod {owner}'s veth")
            try:
                fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise KernelError(f"open {netns_path}: {e.strerror or e}", errno=e.errno) from e
            try:
                host.add_veth(name, peer=POD_IFNAME, peer_netns_fd=fd, mtu=self.mtu)
            finally:
                os.close(fd)
            created = True
            hv, eth0 = host.link(name), pod.link(POD_IFNAME)
            if hv is None or eth0 is None:
                raise KernelError(f"veth {name} / {POD_IFNAME} vanished right after it was created")
        assert eth0 is not None
        repairs = self._ensure_host(host, hv, br, owner) + self._ensure_pod(pod, eth0, ip)
        return created, repairs

    def _ensure_host(self, host: _Rtnl, hv: _Link, br: _Link, owner: str) -> list[str]:
        fixed = []
        if hv.alias != owner:
            host.set_link(hv, "set alias", ifalias=owner)
            fixed.append("host veth alias")
        if hv.mtu != self.mtu:
            host.set_link(hv, f"set MTU {self.mtu}", mtu=self.mtu)
            fixed.append(f"host veth MTU {hv.mtu} -> {self.mtu}")
        if hv.master != br.index:
            host.set_link(hv, f"attach to {self.bridge}", master=br.index)
            fixed.append(f"host veth on {self.bridge}")
        if not host.hairpin(hv):
            host.set_hairpin(hv)
            fixed.append("hairpin mode")
        if not hv.up:
            host.set_link(hv, "set up", state="up")
            fixed.append("host veth up")
        return fixed

    def _ensure_pod(self, pod: _Rtnl, eth0: _Link, ip: IPv4Address) -> list[str]:
        fixed = []
        if eth0.mtu != self.mtu:
            pod.set_link(eth0, f"set MTU {self.mtu}", mtu=self.mtu)
            fixed.append(f"{POD_IFNAME} MTU {eth0.mtu} -> {self.mtu}")
        want = IPv4Interface((ip, self.subnet.prefixlen))
        have = pod.addresses(eth0)
        for a in have - {want}:
            pod.del_address(eth0, a)
            fixed.append(f"{POD_IFNAME} stray address {a} removed")
        if want not in have:
            pod.add_address(eth0, want)
            fixed.append(f"{POD_IFNAME} address {want}")
        if not eth0.up:
            pod.set_link(eth0, "set up", state="up")
            fixed.append(f"{POD_IFNAME} up")
        lo = pod.link("lo")
        if lo is not None and not lo.up:
            pod.set_link(lo, "set up", state="up")
            fixed.append("lo up")
        if pod.default_route() != (self.gateway, eth0.index):
            pod.replace_default_route(self.gateway, eth0)
            fixed.append(f"default route via {self.gateway}")
        return fixed

    def _undo(self, owner: str, name: str) -> None:
        """After a failed first attach: nothing of it stays (the veth before the address)."""
        try:
            with _rtnl(self._host_where, self.host_netns) as host:
                hv = host.link(name)
                if hv is not None and hv.alias in (None, owner):
                    host.delete(hv)
            self.ipam.release(owner)
        except NetplaneError as e:
            log.error("cleaning up the failed attach of pod %s: %s (sweep() will retry)", owner, e)
