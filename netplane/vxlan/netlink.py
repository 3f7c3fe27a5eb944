"""The netlink adapter of the overlay: small typed calls over pyroute2's IPRoute.

The only module of netplane.vxlan that touches the kernel. Every write is idempotent ("ensure,
don't add"): replace instead of add, and deletes tolerate an entry that is already gone. A
socket opened inside a network namespace keeps talking to that namespace, so `Netlink(netns=)`
lets one process program several emulated hosts (tests, `net show --host`).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Self, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netplane import netns
from netplane.errors import KernelError
from netplane.vxlan.desired import DeviceSpec, Fdb, Neighbor, Route

log = logging.getLogger(__name__)

T = TypeVar("T")

AF_INET = 2
NUD_PERMANENT = 0x80
NUD_NOARP = 0x40
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
RT_TABLE_MAIN = 254
RTPROT_NETPLANE = 165  # marks routes we own, so stale ones can be found and removed
ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    kind: str | None
    mac: str | None
    mtu: int
    up: bool
    addresses: tuple[IPv4Interface, ...]
    master: int | None = None
    vni: int | None = None
    port: int | None = None
    local: IPv4Address | None = None
    learning: bool | None = None
    link: int | None = None


def rtnl_call(what: str, fn: Callable[[], T], *, ok: tuple[int, ...] = ()) -> T | None:
    """`fn()` (a pyroute2 call), None when it fails with an errno in `ok`; any other failure
    is a KernelError saying `what` failed and why, with its errno."""
    try:
        return fn()
    except NetlinkError as e:
        if e.code in ok:
            return None
        why = e.args[1] if len(e.args) > 1 else (os.strerror(e.code) if e.code else e)
        raise KernelError(f"{what}: {why}", errno=e.code) from e
    except OSError as e:
        raise KernelError(f"{what}: {e.strerror or e}", errno=e.errno) from e


class Netlink:
    def __init__(self, *, netns_name: str | None = None) -> None:
        self.netns_name = netns_name
        with netns.inside(netns_name):
            self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- plumbing
    def _call(self, what: str, fn: Callable[[], T], *, ok: tuple[int, ...] = ()) -> T | None:
        return rtnl_call(what, fn, ok=ok)

    # ---------------------------------------------------------------- links
    def index(self, name: str) -> int | None:
        r = self._call(f"lookup {name}", lambda: self.ipr.link_lookup(ifname=name))
        return r[0] if r else None

    def links(self) -> list[LinkInfo]:
        msgs = self._call("dump links", lambda: self.ipr.get_links()) or []
        addrs = self._addresses()
        return [self._link(m, addrs.get(m["index"], ())) for m in msgs]

    def link(self, name: str) -> LinkInfo | None:
        idx = self.index(name)
        if idx is None:
            return None
        msgs = self._call(f"get link {name}", lambda: self.ipr.link("get", index=idx), ok=(errno.ENODEV,))
        if not msgs:
            return None
        return self._link(msgs[0], self._addresses(idx).get(idx, ()))

    def _addresses(self, index: int | None = None) -> dict[int, tuple[IPv4Interface, ...]]:
        kw: dict[str, Any] = {"family": AF_INET}
        if index is not None:
            kw["index"] = index
        msgs = self._call("dump addresses", lambda: self.ipr.get_addr(**kw)) or []
        out: dict[int, list[IPv4Interface]] = {}
        for m in msgs:
            a = m.get_attr("IFA_ADDRESS") or m.get_attr("IFA_LOCAL")
            if a:
                out.setdefault(m["index"], []).append(IPv4Interface(f"{a}/{m['prefixlen']}"))
        return {k: tuple(v) for k, v in out.items()}

    @staticmethod
    def _link(m: Any, addrs: tuple[IPv4Interface, ...]) -> LinkInfo:
        kind = m.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        data = m.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA") if kind == "vxlan" else None
        vx: dict[str, Any] = {}
        if data is not None:
            local = data.get_attr("IFLA_VXLAN_LOCAL")
            learning = data.get_attr("IFLA_VXLAN_LEARNING")
            vx = {
                "vni": data.get_attr("IFLA_VXLAN_ID"),
                "port": data.get_attr("IFLA_VXLAN_PORT"),
                "local": IPv4Address(local) if local else None,
                "learning": bool(learning) if learning is not None else None,
                "link": data.get_attr("IFLA_VXLAN_LINK"),
            }
        return LinkInfo(
            index=m["index"],
            name=m.get_attr("IFLA_IFNAME"),
            kind=kind,
            mac=m.get_attr("IFLA_ADDRESS"),
            mtu=m.get_attr("IFLA_MTU"),
            up=bool(m["flags"] & 1),
            addresses=addrs,
            master=m.get_attr("IFLA_MASTER"),
            **vx,
        )

    def add_vxlan(self, spec: DeviceSpec, *, underlay_index: int) -> None:
        self._call(
            f"create vxlan device {spec.name}",
            lambda: self.ipr.link(
                "add",
                ifname=spec.name,
                kind="vxlan",
                vxlan_id=spec.vni,
                vxlan_local=str(spec.local),
                vxlan_port=spec.port,
                vxlan_learning=0,
                vxlan_udp_csum=0,  # like flannel: no outer UDP checksum (the inner packet has its own)
                vxlan_link=underlay_index,
                mtu=spec.mtu,
            ),
            ok=(errno.EEXIST,),
        )

    def add_bridge(self, name: str, *, mtu: int) -> None:
        self._call(f"create bridge {name}", lambda: self.ipr.link("add", ifname=name, kind="bridge", mtu=mtu), ok=(errno.EEXIST,))

    def add_veth(self, name: str, peer: str) -> None:
        self._call(f"create veth {name}", lambda: self.ipr.link("add", ifname=name, kind="veth", peer=peer))

    def delete_link(self, name: str) -> None:
        idx = self.index(name)
        if idx is not None:
            self._call(f"delete {name}", lambda: self.ipr.link("del", index=idx), ok=(errno.ENODEV,))

    def set_link(self, name: str, **kw: Any) -> None:
        """`mtu=`, `state='up'`, `master=index`, `net_ns_fd=`, `ifname=`..."""
        idx = self.index(name)
        if idx is None:
            raise KernelError(f"no such device {name}", errno=errno.ENODEV)
        self._call(f"set {name} {kw}", lambda: self.ipr.link("set", index=idx, **kw))

    def set_hairpin(self, name: str) -> None:
        """Hairpin mode on a bridge port (frames may leave by the port they came in on)."""
        idx = self._need(name)
        self._call(f"hairpin on {name}", lambda: self.ipr.brport("set", index=idx, mode=1))

    def add_address(self, name: str, addr: IPv4Interface) -> None:
        idx = self._need(name)
        self._call(
            f"add {addr} to {name}",
            lambda: self.ipr.addr("add", index=idx, address=str(addr.ip), prefixlen=addr.network.prefixlen),
            ok=(errno.EEXIST,),
        )

    def del_address(self, name: str, addr: IPv4Interface) -> None:
        idx = self._need(name)
        self._call(
            f"remove {addr} from {name}",
            lambda: self.ipr.addr("del", index=idx, address=str(addr.ip), prefixlen=addr.network.prefixlen),
            ok=(errno.EADDRNOTAVAIL, errno.ENOENT),
        )

    def _need(self, name: str) -> int:
        idx = self.index(name)
        if idx is None:
            raise KernelError(f"no such device {name}", errno=errno.ENODEV)
        return idx

    # ---------------------------------------------------------------- neighbors / FDB
    def neighbors(self, ifindex: int) -> set[Neighbor]:
        """Permanent IPv4 neighbors on a device (the ones we program)."""
        msgs = self._call("dump neighbors", lambda: self.ipr.neigh("dump", ifindex=ifindex, family=AF_INET)) or []
        out = set()
        for m in msgs:
            if m["ifindex"] != ifindex or not m["state"] & NUD_PERMANENT:
                continue
            ip, mac = m.get_attr("NDA_DST"), m.get_attr("NDA_LLADDR")
            if ip and mac:
                out.add(Neighbor(IPv4Address(ip), mac))
        return out

    def neigh_replace(self, ifindex: int, n: Neighbor) -> None:
        self._call(
            f"neighbor {n.ip} -> {n.mac}",
            lambda: self.ipr.neigh("replace", ifindex=ifindex, dst=str(n.ip), lladdr=n.mac, state=NUD_PERMANENT),
        )

    def neigh_del(self, ifindex: int, n: Neighbor) -> None:
        self._call(
            f"delete neighbor {n.ip}",
            lambda: self.ipr.neigh("del", ifindex=ifindex, dst=str(n.ip), lladdr=n.mac),
            ok=(errno.ENOENT, errno.ESRCH),
        )

    def fdb(self, ifindex: int) -> set[Fdb]:
        """Unicast FDB entries with a remote destination on a VXLAN device."""
        msgs = self._call("dump fdb", lambda: self.ipr.fdb("dump", ifindex=ifindex)) or []
        out = set()
        for m in msgs:
            if m["ifindex"] != ifindex:
                continue
            mac, dst = m.get_attr("NDA_LLADDR"), m.get_attr("NDA_DST")
            if mac and dst and mac != ZERO_MAC and ":" not in str(dst):
                out.add(Fdb(mac, IPv4Address(dst)))
        return out

    def fdb_replace(self, ifindex: int, f: Fdb) -> None:
        self._call(
            f"fdb {f.mac} -> {f.dst}",
            lambda: self.ipr.fdb(
                "replace", ifindex=ifindex, lladdr=f.mac, dst=str(f.dst), state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF
            ),
        )

    def fdb_del(self, ifindex: int, f: Fdb) -> None:
        self._call(
            f"delete fdb {f.mac} -> {f.dst}",
            lambda: self.ipr.fdb("del", ifindex=ifindex, lladdr=f.mac, dst=str(f.dst)),
            ok=(errno.ENOENT, errno.ESRCH),
        )

    # ---------------------------------------------------------------- routes
    def routes(self, *, names: dict[int, str], oif: int | None = None, proto: int | None = None) -> set[Route]:
        """IPv4 main-table routes out of `oif` or tagged with `proto` (either matches)."""
        msgs = self._call("dump routes", lambda: self.ipr.route("dump", family=AF_INET, table=RT_TABLE_MAIN)) or []
        out = set()
        for m in msgs:
            dev = m.get_attr("RTA_OIF")
            if not ((oif is not None and dev == oif) or (proto is not None and m["proto"] == proto)):
                continue
            gw, dst = m.get_attr("RTA_GATEWAY"), m.get_attr("RTA_DST")
            if gw is None or dst is None:
                continue
            out.add(
                Route(
                    IPv4Network(f"{dst}/{m['dst_len']}"),
                    IPv4Address(gw),
                    names.get(dev, str(dev)),
                    onlink=bool(m["flags"] & RTNH_F_ONLINK),
                )
            )
        return out

    def route_replace(self, r: Route, *, oif: int) -> None:
        self._call(
            f"route {r.dst} via {r.gateway} dev {r.dev}",
            lambda: self.ipr.route(
                "replace",
                dst=str(r.dst),
                gateway=str(r.gateway),
                oif=oif,
                flags=RTNH_F_ONLINK if r.onlink else 0,
                proto=RTPROT_NETPLANE,
                table=RT_TABLE_MAIN,
            ),
        )

    def route_del(self, r: Route) -> None:
        self._call(
            f"delete route {r.dst}",
            lambda: self.ipr.route("del", dst=str(r.dst), gateway=str(r.gateway), table=RT_TABLE_MAIN),
            ok=(errno.ESRCH, errno.ENOENT),
        )

    def add_default_route(self, gateway: IPv4Address) -> None:
        self._call(f"default route via {gateway}", lambda: self.ipr.route("replace", dst="0.0.0.0/0", gateway=str(gateway)))

    def default_route_oif(self) -> int | None:
        msgs = self._call("dump routes", lambda: self.ipr.route("dump", family=AF_INET, table=RT_TABLE_MAIN)) or []
        for m in msgs:
            if m["dst_len"] == 0:
                return m.get_attr("RTA_OIF")
        return None
