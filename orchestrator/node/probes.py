"""Liveness and readiness probes with kubelet's semantics, all of an agent's on one scheduler.

**Checks** (kubelet `pkg/probe`): `tcpSocket` succeeds when a TCP connect succeeds; `httpGet`
when the response status is 200-399 (redirects are followed only to the same host name, at
most 10; a redirect elsewhere is not followed and counts as success, kubelet's "Warning");
`exec` when the command exits 0 within the timeout. Network checks connect from the agent's
own (the host's) network namespace to the pod IP, or to `host` when the probe names one, as
kubelet does. Exec goes through the `exec_fn(cmd, timeout) -> exit code` the runtime passes
in (raising TimeoutError on a timeout), so this module never talks to Docker. A named port is
resolved against the container's ports; one that does not resolve is a probe *error*.

**Counting** (kubelet `prober/worker.go`): a result is reported only after `successThreshold`
successes or `failureThreshold` failures in a row; errors (a probe that could not be run) are
thrown away. Readiness starts False and liveness True for each new container instance; a
liveness failure is reported once and the worker is on hold until the container is replaced.
A stopped container is not ready. Defaults: initialDelaySeconds 0, periodSeconds 10,
timeoutSeconds 1, successThreshold 1, failureThreshold 3.

**Scheduling.** kubelet runs a goroutine per probe; here one thread keeps a heap of due times
and hands due probes to a small pool (probes of one worker never overlap), so 30 pods cost one
sleeping thread between probes. The first probe of an instance runs at start +
initialDelaySeconds (kubelet waits for its next tick, up to a period late), then every period;
a tcpSocket/httpGet readiness check that has not yet succeeded is re-run after 50, 100, 200 ...
ms within the instance's first period (a server binding a few ms after exec would otherwise
lose a whole period to the first probe's refused connection; kubelet would too).
Transitions go to the `on_change` callback, called from a probe thread: keep it short (queue
the pod key for the sync loop). Callbacks from different threads can arrive out of order, so
treat one as "look again": `ready()` / `result()` give the current value, and a
`Transition.container_id` that is not the running instance's is stale.
"""

from __future__ import annotations

import functools
import heapq
import http.client
import itertools
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

log = logging.getLogger(__name__)

Kind = Literal["readiness", "liveness"]
KINDS: tuple[Kind, ...] = ("readiness", "liveness")
Result = Literal["success", "failure", "error"]
ExecFn = Callable[[list[str], float], int]
Clock = Callable[[], float]

DEFAULT_INITIAL_DELAY = 0
DEFAULT_PERIOD = 10
DEFAULT_TIMEOUT = 1
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3
STARTUP_RETRY = 0.05  # first re-probe of a not-yet-ready instance's network readiness check (doubling)
MAX_REDIRECTS = 10
MAX_BODY = 10 * 1024
USER_AGENT = "kube-probe/1.0"


# --------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class TCPCheck:
    port: int | str  # a str is a port name that did not resolve
    host: str = ""   # "" = the pod IP


@dataclass(frozen=True)
class HTTPCheck:
    port: int | str
    path: str = "/"
    host: str = ""
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ExecCheck:
    command: tuple[str, ...]


Check = TCPCheck | HTTPCheck | ExecCheck


@dataclass(frozen=True)
class ProbeSpec:
    check: Check
    initial_delay: float = DEFAULT_INITIAL_DELAY
    period: float = DEFAULT_PERIOD
    timeout: float = DEFAULT_TIMEOUT
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD


