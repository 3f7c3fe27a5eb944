"""Pure-Python cgroup reader: the fallback where the C extension is not built, and the
baseline the C reader is benchmarked against.

Every parser mirrors its twin in native/np_reader.c rule for rule (numbers are digit runs mod
2^64, malformed lines are skipped, a single-value file without a number is EINVAL, arrays are
capped), so both readers give identical `CgroupStats` for the same file contents.
With `keep_open=True` (default) it keeps descriptors like the C reader; `keep_open=False`
re-opens every file at every read, the way cAdvisor does (benchmark baseline).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable, Sequence

from stats.cgroups import limits
from stats.cgroups.model import (
    IFNAMSIZ,
    MAX_CPUS,
    MAX_DEVS,
    MAX_IFACES,
    U64,
    CgroupSpec,
    CgroupStats,
    Kind,
    RawStats,
    finish,
)

BUF = 65535
USER_HZ_NS = 10_000_000
_NUM = re.compile(r"[ \t]*([0-9]+)")
_SPACE = " \t"


def _num(s: str, pos: int) -> tuple[int, int] | None:
    m = _NUM.match(s, pos)
    if m is None:
        return None
    return int(m.group(1)) & U64, m.end()


def _first_space(line: str) -> int:
    for i, c in enumerate(line):
        if c in _SPACE:
            return i
    return -1


def _flat(text: str, table: dict[str, tuple[str, int]], raw: RawStats) -> None:
    for line in text.split("\n"):
        i = _first_space(line)
        if i <= 0:
            continue
        target = table.get(line[:i])
        if target is None:
            continue
        r = _num(line, i)
        if r is not None:
            setattr(raw, target[0], (r[0] * target[1]) & U64)


def _single(text: str) -> int | None:
    r = _num(text, 0)
    return None if r is None else r[0]


def _devno(line: str) -> tuple[int, int, int] | None:
    a = _num(line, 0)
    if a is None or a[1] >= len(line) or line[a[1]] != ":":
        return None
    b = _num(line, a[1] + 1)
    if b is None:
        return None
    return a[0] & 0xFFFFFFFF, b[0] & 0xFFFFFFFF, b[1]


def _dev_slot(raw: RawStats, major: int, minor: int) -> list[int] | None:
    for d in raw.devs:
        if d[0] == major and d[1] == minor:
            return d
    if len(raw.devs) >= MAX_DEVS:
        return None
    d = [major, minor, 0, 0, 0, 0]
    raw.devs.append(d)
    return d


def p_percpu(text: str, raw: RawStats) -> None:
    pos, total = 0, 0
    vals: list[int] = []
    while (r := _num(text, pos)) is not None:
        if len(vals) < MAX_CPUS:
            vals.append(r[0])
        total = (total + r[0]) & U64
        pos = r[1]
    raw.percpu_ns = vals
    raw.cpu_usage_ns = total


_CPUACCT = {"user": ("cpu_user_ns", USER_HZ_NS), "system": ("cpu_system_ns", USER_HZ_NS)}
_V1_CPU = {"nr_periods": ("nr_periods", 1), "nr_throttled": ("nr_throttled", 1),
           "throttled_time": ("throttled_ns", 1)}
_V1_MEM = {"total_rss": ("mem_rss", 1), "total_cache": ("mem_cache", 1),
           "total_mapped_file": ("mem_mapped_file", 1), "total_swap": ("mem_swap", 1),
           "total_pgfault": ("mem_pgfault", 1), "total_pgmajfault": ("mem_pgmajfault", 1),
           "total_inactive_file": ("mem_inactive_file", 1)}
_V2_CPU = {"usage_usec": ("cpu_usage_ns", 1000), "user_usec": ("cpu_user_ns", 1000),
           "system_usec": ("cpu_system_ns", 1000), "nr_periods": ("nr_periods", 1),
           "nr_throttled": ("nr_throttled", 1), "throttled_usec": ("throttled_ns", 1000)}
_V2_MEM = {"anon": ("mem_rss", 1), "file": ("mem_cache", 1), "file_mapped": ("mem_mapped_file", 1),
           "pgfault": ("mem_pgfault", 1), "pgmajfault": ("mem_pgmajfault", 1),
           "inactive_file": ("mem_inactive_file", 1)}
_V2_EVENTS = {"max": ("mem_failcnt", 1)}


def p_blkio(text: str, raw: RawStats, ops: bool) -> None:
    for line in text.split("\n"):
        d = _devno(line)
        if d is None:
            continue
        major, minor, p = d
        if p >= len(line) or line[p] not in _SPACE:
            continue
        while p < len(line) and line[p] in _SPACE:
            p += 1
        if line.startswith("Read", p) and p + 4 < len(line) and line[p + 4] in _SPACE:
            write, p = False, p + 4
        elif line.startswith("Write", p) and p + 5 < len(line) and line[p + 5] in _SPACE:
            write, p = True, p + 5
        else:
            continue
        r = _num(line, p)
        if r is None:
            continue
        slot = _dev_slot(raw, major, minor)
        if slot is None:
            continue
        slot[(4 if ops else 2) + (1 if write else 0)] = r[0]


_IO_KEYS = {"rbytes": 2, "wbytes": 3, "rios": 4, "wios": 5}


def p_io_stat(text: str, raw: RawStats) -> None:
    for line in text.split("\n"):
        d = _devno(line)
        if d is None:
            continue
        major, minor, p = d
        if p >= len(line) or line[p] not in _SPACE:
            continue
        slot = _dev_slot(raw, major, minor)
        if slot is None:
            continue
        n = len(line)
        while p < n:
            while p < n and line[p] in _SPACE:
                p += 1
            start = p
            while p < n and line[p] != "=" and line[p] not in _SPACE:
                p += 1
            key = line[start:p]
            if p >= n or line[p] != "=":
                continue
            p += 1
            r = _num(line, p)
            if r is None:
                while p < n and line[p] not in _SPACE:
                    p += 1
                continue
            p = r[1]
            idx = _IO_KEYS.get(key)
            if idx is not None:
                slot[idx] = r[0]


def p_netdev(text: str, raw: RawStats) -> None:
    for line in text.split("\n")[2:]:
        p, n = 0, len(line)
        while p < n and line[p] in _SPACE:
            p += 1
        start = p
        while p < n and line[p] != ":" and line[p] not in _SPACE:
            p += 1
        if p >= n or line[p] != ":":
            continue
        name = line[start:p]
        if not name or len(name) >= IFNAMSIZ:
            continue
        p += 1
        f: list[int] = []
        while len(f) < 16 and (r := _num(line, p)) is not None:
            f.append(r[0])
            p = r[1]
        if len(f) < 16 or len(raw.ifaces) >= MAX_IFACES:
            continue
        raw.ifaces.append((name, f[0], f[1], f[2], f[3], f[8], f[9], f[10], f[11]))


def _single_into(attr: str) -> Callable[[str, RawStats], int]:
    def parse(text: str, raw: RawStats) -> int:
        v = _single(text)
        if v is None:
            return errno.EINVAL
        setattr(raw, attr, v)
        return 0
    return parse


def _flat_into(table: dict[str, tuple[str, int]]) -> Callable[[str, RawStats], int]:
    def parse(text: str, raw: RawStats) -> int:
        _flat(text, table, raw)
        return 0
    return parse


def _pids_max(text: str, raw: RawStats) -> int:
    if text.startswith("max"):
        raw.pids_max = -1
        return 0
    v = _single(text)
    if v is None:
        return errno.EINVAL
    raw.pids_max = v - (1 << 64) if v >= 1 << 63 else v
    return 0


def _pids_current(text: str, raw: RawStats) -> int:
    v = _single(text)
    if v is None:
        return errno.EINVAL
    raw.pids_current = v - (1 << 64) if v >= 1 << 63 else v
    return 0


def _wrap(fn: Callable[[str, RawStats], None]) -> Callable[[str, RawStats], int]:
    def parse(text: str, raw: RawStats) -> int:
        fn(text, raw)
        return 0
    return parse


PARSERS: dict[Kind, Callable[[str, RawStats], int]] = {
    Kind.V1_CPUACCT_PERCPU: _wrap(p_percpu),
    Kind.V1_CPUACCT_STAT: _flat_into(_CPUACCT),
    Kind.V1_CPU_STAT: _flat_into(_V1_CPU),
    Kind.V1_MEM_USAGE: _single_into("mem_usage"),
    Kind.V1_MEM_MAX_USAGE: _single_into("mem_max_usage"),
    Kind.V1_MEM_FAILCNT: _single_into("mem_failcnt"),
    Kind.V1_MEM_STAT: _flat_into(_V1_MEM),
    Kind.V1_BLKIO_BYTES: _wrap(lambda t, r: p_blkio(t, r, False)),
    Kind.V1_BLKIO_OPS: _wrap(lambda t, r: p_blkio(t, r, True)),
    Kind.V2_CPU_STAT: _flat_into(_V2_CPU),
    Kind.V2_MEM_CURRENT: _single_into("mem_usage"),
    Kind.V2_MEM_PEAK: _single_into("mem_max_usage"),
    Kind.V2_MEM_STAT: _flat_into(_V2_MEM),
    Kind.V2_MEM_SWAP: _single_into("mem_swap"),
    Kind.V2_MEM_EVENTS: _flat_into(_V2_EVENTS),
    Kind.V2_IO_STAT: _wrap(p_io_stat),
    Kind.PIDS_CURRENT: _pids_current,
    Kind.PIDS_MAX: _pids_max,
    Kind.NETDEV: _wrap(p_netdev),
}


def parse_into(kind: Kind, text: str, raw: RawStats) -> int:
    """Parse one file's text into raw; returns 0 or an errno (the C `parse_kind`)."""
    if kind in (Kind.PROCS, Kind.THREADS):
        lines = text.count("\n")
        if kind is Kind.PROCS:
            raw.nprocs = lines
        else:
            raw.nthreads = lines
        return 0
    return PARSERS[kind](text, raw)


