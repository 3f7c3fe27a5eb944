"""Stale UDP flows: conntrack entries DNATed to an endpoint that is gone live on (UDP has no
close), so the iptables and nftables backends delete them after a sync removed endpoints."""

from __future__ import annotations

import logging
import shutil

from netplane import ipt
from netplane.proxy.desired import LbKey, ProxyState, removed_udp_backends

log = logging.getLogger(__name__)


def flush_removed_udp(old: ProxyState, new: ProxyState, changed: set[LbKey] | None, *, netns: str | None) -> None:
    """Delete conntrack entries of UDP flows to endpoints present in `old` and gone in `new`."""
    ct = shutil.which("conntrack") or shutil.which("conntrack", path="/usr/sbin:/sbin")
    if ct is None:
        log.warning("conntrack not installed: stale UDP flows are not flushed")
        return
    for e, b in removed_udp_backends(old, new, changed):
        ipt.run([ct, "-D", "-p", "udp", "--orig-dst", str(e.vip), "--dst-nat", str(b.ip)], netns=netns, check=False)
        if e.node_port is not None:
            ipt.run([ct, "-D", "-p", "udp", "--orig-port-dst", str(e.node_port), "--dst-nat", str(b.ip)],
                    netns=netns, check=False)
