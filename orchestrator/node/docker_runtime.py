"""Pods on Docker, as dockershim did it (kubernetes `pkg/kubelet/dockershim`), over the docker SDK.

A pod is an infra ("pause") container made first with `NetworkMode: none` (the kubelet then
attaches the pod's network to its namespace, `/proc/<pid>/ns/net`, with its own veth code) and
`IpcMode: shareable`, plus app containers started with `NetworkMode` and `IpcMode`
`container:<infra id>`: they share the pod's network namespace (and so its hostname, which
Docker copies from the infra container; it refuses a hostname of its own in that mode).

hostIPC: the infra container gets `IpcMode: host`, and so do the app containers, as dockershim
set them (Docker would also let them join the infra container's, then the host's namespace, but
their HostConfig would not say so). hostPID: the infra container and the app containers get
`PidMode: host` (without it each container has a pid namespace of its own, as in Kubernetes
without shareProcessNamespace). shareProcessNamespace: a label on the infra container, and app
containers get `PidMode: container:<infra id>` (pause is their PID 1, as under dockershim). An
ephemeral container with a target (`kubectl debug --target`, `ContainerConfig.pid_target`)
joins that container's PID namespace. An app container takes all of these from its infra
container's HostConfig and labels, Docker's state, so a pod adopted after an agent restart
keeps them.

Volumes (`ContainerConfig.mounts`) are `HostConfig.Mounts` of type `bind`: rbind and rprivate,
Docker's defaults; a missing source is Docker's refusal, a one-line `RuntimeError_` (`Binds`
would make a directory). `read_only` is the mount's own: mounts below it stay writable
(Kubernetes' readOnly without recursiveReadOnly). Docker does that for API versions before 1.44
(Docker 20.10 knows nothing else); from 1.44 on, Docker 25+ makes a read-only bind recursively
read-only on kernels >= 5.12 unless `BindOptions.ReadOnlyNonRecursive`, which is then set.

Names and labels are dockershim's: `k8s_POD_<pod>_<ns>_<uid>_<attempt>` and
`k8s_<container>_<pod>_<ns>_<uid>_<attempt>`; labels `io.kubernetes.pod.{name,namespace,uid}`,
`io.kubernetes.container.name` (`POD` for the sandbox), `io.kubernetes.docker.type`
(`podsandbox` | `container`), `io.kubernetes.sandbox.id` on app containers, kubelet's
`io.kubernetes.container.restartCount`, plus ours: `netplane.io/node=<node>`,
`netplane.io/managed=true`, `netplane.io/attempt`. Every list filters on our node label, and
every call that changes a container first checks both labels: two agents on one machine never
see each other's containers, and a container without our labels is never stopped or removed
(such a call raises `RuntimeError_`). Docker refuses a second container of the same name, which
makes creation idempotent: a restarted agent re-lists and adopts, and `run_sandbox` /
`create_and_start` for an existing (uid, attempt) return the existing container (started if it
was only created) instead of a duplicate.

Files: each sandbox's resolv.conf (`SandboxConfig.resolv_conf`) is written to
`<state_dir>/<uid>/<attempt>/resolv.conf` and bind-mounted read-only at /etc/resolv.conf into
the app containers (`""` = Docker's default, the host's without loopback nameservers).

cgroups: every container of a pod gets the cgroup parent `/<cgroup_parent_root>/<node>/pod<uid>`
(or `SandboxConfig.cgroup_parent`); with the cgroupfs driver runc creates it in every hierarchy.
limits.memory -> `Memory` (and `MemorySwap` the same: no swap, as kubelet), limits.cpu ->
`CpuQuota` per `CpuPeriod` 100000 µs, requests.cpu -> `CpuShares` (the kubelet converts; see
`ContainerConfig`). `remove_sandbox` removes the pod's cgroup directories once no sandbox of
the pod is left (after its containers: a cgroup with processes cannot be removed) and nothing
else: only directories below our pod parent, only with rmdir.

The eBPF proxy's socket LB is a cgroup v2 program attached to the host's v2 subtree
(`v2_cgroup`). On this hybrid host (cgroup v1 controllers, an empty cgroup2 at
/sys/fs/cgroup/unified) runc puts a container's processes in the v2 cgroup named like its v1
ones, outside that subtree. With `v2_cgroup` set, containers are created with the OCI runtime
`netplane-runc` (scripts/netplane-runc, registered with dockerd by scripts/install.sh) and the
environment variable `NETPLANE_CGROUP2=<v2_cgroup>/pod<uid>` (Docker 20.10 passes no labels or
annotations to the runtime, but the environment; it stays visible in the pod like any other
variable): the wrapper adds a createRuntime hook that writes the container's init pid into
`<v2_cgroup>/pod<uid>/<container id>/cgroup.procs` before the entrypoint's first instruction;
exec'd processes land there too, and runc removes the directory with the container. When dockerd
does not list `netplane-runc` (or the host is cgroup v2 only, where moving processes would take
them out of their limits), containers run with the default runtime and a warning is logged once.
So on a v2-only host (GitHub's runners, the Debian 12 Vagrant VMs) Docker pods stay in
`<cgroup2 root>/<cgroup_parent_root>/<node>/pod<uid>`, outside the host's subtree: the eBPF
proxy's socket LB does not see their connects there (the namespace runtime's pods it does).
Cgroup parents are cgroupfs paths: dockerd must run with the cgroupfs driver (the systemd driver
accepts only `*.slice` parents); scripts/install.sh configures a systemd-managed dockerd so on
CI runners and the Vagrant VMs.

Interactive containers (the pod spec's stdin, stdinOnce, tty) are created with Docker's
`OpenStdin`, `StdinOnce` and `Tty` as given (with stdin also `AttachStdin/Stdout/Stderr`, as
`docker run -i` sets them); `attach` is Docker's attach API (`DockerAttachSession`: what Docker
does with a half-close and a detach decides its stdin's semantics).

Images are never pulled: there is no registry (`docker import` builds them); a missing image is
a one-line `RuntimeError_` saying so.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import selectors
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount

from netplane.errors import ConfigError
from orchestrator.node.runtime import (
    ContainerConfig,
    ContainerInfo,
    ContainerStateName,
    PodRef,
    RuntimeError_,
    SandboxConfig,
    SandboxInfo,
)
from orchestrator.node.runtime import Mount as VolumeMount

log = logging.getLogger(__name__)

# dockershim's labels (pkg/kubelet/types/labels.go, dockershim/naming.go, docker_sandbox.go)
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
DOCKER_TYPE = "io.kubernetes.docker.type"
SANDBOX_ID = "io.kubernetes.sandbox.id"
RESTART_COUNT = "io.kubernetes.container.restartCount"
TYPE_SANDBOX = "podsandbox"
TYPE_CONTAINER = "container"
SANDBOX_CONTAINER = "POD"
# ours
NODE_LABEL = "netplane.io/node"
MANAGED_LABEL = "netplane.io/managed"
ATTEMPT_LABEL = "netplane.io/attempt"

WRAPPER_RUNTIME = "netplane-runc"
CGROUP2_ENV = "NETPLANE_CGROUP2"
CPU_PERIOD_US = 100_000
SHARE_PID_LABEL = "netplane.io/share-process-namespace"  # on the infra container of such a pod
RECURSIVE_RO_API = "1.44"  # Docker API version from which read-only binds may be recursively read-only
SANDBOX_STOP_GRACE = 2  # seconds: the pause process exits on SIGTERM at once
DEFAULT_STATE_ROOT = Path("/run/netplane/docker-runtime")
NO_IMAGE = "image {image} not found on this host (no registry: build it with docker import)"


def sandbox_name(pod: PodRef, attempt: int) -> str:
    return f"k8s_{SANDBOX_CONTAINER}_{pod.name}_{pod.namespace}_{pod.uid}_{attempt}"


def container_name(pod: PodRef, container: str, attempt: int) -> str:
    return f"k8s_{container}_{pod.name}_{pod.namespace}_{pod.uid}_{attempt}"


def docker_time(text: str | None) -> float | None:
    """Docker's RFC 3339 time with nanoseconds ("...T12:00:00.123456789Z") as epoch seconds
    (to the microsecond); None for Docker's zero time "0001-01-01T00:00:00Z" (never started)."""
    if not text or text.startswith("0001-01-01"):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _state_name(status: str) -> ContainerStateName:
    if status == "created":
        return "created"
    if status in ("running", "paused", "restarting"):
        return "running"
    if status in ("exited", "dead", "removing"):
        return "exited"
    return "unknown"


