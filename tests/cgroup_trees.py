"""Removing a cgroup tree a test made: SIGKILL what is left in it, then rmdir, deepest first
(waiting for the kernel to let go of each directory once its processes are gone)."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

from tests.waiting import wait_for


def kill_and_rmdir(tree: Path) -> None:
    if not tree.exists():
        return
    for dirpath, _dirs, _files in os.walk(tree):
        try:
            pids = Path(dirpath, "cgroup.procs").read_text().split()
        except FileNotFoundError:
            continue
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    for dirpath, _dirs, _files in sorted(os.walk(tree), key=lambda w: -len(w[0])):
        wait_for(functools.partial(_try_rmdir, dirpath), 5, f"rmdir {dirpath}")


def _try_rmdir(d: str) -> bool:
    try:
        os.rmdir(d)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
