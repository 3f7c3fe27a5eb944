"""The plain-namespace runtime (`--runtime namespaces`): a pod is a network namespace, cgroups
and processes run from the host's filesystem. It implements `orchestrator.node.runtime.Runtime`.

**Sandbox.** A pause process (native/pause.c) started by `np-shim sandbox` in fresh network, IPC
and UTS namespaces (hostname = the pod's name, `lo` up), detached from the agent (its own
session, re-parented away from the agent), holding them. `netns_path` is
`/proc/<pause pid>/ns/net`, as for the Docker runtime's infra container; the namespace is *not*
bind-mounted anywhere: it lives exactly as long as the pause process (and the containers in it),
so nothing can outlive a pod or be left mounted after a SIGKILL, and a dead pause process means
a `notready` sandbox, which the kubelet replaces by a new attempt (re-attaching the network) as
it does for Docker. Every use of the pid is checked against the recorded start time
(`/proc/<pid>/stat` field 22) and boot id, and processes are signalled and entered through
pidfds opened and then verified, so a reused pid is never signalled or entered.

**Containers.** `np-shim run` (native/np-shim.c; a small static C supervisor like conmon, one
per container, ~1 MB resident, no Python) daemonizes, forks the container process, which joins
its cgroups and the sandbox's network, IPC and UTS namespaces (`setns` on the pause process's
pidfd) *before* exec, so with the eBPF proxy socket LB sees the entrypoint's very first connect;
a private mount namespace (`/` made rslave) gets the pod's resolv.conf bind-mounted over
/etc/resolv.conf and the container's volume mounts (`ContainerConfig.mounts`: rbind, read-only
where asked). A volume's mount point is resolved inside the container's root (openat2
RESOLVE_IN_ROOT); the runtime never makes a directory in the host's (or an image directory's)
filesystem. A missing mount point is made below another volume mounted before it, or else in a
tmpfs that covers its deepest existing parent in the container's mount namespace only, showing
that directory's entries as bind mounts (live) and its symlinks (kubelet's
/var/run/secrets/kubernetes.io/serviceaccount: /run covered, /run/secrets made in the tmpfs).
The root itself is never covered, so `mountPath: /data` needs a /data on the host. The shim relays stdout/stderr into the log file, forwards SIGTERM (and INT,
HUP, QUIT, USR1, USR2), kills what the main process left in its cgroups when it exits (the
container ends with its main process, as under Docker), writes the exit status atomically and
exits: supervision and exit codes survive an agent SIGKILL. There is no PID namespace (the
container sees the host's processes, as with hostPID, whatever the pod says) and processes run
as root. `host_ipc` (hostIPC) leaves the sandbox in the agent's IPC namespace.

**What `image` means.** There are no images. An `image` that is an absolute path names a
directory to chroot into (a root filesystem already on the host; nothing is mounted into it, and
resolv.conf is bind-mounted only if `<dir>/etc/resolv.conf` exists); it must exist. Any other
value (`busybox`, `nginx:1.27`) is only recorded and reported: the process runs from the host's
filesystem. An image never supplies a command here, so `command` + `args` (`args` alone is the
command, like a Docker CMD) must name the program: an empty one is an error. The environment is
exactly `ContainerConfig.env` plus PATH (a default), HOSTNAME and HOME=/root when absent; the
working directory is `working_dir` or `/`.

**Logs.** `<state_dir>/containers/<id>/log` in kubelet's CRI format, one record per line:
`<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>` (P = part of a line longer than 16 KiB, or an
unterminated last line). `logs()` returns the text; `--tail N` counts records. Not rotated.

**On disk** (every record written to a temporary name and renamed, not fsync'ed; the intent is
recorded *before* cgroups or processes are made, so the state always names everything that
exists and `remove_sandbox` / `sweep` can remove it after a SIGKILL at any point):

    <state_dir>/sandboxes/<uid>_<attempt>/sandbox.json   pod, attempt, hostname, boot id, pod cgroups
                                         /resolv.conf    the pod's (when not the host's)
                                         /pause          pid=, start=  (written by np-shim)
                                         /pause.log      pause's stderr
    <state_dir>/containers/<uid>_<name>_<attempt>/config.json  pod, sandbox, image, argv, env, cgroups
                                         /shim           the supervisor's pid=, start=
                                         /pid            the container's pid=, start=, started_ns=
                                         /exit           status=, code=, signal=, finished_ns=, oom_kill=
                                         /log, /shim.log

**cgroups** (`<pod>` = `pod<uid>`): v1 hierarchies cpu, cpuacct, memory and pids (when mounted)
at `<mount>/<v1_root>/<node>/<pod>/<container>`; cgroup v2 at `<v2_cgroup>/<pod>/<container>`
(default `<cgroup2 mount>/<v1_root>/<node>`). The pause process sits in `<pod>/POD` (a pod cgroup
holds no process itself, as cgroup v2 requires of a cgroup with controllers enabled for its
children). Limits go to v1 where the controller is mounted there, else to v2: memory.limit_in_bytes
(and memory.memsw.limit_in_bytes, no swap beyond it) / memory.max (and memory.swap.max 0),
cpu.cfs_quota_us (period 100 ms) / cpu.max, cpu.shares / cpu.weight (runc's conversion from
shares; the kubelet computes shares from requests with MilliCPUToShares). On v2 the controllers (cpu, memory, pids) are enabled in
`cgroup.subtree_control` of `v2_cgroup` and of each pod; where that is refused (for example
`v2_cgroup` holds processes itself, like the lab's agent in its host cgroup) v2 limits are
skipped with one warning. `stats_entries()` gives the stats collector's `CgroupSource` the pods'
and containers' cgroup paths with dockershim's `io.kubernetes.*` labels.

One runtime instance (one agent) per state_dir at a time; a new instance on the same state_dir
adopts everything (nothing is kept only in memory). On a machine whose PID 1 does not reap
orphans (this VM's), exited shims and pause processes stay zombies; they hold no namespace,
cgroup or file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from stats.cgroups.hierarchy import Hierarchy

log = logging.getLogger(__name__)

LIBEXEC = Path("/usr/local/lib/netplane")  # where scripts/install.sh puts the static binaries
SHIM_BIN = LIBEXEC / "np-shim"
PAUSE_BIN = LIBEXEC / "pause"
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
V2_CONTROLLERS = ("cpu", "memory", "pids")
SANDBOX_CGROUP = "POD"  # upper case: never a valid container name
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CFS_PERIOD_US = 100_000
MIN_QUOTA_US = 1000  # kubelet's MinQuotaPeriod
SPAWN_TIMEOUT = 10.0
ATTACH_SOCKET = "attach"  # np-shim's attach socket, in the container's state directory
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ID_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$")  # no "_": it separates the parts of our ids


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] -> v2 cpu.weight [1, 10000] (runc's conversion)."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in ticks since boot) of a process, None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data.rsplit(b")", 1)[-1].split()
    try:
        return rest[0].decode(), int(rest[19])
    except (IndexError, ValueError):
        return None


def _read_kv(path: Path) -> dict[str, int] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            try:
                out[k.strip()] = int(v)
            except ValueError:
                continue
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_atomic(path: Path, data: str, mode: int = 0o600) -> None:
    """Write to a temporary name and rename: a reader (or the agent after a SIGKILL) sees all of
    it or nothing. Not fsync'ed: the state describes processes and cgroups, which a power cut
    ends anyway (records of an earlier boot are recognised by the boot id and removed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _wait_exit(pidfd: int, timeout: float) -> bool:
    """True once the pidfd's process has exited (within `timeout` seconds)."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(max(0.0, timeout) * 1000))


def _signal(pidfd: int, sig: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        pass


def _check_name(what: str, value: str) -> str:
    if not _ID_PART.match(value):
        raise RuntimeError_(f"{what} {value!r} is not usable as a name (letters, digits, '.', '-'; at most 128)")
    return value


@dataclass(frozen=True)
class CgroupRoot:
    """One hierarchy the runtime uses: where it is mounted, which controllers it serves us, and
    the directory pods go in."""

    version: int  # 1 or 2
    controllers: tuple[str, ...]
    mount: Path
    base: Path

    def rel(self, path: Path) -> str:
        """`path` relative to the hierarchy's root, as /proc/<pid>/cgroup and stats name it."""
        return "/" + str(path.relative_to(self.mount))


def cgroup_roots(node: str, *, v2_cgroup: Path | None, v1_root: str = "netplane",
                 hierarchy: Hierarchy | None = None) -> list[CgroupRoot]:
    """The hierarchies pods of `node` go in: v1 (cpu, cpuacct, memory, pids, when mounted; one
    entry per mount point) and the v2 directory."""
    h = hierarchy or Hierarchy.detect()
    roots: list[CgroupRoot] = []
    by_mount: dict[str, list[str]] = {}
    for ctrl, mount in h.v1:
        if ctrl in V1_CONTROLLERS:
            by_mount.setdefault(mount, []).append(ctrl)
    for mount, ctrls in by_mount.items():
        roots.append(CgroupRoot(1, tuple(ctrls), Path(mount), Path(mount) / v1_root / node))
    if h.v2:
        v2 = Path(h.v2)
        base = Path(v2_cgroup) if v2_cgroup is not None else v2 / v1_root / node
        if v2 != base and v2 not in base.parents:
            raise ConfigError(f"{base} is not inside the cgroup2 mount {v2}")
        roots.append(CgroupRoot(2, V2_CONTROLLERS, v2, base))
    elif v2_cgroup is not None:
        raise ConfigError(f"v2 cgroup {v2_cgroup} given, but this machine has no cgroup2 mount")
    return roots


class NamespaceRuntime:
    """Pods as namespaces + cgroups + host processes, supervised by np-shim. See the module doc."""

    name = "namespaces"

    def __init__(self, node: str, *, state_dir: Path, v2_cgroup: Path | None = None, v1_root: str = "netplane",
                 shim_bin: Path | str | None = None, pause_bin: Path | str | None = None,
                 hierarchy: Hierarchy | None = None) -> None:
        self.node = node
        for what, value in (("node", node), ("v1_root", v1_root)):
            if not _SAFE.match(value):
                raise ConfigError(f"{what} {value!r} is not usable in a cgroup path")
        self.state_dir = Path(state_dir)
        self.shim_bin = self._binary(shim_bin, "NETPLANE_SHIM", SHIM_BIN, "native/np-shim.c")
        self.pause_bin = self._binary(pause_bin, "NETPLANE_PAUSE", PAUSE_BIN, "native/pause.c")
        self.v2_given = v2_cgroup is not None
        self.roots = cgroup_roots(node, v2_cgroup=v2_cgroup, v1_root=v1_root, hierarchy=hierarchy)
        v2 = [r for r in self.roots if r.version == 2]
        if self.v2_given and v2 and not v2[0].base.is_dir():  # refused when a pod needs it
            log.warning("v2 cgroup %s does not exist: pods cannot start", v2_cgroup)
        self._v1_root = v1_root
        self._sandboxes = self.state_dir / "sandboxes"
        self._containers = self.state_dir / "containers"
        for d in (self._sandboxes, self._containers):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._boot = _boot_id()
        self._cache: dict[Path, Any] = {}  # records that never change once written
        self._locks: dict[str, threading.RLock] = {}
        self._locks_lock = threading.Lock()
        self._v2_enabled: frozenset[str] | None = None
        self._starting: set[str] = set()  # containers this instance is starting right now
        self._warned: set[str] = set()

    @staticmethod
    def _binary(given: Path | str | None, env: str, default: Path, source: str) -> Path:
        """Where a helper binary is; a missing one is reported here and refused when a pod
        needs it (so that listing and removing, e.g. `lab down`, work without it)."""
        p = Path(given) if given else Path(os.environ.get(env) or default)
        if not os.access(p, os.X_OK):
            log.warning("%s not found at %s: scripts/install.sh builds it from %s (or set %s); pods cannot start",
                        p.name, p, source, env)
        return p

    def _need_binaries(self, what: str) -> None:
        for p in (self.shim_bin, self.pause_bin):
            if not os.access(p, os.X_OK):
                raise RuntimeError_(f"{what}: {p} is missing (scripts/install.sh builds it from native/)")

    # ------------------------------------------------------------------ small helpers
    def _lock(self, uid: str) -> threading.RLock:
        with self._locks_lock:
            return self._locks.setdefault(uid, threading.RLock())

    def _once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    def _record(self, path: Path, reader: Any) -> Any:
        """A record that is immutable once it exists, read once."""
        hit = self._cache.get(path)
        if hit is None:
            hit = reader(path)
            if hit is not None:
                self._cache[path] = hit
        return hit

    def _forget(self, d: Path) -> None:
        for p in [p for p in list(self._cache) if p.parent == d]:  # list(): other threads add
            self._cache.pop(p, None)

    def _alive(self, rec: dict[str, int] | None, boot: str) -> bool:
        if not rec or boot != self._boot or "pid" not in rec:
            return False
        st = _proc_stat(rec["pid"])
        return st is not None and st[1] == rec.get("start") and st[0] not in ("Z", "X")

    def _pidfd(self, rec: dict[str, int] | None, boot: str) -> int | None:
        """A pidfd of the recorded process, verified after opening (start time, not a zombie, and
        still alive after the check: so it is that process and no later holder of the pid)."""
        if not rec or boot != self._boot or "pid" not in rec:
            return None
        try:
            fd = os.pidfd_open(rec["pid"])
        except OSError:
            return None
        st = _proc_stat(rec["pid"])
        ok = st is not None and st[1] == rec.get("start") and st[0] not in ("Z", "X")
        if ok:
            try:
                signal.pidfd_send_signal(fd, 0)
            except OSError:
                ok = False
        if not ok:
            os.close(fd)
            return None
        return fd

    def _spawn(self, argv: Sequence[str], *, env: dict[str, str], fds: Sequence[int] = (), what: str) -> str:
        """Run np-shim with a status pipe (its number replaces "{status}" in argv); returns what
        it wrote there before closing it. np-shim's first process exits at once (after a fork)."""
        self._need_binaries(what)
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                p = subprocess.Popen([a.replace("{status}", str(w)) for a in argv], env=env, cwd="/",
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, pass_fds=(w, *fds))
            except (OSError, ValueError) as e:
                raise RuntimeError_(f"{what}: cannot run {self.shim_bin}: {e}") from e
            finally:
                os.close(w)
            chunks: list[bytes] = []
            deadline = time.monotonic() + SPAWN_TIMEOUT
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([r], [], [], left)[0]:
                    raise RuntimeError_(f"{what}: np-shim did not report within {SPAWN_TIMEOUT:.0f} s")
                chunk = os.read(r, 4096)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(r)
        try:
            rc = p.wait(timeout=SPAWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        text = b"".join(chunks).decode(errors="replace").strip()
        if text.startswith("error:"):
            raise RuntimeError_(f"{what}: {text[len('error:'):].strip()}")
        if rc != 0:
            raise RuntimeError_(f"{what}: np-shim exited with {rc} ({text or 'no message'}; is {self.shim_bin} "
                                "the version of this netplane?)")
        return text

    # ------------------------------------------------------------------ cgroups
    def _enable_v2(self, root: CgroupRoot, d: Path, want: Iterable[str]) -> frozenset[str]:
        """Enable controllers for `d`'s children; returns those enabled."""
        try:
            have = set((d / "cgroup.subtree_control").read_text().split())
        except OSError as e:
            self._once(f"v2-read-{d}", "cgroup v2 %s: cannot read cgroup.subtree_control (%s): no v2 limits", d, e)
            return frozenset()
        for c in want:
            if c in have:
                continue
            try:
                (d / "cgroup.subtree_control").write_text(f"+{c}")
                have.add(c)
            except OSError as e:
                self._once(f"v2-enable-{d}-{c}", "cgroup v2 %s: cannot enable %s for its children (%s): no v2 %s "
                           "limits for pods", d, c, e.strerror or e, c)
        return frozenset(c for c in want if c in have)

    def _v2_available(self, root: CgroupRoot) -> frozenset[str]:
        if self._v2_enabled is None:
            try:
                avail = set((root.base / "cgroup.controllers").read_text().split())
            except OSError:
                avail = set()
            self._v2_enabled = self._enable_v2(root, root.base, [c for c in V2_CONTROLLERS if c in avail])
        return self._v2_enabled

    def _make_pod_cgroups(self, pod_dirs: Sequence[tuple[CgroupRoot, Path]]) -> None:
        for root, d in pod_dirs:
            if root.version == 2 and self.v2_given and not root.base.is_dir():
                raise RuntimeError_(f"v2 cgroup {root.base} does not exist (it is the host's: never made here)")
            try:
                d.mkdir(parents=True, exist_ok=True)
                if root.version == 2:
                    v1_has = {c for r in self.roots if r.version == 1 for c in r.controllers}
                    self._enable_v2(root, d, [c for c in self._v2_available(root) if c not in v1_has])
                (d / SANDBOX_CGROUP).mkdir(exist_ok=True)
            except OSError as e:
                raise RuntimeError_(f"cannot create cgroup {d}: {e.strerror or e}") from e

    def _pod_dirs(self, sandbox_rec: dict[str, Any]) -> list[tuple[CgroupRoot, Path]]:
        """The pod cgroups a sandbox record names, with the hierarchy each is in."""
        out = []
        for text in sandbox_rec.get("cgroups") or []:
            p = Path(text)
            root = next((r for r in self.roots if r.mount in p.parents), None)
            out.append((root or CgroupRoot(0, (), p.parent, p.parent), p))
        return out

    def _set_limits(self, dirs: Sequence[tuple[CgroupRoot, Path]], pod_dirs: Sequence[tuple[CgroupRoot, Path]],
                    cfg: ContainerConfig) -> None:
        v1_has = {c for r in self.roots if r.version == 1 for c in r.controllers}
        writes: list[tuple[Path, str]] = []
        wanted = {"cpu": bool(cfg.cpu_shares or cfg.cpu_quota_us), "memory": bool(cfg.memory_limit)}
        done: set[str] = set()
        for root, d in dirs:
            if root.version == 1:
                if "cpu" in root.controllers:
                    if cfg.cpu_shares:
                        writes.append((d / "cpu.shares", str(min(max(cfg.cpu_shares, 2), 262144))))
                    if cfg.cpu_quota_us:
                        writes.append((d / "cpu.cfs_period_us", str(CFS_PERIOD_US)))
                        writes.append((d / "cpu.cfs_quota_us", str(max(cfg.cpu_quota_us, MIN_QUOTA_US))))
                    done.add("cpu")
                if "memory" in root.controllers:
                    if cfg.memory_limit:  # and no swap beyond it, as kubelet asks of Docker
                        writes.append((d / "memory.limit_in_bytes", str(cfg.memory_limit)))
                        writes.append((d / "memory.memsw.limit_in_bytes", str(cfg.memory_limit)))
                    done.add("memory")
            elif root.version == 2:
                try:
                    enabled = set((d.parent / "cgroup.subtree_control").read_text().split())
                except OSError:
                    enabled = set()
                if "cpu" in enabled and "cpu" not in v1_has:
                    if cfg.cpu_shares:
                        writes.append((d / "cpu.weight", str(shares_to_weight(cfg.cpu_shares))))
                    if cfg.cpu_quota_us:
                        writes.append((d / "cpu.max", f"{max(cfg.cpu_quota_us, MIN_QUOTA_US)} {CFS_PERIOD_US}"))
                    done.add("cpu")
                if "memory" in enabled and "memory" not in v1_has:
                    if cfg.memory_limit:
                        writes.append((d / "memory.max", str(cfg.memory_limit)))
                        writes.append((d / "memory.swap.max", "0"))
                    done.add("memory")
        for res, want in wanted.items():
            if want and res not in done:
                self._once(f"limit-{res}", "no %s controller for pods' cgroups here: %s limits are not applied", res, res)
        for path, value in writes:
            try:
                path.write_text(value)
            except FileNotFoundError:
                if "swap" not in path.name and "memsw" not in path.name:  # no swap accounting: fine
                    raise RuntimeError_(f"cannot set {path.name} in {path.parent}: no such file") from None
            except OSError as e:
                raise RuntimeError_(f"cannot set {path.name}={value} in {path.parent}: {e.strerror or e}") from e

    @staticmethod
    def _procs(d: Path) -> list[int]:
        """Every process in cgroup `d` and below."""
        out: list[int] = []
        for dirpath, _dirs, _files in os.walk(d):
            try:
                text = Path(dirpath, "cgroup.procs").read_text()
            except OSError:
                continue
            out += [int(x) for x in text.split()]
        return out

    def _kill_cgroup(self, d: Path) -> None:
        """SIGKILL everything in our cgroup `d` (and below); wait until it is empty."""
        kill_file = d / "cgroup.kill"
        for _ in range(100):
            pids = self._procs(d)
            if not pids:
                return
            if kill_file.exists():
                try:
                    kill_file.write_text("1")
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        raise RuntimeError_(f"cgroup {d}: processes {self._procs(d)} did not die")

    @staticmethod
    def _rmdir(d: Path, *, tries: int = 50) -> None:
        """rmdir one cgroup (children first); missing is fine; busy is retried briefly."""
        if not d.is_dir():
            return
        for child in [c for c in d.iterdir() if c.is_dir()]:
            NamespaceRuntime._rmdir(child, tries=tries)
        for i in range(tries):
            try:
                d.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY or i == tries - 1:
                    raise RuntimeError_(f"cannot remove cgroup {d}: {e.strerror or e}") from e
                time.sleep(0.01)

    # ------------------------------------------------------------------ sandboxes
    def _sandbox_rec(self, sid: str) -> dict[str, Any] | None:
        rec: dict[str, Any] | None = self._record(self._sandboxes / sid / "sandbox.json", _read_json)
        return rec

    def _sandbox_info(self, sid: str) -> SandboxInfo | None:
        d = self._sandboxes / sid
        rec = self._sandbox_rec(sid)
        if rec is None:
            return None
        pause = self._record(d / "pause", _read_kv)
        ready = self._alive(pause, rec.get("boot", "")) and not (d / "stopped").exists()
        return SandboxInfo(
            id=sid, pod=PodRef(rec["uid"], rec["name"], rec["namespace"]), attempt=int(rec["attempt"]),
            state="ready" if ready else "notready",
            netns_path=f"/proc/{pause['pid']}/ns/net" if ready else "",
            created_at=float(rec["created_at"]),
        )

    def run_sandbox(self, config: SandboxConfig) -> SandboxInfo:
        ref = config.pod
        _check_name("pod uid", ref.uid)
        sid = f"{ref.uid}_{int(config.attempt)}"
        hostname = (config.hostname or ref.name or ref.uid)[:63]
        if config.host_network:
            hostname = os.uname().nodename  # the node's UTS namespace
        with self._lock(ref.uid):
            d = self._sandboxes / sid
            if d.exists():
                info = self._sandbox_info(sid)
                if info is not None and info.state == "ready":
                    return info
                self._remove_sandbox(sid)  # half-made or dead: start again
            pod_dirs = [(r, r.base / f"pod{ref.uid}") for r in self.roots]
            rec = {"id": sid, "uid": ref.uid, "name": ref.name, "namespace": ref.namespace,
                   "attempt": int(config.attempt), "created_at": time.time(), "boot": self._boot,
                   "hostname": hostname, "node": self.node, "labels": dict(config.labels),
                   "cgroups": [str(p) for _, p in pod_dirs], "host_network": bool(config.host_network),
                   "host_ipc": bool(config.host_ipc)}
            try:
                d.mkdir(mode=0o700)
                if config.resolv_conf:
                    _write_atomic(d / "resolv.conf", config.resolv_conf, 0o644)
                _write_atomic(d / "sandbox.json", json.dumps(rec))  # before anything is made
                self._make_pod_cgroups(pod_dirs)
                argv = [str(self.shim_bin), "sandbox", "--status-fd", "{status}", "--dir", str(d),
                        "--hostname", hostname, "--pause", str(self.pause_bin)]
                for _, p in pod_dirs:
                    argv += ["--cgroup", str(p / SANDBOX_CGROUP)]
                if config.host_network:  # the network namespace the runtime (the agent) runs in
                    argv += ["--host-network", "on"]
                if config.host_ipc:  # likewise its IPC namespace
                    argv += ["--host-ipc", "on"]
                self._spawn(argv, env={}, what=f"sandbox of pod {ref.namespace}/{ref.name}")
                info = self._sandbox_info(sid)
                if info is None or info.state != "ready":
                    raise RuntimeError_(f"sandbox of pod {ref.namespace}/{ref.name}: the pause process "
                                        f"exited at once (see {d / 'pause.log'})")
                return info
            except BaseException as e:
                try:
                    self._remove_sandbox(sid)
                except Exception as e2:  # noqa: BLE001 - report the first failure; sweep retries
                    log.warning("cleaning up sandbox %s after a failed start: %s", sid, e2)
                if isinstance(e, OSError):
                    raise RuntimeError_(f"sandbox of pod {ref.namespace}/{ref.name}: {e}") from e
                raise

    def stop_sandbox(self, sandbox_id: str) -> None:
        rec = self._sandbox_rec(sandbox_id)
        if rec is None:
            return
        for cid in self._container_ids(rec["uid"]):
            c = self._container_rec(cid)
            if c is not None and c.get("sandbox") == sandbox_id:
                self._kill_container(cid, c)
        d = self._sandboxes / sandbox_id
        if d.is_dir():
            _write_atomic(d / "stopped", "", 0o600)
        fd = self._pidfd(self._record(d / "pause", _read_kv), rec.get("boot", ""))
        if fd is not None:
            try:
                _signal(fd, signal.SIGTERM)  # pause exits 0 on SIGTERM
                if not _wait_exit(fd, 2.0):
                    _signal(fd, signal.SIGKILL)
                    _wait_exit(fd, 5.0)
            finally:
                os.close(fd)

    def remove_sandbox(self, sandbox_id: str) -> None:
        uid = sandbox_id.rsplit("_", 1)[0]
        with self._lock(uid):
            self._remove_sandbox(sandbox_id)

    def _remove_sandbox(self, sandbox_id: str) -> None:
        d = self._sandboxes / sandbox_id
        if not d.exists():
            return
        rec = _read_json(d / "sandbox.json")
        if rec is not None:
            self.stop_sandbox(sandbox_id)
            uid = rec["uid"]
            others = [s for s in self._sandbox_ids() if s != sandbox_id and (self._sandbox_rec(s) or {}).get("uid") == uid]
            for cid in self._container_ids(uid):
                c = self._container_rec(cid)
                if c is None or c.get("sandbox") == sandbox_id or c.get("sandbox") not in others:
                    self._remove_container(cid)
            if not others:  # the pod's cgroups are this sandbox's alone
                for _, p in self._pod_dirs(rec):
                    if p.is_dir():
                        self._kill_cgroup(p)
                        self._rmdir(p)
        self._forget(d)
        shutil.rmtree(d, ignore_errors=True)
        self._cache.pop(d / "sandbox.json", None)

    def _sandbox_ids(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self._sandboxes) if e.is_dir())
        except FileNotFoundError:
            return []

    def list_sandboxes(self) -> list[SandboxInfo]:
        out = []
        for sid in self._sandbox_ids():
            info = self._sandbox_info(sid)
            if info is not None:
                out.append(info)
        return out

    # ------------------------------------------------------------------ containers
    def _container_rec(self, cid: str) -> dict[str, Any] | None:
        rec: dict[str, Any] | None = self._record(self._containers / cid / "config.json", _read_json)
        return rec

    def _container_ids(self, pod_uid: str | None = None) -> list[str]:
        try:
            names = sorted(e.name for e in os.scandir(self._containers) if e.is_dir())
        except FileNotFoundError:
            return []
        if pod_uid is None:
            return names
        return [n for n in names if n.startswith(f"{pod_uid}_")]

    def _image_root(self, image: str) -> str | None:
        if not image.startswith("/"):
            return None
        if not os.path.isdir(image):
            raise RuntimeError_(f"image {image} does not exist (an absolute path names a directory to chroot into)")
        return os.path.realpath(image)

    def create_and_start(self, sandbox: SandboxInfo, config: ContainerConfig) -> ContainerInfo:
        ref = sandbox.pod
        who = f"container {config.name} of pod {ref.namespace}/{ref.name}"
        _check_name("container name", config.name)
        if config.name == SANDBOX_CGROUP:
            raise RuntimeError_(f"{who}: the name {SANDBOX_CGROUP} is the sandbox's")
        argv = [*config.command, *config.args]
        if not argv:
            raise RuntimeError_(f"{who}: no command: the namespace runtime runs programs of the host, and image "
                                f"{config.image!r} supplies none; set command (or args)")
        root = self._image_root(config.image)
        cid = f"{ref.uid}_{config.name}_{int(config.attempt)}"
        with self._lock(ref.uid):
            srec = self._sandbox_rec(sandbox.id)
            sdir = self._sandboxes / sandbox.id
            if srec is None:
                raise RuntimeError_(f"{who}: no sandbox {sandbox.id}")
            pause_fd = self._pidfd(self._record(sdir / "pause", _read_kv), srec.get("boot", ""))
            if pause_fd is None or (sdir / "stopped").exists():
                if pause_fd is not None:
                    os.close(pause_fd)
                raise RuntimeError_(f"{who}: sandbox {sandbox.id} is not ready (its pause process is gone)")
            try:
                d = self._containers / cid
                if d.exists():
                    cur = self._container_info(cid)
                    if cur is not None and cur.state in ("running", "created"):
                        return cur
                    self._remove_container(cid)
                pod_dirs = self._pod_dirs(srec)
                dirs = [(r, p / config.name) for r, p in pod_dirs]
                env = dict(config.env)
                env.setdefault("PATH", DEFAULT_PATH)
                env.setdefault("HOSTNAME", str(srec.get("hostname", "")))
                env.setdefault("HOME", "/root")
                resolv = sdir / "resolv.conf"
                rec = {"id": cid, "uid": ref.uid, "pod_name": ref.name, "namespace": ref.namespace, "name": config.name,
                       "attempt": int(config.attempt), "sandbox": sandbox.id, "image": config.image, "argv": argv,
                       "env": env, "root": root, "cwd": config.working_dir, "created_at": time.time(),
                       "stdin": bool(config.stdin), "stdin_once": bool(config.stdin and config.stdin_once),
                       "tty": bool(config.tty),
                       "mounts": [[m.host_path, m.container_path, m.read_only] for m in config.mounts],
                       "boot": self._boot, "cgroups": [str(p) for _, p in dirs]}
                self._starting.add(cid)
                d.mkdir(mode=0o700)
                _write_atomic(d / "config.json", json.dumps(rec))  # before anything is made
                try:
                    for _, p in dirs:
                        p.mkdir(exist_ok=True)
                except OSError as e:
                    raise RuntimeError_(f"cannot create cgroup {e.filename}: {e.strerror or e}") from e
                self._set_limits(dirs, pod_dirs, config)
                shim = [str(self.shim_bin), "run", "--status-fd", "{status}", "--dir", str(d),
                        "--ns-pidfd", str(pause_fd), "--log", str(d / "log")]
                for _, p in dirs:
                    shim += ["--cgroup", str(p)]
                if resolv.exists():
                    shim += ["--resolv", str(resolv)]
                if root:
                    shim += ["--root", root]
                if config.working_dir:
                    shim += ["--cwd", config.working_dir]
                if config.stdin:
                    shim += ["--stdin", "once" if config.stdin_once else "open"]
                if config.tty:
                    shim += ["--tty", "on"]
                for m in config.mounts:
                    shim += ["--bind", m.host_path, "--bind-to", m.container_path,
                             "--bind-mode", "ro" if m.read_only else "rw"]
                shim += ["--attach", ATTACH_SOCKET]
                self._spawn([*shim, "--", *argv], env=env, fds=(pause_fd,), what=f"start {who}")
                info = self._container_info(cid)
                if info is None:
                    raise RuntimeError_(f"start {who}: its state vanished")
                return info
            except BaseException as e:
                try:
                    self._remove_container(cid)
                except Exception as e2:  # noqa: BLE001 - report the first failure; sweep retries
                    log.warning("cleaning up %s after a failed start: %s", who, e2)
                if isinstance(e, OSError):
                    raise RuntimeError_(f"start {who}: {e}") from e
                raise
            finally:
                self._starting.discard(cid)
                os.close(pause_fd)

    def _container_info(self, cid: str) -> ContainerInfo | None:
        d = self._containers / cid
        rec = self._container_rec(cid)
        if rec is None:
            return None
        boot = rec.get("boot", "")
        ex = self._record(d / "exit", _read_kv)
        pid = self._record(d / "pid", _read_kv)
        started = pid["started_ns"] / 1e9 if pid and "started_ns" in pid else None
        state: ContainerStateName
        code: int | None = None
        finished: float | None = None
        reason = message = ""
        if ex is not None:
            state, code, finished = "exited", ex.get("code"), ex.get("finished_ns", 0) / 1e9 or None
            reason = "OOMKilled" if ex.get("oom_kill") else ("Completed" if code == 0 else "Error")
        elif boot != self._boot:
            state, reason, message = "exited", "Unknown", "the machine restarted while it ran"
        elif pid is not None:
            if self._alive(pid, boot) or self._alive(self._record(d / "shim", _read_kv), boot):
                state = "running"  # (a shim alive after its container is about to record the exit)
            else:
                ex = _read_kv(d / "exit")  # recorded between the two reads above?
                if ex is not None:
                    return self._container_info(cid)
                state, reason = "exited", "Unknown"
                message = "its supervisor (np-shim) was killed: the exit status is lost"
        elif cid in self._starting or self._alive(self._record(d / "shim", _read_kv), boot):
            state = "created"
        else:
            state, reason = "exited", "StartError"
            message = "it never started (the agent stopped while starting it)"
        return ContainerInfo(
            id=cid, pod=PodRef(rec["uid"], rec["pod_name"], rec["namespace"]), name=rec["name"],
            attempt=int(rec["attempt"]), image=rec["image"], state=state, created_at=float(rec["created_at"]),
            started_at=started, finished_at=finished, exit_code=code, reason=reason, message=message,
        )

    def list_containers(self, pod_uid: str | None = None) -> list[ContainerInfo]:
        out = []
        for cid in self._container_ids(pod_uid):
            info = self._container_info(cid)
            if info is not None and (pod_uid is None or info.pod.uid == pod_uid):
                out.append(info)
        return out

    def stop_container(self, container_id: str, grace: float) -> None:
        d = self._containers / container_id
        rec = self._container_rec(container_id)
        if rec is None:
            return
        boot = rec.get("boot", "")
        shim = self._record(d / "shim", _read_kv)
        pid = self._record(d / "pid", _read_kv)
        if pid is None and self._alive(shim, boot):  # being started: wait for it to run, briefly
            deadline = time.monotonic() + 2.0
            while pid is None and time.monotonic() < deadline and self._alive(shim, boot):
                time.sleep(0.01)
                pid = self._record(d / "pid", _read_kv)
        fd = self._pidfd(pid, boot)
        if fd is not None:
            try:
                _signal(fd, signal.SIGTERM)
                if not _wait_exit(fd, grace):
                    _signal(fd, signal.SIGKILL)
                    _wait_exit(fd, 5.0)
            finally:
                os.close(fd)
        self._wait_shim(d, shim, boot)

    def _wait_shim(self, d: Path, shim: dict[str, int] | None, boot: str, timeout: float = 5.0) -> None:
        """Until the supervisor has recorded the exit and gone."""
        fd = self._pidfd(shim, boot)
        if fd is not None:
            try:
                _wait_exit(fd, timeout)
            finally:
                os.close(fd)

    def _kill_container(self, cid: str, rec: dict[str, Any]) -> None:
        d = self._containers / cid
        boot = rec.get("boot", "")
        fd = self._pidfd(self._record(d / "pid", _read_kv), boot)
        if fd is not None:
            try:
                _signal(fd, signal.SIGKILL)
                _wait_exit(fd, 5.0)
            finally:
                os.close(fd)
        shim = self._record(d / "shim", _read_kv)
        if not (d / "pid").exists():  # never exec'd: the supervisor is mid-start
            fd = self._pidfd(shim, boot)
            if fd is not None:
                try:
                    _signal(fd, signal.SIGKILL)
                finally:
                    os.close(fd)
        self._wait_shim(d, shim, boot)

    def remove_container(self, container_id: str) -> None:
        rec = self._container_rec(container_id)
        uid = rec["uid"] if rec else container_id.split("_", 1)[0]
        with self._lock(uid):
            self._remove_container(container_id)

    def _remove_container(self, cid: str) -> None:
        d = self._containers / cid
        if not d.exists():
            return
        rec = _read_json(d / "config.json")
        if rec is not None:
            self._kill_container(cid, rec)
            # the cgroup is per container name: keep it while another instance of the name has state
            prefix = f"{rec['uid']}_{rec['name']}_"
            if not any(c != cid and c.startswith(prefix) and (self._container_rec(c) or {}).get("name") == rec["name"]
                       for c in self._container_ids(rec["uid"])):
                for text in rec.get("cgroups") or []:
                    try:
                        self._rmdir(Path(text), tries=5)
                    except RuntimeError_ as e:  # something still runs there: the pod's removal kills it
                        log.info("%s", e)
        self._forget(d)
        shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ exec and logs
    def _running(self, cid: str) -> tuple[dict[str, Any], int]:
        rec = self._container_rec(cid)
        if rec is None:
            raise RuntimeError_(f"no container {cid}")
        fd = self._pidfd(self._record(self._containers / cid / "pid", _read_kv), rec.get("boot", ""))
        if fd is None:
            raise RuntimeError_(f"container {rec['name']} of pod {rec['namespace']}/{rec['pod_name']} is not running")
        return rec, fd

    def _shim_exec(self, container_id: str, cmd: Sequence[str], *, tty: bool = False,
                   **stdio: Any) -> subprocess.Popen[bytes]:
        """`np-shim exec` of `cmd` in the running container with the container's environment
        (plus TERM=xterm with a TTY unless it sets TERM, as Docker does) and the standard
        streams `stdio` gives (Popen's stdin, stdout, stderr). The process is a session and
        process group leader (np-shim's setsid)."""
        if not cmd:
            raise RuntimeError_("exec: no command")
        self._need_binaries(f"exec in {container_id}")
        rec, fd = self._running(container_id)
        argv = [str(self.shim_bin), "exec", "--ns-pidfd", str(fd)]
        for text in rec.get("cgroups") or []:
            argv += ["--cgroup", text]
        if rec.get("root"):
            argv += ["--root", rec["root"]]
        if rec.get("cwd"):
            argv += ["--cwd", rec["cwd"]]
        env = dict(rec.get("env") or {})
        if tty:
            env.setdefault("TERM", "xterm")
        try:
            return subprocess.Popen([*argv, "--", *cmd], env=env, cwd="/", pass_fds=(fd,), **stdio)
        except (OSError, ValueError) as e:
            raise RuntimeError_(f"exec in {container_id}: {e}") from e
        finally:
            os.close(fd)

    def exec(self, container_id: str, cmd: Sequence[str], *, timeout: float) -> tuple[int, bytes]:
        p = self._shim_exec(container_id, cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=timeout)
            return p.returncode, out
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # np-shim exec made it a process group leader
            except OSError:
                pass
            p.kill()
            try:
                out, _ = p.communicate(timeout=2.0)
            except subprocess.TimeoutExpired:
                out = b""
            return -1, out

    def exec_session(self, container_id: str, cmd: Sequence[str], *, stdin: bool, tty: bool,
                     width: int = 0, height: int = 0) -> ShimExecSession:
        """`np-shim exec` with its streams attached: two pipes (stdout, stderr) and a stdin pipe
        when asked (else /dev/null); with a TTY one pty, whose slave is the process's stdin,
        stdout, stderr and controlling terminal (np-shim's TIOCSCTTY: job control works) and
        whose master the session keeps; TERM=xterm unless the container sets TERM, as Docker
        does for an exec with a TTY."""
        if not tty:
            p = self._shim_exec(container_id, cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            return ShimExecSession(p, tty=False)
        master, slave = os.openpty()  # both close-on-exec; Popen dup2s the slave onto 0, 1 and 2
        try:
            if width > 0 and height > 0:
                _set_winsize(master, width, height)  # before the command can ask
            p = self._shim_exec(container_id, cmd, tty=True, stdin=slave, stdout=slave, stderr=slave)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)  # the child's copies are the only ones: its exit is EOF (EIO) on the master
        return ShimExecSession(p, tty=True, master=master, stdin=stdin)

    def attach(self, container_id: str, *, stdin: bool) -> ShimAttachSession:
        """A session on np-shim's attach socket (`native/np-shim.c`, run --attach): the main
        process's output from now on and, when asked and the container has stdin, its stdin."""
        rec, fd = self._running(container_id)
        os.close(fd)
        who = f"container {rec['name']} of pod {rec['namespace']}/{rec['pod_name']}"
        d = self._containers / container_id
        try:
            dfd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise RuntimeError_(f"attach to {who}: {e.strerror or e}") from e
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # through the directory's descriptor: the socket's full path may not fit in sun_path
            s.connect(f"/proc/self/fd/{dfd}/{ATTACH_SOCKET}")
            want_stdin = stdin and bool(rec.get("stdin"))
            if want_stdin:
                s.send(bytes([ATTACH_HELLO_STDIN]))
        except OSError as e:
            s.close()
            why = ("it was started by an np-shim without attach (before this version); restart it"
                   if e.errno == errno.ENOENT else e.strerror or str(e))
            raise RuntimeError_(f"attach to {who}: {why}") from e
        finally:
            os.close(dfd)
        return ShimAttachSession(self, container_id, s, tty=bool(rec.get("tty")), stdin=want_stdin)

    def logs(self, container_id: str, *, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        rec = self._container_rec(container_id)
        if rec is None:
            raise RuntimeError_(f"no container {container_id}")
        return self._logs(container_id, tail, follow)

    def _logs(self, cid: str, tail: int | None, follow: bool) -> Iterator[bytes]:
        path = self._containers / cid / "log"
        try:
            f = open(path, "rb")  # noqa: SIM115 - held across yields
        except FileNotFoundError:
            if not follow:
                return
            while not path.exists():
                if self._finished(cid):
                    return
                time.sleep(0.1)
            f = open(path, "rb")  # noqa: SIM115
        with f:
            if tail is not None:
                start = _tail_offset(f, tail)
                f.seek(start)
            pending = b""
            while True:
                data = f.read()
                if data:
                    pending += data
                    lines, _, pending = pending.rpartition(b"\n")
                    if lines:
                        yield b"".join(_cri_text(line) for line in lines.split(b"\n"))
                    continue
                if not follow:
                    return
                if self._finished(cid):
                    # what was written between the read above and the exit record: kept, not
                    # read and dropped (the last line went missing when it came just then)
                    pending += f.read()
                    lines, _, pending = pending.rpartition(b"\n")
                    if lines:
                        yield b"".join(_cri_text(line) for line in lines.split(b"\n"))
                    return
                time.sleep(0.1)

    def _finished(self, cid: str) -> bool:
        info = self._container_info(cid)
        return info is None or info.state not in ("running", "created")

    # ------------------------------------------------------------------ housekeeping
    def sweep(self, keep_uids: Iterable[str]) -> list[str]:
        """Remove every sandbox and container (processes, cgroups, state) of pods not in
        `keep_uids`, also half-made ones; with nothing kept, also our empty parent cgroups.
        Returns the pod uids removed."""
        keep = set(keep_uids)
        gone: set[str] = set()
        errors: list[str] = []
        for sid in self._sandbox_ids():
            rec = _read_json(self._sandboxes / sid / "sandbox.json")
            uid = str(rec["uid"]) if rec else sid.rsplit("_", 1)[0]
            if uid not in keep:
                gone.add(uid)
                try:
                    self.remove_sandbox(sid)
                except RuntimeError_ as e:  # the others still go; this one is tried again next time
                    errors.append(str(e))
        for cid in self._container_ids():
            rec = _read_json(self._containers / cid / "config.json")
            uid = str(rec["uid"]) if rec else cid.split("_", 1)[0]
            if uid not in keep:
                gone.add(uid)
                try:
                    self.remove_container(cid)
                except RuntimeError_ as e:
                    errors.append(str(e))
        if errors:
            raise RuntimeError_(f"sweep: {len(errors)} left: {'; '.join(errors)}")
        if not keep and not self._sandbox_ids() and not self._container_ids():
            for r in self.roots:  # the node's directories (and v1_root when empty); never a given v2 cgroup
                owned = r.version == 1 or not self.v2_given
                for d in ([r.base, r.base.parent] if owned else []):
                    try:
                        d.rmdir()
                    except OSError:
                        pass
        return sorted(gone)

    def stats_entries(self) -> list[dict[str, Any]]:
        """Pods' and running containers' cgroups for the stats collector's `CgroupSource`: path
        below the hierarchy roots (the v1 memory hierarchy's when there is one, else v2's), a pid
        for the network namespace, dockershim's labels."""
        root = next((r for r in self.roots if "memory" in r.controllers and r.version == 1), None)
        root = root or next((r for r in self.roots if r.version == 2), None)
        if root is None:
            return []
        out: list[dict[str, Any]] = []
        for s in self.list_sandboxes():
            if s.state != "ready":
                continue
            labels = {"io.kubernetes.pod.name": s.pod.name, "io.kubernetes.pod.namespace": s.pod.namespace,
                      "io.kubernetes.pod.uid": s.pod.uid}
            pod_dir = root.base / f"pod{s.pod.uid}"
            pause = self._record(self._sandboxes / s.id / "pause", _read_kv) or {}
            out.append({"path": root.rel(pod_dir), "id": f"pod{s.pod.uid}", "name": f"{s.pod.namespace}/{s.pod.name}",
                        "pid": pause.get("pid"), "labels": labels})
            # the sandbox (pause) as kubelet reports Docker's infra container: container="POD"
            out.append({"path": root.rel(pod_dir / "POD"), "id": s.id, "name": f"{s.pod.namespace}/{s.pod.name}/POD",
                        "image": "pause", "pid": pause.get("pid"),
                        "labels": {**labels, "io.kubernetes.container.name": "POD"}})
            for c in self.list_containers(s.pod.uid):
                if c.state != "running":
                    continue
                pid = self._record(self._containers / c.id / "pid", _read_kv) or {}
                out.append({"path": root.rel(pod_dir / c.name), "id": c.id,
                            "name": f"{s.pod.namespace}/{s.pod.name}/{c.name}",
                            "image": c.image, "pid": pid.get("pid"),
                            "labels": {**labels, "io.kubernetes.container.name": c.name}})
        return out

    def version(self) -> str:
        from netplane import __version__

        return __version__

    def close(self) -> None:
        self._cache.clear()


def _cri_text(line: bytes) -> bytes:
    """The text of one CRI log record (`<time> <stream> <F|P> <text>`); F ends a line."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return line + b"\n"
    text = parts[3] if len(parts) == 4 else b""
    return text + b"\n" if parts[2] == b"F" else text


def _tail_offset(f: Any, n: int) -> int:
    """Offset of the start of the last `n` records (lines) of the file."""
    end = int(f.seek(0, os.SEEK_END))
    if n <= 0:
        return end
    pos, count = end, 0
    while pos > 0:
        size = min(64 * 1024, pos)
        pos -= size
        f.seek(pos)
        chunk = f.read(size)
        i = len(chunk)
        if pos + size == end and chunk.endswith(b"\n"):
            i -= 1  # the last record's own newline
        while (i := chunk.rfind(b"\n", 0, i)) >= 0:
            count += 1
            if count == n:
                return pos + i + 1
    return 0


def _set_winsize(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", max(0, height), max(0, width), 0, 0))


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid`, each through a pidfd opened before its session
    is checked (never a process that took a pid over); passes until none is left."""
    for _ in range(5):
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fd = os.pidfd_open(int(entry.name))
            except OSError:
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[-1].split()
                if int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):
                    _signal(fd, signal.SIGKILL)
                    found = True
            except (OSError, IndexError, ValueError):
                pass
            finally:
                os.close(fd)
        if not found:
            return


def _exit_code(returncode: int) -> int:
    """Popen's returncode (-N: killed by signal N) as kubelet reports it (128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


class ShimExecSession:
    """`orchestrator.node.runtime.ExecSession` over an `np-shim exec` child (see
    `NamespaceRuntime.exec_session`). Output is read and stdin written non-blocking, each next
    to a wake-up pipe that `close` makes readable: a read or write blocked in another thread
    returns, and only then are the descriptors closed (never one a blocked call still uses).
    The child is reaped only under `_reap`, so `kill` never signals a process group whose
    leader's pid was already handed back to the kernel."""

    def __init__(self, p: subprocess.Popen[bytes], *, tty: bool, master: int | None = None,
                 stdin: bool = False) -> None:
        self.tty = tty
        self._p = p
        self._pidfd = os.pidfd_open(p.pid)  # not reaped yet: the pid is the child's
        self._master = master
        self._stdin: int | None  # where write_stdin writes: the pipe, or the pty master
        self._outs: dict[int, int] = {}  # fd -> stream (1 stdout, 2 stderr)
        if master is not None:
            self._stdin = master if stdin else None
            self._outs[master] = 1
        else:
            self._stdin = p.stdin.fileno() if p.stdin is not None else None
            for n, f in ((1, p.stdout), (2, p.stderr)):
                if f is not None:
                    self._outs[f.fileno()] = n
        for fd in {*self._outs, *([self._stdin] if self._stdin is not None else [])}:
            os.set_blocking(fd, False)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._sel = selectors.DefaultSelector()
        for fd in self._outs:
            self._sel.register(fd, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._reading = threading.Lock()
        self._writing = threading.Lock()
        self._resizing = threading.Lock()
        self._reap = threading.Lock()
        self._state = threading.Lock()
        self._stdin_closed = self._stdin is None
        self._closed = False

    def _write(self, data: bytes) -> None:
        assert self._stdin is not None
        view = memoryview(data)
        poll = select.poll()
        poll.register(self._stdin, select.POLLOUT)
        poll.register(self._wake_r, select.POLLIN)
        while view:
            if self._closed:
                raise RuntimeError_("exec: the session is closed")
            try:
                view = view[os.write(self._stdin, view):]
            except BlockingIOError:
                poll.poll()
            except OSError as e:  # EPIPE (EIO on a pty): the process closed its stdin, or exited
                raise RuntimeError_(f"exec: writing stdin: {e.strerror or e}") from e

    def write_stdin(self, data: bytes) -> None:
        with self._writing:
            if self._stdin is None or self._stdin_closed:
                raise RuntimeError_("exec: stdin is " + ("not attached" if self._stdin is None else "closed"))
            self._write(data)

    def close_stdin(self) -> None:
        with self._writing:
            if self._stdin_closed or self._closed:
                return
            self._stdin_closed = True
            if self._master is not None:
                try:
                    self._write(b"\x04")  # the terminal's end-of-file character (VEOF)
                except RuntimeError_:
                    pass
            elif self._p.stdin is not None:
                self._p.stdin.close()  # nothing is buffered there: writes go to the fd

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._reading:
            while self._outs and not self._closed:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = self._sel.select(left)
                if not events:
                    return 0, b""
                for key, _ in events:
                    fd = int(key.fd)
                    if fd == self._wake_r:
                        return None
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        if e.errno != errno.EIO:  # EIO: every copy of the pty's slave is closed
                            raise RuntimeError_(f"exec: reading output: {e.strerror or e}") from e
                        data = b""
                    if data:
                        return self._outs[fd], data
                    self._sel.unregister(fd)
                    n = self._outs.pop(fd)
                    f = None if self._master is not None else (self._p.stdout if n == 1 else self._p.stderr)
                    if f is not None:  # (the pty master stays open for resize until close())
                        f.close()
            return None

    def resize(self, width: int, height: int) -> None:
        with self._resizing:
            if self._master is not None and not self._closed:
                _set_winsize(self._master, width, height)

    def wait(self, timeout: float | None = None) -> int | None:
        if self._p.returncode is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._p.returncode is None and not _wait_exit(
                    self._pidfd, 60.0 if deadline is None else deadline - time.monotonic()):
                if deadline is not None:
                    return None
            with self._reap:
                self._p.wait()
        return _exit_code(self._p.returncode)

    def kill(self) -> None:
        """SIGKILL to the process's group and to every process of its session (np-shim exec
        made it the leader of both; an interactive shell puts each job in a group of its own).
        Only while it is not reaped: until then its pid names no other group or session."""
        with self._reap:
            if self._p.returncode is None:
                try:
                    os.killpg(self._p.pid, signal.SIGKILL)
                except OSError:
                    pass
                _kill_session(self._p.pid)

    def close(self) -> None:
        with self._state:
            if self._closed:
                return
            self._closed = True
        os.write(self._wake_w, b"x")  # never drained: wakes every blocked read and write from now on
        if self.wait(0) is None:
            self.kill()
            if self.wait(5.0) is None:  # (its pidfd is kept for a later wait)
                log.warning("exec: process %d still there 5 s after SIGKILL", self._p.pid)
        with self._reading, self._writing, self._resizing:
            self._sel.close()
            for f in (self._p.stdin, self._p.stdout, self._p.stderr):
                if f is not None:
                    f.close()
            for fd in (self._master, self._wake_r, self._wake_w):
                if fd is not None:
                    os.close(fd)
            self._outs.clear()
        if self._p.returncode is not None:
            os.close(self._pidfd)


ATTACH_HELLO_STDIN, ATTACH_STDIN, ATTACH_RESIZE, ATTACH_CLOSE = 16, 0, 4, 255
ATTACH_PACKET = 65536  # np-shim's PACKET_MAX: the most stdin one packet carries


class ShimAttachSession:
    """`orchestrator.node.runtime.ExecSession` for `Runtime.attach`: a SOCK_SEQPACKET connection
    to the container's np-shim, one packet per chunk with its channel in the first byte
    (`native/np-shim.c`). `kill` and `close` detach: the container runs on. `close` from any
    thread shuts the socket down first, so a `read` blocked in another thread returns None."""

    def __init__(self, runtime: NamespaceRuntime, container_id: str, sock: socket.socket, *, tty: bool,
                 stdin: bool) -> None:
        self.tty = tty
        self._runtime = runtime
        self._cid = container_id
        self._sock = sock
        self._stdin = stdin
        self._stdin_closed = not stdin
        self._writing = threading.Lock()
        self._state = threading.Lock()
        self._closed = False

    def _send(self, packet: bytes) -> None:
        try:
            self._sock.send(packet)
        except OSError as e:
            raise RuntimeError_(f"attach: the container's shim is gone: {e.strerror or e}") from e

    def write_stdin(self, data: bytes) -> None:
        with self._writing:
            if not self._stdin or self._stdin_closed or self._closed:
                raise RuntimeError_("attach: stdin is " + ("not attached" if not self._stdin else "closed"))
            view = memoryview(data)
            for i in range(0, len(view), ATTACH_PACKET):
                self._send(bytes([ATTACH_STDIN]) + view[i:i + ATTACH_PACKET])

    def close_stdin(self) -> None:
        with self._writing:
            if self._stdin_closed or self._closed:
                return
            self._stdin_closed = True
            with contextlib.suppress(RuntimeError_):
                self._send(bytes([ATTACH_CLOSE]))

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        if self._closed:
            return None
        try:
            ready, _, _ = select.select([self._sock], [], [], timeout)
            if not ready:
                return (0, b"") if not self._closed else None
            packet = self._sock.recv(ATTACH_PACKET + 1)
        except (OSError, ValueError):  # closed under us
            return None
        if not packet or self._closed:
            return None  # the container's output ended (it exited), or we detached
        return (packet[0] if packet[0] in (1, 2) else 1), packet[1:]

    def resize(self, width: int, height: int) -> None:
        if self.tty and not self._closed and 0 < width < 65536 and 0 < height < 65536:
            with contextlib.suppress(RuntimeError_):
                self._send(bytes([ATTACH_RESIZE]) + struct.pack(">HH", width, height))

    def wait(self, timeout: float | None = None) -> int | None:
        """The container's exit code once it has exited (its shim's record), else None."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self._runtime._container_info(self._cid)
            if info is None or info.state == "exited":
                return info.exit_code if info is not None and info.exit_code is not None else -1
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic())))

    def kill(self) -> None:
        self.close()

    def close(self) -> None:
        with self._state:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # a blocked select/recv returns
        with self._writing:
            self._sock.close()
