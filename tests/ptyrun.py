"""Drive a program from a terminal of our own (a pty), as a user at a keyboard would: wait for
what it prints, then type. For `exec -it` tests, where input typed before the remote shell is
ready would be flushed by the shell's line editor (what `script(1)` with piped input does)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import termios
import time
from collections.abc import Sequence


def interact(argv: Sequence[str], steps: Sequence[tuple[str, str]], *, cols: int = 80, rows: int = 24,
             timeout: float = 30.0) -> tuple[int, str]:
    """Run `argv` on a new pty of `cols` x `rows`; for each (expect, send): wait until `expect`
    has been printed (since the last step), then type `send`. The exit code and everything
    printed (AssertionError naming what was awaited on a timeout)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal's size first, then the program
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        try:
            os.execvp(argv[0], list(argv))
        finally:
            os._exit(127)
    out = b""
    seen = 0
    deadline = time.monotonic() + timeout

    def read_some() -> bool:
        nonlocal out
        r, _, _ = select.select([fd], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
        if not r:
            return True
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the program has gone and closed the terminal
            return False
        out += data
        return bool(data)

    try:
        for expect, send in steps:
            while expect.encode() not in out[seen:]:
                if time.monotonic() > deadline or not read_some():
                    raise AssertionError(f"{argv[0]}: {expect!r} never came; printed: {out.decode(errors='replace')!r}")
            seen = out.index(expect.encode(), seen) + len(expect)
            os.write(fd, send.encode())
        while time.monotonic() < deadline and read_some():
            pass
        for _ in range(50):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status), out.decode(errors="replace")
            time.sleep(0.1)
        raise AssertionError(f"{argv[0]} did not exit; printed: {out.decode(errors='replace')!r}")
    finally:
        os.close(fd)
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
