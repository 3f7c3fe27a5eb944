"""A pod's volumes on its node (kubelet's volume manager, for the sources netplane has):
directories of the node that the runtimes bind-mount into containers (`runtime.Mount`).

* **emptyDir**: `<root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>` (kubelet's layout,
  below the agent's state directory), mode 0777 as kubelet makes it. It lives as long as the
  pod on this node: it outlasts container restarts and a new sandbox, and goes when the pod
  is torn down (deleted, replaced, or finished: no container can use it then). `medium:
  Memory` mounts a tmpfs there (size = `sizeLimit`, else the kernel's default of half the RAM:
  a write beyond it fails with ENOSPC); on disk, `sizeLimit` is kubelet's eviction threshold:
  `over_limit` counts what the directory takes (du's count) for the kubelet's housekeeping,
  which evicts the pod past it.
* **hostPath**: the node's own path, checked by `type` as kubelet does (`Directory`, `File`,
  `Socket`, `CharDevice`, `BlockDevice` must exist as that; `DirectoryOrCreate` makes a
  directory 0755 with its parents, `FileOrCreate` an empty file 0644; `""` checks nothing and
  makes a missing path a directory, as containerd and dockershim do). Nothing of it is ever
  removed.
* **configMap** and **secret**: the object's keys as files in
  `<root>/pods/<uid>/volumes/kubernetes.io~configmap|secret/<name>` (a Secret's on a tmpfs,
  so its data never reaches the disk), written as kubelet's AtomicWriter does: the files in a
  timestamped `..<time>` directory, `..data` a symlink to it swapped by rename, and each
  top-level path a symlink through `..data`, so a reader sees the old set or the new one, never
  a mix. `items` picks keys and their paths (a missing key is an error unless `optional`),
  `defaultMode` (0644) and each item's `mode` set the files' modes. A missing object is an
  error unless `optional` (then the directory is empty). Every sync rewrites the set when the
  object changed (kubelet: within its sync period, about a minute); a subPath mount of a key
  keeps the file of its container's start, as in Kubernetes.
* **projected**: configMap, secret, downwardAPI and serviceAccountToken sources in one
  directory, on a tmpfs (as kubelet keeps it: it may hold secrets); a Secret source names its
  object `name`. A serviceAccountToken source is a token of the pod's service account bound to
  the pod (`orchestrator.node.podtokens`), replaced before it expires.
* **downwardAPI**: the pod's own fields (`fieldRef`: metadata.name, .namespace, .uid, labels
  and annotations, one key or all as `key="value"` lines) and its containers' resources
  (`resourceFieldRef`) as files, in the same layout, rewritten at each sync when they changed.
* **subPath**: a path below the volume, made as a directory when missing (kubelet's rule);
  refused when it resolves outside the volume (a symlink pointing out).

A failure is one line (`VolumeError`) that the kubelet reports as the pod's ContainerCreating
message and retries. Teardown unmounts what it mounted (only tmpfs mounts below the pod's own
directory) and removes the directory without crossing into any mount still there.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from netplane.errors import NetplaneError
from orchestrator.node.runtime import Mount
from orchestrator.objects.quantity import parse_quantity
from orchestrator.validation.configdata import decoded

log = logging.getLogger(__name__)

EMPTY_DIR = "kubernetes.io~empty-dir"
CONFIG_MAP_DIR = "kubernetes.io~configmap"
SECRET_DIR = "kubernetes.io~secret"
DOWNWARD_API_DIR = "kubernetes.io~downward-api"
PROJECTED_DIR = "kubernetes.io~projected"
DEFAULT_MODE = 0o644
DATA_LINK = "..data"
Lookup = Callable[[str, str], Mapping[str, Any] | None]  # (kind "ConfigMap"|"Secret", name) -> object
# (pod, serviceAccountToken source) -> the token; raises NetplaneError when it cannot be had
TokenSource = Callable[[Mapping[str, Any], Mapping[str, Any]], bytes]
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


class VolumeError(NetplaneError):
    """A volume cannot be set up (one line: which volume, which path, why)."""


def _mount_tmpfs(path: Path, size: int) -> None:
    opts = f"mode=0777,size={size}" if size else "mode=0777"
    if _libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", 0, opts.encode()) != 0:
        e = ctypes.get_errno()
        raise VolumeError(f"mounting a tmpfs at {path}: {os.strerror(e)}")


def _umount(path: str) -> None:
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOENT):  # not a mount (any more)
            raise VolumeError(f"unmounting {path}: {os.strerror(e)}")


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (space, tab, newline, backslash)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_below(path: Path, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points at or below `path`, deepest first."""
    base = os.path.realpath(path)
    found = []
    with open(mountinfo) as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == base or point.startswith(base.rstrip("/") + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: -p.count("/"))


