"""The node API: what kubelet serves on port 10250, cut down to what `netplane logs`, `netplane
exec` and the API server's `pods/log` proxy need. Started by the node runtime
(`NodeOptions.api_listen`; `netplane agent --node-api-listen`, default `<node IP>:10250`) and
announced in the Node's `status.daemonEndpoints.kubeletEndpoint.Port`, as kubelet does.

    GET  /healthz                                            "ok" (503 until the pod cache is synced)
    GET  /pods                                               PodList: the pods bound to this node
    GET  /stats/summary                                      kubelet's Summary: node, pod and container
                                                             CPU and memory (`stats.summary`; 404
                                                             without the agent's stats collector)
    GET  /containerLogs/{namespace}/{pod}/{container}        the container's output, chunked
         ?follow=true   until the container exits (or the client goes)
         &tailLines=N   the last N lines (records) only
         &previous=true the instance before the current one (after a restart)
    POST /exec/{namespace}/{pod}/{container}?command=a&command=b[&timeout=S]
                                                             JSON {"exitCode", "output", "timedOut"}
    POST /exec/...?command=...[&stdin=true][&tty=true]       with `Upgrade: netplane-exec/1`: 101, then
                                                             the command's streams as frames
                                                             (`orchestrator.node.execstream`)
    POST /attach/{namespace}/{pod}/{container}[?stdin=true]  with `Upgrade: netplane-exec/1`: 101, then
                                                             the main process's streams as frames
    POST /portForward/{namespace}/{pod}?port=P               with `Upgrade: netplane-portforward/1`:
                                                             101, then a connection to localhost:P in
                                                             the pod's network namespace, as frames

kubelet's paths and query parameters. `{container}` may be left out when the pod has one
container (kubelet requires it; our CLI fills it in). Errors are one line of text: 404 for a
pod this node does not run or a container the pod does not have, 400 for a bad request
(including a container that has not started, or one not running for exec), 405 for a wrong
method, 500 when the runtime fails.

**Two execs.** The plain POST runs the command to completion (or `timeout`, default 300 s, at
most 3600 s; then it is killed and `timedOut` is true), with no stdin and no TTY, and its stdout
and stderr come back combined in one JSON reply, decoded as UTF-8 (invalid bytes replaced):
`netplane exec` and the probes' kind of exec. The upgraded one streams stdin, stdout, stderr,
resizes and the exit code both ways while the command runs, with a TTY when asked (what the API
server relays `kubectl exec -i/-t` onto); kubelet's is the same conversation over SPDY or a
WebSocket, this one over our own framing (`orchestrator.node.execstream`), with no time limit.

**HTTPS, and only for the cluster's clients** (`orchestrator.node.nodetls`): the agent's
self-signed certificate, announced in its Node (annotation `netplane.io/node-api-certificate`)
and pinned by the API server and the CLI; a client certificate signed by a client CA of the
cluster authenticates (CN user, O groups). Without one: 401; the read-only group may read
(`/pods`, logs) but gets 403 on exec, attach and port-forward; `/healthz` answers anyone. Errors are one line of text,
as above.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import select
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from netplane import netns
from netplane.errors import ConfigError, NetplaneError
from netplane.httpserver import HTTPServer
from orchestrator.apiserver import auth
from orchestrator.node import execstream
from orchestrator.node.nodetls import ServerTLS
from orchestrator.node.runtime import ContainerInfo, ExecSession, Runtime

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_PORT = 10250  # kubelet's
DEFAULT_EXEC_TIMEOUT = 300.0
MAX_EXEC_TIMEOUT = 3600.0
_IDLE_CHECK = 1.0  # seconds between looks at a following client's socket while its log is quiet


class APIError(NetplaneError):
    """A request the node API refuses: HTTP status and one line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_listen(text: str) -> tuple[str, int] | None:
    """`--node-api-listen`: `ADDR:PORT`, `:PORT` (host "" = the node's IP) or `none`."""
    if text.strip().lower() == "none":
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--node-api-listen {text!r}: expected ADDR:PORT, :PORT or none")
    return host, int(port)


