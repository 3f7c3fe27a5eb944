"""Which subnet to ask for, in which order (pure logic, unit-tested without etcd).

flannel's order after a restart: a lease that already carries our PublicIP, then the subnet
remembered in the local subnet file, then a random free one. We return that as an ordered list
of candidates so the caller can *retry* with the next one when it loses a creation race
(flannel gives up there).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from netplane.subnet.config import NetworkConfig
from netplane.subnet.lease import Lease


@dataclass(frozen=True)
class Plan:
    """`reuse`: leases already ours (first is kept, the rest are stale duplicates to delete).
    `candidates`: free subnets to try creating, in order."""

    reuse: tuple[Lease, ...]
    candidates: tuple[IPv4Network, ...]


def plan(
    config: NetworkConfig,
    leases: Sequence[Lease],
    *,
    taken: Iterable[IPv4Network],
    public_ip: IPv4Address,
    remembered: IPv4Network | None,
    rng: random.Random,
) -> Plan:
    """`leases`: decoded leases; `taken`: every subnet key present (malformed values included,
    since their key still occupies the subnet)."""
    ours = tuple(
        sorted(
            (l for l in leases if l.public_ip == public_ip and config.contains_subnet(l.subnet)),
            key=lambda l: (l.subnet != remembered, int(l.subnet.network_address)),
        )
    )
    exact = {t for t in taken if t.prefixlen == config.subnet_len}
    odd = [t for t in taken if t.prefixlen != config.subnet_len]  # keys from an older config
    free = [s for s in config.subnets() if s not in exact and not any(s.overlaps(o) for o in odd)]
    first: list[IPv4Network] = []
    if remembered is not None and remembered in free:
        first.append(remembered)
        free.remove(remembered)
    rng.shuffle(free)
    return Plan(reuse=ours, candidates=tuple(first + free))
