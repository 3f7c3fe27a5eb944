"""Reading a runtime's `ExecSession` in tests (the namespace and Docker runtime tests)."""

from __future__ import annotations

import threading
import time
from contextlib import closing
from typing import Any

import pytest

from orchestrator.node.runtime import ExecSession, RuntimeError_


def drain(s: ExecSession, timeout: float = 15) -> dict[int, bytes]:
    """Everything a session writes until EOF on every stream, by stream (1 stdout, 2 stderr)."""
    out = {1: b"", 2: b""}
    deadline = time.monotonic() + timeout
    while (chunk := s.read(max(0.0, deadline - time.monotonic()))) is not None:
        assert chunk[0] in (1, 2), f"no EOF within {timeout} s; so far {out}"
        out[chunk[0]] += chunk[1]
    return out


def read_until(s: ExecSession, what: bytes, timeout: float = 15) -> bytes:
    """What a session writes until `what` has come (AssertionError after `timeout`)."""
    got = b""
    deadline = time.monotonic() + timeout
    while what not in got:
        chunk = s.read(max(0.0, deadline - time.monotonic()))
        assert chunk is not None and chunk[0] != 0, f"{what!r} not within {timeout} s; got {got!r}"
        got += chunk[1]
    return got


# ---------------------------------------------------------------------------- the contract,
# checked the same way on each runtime (`rt`, a Runtime; `cid`, a running container of it)
def check_streams(rt: Any, cid: str) -> None:
    """stdin through and closed, stdout and stderr apart, a large output, the no-op calls."""
    s = rt.exec_session(cid, ["cat"], stdin=True, tty=False)
    try:
        assert s.tty is False and s.read(0.05) == (0, b"")  # nothing yet: cat waits for input
        s.write_stdin(b"hello\n")
        s.close_stdin()
        s.close_stdin()  # idempotent
        with pytest.raises(RuntimeError_, match="stdin is closed"):
            s.write_stdin(b"more")
        assert drain(s) == {1: b"hello\n", 2: b""}
        assert s.wait(5) == 0 and s.read() is None
    finally:
        s.close()
    s.close()  # idempotent
    with closing(rt.exec_session(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"], stdin=False, tty=False)) as s:
        assert drain(s) == {1: b"out\n", 2: b"err\n"}
        assert s.wait(5) == 3
        with pytest.raises(RuntimeError_, match="not attached"):
            s.write_stdin(b"x")
        s.close_stdin()  # a no-op without stdin
        s.resize(80, 24)  # a no-op without a TTY
    # many chunks (Docker: frames split across reads, and many frames in one read)
    with closing(rt.exec_session(cid, ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; echo done >&2"],
                                 stdin=False, tty=False)) as s:
        assert drain(s) == {1: b"x" * 300000, 2: b"done\n"} and s.wait(5) == 0


def check_resize_and_eof_on_a_tty(s: ExecSession, first: bytes, rt: Any, cid: str) -> None:
    """`s` runs a script that printed its tty and size (`first`, up to "ready") and waits for a
    line before printing its size again; then `cat` on a TTY ends with ^D."""
    try:
        assert s.tty is True
        assert b"/dev/pts/" in first and b"30 100" in first and b"TERM=xterm" in first
        s.resize(120, 40)
        s.write_stdin(b"\n")
        rest = drain(s)
        assert b"40 120" in rest[1] and rest[2] == b""  # one stream with a TTY
        assert s.wait(5) == 0
    finally:
        s.close()
    with closing(rt.exec_session(cid, ["cat"], stdin=True, tty=True)) as cat:
        cat.write_stdin(b"hi\n")
        read_until(cat, b"hi\r\nhi\r\n")  # the terminal's echo, then cat's
        cat.close_stdin()  # ^D: EOF for a reader at the start of a line
        drain(cat)
        assert cat.wait(5) == 0


def check_kill(rt: Any, cid: str) -> None:
    with closing(rt.exec_session(cid, ["sleep", "100"], stdin=False, tty=False)) as s:
        assert s.wait(0.1) is None
        s.kill()
        s.kill()  # idempotent
        assert s.wait(5) == 137  # 128 + SIGKILL
        assert drain(s) == {1: b"", 2: b""}


def check_close_ends_a_blocked_read(s: ExecSession) -> None:
    """close() kills what still runs, and ends a read blocked in another thread."""
    check_close_ends_a_blocked_attach_read(s)
    assert s.wait(5) == 137 and s.read() is None


# ---------------------------------------------------------------------------- attach (`Runtime.attach`)
def check_attach_stdin_once(rt: Any, cid: str) -> None:
    """`cid` runs `sh -c 'cat; echo done'` with stdin and stdin_once and no TTY: what one
    session writes comes back, its close of stdin is the process's EOF, and the session ends
    with the container, whose exit code `wait` then gives."""
    with closing(rt.attach(cid, stdin=True)) as s:
        assert s.tty is False and s.read(0.05) == (0, b"")
        s.write_stdin(b"hello\n")
        assert read_until(s, b"hello\n") == b"hello\n"
        assert s.wait(0.1) is None  # still running: cat waits for more
        s.close_stdin()
        with pytest.raises(RuntimeError_, match="stdin is closed"):
            s.write_stdin(b"more")
        assert drain(s) == {1: b"done\n", 2: b""}
        assert s.wait(5) == 0 and s.read() is None


def check_attach_tty_and_detach(rt: Any, cid: str) -> None:
    """`cid` runs `sh` with stdin and a TTY (not stdin_once): a session resizes the terminal
    and types; detaching (close) leaves the shell running for the next session, which the
    shell's exit ends."""
    s = rt.attach(cid, stdin=True)
    try:
        assert s.tty is True
        s.resize(100, 30)
        s.write_stdin(b"stty size\n")
        read_until(s, b"30 100")
        s.close_stdin()  # not stdin_once: a no-op for the process, which reads on
    finally:
        s.close()
    s.close()  # idempotent
    assert s.read() is None
    with closing(rt.attach(cid, stdin=True)) as again:
        again.write_stdin(b"echo again-$((40+2))\n")
        read_until(again, b"again-42")
        assert again.wait(0.1) is None
        again.write_stdin(b"exit 3\n")
        assert b"exit 3" in drain(again)[1]  # the terminal's echo
        assert again.wait(5) == 3


def check_attach_output_only(rt: Any, cid: str) -> None:
    """`cid` prints `out<N>` on stdout and `err<N>` on stderr ten times a second: two sessions
    at once each get both streams apart, without stdin; detaching leaves it running."""
    a, b = rt.attach(cid, stdin=False), rt.attach(cid, stdin=True)  # b: the container has no stdin
    try:
        for s in (a, b):
            got = {1: b"", 2: b""}
            deadline = time.monotonic() + 10
            while not (b"out" in got[1] and b"err" in got[2]) and time.monotonic() < deadline:
                chunk = s.read(0.5)
                assert chunk is not None
                if chunk[0]:
                    got[chunk[0]] += chunk[1]
            assert b"out" in got[1] and b"err" not in got[1] and b"err" in got[2] and b"out" not in got[2], got
            with pytest.raises(RuntimeError_, match="not attached"):
                s.write_stdin(b"x")
    finally:
        a.close()
        b.close()
    assert a.wait(0.2) is None  # the container runs on


def check_close_ends_a_blocked_attach_read(s: ExecSession) -> None:
    """close() ends a read blocked in another thread (for an attach, and nothing else)."""
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(s.read()))
    reader.start()
    time.sleep(0.1)
    s.close()
    reader.join(5)
    assert got == [None] and not reader.is_alive()
