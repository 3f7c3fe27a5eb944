"""Where a cgroup's stats files are: cgroup v1, v2 or hybrid, detected per host.

Reads /proc/self/mountinfo once: every v1 hierarchy (cpu, cpuacct, memory, blkio, pids, ...)
and the cgroup2 mount with the controllers it has. For a cgroup path (below the hierarchy
roots, e.g. `/docker/<id>`) it builds the `CgroupSpec`: which file of which kind to read.
Each resource comes from the v1 hierarchy that has its controller, else from v2 when the
unified mount has that controller (cpu.stat's usage fields exist in v2 even without the cpu
controller). `version=2` forces the v2 files under the unified mount (used on hybrid hosts,
where the v2 mount has no controllers, to exercise the v2 path as far as the kernel allows).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from netplane.errors import NotFoundError
from stats.cgroups.model import CgroupSpec, Kind

V1_FILES: dict[str, tuple[tuple[Kind, str], ...]] = {
    "cpuacct": ((Kind.V1_CPUACCT_PERCPU, "cpuacct.usage_percpu"), (Kind.V1_CPUACCT_STAT, "cpuacct.stat")),
    "cpu": ((Kind.V1_CPU_STAT, "cpu.stat"),),
    "memory": (
        (Kind.V1_MEM_USAGE, "memory.usage_in_bytes"),
        (Kind.V1_MEM_MAX_USAGE, "memory.max_usage_in_bytes"),
        (Kind.V1_MEM_FAILCNT, "memory.failcnt"),
        (Kind.V1_MEM_STAT, "memory.stat"),
    ),
    "blkio": (
        (Kind.V1_BLKIO_BYTES, "blkio.throttle.io_service_bytes_recursive"),
        (Kind.V1_BLKIO_OPS, "blkio.throttle.io_serviced_recursive"),
    ),
    "pids": ((Kind.PIDS_CURRENT, "pids.current"), (Kind.PIDS_MAX, "pids.max")),
}
V2_FILES: dict[str, tuple[tuple[Kind, str], ...]] = {
    "cpu": ((Kind.V2_CPU_STAT, "cpu.stat"),),
    "memory": (
        (Kind.V2_MEM_CURRENT, "memory.current"),
        (Kind.V2_MEM_PEAK, "memory.peak"),
        (Kind.V2_MEM_STAT, "memory.stat"),
        (Kind.V2_MEM_SWAP, "memory.swap.current"),
        (Kind.V2_MEM_EVENTS, "memory.events"),
    ),
    "io": ((Kind.V2_IO_STAT, "io.stat"),),
    "pids": ((Kind.PIDS_CURRENT, "pids.current"), (Kind.PIDS_MAX, "pids.max")),
}
# Which v1 controller / v2 controller provides each resource.
RESOURCES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("cpu", ("cpuacct", "cpu"), "cpu"),
    ("memory", ("memory",), "memory"),
    ("io", ("blkio",), "io"),
    ("pids", ("pids",), "pids"),
)

Mode = Literal["v1", "v2", "hybrid"]
V1_CONTROLLER_NAMES = frozenset({"cpu", "cpuacct", "memory", "blkio", "pids", "cpuset", "devices", "freezer",
                                 "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc"})


@dataclass(frozen=True)
class Hierarchy:
    v1: tuple[tuple[str, str], ...]  # (controller, mountpoint)
    v2: str | None  # cgroup2 mountpoint
    v2_controllers: frozenset[str]

    @property
    def mode(self) -> Mode:
        if self.v1 and self.v2:
            return "hybrid"
        return "v1" if self.v1 else "v2"

    def v1_mount(self, controller: str) -> str | None:
        for c, m in self.v1:
            if c == controller:
                return m
        return None

    @classmethod
    def detect(cls, mountinfo: str = "/proc/self/mountinfo") -> Hierarchy:
        with open(mountinfo) as f:
            return cls.parse(f.read())

    @classmethod
    def parse(cls, mountinfo_text: str, *, read_controllers: bool = True) -> Hierarchy:
        v1: list[tuple[str, str]] = []
        v2: str | None = None
        for line in mountinfo_text.splitlines():
            left, sep, right = line.partition(" - ")
            if not sep:
                continue
            fields, rfields = left.split(), right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            mountpoint = fields[4].replace("\\040", " ")
            fstype, options = rfields[0], rfields[2].split(",")
            if fstype == "cgroup2" and v2 is None:
                v2 = mountpoint
            elif fstype == "cgroup":
                for opt in options:
                    if opt in V1_CONTROLLER_NAMES and all(c != opt for c, _ in v1):
                        v1.append((opt, mountpoint))
        ctrls: frozenset[str] = frozenset()
        if v2 and read_controllers:
            try:
                with open(os.path.join(v2, "cgroup.controllers")) as f:
                    ctrls = frozenset(f.read().split())
            except OSError:
                pass
        return cls(v1=tuple(v1), v2=v2, v2_controllers=ctrls)

    def dirs(self, path: str) -> dict[str, str]:
        """Directory of `path` in every hierarchy where it exists (key 'v2' for unified)."""
        rel = path.strip("/")
        out: dict[str, str] = {}
        for c, m in self.v1:
            d = os.path.join(m, rel) if rel else m
            if os.path.isdir(d):
                out[c] = d
        if self.v2:
            d = os.path.join(self.v2, rel) if rel else self.v2
            if os.path.isdir(d):
                out["v2"] = d
        return out

    def spec(self, path: str, *, version: Literal["auto", 1, 2] = "auto", pid: int | None = None,
             key: str | None = None) -> CgroupSpec:
        """The files to read for cgroup `path`; raises NotFoundError when it exists nowhere."""
        dirs = self.dirs(path)
        files: list[tuple[Kind, str]] = []
        procs_dir: str | None = None
        if version == 2 and "v2" not in dirs:
            raise NotFoundError(f"no cgroup {path!r} under the cgroup2 mount {self.v2 or '(none)'}")
        for _res, v1_ctrls, v2_ctrl in RESOURCES:
            if version != 2:
                hit = [c for c in v1_ctrls if c in dirs]
                for c in hit:
                    files += [(k, os.path.join(dirs[c], n)) for k, n in V1_FILES[c]]
                    procs_dir = procs_dir or dirs[c]
                if hit or version == 1:
                    continue
            if "v2" in dirs and (version == 2 or v2_ctrl == "cpu" or v2_ctrl in self.v2_controllers):
                files += [(k, os.path.join(dirs["v2"], n)) for k, n in V2_FILES[v2_ctrl]]
        if version == 2:
            procs_dir = dirs["v2"]
        if procs_dir is None:
            procs_dir = dirs.get("v2") or next(iter(dirs.values()), None)
        if procs_dir is None:
            raise NotFoundError(f"no cgroup {path!r} in any cgroup hierarchy ({self.mode})")
        files = [(k, p) for k, p in files if os.path.exists(p)]
        files.append((Kind.PROCS, os.path.join(procs_dir, "cgroup.procs")))
        if not any(k is Kind.PIDS_CURRENT for k, _ in files):
            threads = "cgroup.threads" if procs_dir == dirs.get("v2") else "tasks"
            files.append((Kind.THREADS, os.path.join(procs_dir, threads)))
        if pid is not None:
            files.append((Kind.NETDEV, f"/proc/{pid}/net/dev"))
        return CgroupSpec(key=key or path, files=tuple(files))


def first_pid(spec: CgroupSpec) -> int | None:
    """A process of the cgroup (for its network namespace), from cgroup.procs."""
    for k, p in spec.files:
        if k is Kind.PROCS:
            try:
                with open(p) as f:
                    line = f.readline().strip()
                return int(line) if line else None
            except (OSError, ValueError):
                return None
    return None
