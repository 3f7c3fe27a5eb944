"""Who is asking (authentication) and may they (authorization).

Authentication, as kube-apiserver does it with these two authenticators:

* **Bearer tokens** from a file in `--token-auth-file` format: a CSV line per token,
  `token,user,uid,"group1,group2"` (groups optional). The file is re-read when it changes
  (checked at most once a second), so `netplane kubeconfig --token` can add a user to a
  running server.
* **Client certificates** signed by the cluster CA (the TLS layer verifies them): the
  subject's CN is the user, each O a group.

A request with neither is anonymous and refused with 401 (only /healthz, /livez, /readyz and
/version answer anonymous requests, like kube's public-info-viewer role). A token that does
not match is 401 too.

The API server authorizes with kube's RBAC (`orchestrator.apiserver.rbac`). `Authorizer`
here is the node agents' rule for their own API (logs, exec, port-forward to a node directly):
users in the read-only group (`readonly` unless configured) may get, list and watch;
everyone else authenticated may do everything.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netplane.errors import ConfigError

log = logging.getLogger(__name__)

READ_VERBS = frozenset({"get", "list", "watch"})
HIDDEN_FROM_READERS = frozenset({"secrets"})
DEFAULT_READ_ONLY_GROUP = "readonly"
AUTHENTICATED = "system:authenticated"
RELOAD_INTERVAL = 1.0


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = field(default_factory=tuple)


def parse_tokens(text: str, *, where: str = "token file") -> dict[str, User]:
    """token -> user from `--token-auth-file` CSV text (blank lines and `#` comments skipped)."""
    out: dict[str, User] = {}
    for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ConfigError(f"{where}:{n}: expected token,user[,uid[,\"group1,group2\"]]")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        out[row[0].strip()] = User(row[1].strip(), row[2].strip() if len(row) > 2 else "", groups)
    return out


def token_line(token: str, user: str, uid: str, groups: Iterable[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([token, user, uid, ",".join(groups)])
    return buf.getvalue()


def add_token(path: Path, user: str, groups: Iterable[str] = (), *, uid: str | None = None) -> str:
    """Append a new random token for `user` to a token file (made 0600 if absent); the token."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, token_line(token, user, uid or user, groups).encode())
    finally:
        os.close(fd)
    return token


class TokenFile:
    """The tokens of one file, re-read when its mtime or size changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._tokens: dict[str, User] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        if path is not None:
            self._load(strict=True)

    def _load(self, *, strict: bool) -> None:
        assert self.path is not None
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            tokens = parse_tokens(self.path.read_text(), where=str(self.path))
        except FileNotFoundError:
            if strict:
                raise ConfigError(f"token file {self.path} does not exist") from None
            log.warning("token file %s is gone; keeping the tokens read before", self.path)
            return
        except (OSError, ConfigError) as e:
            if strict:
                raise ConfigError(f"cannot read token file {self.path}: {e}") from e
            log.warning("token file %s not reloaded: %s", self.path, e)
            return
        self._tokens, self._stamp = tokens, stamp

    def user(self, token: str) -> User | None:
        if self.path is None:
            return None
        now = time.monotonic()
        with self._lock:
            if now - self._checked >= RELOAD_INTERVAL:
                self._checked = now
                self._load(strict=False)
            tokens = self._tokens
        found = None
        for t, u in tokens.items():  # compare every token in constant time
            if secrets.compare_digest(t.encode(), token.encode()):
                found = u
        return found


def user_from_peercert(peercert: Mapping[str, Any] | None) -> User | None:
    """The user of a verified client certificate (`ssl.SSLSocket.getpeercert()` form)."""
    if not peercert:
        return None
    cn, groups = "", []
    for rdn in peercert.get("subject") or ():
        for attr, value in rdn:
            if attr == "commonName":
                cn = value
            elif attr == "organizationName":
                groups.append(value)
    if not cn:
        return None
    return User(cn, "", tuple(groups))


class Authorizer:
    def __init__(self, read_only_group: str = DEFAULT_READ_ONLY_GROUP) -> None:
        self.read_only_group = read_only_group

    def allowed(self, user: User, verb: str, resource: str = "") -> bool:
        """Everyone may do anything but members of the read-only group, who may get, list and
        watch everything but Secrets (as kube's `view` role: reading one would hand them its
        credentials, which may allow more than reading)."""
        if self.read_only_group not in user.groups:
            return True
        return verb in READ_VERBS and resource not in HIDDEN_FROM_READERS
