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
0.0.0.0 (or none) means every local address.

UDP and SCTP flows have no close, and nat rules only see a flow's first packet, so after the
rules are written `HostPorts.sync` deletes the conntrack entries a change left stale
(`conntrack_flushes`, from the mappings applied before and the new ones; TCP is left alone, as
upstream leaves it):
  - a mapping added: every flow to its host port (on its hostIP, if it has one), as portmap and
    kubelet's hostport manager do on each ADD. A client that sent before the DNAT existed has an
    un-NATed entry (its packets went to the node itself, blackholed) that would outlive the rule.
  - a mapping removed, or moved to another pod IP or container port: the flows to its host port
    DNATed to the old pod (`--dst-nat OLD_POD_IP`), so a client that keeps sending does not
    reach the gone pod until its entry expires (unless an added mapping's flush covers them).
The mappings applied before are read back from our chain on the first sync, so a restarted
agent also flushes what changed while it was down. Flushing is best effort, in the rules'
namespace: a missing `conntrack` binary is one warning, a failed deletion a logged warning,
and "0 flow entries have been deleted" (exit 1) is normal.

`render` and `conntrack_flushes` are pure; `HostPorts.sync` applies only when the rendered
rules changed (a node that never had a hostPort gets no chains at all), and `remove_rules`
takes chains and jumps away (`netplane net cleanup`).
"""
from __future__ import annotations

import logging
import re
import shlex
import shutil
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from netplane import ipt, netns
from netplane.errors import KernelError

log = logging.getLogger(__name__)

CHAIN = "NETPLANE-HOSTPORTS"
MASQ_CHAIN = "NETPLANE-HOSTPORT-MASQ"
MARK = "0x2000/0x2000"
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
FLUSHED = ("UDP", "SCTP")  # connectionless to conntrack: an entry outlives a rule change (kube-proxy's set)
NO_FLOWS = "0 flow entries have been deleted"  # conntrack -D found nothing (exit 1): not a failure
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
    """The pod's hostPort mappings to `pod_ip` (IPv4 only, as the overlay is); none for a
    hostNetwork pod."""
    md = pod.get("metadata") or {}
    who = f"{md.get('namespace') or 'default'}/{md.get('name') or ''}"
    out: list[PortMapping] = []
    if (pod.get("spec") or {}).get("hostNetwork"):
        return out  # its ports are the node's own: nothing to forward
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


@dataclass(frozen=True, order=True)
class ConntrackFlush:
    """One `conntrack -D`: flows of `protocol` to `host_port` (and `host_ip`, unless ""), only
    those DNATed to `dst_nat` unless that is "" (then every one, NATed or not)."""

    protocol: str
    host_port: int
    host_ip: str
    dst_nat: str

    def argv(self) -> list[str]:
        out = ["-D", "-p", PROTOCOLS[self.protocol], "--orig-port-dst", str(self.host_port)]
        if self.host_ip:
            out += ["--orig-dst", self.host_ip]
        if self.dst_nat:
            out += ["--dst-nat", self.dst_nat]
        return out

    def covers(self, other: ConntrackFlush) -> bool:
        """Every entry `other` deletes, this one deletes too."""
        return (self.protocol, self.host_port) == (other.protocol, other.host_port) \
            and self.host_ip in ("", other.host_ip) and self.dst_nat in ("", other.dst_nat)


def _targets(mappings: Iterable[PortMapping]) -> set[tuple[str, int, str, str, int]]:
    """What the data plane does with each mapping (the pod's name is only a comment)."""
    return {(m.protocol, m.host_port, m.host_ip, m.pod_ip, m.container_port) for m in mappings if m.protocol in FLUSHED}


def conntrack_flushes(old: Iterable[PortMapping], new: Iterable[PortMapping]) -> list[ConntrackFlush]:
    """The conntrack deletions that going from rules holding `old` to rules holding `new` needs
    (pure): for each UDP/SCTP mapping added, every flow to its host port; for each one removed
    (or retargeted), the flows to its host port DNATed to its pod, unless an addition's
    deletion already covers them."""
    before, after = _targets(old), _targets(new)
    added = sorted({ConntrackFlush(p, hp, hip, "") for p, hp, hip, _ip, _cp in after - before})
    removed = sorted({ConntrackFlush(p, hp, hip, ip) for p, hp, hip, ip, _cp in before - after})
    return added + [r for r in removed if not any(a.covers(r) for a in added)]


def parse_applied(listing: str) -> list[PortMapping]:
    """The mappings in `iptables -t nat -S NETPLANE-HOSTPORTS` output: one per DNAT rule (pure;
    lines it cannot read are skipped)."""
    out = []
    for line in listing.splitlines():
        try:
            w = shlex.split(line)
        except ValueError:
            continue
        if w[:2] != ["-A", CHAIN] or _arg(w, "-j") != "DNAT":
            continue
        proto = _BY_IPT_NAME.get(_arg(w, "-p"))
        dest = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+):(\d+)", _arg(w, "--to-destination"))
        port = _arg(w, "--dport")
        if proto is None or dest is None or not port.isdigit():
            continue
        out.append(PortMapping(proto, int(port), _arg(w, "-d").removesuffix("/32"), dest[1], int(dest[2]),
                               _arg(w, "--comment").split(" hostPort ")[0]))
    return out


_BY_IPT_NAME = {v: k for k, v in PROTOCOLS.items()}


def _arg(words: list[str], flag: str) -> str:
    """The word after `flag`, or ""."""
    i = words.index(flag) + 1 if flag in words else len(words)
    return words[i] if i < len(words) else ""


class HostPorts:
    """The node's hostPort rules, in network namespace `netns_name` (None: the caller's)."""

    def __init__(self, pod_subnet: IPv4Network, bridge: str, *, netns_name: str | None = None) -> None:
        self.pod_subnet, self.bridge, self.netns_name = pod_subnet, bridge, netns_name
        self._lock = threading.Lock()
        self._applied: str | None = None
        self._mappings: list[PortMapping] = []  # what `_applied` holds
        self._localnet = False
        self._warned_no_conntrack = False

    def sync(self, mappings: Iterable[PortMapping]) -> bool:
        """Make the rules hold `mappings`, then delete the UDP/SCTP conntrack entries the change
        left stale; True if anything was written. KernelError if the rules could not be
        written (the next sync tries again); a conntrack failure is only logged."""
        wanted = list(mappings)
        rules = render(wanted, self.pod_subnet)
        with self._lock:
            if rules == self._applied:
                return False
            if self._applied is None:  # first sync: what an earlier run left in the kernel
                had = self._read_applied()
                if had is None and not wanted:
                    self._applied = rules  # a node without hostPorts: its firewall is left alone
                    return False
                self._mappings = had or []
            ipt.run(["iptables-restore", "-w", "5", "--noflush"], netns=self.netns_name, stdin=rules)
            for table, chain, spec in _JUMPS:
                ipt.ensure_jump(table, chain, spec, netns=self.netns_name)
            if wanted and not self._localnet:
                self._set_route_localnet()
            self._applied = rules
            old, self._mappings = self._mappings, wanted
            self._flush_conntrack(conntrack_flushes(old, wanted))  # after the rules: new packets meet them
        log.info("hostPort rules: %d mapping(s)", len(wanted))
        return True

    def _read_applied(self) -> list[PortMapping] | None:
        """The mappings our chain holds now, or None if there is no chain."""
        p = ipt.run(["iptables", "-w", "5", "-t", "nat", "-S", CHAIN], netns=self.netns_name, check=False)
        return parse_applied(p.stdout) if p.returncode == 0 else None

    def _flush_conntrack(self, flushes: list[ConntrackFlush]) -> None:
        if not flushes:
            return
        ct = shutil.which("conntrack") or shutil.which("conntrack", path="/usr/sbin:/sbin")
        if ct is None:
            if not self._warned_no_conntrack:
                log.warning("conntrack not installed: UDP flows to changed hostPorts are not flushed "
                            "(run scripts/install.sh)")
                self._warned_no_conntrack = True
            return
        for f in flushes:
            try:
                p = ipt.run([ct, *f.argv()], netns=self.netns_name, check=False)
            except KernelError as e:
                log.warning("hostPort conntrack %s: %s", " ".join(f.argv()), e)
                continue
            if p.returncode != 0 and NO_FLOWS not in p.stderr:
                msg = [ln for ln in p.stderr.strip().splitlines() if ln.strip()][-1:] or [f"exit {p.returncode}"]
                log.warning("hostPort conntrack %s: %s", " ".join(f.argv()), msg[0])
            elif p.returncode == 0:
                log.info("hostPort conntrack %s: %s", " ".join(f.argv()), p.stderr.strip().rsplit(": ", 1)[-1])

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