def finish_raw(raw: RawStats) -> None:
    """Derived values computed after all files (the tail of C `np_read`)."""
    if (raw.present >> Kind.V1_MEM_USAGE & 1 or raw.present >> Kind.V2_MEM_CURRENT & 1) and (
        raw.mem_usage > raw.mem_inactive_file
    ):
        raw.mem_working_set = raw.mem_usage - raw.mem_inactive_file


class _Files:
    """One cgroup's descriptors (the Python twin of `struct np_cg`)."""

    def __init__(self, spec: CgroupSpec, keep_open: bool) -> None:
        self.spec = spec
        self.keep_open = keep_open
        self.fds: list[int] = [-1] * len(spec.files)
        if keep_open:
            for i, (_, path) in enumerate(spec.files):
                try:
                    self.fds[i] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    self.fds[i] = -1

    def _read(self, i: int, whole: bool) -> bytes:
        path = self.spec.files[i][1]
        if not self.keep_open:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return _pread_all(fd, whole)
            finally:
                os.close(fd)
        for attempt in (0, 1):
            if self.fds[i] < 0:
                self.fds[i] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                attempt = 1
            try:
                return _pread_all(self.fds[i], whole)
            except OSError:
                os.close(self.fds[i])
                self.fds[i] = -1
                if attempt == 1:
                    raise
        raise OSError(errno.EIO, "unreachable")  # pragma: no cover

    def read(self) -> CgroupStats:
        raw = RawStats()
        for i, (kind, _) in enumerate(self.spec.files):
            try:
                data = self._read(i, kind in (Kind.PROCS, Kind.THREADS))
                rc = parse_into(kind, data.decode("latin-1"), raw)
            except OSError as e:
                rc = e.errno or errno.EIO
            if rc:
                raw.failed |= 1 << kind
                raw.err[kind] = rc
            else:
                raw.present |= 1 << kind
        finish_raw(raw)
        return finish(self.spec.key, raw, dict(self.spec.files))

    def open_fds(self) -> int:
        return sum(1 for fd in self.fds if fd >= 0)

    def close(self) -> None:
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        self.fds = [-1] * len(self.fds)


