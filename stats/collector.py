"""The housekeeping loop: discover containers, read them in batches, keep 2 minutes of samples.

Each container has its own housekeeping interval: 1 s by default, doubling (up to
`max_interval`) while its stats do not change and back to 1 s as soon as they do, like
cAdvisor's dynamic housekeeping. Every tick reads all due containers with one batch call of
the reader (C: one call into the extension). Discovery runs on its own slower interval; a
container that disappears from discovery is dropped and its descriptors are closed, except
while the source that reported it fails (dockerd restarting is not "every container is gone").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from netplane.errors import NetplaneError
from stats.cgroups import CgroupSpec, CgroupStats, Hierarchy, Reader, first_pid, make_reader
from stats.derive import Rates, fingerprint, rates
from stats.discovery import Container, Discovery, kube_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    timestamp: float  # wall clock, seconds since the epoch
    monotonic: float
    stats: CgroupStats


@dataclass
class _Tracked:
    container: Container
    spec: CgroupSpec
    samples: deque[Sample]
    interval: float
    next_due: float
    last_fp: tuple[object, ...] | None = None
    origin: int = -1  # index of the discovery source it came from (kept while that one fails)


@dataclass(frozen=True)
class CollectorStats:
    """The collector's own cost, for /healthz and the benchmarks."""

    containers: int
    ticks: int
    reads: int
    last_tick_seconds: float


