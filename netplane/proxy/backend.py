"""The contract between the proxy loop and a data plane (iptables, nftables, eBPF).

The loop computes a `ProxyState` once per change and calls `sync`; `full=True` after a resync
(start, restart, etcd reconnect) means "make the kernel equal to this, removing anything of ours
that is not in it"; otherwise the backend may apply only the difference from its last sync (`changed`, when given,
names the entries that differ, so the backend need not compare 10,000 entries).
`close` stops using the kernel objects but leaves them in place (a restarting agent must not
interrupt traffic); `cleanup` removes everything the backend owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from netplane.proxy.desired import LbKey, ProxyState


@dataclass(frozen=True)
class Placement:
    """Where on a host a data plane programs the kernel. iptables and nftables use `netns` only; eBPF
    attaches to `cgroup`, puts NodePort on `iface` for `node_ip`, tells this host's pods
    (`local_cidr`) from other hosts' and reaches those through `overlay_iface`, SNATed to
    `overlay_ip` (the VXLAN device and its `<subnet>.0` address)."""

    netns: str | None = None
    cgroup: str | None = None
    iface: str | None = None
    node_ip: IPv4Address | None = None
    local_cidr: IPv4Network | None = None
    overlay_iface: str | None = None
    overlay_ip: IPv4Address | None = None


class ProxyBackend(Protocol):
    name: str

    def sync(self, state: ProxyState, *, full: bool, changed: set[LbKey] | None = None) -> None: ...

    def dump(self, service: str | None = None) -> str: ...

    def close(self) -> None: ...

    def cleanup(self) -> None: ...
