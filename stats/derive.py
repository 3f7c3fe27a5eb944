"""Rates from two samples of the same container (pure logic, no I/O).

Counters that went backwards (the cgroup was recreated, an interface re-made) give no rate
rather than a negative one.
"""

from __future__ import annotations

from dataclasses import dataclass

from stats.cgroups.model import CgroupStats


@dataclass(frozen=True)
class Rates:
    interval_seconds: float
    cpu_cores: float | None  # CPU seconds per second (1.0 = one core busy)
    cpu_user_cores: float | None
    cpu_system_cores: float | None
    io_read_bytes_per_second: float | None
    io_write_bytes_per_second: float | None
    rx_bytes_per_second: float | None
    tx_bytes_per_second: float | None

    def to_json(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _rate(a: int | None, b: int | None, dt: float) -> float | None:
    if a is None or b is None or dt <= 0 or b < a:
        return None
    return (b - a) / dt


def net_totals(s: CgroupStats, *, skip_lo: bool = True) -> tuple[int, int] | None:
    if s.network is None:
        return None
    rx = sum(i.rx_bytes for i in s.network if not (skip_lo and i.name == "lo"))
    tx = sum(i.tx_bytes for i in s.network if not (skip_lo and i.name == "lo"))
    return rx, tx


def io_totals(s: CgroupStats) -> tuple[int, int] | None:
    if s.io is None:
        return None
    return sum(d.read_bytes for d in s.io), sum(d.write_bytes for d in s.io)


def rates(prev: CgroupStats, prev_t: float, cur: CgroupStats, cur_t: float) -> Rates:
    dt = cur_t - prev_t
    pc, cc = prev.cpu, cur.cpu

    def cpu(attr: str) -> float | None:
        if pc is None or cc is None:
            return None
        r = _rate(getattr(pc, attr), getattr(cc, attr), dt)
        return None if r is None else r / 1e9

    pio, cio = io_totals(prev), io_totals(cur)
    pn, cn = net_totals(prev), net_totals(cur)
    return Rates(
        interval_seconds=dt,
        cpu_cores=cpu("usage_ns"),
        cpu_user_cores=cpu("user_ns"),
        cpu_system_cores=cpu("system_ns"),
        io_read_bytes_per_second=_rate(pio[0], cio[0], dt) if pio and cio else None,
        io_write_bytes_per_second=_rate(pio[1], cio[1], dt) if pio and cio else None,
        rx_bytes_per_second=_rate(pn[0], cn[0], dt) if pn and cn else None,
        tx_bytes_per_second=_rate(pn[1], cn[1], dt) if pn and cn else None,
    )


def fingerprint(s: CgroupStats) -> tuple[object, ...]:
    """What must change for a container to count as active (for housekeeping backoff)."""
    return (
        s.cpu.usage_ns if s.cpu else None,
        s.memory.usage_bytes if s.memory else None,
        io_totals(s),
        net_totals(s, skip_lo=False),
        s.pids,
        s.errors,
    )