@dataclass
class Collector:
    discover: Discovery | Sequence[Discovery]
    interval: float = 1.0
    max_interval: float = 15.0
    history: float = 120.0
    discover_interval: float = 5.0
    reader: Reader | None = None
    hierarchy: Hierarchy | None = None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    _tracked: dict[str, _Tracked] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _next_discovery: float = field(default=0.0, init=False)
    _ticks: int = field(default=0, init=False)
    _reads: int = field(default=0, init=False)
    _last_tick: float = field(default=0.0, init=False)
    discovery_error: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.max_interval < self.interval or self.history <= 0:
            raise ValueError("interval > 0, max_interval >= interval and history > 0 are required")
        if self.reader is None:
            self.reader = make_reader()
        if self.hierarchy is None:
            self.hierarchy = Hierarchy.detect()

    # ------------------------------------------------------------------ loop
    def start(self) -> Collector:
        if self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stats-collector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        assert self.reader is not None
        with self._lock:
            self.reader.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self.clock()
            try:
                self.tick()
            except Exception:
                log.exception("stats housekeeping tick failed")
            self._stop.wait(max(0.0, self.interval - (self.clock() - started)))

    def tick(self) -> int:
        """One housekeeping round: discover if due, read every due container. Returns reads."""
        t0 = self.clock()
        if t0 >= self._next_discovery:
            self.discover_now()
        now = self.clock()
        with self._lock:
            due = [t for t in self._tracked.values() if t.next_due <= now]
            if not due:
                return 0
            assert self.reader is not None
            results = self.reader.read_many([t.spec for t in due])
            mono, wall = self.clock(), self.wall()
            for t, st in zip(due, results):
                self._record(t, st, mono, wall)
            self._ticks += 1
            self._reads += len(due)
            self._last_tick = self.clock() - t0
        return len(due)

    def _record(self, t: _Tracked, st: CgroupStats, mono: float, wall: float) -> None:
        t.samples.append(Sample(timestamp=wall, monotonic=mono, stats=st))
        while t.samples and mono - t.samples[0].monotonic > self.history:
            t.samples.popleft()
        fp = fingerprint(st)
        if fp == t.last_fp:
            t.interval = min(t.interval * 2, self.max_interval)
        else:
            t.interval = self.interval
        t.last_fp = fp
        # Schedule on the tick grid (a little early rather than one tick late).
        t.next_due = mono + t.interval - self.interval / 2

    def discover_now(self) -> None:
        sources = list(self.discover) if isinstance(self.discover, Sequence) else [self.discover]
        found: dict[str, Container] = {}
        origin: dict[str, int] = {}  # container id -> index of the source that gave it
        failed: set[int] = set()
        errors = []
        for i, src in enumerate(sources):
            try:
                for c in src.list():
                    if c.id not in found:
                        found[c.id], origin[c.id] = c, i
            except NetplaneError as e:
                failed.add(i)
                errors.append(str(e))
                log.warning("stats discovery: %s", e)
        self.discovery_error = "; ".join(errors) or None
        self._next_discovery = self.clock() + self.discover_interval
        assert self.hierarchy is not None and self.reader is not None
        with self._lock:
            # a failing source is not "all its containers are gone": keep what it gave last time
            for cid, t in self._tracked.items():
                if cid not in found and t.origin in failed:
                    found[cid], origin[cid] = t.container, t.origin
            for cid in [k for k in self._tracked if k not in found]:
                del self._tracked[cid]
            for cid, c in found.items():
                old = self._tracked.get(cid)
                if old is not None:
                    old.origin = origin[cid]
                if old is not None and old.container == c:
                    continue
                try:
                    spec = self.hierarchy.spec(c.cgroup_path, key=cid)
                    pid = c.pid if c.pid is not None else first_pid(spec)
                    if pid is not None:
                        spec = self.hierarchy.spec(c.cgroup_path, key=cid, pid=pid)
                except NetplaneError as e:
                    log.info("stats: skipping %s: %s", c.name, e)
                    continue
                if old is not None:
                    old.container, old.spec = c, spec
                else:
                    self._tracked[cid] = _Tracked(container=c, spec=spec, samples=deque(),
                                                  interval=self.interval, next_due=0.0, origin=origin[cid])
            self.reader.retain(self._tracked.keys())

    # ------------------------------------------------------------------ queries
    def containers(self) -> list[Container]:
        with self._lock:
            return [t.container for t in self._tracked.values()]

    def find(self, name: str) -> Container | None:
        name = name.strip("/")
        with self._lock:
            for t in self._tracked.values():
                c = t.container
                if name in (c.name, c.id, c.id[:12], c.cgroup_path.strip("/")):
                    return c
        return None

    def samples(self, container_id: str, count: int | None = None) -> list[Sample]:
        with self._lock:
            t = self._tracked.get(container_id)
            if t is None:
                return []
            s = list(t.samples)
        return s[-count:] if count else s

    def latest(self) -> list[tuple[Container, Sample, Rates | None]]:
        """Per container: the newest sample and the rate over the last two samples."""
        out = []
        with self._lock:
            for t in self._tracked.values():
                if not t.samples:
                    continue
                cur = t.samples[-1]
                r = None
                if len(t.samples) > 1:
                    prev = t.samples[-2]
                    r = rates(prev.stats, prev.monotonic, cur.stats, cur.monotonic)
                out.append((t.container, cur, r))
        return out

    def own_stats(self) -> CollectorStats:
        with self._lock:
            return CollectorStats(containers=len(self._tracked), ticks=self._ticks,
                                  reads=self._reads, last_tick_seconds=self._last_tick)


def sample_json(c: Container, samples: Sequence[Sample]) -> list[dict[str, object]]:
    """Samples as JSON, each with the rates since the sample before it."""
    out: list[dict[str, object]] = []
    for i, s in enumerate(samples):
        d: dict[str, object] = {"timestamp": s.timestamp, **s.stats.to_json()}
        d["id"] = c.id
        d["name"] = c.name
        d["cgroup"] = c.cgroup_path  # the metrics' `id`
        d["namespace"], d["pod"], d["container"] = kube_labels(c)  # as on the metrics
        d["labels"] = c.label_map
        if i > 0:
            p = samples[i - 1]
            d["rates"] = rates(p.stats, p.monotonic, s.stats, s.monotonic).to_json()
        out.append(d)
    return out
