"""Which containers exist: the collector's pluggable discovery sources.

A source returns `Container`s (id, name, image, labels, cgroup path, a pid for the network
namespace). The sources:

- `RootSource`: the host's root cgroup `/`, which cAdvisor always reports (a host without
  containers still has its own usage);
- `DockerSource`: Docker through the docker SDK (one list call per discovery, one inspect per
  container never seen before), optionally filtered (a node runtime's own containers: one
  dockerd may serve several nodes), plus the pod-level cgroups of Kubernetes-labelled
  containers (the `pod<uid>` cgroup parent they share);
- `CgroupSource`, a callable that yields cgroup paths or entries with names, pids and labels:
  how a node runtime without Docker hands its pods' and containers' cgroups over (the
  namespace runtime's `stats_entries`).

Pods are recognised by dockershim's labels (`io.kubernetes.pod.name`/`.namespace`/`.uid`,
`io.kubernetes.container.name`, `POD` for the sandbox); `kube_labels` turns them into the
`namespace`, `pod` and `container` labels kubelet's /metrics/cadvisor adds (`container=""` for
a pod-level cgroup, and for anything that is not a pod's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from netplane.errors import NetplaneError

log = logging.getLogger(__name__)


# dockershim's labels (kubernetes pkg/kubelet/types/labels.go, dockershim/docker_sandbox.go)
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
DOCKER_TYPE_LABEL = "io.kubernetes.docker.type"
SANDBOX_TYPE = "podsandbox"
ROOT = "/"


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


def kube_labels(c: Container) -> tuple[str, str, str]:
    """(namespace, pod, container) as kubelet labels cAdvisor's series
    (`containerPrometheusLabelsFunc`): from the io.kubernetes.* labels, "" where absent, so
    a pod-level cgroup has container "" and the sandbox container "POD"."""
    labels = c.label_map
    return (labels.get(POD_NAMESPACE_LABEL, ""), labels.get(POD_NAME_LABEL, ""),
            labels.get(CONTAINER_NAME_LABEL, ""))


@dataclass
class RootSource:
    """The host's root cgroup `/` (id and name "/"), as cAdvisor always reports it; network
    counters from PID 1's namespace (the host's)."""

    pid: int | None = 1

    def list(self) -> list[Container]:
        return [Container(id=ROOT, name=ROOT, cgroup_path=ROOT, pid=self.pid, source="root")]


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
        try:
            items = list(self.paths())
        except NetplaneError as e:
            raise DiscoveryError(f"{self.source}: {e}") from e
        except Exception as e:  # any callable's failure (a runtime's state read mid-change)
            raise DiscoveryError(f"{self.source}: cannot list cgroups: {type(e).__name__}: {e}") from e
        for item in items:
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
    """Running Docker containers via the docker SDK (low-level API: one list per call), and the
    pod-level cgroup of every pod among them.

    `filters` are Docker's list filters (`{"label": ["netplane.io/node=h1"]}`: one node
    runtime's containers). A container labelled with its pod (dockershim's
    `io.kubernetes.pod.*`) whose cgroup sits in a parent named `pod<uid>` (the node runtime's
    per-pod cgroup parent) also yields that parent, labelled with the pod's name, namespace
    and uid and no container name, named `<namespace>/<pod>`, with the sandbox's pid (the
    pod's network namespace)."""

    client: Any = None  # docker.DockerClient; created lazily from the environment
    filters: Mapping[str, Any] | None = None
    pods: bool = True
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
            rows = api.containers(filters=dict(self.filters)) if self.filters else api.containers()
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
        return (out + pod_cgroups(out)) if self.pods else out

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


def pod_cgroups(containers: Iterable[Container]) -> list[Container]:
    """The pod-level cgroups of Kubernetes-labelled containers: the `pod<uid>` parent their
    cgroups share (see `DockerSource`); a container elsewhere (no such parent) adds none."""
    pods: dict[str, Container] = {}
    for c in containers:
        labels = c.label_map
        uid = labels.get(POD_UID_LABEL, "")
        parent, _, leaf = c.cgroup_path.rstrip("/").rpartition("/")
        if not uid or not leaf or parent.rpartition("/")[2] != f"pod{uid}":
            continue
        sandbox = labels.get(DOCKER_TYPE_LABEL) == SANDBOX_TYPE
        old = pods.get(parent)
        if old is not None and not sandbox:
            continue  # the sandbox's pid is the pod's; any container's is the same network
        keep = {k: labels[k] for k in (POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL) if k in labels}
        ns, name = labels.get(POD_NAMESPACE_LABEL, ""), labels.get(POD_NAME_LABEL, "")
        pods[parent] = Container(id=parent, name=f"{ns}/{name}" if name else parent, cgroup_path=parent,
                                 labels=tuple(sorted(keep.items())),
                                 pid=c.pid, source=c.source)
    return list(pods.values())