def resolve_port(port: Any, container: Mapping[str, Any]) -> int | str:
    """A probe's port: a number, a numeric string, or a container port's name (kubelet
    ResolveContainerPort). An unknown name is returned as is (the check then errors)."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or []:
        if p.get("name") == text and isinstance(p.get("containerPort"), int):
            return int(p["containerPort"])
    return text


def probe_spec(probe: Mapping[str, Any], container: Mapping[str, Any]) -> ProbeSpec | None:
    """The probe with defaults applied and named ports resolved; None if it names no handler."""
    check: Check
    if probe.get("exec") is not None:
        check = ExecCheck(tuple(probe["exec"].get("command") or ()))
    elif probe.get("httpGet") is not None:
        h = probe["httpGet"]
        check = HTTPCheck(
            port=resolve_port(h.get("port"), container), path=h.get("path") or "/",
            host=h.get("host") or "", scheme=(h.get("scheme") or "HTTP").upper(),
            headers=tuple((x.get("name", ""), x.get("value", ""))
                          for x in h.get("httpHeaders") or []))
    elif probe.get("tcpSocket") is not None:
        t = probe["tcpSocket"]
        check = TCPCheck(port=resolve_port(t.get("port"), container), host=t.get("host") or "")
    else:
        return None

    def seconds(key: str, default: float) -> float:
        # 0 or absent means the default (API defaulting); fractions are allowed (tests)
        v = probe.get(key)
        return default if not v or v < 0 else float(v)

    def count(key: str, default: int) -> int:
        v = probe.get(key)
        return default if not v or v < 1 else int(v)

    delay = probe.get("initialDelaySeconds")
    return ProbeSpec(check=check,
                     initial_delay=float(delay) if delay and delay > 0 else 0.0,
                     period=seconds("periodSeconds", DEFAULT_PERIOD),
                     timeout=seconds("timeoutSeconds", DEFAULT_TIMEOUT),
                     success_threshold=count("successThreshold", DEFAULT_SUCCESS_THRESHOLD),
                     failure_threshold=count("failureThreshold", DEFAULT_FAILURE_THRESHOLD))


# --------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class Outcome:
    result: Result
    message: str = ""


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tcp_check(host: str, port: int, timeout: float) -> Outcome:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Outcome("success")
    except TimeoutError:
        return Outcome("failure", f"dial tcp {_hostport(host, port)}: i/o timeout")
    except OSError as e:
        return Outcome("failure", f"dial tcp {_hostport(host, port)}: {e.strerror or e}")


def http_check(*, host: str, port: int, path: str = "/", scheme: str = "HTTP",
               headers: tuple[tuple[str, str], ...] = (), timeout: float) -> Outcome:
    """GET scheme://host:port/path within `timeout` seconds in all (each socket operation gets
    what is left). HTTPS does not verify the certificate, like kubelet."""
    deadline = time.monotonic() + timeout
    scheme = scheme.lower()
    url = f"{scheme}://{_hostport(host, port)}{path if path.startswith('/') else '/' + path}"
    first_host = host
    for hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        h = parts.hostname or host
        p = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            status, location = _get(parts.scheme, h, p, target, headers, deadline)
        except TimeoutError:
            return Outcome("failure", f'Get "{url}": context deadline exceeded')
        except (OSError, http.client.HTTPException) as e:
            return Outcome("failure", f'Get "{url}": {e}')
        if status in (301, 302, 303, 307, 308) and location:
            nxt = urljoin(url, location)
            if (urlsplit(nxt).hostname or "") != first_host:
                return Outcome("success", f"Probe terminated redirects, status {status}")
            if hop == MAX_REDIRECTS:
                return Outcome("failure", f'Get "{nxt}": stopped after {MAX_REDIRECTS} redirects')
            url = nxt
            continue
        if 200 <= status < 400:
            return Outcome("success")
        return Outcome("failure", f"HTTP probe failed with statuscode: {status}")
    raise AssertionError("unreachable")


def _get(scheme: str, host: str, port: int, target: str, headers: tuple[tuple[str, str], ...],
         deadline: float) -> tuple[int, str]:
    def left() -> float:
        r = deadline - time.monotonic()
        if r <= 0:
            raise TimeoutError
        return r

    conn: http.client.HTTPConnection
    if scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=left(), context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=left())
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(left())
        hdrs = {"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}
        hdrs.update(dict(headers))
        conn.request("GET", target, headers=hdrs)
        conn.sock.settimeout(left())
        resp = conn.getresponse()
        resp.read(MAX_BODY)
        return resp.status, resp.getheader("Location") or ""
    finally:
        conn.close()


def exec_check(exec_fn: ExecFn, command: tuple[str, ...], timeout: float) -> Outcome:
    try:
        code = exec_fn(list(command), timeout)
    except TimeoutError:
        return Outcome("failure", f"command {list(command)!r} timed out")
    except Exception as e:  # noqa: BLE001 - the runtime could not run it: not the container's fault
        return Outcome("error", f"exec failed: {e}")
    if code == 0:
        return Outcome("success")
    return Outcome("failure", f"command {list(command)!r} exited with {code}")


def run_check(check: Check, *, pod_ip: str, timeout: float,
              exec_fn: ExecFn | None = None) -> Outcome:
    """One probe of `check` against a container whose pod has `pod_ip`."""
    if isinstance(check, ExecCheck):
        if exec_fn is None:
            return Outcome("error", "no exec function for this container")
        return exec_check(exec_fn, check.command, timeout)
    if isinstance(check.port, str):
        return Outcome("error", f"port {check.port!r} is not a named port of the container")
    host = check.host or pod_ip
    if not host:
        return Outcome("error", "the pod has no IP yet")
    if isinstance(check, TCPCheck):
        return tcp_check(host, check.port, timeout)
    return http_check(host=host, port=check.port, path=check.path, scheme=check.scheme,
                      headers=check.headers, timeout=timeout)


# --------------------------------------------------------------------------- counting
class Counter:
    """Consecutive results -> reported result, for one container instance (kubelet worker)."""

    def __init__(self, kind: Kind, spec: ProbeSpec, *, assume: bool | None = None) -> None:
        self.kind = kind
        self.spec = spec
        self.result = (kind == "liveness") if assume is None else assume
        self.last: bool | None = None
        self.run = 0
        self.on_hold = False

    def observe(self, outcome: Result) -> bool | None:
        """Count one outcome; the new reported result if it changed, else None."""
        if outcome == "error" or self.on_hold:
            return None
        ok = outcome == "success"
        if ok == self.last:
            self.run += 1
        else:
            self.last, self.run = ok, 1
        need = self.spec.success_threshold if ok else self.spec.failure_threshold
        if self.run < need:
            return None
        if self.kind == "liveness" and not ok:
            self.on_hold, self.run = True, 0
        if ok == self.result:
            return None
        self.result = ok
        return ok


# --------------------------------------------------------------------------- manager
@dataclass(frozen=True)
class ProbeKey:
    pod_uid: str
    container: str
    kind: Kind


@dataclass(frozen=True)
class Transition:
    """A reported result changed: readiness `success` = ready; liveness `success=False` =
    restart the container `container_id`. `message` is the last probe's output."""

    key: ProbeKey
    success: bool
    container_id: str
    message: str = ""
    probed: bool = True  # a probe's result; False: the container stopped or restarted (no probe ran)