# --------------------------------------------------------------------------- requests (pure)
@dataclass(frozen=True)
class LogsRequest:
    namespace: str
    pod: str
    container: str | None
    follow: bool = False
    tail: int | None = None
    previous: bool = False


@dataclass(frozen=True)
class ExecRequest:
    namespace: str
    pod: str
    container: str | None
    command: tuple[str, ...]
    timeout: float = DEFAULT_EXEC_TIMEOUT
    stdin: bool = False
    tty: bool = False


@dataclass(frozen=True)
class AttachRequest:
    namespace: str
    pod: str
    container: str | None
    stdin: bool = False


@dataclass(frozen=True)
class PortForwardRequest:
    namespace: str
    pod: str
    port: int


@dataclass(frozen=True)
class InfoRequest:
    what: str  # "healthz", "pods" or "stats/summary"


Request = LogsRequest | ExecRequest | AttachRequest | PortForwardRequest | InfoRequest

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # Go's strconv.ParseBool, as kubelet reads them
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


def _bool(q: Mapping[str, list[str]], name: str) -> bool:
    values = q.get(name)
    if not values:
        return False
    v = values[-1]
    if v in _TRUE or v == "":
        return True
    if v in _FALSE:
        return False
    raise APIError(400, f"{name}={v!r}: expected true or false")


