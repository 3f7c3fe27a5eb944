"""What the node agent (our kubelet) asks of a container runtime: the CRI's shape, cut down.

A pod is a *sandbox* (the holder of its network namespace: Docker's infra container, or a
plain network namespace with a pause process) plus its app *containers*, which join the
sandbox's network (and IPC) namespace. The kubelet (`orchestrator.node.kubelet`) decides;
a runtime only does, and reports what exists, so that a restarted agent adopts what is
running (nothing restarted, nothing duplicated). Two runtimes implement this protocol:
`orchestrator.node.docker_runtime` (docker SDK, dockershim's names and labels) and
`orchestrator.node.ns_runtime` (`--runtime namespaces`: processes from the host filesystem).

Every object a runtime makes is marked as ours (Docker labels `io.kubernetes.*` plus
`netplane.io/node=<node>`; a state directory for namespaces), and `list_*` return only ours,
of this node: two agents on one machine (the lab) never see each other's pods.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from netplane.errors import NetplaneError

ContainerStateName = Literal["created", "running", "exited", "unknown"]


class RuntimeError_(NetplaneError):
    """A runtime operation failed (one line: what, on which pod/container, why)."""


@dataclass(frozen=True)
class PodRef:
    """The identity a runtime needs of a pod: dockershim's name parts."""

    uid: str
    name: str
    namespace: str

    @staticmethod
    def of(pod: Mapping[str, Any]) -> PodRef:
        md = pod.get("metadata") or {}
        return PodRef(str(md.get("uid") or ""), str(md.get("name") or ""), str(md.get("namespace") or "default"))


@dataclass(frozen=True)
class SandboxConfig:
    """What a sandbox is made with."""

    pod: PodRef
    attempt: int = 0
    hostname: str = ""  # default: the pod's name
    resolv_conf: str = ""  # content for /etc/resolv.conf of every container ("" = the host's)
    cgroup_parent: str = ""  # e.g. "netplane/<node>/pod<uid>" (relative to each hierarchy's root)
    host_network: bool = False  # the pod's hostNetwork: the node's network (and UTS) namespace, not its own
    host_ipc: bool = False  # the pod's hostIPC: the node's IPC namespace, not its own
    host_pid: bool = False  # the pod's hostPID: its containers see the node's processes
    share_pid: bool = False  # the pod's shareProcessNamespace: its containers share one PID namespace
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxInfo:
    id: str  # runtime's id (docker container id; the namespace runtime's own)
    pod: PodRef
    attempt: int
    state: Literal["ready", "notready"]
    netns_path: str  # e.g. /proc/<pid>/ns/net of the infra process; "" when not ready
    created_at: float  # epoch seconds


@dataclass(frozen=True)
class Mount:
    """A volume mount as the CRI passes it: a file or directory of the node (`host_path`, which
    exists: the kubelet made or checked it) bind-mounted, with what lies below it (rbind), at
    `container_path` (absolute) in the container. `read_only` applies to that mount itself, not
    to mounts below it (Kubernetes' readOnly without recursiveReadOnly). The kubelet orders a
    container's mounts parents first (by container path depth)."""

    container_path: str
    host_path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerConfig:
    """One app container as the kubelet wants it started (env already resolved)."""

    name: str
    image: str
    command: Sequence[str] = ()  # entrypoint override ([] = the image's)
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    attempt: int = 0  # restart count: part of the name, so a restart never collides
    cpu_shares: int = 0  # from requests.cpu (0 = runtime default)
    cpu_quota_us: int = 0  # from limits.cpu, per 100 ms period (0 = unlimited)
    memory_limit: int = 0  # bytes, from limits.memory (0 = unlimited)
    # the pod spec's stdin / stdinOnce / tty: the main process's stdin is kept open for attach
    # sessions (`Runtime.attach`; stdin_once: closed for good when the first one that attached
    # stdin leaves) and, with tty, its stdin, stdout and stderr are one terminal
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    mounts: Sequence[Mount] = ()  # the pod's volumes as this container's volumeMounts name them
    pid_target: str = ""  # a container (runtime id) whose PID namespace this one joins (kubectl debug --target)


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    pod: PodRef
    name: str  # the container's name in the pod spec
    attempt: int
    image: str
    state: ContainerStateName
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""  # e.g. "OOMKilled", "Error", "Completed"
    message: str = ""


