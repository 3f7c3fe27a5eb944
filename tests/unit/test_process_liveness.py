"""`is_our_process` (how the lab and `stop_pid` tell whether a recorded process still runs)
must not report a live process as gone while it is inside execve: the lab's wrappers exec two
or three times (sh -> nsenter -> python), and a false "exited" failed `lab up`."""

from __future__ import annotations

import subprocess

from netplane.store.embedded import _is_zombie, is_our_process

# re-execs itself N times; the marker is in argv at every stage, as in the lab's wrappers
_SCRIPT = 'n=$1; if [ "$n" -gt 0 ]; then exec sh -c "$0" "$0" $((n-1)) "$2"; fi'


def test_a_process_that_keeps_exec_ing_is_never_reported_gone() -> None:
    marker = "np-liveness-marker"
    p = subprocess.Popen(["sh", "-c", _SCRIPT, _SCRIPT, "1500", marker])
    checks = false_gone = 0
    try:
        while p.poll() is None:
            checks += 1
            if not is_our_process(p.pid, marker) and p.poll() is None and not _is_zombie(p.pid):
                false_gone += 1
    finally:
        p.kill()
        p.wait()
    assert checks > 100, "the exec chain ended before it could be observed"
    assert false_gone == 0, f"{false_gone} of {checks} reads called a live (exec-ing) process gone"


def test_gone_zombie_and_foreign_processes_are_not_ours() -> None:
    p = subprocess.Popen(["sleep", "30"])
    try:
        assert is_our_process(p.pid, "sleep 30")
        assert not is_our_process(p.pid, "some-other-marker")  # pid reuse by a stranger
        p.kill()
        # not reaped yet: a zombie, whose command line is empty
        while not _is_zombie(p.pid):
            pass
        assert not is_our_process(p.pid, "sleep 30")
    finally:
        p.kill()
        p.wait()
    assert not is_our_process(p.pid, "sleep 30")