def _target(parts: list[str], what: str) -> tuple[str, str, str | None]:
    if len(parts) not in (2, 3) or not all(parts):
        raise APIError(404, f"not found: expected /{what}/{{namespace}}/{{pod}}/{{container}}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def parse(method: str, target: str) -> Request:
    """What a request asks for; `APIError` (404 unknown path, 405 wrong method, 400 bad query)."""
    url = urlsplit(target)
    parts = [unquote(p) for p in url.path.split("/") if p]
    q = parse_qs(url.query, keep_blank_values=True)
    if not parts:
        raise APIError(404, "not found")
    head, rest = parts[0], parts[1:]
    if head in ("healthz", "pods") and not rest:
        if method not in ("GET", "HEAD"):
            raise APIError(405, f"method {method} not allowed on /{head}")
        return InfoRequest(head)
    if head == "stats" and rest == ["summary"]:
        if method not in ("GET", "HEAD"):
            raise APIError(405, f"method {method} not allowed on /stats/summary")
        return InfoRequest("stats/summary")
    if head == "containerLogs":
        ns, pod, container = _target(rest, head)
        if method not in ("GET", "HEAD"):
            raise APIError(405, f"method {method} not allowed on /containerLogs")
        tail: int | None = None
        if q.get("tailLines"):
            text = q["tailLines"][-1]
            try:
                tail = int(text)
            except ValueError:
                raise APIError(400, f"tailLines={text!r}: not an integer") from None
            if tail < 0:
                raise APIError(400, f"tailLines={tail}: must be greater than or equal to 0")
        return LogsRequest(ns, pod, container, follow=_bool(q, "follow"), tail=tail, previous=_bool(q, "previous"))
    if head == "exec":
        ns, pod, container = _target(rest, head)
        if method != "POST":
            raise APIError(405, f"method {method} not allowed on /exec (a POST here, not kubelet's streaming upgrade)")
        command = tuple(q.get("command") or ())
        if not command:
            raise APIError(400, "you must specify at least one command for the container")
        timeout = DEFAULT_EXEC_TIMEOUT
        if q.get("timeout"):
            text = q["timeout"][-1]
            try:
                timeout = float(text)
            except ValueError:
                raise APIError(400, f"timeout={text!r}: not a number of seconds") from None
            if not 0 < timeout <= MAX_EXEC_TIMEOUT:
                raise APIError(400, f"timeout={text}: must be more than 0 and at most {MAX_EXEC_TIMEOUT:.0f} seconds")
        return ExecRequest(ns, pod, container, command, timeout, stdin=_bool(q, "stdin"), tty=_bool(q, "tty"))
    if head == "attach":
        ns, pod, container = _target(rest, head)
        if method not in ("GET", "POST"):
            raise APIError(405, f"method {method} not allowed on /attach")
        return AttachRequest(ns, pod, container, stdin=_bool(q, "stdin"))
    if head == "portForward":
        if len(rest) != 2 or not all(rest):
            raise APIError(404, "not found: expected /portForward/{namespace}/{pod}")
        if method not in ("GET", "POST"):
            raise APIError(405, f"method {method} not allowed on /portForward")
        text = (q.get("port") or [""])[-1]
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise APIError(400, f"port={text!r}: expected a port number from 1 to 65535")
        return PortForwardRequest(rest[0], rest[1], int(text))
    raise APIError(404, f"not found: {url.path}")


# --------------------------------------------------------------------------- the node's side
class PodIndex(Protocol):
    def by_index(self, name: str, value: str) -> list[Obj]: ...


class Node(Protocol):
    """What the node API reads of the node runtime (`orchestrator.node.kubelet.NodeRuntime`)."""

    @property
    def node(self) -> str: ...

    @property
    def runtime(self) -> Runtime: ...

    @property
    def pods(self) -> PodIndex:
        """The pod informer, indexed by "node"."""
        ...

    def pod_containers(self, namespace: str, name: str) -> tuple[Obj, list[ContainerInfo]] | None: ...

    def pod_netns(self, namespace: str, name: str) -> str | None:
        """The network namespace (a path) of a pod this node runs: "" while its sandbox is not
        ready, None when this node runs no such pod."""
        ...

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def stats_summary(self) -> Obj | None:
        """kubelet's Summary (`stats.summary`), None when this agent runs no stats collector."""
        ...


def _names(pod: Obj, field: str = "containers") -> list[str]:
    return [str(c.get("name") or "") for c in (pod.get("spec") or {}).get(field) or []]


def pick(node: Node, namespace: str, pod_name: str, container: str | None, *,
         previous: bool = False, running: bool = False) -> ContainerInfo:
    """The runtime's container a request means: the newest instance of the named container (the
    one before it with `previous`), running when `running`; `APIError` saying why not."""
    found = node.pod_containers(namespace, pod_name)
    if found is None:
        raise APIError(404, f'pod "{pod_name}" in namespace "{namespace}" is not running on node {node.node}')
    pod, instances = found
    names = _names(pod)
    if container is None:
        if len(names) != 1:
            raise APIError(400, f"a container name must be specified for pod {pod_name}, "
                                f"choose one of: [{' '.join(names)}]")
        container = names[0]
    elif container not in names and container not in _names(pod, "ephemeralContainers"):
        raise APIError(404, f"container {container} is not valid for pod {pod_name}")
    history = [c for c in instances if c.name == container]  # oldest attempt first
    if previous:
        if len(history) < 2:
            raise APIError(400, f'previous terminated container "{container}" in pod "{pod_name}" not found')
        return history[-2]
    if not history:
        raise APIError(400, f'container "{container}" in pod "{pod_name}" is waiting to start')
    current = history[-1]
    if running and current.state != "running":
        raise APIError(400, f'container "{container}" in pod "{pod_name}" is not running ({current.state})')
    return current


# --------------------------------------------------------------------------- the server
class TLSHTTPServer(HTTPServer):
    """One thread per connection, whose TLS handshake runs on that thread (a slow client
    holds up only itself)."""

    tls: ServerTLS

    def finish_request(self, request: Any, client_address: Any) -> None:
        # streams write small frames back to back (output then the end): with Nagle, the
        # second waits for the client's delayed ACK, 40 ms a connection
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = self.tls.wrap(request)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            log.info("node API: TLS handshake with %s failed: %s", client_address[0], e)
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        finally:
            conn.close()


class NodeAPIServer:
    """The HTTPS server (one thread per request); `start()` binds (a taken port fails it)."""

    def __init__(self, listen: tuple[str, int], node: Node, *, tls: ServerTLS, netns_name: str | None = None,
                 authorizer: auth.Authorizer | None = None) -> None:
        self.listen = listen
        self.node = node
        self.tls = tls
        self.authorizer = authorizer or auth.Authorizer()
        self.netns_name = netns_name
        self._server: HTTPServer | None = None
        self._stop = threading.Event()
        self._forwards: set[socket.socket] = set()  # pods' ends of port-forwards (shut at stop)
        self._forwards_lock = threading.Lock()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._stop.clear()
        handler = type("Handler", (_Handler,), {"api": self})
        server_class = type("Server", (TLSHTTPServer,), {"tls": self.tls})
        with netns.inside(self.netns_name):
            try:
                self._server = server_class(self.listen, handler)
            except OSError as e:
                raise ConfigError(f"node API: cannot listen on {self.listen[0]}:{self.listen[1]}: {e.strerror}") from e
        threading.Thread(target=self._server.serve_forever, name="node-api", daemon=True).start()
        log.info("node API (logs, exec; client certificates of the cluster's CA) on https://%s:%d",
                 self.listen[0], self.port)

    def authorize(self, req: Request, peercert: Any) -> None:
        """`APIError` 401 without a verified client certificate, 403 for what its user may not do."""
        if isinstance(req, InfoRequest) and req.what == "healthz":
            return
        user = auth.user_from_peercert(peercert)
        if user is None:
            why = ("a client certificate signed by a client CA of the cluster is required" if self.tls.trusts_anyone()
                   else "this node knows no client CA yet (none published in etcd by an API server, "
                        "nor --node-api-client-ca)")
            raise APIError(401, f"Unauthorized: {why}")
        verb = "create" if isinstance(req, ExecRequest | AttachRequest | PortForwardRequest) else "get"
        if not self.authorizer.allowed(user, verb):
            what = ("exec" if isinstance(req, ExecRequest) else "attach" if isinstance(req, AttachRequest)
                    else "port-forward" if verb == "create" else "read")
            raise APIError(403, f'Forbidden: user "{user.name}" may not {what} on node {self.node.node}')

    def stop(self) -> None:
        self._stop.set()  # streams end (unterminated: a client sees they were cut)
        with self._forwards_lock:
            for s in self._forwards:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ------------------------------------------------------------------ answers
    def info(self, what: str) -> tuple[int, str, bytes]:
        if what == "healthz":
            ok, _ = self.node.health()
            return (200, "text/plain", b"ok") if ok else (503, "text/plain", b"node runtime not synced yet\n")
        if what == "stats/summary":
            summary = self.node.stats_summary()
            if summary is None:
                raise APIError(404, f"node {self.node.node} runs no stats collector (netplane agent --stats-listen)")
            return 200, "application/json", json.dumps(summary).encode()
        items = self.node.pods.by_index("node", self.node.node)
        return 200, "application/json", json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                                    "items": items}).encode()

    def exec_session(self, r: ExecRequest) -> ExecSession:
        c = pick(self.node, r.namespace, r.pod, r.container, running=True)
        try:
            return self.node.runtime.exec_session(c.id, list(r.command), stdin=r.stdin, tty=r.tty)
        except NetplaneError as e:
            raise APIError(500, f"exec in container {c.name} of pod {r.pod}: {e}") from e

    def attach_session(self, r: AttachRequest) -> ExecSession:
        c = pick(self.node, r.namespace, r.pod, r.container, running=True)
        try:
            return self.node.runtime.attach(c.id, stdin=r.stdin)
        except NetplaneError as e:
            raise APIError(500, f"attach to container {c.name} of pod {r.pod}: {e}") from e

    def connect_pod(self, r: PortForwardRequest) -> socket.socket:
        """A connection to localhost:port inside the pod's network namespace (IPv4, then IPv6)."""
        path = self.node.pod_netns(r.namespace, r.pod)
        if path is None:
            raise APIError(404, f'pod "{r.pod}" in namespace "{r.namespace}" is not running on node {self.node.node}')
        if not path:
            raise APIError(400, f'pod "{r.pod}" has no network namespace yet (its sandbox is not ready)')
        first: OSError | None = None
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            try:
                with netns.inside(path):
                    s = socket.socket(family, socket.SOCK_STREAM)  # in the pod's namespace for good
            except NetplaneError as e:
                raise APIError(500, f"port-forward to pod {r.pod}: {e}") from e
            try:
                s.settimeout(5.0)
                s.connect((host, r.port))
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return s
            except OSError as e:
                s.close()
                first = first or e
        assert first is not None
        raise APIError(500, f"connect to localhost:{r.port} in pod {r.pod}'s network namespace: "
                            f"{first.strerror or first}")

    def forwarding(self, s: socket.socket, on: bool) -> None:
        with self._forwards_lock:
            (self._forwards.add if on else self._forwards.discard)(s)

    def exec(self, r: ExecRequest) -> bytes:
        c = pick(self.node, r.namespace, r.pod, r.container, running=True)
        t0 = time.monotonic()
        try:
            code, out = self.node.runtime.exec(c.id, list(r.command), timeout=r.timeout)
        except NetplaneError as e:
            raise APIError(500, f"exec in container {c.name} of pod {r.pod}: {e}") from e
        timed_out = code == -1 and time.monotonic() - t0 >= r.timeout - 0.05
        return json.dumps({"exitCode": code, "output": out.decode("utf-8", "replace"),
                           "timedOut": timed_out}).encode()

    def logs(self, r: LogsRequest) -> Iterator[bytes]:
        c = pick(self.node, r.namespace, r.pod, r.container, previous=r.previous)
        try:
            return self.node.runtime.logs(c.id, tail=r.tail, follow=r.follow and not r.previous)
        except NetplaneError as e:
            raise APIError(500, f"logs of container {c.name} of pod {r.pod}: {e}") from e