def remove_tree(path: Path) -> None:
    """Unmount what is mounted below `path` (ours: the tmpfs of Memory emptyDirs), then remove
    it. The removal never follows a symlink nor enters a directory that is still a mount."""
    if not os.path.lexists(path):
        return
    for point in mounts_below(path):
        _umount(point)
    left = mounts_below(path)
    if left:
        raise VolumeError(f"{left[0]} is still mounted; not removing {path}")
    shutil.rmtree(path)  # rmtree does not follow symlinks; nothing below is mounted now


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "something else"


_MUST_BE = {"Directory": "a directory", "File": "a file", "Socket": "a socket", "CharDevice": "a character device",
            "BlockDevice": "a block device"}


def host_path(name: str, source: Mapping[str, Any]) -> str:
    """Check (or make) a hostPath volume's path by its type; the path."""
    path = str(source.get("path") or "")
    kind = str(source.get("type") or "")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise VolumeError(f'volume "{name}": hostPath {path}: {e.strerror}') from e
    if st is not None:
        want = _MUST_BE.get(kind) or {"DirectoryOrCreate": "a directory", "FileOrCreate": "a file"}.get(kind)
        if want and _kind(st.st_mode) != want:
            raise VolumeError(f'volume "{name}": hostPath type check failed: {path} is not {want} '
                              f"(it is {_kind(st.st_mode)})")
        return path
    if kind in _MUST_BE:
        raise VolumeError(f'volume "{name}": hostPath type check failed: {path} does not exist (type {kind})')
    try:
        if kind == "FileOrCreate":
            os.makedirs(os.path.dirname(path) or "/", mode=0o755, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        else:  # DirectoryOrCreate, and "" (what containerd and dockershim do with a missing path)
            os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as e:
        raise VolumeError(f'volume "{name}": making hostPath {path}: {e.strerror}') from e
    return path


class Volumes:
    """The volumes of the pods on one node, below `root` (`<agent state dir>/kubelet`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def pod_dir(self, uid: str) -> Path:
        if not uid or "/" in uid or uid in (".", ".."):
            raise VolumeError(f"pod uid {uid!r} cannot name a directory")
        return self.root / "pods" / uid

    def setup(self, pod: Mapping[str, Any], lookup: Lookup | None = None, *,
              allocatable: Mapping[str, str] | None = None, token: TokenSource | None = None) -> dict[str, str]:
        """Every volume of the pod, made or checked; volume name -> the node's path. Idempotent
        (each sync calls it): what exists is kept, a tmpfs already mounted is not mounted again,
        a ConfigMap's or Secret's files are rewritten only when they changed. `lookup` finds
        the pod's ConfigMaps and Secrets, `token` makes its service account tokens."""
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        paths: dict[str, str] = {}
        for v in (pod.get("spec") or {}).get("volumes") or []:
            name = str(v.get("name") or "")
            if v.get("hostPath") is not None:
                paths[name] = host_path(name, v["hostPath"])
            elif v.get("emptyDir") is not None:
                paths[name] = self._empty_dir(uid, name, v["emptyDir"])
            elif v.get("configMap") is not None or v.get("secret") is not None:
                paths[name] = self._config(uid, name, v, lookup)
            elif v.get("downwardAPI") is not None:
                paths[name] = self._downward(uid, name, pod, v["downwardAPI"], allocatable)
            elif v.get("projected") is not None:
                paths[name] = self._projected(uid, name, pod, v["projected"], lookup, allocatable, token)
            else:  # validation admits no other source; an object stored before it is reported
                raise VolumeError(f'volume "{name}": netplane supports emptyDir, hostPath, configMap, secret, '
                                  f"downwardAPI and projected volumes only")
        return paths

    def _config(self, uid: str, name: str, v: Mapping[str, Any], lookup: Lookup | None) -> str:
        secret = v.get("secret") is not None
        source = v["secret"] if secret else v["configMap"]
        kind = "Secret" if secret else "ConfigMap"
        files = _object_files(name, kind, str(source.get("secretName" if secret else "name") or ""), source,
                              lookup, _default_mode(source))
        return self._write(uid, name, SECRET_DIR if secret else CONFIG_MAP_DIR, files, tmpfs=secret)

    def _downward(self, uid: str, name: str, pod: Mapping[str, Any], source: Mapping[str, Any],
                  allocatable: Mapping[str, str] | None) -> str:
        """The pod's own fields and its containers' resources as files, rewritten (atomically)
        at each sync when they changed: a label's change reaches the running pod."""
        files = _downward_files(name, pod, source.get("items") or [], _default_mode(source), allocatable)
        return self._write(uid, name, DOWNWARD_API_DIR, files, tmpfs=False)

    def _projected(self, uid: str, name: str, pod: Mapping[str, Any], source: Mapping[str, Any],
                   lookup: Lookup | None, allocatable: Mapping[str, str] | None,
                   token: TokenSource | None = None) -> str:
        """ConfigMaps, Secrets, downward API items and service account tokens in one directory
        (on a tmpfs, as kubelet keeps projected volumes: they may hold secrets)."""
        default = _default_mode(source)
        files: dict[str, tuple[bytes, int]] = {}
        for src in source.get("sources") or []:
            if isinstance(src.get("configMap"), Mapping):
                files.update(_object_files(name, "ConfigMap", str(src["configMap"].get("name") or ""),
                                           src["configMap"], lookup, default))
            elif isinstance(src.get("secret"), Mapping):
                files.update(_object_files(name, "Secret", str(src["secret"].get("name") or ""), src["secret"],
                                           lookup, default))
            elif isinstance(src.get("downwardAPI"), Mapping):
                files.update(_downward_files(name, pod, src["downwardAPI"].get("items") or [], default, allocatable))
            elif isinstance(src.get("serviceAccountToken"), Mapping):
                sat = src["serviceAccountToken"]
                if token is None:
                    raise VolumeError(f'volume "{name}": this node cannot make service account tokens')
                try:
                    files[str(sat.get("path") or "token")] = (token(pod, sat), default)
                except NetplaneError as e:
                    raise VolumeError(f'volume "{name}": service account token: {e}') from e
            else:  # validation admits no other source
                raise VolumeError(f'volume "{name}": projected sources other than configMap, secret, '
                                  f"downwardAPI and serviceAccountToken are not supported")
        return self._write(uid, name, PROJECTED_DIR, files, tmpfs=True)

    def _write(self, uid: str, name: str, plugin: str, files: Mapping[str, tuple[bytes, int]], *, tmpfs: bool) -> str:
        path = self.pod_dir(uid) / "volumes" / plugin / name
        try:
            path.mkdir(parents=True, exist_ok=True)
            if tmpfs and not os.path.ismount(path):
                _mount_tmpfs(path, 0)
            write_atomically(path, files)
        except OSError as e:
            raise VolumeError(f'volume "{name}": {path}: {e.strerror}') from e
        return str(path)

    def _empty_dir(self, uid: str, name: str, source: Mapping[str, Any]) -> str:
        path = self.pod_dir(uid) / "volumes" / EMPTY_DIR / name
        try:
            path.mkdir(parents=True, exist_ok=True)
            if source.get("medium") == "Memory":
                if not os.path.ismount(path):
                    limit = source.get("sizeLimit")
                    _mount_tmpfs(path, parse_quantity(limit).value if limit is not None else 0)
            else:
                os.chmod(path, 0o777)
        except OSError as e:
            raise VolumeError(f'volume "{name}": {path}: {e.strerror}') from e
        return str(path)

    def over_limit(self, pod: Mapping[str, Any]) -> tuple[str, str] | None:
        """The first on-disk emptyDir of the pod that takes more than its `sizeLimit`: (volume
        name, the limit as the spec writes it); None when all are within theirs."""
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        for v in (pod.get("spec") or {}).get("volumes") or []:
            source = v.get("emptyDir")
            if not isinstance(source, Mapping) or source.get("medium") == "Memory" or source.get("sizeLimit") is None:
                continue
            name = str(v.get("name") or "")
            path = self.pod_dir(uid) / "volumes" / EMPTY_DIR / name
            if path.is_dir() and disk_usage(path) > parse_quantity(source["sizeLimit"]).value:
                return name, str(source["sizeLimit"])
        return None

    def mounts(self, container: Mapping[str, Any], paths: Mapping[str, str]) -> tuple[Mount, ...]:
        """The container's volumeMounts as runtime mounts, parents first."""
        out = []
        for m in container.get("volumeMounts") or []:
            name = str(m.get("name") or "")
            if name not in paths:
                raise VolumeError(f'volumeMount {m.get("mountPath")}: the pod has no volume "{name}"')
            source = paths[name]
            sub = str(m.get("subPath") or "")
            if sub:
                source = _sub_path(name, source, sub)
            out.append(Mount(container_path=os.path.normpath(str(m.get("mountPath"))), host_path=source,
                             read_only=bool(m.get("readOnly"))))
        return tuple(sorted(out, key=lambda x: x.container_path.rstrip("/").count("/")))

    def teardown(self, uid: str) -> None:
        """The pod's volumes (its emptyDirs' data) gone; idempotent."""
        d = self.pod_dir(uid)
        if os.path.lexists(d):
            remove_tree(d)
            log.info("pod %s: volumes removed", uid)

    def pods(self) -> list[str]:
        """The uids that have a volume directory here."""
        try:
            return [e.name for e in os.scandir(self.root / "pods") if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []

    def sweep(self, keep: Callable[[], set[str]]) -> list[str]:
        """Remove the volumes of pods not in `keep()` (deleted while the agent was down); their
        uids. The directories are listed first: a pod whose directory is seen was known before
        it was made, so one made meanwhile is never taken for a leftover."""
        found = self.pods()
        wanted = keep()
        gone = []
        for uid in found:
            if uid not in wanted:
                try:
                    self.teardown(uid)
                    gone.append(uid)
                except VolumeError as e:
                    log.warning("pod %s: removing its volumes: %s", uid, e)
        return gone


def disk_usage(path: Path) -> int:
    """Bytes the tree at `path` takes on its filesystem, as `du` counts them (allocated blocks,
    a hard-linked inode once), without following symlinks or entering other filesystems (a
    mount below it). What vanishes during the walk is not counted."""
    try:
        top = os.lstat(path)
    except OSError:
        return 0
    total, seen, stack = top.st_blocks * 512, set(), [str(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != top.st_dev:
                    continue
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    if st.st_ino in seen:
                        continue
                    seen.add(st.st_ino)
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
    return total


def _default_mode(source: Mapping[str, Any]) -> int:
    mode = source.get("defaultMode")
    return int(mode) if isinstance(mode, int) else DEFAULT_MODE


def _relative(volume: str, rel: str) -> str:
    if not rel or rel.startswith("/") or ".." in rel.split("/"):  # validation refuses these
        raise VolumeError(f'volume "{volume}": item path {rel!r} is not a relative path inside the volume')
    return rel


def _object_files(volume: str, kind: str, obj_name: str, source: Mapping[str, Any], lookup: Lookup | None,
                  default: int) -> dict[str, tuple[bytes, int]]:
    """A ConfigMap's or Secret's files; none when it is missing and `optional`."""
    obj = lookup(kind, obj_name) if lookup is not None and obj_name else None
    if obj is None:
        if source.get("optional"):
            return {}
        raise VolumeError(f'volume "{volume}": {kind.lower()} "{obj_name}" not found')
    return projected_files(volume, kind, obj, source, default)


def _downward_files(volume: str, pod: Mapping[str, Any], items: Any, default: int,
                    allocatable: Mapping[str, str] | None) -> dict[str, tuple[bytes, int]]:
    from orchestrator.node.envvars import field_value, resource_value

    spec = pod.get("spec") or {}
    containers = {str(c.get("name")): c for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        rel = _relative(volume, str(item.get("path") or ""))
        if isinstance(item.get("fieldRef"), Mapping):
            text = field_value(pod, str(item["fieldRef"].get("fieldPath") or ""))
        elif isinstance(item.get("resourceFieldRef"), Mapping):
            ref = item["resourceFieldRef"]
            text = resource_value(containers.get(str(ref.get("containerName") or ""), {}), ref, allocatable)
        else:
            continue
        m = item.get("mode")
        files[rel] = (text.encode(), int(m) if isinstance(m, int) else default)
    return files


def projected_files(volume: str, kind: str, obj: Mapping[str, Any],
                    source: Mapping[str, Any], default: int | None = None) -> dict[str, tuple[bytes, int]]:
    """The files a ConfigMap or Secret volume holds: relative path -> (content, mode)."""
    data: dict[str, bytes] = {}
    # a Secret's data and a ConfigMap's binaryData are base64 (Go's []byte), a ConfigMap's data text
    fields = (("data", True),) if kind == "Secret" else (("data", False), ("binaryData", True))
    for field, encoded in fields:
        for k, val in (obj.get(field) or {}).items():
            raw = decoded(val) if encoded else str(val).encode()
            if raw is None:
                raise VolumeError(f'volume "{volume}": key {k} of {kind.lower()} is not base64')
            data[str(k)] = raw
    if default is None:
        default = _default_mode(source)
    items = source.get("items")
    if not items:
        return {k: (v, default) for k, v in data.items()}
    out: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key, rel = str(item.get("key") or ""), _relative(volume, str(item.get("path") or ""))
        if key not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f'volume "{volume}": {kind.lower()} references non-existent key: {key}')
        m = item.get("mode")
        out[rel] = (data[key], int(m) if isinstance(m, int) else default)
    return out


def _current(path: Path) -> dict[str, tuple[bytes, int]] | None:
    """What `path/..data` holds now (None when there is no such set)."""
    target = path / DATA_LINK
    if not target.is_symlink():
        return None
    base = path / os.readlink(target)
    out: dict[str, tuple[bytes, int]] = {}
    for dirpath, _dirs, names in os.walk(base):
        for n in names:
            f = Path(dirpath) / n
            out[str(f.relative_to(base))] = (f.read_bytes(), stat.S_IMODE(f.lstat().st_mode))
    return out


def write_atomically(path: Path, files: Mapping[str, tuple[bytes, int]]) -> bool:
    """kubelet's AtomicWriter: `files` become the set at `path` in one rename; False when
    they were that set already."""
    if _current(path) == dict(files):
        return False
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + uuid.uuid4().hex[:8]
    new = path / stamp
    new.mkdir(mode=0o755)
    for rel, (content, mode) in files.items():
        f = new / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.chmod(f, mode)
    tmp = path / (DATA_LINK + "_tmp")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(stamp, tmp)
    os.rename(tmp, path / DATA_LINK)  # the switch: atomic
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = path / top
        if not link.is_symlink():
            os.symlink(f"{DATA_LINK}/{top}", link)
    for entry in os.scandir(path):
        if entry.name.startswith("..") or entry.name in tops:
            continue
        if entry.is_symlink():  # a key no longer there
            os.unlink(entry.path)
    for entry in os.scandir(path):  # the previous set, and any a crash left behind
        if entry.name.startswith("..") and entry.name not in (DATA_LINK, stamp) and not entry.is_symlink() \
                and entry.is_dir():
            shutil.rmtree(entry.path)
    return True


def _sub_path(name: str, volume: str, sub: str) -> str:
    """`volume/sub`, its missing directories made, refused when it resolves outside the volume
    (checked at every step, before anything is made: a symlink in the volume pointing out is
    never followed to make a directory elsewhere)."""
    base = os.path.realpath(volume)
    cur = base
    for part in [p for p in sub.split("/") if p not in ("", ".")]:
        nxt = os.path.join(cur, part)
        if not os.path.lexists(nxt):
            try:
                os.mkdir(nxt, 0o755)
            except FileExistsError:
                pass
            except OSError as e:
                raise VolumeError(f'volume "{name}": subPath {sub}: {e.strerror}') from e
        real = os.path.realpath(nxt)
        if real != base and not real.startswith(base.rstrip("/") + "/"):
            raise VolumeError(f'volume "{name}": subPath {sub} resolves to {real}, outside the volume')
        cur = real
    return cur
