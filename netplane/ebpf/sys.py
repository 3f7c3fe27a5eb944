"""The few bpf(2) commands bcc's Python API lacks: open a pinned object, detach a cgroup program,
walk a pinned map; plus mounting bpffs at /sys/fs/bpf when the machine has not.

Used by `proxy dump` and `--cleanup`, which must work on maps and attachments left by another
process without compiling any BPF.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from netplane.errors import KernelError

BPF_FS = Path("/sys/fs/bpf")
BPF_FS_MAGIC = 0xCAFE4A11
_SYS_BPF = 321  # x86_64
_BPF_MAP_LOOKUP_ELEM = 1
_BPF_MAP_DELETE_ELEM = 3
_BPF_MAP_GET_NEXT_KEY = 4
_BPF_OBJ_GET = 7
_BPF_PROG_DETACH = 9

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _Attr(ctypes.Structure):
    _fields_ = [("raw", ctypes.c_uint8 * 128)]


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_uint8] | ctypes.Structure, size: int) -> int:
    r = _libc.syscall(_SYS_BPF, cmd, ctypes.byref(attr), size)
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(r)


class _ObjGet(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32), ("file_flags", ctypes.c_uint32)]


class _Detach(ctypes.Structure):
    _fields_ = [
        ("target_fd", ctypes.c_uint32),
        ("attach_bpf_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("pad", ctypes.c_uint64 * 4),
    ]


class _Elem(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad0", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


def is_bpffs(path: Path = BPF_FS) -> bool:
    class _Statfs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15)]

    st = _Statfs()
    if _libc.statfs(str(path).encode(), ctypes.byref(st)) != 0:
        return False
    return (st.f_type & 0xFFFFFFFF) == BPF_FS_MAGIC


def ensure_bpffs(path: Path = BPF_FS) -> None:
    """Mount bpffs where pinned objects live, as Cilium and systemd do, if nobody has."""
    if is_bpffs(path):
        return
    if _libc.mount(b"bpf", str(path).encode(), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise KernelError(f"mount bpffs at {path}: {os.strerror(err)}", errno=err)


def obj_get(path: Path) -> int:
    """An fd for a pinned map or program."""
    buf = ctypes.create_string_buffer(str(path).encode())
    attr = _ObjGet(pathname=ctypes.addressof(buf), bpf_fd=0, file_flags=0)
    try:
        return _bpf(_BPF_OBJ_GET, attr, ctypes.sizeof(attr))
    except OSError as e:
        raise KernelError(f"open pinned {path}: {e.strerror}", errno=e.errno) from e


def prog_detach(cgroup_fd: int, attach_type: int) -> bool:
    """Detach the (single, non-multi) program of `attach_type` from a cgroup. False if none."""
    attr = _Detach(target_fd=cgroup_fd, attach_bpf_fd=0, attach_type=attach_type, attach_flags=0)
    try:
        _bpf(_BPF_PROG_DETACH, attr, ctypes.sizeof(attr))
        return True
    except OSError as e:
        if e.errno in (2, 22):  # ENOENT: nothing attached
            return False
        raise KernelError(f"detach cgroup program: {e.strerror}", errno=e.errno) from e


def map_items(fd: int, key_type: Any, val_type: Any) -> Iterator[tuple[Any, Any]]:
    """Every (key, value) of a map, as ctypes objects (copies)."""
    prev = None
    key = key_type()
    while True:
        attr = _Elem(map_fd=fd, key=ctypes.addressof(prev) if prev is not None else 0, value=ctypes.addressof(key))
        try:
            _bpf(_BPF_MAP_GET_NEXT_KEY, attr, ctypes.sizeof(attr))
        except OSError as e:
            if e.errno == 2:
                return
            raise KernelError(f"map walk: {e.strerror}", errno=e.errno) from e
        val = val_type()
        la = _Elem(map_fd=fd, key=ctypes.addressof(key), value=ctypes.addressof(val))
        try:
            _bpf(_BPF_MAP_LOOKUP_ELEM, la, ctypes.sizeof(la))
        except OSError:
            pass
        else:
            yield key_type.from_buffer_copy(key), val
        prev = key_type.from_buffer_copy(key)
        key = key_type()
