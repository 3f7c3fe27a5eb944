"""A switch namespace with a bridge and host namespaces wired to it (kernel-test helper)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def switched_hosts(make_netns: Callable[[str], str], n: int, *, net: str, label: str = "h") -> tuple[str, list[str]]:
    """(switch netns, host netns names): host i has eth0 = <net>.{10+i}/24 on the switch's br0.
    All namespaces come from `make_netns`, so the fixture removes them."""
    sw = make_netns("sw")
    ip("-n", sw, "link", "add", "br0", "type", "bridge")
    ip("-n", sw, "link", "set", "br0", "up")
    hosts = []
    for i in range(1, n + 1):
        h = make_netns(f"{label}{i}")
        ip("-n", h, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}", "netns", sw)
        ip("-n", h, "addr", "add", f"{net}.{10 + i}/24", "dev", "eth0")
        ip("-n", h, "link", "set", "eth0", "up")
        ip("-n", sw, "link", "set", f"p{i}", "master", "br0", "up")
        hosts.append(h)
    return sw, hosts
