"""Human-readable view of what the proxy programmed for a service (`netplane proxy dump`).

The kernel side knows addresses, not names: iptables rules carry a `svc:port` comment, BPF map
entries are labelled by matching their frontend against the desired state computed from etcd.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from netplane.proxy.desired import ProxyState


def frontend_names(state: ProxyState, service: str | None) -> dict[tuple[IPv4Address, int, str], str]:
    """(VIP or 0.0.0.0 for a nodePort, port, protocol) -> 'service:port'."""
    out: dict[tuple[IPv4Address, int, str], str] = {}
    for k, e in state.entries.items():
        if service is not None and k.service != service:
            continue
        out[(e.vip, e.port, e.protocol)] = str(k)
        if e.node_port is not None:
            out[(IPv4Address(0), e.node_port, e.protocol)] = str(k)
    return out
