"""The pod infra process (native/pause.c): reaps orphans as PID 1 or as a subreaper, exits 0 on
SIGTERM/SIGINT; and the image install.sh makes from it stops cleanly under Docker.

The binary is compiled here with install.sh's flags (plus -Werror); PID namespaces come from
`unshare --pid --fork`, whose exit status is its child's, and die with the test's processes.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pause_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pause") / "pause"
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-o", str(out),
                    str(ROOT / "native" / "pause.c")], check=True)
    return out


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return None


def adopted_then_reaped(pause_pid: int, n: int) -> None:
    """Wait until `n` orphaned `sleep`s have been re-parented to pause, then until they are gone
    from /proc altogether (a zombie stays there with state Z until its parent waits)."""
    orphans: set[int] = set()

    def adopted() -> bool:
        orphans.update(c for c in children(pause_pid) if comm(c) == "sleep")
        return len(orphans) >= n

    wait_for(adopted, 5, f"{n} orphans to be re-parented to pause")
    wait_for(lambda: all(state(o) is None for o in orphans), 5,
             f"orphans reaped (states now {[state(o) for o in orphans]})")


def start_as_pid1(pause_bin: Path, procs: list[subprocess.Popen[bytes]]) -> tuple[subprocess.Popen[bytes], int]:
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", str(pause_bin)], stderr=subprocess.PIPE)
    procs.append(p)
    kids = wait_for(lambda: [c for c in children(p.pid) if comm(c) == "pause"], 5, "pause to start")
    return p, kids[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_as_pid1_it_reaps_orphans_and_exits_0_on_a_signal(pause_bin: Path, procs: list[subprocess.Popen[bytes]],
                                                          sig: signal.Signals) -> None:
    p, pause_pid = start_as_pid1(pause_bin, procs)
    # processes entering its PID namespace whose parents exit at once: orphans for PID 1
    for _ in range(3):
        subprocess.run(["nsenter", "--target", str(pause_pid), "--pid", "--", "sh", "-c", "sleep 0.3 & exit 0"], check=True)
    adopted_then_reaped(pause_pid, 3)
    assert state(pause_pid) == "S"  # still sleeping in pause()
    t0 = time.monotonic()
    subprocess.run(["kill", f"-{sig.value}", str(pause_pid)], check=True)
    assert p.wait(timeout=5) == 0  # unshare exits with pause's status
    assert time.monotonic() - t0 < 2
    assert p.stderr is not None and f"pause: {sig.name}, exiting" in p.stderr.read().decode()


def test_started_as_an_ordinary_process_it_is_a_subreaper(pause_bin: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    # the shell becomes pause (exec); its background child, once pause runs, makes an orphan
    p = subprocess.Popen(["sh", "-c", f"( sleep 0.3; ( sleep 0.3 & ) ) & exec {pause_bin}"], stderr=subprocess.PIPE)
    procs.append(p)
    wait_for(lambda: comm(p.pid) == "pause", 5, "pause to start")
    adopted_then_reaped(p.pid, 1)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=5) == 0


def test_version_flag(pause_bin: Path) -> None:
    r = subprocess.run([str(pause_bin), "-v"], capture_output=True, text=True, check=True, timeout=5)
    assert "netplane-pause 3.9" in r.stderr


@pytest.mark.docker
def test_the_pause_image_runs_and_stops_cleanly() -> None:
    """The image install.sh builds: /pause as entrypoint, PID 1, and `docker stop` ends it with
    exit code 0 at once (without a SIGTERM handler PID 1 ignores it, and Docker SIGKILLs
    after the timeout: 137)."""
    client = docker.from_env()
    try:
        image = client.images.get("netplane/pause:3.9")
        assert image.attrs["Config"]["Entrypoint"] == ["/pause"]
        c = client.containers.run("netplane/pause:3.9", name=f"npt-pause-{uuid.uuid4().hex[:8]}", detach=True,
                                  network_mode="none", labels={"netplane.test": "pause"})
        try:
            wait_for(lambda: c.reload() or c.status == "running", 10, "the pause container to run")
            top = c.top(ps_args="-o pid,comm")
            assert [row[1] for row in top["Processes"]] == ["pause"]
            t0 = time.monotonic()
            c.stop(timeout=10)
            assert time.monotonic() - t0 < 3
            c.reload()
            assert c.attrs["State"]["ExitCode"] == 0
        finally:
            c.remove(force=True)
    finally:
        client.close()
