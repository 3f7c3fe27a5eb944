"""cgroup stats: where a cgroup's files are (v1/v2/hybrid) and two readers of them.

`make_reader()` returns the C reader (native/, built by cffi at install) and falls back to the
pure-Python reader when the extension is not built. Both return identical `CgroupStats`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from stats.cgroups.hierarchy import Hierarchy, first_pid
from stats.cgroups.model import (
    BlkioDevice,
    CgroupSpec,
    CgroupStats,
    CpuStats,
    Kind,
    MemoryStats,
    NetInterface,
    PidsStats,
)

log = logging.getLogger(__name__)

__all__ = [
    "BlkioDevice", "CgroupSpec", "CgroupStats", "CpuStats", "Hierarchy", "Kind", "MemoryStats",
    "NetInterface", "PidsStats", "Reader", "first_pid", "make_reader",
]


class Reader(Protocol):
    name: str

    def read(self, spec: CgroupSpec) -> CgroupStats: ...
    def read_many(self, specs: Sequence[CgroupSpec]) -> list[CgroupStats]: ...
    def retain(self, keys: Iterable[str]) -> None: ...
    def open_fds(self) -> int: ...
    def close(self) -> None: ...


def make_reader(kind: Literal["auto", "c", "python"] = "auto") -> Reader:
    """The C reader when built (or asked for), else the pure-Python one."""
    from stats.cgroups import creader, pyreader

    if kind == "python":
        return pyreader.PyReader()
    if creader.AVAILABLE:
        return creader.CReader()
    if kind == "c":
        raise RuntimeError("the C reader is not built (run scripts/install.sh)")
    log.warning("C cgroup reader not built; using the pure-Python reader")
    return pyreader.PyReader()
