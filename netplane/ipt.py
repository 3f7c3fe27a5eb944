"""iptables tools run in a network namespace, and the one jump an owner of chains inserts into
a built-in chain. Shared by the overlay's host rules (`netplane.vxlan.hostsetup`) and the
iptables proxy (`netplane.proxy.iptables`).

Namespaces are entered with `nsenter --net` rather than a preexec_fn: forking a process that
runs gRPC threads and running Python in the child is unsafe (gRPC's fork handlers).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from netplane import netns as nsmod
from netplane.errors import KernelError

MAX_DUPLICATES = 16  # jumps a crash may have left twice: removed too, and never anyone else's


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise KernelError(f"{name} is not installed (run scripts/install.sh)")
    return path


def run(argv: list[str], *, netns: str | None = None, stdin: str | None = None, check: bool = True,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `argv` (its first element a tool name or path) in `netns`; with `check`, a failure is
    a KernelError carrying the tool's last line of stderr."""
    argv = [tool(argv[0]) if "/" not in argv[0] else argv[0], *argv[1:]]
    full = [tool("nsenter"), f"--net={nsmod.netns_path(netns)}", "--", *argv] if netns else argv
    try:
        p = subprocess.run(full, check=False, input=stdin, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise KernelError(f"{os.path.basename(argv[0])}: {e}") from e
    if check and p.returncode != 0:
        msg = [ln for ln in p.stderr.strip().splitlines() if ln.strip()][-1:] or [f"exit {p.returncode}"]
        raise KernelError(f"{os.path.basename(argv[0])} {' '.join(argv[1:5])}: {msg[0]}")
    return p


def ensure_jump(table: str, chain: str, spec: list[str], *, netns: str | None = None) -> bool:
    """Insert `-I chain 1 spec` unless it is there; True if inserted."""
    if run(["iptables", "-w", "5", "-t", table, "-C", chain, *spec], netns=netns, check=False).returncode == 0:
        return False
    run(["iptables", "-w", "5", "-t", table, "-I", chain, "1", *spec], netns=netns)
    return True


def remove_jump(table: str, chain: str, spec: list[str], *, netns: str | None = None) -> int:
    """Delete `spec` from `chain`, duplicates too; returns how many were deleted."""
    n = 0
    while n < MAX_DUPLICATES and run(["iptables", "-w", "5", "-t", table, "-C", chain, *spec], netns=netns,
                                     check=False).returncode == 0:
        run(["iptables", "-w", "5", "-t", table, "-D", chain, *spec], netns=netns)
        n += 1
    return n
