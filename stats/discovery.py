"""Which containers exist: the collector's pluggable discovery sources.

A source returns `Container`s (id, name, image, labels, cgroup path, a pid for the network
namespace). Two sources now: Docker through the docker SDK (one list call per discovery, one
inspect per container never seen before), and `CgroupSource`, a callable that yields cgroup
paths (with optional names/pids), which is how the orchestrator's pods plug in later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from netplane.errors import NetplaneError

log = logging.getLogger(__name__)


class DiscoveryError(NetplaneError):
    """A discovery source could not list its containers (e.g. dockerd unreachable)."""


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    cgroup_path: str  # below the hierarchy roots, e.g. /docker/<id>
    image: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    pid: int | None = None  # a process in the container's network namespace
    source: str = "cgroup"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


class Discovery(Protocol):
    def list(self) -> list[Container]: ...


def cgroup_path_of(pid: int, *, controllers: tuple[str, ...] = ("memory", "cpuacct", "cpu", "pids")) -> str | None:
    """The cgroup path of a process (v1 controller line, else the v2 `0::` line)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v2 = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if ctrls == "":
            v2 = path
        elif any(c in ctrls.split(",") for c in controllers):
            return path
    return v2


@dataclass
class CgroupSource:
    """Containers given by a callable: each item is a cgroup path, or a mapping with
    `path` and optional `name`, `id`, `pid`, `image`, `labels`."""

    paths: Callable[[], Iterable[str | Mapping[str, Any]]]
    source: str = "cgroup"

    def list(self) -> list[Container]:
        out: list[Container] = []
        for item in self.paths():
            if isinstance(item, str):
                out.append(Container(id=item, name=item, cgroup_path=item, source=self.source))
                continue
            try:
                path = str(item["path"])
                labels = item.get("labels") or {}
                out.append(Container(
                    id=str(item.get("id", path)), name=str(item.get("name", path)), cgroup_path=path,
                    image=str(item.get("image", "")),
                    labels=tuple(sorted((str(k), str(v)) for k, v in dict(labels).items())),
                    pid=int(item["pid"]) if item.get("pid") is not None else None,
                    source=self.source,
                ))
            except (KeyError, TypeError, ValueError) as e:
                log.warning("discovery: skipping malformed entry %r: %s", item, e)
        return out


@dataclass
class DockerSource:
    """Running Docker containers via the docker SDK (low-level API: one list per call)."""

    client: Any = None  # docker.DockerClient; created lazily from the environment
    _known: dict[str, Container] = field(default_factory=dict)

    def _api(self) -> Any:
        if self.client is None:
            import docker

            try:
                self.client = docker.from_env()
            except Exception as e:  # docker raises its own DockerException hierarchy
                raise DiscoveryError(f"docker: {e}") from e
        return self.client.api

    def list(self) -> list[Container]:
        api = self._api()
        try:
            rows = api.containers()
        except Exception as e:
            raise DiscoveryError(f"docker: cannot list containers: {e}") from e
        out: list[Container] = []
        seen: set[str] = set()
        for row in rows:
            cid = row.get("Id")
            if not isinstance(cid, str):
                continue
            seen.add(cid)
            c = self._known.get(cid)
            if c is None:
                c = self._inspect(api, cid)
                if c is None:
                    continue
                self._known[cid] = c
            out.append(c)
        for cid in [k for k in self._known if k not in seen]:
            del self._known[cid]
        return out

    def _inspect(self, api: Any, cid: str) -> Container | None:
        try:
            info = api.inspect_container(cid)
        except Exception as e:  # noqa: BLE001 - docker SDK/requests errors; vanished meanwhile
            log.info("docker: cannot inspect %s: %s", cid[:12], e)
            return None
        pid = int((info.get("State") or {}).get("Pid") or 0) or None
        path = cgroup_path_of(pid) if pid else None
        if path is None:
            parent = (info.get("HostConfig") or {}).get("CgroupParent") or "/docker"
            path = f"{parent.rstrip('/')}/{cid}"
        cfg = info.get("Config") or {}
        labels = cfg.get("Labels") or {}
        return Container(
            id=cid,
            name=str(info.get("Name", "")).lstrip("/") or cid[:12],
            cgroup_path=path,
            image=str(cfg.get("Image", "")),
            labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            pid=pid,
            source="docker",
        )