def _pread_all(fd: int, whole: bool) -> bytes:
    data = os.pread(fd, BUF, 0)
    if not whole or len(data) < BUF:
        return data
    parts = [data]
    off = len(data)
    while True:
        chunk = os.pread(fd, BUF, off)
        if not chunk:
            break
        parts.append(chunk)
        off += len(chunk)
        if len(chunk) < BUF:
            break
    return b"".join(parts)


class PyReader:
    """Reads cgroups with Python file I/O; keeps one handle per spec key."""

    name = "python"

    def __init__(self, *, keep_open: bool = True) -> None:
        self.keep_open = keep_open
        self._handles: dict[str, _Files] = {}
        self._budget = limits.shared()

    def _handle(self, spec: CgroupSpec) -> _Files:
        h = self._handles.get(spec.key)
        if h is not None and h.spec == spec:
            return h
        if h is not None:
            h.close()
        if self.keep_open:
            self._budget.ensure(len(spec.files))
        h = self._handles[spec.key] = _Files(spec, self.keep_open)
        return h

    def read(self, spec: CgroupSpec) -> CgroupStats:
        return self._handle(spec).read()

    def read_many(self, specs: Sequence[CgroupSpec]) -> list[CgroupStats]:
        return [self._handle(s).read() for s in specs]

    def retain(self, keys: Iterable[str]) -> None:
        keep = set(keys)
        for k in [k for k in self._handles if k not in keep]:
            self._handles.pop(k).close()

    def open_fds(self) -> int:
        return sum(h.open_fds() for h in self._handles.values())

    def close(self) -> None:
        self.retain(())
