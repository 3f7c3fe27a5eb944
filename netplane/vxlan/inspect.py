"""What `netplane net show` prints: a host's kernel overlay state next to the desired state.

Reads the config and leases from etcd and the kernel through the netlink adapter (in the host's
namespace), computes the desired overlay exactly as the agent does, and marks every entry
`ok`, `missing` (desired, not in the kernel) or `stale` (in the kernel, matches no lease), plus
device attributes that differ from the config. Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import Any

from netplane.errors import NotFoundError
from netplane.store import EtcdStore, Keys
from netplane.subnet.config import decode_config
from netplane.subnet.lease import list_leases
from netplane.vxlan.desired import DesiredOverlay, Underlay, desired
from netplane.vxlan.netlink import Netlink
from netplane.vxlan.reconcile import Reconciler


@dataclass(frozen=True)
class Entry:
    kind: str  # device | neighbor | fdb | route
    entry: str
    status: str  # ok | missing | stale | drift

    def row(self) -> dict[str, str]:
        return {"kind": self.kind, "entry": self.entry, "status": self.status}


def _status(desired_set: frozenset[Any], observed_set: frozenset[Any], kind: str, fmt: Any) -> list[Entry]:
    out = [Entry(kind, fmt(x), "ok" if x in observed_set else "missing") for x in desired_set]
    out += [Entry(kind, fmt(x), "stale") for x in observed_set - desired_set]
    return sorted(out, key=lambda e: (e.status != "ok", e.entry))


def inspect_host(store: EtcdStore, keys: Keys, *, netns_name: str | None, host_label: str) -> dict[str, Any]:
    kv = store.get(keys.network_config)
    if kv is None:
        raise NotFoundError(f"no network config at {keys.network_config}")
    cfg = decode_config(kv.value)
    leases = list_leases(store, keys, with_ttl=False)
    with Netlink(netns_name=netns_name) as nl:
        dev = nl.link(cfg.device_name)
        if dev is None or dev.local is None:
            raise NotFoundError(f"{host_label}: no VXLAN device {cfg.device_name} (is the agent running there?)")
        ours = next((l for l in leases if l.public_ip == dev.local), None)
        if ours is None:
            raise NotFoundError(f"{host_label}: no lease in etcd carries this host's address {dev.local}")
        ul_link = next((l for l in nl.links() if any(a.ip == dev.local for a in l.addresses)), None)
        if ul_link is None:
            raise NotFoundError(f"{host_label}: no interface holds the VXLAN local address {dev.local}")
        addr = next(a for a in ul_link.addresses if a.ip == dev.local)
        d: DesiredOverlay = desired(cfg, Underlay(ul_link.name, addr, ul_link.mtu), ours, leases)
        obs = Reconciler(nl).observe(d)
        bridge = nl.link(d.bridge.name)
    entries: list[Entry] = []
    want = d.device
    dev_drift = []
    for what, have, should in (
        ("vni", dev.vni, want.vni),
        ("port", dev.port, want.port),
        ("local", dev.local, want.local),
        ("mtu", dev.mtu, want.mtu),
        ("learning", dev.learning, False),
    ):
        if have != should:
            dev_drift.append(f"{what} {have} (want {should})")
    if want.address not in dev.addresses:
        dev_drift.append(f"address {','.join(map(str, dev.addresses)) or 'none'} (want {want.address})")
    entries.append(
        Entry("device", f"{dev.name} vni {dev.vni} port {dev.port} local {dev.local} mtu {dev.mtu} mac {dev.mac}",
              "ok" if not dev_drift else "drift: " + "; ".join(dev_drift))
    )
    baddr: tuple[IPv4Interface, ...] = bridge.addresses if bridge else ()
    entries.append(
        Entry("bridge", f"{d.bridge.name} {','.join(map(str, baddr)) or '-'}",
              "ok" if bridge and d.bridge.address in baddr else f"missing (want {d.bridge.address})")
    )
    entries += _status(d.neighbors, obs.neighbors, "neighbor", lambda n: f"{n.ip} lladdr {n.mac}")
    entries += _status(d.fdb, obs.fdb, "fdb", lambda f: f"{f.mac} dst {f.dst}")
    entries += _status(
        d.routes, obs.routes, "route", lambda r: f"{r.dst} via {r.gateway} dev {r.dev}" + (" onlink" if r.onlink else "")
    )
    drift = [e for e in entries if e.status != "ok"]
    return {
        "host": host_label,
        "subnet": str(ours.subnet),
        "public_ip": str(ours.public_ip),
        "vtep_mac": ours.vtep_mac,
        "device": cfg.device_name,
        "peers": [
            {"subnet": str(p.subnet), "public_ip": str(p.public_ip), "vtep_mac": p.vtep_mac, "direct": p.direct}
            for p in d.peers
        ],
        "entries": [e.row() for e in entries],
        "drift": len(drift),
        "in_sync": not drift,
    }
