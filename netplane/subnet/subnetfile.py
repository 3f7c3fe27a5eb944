"""The local subnet file (flannel's subnet.env), written atomically.

It lets a restarted agent ask for the subnet it had even when its lease is gone, and lets
other local tools (a CNI-like runtime, the lab) read the host's subnet and MTU without etcd:

    FLANNEL_NETWORK=10.244.0.0/16
    FLANNEL_SUBNET=10.244.3.1/24
    FLANNEL_MTU=1450
    FLANNEL_IPMASQ=true
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from netplane.context import write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubnetFile:
    network: IPv4Network
    subnet: IPv4Network
    mtu: int
    ipmasq: bool

    def render(self) -> str:
        gw = IPv4Interface((int(self.subnet.network_address) + 1, self.subnet.prefixlen))
        return (
            f"FLANNEL_NETWORK={self.network}\n"
            f"FLANNEL_SUBNET={gw}\n"
            f"FLANNEL_MTU={self.mtu}\n"
            f"FLANNEL_IPMASQ={'true' if self.ipmasq else 'false'}\n"
        )


def write(path: Path, content: SubnetFile) -> None:
    write_atomic(path, content.render())


def parse(text: str) -> SubnetFile:
    """ValueError when a variable is missing or malformed."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        env[k.strip()] = v.strip()
    try:
        return SubnetFile(
            network=IPv4Network(env["FLANNEL_NETWORK"]),
            subnet=IPv4Interface(env["FLANNEL_SUBNET"]).network,
            mtu=int(env["FLANNEL_MTU"]),
            ipmasq=env.get("FLANNEL_IPMASQ", "false") == "true",
        )
    except KeyError as e:
        raise ValueError(f"missing {e.args[0]}") from e


def read(path: Path) -> SubnetFile | None:
    """The remembered subnet, or None (absent or unreadable: logged, never fatal)."""
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("ignoring subnet file %s: %s", path, e)
        return None
