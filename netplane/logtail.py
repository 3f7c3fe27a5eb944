"""The end of a process's log, for errors about processes we started.

When a process the lab (or a test) started dies, the error must say why without sending the
user to a file that teardown may already have removed: it carries the log's last lines.
"""

from __future__ import annotations

from pathlib import Path

TAIL_LINES = 20
_MAX_BYTES = 64 * 1024


def tail(path: Path | str, lines: int = TAIL_LINES) -> list[str]:
    """The last `lines` non-empty lines of `path` ([] if it is missing or empty)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - _MAX_BYTES))
            data = f.read()
    except OSError:
        return []
    text = data.decode(errors="replace").splitlines()
    if size > _MAX_BYTES:
        text = text[1:]  # the first line is probably cut
    return [ln for ln in text if ln.strip()][-lines:]


def with_tail(message: str, path: Path | str, lines: int = TAIL_LINES) -> str:
    """`message`, then where the log is and its last lines, indented."""
    end = tail(path, lines)
    if not end:
        return f"{message} ({path}: empty or missing)"
    return f"{message}; last lines of {path}:\n" + "\n".join("    " + ln for ln in end)
