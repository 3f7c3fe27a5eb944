"""Where the CLI finds its cluster: flags, environment, or the context file a lab wrote.

Resolution order for the etcd endpoint: `--etcd` flag, `NETPLANE_ETCD`, the context file
(`$NETPLANE_STATE_DIR/context.json`, written by `netplane lab up`), then the local default.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
DEFAULT_PREFIX = "/netplane"


def state_dir() -> Path:
    """Root of netplane's runtime state (labs, context). tmpfs, so it dies with a reboot
    exactly like the namespaces it describes."""
    return Path(os.environ.get("NETPLANE_STATE_DIR", "/run/netplane"))


class ContextFile(TypedDict):
    lab: str
    etcd: str
    prefix: str


@dataclass(frozen=True)
class Context:
    lab: str | None
    etcd: str
    prefix: str


def context_path() -> Path:
    return state_dir() / "context.json"


def write_atomic(path: Path, data: str) -> None:
    """Write a file so that readers see either the old or the new content, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_context(*, lab: str, etcd: str, prefix: str) -> None:
    write_atomic(context_path(), json.dumps(ContextFile(lab=lab, etcd=etcd, prefix=prefix)) + "\n")


def load_context() -> Context | None:
    try:
        raw = json.loads(context_path().read_text())
        return Context(lab=str(raw["lab"]), etcd=str(raw["etcd"]), prefix=str(raw["prefix"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear_context(lab: str) -> bool:
    """Remove the context file if (and only if) it points at `lab`; True if it did."""
    ctx = load_context()
    if ctx is not None and ctx.lab == lab:
        context_path().unlink(missing_ok=True)
        return True
    return False


def resolve(*, etcd: str | None, prefix: str | None) -> Context:
    """Apply flag > environment (already folded into the flag by click) > context file."""
    ctx = load_context()
    return Context(
        lab=ctx.lab if ctx else None,
        etcd=etcd or (ctx.etcd if ctx else DEFAULT_ENDPOINT),
        prefix=prefix or (ctx.prefix if ctx else DEFAULT_PREFIX),
    )
