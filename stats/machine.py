"""Facts about this machine for /api/v2.0/machine (cores, memory, kernel, cgroup mode)."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass

from stats.cgroups import Hierarchy


@dataclass(frozen=True)
class MachineInfo:
    num_cores: int
    memory_capacity: int
    machine_id: str
    boot_id: str
    kernel_version: str
    cgroup_mode: str
    hostname: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def machine_info(hierarchy: Hierarchy | None = None) -> MachineInfo:
    mem = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
            break
    return MachineInfo(
        num_cores=os.cpu_count() or 1,
        memory_capacity=mem,
        machine_id=_read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        kernel_version=platform.release(),
        cgroup_mode=(hierarchy or Hierarchy.detect()).mode,
        hostname=platform.node(),
    )
