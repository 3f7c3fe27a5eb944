"""Entering network namespaces (only the network namespace).

`ip netns exec` also unshares the mount namespace and remounts /sys, which hides
/sys/fs/cgroup and /sys/fs/bpf. netplane processes in a host namespace need both, so we enter
only the network namespace with setns(2) on /run/netns/NAME.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from netplane.errors import KernelError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name_or_path: str) -> str:
    return name_or_path if name_or_path.startswith("/") else str(NETNS_RUN_DIR / name_or_path)


def setns_fd(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise KernelError(f"setns: {os.strerror(err)}", errno=err)


def enter(name_or_path: str) -> None:
    """Move the calling thread into a network namespace, for good."""
    path = netns_path(name_or_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise KernelError(f"network namespace {name_or_path}: {e.strerror}", errno=e.errno) from e
    try:
        setns_fd(fd)
    finally:
        os.close(fd)


@contextmanager
def inside(name_or_path: str | None) -> Iterator[None]:
    """Run the body with the calling thread in a network namespace, then come back.

    Sockets created inside stay in that namespace after we leave, which is how one process can
    listen in one namespace and connect in another.
    """
    if name_or_path is None:
        yield
        return
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter(name_or_path)
        try:
            yield
        finally:
            setns_fd(here)
    finally:
        os.close(here)


_ENTER_SCRIPT = 'cg=$1; ns=$2; shift 2; if [ -n "$cg" ]; then echo $$ > "$cg" || exit 126; fi; exec nsenter --net="$ns" -- "$@"'


def command_in(name_or_path: str | None, argv: list[str], *, cgroup: str | None = None) -> list[str]:
    """`argv` rewritten to run inside a network namespace (and cgroup v2 dir), entering only
    the network namespace. No Python runs between fork and exec (unlike `preexec_fn`, which is
    unsafe in a process running gRPC threads): a shell joins the cgroup and execs nsenter."""
    if name_or_path is None and cgroup is None:
        return list(argv)
    if name_or_path is None:
        return ["sh", "-c", 'echo $$ > "$1" || exit 126; shift; exec "$@"', "sh", f"{cgroup}/cgroup.procs", *argv]
    return ["sh", "-c", _ENTER_SCRIPT, "sh", f"{cgroup}/cgroup.procs" if cgroup else "", netns_path(name_or_path), *argv]


def preexec(name_or_path: str | None) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess that puts the child in the namespace before exec.

    Only for single-threaded callers; prefer `command_in`."""
    if name_or_path is None:
        return None
    path = netns_path(name_or_path)

    def _enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            os._exit(127)
        os.close(fd)

    return _enter


def exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()
