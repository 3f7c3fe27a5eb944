"""The C reader (native/np_reader.c through cffi): kept descriptors, parsing in C, batches.

One `struct np_cg` handle per cgroup spec, kept between reads; `read_many` hands the whole
batch to C in one call (`np_read_batch`) into a reused array of `struct np_stats`, then converts
each to `CgroupStats` with the same `finish()` the pure-Python reader uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from stats.cgroups import limits
from stats.cgroups.model import (
    BlkioDevice,
    CgroupSpec,
    CgroupStats,
    CpuStats,
    Kind,
    MemoryStats,
    NetInterface,
    PidsStats,
    RawStats,
    finish,
)

try:
    from stats.cgroups._reader import ffi, lib  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # extension not built: callers fall back to the pure-Python reader
    ffi = None
    lib = None

AVAILABLE = lib is not None


class _Handle:
    __slots__ = ("keep", "paths", "ptr", "spec")

    def __init__(self, spec: CgroupSpec) -> None:
        assert ffi is not None and lib is not None
        self.spec = spec
        n = len(spec.files)
        kinds = ffi.new("int[]", [int(k) for k, _ in spec.files])
        self.keep = [ffi.new("char[]", p.encode()) for _, p in spec.files]
        paths = ffi.new("char *[]", self.keep)
        ptr = lib.np_open(kinds, paths, n)
        if ptr == ffi.NULL:
            raise MemoryError("np_open")
        self.ptr = ptr
        self.paths = dict(spec.files)

    def close(self) -> None:
        if self.ptr is not None:
            lib.np_close(self.ptr)
            self.ptr = None


def to_raw(s: Any) -> RawStats:
    """Copy a `struct np_stats` into a RawStats (only the used parts of the arrays)."""
    raw = RawStats(
        present=s.present, failed=s.failed,
        cpu_usage_ns=s.cpu_usage_ns, cpu_user_ns=s.cpu_user_ns, cpu_system_ns=s.cpu_system_ns,
        percpu_ns=list(ffi.unpack(s.percpu_ns, s.ncpus)) if s.ncpus else [],
        nr_periods=s.nr_periods, nr_throttled=s.nr_throttled, throttled_ns=s.throttled_ns,
        mem_usage=s.mem_usage, mem_max_usage=s.mem_max_usage, mem_rss=s.mem_rss,
        mem_cache=s.mem_cache, mem_mapped_file=s.mem_mapped_file, mem_swap=s.mem_swap,
        mem_failcnt=s.mem_failcnt, mem_pgfault=s.mem_pgfault, mem_pgmajfault=s.mem_pgmajfault,
        mem_inactive_file=s.mem_inactive_file, mem_working_set=s.mem_working_set,
        pids_current=s.pids_current, pids_max=s.pids_max, nprocs=s.nprocs, nthreads=s.nthreads,
    )
    if s.failed:
        raw.err = {k: s.err[k] for k in range(len(Kind)) if s.failed >> k & 1}
    for i in range(s.ndevs):
        d = s.devs[i]
        raw.devs.append([d.major, d.minor, d.read_bytes, d.write_bytes, d.read_ops, d.write_ops])
    for i in range(s.nifaces):
        f = s.ifaces[i]
        raw.ifaces.append((
            ffi.string(f.name).decode("latin-1"), f.rx_bytes, f.rx_packets, f.rx_errors,
            f.rx_dropped, f.tx_bytes, f.tx_packets, f.tx_errors, f.tx_dropped,
        ))
    return raw


def _bits(*kinds: Kind) -> int:
    return sum(1 << k for k in kinds)


_CPU = _bits(Kind.V1_CPUACCT_PERCPU, Kind.V2_CPU_STAT)
_MEM = _bits(Kind.V1_MEM_USAGE, Kind.V2_MEM_CURRENT)
_IO = _bits(Kind.V1_BLKIO_BYTES, Kind.V1_BLKIO_OPS, Kind.V2_IO_STAT)
_PIDS = _bits(Kind.PIDS_CURRENT, Kind.PROCS, Kind.THREADS)
_PC, _PM, _PR, _TH, _NET = (1 << Kind.PIDS_CURRENT, 1 << Kind.PIDS_MAX, 1 << Kind.PROCS,
                            1 << Kind.THREADS, 1 << Kind.NETDEV)


def convert(spec: CgroupSpec, s: Any) -> CgroupStats:
    """`finish(to_raw(s))` without the intermediate RawStats: the collector's hot path.

    Must equal `finish(spec.key, to_raw(s), ...)`; tests/unit/test_stats_parsers.py compares
    this reader's results with the pure-Python reader's (which goes through `finish`)."""
    if s.failed:
        return finish(spec.key, to_raw(s), dict(spec.files))
    present = s.present
    cpu = mem = io = pids = net = None
    if present & _CPU:
        cpu = CpuStats(s.cpu_usage_ns, s.cpu_user_ns, s.cpu_system_ns,
                       tuple(ffi.unpack(s.percpu_ns, s.ncpus)) if s.ncpus else (),
                       s.nr_periods, s.nr_throttled, s.throttled_ns)
    if present & _MEM:
        mem = MemoryStats(s.mem_usage, s.mem_max_usage, s.mem_working_set, s.mem_rss, s.mem_cache,
                          s.mem_mapped_file, s.mem_swap, s.mem_inactive_file, s.mem_failcnt,
                          s.mem_pgfault, s.mem_pgmajfault)
    if present & _IO:
        io = tuple(BlkioDevice(d.major, d.minor, d.read_bytes, d.write_bytes, d.read_ops, d.write_ops)
                   for d in ffi.unpack(s.devs, s.ndevs)) if s.ndevs else ()
    if present & _PIDS:
        pids = PidsStats(
            s.pids_current if present & _PC else (s.nthreads if present & _TH else None),
            s.pids_max if present & _PM else None,
            s.nprocs if present & _PR else None,
        )
    if present & _NET:
        net = tuple(NetInterface(ffi.string(f.name).decode("latin-1"), f.rx_bytes, f.rx_packets,
                                 f.rx_errors, f.rx_dropped, f.tx_bytes, f.tx_packets, f.tx_errors,
                                 f.tx_dropped) for f in ffi.unpack(s.ifaces, s.nifaces))
    return CgroupStats(spec.key, cpu, mem, io, pids, net, ())


class CReader:
    """Reads cgroups through the C extension; keeps one handle per spec key."""

    name = "c"

    def __init__(self) -> None:
        if not AVAILABLE:
            raise RuntimeError("the C reader (stats.cgroups._reader) is not built")
        self._handles: dict[str, _Handle] = {}
        self._budget = limits.shared()
        self._out: Any = None
        self._cap = 0
        self._kept = 0

    def _handle(self, spec: CgroupSpec) -> _Handle:
        h = self._handles.get(spec.key)
        if h is not None and h.spec == spec:
            return h
        if h is not None:
            self._kept -= len(h.spec.files)
            h.close()
        self._budget.ensure(len(spec.files))
        h = self._handles[spec.key] = _Handle(spec)
        self._kept += len(spec.files)
        return h

    def handles(self, specs: Sequence[CgroupSpec]) -> Any:
        """A `struct np_cg *[]` for the specs (opening what is new): for np_read_batch."""
        return ffi.new("struct np_cg *[]", [self._handle(s).ptr for s in specs])

    def out_buffer(self, n: int) -> Any:
        if n > self._cap:
            self._out = ffi.new("struct np_stats[]", n)
            self._cap = n
        return self._out

    def read(self, spec: CgroupSpec) -> CgroupStats:
        return self.read_many([spec])[0]

    def read_many(self, specs: Sequence[CgroupSpec]) -> list[CgroupStats]:
        if not specs:
            return []
        ptrs = self.handles(specs)
        out = self.out_buffer(len(specs))
        lib.np_read_batch(ptrs, len(specs), out)
        return [convert(spec, out[i]) for i, spec in enumerate(specs)]

    def retain(self, keys: Iterable[str]) -> None:
        keep = set(keys)
        for k in [k for k in self._handles if k not in keep]:
            h = self._handles.pop(k)
            self._kept -= len(h.spec.files)
            h.close()

    def open_fds(self) -> int:
        return sum(int(lib.np_open_fds(h.ptr)) for h in self._handles.values())

    def close(self) -> None:
        self.retain(())
