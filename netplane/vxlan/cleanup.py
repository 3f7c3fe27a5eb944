"""Remove a host's overlay state: `netplane net cleanup` (kube-proxy has `--cleanup`; flannel
has nothing, so a host leaving a flannel cluster keeps flannel.1, cni0 and its rules).

The agent keeps its kernel state when it stops, so that a restart interrupts no traffic. This
takes it away for good, for a host leaving the cluster or a VM being reset: the VXLAN device
(`np.<VNI>`, with it every FDB entry, neighbor and route through it), the pod bridge `np0`, the
NETPLANE-FORWARD / NETPLANE-POSTROUTING chains and their jumps, the subnet file, and on request
the subnet lease in etcd. It refuses while pod interfaces are still on the bridge, unless
forced (the pods' runtime owns those; they are left in place, detached). IP forwarding is left
as it is: whether it was on before the agent came is not known.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from netplane.errors import ConfigError
from netplane.subnet import subnetfile
from netplane.vxlan import hostsetup
from netplane.vxlan.desired import BRIDGE
from netplane.vxlan.netlink import Netlink

log = logging.getLogger(__name__)

DEVICE = re.compile(r"^np\.\d+$")  # NetworkConfig.device_name


@dataclass
class Cleanup:
    removed: list[str] = field(default_factory=list)
    subnet: IPv4Network | None = None  # from the subnet file, for releasing the lease
    public_ip: IPv4Address | None = None  # the VXLAN device's local address


def cleanup_host(*, netns_name: str | None, subnet_file: Path | None, force: bool) -> Cleanup:
    out = Cleanup()
    with Netlink(netns_name=netns_name) as nl:
        links = nl.links()
        bridge = next((lk for lk in links if lk.name == BRIDGE and lk.kind == "bridge"), None)
        if bridge is not None and not force:
            ports = sorted(lk.name for lk in links if lk.master == bridge.index)
            if ports:
                shown = ", ".join(ports[:5]) + (", ..." if len(ports) > 5 else "")
                raise ConfigError(f"{len(ports)} pod interface(s) still on {BRIDGE} ({shown}): remove the pods first, "
                                  "or pass --force to leave them detached")
        for lk in links:
            if lk.kind == "vxlan" and DEVICE.match(lk.name):
                out.public_ip = out.public_ip or lk.local
                nl.delete_link(lk.name)
                out.removed.append(f"deleted VXLAN device {lk.name} (VNI {lk.vni}) with its FDB, neighbors and routes")
        if bridge is not None:
            nl.delete_link(bridge.name)
            out.removed.append(f"deleted pod bridge {bridge.name}")
    out.removed += hostsetup.remove_rules(netns_name)
    if subnet_file is not None:
        sf = subnetfile.read(subnet_file)
        if sf is not None:
            out.subnet = sf.subnet
        if subnet_file.exists():
            subnet_file.unlink()
            out.removed.append(f"removed subnet file {subnet_file}")
    return out
