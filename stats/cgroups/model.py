"""What one cgroup read returns, independent of which reader (C or pure Python) produced it.

`Kind` mirrors `enum np_kind` in native/np_reader.h: one stats file kind = one parser.
`RawStats` mirrors `struct np_stats` field for field; both readers fill one, and `finish()`
turns it into the public `CgroupStats`, so the readers can only differ in what they parse, and
the unit tests compare exactly that.
"""

from __future__ import annotations

import errno as errno_mod
import os
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

MAX_CPUS = 256
MAX_DEVS = 32
MAX_IFACES = 32
IFNAMSIZ = 16
U64 = (1 << 64) - 1


class Kind(IntEnum):
    V1_CPUACCT_PERCPU = 0
    V1_CPUACCT_STAT = 1
    V1_CPU_STAT = 2
    V1_MEM_USAGE = 3
    V1_MEM_MAX_USAGE = 4
    V1_MEM_FAILCNT = 5
    V1_MEM_STAT = 6
    V1_BLKIO_BYTES = 7
    V1_BLKIO_OPS = 8
    V2_CPU_STAT = 9
    V2_MEM_CURRENT = 10
    V2_MEM_PEAK = 11
    V2_MEM_STAT = 12
    V2_MEM_SWAP = 13
    V2_MEM_EVENTS = 14
    V2_IO_STAT = 15
    PIDS_CURRENT = 16
    PIDS_MAX = 17
    PROCS = 18
    THREADS = 19
    NETDEV = 20


NKINDS = len(Kind)


@dataclass(frozen=True)
class CgroupSpec:
    """Which files make up one cgroup's stats. `key` names the cgroup (its handle in a reader)."""

    key: str
    files: tuple[tuple[Kind, str], ...]


@dataclass(frozen=True)
class CpuStats:
    usage_ns: int
    user_ns: int
    system_ns: int
    per_cpu_ns: tuple[int, ...]
    nr_periods: int
    nr_throttled: int
    throttled_ns: int


@dataclass(frozen=True)
class MemoryStats:
    usage_bytes: int
    max_usage_bytes: int
    working_set_bytes: int
    rss_bytes: int
    cache_bytes: int
    mapped_file_bytes: int
    swap_bytes: int
    inactive_file_bytes: int
    failcnt: int
    pgfault: int
    pgmajfault: int


@dataclass(frozen=True)
class BlkioDevice:
    major: int
    minor: int
    read_bytes: int
    write_bytes: int
    read_ops: int
    write_ops: int


@dataclass(frozen=True)
class PidsStats:
    current: int | None  # tasks (threads) in the cgroup
    limit: int | None  # pids.max; -1 = unlimited; None = unknown
    processes: int | None  # lines of cgroup.procs


@dataclass(frozen=True)
class NetInterface:
    name: str
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


@dataclass(frozen=True)
class CgroupStats:
    """One cgroup at one moment. A section is None when its files are absent or unreadable;
    `errors` names every file that failed (kind name → message), so a vanished cgroup is an
    error in its own result, never an exception for the batch."""

    key: str
    cpu: CpuStats | None
    memory: MemoryStats | None
    io: tuple[BlkioDevice, ...] | None
    pids: PidsStats | None
    network: tuple[NetInterface, ...] | None
    errors: tuple[tuple[str, str], ...] = ()
    vanished: bool = False  # nothing could be read and every file is gone (ENOENT/ENODEV)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        cpu = self.cpu
        mem = self.memory
        return {
            "key": self.key,
            "cpu": None if cpu is None else {
                "usage_seconds": cpu.usage_ns / 1e9,
                "user_seconds": cpu.user_ns / 1e9,
                "system_seconds": cpu.system_ns / 1e9,
                "per_cpu_usage_seconds": [v / 1e9 for v in cpu.per_cpu_ns],
                "cfs_periods": cpu.nr_periods,
                "cfs_throttled_periods": cpu.nr_throttled,
                "cfs_throttled_seconds": cpu.throttled_ns / 1e9,
            },
            "memory": None if mem is None else {
                "usage_bytes": mem.usage_bytes,
                "max_usage_bytes": mem.max_usage_bytes,
                "working_set_bytes": mem.working_set_bytes,
                "rss_bytes": mem.rss_bytes,
                "cache_bytes": mem.cache_bytes,
                "mapped_file_bytes": mem.mapped_file_bytes,
                "swap_bytes": mem.swap_bytes,
                "failcnt": mem.failcnt,
                "pgfault": mem.pgfault,
                "pgmajfault": mem.pgmajfault,
            },
            "io": None if self.io is None else [
                {"device": f"{d.major}:{d.minor}", "read_bytes": d.read_bytes, "write_bytes": d.write_bytes,
                 "read_ops": d.read_ops, "write_ops": d.write_ops}
                for d in self.io
            ],
            "pids": None if self.pids is None else {
                "current": self.pids.current, "limit": self.pids.limit, "processes": self.pids.processes,
            },
            "network": None if self.network is None else [
                {k: getattr(i, k) for k in NetInterface.__dataclass_fields__} for i in self.network
            ],
            "errors": dict(self.errors),
            "vanished": self.vanished,
        }


