"""Host plumbing around the overlay: IP forwarding, FORWARD accept and masquerade rules,
and turning tx checksum offload off on the VXLAN device.

iptables has no library we trust, so rules go through `iptables-restore --noflush` into our own
chains (NETPLANE-FORWARD in filter, NETPLANE-POSTROUTING in nat), declared with `:CHAIN` so each
apply rewrites them whole; the one jump from the built-in chain is inserted only if missing;
`remove_rules` takes both away again (`netplane net cleanup`).
The tx checksum switch is an ethtool ioctl on a socket opened in the host's namespace.
"""

from __future__ import annotations

import array
import fcntl
import logging
import socket
import struct
from ipaddress import IPv4Network
from pathlib import Path

from netplane import ipt, netns
from netplane.errors import KernelError

log = logging.getLogger(__name__)

FORWARD_CHAIN = "NETPLANE-FORWARD"
POSTROUTING_CHAIN = "NETPLANE-POSTROUTING"

SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x16
ETHTOOL_STXCSUM = 0x17


def render_rules(network: IPv4Network, *, masquerade: bool) -> str:
    """The iptables-restore input for our chains (pure)."""
    lines = [
        "*filter",
        f":{FORWARD_CHAIN} - [0:0]",
        f"-A {FORWARD_CHAIN} -s {network} -m comment --comment \"netplane cluster network\" -j ACCEPT",
        f"-A {FORWARD_CHAIN} -d {network} -m comment --comment \"netplane cluster network\" -j ACCEPT",
        "COMMIT",
        "*nat",
        f":{POSTROUTING_CHAIN} - [0:0]",
        f"-A {POSTROUTING_CHAIN} -s {network} -d {network} -j RETURN",
    ]
    if masquerade:
        lines.append(
            f"-A {POSTROUTING_CHAIN} -s {network} ! -d 224.0.0.0/4 "
            "-m comment --comment \"netplane masquerade leaving the cluster\" -j MASQUERADE --random-fully"
        )
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


_JUMPS = (("filter", "FORWARD", FORWARD_CHAIN), ("nat", "POSTROUTING", POSTROUTING_CHAIN))


def apply_rules(network: IPv4Network, *, masquerade: bool, netns_name: str | None = None) -> None:
    ipt.run(["iptables-restore", "-w", "5", "--noflush"], netns=netns_name, stdin=render_rules(network, masquerade=masquerade))
    for table, chain, ours in _JUMPS:
        ipt.ensure_jump(table, chain, ["-j", ours], netns=netns_name)


def remove_rules(netns_name: str | None = None) -> list[str]:
    """Undo `apply_rules`: our jumps from the built-in chains (duplicates too, never others),
    then our chains. Returns what was removed; nothing to remove is not an error."""
    done = []
    for table, chain, ours in _JUMPS:
        if ipt.remove_jump(table, chain, ["-j", ours], netns=netns_name):
            done.append(f"removed jump {table} {chain} -> {ours}")
        if ipt.run(["iptables", "-w", "5", "-t", table, "-n", "-L", ours], netns=netns_name, check=False).returncode == 0:
            ipt.run(["iptables", "-w", "5", "-t", table, "-F", ours], netns=netns_name)
            ipt.run(["iptables", "-w", "5", "-t", table, "-X", ours], netns=netns_name)
            done.append(f"deleted chain {table} {ours}")
    return done


def enable_forwarding(netns_name: str | None = None) -> None:
    """net.ipv4.ip_forward=1 in the namespace (sysctls under /proc/sys/net follow the caller's)."""
    with netns.inside(netns_name):
        p = Path("/proc/sys/net/ipv4/ip_forward")
        try:
            if p.read_text().strip() != "1":
                p.write_text("1\n")
                log.info("enabled IPv4 forwarding")
        except OSError as e:
            raise KernelError(f"enable ip_forward: {e.strerror}", errno=e.errno) from e


def _ethtool(ifname: str, cmd: int, value: int, netns_name: str | None) -> int:
    with netns.inside(netns_name):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        data = array.array("B", struct.pack("II", cmd, value))
        addr, _ = data.buffer_info()
        ifreq = struct.pack("16sP", ifname.encode()[:15], addr) + b"\0" * 16
        try:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
        except OSError as e:
            raise KernelError(f"ethtool {ifname}: {e.strerror}", errno=e.errno) from e
        return int(struct.unpack("II", data.tobytes())[1])
    finally:
        s.close()


def tx_checksum(ifname: str, netns_name: str | None = None) -> bool:
    return bool(_ethtool(ifname, ETHTOOL_GTXCSUM, 0, netns_name))


def set_tx_checksum(ifname: str, on: bool, netns_name: str | None = None) -> None:
    _ethtool(ifname, ETHTOOL_STXCSUM, 1 if on else 0, netns_name)
    log.info("tx checksum offload %s on %s", "on" if on else "off", ifname)
