"""A real etcd process for the lab and the tests.

Starts `etcd` (Debian's etcd-server) with its own data dir and the client/peer URLs it is given,
optionally inside a network namespace, waits until it answers, and stops it cleanly (SIGTERM,
then SIGKILL). The process can outlive the Python object (the lab records its pid); `adopt` and
`stop_pid` handle that, checking the pid still is our etcd before signalling it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from netplane import netns
from netplane.errors import StoreError
from netplane.logtail import with_tail
from netplane.store.etcd import EtcdConfig, EtcdStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EtcdSpec:
    name: str
    data_dir: Path
    client_urls: tuple[str, ...]  # listen + advertise
    peer_url: str
    netns: str | None = None
    log_path: Path | None = None
    # TLS for clients (https:// client URLs): server cert/key, and when `client_ca` is given,
    # clients must present a certificate signed by it
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca: Path | None = None


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise StoreError("the etcd binary is not installed (run scripts/install.sh)")
    return path


def command(spec: EtcdSpec) -> list[str]:
    urls = ",".join(spec.client_urls)
    return [
        etcd_binary(),
        "--name", spec.name,
        "--data-dir", str(spec.data_dir),
        "--listen-client-urls", urls,
        "--advertise-client-urls", urls,
        "--listen-peer-urls", spec.peer_url,
        "--initial-advertise-peer-urls", spec.peer_url,
        "--initial-cluster", f"{spec.name}={spec.peer_url}",
        "--initial-cluster-state", "new",
        "--initial-cluster-token", f"netplane-{spec.name}",
        "--heartbeat-interval", "50",
        "--election-timeout", "500",
        "--logger", "zap",
        "--log-level", "warn",
    ] + _tls_args(spec)


def _tls_args(spec: EtcdSpec) -> list[str]:
    if spec.cert_file is None:
        return []
    args = ["--cert-file", str(spec.cert_file), "--key-file", str(spec.key_file)]
    if spec.client_ca is not None:
        args += ["--client-cert-auth", "--trusted-ca-file", str(spec.client_ca)]
    return args


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 just now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedEtcd:
    """One single-member etcd. `start()` blocks until it is healthy."""

    def __init__(self, spec: EtcdSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def on_loopback(cls, d: Path, name: str) -> EmbeddedEtcd:
        """A throw-away etcd (tests, benchmarks) on free 127.0.0.1 ports, its data in `d/data`
        and its log in `d/etcd.log`; started and healthy."""
        e = cls(EtcdSpec(name=name, data_dir=d / "data", client_urls=(f"http://127.0.0.1:{free_loopback_port()}",),
                         peer_url=f"http://127.0.0.1:{free_loopback_port()}", log_path=d / "etcd.log"))
        e.start()
        return e

    @property
    def endpoint(self) -> str:
        return self.spec.client_urls[0]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, *, timeout: float = 15.0, detach: bool = False, client: EtcdConfig | None = None) -> None:
        """Spawn and wait until healthy; stopped again if it never gets there."""
        self.spawn(detach=detach)
        try:
            self.wait_healthy(timeout, client=client)
        except BaseException:
            self.stop()
            raise

    def spawn(self, *, detach: bool = False) -> int:
        """Start the process without waiting (so a caller can record its pid first). Refused
        while the one started before runs: a second would lose track of it (left running)."""
        if self.proc is not None and self.proc.poll() is None:
            raise StoreError(f"etcd {self.spec.name} ({self.endpoint}) is already running as pid {self.proc.pid}")
        self.spec.data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            log: Any = stack.enter_context(open(self.spec.log_path, "ab")) if self.spec.log_path else subprocess.DEVNULL
            self.proc = subprocess.Popen(
                netns.command_in(self.spec.netns, command(self.spec)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=detach,
            )
        return self.proc.pid

    def wait_healthy(self, timeout: float, *, client: EtcdConfig | None = None) -> None:
        """Poll until etcd answers; `client` gives the TLS files when clients need them.

        In a namespace, the probe is etcd's HTTP `/health` over a socket this thread opens
        inside it. A blocking gRPC channel made there is no probe: while a grpc.aio channel is
        open in the process (an API server's watch caches), gRPC connects it from its own
        threads, in the root namespace (tests/kernel/test_embedded_etcd_netns.py)."""
        deadline = time.monotonic() + timeout
        cfg = client or EtcdConfig(endpoints=(self.endpoint,), timeout=1.0)
        store = None if self.spec.netns else EtcdStore(cfg)
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise StoreError(self._explain(f"etcd ({self.endpoint}) exited with code {self.proc.returncode} at start"))
                if store.healthy() if store is not None else self._healthy_in_netns(cfg):
                    return
                time.sleep(0.05)
            raise StoreError(self._explain(f"etcd ({self.endpoint}) not healthy after {timeout:.0f}s"))
        finally:
            if store is not None:
                store.close()

    def _healthy_in_netns(self, cfg: EtcdConfig) -> bool:
        url = urlsplit(self.endpoint)
        if url.scheme != "http":  # the lab's etcd is plain http on its underlay
            raise StoreError(f"etcd ({self.endpoint}): only http:// is probed inside a namespace")
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 2379, timeout=cfg.timeout)
        try:
            with netns.inside(self.spec.netns):
                conn.connect()
            conn.request("GET", "/health")
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
        try:
            return resp.status == 200 and json.loads(body).get("health") == "true"
        except (ValueError, AttributeError):
            return False

    def _explain(self, message: str) -> str:
        return with_tail(message, self.spec.log_path) if self.spec.log_path else message

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, for tests of crash behaviour."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def is_our_process(pid: int, marker: str) -> bool:
    """True if `pid` is alive and its command line contains `marker` (guards against pid reuse).

    A live process reads an empty command line while it is inside execve (the new image's argv
    is not in place yet). Our wrappers exec two or three times (sh -> nsenter -> program), so a
    single read would now and then report a running process as gone: an empty read of a
    process that is not a zombie is read again until the exec is through."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        if raw:
            return marker in raw.replace(b"\0", b" ").decode(errors="replace")
        if _is_zombie(pid) or time.monotonic() > deadline:
            return False  # exited (not yet reaped), or a kernel thread that took the pid
        time.sleep(0.0005)


def stop_pid(pid: int, marker: str, *, timeout: float = 10.0) -> bool:
    """Terminate a process we started earlier (recorded pid), only if it is still ours."""
    if not is_our_process(pid, marker):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_our_process(pid, marker) or _is_zombie(pid):
            _reap(pid)
            return True
        time.sleep(0.05)
    # said, because what a clean stop would have done (logged, released) did not happen
    log.warning("pid %d (%s) still running %.0fs after SIGTERM: killing it", pid, marker, timeout)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)
    return True


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
