"""Choosing the underlay interface and PublicIP (pure logic over the host's links).

A host with several interfaces is where flannel users get hurt (every Vagrant VM has the same
NAT address 10.0.2.15). So: `--iface` and/or `--public-ip` decide when given; otherwise the only
candidate wins, or the interface holding the default route; and every choice among several
candidates is returned with its reason, for the agent to log. Never a silent guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from netplane.errors import ConfigError
from netplane.vxlan.desired import Underlay
from netplane.vxlan.netlink import LinkInfo


@dataclass(frozen=True)
class Choice:
    underlay: Underlay
    reason: str
    candidates: tuple[str, ...]


def _ours(link: LinkInfo) -> bool:
    return link.name == "np0" or link.name.startswith("np.") or link.master is not None


def choose(
    links: Sequence[LinkInfo],
    *,
    iface: str | None,
    public_ip: IPv4Address | None,
    default_route_ifindex: int | None,
) -> Choice:
    cands = [l for l in links if l.name != "lo" and l.addresses and not _ours(l)]
    names = tuple(f"{l.name}({','.join(str(a) for a in l.addresses)})" for l in cands)
    if iface is not None:
        link = next((l for l in links if l.name == iface), None)
        if link is None:
            raise ConfigError(f"--iface {iface}: no such interface (candidates: {', '.join(names) or 'none'})")
        if not link.addresses:
            raise ConfigError(f"--iface {iface} has no IPv4 address")
        addr = link.addresses[0]
        if public_ip is not None:
            match = [a for a in link.addresses if a.ip == public_ip]
            if not match:
                raise ConfigError(f"--public-ip {public_ip} is not an address of --iface {iface}")
            addr = match[0]
        return Choice(Underlay(link.name, addr, link.mtu), f"--iface {iface}", names)
    if public_ip is not None:
        for l in cands:
            for a in l.addresses:
                if a.ip == public_ip:
                    return Choice(Underlay(l.name, a, l.mtu), f"--public-ip {public_ip} is on {l.name}", names)
        raise ConfigError(f"--public-ip {public_ip} is not an address of any interface (candidates: {', '.join(names) or 'none'})")
    if not cands:
        raise ConfigError("no interface with an IPv4 address to carry the overlay; use --iface")
    if len(cands) == 1:
        l = cands[0]
        return Choice(Underlay(l.name, l.addresses[0], l.mtu), "the only interface with an IPv4 address", names)
    for l in cands:
        if l.index == default_route_ifindex:
            return Choice(
                Underlay(l.name, l.addresses[0], l.mtu),
                f"it holds the default route (of {len(cands)} candidates; pass --iface to choose)",
                names,
            )
    raise ConfigError(
        f"several interfaces could carry the overlay and none holds the default route: {', '.join(names)}; "
        "choose one with --iface or --public-ip"
    )