_END = object()


class _Handler(BaseHTTPRequestHandler):
    api: NodeAPIServer
    protocol_version = "HTTP/1.1"  # chunked streams

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))  # no body is read by anything here
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        self.close_connection = True
        try:
            req = parse(self.command, self.path)
            self.api.authorize(req, self.connection.getpeercert())
            if isinstance(req, InfoRequest):
                self._send(*self.api.info(req.what))
            elif isinstance(req, PortForwardRequest):
                if not _upgrade(self.headers.get("Upgrade"), execstream.PORTFORWARD_UPGRADE):
                    raise APIError(400, f"port-forward needs the upgrade (Upgrade: {execstream.PORTFORWARD_UPGRADE})")
                self._port_forward(req)
            elif isinstance(req, ExecRequest) and _upgrade(self.headers.get("Upgrade")):
                self._exec_stream(self.api.exec_session(req))
            elif isinstance(req, AttachRequest):
                if not _upgrade(self.headers.get("Upgrade")):
                    raise APIError(400, f"attach needs the upgrade (Upgrade: {execstream.UPGRADE})")
                self._exec_stream(self.api.attach_session(req), attach=True)
            elif isinstance(req, ExecRequest):
                if req.stdin or req.tty:
                    raise APIError(400, f"stdin and tty need the streaming exec (Upgrade: {execstream.UPGRADE})")
                self._send(200, "application/json", self.api.exec(req))
            else:
                self._stream(self.api.logs(req))
        except APIError as e:
            self._send(e.code, "text/plain; charset=utf-8", f"{e}\n".encode())
        except Exception as e:  # one line to the client, the story in our log
            log.exception("node API: %s %s", self.command, self.path)
            self._send(500, "text/plain; charset=utf-8", f"internal error: {type(e).__name__}: {e}\n".encode())

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if code == 405:
            self.send_header("Allow", "POST" if self.path.startswith("/exec") else "GET, HEAD")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _switch_protocols(self, protocol: str) -> None:
        """101 to `protocol`; from here on the connection is the stream's, with no timeout."""
        self.send_response(101)
        self.send_header("Upgrade", protocol)
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        self.connection.settimeout(None)

    def _exec_stream(self, session: ExecSession, *, attach: bool = False) -> None:
        """The upgraded exec or attach: 101, then frames both ways until the command (the
        container) has exited (its status frame sent) or the client has gone (an exec's command
        killed; an attach session detached). An attach whose output ends while the container
        runs on (Docker's detach keys, a restarted dockerd) ends with a status frame without
        an exit code."""
        reader: threading.Thread | None = None
        try:
            self._switch_protocols(execstream.UPGRADE)
            gone = threading.Event()
            reader = threading.Thread(target=_exec_input, args=(self.rfile, session, gone), name="node-api-exec-in",
                                      daemon=True)
            reader.start()
            code = _exec_output(self.wfile, session, gone, self.api._stop, settle=ATTACH_SETTLE if attach else None)
            if code is not None:
                end = {} if code is DETACHED else {"exitCode": code}
                self.wfile.write(execstream.frame(execstream.STATUS, json.dumps(end).encode()))
                self.wfile.flush()
        except OSError:  # the client went while we wrote: its command goes too
            session.kill()
        finally:
            session.close()
            # the end for both sides: the input thread's read returns (so closing rfile, which
            # it holds, cannot block) and the client reads EOF after the status
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if reader is not None:
                reader.join(timeout=2.0)

    def _port_forward(self, req: PortForwardRequest) -> None:
        """101, then the pod's connection both ways as frames, half-closes included, until both
        sides have closed or the client has gone."""
        pod = self.api.connect_pod(req)  # APIError before anything is upgraded
        self.api.forwarding(pod, True)
        up: threading.Thread | None = None
        try:
            self._switch_protocols(execstream.PORTFORWARD_UPGRADE)
            client_closed = threading.Event()
            up = threading.Thread(target=_forward_up, args=(self.rfile, pod, client_closed.set),
                                  name="node-api-forward-in", daemon=True)
            up.start()
            execstream.socket_to_frames(pod, self.wfile.write, execstream.STDOUT)  # wfile is unbuffered
            while not client_closed.wait(_IDLE_CHECK) and up.is_alive():
                pass  # until the client has closed its side too (or gone); then the end
        except OSError:  # the client or the pod went
            pass
        finally:
            self.api.forwarding(pod, False)
            pod.close()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            if up is not None:
                up.join(timeout=2.0)

    def _stream(self, chunks: Iterator[bytes]) -> None:
        """Chunked, each piece as the runtime hands it over. The runtime's iterator runs on its
        own thread, so a client that leaves while the log is quiet is noticed (its socket reads
        EOF) and its connection closed at once; that thread ends at the log's next output or the
        container's exit. A runtime failure mid-way cuts the stream without its last chunk, so
        the client sees an incomplete reply, not a clean end."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            _close(chunks)
            return
        self.wfile.flush()
        q: queue.Queue[object] = queue.Queue(maxsize=16)
        gone = threading.Event()
        threading.Thread(target=_produce, args=(chunks, q, gone), name="node-api-logs", daemon=True).start()
        try:
            while True:
                try:
                    item = q.get(timeout=_IDLE_CHECK)
                except queue.Empty:
                    if self.api._stop.is_set() or _peer_closed(self.connection):
                        return
                    continue
                if item is _END:
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if isinstance(item, BaseException):
                    log.warning("node API: log stream %s cut: %s", self.path, item)
                    return
                assert isinstance(item, bytes)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(item), item))
                self.wfile.flush()
        except OSError:  # the client went while we wrote
            return
        finally:
            gone.set()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("node API: " + format, *args)


def _upgrade(value: str | None, protocol: str = execstream.UPGRADE) -> bool:
    return value is not None and protocol in [v.strip() for v in value.split(",")]


def _forward_up(rfile: Any, pod: socket.socket, on_close: Any) -> None:
    """A port-forward's client frames onto the pod's connection: bytes, then its half-close;
    EOF or a broken frame (the client went) ends the pod's connection both ways."""
    try:
        execstream.frames_to_socket(rfile, pod, execstream.STDIN, on_close)
    except (OSError, execstream.FrameError) as e:
        log.debug("node API: port-forward input ended: %s", e)
    with contextlib.suppress(OSError):
        pod.shutdown(socket.SHUT_RDWR)