class ExecSession(Protocol):
    """A command running in a container with its standard streams attached (see
    `Runtime.exec_session`): what `kubectl exec -i` / `-it` is relayed onto.

    One thread may read while others write stdin, resize, wait or kill; `close` from any thread
    ends a `read` blocked in another one (it returns None)."""

    tty: bool

    def write_stdin(self, data: bytes) -> None:
        """Send `data` to the process's stdin (blocks while the pipe or terminal is full).
        RuntimeError_ without stdin, after `close_stdin` or `close`, or once the process has
        closed its stdin."""
        ...

    def close_stdin(self) -> None:
        """EOF on the process's stdin; idempotent; a no-op without stdin. Without a TTY the
        stream is closed; with one the terminal's end-of-file character (^D) is sent: what a
        reader at the start of a line sees as EOF (the terminal stays open for output)."""
        ...

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        """The next output chunk as (1, data) for stdout or (2, data) for stderr (with a TTY
        everything is (1, ...)); (0, b"") when `timeout` passed with nothing to read; None once
        every output stream has reached EOF (or the session was closed)."""
        ...

    def resize(self, width: int, height: int) -> None:
        """The terminal's window size (columns, rows); a no-op without a TTY or once closed."""
        ...

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code; None while it still runs after `timeout` seconds. Kubelet's
        semantics: a process killed by a signal is 128 + signal (SIGKILL: 137)."""
        ...

    def kill(self) -> None:
        """SIGKILL the exec'd process (and what it started, where the runtime can); idempotent."""
        ...

    def close(self) -> None:
        """Release descriptors and sockets; kills the process if it still runs; idempotent."""
        ...


class Runtime(Protocol):
    name: str  # "docker" or "namespaces": the containerID scheme ("docker://<id>")

    # sandboxes
    def run_sandbox(self, config: SandboxConfig) -> SandboxInfo:
        """Create and start the pod's sandbox; idempotent for (uid, attempt)."""
        ...

    def stop_sandbox(self, sandbox_id: str) -> None:
        """Stop the sandbox (its network namespace may go); idempotent."""
        ...

    def remove_sandbox(self, sandbox_id: str) -> None:
        """Remove the sandbox and everything the runtime made for it; idempotent."""
        ...

    def list_sandboxes(self) -> list[SandboxInfo]:
        """Ours, on this node, in any state."""
        ...

    # containers
    def create_and_start(self, sandbox: SandboxInfo, config: ContainerConfig) -> ContainerInfo:
        """Start an app container in the sandbox's namespaces; RuntimeError_ on failure (for
        example an image that does not exist: the message says so)."""
        ...

    def stop_container(self, container_id: str, grace: float) -> None:
        """SIGTERM, up to `grace` seconds, then SIGKILL; idempotent."""
        ...

    def remove_container(self, container_id: str) -> None:
        ...

    def list_containers(self, pod_uid: str | None = None) -> list[ContainerInfo]:
        """Ours, on this node (of one pod when given), in any state."""
        ...

    # what `netplane logs` / `netplane exec` and exec probes need
    def exec(self, container_id: str, cmd: Sequence[str], *, timeout: float) -> tuple[int, bytes]:
        """Run `cmd` in the container; (exit code, combined output). Timeout: exit code -1."""
        ...

    def exec_session(self, container_id: str, cmd: Sequence[str], *, stdin: bool, tty: bool,
                     width: int = 0, height: int = 0) -> ExecSession:
        """Start `cmd` in the running container with stdout and stderr piped (one stream with a
        TTY), and stdin when asked; RuntimeError_ for a container that is gone or not running.
        With a TTY, `width` x `height` (when both are given) is the terminal's first size."""
        ...

    def attach(self, container_id: str, *, stdin: bool) -> ExecSession:
        """Attach to the running container's main process (`kubectl attach`, `kubectl run -it`):
        its output from now on (stdout and stderr apart; one stream with a TTY) and, when
        `stdin` and the container was started with stdin, its stdin. The session's `tty` is
        the container's (set at its start, not by the attach). Unlike an exec session, `kill`
        and `close` only detach: the container runs on; `close_stdin` closes the process's
        stdin only for a container with stdin_once (else it stays open for the next attach).
        `read` returns None once the container has exited (or the session detached); `wait`
        then gives the container's exit code, None while it still runs. RuntimeError_ for a
        container that is gone or not running."""
        ...

    def logs(self, container_id: str, *, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        """The container's output (stdout and stderr interleaved), as chunks."""
        ...

    def version(self) -> str:
        """The runtime's own version, for the Node's containerRuntimeVersion ("" when unknown)."""
        ...

    def close(self) -> None:
        ...
