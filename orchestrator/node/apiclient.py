"""The client side of the node API (`orchestrator.node.server`): find the node a pod runs on
and talk to its agent there, as the API server reaches kubelet for `pods/log` and `exec`.

`locate` reads the pod (its `spec.nodeName`) and that Node (InternalIP, the node API's port
from `status.daemonEndpoints.kubeletEndpoint.Port`, and the certificate it announces).
`NodeClient` makes the requests over TLS that trusts exactly that certificate and presents a
client certificate of the cluster's CA (`orchestrator.node.nodetls`); how the socket is opened
is injected (`Connect`), so a caller outside the node's network, like the root shell of a lab
whose underlay lives only in its namespaces, connects from inside a network namespace
(`netplane.cli.podio`).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from netplane.errors import NetplaneError, NotFoundError, UserError
from orchestrator.apiserver import certs
from orchestrator.node import execstream, nodetls
from orchestrator.objects import meta
from orchestrator.objects import node as nodes
from orchestrator.objects import pod as pods
from orchestrator.objects.meta import NODE, POD
from orchestrator.storage import ObjectStore

Obj = dict[str, Any]
Connect = Callable[[tuple[str, int], float], socket.socket]
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Target:
    """Where a pod's node API answers."""

    pod: Obj
    node: str
    address: str  # the Node's InternalIP
    port: int
    certificate: bytes  # PEM: the one its node API serves, as the Node announces it


def locate(objects: ObjectStore, namespace: str, name: str) -> Target:
    pod = objects.get(POD, name, namespace)
    if pod is None:
        raise NotFoundError(f'pods "{name}" not found in namespace "{namespace}"')
    node_name = pods.node_name(pod)
    if not node_name:
        raise UserError(f"pod {name} is not scheduled to a node yet ({pods.phase(pod)})")
    node = objects.get(NODE, node_name)
    if node is None:
        raise NetplaneError(f"node {node_name} of pod {name} is not registered")
    address, port = nodes.internal_ip(node), nodes.node_api_port(node)
    if not address:
        raise NetplaneError(f"node {node_name} has no InternalIP address")
    if not port:
        raise NetplaneError(f"node {node_name} announces no node API port (its agent runs with "
                            "--node-api-listen none, or predates it)")
    return Target(pod=pod, node=node_name, address=address, port=port, certificate=nodetls.pinned(node, node_name))