def _exec_input(rfile: Any, session: ExecSession, gone: threading.Event) -> None:
    """Client frames into the session: stdin, its close, resizes. EOF or a broken frame: the
    client has gone, and the command is killed (as kubelet ends an exec whose stream closed)."""
    try:
        while True:
            got = execstream.read_frame(rfile)
            if got is None:
                break
            channel, data = got
            if channel == execstream.STDIN and data:
                session.write_stdin(data)
            elif channel == execstream.CLOSE:
                session.close_stdin()
            elif channel == execstream.RESIZE:
                size = execstream.resize_of(data)
                if size is not None:
                    session.resize(*size)
    except (OSError, execstream.FrameError, NetplaneError) as e:
        log.debug("node API: exec input ended: %s", e)
    gone.set()
    session.kill()


DETACHED: Any = object()  # an attach's output ended while its container runs on
ATTACH_SETTLE = 2.0  # seconds an attach waits, once the output ended, for the container's exit record


def _exec_output(wfile: Any, session: ExecSession, gone: threading.Event, stop: threading.Event, *,
                 settle: float | None = None) -> Any:
    """The session's output as frames until every stream is at EOF, then its exit code (None
    when the client went or the server stops first). With `settle` (an attach), DETACHED when
    the process still runs that long after its output ended."""
    while True:
        chunk = session.read(timeout=_IDLE_CHECK)
        if chunk is None:
            break
        channel, data = chunk
        if channel and data:
            wfile.write(execstream.frame(channel, data))
            wfile.flush()
        elif stop.is_set():
            session.kill()
            return None
    if settle is not None:
        if gone.is_set() or stop.is_set():
            return None
        code = session.wait(timeout=settle)
        return DETACHED if code is None else code
    while True:  # outputs closed; the process may still be finishing
        code = session.wait(timeout=_IDLE_CHECK)
        if code is not None:
            return code
        if stop.is_set() or gone.is_set():
            session.kill()
            return None


def _produce(chunks: Iterator[bytes], q: queue.Queue[object], gone: threading.Event) -> None:
    def put(item: object) -> bool:
        while not gone.is_set():
            try:
                q.put(item, timeout=_IDLE_CHECK)
                return True
            except queue.Full:
                continue
        return False

    try:
        for chunk in chunks:
            if chunk and not put(chunk):
                return
        put(_END)
    except Exception as e:  # noqa: BLE001 - handed to the writer
        put(e)
    finally:
        _close(chunks)


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        try:
            close()
        except Exception as e:  # noqa: BLE001 - closing a stream that already broke
            log.debug("closing a log stream: %s", e)


def _peer_closed(sock: socket.socket) -> bool:
    """The client closed its end (EOF readable, or TLS's closing alert) or reset it. The TCP
    bytes are peeked under TLS, not decrypted: a following client sends nothing else."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        peeked = socket.socket.recv(sock, 1, socket.MSG_PEEK)
        return peeked in (b"", b"\x15")  # EOF, or a TLS alert record (close_notify)
    except OSError:
        return True
