"""Scratch cgroups that netplane makes itself (tests, benchmarks, demos) and removes exactly.

Creates one directory per chosen v1 controller hierarchy (and optionally under the cgroup2
mount), moves processes in, and removes exactly those directories again. Never touches a
cgroup it did not create, never the root cgroup.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from netplane.errors import KernelError
from stats.cgroups.hierarchy import Hierarchy

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")


@dataclass
class ScratchCgroup:
    path: str  # below the hierarchy roots, e.g. /npt-stats-1a2b3c
    dirs: dict[str, str] = field(default_factory=dict)  # controller (or "v2") -> directory

    @classmethod
    def create(cls, name: str, *, hierarchy: Hierarchy | None = None,
               controllers: Iterable[str] = V1_CONTROLLERS, v2: bool = False) -> ScratchCgroup:
        if not name.strip("/") or ".." in name.split("/"):
            raise ValueError(f"bad scratch cgroup name {name!r}")
        h = hierarchy or Hierarchy.detect()
        cg = cls(path="/" + name.strip("/"))
        mounts = [(c, h.v1_mount(c)) for c in controllers]
        if v2:
            mounts.append(("v2", h.v2))
        try:
            for c, m in mounts:
                if m is None:
                    continue
                d = os.path.join(m, name.strip("/"))
                os.mkdir(d)
                cg.dirs[c] = d
        except OSError as e:
            cg.remove()
            raise KernelError(f"cannot create cgroup {d}: {e.strerror}", errno=e.errno) from e
        return cg

    def add(self, pid: int) -> None:
        """Move a process into every directory of this cgroup."""
        for d in self.dirs.values():
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def enter_fn(self) -> Callable[[], None]:
        """A `preexec_fn` that moves the child into this cgroup before exec."""
        files = [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

        def _enter() -> None:
            me = str(os.getpid())
            for p in files:
                fd = os.open(p, os.O_WRONLY)
                try:
                    os.write(fd, me.encode())
                finally:
                    os.close(fd)

        return _enter

    def set(self, controller: str, filename: str, value: str) -> None:
        with open(os.path.join(self.dirs[controller], filename), "w") as f:
            f.write(value)

    def pids(self) -> list[int]:
        for d in self.dirs.values():
            with open(os.path.join(d, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        return []

    def remove(self, *, timeout: float = 5.0) -> None:
        """rmdir every directory made (waiting for exiting tasks to leave); idempotent."""
        deadline = time.monotonic() + timeout
        for c in list(self.dirs):
            d = self.dirs[c]
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise KernelError(f"cannot remove cgroup {d}: {e.strerror}", errno=e.errno) from e
                    time.sleep(0.02)
            del self.dirs[c]