def default_connect(addr: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(addr, timeout=timeout)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str
    timed_out: bool


class _Conn(http.client.HTTPConnection):
    def __init__(self, client: NodeClient, read_timeout: float | None) -> None:
        super().__init__(client.target.address, client.target.port, timeout=CONNECT_TIMEOUT)
        self._client = client
        self._read_timeout = read_timeout

    def connect(self) -> None:
        self.sock = self._client.open()
        self.sock.settimeout(self._read_timeout)


class NodeClient:
    """Requests to one node's API, as `credentials` (a client certificate and key; None: none,
    which the node answers with 401). Errors: `NotFoundError` (404), `UserError` (400, 405),
    else `NetplaneError`, each one line naming the node."""

    def __init__(self, target: Target, credentials: certs.Pair | None, *, connect: Connect = default_connect) -> None:
        self.target = target
        self.connect = connect
        self.tls = nodetls.client_context(target.certificate, credentials)

    def open(self) -> ssl.SSLSocket:
        """A TLS connection to the node's agent; `NetplaneError` saying why there is none."""
        t = self.target
        try:
            sock = self.connect((t.address, t.port), CONNECT_TIMEOUT)
        except OSError as e:
            raise NetplaneError(f"cannot reach node {t.node}'s agent at {t.address}:{t.port}: "
                                f"{e.strerror or e}") from e
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(CONNECT_TIMEOUT)
            return self.tls.wrap_socket(sock)
        except ssl.SSLError as e:
            sock.close()
            raise NetplaneError(nodetls.handshake_error(t.node, e)) from None
        except OSError as e:
            sock.close()
            raise NetplaneError(f"TLS with node {t.node}'s agent at {t.address}:{t.port}: {e.strerror or e}") from e

    def _request(self, method: str, path: str, *, read_timeout: float | None) -> tuple[_Conn, http.client.HTTPResponse]:
        t = self.target
        conn = _Conn(self, read_timeout)
        try:
            conn.request(method, path, headers={"Accept": "*/*"})
            resp = conn.getresponse()
        except ssl.SSLError as e:  # the node refused our certificate (TLS 1.3: told after the handshake)
            conn.close()
            raise NetplaneError(nodetls.handshake_error(t.node, e)) from None
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
            raise NetplaneError(f"cannot reach node {t.node}'s agent at {t.address}:{t.port}: {why}") from e
        if resp.status != 200:
            try:
                text = resp.read(4096).decode("utf-8", "replace").strip().splitlines()
            except (OSError, http.client.HTTPException):
                text = []
            finally:
                conn.close()
            raise self._refused(resp.status, text[0] if text else resp.reason)
        return conn, resp

    def _refused(self, status: int, line: str) -> NetplaneError:
        """The node's refusal as our one-line errors: 404 NotFound, 400/405 UserError."""
        if status == 404:
            return NotFoundError(line)
        if status in (400, 405):
            return UserError(line)
        return NetplaneError(f"node {self.target.node}: {line} (HTTP {status})")

    def logs(self, namespace: str, pod: str, container: str, *, follow: bool = False, tail: int | None = None,
             previous: bool = False, read_timeout: float | None = 30.0) -> Iterator[bytes]:
        """The container's output in chunks, as they come (with `follow`, until it exits).
        The request is made before the first chunk is asked for, so errors come at once."""
        query: list[tuple[str, str]] = []
        if follow:
            query.append(("follow", "true"))
        if tail is not None:
            query.append(("tailLines", str(tail)))
        if previous:
            query.append(("previous", "true"))
        path = f"/containerLogs/{_seg(namespace)}/{_seg(pod)}/{_seg(container)}"
        conn, resp = self._request("GET", path + (f"?{urlencode(query)}" if query else ""),
                                   read_timeout=None if follow else read_timeout)
        return self._chunks(conn, resp)

    def _chunks(self, conn: _Conn, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        try:
            while True:
                try:
                    data = resp.read1(65536)
                except (OSError, http.client.HTTPException) as e:
                    raise NetplaneError(f"the log stream from node {self.target.node} broke off: "
                                        f"{e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__}") from e
                if not data:
                    return
                yield data
        finally:
            conn.close()

    def exec(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
             timeout: float) -> ExecResult:
        query = urlencode([("command", c) for c in command] + [("timeout", f"{timeout:g}")])
        path = f"/exec/{_seg(namespace)}/{_seg(pod)}/{_seg(container)}?{query}"
        conn, resp = self._request("POST", path, read_timeout=timeout + 30)
        try:
            body = json.loads(resp.read())
            return ExecResult(int(body["exitCode"]), str(body.get("output") or ""), bool(body.get("timedOut")))
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as e:
            raise NetplaneError(f"node {self.target.node}: unreadable exec reply: {e}") from e
        finally:
            conn.close()

    def exec_stream(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
                    stdin: bool, tty: bool) -> tuple[socket.socket, Any]:
        """The streaming exec, upgraded (`orchestrator.node.execstream`): the socket and a
        buffered reader of it for `execstream.read_frame`; the node's refusal as the usual
        one-line errors."""
        t = self.target
        return self._upgraded(execstream.upgrade_request(f"{t.address}:{t.port}", namespace, pod, container, command,
                                                         stdin=stdin, tty=tty))

    def attach_stream(self, namespace: str, pod: str, container: str, *, stdin: bool) -> tuple[socket.socket, Any]:
        """An attach to the container's main process, upgraded as `exec_stream` is."""
        t = self.target
        return self._upgraded(execstream.attach_request(f"{t.address}:{t.port}", namespace, pod, container,
                                                        stdin=stdin))

    def port_forward(self, namespace: str, pod: str, port: int) -> tuple[socket.socket, Any]:
        """A connection to `port` of the pod (localhost in its network namespace), upgraded as
        `exec_stream` is; the node's refusal (nothing listens there) as one-line errors."""
        t = self.target
        return self._upgraded(execstream.portforward_request(f"{t.address}:{t.port}", namespace, pod, port))

    def _upgraded(self, request: bytes) -> tuple[socket.socket, Any]:
        t = self.target
        sock = self.open()
        try:
            sock.sendall(request)
            f = sock.makefile("rb")
            resp = http.client.HTTPResponse(sock)  # only to parse the status line and headers
            resp.fp = f
            resp.begin()
        except ssl.SSLError as e:
            sock.close()
            raise NetplaneError(nodetls.handshake_error(t.node, e)) from None
        except (OSError, http.client.HTTPException) as e:
            sock.close()
            raise NetplaneError(f"node {t.node}: upgrading: {e}") from e
        if resp.status == 101:
            resp.fp = None  # type: ignore[assignment]  # the reader is ours now: the response must not close it
            sock.settimeout(None)
            return sock, f
        text = resp.read(4096).decode("utf-8", "replace").strip().splitlines()
        sock.close()
        raise self._refused(resp.status, text[0] if text else resp.reason)


def _seg(text: str) -> str:
    return quote(text, safe="")


def container_of(pod: Obj, container: str | None) -> str:
    """`-c` or the pod's only container; kubectl's messages when neither works."""
    names = [str(c.get("name") or "") for c in pods.spec(pod).get("containers") or []]
    if container is not None:
        if container not in names:
            raise UserError(f"container {container} is not valid for pod {meta.name(pod)}")
        return container
    if len(names) != 1:
        raise UserError(f"a container name must be specified for pod {meta.name(pod)}, "
                        f"choose one of: [{' '.join(names)}]")
    return names[0]