@dataclass
class RawStats:
    """Mutable mirror of `struct np_stats` (filled by a reader, then `finish()`ed)."""

    present: int = 0
    failed: int = 0
    err: dict[int, int] = field(default_factory=dict)
    cpu_usage_ns: int = 0
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    percpu_ns: list[int] = field(default_factory=list)
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_ns: int = 0
    mem_usage: int = 0
    mem_max_usage: int = 0
    mem_rss: int = 0
    mem_cache: int = 0
    mem_mapped_file: int = 0
    mem_swap: int = 0
    mem_failcnt: int = 0
    mem_pgfault: int = 0
    mem_pgmajfault: int = 0
    mem_inactive_file: int = 0
    mem_working_set: int = 0
    devs: list[list[int]] = field(default_factory=list)  # [major, minor, rb, wb, rops, wops]
    pids_current: int = 0
    pids_max: int = 0
    nprocs: int = 0
    nthreads: int = 0
    ifaces: list[tuple[str, int, int, int, int, int, int, int, int]] = field(default_factory=list)


def _has(raw: RawStats, *kinds: Kind) -> bool:
    return any(raw.present >> k & 1 for k in kinds)


def finish(key: str, raw: RawStats, paths: dict[Kind, str]) -> CgroupStats:
    """The one conversion from a filled RawStats to CgroupStats (shared by both readers)."""
    cpu = None
    if _has(raw, Kind.V1_CPUACCT_PERCPU, Kind.V2_CPU_STAT):
        cpu = CpuStats(
            usage_ns=raw.cpu_usage_ns, user_ns=raw.cpu_user_ns, system_ns=raw.cpu_system_ns,
            per_cpu_ns=tuple(raw.percpu_ns), nr_periods=raw.nr_periods,
            nr_throttled=raw.nr_throttled, throttled_ns=raw.throttled_ns,
        )
    memory = None
    if _has(raw, Kind.V1_MEM_USAGE, Kind.V2_MEM_CURRENT):
        memory = MemoryStats(
            usage_bytes=raw.mem_usage, max_usage_bytes=raw.mem_max_usage,
            working_set_bytes=raw.mem_working_set, rss_bytes=raw.mem_rss, cache_bytes=raw.mem_cache,
            mapped_file_bytes=raw.mem_mapped_file, swap_bytes=raw.mem_swap,
            inactive_file_bytes=raw.mem_inactive_file, failcnt=raw.mem_failcnt,
            pgfault=raw.mem_pgfault, pgmajfault=raw.mem_pgmajfault,
        )
    io = None
    if _has(raw, Kind.V1_BLKIO_BYTES, Kind.V1_BLKIO_OPS, Kind.V2_IO_STAT):
        io = tuple(BlkioDevice(*d) for d in raw.devs)
    pids = None
    if _has(raw, Kind.PIDS_CURRENT, Kind.PROCS, Kind.THREADS):
        if _has(raw, Kind.PIDS_CURRENT):
            current: int | None = raw.pids_current
        elif _has(raw, Kind.THREADS):
            current = raw.nthreads
        else:
            current = None
        pids = PidsStats(
            current=current,
            limit=raw.pids_max if _has(raw, Kind.PIDS_MAX) else None,
            processes=raw.nprocs if _has(raw, Kind.PROCS) else None,
        )
    network = None
    if _has(raw, Kind.NETDEV):
        network = tuple(NetInterface(*i) for i in raw.ifaces)
    errors = tuple(
        (k.name.lower(), f"{paths.get(k, '?')}: {os.strerror(raw.err.get(k, errno_mod.EIO))}")
        for k in Kind
        if raw.failed >> k & 1
    )
    gone = (errno_mod.ENOENT, errno_mod.ENODEV)
    vanished = bool(raw.failed) and raw.present & ~(1 << Kind.NETDEV) == 0 and all(
        raw.err.get(k) in gone for k in Kind if raw.failed >> k & 1 and k is not Kind.NETDEV
    )
    return CgroupStats(key=key, cpu=cpu, memory=memory, io=io, pids=pids, network=network, errors=errors,
                       vanished=vanished)