@dataclass(eq=False)
class _Worker:
    key: ProbeKey
    spec: ProbeSpec
    counter: Counter
    container_id: str = ""
    pod_ip: str = ""
    exec_fn: ExecFn | None = None
    generation: int = 0
    token: int = 0
    busy: bool = False
    deferred: bool = False
    removed: bool = False
    first_due: float = 0.0  # this instance's first probe
    retry: float = STARTUP_RETRY


Submit = Callable[[Callable[[], None]], object]


class ProbeManager:
    """Every probe of one agent. Call `add_pod` when a pod is synced, `container_started` for
    each new (or adopted) container instance, `container_stopped` when it exits and
    `remove_pod` when the pod is gone; `start()` runs the scheduler thread.

    Tests drive it without threads: pass a fake `clock` and `submit=lambda fn: fn()`, and
    call `run_due()` (it runs what is due at `clock()` and returns the next due time)."""

    def __init__(self, on_change: Callable[[Transition], None], *, clock: Clock = time.monotonic,
                 submit: Submit | None = None, max_parallel: int = 4,
                 rand: Callable[[], float] = random.random) -> None:
        self._on_change = on_change
        self._clock = clock
        self._rand = rand
        self._pool: ThreadPoolExecutor | None = None
        if submit is None:
            self._pool = ThreadPoolExecutor(max_workers=max_parallel,
                                            thread_name_prefix="probe")
            submit = self._pool.submit
        self._submit = submit
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._workers: dict[ProbeKey, _Worker] = {}
        self._heap: list[tuple[float, int, int, _Worker]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- registration
    def add(self, key: ProbeKey, probe: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
        """Register one probe (idempotent); False if it has no handler."""
        spec = probe_spec(probe, container)
        if spec is None:
            return False
        with self._lock:
            if key not in self._workers:
                self._workers[key] = _Worker(key, spec, Counter(key.kind, spec))
        return True

    def add_pod(self, pod: Mapping[str, Any]) -> list[ProbeKey]:
        """Register every readiness and liveness probe of the pod's containers."""
        uid = (pod.get("metadata") or {}).get("uid") or ""
        keys = []
        for c in (pod.get("spec") or {}).get("containers") or []:
            for kind in KINDS:
                probe = c.get(f"{kind}Probe")
                key = ProbeKey(uid, c.get("name") or "", kind)
                if probe and self.add(key, probe, c):
                    keys.append(key)
        return keys

    def remove_pod(self, pod_uid: str) -> None:
        with self._lock:
            for key in [k for k in self._workers if k.pod_uid == pod_uid]:
                self._workers.pop(key).removed = True

    def keys(self) -> list[ProbeKey]:
        with self._lock:
            return list(self._workers)

    # ---------------------------------------------------------------- container instances
    def container_started(self, pod_uid: str, container: str, *, container_id: str,
                          pod_ip: str, exec_fn: ExecFn | None = None, running_for: float = 0.0,
                          assume_ready: bool = False) -> None:
        """A container instance runs (new, or adopted after an agent restart: then
        `running_for` says how long it has run, and `assume_ready=True` keeps it ready until
        its readiness probe says otherwise). A new instance starts the counts over: readiness
        False (reported if it was True), liveness True."""
        changes: list[Transition] = []
        now = self._clock()
        with self._lock:
            for kind in KINDS:
                w = self._workers.get(ProbeKey(pod_uid, container, kind))
                if w is None:
                    continue
                w.pod_ip, w.exec_fn = pod_ip, exec_fn
                if w.container_id == container_id:
                    continue
                was = w.counter.result
                assume = assume_ready if kind == "readiness" else None
                w.counter = Counter(kind, w.spec, assume=assume)
                if kind == "readiness" and was and not w.counter.result:
                    changes.append(Transition(w.key, False, container_id, "container restarted", probed=False))
                w.container_id = container_id
                w.generation += 1
                due = now - running_for + w.spec.initial_delay
                if due < now:  # adopted: spread first probes over a period
                    due = now + (self._rand() * w.spec.period if assume_ready else 0.0)
                w.first_due, w.retry = due, STARTUP_RETRY
                self._schedule(w, due)
        self._emit(changes)

    def container_stopped(self, pod_uid: str, container: str) -> None:
        """The instance exited: no more probes until the next one; not ready."""
        changes: list[Transition] = []
        with self._lock:
            for kind in KINDS:
                w = self._workers.get(ProbeKey(pod_uid, container, kind))
                if w is None or not w.container_id:
                    continue
                if kind == "readiness" and w.counter.result:
                    changes.append(Transition(w.key, False, w.container_id, "container stopped", probed=False))
                w.counter = Counter(kind, w.spec, assume=False if kind == "readiness" else None)
                w.container_id = ""
                w.generation += 1  # its queued probe is skipped: no container_id
        self._emit(changes)

    def result(self, key: ProbeKey) -> bool | None:
        """The reported result (readiness: ready) of a registered probe, else None."""
        with self._lock:
            w = self._workers.get(key)
            return None if w is None else w.counter.result

    def ready(self, pod_uid: str, container: str) -> bool | None:
        """Readiness by probe; None when the container has no readiness probe."""
        return self.result(ProbeKey(pod_uid, container, "readiness"))

    # ---------------------------------------------------------------- scheduling
    def _schedule(self, w: _Worker, due: float) -> None:
        w.token += 1
        heapq.heappush(self._heap, (due, next(self._seq), w.token, w))
        self._wake.notify()

    def next_due(self) -> float | None:
        with self._lock:
            return self._heap[0][0] if self._heap else None

    def run_due(self) -> float | None:
        """Start every probe due at `clock()`; the next due time (None: nothing queued)."""
        now = self._clock()
        start: list[tuple[_Worker, int, float]] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                due, _, token, w = heapq.heappop(self._heap)
                if w.removed or token != w.token or not w.container_id:
                    continue
                if w.busy:
                    w.deferred = True
                    continue
                w.busy = True
                start.append((w, w.generation, due))
        for w, gen, due in start:
            self._submit(functools.partial(self._probe, w, gen, due))
        return self.next_due()

    def _probe(self, w: _Worker, gen: int, due: float) -> None:
        try:
            out = run_check(w.spec.check, pod_ip=w.pod_ip, timeout=w.spec.timeout,
                            exec_fn=w.exec_fn)
        except Exception as e:  # a bug in a check must not stop the worker
            log.exception("probe %s failed to run", w.key)
            out = Outcome("error", str(e))
        changes: list[Transition] = []
        with self._lock:
            w.busy = False
            now = self._clock()
            if w.removed:
                return
            if gen == w.generation:
                if out.result == "error":
                    log.warning("probe %s could not run: %s", w.key, out.message)
                changed = w.counter.observe(out.result)
                if changed is not None:
                    changes.append(Transition(w.key, changed, w.container_id, out.message))
                if not w.counter.on_hold:
                    self._schedule(w, self._next_due(w, due, now))
            if w.deferred:
                w.deferred = False
                if w.container_id and not w.counter.on_hold:
                    self._schedule(w, now)
        self._emit(changes)

    @staticmethod
    def _next_due(w: _Worker, due: float, now: float) -> float:
        """One period on, except within a new instance's first period while its network
        readiness check has never succeeded: then again after 50 ms, 100 ms, 200 ms ... up to
        the second regular probe (a server that binds a few ms after its process starts would
        otherwise lose a whole period to the first probe's refused connection). Results count
        as usual; exec checks (a process per probe) keep the period."""
        if w.key.kind == "readiness" and w.first_due <= due < w.first_due + w.spec.period:
            second = w.first_due + w.spec.period
            if not w.counter.result and w.counter.last is not True and not isinstance(w.spec.check, ExecCheck):
                soon = now + w.retry
                w.retry *= 2
                return max(min(soon, second), now)
            return max(second, now)
        return max(due + w.spec.period, now)

    def _emit(self, changes: list[Transition]) -> None:
        for t in changes:
            try:
                self._on_change(t)
            except Exception:
                log.exception("probe callback failed for %s", t.key)

    # ---------------------------------------------------------------- thread
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="probe-scheduler",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                due = self._heap[0][0] if self._heap else None
                wait = None if due is None else due - self._clock()
                if wait is None or wait > 0:
                    self._wake.wait(wait)
                    continue
            self.run_due()