def cgroup_mounts() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 and v2) visible here."""
    found: list[Path] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fstype = right.split(" ", 1)[0]
        fields = left.split(" ")
        if fstype in ("cgroup", "cgroup2") and len(fields) > 4 and fields[3] == "/":
            p = Path(fields[4].replace("\\040", " "))
            if p not in found:
                found.append(p)
    return found


def remove_cgroup_tree(path: Path) -> list[str]:
    """rmdir `path` and its child cgroups, deepest first; what could not go (never kills)."""
    left: list[str] = []
    try:
        children = [c for c in path.iterdir() if c.is_dir() and not c.is_symlink()]
    except FileNotFoundError:
        return left
    except OSError as e:
        return [f"{path}: {e.strerror}"]
    for child in children:
        left += remove_cgroup_tree(child)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        left.append(f"{path}: {e.strerror}")
    return left


class DockerRuntime:
    """The `Runtime` protocol (orchestrator.node.runtime) over dockerd; see the module doc."""

    name = "docker"

    def __init__(
        self,
        node: str,
        *,
        client: docker.DockerClient | None = None,
        pause_image: str = "netplane/pause:3.9",
        cgroup_parent_root: str = "netplane",
        v2_cgroup: str | None = None,
        state_dir: str | Path | None = None,
    ) -> None:
        if not node or "/" in node or node in (".", ".."):
            raise ConfigError(f"invalid node name {node!r} for the Docker runtime")
        self.node = node
        self._own_client = client is None
        self.client = client if client is not None else docker.from_env()
        self.api = self.client.api
        self.pause_image = pause_image
        self.cgroup_parent_root = cgroup_parent_root.strip("/")
        self.v2_cgroup = Path(v2_cgroup) if v2_cgroup else None
        if self.v2_cgroup is not None and not (self.v2_cgroup / "cgroup.controllers").exists():
            raise ConfigError(f"{v2_cgroup} is not a cgroup v2 directory")
        self.state_dir = Path(state_dir) if state_dir is not None else DEFAULT_STATE_ROOT / node
        self._lock = threading.Lock()
        self._placement: bool | None = None  # use netplane-runc + NETPLANE_CGROUP2 (decided once)
        self._inspected: dict[str, tuple[str, dict[str, Any]]] = {}  # id -> (list state, inspect)

    # ------------------------------------------------------------------ helpers
    def _filters(self, kind: str, pod_uid: str | None = None) -> dict[str, list[str]]:
        labels = [f"{NODE_LABEL}={self.node}", f"{MANAGED_LABEL}=true", f"{DOCKER_TYPE}={kind}"]
        if pod_uid:
            labels.append(f"{POD_UID}={pod_uid}")
        return {"label": labels}

    def _ours(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return labels.get(NODE_LABEL) == self.node and labels.get(MANAGED_LABEL) == "true"

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        """Inspect a container that must be ours; None when it does not exist."""
        try:
            info: dict[str, Any] = self.api.inspect_container(ref)
        except NotFound:
            return None
        except DockerException as e:
            raise RuntimeError_(f"docker: inspecting container {_short(ref)}: {_why(e)}") from e
        if not self._ours((info.get("Config") or {}).get("Labels")):
            raise RuntimeError_(f"container {_short(ref)} ({info.get('Name', '').lstrip('/')}) is not netplane's on "
                                f"node {self.node}: not touching it")
        return info

    def _listed(self, kind: str, pod_uid: str | None = None) -> list[dict[str, Any]]:
        """`docker ps -a` of ours, each inspected once per state it is seen in."""
        try:
            rows = self.api.containers(all=True, filters=self._filters(kind, pod_uid))
        except DockerException as e:
            raise RuntimeError_(f"docker: listing containers of node {self.node}: {_why(e)}") from e
        out = []
        for row in rows:
            cid, state = row["Id"], str(row.get("State") or "")
            with self._lock:
                cached = self._inspected.get(cid)
            if cached is not None and cached[0] == state:
                out.append(cached[1])
                continue
            try:
                info = self.api.inspect_container(cid)
            except NotFound:
                continue  # removed between the list and now
            except DockerException as e:
                raise RuntimeError_(f"docker: inspecting container {cid[:12]}: {_why(e)}") from e
            with self._lock:
                self._inspected[cid] = (state, info)
            out.append(info)
        if pod_uid is None:
            with self._lock:  # forget containers that are gone
                seen = {r["Id"] for r in rows}
                for cid in [c for c, (_, i) in self._inspected.items()
                            if c not in seen and ((i.get("Config") or {}).get("Labels") or {}).get(DOCKER_TYPE) == kind]:
                    del self._inspected[cid]
        return out

    def _forget(self, cid: str) -> None:
        with self._lock:
            self._inspected.pop(cid, None)

    def _use_placement(self) -> bool:
        """Whether containers go through netplane-runc into `v2_cgroup` (decided on first use)."""
        if self.v2_cgroup is None:
            return False
        with self._lock:
            if self._placement is not None:
                return self._placement
        try:
            info = self.api.info()
        except DockerException as e:
            raise RuntimeError_(f"docker: dockerd not reachable: {_why(e)}") from e
        ok = True
        if WRAPPER_RUNTIME not in (info.get("Runtimes") or {}):
            log.warning("dockerd has no %s runtime (scripts/install.sh registers it): pods of node %s will not be "
                        "placed in %s, and the eBPF proxy's socket LB will miss their connects", WRAPPER_RUNTIME,
                        self.node, self.v2_cgroup)
            ok = False
        elif str(info.get("CgroupVersion") or "1") != "1":
            log.warning("dockerd runs on cgroup v2 only: moving pods of node %s into %s would take them out of "
                        "their limits; not done (the eBPF proxy's socket LB will miss their connects)",
                        self.node, self.v2_cgroup)
            ok = False
        with self._lock:
            self._placement = ok
        return ok

    def _pod_v2_dir(self, uid: str) -> Path | None:
        return self.v2_cgroup / f"pod{uid}" if self.v2_cgroup is not None else None

    def _resolv_path(self, uid: str, attempt: int) -> Path:
        return self.state_dir / uid / str(attempt) / "resolv.conf"

    def _write_resolv(self, uid: str, attempt: int, content: str) -> Path | None:
        path = self._resolv_path(uid, attempt)
        if not content:
            return None
        if not content.endswith("\n"):
            content += "\n"
        try:
            if path.exists() and path.read_text() == content:
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".resolv.conf.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(content)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as e:
            raise RuntimeError_(f"writing {path}: {e.strerror}") from e
        return path

    def _create(self, name: str, image: str, *, what: str, stdio: Mapping[str, bool] | None = None,
                **kwargs: Any) -> tuple[dict[str, Any], bool]:
        """create_container, or the existing container of that name (ours); (inspect, created).
        `stdio`: Docker's OpenStdin, StdinOnce, Tty and Attach* fields, set on the config as given
        (the SDK's create_container ties StdinOnce and Attach* to `detach=False`, docker run's -i
        without -d; the pod spec sets stdin and stdinOnce apart)."""
        try:
            if stdio:
                config = self.api.create_container_config(image, kwargs.pop("command", None), detach=True, **kwargs)
                config.update(stdio)
                created = self.api.create_container_from_config(config, name=name)
            else:
                created = self.api.create_container(image, name=name, detach=True, **kwargs)
            info = self._inspect(created["Id"])
            if info is None:
                raise RuntimeError_(f"{what}: container {name} vanished right after it was created")
            return info, True
        except ImageNotFound as e:
            raise RuntimeError_(f"{what}: " + NO_IMAGE.format(image=image)) from e
        except APIError as e:
            if e.status_code != 409:
                raise RuntimeError_(f"{what}: docker create: {_why(e)}") from e
        info = self._inspect(name)  # the name is taken: ours (adopted), or refuse
        if info is None:
            raise RuntimeError_(f"{what}: the name {name} is taken but no such container exists (retry)")
        return info, False

    def _start(self, info: dict[str, Any], what: str) -> dict[str, Any]:
        cid = info["Id"]
        if (info.get("State") or {}).get("Status") == "created":
            try:
                self.api.start(cid)
            except DockerException as e:
                self._forget(cid)
                raise RuntimeError_(f"{what}: docker start: {_why(e)}") from e
        self._forget(cid)
        fresh = self._inspect(cid)
        if fresh is None:
            raise RuntimeError_(f"{what}: container {cid[:12]} is gone right after start")
        return fresh

    # ------------------------------------------------------------------ conversions
    def _pod_of(self, labels: Mapping[str, str]) -> PodRef:
        return PodRef(labels.get(POD_UID, ""), labels.get(POD_NAME, ""), labels.get(POD_NAMESPACE, ""))

    @staticmethod
    def _attempt_of(info: dict[str, Any]) -> int:
        labels = (info.get("Config") or {}).get("Labels") or {}
        for key in (ATTEMPT_LABEL, RESTART_COUNT):
            if str(labels.get(key, "")).isdigit():
                return int(labels[key])
        tail = str(info.get("Name") or "").rsplit("_", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    def _sandbox_info(self, info: dict[str, Any]) -> SandboxInfo:
        labels = (info.get("Config") or {}).get("Labels") or {}
        state = info.get("State") or {}
        pid = int(state.get("Pid") or 0)
        ready = state.get("Status") == "running" and pid > 0
        return SandboxInfo(
            id=info["Id"],
            pod=self._pod_of(labels),
            attempt=self._attempt_of(info),
            state="ready" if ready else "notready",
            netns_path=f"/proc/{pid}/ns/net" if ready else "",
            created_at=docker_time(info.get("Created")) or 0.0,
        )

    def _container_info(self, info: dict[str, Any]) -> ContainerInfo:
        labels = (info.get("Config") or {}).get("Labels") or {}
        st = info.get("State") or {}
        state = _state_name(str(st.get("Status") or ""))
        exit_code: int | None = None
        reason = message = ""
        if state == "exited":
            exit_code = int(st.get("ExitCode") or 0)
            if st.get("OOMKilled"):
                reason = "OOMKilled"
            else:
                reason = "Completed" if exit_code == 0 else "Error"
            message = str(st.get("Error") or "")
        elif state == "created" and st.get("Error"):
            reason, message = "ContainerCannotRun", str(st.get("Error"))
        return ContainerInfo(
            id=info["Id"],
            pod=self._pod_of(labels),
            name=labels.get(CONTAINER_NAME, ""),
            attempt=self._attempt_of(info),
            image=str((info.get("Config") or {}).get("Image") or ""),
            state=state,
            created_at=docker_time(info.get("Created")) or 0.0,
            started_at=docker_time(st.get("StartedAt")),
            finished_at=docker_time(st.get("FinishedAt")) if state == "exited" else None,
            exit_code=exit_code,
            reason=reason,
            message=message,
        )

    def _labels(self, pod: PodRef, kind: str, container: str, attempt: int) -> dict[str, str]:
        return {
            POD_NAME: pod.name,
            POD_NAMESPACE: pod.namespace,
            POD_UID: pod.uid,
            CONTAINER_NAME: container,
            DOCKER_TYPE: kind,
            NODE_LABEL: self.node,
            MANAGED_LABEL: "true",
            ATTEMPT_LABEL: str(attempt),
        }

    def _placement_kwargs(self, uid: str) -> tuple[dict[str, str], str | None]:
        """(extra environment, runtime) that put a container into the pod's v2 directory."""
        d = self._pod_v2_dir(uid)
        if d is None or not self._use_placement():
            return {}, None
        return {CGROUP2_ENV: str(d)}, WRAPPER_RUNTIME

    # ------------------------------------------------------------------ sandboxes
    def run_sandbox(self, config: SandboxConfig) -> SandboxInfo:
        pod = config.pod
        if not pod.uid or not pod.name:
            raise RuntimeError_(f"pod {pod.namespace}/{pod.name}: a sandbox needs the pod's name and uid")
        what = f"pod {pod.namespace}/{pod.name}: sandbox"
        parent = "/" + (config.cgroup_parent.strip("/") or f"{self.cgroup_parent_root}/{self.node}/pod{pod.uid}")
        self._write_resolv(pod.uid, config.attempt, config.resolv_conf)
        env, runtime = self._placement_kwargs(pod.uid)
        labels = {str(k): str(v) for k, v in config.labels.items()}
        labels.update(self._labels(pod, TYPE_SANDBOX, SANDBOX_CONTAINER, config.attempt))
        if config.host_network:
            self._check_host_network(what)
        if config.share_pid and not config.host_pid:
            labels[SHARE_PID_LABEL] = "true"
        # hostIPC / hostPID live in the infra container's HostConfig (shareProcessNamespace in its
        # label): app containers take them from there
        host_config = self.api.create_host_config(network_mode="host" if config.host_network else "none",
                                                  ipc_mode="host" if config.host_ipc else "shareable",
                                                  pid_mode="host" if config.host_pid else None,
                                                  cgroup_parent=parent, runtime=runtime)
        info, _ = self._create(sandbox_name(pod, config.attempt), self.pause_image, what=what,
                               hostname=None if config.host_network else (config.hostname or pod.name)[:63],
                               labels=labels, environment=[f"{k}={v}" for k, v in env.items()] or None,
                               host_config=host_config)
        return self._sandbox_info(self._start(info, what))

    def _check_host_network(self, what: str) -> None:
        """Docker's host network is dockerd's network namespace: the node's only when this
        agent runs in that namespace too. In a lab every host is a namespace of its own beside
        one dockerd, so a hostNetwork pod would land in the machine's namespace: refused."""
        daemon = self._daemon_netns()
        ours = os.stat("/proc/thread-self/ns/net").st_ino  # (the agent: every thread in one)
        if daemon is not None and daemon != ours:
            raise RuntimeError_(f"{what}: hostNetwork needs the node agent in dockerd's network namespace; this one "
                                "runs in another (a lab host?): use the namespace runtime for hostNetwork pods here")

    def _daemon_netns(self) -> int | None:
        """The inode of dockerd's network namespace (its pid from the socket's SO_PEERCRED), or
        None when that cannot be told (a TCP daemon, no /proc access): then allowed."""
        adapter = self.api.adapters.get("http+docker://")
        path = getattr(adapter, "socket_path", None)
        if not path:
            return None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2.0)
                s.connect(path)
                pid, _, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            return os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            return None

    def stop_sandbox(self, sandbox_id: str) -> None:
        info = self._inspect(sandbox_id)
        if info is None:
            return
        for c in self._attached(info):
            if (c.get("State") or {}).get("Running"):
                self.stop_container(c["Id"], SANDBOX_STOP_GRACE)
        self._stop(info["Id"], SANDBOX_STOP_GRACE)

    def _attached(self, sandbox: dict[str, Any]) -> list[dict[str, Any]]:
        uid = ((sandbox.get("Config") or {}).get("Labels") or {}).get(POD_UID, "")
        return [c for c in self._listed(TYPE_CONTAINER, uid or None)
                if ((c.get("Config") or {}).get("Labels") or {}).get(SANDBOX_ID) == sandbox["Id"]
                or (c.get("HostConfig") or {}).get("NetworkMode") == f"container:{sandbox['Id']}"]

    def remove_sandbox(self, sandbox_id: str) -> None:
        info = self._inspect(sandbox_id)
        if info is None:
            return
        labels = (info.get("Config") or {}).get("Labels") or {}
        if labels.get(DOCKER_TYPE) != TYPE_SANDBOX:
            raise RuntimeError_(f"container {sandbox_id[:12]} is not a pod sandbox")
        uid, attempt = labels.get(POD_UID, ""), self._attempt_of(info)
        parent = str((info.get("HostConfig") or {}).get("CgroupParent") or "")
        for c in self._attached(info):
            self.remove_container(c["Id"])
        self._remove(info["Id"])
        self._remove_files(uid, attempt)
        others = self._listed(TYPE_SANDBOX, uid) if uid else []
        if not others:
            self._remove_pod_leftovers(uid, parent)

    def _remove_files(self, uid: str, attempt: int) -> None:
        if not uid:
            return
        d = self._resolv_path(uid, attempt).parent
        for p in (d / "resolv.conf", d):
            try:
                p.unlink() if p.name == "resolv.conf" else p.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("node %s: cannot remove %s: %s", self.node, p, e.strerror)
        try:
            d.parent.rmdir()  # the pod's directory, once no sandbox attempt has files left
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTEMPTY):
                log.warning("node %s: cannot remove %s: %s", self.node, d.parent, e.strerror)

    def _remove_pod_leftovers(self, uid: str, parent: str) -> None:
        """The pod's cgroup directories in every hierarchy and its v2 directory (ours only)."""
        left: list[str] = []
        rel = parent.strip("/")
        if rel and uid and rel.rsplit("/", 1)[-1] == f"pod{uid}":  # never more than the pod's own parent
            for mount in cgroup_mounts():
                left += remove_cgroup_tree(mount / rel)
        v2 = self._pod_v2_dir(uid) if uid else None
        if v2 is not None:
            left += remove_cgroup_tree(v2)
        if left:
            log.warning("node %s: pod %s cgroups left behind: %s", self.node, uid, "; ".join(left))

    def list_sandboxes(self) -> list[SandboxInfo]:
        return [self._sandbox_info(i) for i in self._listed(TYPE_SANDBOX)]

    # ------------------------------------------------------------------ containers
    def create_and_start(self, sandbox: SandboxInfo, config: ContainerConfig) -> ContainerInfo:
        pod = sandbox.pod
        what = f"pod {pod.namespace}/{pod.name}: container {config.name}"
        box = self._inspect(sandbox.id)
        if box is None:
            raise RuntimeError_(f"{what}: its sandbox {sandbox.id[:12]} does not exist")
        parent = str((box.get("HostConfig") or {}).get("CgroupParent") or "") or None
        extra_env, runtime = self._placement_kwargs(pod.uid)
        env = [f"{k}={v}" for k, v in config.env.items()] + [f"{k}={v}" for k, v in extra_env.items()]
        mounts = self._bind_mounts(config.mounts)
        resolv = self._resolv_path(pod.uid, sandbox.attempt)
        if resolv.exists() and not any(m.container_path.rstrip("/") == "/etc/resolv.conf" for m in config.mounts):
            # (a volume the pod mounts there wins: Docker refuses two mounts at one path)
            mounts.append(self._bind("/etc/resolv.conf", str(resolv), read_only=True))
        limits: dict[str, Any] = {}
        if config.memory_limit > 0:
            limits.update(mem_limit=config.memory_limit, memswap_limit=config.memory_limit)
        if config.cpu_shares > 0:
            limits["cpu_shares"] = config.cpu_shares
        if config.cpu_quota_us > 0:
            limits.update(cpu_quota=config.cpu_quota_us, cpu_period=CPU_PERIOD_US)
        host_config = self.api.create_host_config(network_mode=f"container:{sandbox.id}", cgroup_parent=parent,
                                                  mounts=mounts or None, runtime=runtime,
                                                  **self._pod_namespaces(box, config.pid_target), **limits)
        labels = self._labels(pod, TYPE_CONTAINER, config.name, config.attempt)
        labels[SANDBOX_ID] = sandbox.id
        labels[RESTART_COUNT] = str(config.attempt)
        stdio: dict[str, bool] = {}
        if config.stdin or config.tty:  # the pod spec's stdin / stdinOnce / tty, as dockershim set them
            stdio = {"OpenStdin": config.stdin, "StdinOnce": config.stdin and config.stdin_once, "Tty": config.tty}
            if config.stdin:  # as docker run -i sets them
                stdio.update(AttachStdin=True, AttachStdout=True, AttachStderr=True)
        info, _ = self._create(container_name(pod, config.name, config.attempt), config.image, what=what,
                               stdio=stdio, entrypoint=list(config.command) or None,
                               command=list(config.args) or None, environment=env or None,
                               working_dir=config.working_dir or None, labels=labels, host_config=host_config)
        return self._container_info(self._start(info, what))

    @staticmethod
    def _pod_namespaces(box: dict[str, Any], pid_target: str = "") -> dict[str, str]:
        """An app container's `ipc_mode` and `pid_mode`, from its infra container's HostConfig
        and labels (Docker's state, not this agent's memory: an adopted pod keeps them). hostIPC:
        `host` itself (see the module doc), else the infra container's shareable namespace;
        hostPID: `host`; else a target's (`pid_target`: kubectl debug --target), else with
        shareProcessNamespace the infra container's (pause is PID 1, as under dockershim), else
        Docker's default, a pid namespace of the container's own."""
        hc = box.get("HostConfig") or {}
        modes = {"ipc_mode": "host" if hc.get("IpcMode") == "host" else f"container:{box['Id']}"}
        if hc.get("PidMode") == "host":
            modes["pid_mode"] = "host"
        elif pid_target:
            modes["pid_mode"] = f"container:{pid_target}"
        elif ((box.get("Config") or {}).get("Labels") or {}).get(SHARE_PID_LABEL) == "true":
            modes["pid_mode"] = f"container:{box['Id']}"
        return modes

    def _bind_mounts(self, mounts: Sequence[VolumeMount]) -> list[Mount]:
        return [self._bind(m.container_path, m.host_path, read_only=m.read_only) for m in mounts]

    def _bind(self, target: str, source: str, *, read_only: bool) -> Mount:
        """A `bind` mount (rbind, Docker's default), read-only only on the mount itself: from API
        1.44 Docker 25+ would make it recursively read-only unless told otherwise."""
        mount = Mount(target, source, type="bind", read_only=read_only)
        if read_only and docker.utils.version_gte(self.api.api_version, RECURSIVE_RO_API):
            mount["BindOptions"] = {**(mount.get("BindOptions") or {}), "ReadOnlyNonRecursive": True}
        return mount

    def _stop(self, cid: str, grace: float) -> None:
        try:
            self.api.stop(cid, timeout=max(0, math.ceil(grace)))
        except NotFound:
            pass
        except DockerException as e:
            raise RuntimeError_(f"docker stop {cid[:12]}: {_why(e)}") from e
        finally:
            self._forget(cid)

    def stop_container(self, container_id: str, grace: float) -> None:
        """`docker stop`: the stop signal (SIGTERM), `grace` seconds (rounded up to whole
        seconds, Docker's unit), then SIGKILL. Idempotent."""
        info = self._inspect(container_id)
        if info is None or not (info.get("State") or {}).get("Running"):
            return
        self._stop(info["Id"], grace)

    def _remove(self, cid: str) -> None:
        try:
            self.api.remove_container(cid, force=True, v=True)
        except NotFound:
            pass
        except APIError as e:
            if e.status_code == 409 and "in progress" in str(e.explanation or ""):
                self._wait_gone(cid)
            else:
                raise RuntimeError_(f"docker rm {cid[:12]}: {_why(e)}") from e
        except DockerException as e:
            raise RuntimeError_(f"docker rm {cid[:12]}: {_why(e)}") from e
        finally:
            self._forget(cid)

    def _wait_gone(self, cid: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api.inspect_container(cid)
            except NotFound:
                return
            time.sleep(0.1)
        raise RuntimeError_(f"docker rm {cid[:12]}: still being removed after {timeout:.0f} s")

    def remove_container(self, container_id: str) -> None:
        """Force-remove (SIGKILL if still running) with its anonymous volumes. Idempotent."""
        info = self._inspect(container_id)
        if info is None:
            return
        self._remove(info["Id"])
        uid = ((info.get("Config") or {}).get("Labels") or {}).get(POD_UID, "")
        v2 = self._pod_v2_dir(uid) if uid else None
        if v2 is not None:  # runc removes it with the container; this is for a runc that did not
            remove_cgroup_tree(v2 / info["Id"])

    def list_containers(self, pod_uid: str | None = None) -> list[ContainerInfo]:
        return [self._container_info(i) for i in self._listed(TYPE_CONTAINER, pod_uid)]

    # ------------------------------------------------------------------ exec and logs
    def exec(self, container_id: str, cmd: Sequence[str], *, timeout: float) -> tuple[int, bytes]:
        """Run `cmd` in the container through Docker's exec API; (exit code, stdout and stderr
        combined). A container that is gone or not running is a `RuntimeError_`.

        After `timeout` seconds the result is (-1, b""): the exec'd process (its pid as Docker
        reports it, on the host) is sent SIGKILL if Docker still reports it running, so a
        timed-out probe does not pile up. Only that process: children it started stay until
        they exit or the container stops (Docker has no API to kill an exec)."""
        info = self._inspect(container_id)
        if info is None:
            raise RuntimeError_(f"exec in {container_id[:12]}: no such container")
        try:
            exec_id = self.api.exec_create(info["Id"], list(cmd), stdout=True, stderr=True)["Id"]
        except DockerException as e:
            raise RuntimeError_(f"exec in {container_id[:12]}: {_why(e)}") from e
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["out"] = self.api.exec_start(exec_id, demux=False)
            except Exception as e:  # noqa: BLE001 - handed to the caller's thread
                result["error"] = e

        t = threading.Thread(target=run, name=f"docker-exec-{info['Id'][:12]}", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            self._kill_exec(exec_id)
            t.join(2.0)
            return -1, b""
        if "error" in result:
            raise RuntimeError_(f"exec in {container_id[:12]}: {_why(result['error'])}") from result["error"]
        deadline = time.monotonic() + 2.0
        while True:  # the stream can end a moment before Docker records the exit code
            try:
                done = self.api.exec_inspect(exec_id)
            except DockerException as e:
                raise RuntimeError_(f"exec in {container_id[:12]}: {_why(e)}") from e
            if not done.get("Running") and done.get("ExitCode") is not None:
                out = result.get("out") or b""
                return int(done["ExitCode"]), out if isinstance(out, bytes) else b"".join(out)
            if time.monotonic() > deadline:
                return -1, result.get("out") or b""
            time.sleep(0.01)

    def exec_session(self, container_id: str, cmd: Sequence[str], *, stdin: bool, tty: bool,
                     width: int = 0, height: int = 0) -> DockerExecSession:
        """Docker's exec API with its hijacked connection kept: stdout and stderr in Docker's
        multiplexed stream format (one raw stream with a TTY), stdin written to the same socket.
        A container that is gone or not running is a `RuntimeError_`.

        `width` x `height` is applied right after the start (Docker 20.10's API, 1.41, has no
        console size at create or start): a command that asks for the size at once may see
        Docker's default first."""
        what = f"exec in {container_id[:12]}"
        info = self._inspect(container_id)
        if info is None:
            raise RuntimeError_(f"{what}: no such container")
        try:
            exec_id = self.api.exec_create(info["Id"], list(cmd), stdin=stdin, tty=tty, stdout=True,
                                           stderr=True)["Id"]
            sock_io = self.api.exec_start(exec_id, socket=True, tty=tty)
        except DockerException as e:
            raise RuntimeError_(f"{what}: {_why(e)}") from e
        session = DockerExecSession(self, exec_id, sock_io, tty=tty, stdin=stdin, what=what)
        if tty and width > 0 and height > 0:
            try:
                session.resize(width, height)
            except RuntimeError_ as e:  # it may have ended already: the session still has its output
                log.debug("%s: first resize: %s", what, e)
        return session

    def _kill_exec(self, exec_id: str) -> None:
        try:
            done = self.api.exec_inspect(exec_id)
        except DockerException:
            return
        pid = int(done.get("Pid") or 0)
        if done.get("Running") and pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def attach(self, container_id: str, *, stdin: bool) -> DockerAttachSession:
        """Docker's attach API (`POST /containers/{id}/attach?stream=1`) with its hijacked
        connection kept: the main process's output from now on (multiplexed as an exec's, raw
        with the container's TTY) and, when `stdin` and the container has OpenStdin, its stdin.
        A container that is gone or not running is a `RuntimeError_` (Docker itself attaches to
        a stopped container and never ends the stream)."""
        what = f"attach to {container_id[:12]}"
        info = self._inspect(container_id)
        if info is None:
            raise RuntimeError_(f"{what}: no such container")
        state = info.get("State") or {}
        if not state.get("Running"):
            raise RuntimeError_(f"{what}: the container is not running ({state.get('Status') or 'unknown'})")
        config = info.get("Config") or {}
        want_stdin = stdin and bool(config.get("OpenStdin"))
        try:
            sock_io = self.api.attach_socket(info["Id"], params={"stream": 1, "stdin": int(want_stdin), "stdout": 1,
                                                                 "stderr": 1})
        except DockerException as e:
            raise RuntimeError_(f"{what}: {_why(e)}") from e
        return DockerAttachSession(self, info["Id"], sock_io, tty=bool(config.get("Tty")), stdin=want_stdin,
                                   stdin_once=bool(config.get("StdinOnce")), what=what)

    def logs(self, container_id: str, *, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        """The container's stdout and stderr as Docker's json-file log has them, interleaved,
        in chunks; with `follow` until the container stops or the iterator is closed."""
        info = self._inspect(container_id)
        if info is None:
            raise RuntimeError_(f"logs of {container_id[:12]}: no such container")
        try:
            stream = self.api.logs(info["Id"], stdout=True, stderr=True, stream=True, follow=follow,
                                   tail="all" if tail is None else max(0, int(tail)))
        except DockerException as e:
            raise RuntimeError_(f"logs of {container_id[:12]}: {_why(e)}") from e
        return _chunks(stream)

    def version(self) -> str:
        try:
            return str(self.client.version().get("Version") or "")
        except (DockerException, OSError) as e:
            log.info("docker: reading its version: %s", e)
            return ""

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        if self._own_client:
            self.client.close()


def _hijacked(sock_io: Any) -> tuple[socket.socket, bytes]:
    """The socket under the docker SDK's `exec_start(socket=True)` result, and the bytes the HTTP
    layer's buffered reader took past the 101 response's headers (the stream's first bytes, when
    they came in the same read): read from its buffer with the socket non-blocking, so an empty
    buffer costs one failed recv, never a wait."""
    sock: socket.socket = getattr(sock_io, "_sock", sock_io)
    early = b""
    fp = getattr(getattr(getattr(getattr(sock_io, "_response", None), "raw", None), "_fp", None), "fp", None)
    if fp is not None and hasattr(fp, "read1"):
        sock.setblocking(False)
        try:
            early = fp.read1(1 << 16) or b""
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            sock.setblocking(True)
    return sock, early


class _HijackedStreams:
    """A process's standard streams over a Docker hijacked connection (an exec's or an attach's),
    the part `DockerExecSession` and `DockerAttachSession` share. Without a TTY the stream is
    Docker's multiplexed format (frames of an 8-byte header: stream 1 stdout / 2 stderr, 3 zero
    bytes, a big-endian 32-bit length; then the data), parsed across reads; with one it is the
    terminal's raw output. Stdin is written to the same socket. `_release` shuts the socket down,
    which ends a `read` blocked in another thread.

    `_over_every`: when set, a `read` that has waited that long with nothing to read asks
    `_over` whether the stream is done although Docker keeps the connection open."""

    _over_every: float | None = None

    def __init__(self, runtime: DockerRuntime, sock_io: Any, *, tty: bool, stdin: bool, what: str) -> None:
        self.tty = tty
        self._rt = runtime
        self._api = runtime.api
        self._what = what
        self._sock_io = sock_io  # keeps the HTTP response (and so the connection) referenced
        self._sock, early = _hijacked(sock_io)
        self._buf = bytearray(early)  # received, not yet handed out
        self._chunks: deque[tuple[int, bytes]] = deque()
        self._eof = False
        self._stdin = stdin
        self._stdin_closed = not stdin
        self._closed = False
        self._over_at = time.monotonic()  # when `_over` is asked next (with `_over_every`)
        self._reading = threading.Lock()
        self._writing = threading.Lock()
        self._state = threading.Lock()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._sock, selectors.EVENT_READ)
        self._parse()

    def _parse(self) -> None:
        if self.tty:
            if self._buf:
                self._chunks.append((1, bytes(self._buf)))
                self._buf.clear()
            return
        while len(self._buf) >= 8:
            stream, size = self._buf[0], int.from_bytes(self._buf[4:8], "big")
            if len(self._buf) < 8 + size:
                return
            data = bytes(self._buf[8:8 + size])
            del self._buf[:8 + size]
            if data:  # 0 would be stdin written to stdout (Docker's docs): reported as stdout
                self._chunks.append((2 if stream == 2 else 1, data))

    def write_stdin(self, data: bytes) -> None:
        with self._writing:
            if not self._stdin or self._stdin_closed or self._closed:
                raise RuntimeError_(f"{self._what}: stdin is " + ("not attached" if not self._stdin else "closed"))
            try:
                self._sock.sendall(data)
            except OSError as e:
                if self._closed:
                    raise RuntimeError_(f"{self._what}: the session is closed") from e
                raise RuntimeError_(f"{self._what}: writing stdin: {e.strerror or e}") from e

    def _end_stdin(self) -> None:
        """The process's EOF: without a TTY a half-close, with one ^D (what a reader at the
        start of a line takes as EOF; Docker answers a half-close on a TTY by ending the output,
        not the input). Idempotent; a no-op without stdin or once closed."""
        with self._writing:
            if self._stdin_closed or self._closed:
                return
            self._stdin_closed = True
            try:
                if self.tty:
                    self._sock.sendall(b"\x04")
                else:
                    self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _over(self) -> bool:
        return False

    def _look(self, every: float) -> None:
        """An idle read's look (with `_over_every`): the stream is at its end when `_over` says
        so and nothing has come meanwhile (output sent just before the exit is read first)."""
        if self._over() and not self._sel.select(0.1):
            self._eof = True
        self._over_at = time.monotonic() + every

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._reading:
            while not self._chunks:
                if self._eof or self._closed:
                    return None
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                wait = left
                if self._over_every is not None:  # wake for the next look at the container
                    due = max(0.0, self._over_at - time.monotonic())
                    wait = due if left is None else min(left, due)
                if not self._sel.select(wait):
                    if self._over_every is not None and time.monotonic() >= self._over_at:
                        self._look(self._over_every)
                        continue
                    if deadline is not None and time.monotonic() >= deadline:
                        return 0, b""
                    continue
                try:
                    data = self._sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    if self._closed:
                        return None
                    raise RuntimeError_(f"{self._what}: reading output: {e.strerror or e}") from e
                if not data:
                    self._eof = True  # (an incomplete last frame is dropped)
                    continue
                if self._over_every is not None:
                    self._over_at = time.monotonic() + self._over_every
                self._buf += data
                self._parse()
            return self._chunks.popleft()

    _exit: int | None = None  # the process's exit code, once `_poll_exit` has seen it

    def _poll_exit(self, probe: Callable[[], int | None], timeout: float | None) -> int | None:
        """`probe()` every 10 ms, slowing to 100 ms, until it gives an exit code (kept); None
        once `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while self._exit is None:
            self._exit = probe()
            if self._exit is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 2, 0.1)
        return self._exit

    def _closing(self) -> bool:
        """Mark the session closed; False when it already was (another caller releases it)."""
        with self._state:
            if self._closed:
                return False
            self._closed = True
            return True

    def _release(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # a read or write blocked in another thread returns
        except OSError:
            pass
        with self._reading, self._writing:
            self._sel.close()
            # the HTTP response first: its buffered reader wraps the socket's file object
            for thing in (getattr(self._sock_io, "_response", None), self._sock_io, self._sock):
                close = getattr(thing, "close", None)
                if close is not None:
                    try:
                        close()
                    except (OSError, ValueError):
                        pass


class DockerExecSession(_HijackedStreams):
    """`orchestrator.node.runtime.ExecSession` over a Docker exec's hijacked connection (see
    `DockerRuntime.exec_session` and `_HijackedStreams`). `close` kills the exec'd process if it
    still runs, and shuts the socket down, which ends a `read` blocked in another thread."""

    def __init__(self, runtime: DockerRuntime, exec_id: str, sock_io: Any, *, tty: bool, stdin: bool,
                 what: str) -> None:
        self.exec_id = exec_id
        super().__init__(runtime, sock_io, tty=tty, stdin=stdin, what=what)

    def close_stdin(self) -> None:
        """Without a TTY a half-close (Docker then closes the process's stdin). With one, ^D:
        Docker answers a half-close on a TTY exec by ending its output, not its input."""
        self._end_stdin()

    def resize(self, width: int, height: int) -> None:
        if not self.tty or self._closed:
            return
        try:
            self._api.exec_resize(self.exec_id, height=height, width=width)
        except DockerException as e:
            raise RuntimeError_(f"{self._what}: resize: {_why(e)}") from e

    def wait(self, timeout: float | None = None) -> int | None:
        """Polls exec_inspect until it reports the exit (`_poll_exit`)."""
        return self._poll_exit(self._exec_exit, timeout)

    def _exec_exit(self) -> int | None:
        try:
            done = self._api.exec_inspect(self.exec_id)
        except DockerException as e:
            raise RuntimeError_(f"{self._what}: {_why(e)}") from e
        if not done.get("Running") and done.get("ExitCode") is not None:
            return int(done["ExitCode"])
        return None

    def kill(self) -> None:
        """The exec'd process only (its host pid, while Docker reports it running): what it
        started stays until it exits or the container stops, as for `exec`'s timeout."""
        if self._exit is None:
            self._rt._kill_exec(self.exec_id)

    def close(self) -> None:
        if not self._closing():
            return
        try:
            if self._exit is None and self.wait(0) is None:
                self.kill()
        except RuntimeError_ as e:  # dockerd gone: the socket is released all the same
            log.warning("%s: %s", self._what, e)
        self._release()


class DockerAttachSession(_HijackedStreams):
    """`orchestrator.node.runtime.ExecSession` for `Runtime.attach` over Docker's attach API
    (see `DockerRuntime.attach` and `_HijackedStreams`). `kill` and `close` only detach: the
    container runs on.

    What Docker does with the connection decides the rest. A half-close closes the container's
    stdin only with StdinOnce and no TTY; otherwise it ends this attach's output (the container
    runs on). So `close_stdin` is the half-close (or ^D with a TTY) for a StdinOnce container
    and, for any other one, only the end of this session's stdin (it stays open for the next
    attach). Detaching from a StdinOnce container closes its stdin (Docker does it without a
    TTY; with one, ^D is sent first, as np-shim does). The stream ends when the container
    exits; Docker does not end it for a container that stopped before the attach took hold, so
    a `read` idle for `OVER_EVERY` seconds looks at the container's state."""

    OVER_EVERY = 1.0  # seconds

    def __init__(self, runtime: DockerRuntime, container_id: str, sock_io: Any, *, tty: bool, stdin: bool,
                 stdin_once: bool, what: str) -> None:
        self.container_id = container_id
        self._once = stdin_once
        self._over_every = self.OVER_EVERY
        super().__init__(runtime, sock_io, tty=tty, stdin=stdin, what=what)

    def close_stdin(self) -> None:
        if self._once:
            self._end_stdin()
            return
        with self._writing:  # the session's stdin only: the process's stays open
            self._stdin_closed = True

    def _over(self) -> bool:
        """Whether the container has stopped (or is gone)."""
        try:
            info = self._api.inspect_container(self.container_id)
        except NotFound:
            return True
        except DockerException:
            return False  # dockerd unreachable: the connection's own end decides
        return not (info.get("State") or {}).get("Running")

    def resize(self, width: int, height: int) -> None:
        """Docker's container resize (the terminal's size for every session of it)."""
        if not self.tty or self._closed:
            return
        try:
            self._api.resize(self.container_id, height=height, width=width)
        except NotFound:
            return  # gone: the output ends too
        except APIError as e:
            if e.status_code == 409:  # not running (any more): the output ends too
                return
            raise RuntimeError_(f"{self._what}: resize: {_why(e)}") from e
        except DockerException as e:
            raise RuntimeError_(f"{self._what}: resize: {_why(e)}") from e

    def wait(self, timeout: float | None = None) -> int | None:
        """The container's exit code once it has exited (-1 when it is gone), polling its
        inspect (`_poll_exit`); None while it runs after `timeout`."""
        return self._poll_exit(self._container_exit, timeout)

    def _container_exit(self) -> int | None:
        try:
            info = self._api.inspect_container(self.container_id)
        except NotFound:
            return -1
        except DockerException as e:
            raise RuntimeError_(f"{self._what}: {_why(e)}") from e
        done = self._rt._container_info(info)
        return done.exit_code if done.state == "exited" and done.exit_code is not None else None

    def kill(self) -> None:
        """Detaches (as `close`): an attach never stops its container."""
        self.close()

    def close(self) -> None:
        """Detach; with a TTY and StdinOnce, ^D first if this session's stdin is still open
        (sent without waiting: a process that reads no stdin must not hold the detach up)."""
        if not self._closing():
            return
        if self._once and self.tty and not self._stdin_closed:
            self._stdin_closed = True
            try:
                self._sock.send(b"\x04", socket.MSG_DONTWAIT)
            except OSError:
                pass
        self._release()


def _chunks(stream: Any) -> Iterator[bytes]:
    try:
        for chunk in stream:
            if chunk:
                yield chunk
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _short(ref: str) -> str:
    """A container id as `docker ps` shows it (a name stays as it is)."""
    return ref[:12] if len(ref) == 64 and all(c in "0123456789abcdef" for c in ref) else ref


def _why(e: BaseException) -> str:
    """Docker's own message, one line."""
    text = str(getattr(e, "explanation", None) or e)
    return " ".join(text.split())
