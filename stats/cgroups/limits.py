"""Raising RLIMIT_NOFILE as the readers keep more descriptors open.

A reader keeps ~12 descriptors per cgroup (v1), so 1,000 containers need ~12,000: more than
the usual soft limit of 1,024. Before opening a cgroup's files a reader asks for room; we
raise the soft limit (and, as root, the hard limit up to fs.nr_open) instead of failing with
EMFILE halfway through a batch. The process-wide count of open descriptors is what matters
(several readers, sockets), so it is re-counted from /proc/self/fd whenever the cheap running
estimate gets near the limit.
"""

from __future__ import annotations

import logging
import os
import resource
import threading

log = logging.getLogger(__name__)

HEADROOM = 256


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


class FdBudget:
    """The process's descriptor budget. The limit is per process, so all readers share one
    budget (`shared()`); a private one would under-count what the others hold."""

    def __init__(self) -> None:
        self._estimate = _open_fds()
        self._lock = threading.Lock()

    def ensure(self, extra: int) -> None:
        """Make room for `extra` more descriptors."""
        with self._lock:
            self._ensure(extra)

    def _ensure(self, extra: int) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        inf = resource.RLIM_INFINITY
        if soft == inf or self._estimate + extra + HEADROOM <= soft:
            self._estimate += extra
            return
        used = _open_fds()
        self._estimate = used + extra
        want = used + extra + HEADROOM
        if want <= soft:
            return
        target = max(want * 2, soft)
        new_hard = hard if hard == inf or hard >= target else min(target, _nr_open())
        new_soft = target if new_hard == inf else min(target, new_hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, new_hard))
        except (ValueError, OSError):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != inf else target, hard))
            except (ValueError, OSError) as e:
                log.warning("cannot raise RLIMIT_NOFILE to %d: %s", want, e)


_shared: FdBudget | None = None
_shared_lock = threading.Lock()


def shared() -> FdBudget:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FdBudget()
        return _shared
