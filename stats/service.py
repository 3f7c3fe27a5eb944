"""The collector plus its HTTP server as one start/stop unit.

`netplane stats serve` runs it standalone; `netplane agent --stats-listen` runs the same thing
as an agent component (it has `name`, `start()` and `stop()`), so a host serves the same
endpoints either way.

Sources: the root cgroup `/` always (as cAdvisor), then `docker` and/or `cgroup` as asked,
then whatever is handed over with `add_source` — in the agent, the node runtime's pods
(`netplane.agent.wiring`), before or after the service started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from netplane.errors import ConfigError
from stats.collector import Collector
from stats.discovery import Discovery
from stats.server import ServerHandle, parse_listen, serve

log = logging.getLogger(__name__)

SOURCES = ("docker", "cgroup")


@dataclass
class StatsService:
    listen: str = "127.0.0.1:4194"
    sources: Sequence[str] = ()
    cgroups: Sequence[str] = ()
    interval: float = 1.0
    max_interval: float = 15.0
    reader: str = "auto"
    name: str = "stats"
    collector: Collector | None = field(default=None, init=False)
    handle: ServerHandle | None = field(default=None, init=False)
    _added: list[Discovery] = field(default_factory=list, init=False)
    _live: list[Discovery] | None = field(default=None, init=False)  # the running collector's sources
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.host, self.port = parse_listen(self.listen)
        if self.max_interval < self.interval:
            raise ConfigError("--max-interval must be >= --interval")
        chosen = set(self.sources) or ({"docker"} | ({"cgroup"} if self.cgroups else set()))
        unknown = chosen - set(SOURCES)
        if unknown:
            raise ConfigError(f"unknown stats source(s): {', '.join(sorted(unknown))}")
        if "cgroup" in chosen and not self.cgroups:
            raise ConfigError("stats source cgroup needs at least one cgroup PATH")
        self.chosen = chosen

    @property
    def url(self) -> str:
        return self.handle.url if self.handle else f"http://{self.host}:{self.port}"

    def add_source(self, source: Discovery) -> None:
        """One more discovery source (e.g. a node runtime's pods), listed from the next
        discovery on; also before `start`. A container id several sources report is taken
        from the first: root, docker, cgroup, then these in the order added."""
        with self._lock:
            self._added.append(source)
            if self._live is not None:
                self._live.append(source)  # the collector lists a copy of this list each round

    def start(self) -> None:
        from stats.cgroups import make_reader
        from stats.discovery import CgroupSource, DockerSource, RootSource

        srcs: list[Discovery] = [RootSource()]
        if "docker" in self.chosen:
            srcs.append(DockerSource())
        if "cgroup" in self.chosen:
            paths = list(self.cgroups)
            srcs.append(CgroupSource(lambda: paths))
        with self._lock:
            srcs += self._added
            self._live = srcs
        self.collector = Collector(
            discover=srcs, interval=self.interval, max_interval=self.max_interval,
            reader=make_reader(self.reader),  # type: ignore[arg-type]
        )
        self.handle = serve(self.collector, self.host, self.port)
        self.collector.start()
        log.info("stats: serving %s", self.handle.url)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.handle = None
        if self.collector is not None:
            self.collector.stop()
            self.collector = None
        with self._lock:
            self._live = None
