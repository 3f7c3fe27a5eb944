"""hostPort: a container port reachable at the node's own addresses, as the CNI portmap plugin
makes it (kubelet hands it the pod's port mappings; kube-proxy has no part in it).

Without this step a pod's `hostPort` only steers the scheduler (kubernetes#23920: "hostPort
ignored" under CNI without portmap). Here the node runtime keeps one set of nat rules for every
pod it runs with a network, rewritten whole on each change by `iptables-restore --noflush` into
our own chains:

    PREROUTING, OUTPUT  -m addrtype --dst-type LOCAL -j NETPLANE-HOSTPORTS
    NETPLANE-HOSTPORTS  per mapping: [-d hostIP] -p PROTO --dport HOSTPORT
                          -s <pod subnet>  -j MARK 0x2000   (hairpin: a pod of this node reaches it)
                          -s 127.0.0.0/8   -j MARK 0x2000   (from the node itself, on localhost)
                          -j DNAT --to-destination POD_IP:CONTAINER_PORT
    POSTROUTING         -j NETPLANE-HOSTPORT-MASQ: -m mark --mark 0x2000 -j MASQUERADE

The masquerade is portmap's: without it a hairpinned reply would go straight from pod to pod
with the wrong source, and one to 127.0.0.1 could not be routed back. 127.0.0.1 also needs
`route_localnet` on the pod bridge, which is set once any mapping exists (portmap does the
same). Mark bit 0x2000 is portmap's; kube-proxy's iptables mode uses 0x4000. A `hostIP` of
0.0.0.0 (or none) means every local address. UDP conntrack entries are not flushed when a
mapping changes, unlike portmap: a UDP flow that keeps sending reaches the old pod until its
entry expires.

`render` is pure; `HostPorts.sync` applies only when the rendered rules changed (a node that
never had a hostPort gets no chains at all), and `remove_rules` takes chains and jumps away
(`netplane net cleanup`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from netplane import ipt, netns

log = logging.getLogger(__name__)

CHAIN = "NETPLANE-HOSTPORTS"
MASQ_CHAIN = "NETPLANE-HOSTPORT-MASQ"
MARK = "0x2000/0x2000"
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_JUMPS = (
    ("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", CHAIN]),
    ("nat", "OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", CHAIN]),
    ("nat", "POSTROUTING", ["-j", MASQ_CHAIN]),
)


@dataclass(frozen=True, order=True)
class PortMapping:
    protocol: str  # TCP, UDP or SCTP
    host_port: int
    host_ip: str  # "" for every local address
    pod_ip: str
    container_port: int
    pod: str  # namespace/name, for the rule's comment


def mappings_of(pod: Mapping[str, Any], pod_ip: str) -> list[PortMapping]:
    """The pod's hostPort mappings to `pod_ip` (IPv4 only, as the overlay is)."""
    md = pod.get("metadata") or {}
    who = f"{md.get('namespace') or 'default'}/{md.get('name') or ''}"
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            hp, cp = int(p.get("hostPort") or 0), int(p.get("containerPort") or 0)
            proto = str(p.get("protocol") or "TCP")
            if not hp or not cp or proto not in PROTOCOLS:
                continue
            host_ip = str(p.get("hostIP") or "")
            if host_ip in ("0.0.0.0", "::") or ":" in host_ip:
                host_ip = ""
            out.append(PortMapping(proto, hp, host_ip, pod_ip, cp, who))
    return out


def render(mappings: Iterable[PortMapping], pod_subnet: IPv4Network) -> str:
    """The iptables-restore input for our two chains, holding `mappings` (pure)."""
    lines = ["*nat", f":{CHAIN} - [0:0]", f":{MASQ_CHAIN} - [0:0]"]
    for m in sorted(set(mappings)):
        proto = PROTOCOLS[m.protocol]
        match = ([f"-d {IPv4Address(m.host_ip)}/32"] if m.host_ip else []) + [f"-p {proto} -m {proto} --dport {m.host_port}"]
        comment = f'-m comment --comment "{m.pod} hostPort {m.host_port}/{m.protocol}"'
        head = f"-A {CHAIN} {' '.join(match)} {comment}"
        lines += [
            f"{head} -s {pod_subnet} -j MARK --set-xmark {MARK}",
            f"{head} -s 127.0.0.0/8 -j MARK --set-xmark {MARK}",
            f"{head} -j DNAT --to-destination {IPv4Address(m.pod_ip)}:{m.container_port}",
        ]
    lines += [f"-A {MASQ_CHAIN} -m mark --mark {MARK} -j MASQUERADE", "COMMIT"]
    return "\n".join(lines) + "\n"


class HostPorts:
    """The node's hostPort rules, in network namespace `netns_name` (None: the caller's)."""

    def __init__(self, pod_subnet: IPv4Network, bridge: str, *, netns_name: str | None = None) -> None:
        self.pod_subnet, self.bridge, self.netns_name = pod_subnet, bridge, netns_name
        self._lock = threading.Lock()
        self._applied: str | None = None
        self._localnet = False

    def sync(self, mappings: Iterable[PortMapping]) -> bool:
        """Make the rules hold `mappings`; True if anything was written. KernelError on failure
        (the next sync tries again)."""
        wanted = list(mappings)
        rules = render(wanted, self.pod_subnet)
        with self._lock:
            if rules == self._applied:
                return False
            if self._applied is None and not wanted and not self._chain_exists():
                self._applied = rules  # a node without hostPorts: its firewall is left alone
                return False
            ipt.run(["iptables-restore", "-w", "5", "--noflush"], netns=self.netns_name, stdin=rules)
            for table, chain, spec in _JUMPS:
                ipt.ensure_jump(table, chain, spec, netns=self.netns_name)
            if wanted and not self._localnet:
                self._set_route_localnet()
            self._applied = rules
        log.info("hostPort rules: %d mapping(s)", len(wanted))
        return True

    def _chain_exists(self) -> bool:
        return ipt.run(["iptables", "-w", "5", "-t", "nat", "-n", "-L", CHAIN], netns=self.netns_name,
                       check=False).returncode == 0

    def _set_route_localnet(self) -> None:
        path = f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet"
        try:
            with netns.inside(self.netns_name), open(path, "w") as f:
                f.write("1")
            self._localnet = True
        except OSError as e:  # the bridge not there yet: hostPorts on localhost wait for the next sync
            log.info("hostPort: %s: %s", path, e.strerror)


def remove_rules(netns_name: str | None = None) -> list[str]:
    """Our jumps (duplicates too, never others') and chains; what was removed."""
    done = []
    for table, chain, spec in _JUMPS:
        if ipt.remove_jump(table, chain, spec, netns=netns_name):
            done.append(f"removed jump {table} {chain} -> {spec[-1]}")
    for ours in (CHAIN, MASQ_CHAIN):
        if ipt.run(["iptables", "-w", "5", "-t", "nat", "-n", "-L", ours], netns=netns_name, check=False).returncode == 0:
            ipt.run(["iptables", "-w", "5", "-t", "nat", "-F", ours], netns=netns_name)
            ipt.run(["iptables", "-w", "5", "-t", "nat", "-X", ours], netns=netns_name)
            done.append(f"deleted chain nat {ours}")
    return done
