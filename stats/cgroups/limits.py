"""Raising RLIMIT_NOFILE as the readers keep more descriptors open.

A reader keeps ~13 descriptors per cgroup (v1), so 1,000 containers need ~13,000: more than
the usual soft limit of 1,024. We raise the soft limit (and, as root, the hard limit up to
fs.nr_open) before opening, instead of failing with EMFILE halfway through a batch.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

HEADROOM = 256


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


class FdBudget:
    """Makes sure the process may hold at least `n` more descriptors than it uses now."""

    def ensure(self, kept: int) -> None:
        want = kept + HEADROOM
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft >= want:
            return
        new_hard = hard
        if hard != resource.RLIM_INFINITY and hard < want:
            new_hard = min(max(want * 2, hard), _nr_open())
        new_soft = min(max(want * 2, soft), new_hard) if new_hard != resource.RLIM_INFINITY else max(want * 2, soft)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, new_hard))
        except (ValueError, OSError):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(new_soft, hard), hard))
            except (ValueError, OSError) as e:
                log.warning("cannot raise RLIMIT_NOFILE to %d: %s", want, e)
