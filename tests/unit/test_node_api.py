"""The node API (`orchestrator.node.server`) and its client (`orchestrator.node.apiclient`):
routing, kubelet's query parameters, the error codes and their one-line messages, chunked
logs (following, and a client that leaves while the log is quiet), exec's JSON reply.

The server and client are real, over loopback and TLS with real certificates (the node's
self-signed one, client certificates of a CA made here); only the container runtime under them
is a stand-in (an adapter), which records what it was asked."""

from __future__ import annotations

import http.client
import json
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from netplane.errors import ConfigError, NetplaneError, NotFoundError, UserError
from orchestrator.apiserver import auth, certs
from orchestrator.node import execstream, nodetls
from orchestrator.node.apiclient import NodeClient, Target, container_of
from orchestrator.node.runtime import ContainerInfo, PodRef
from orchestrator.node.server import (
    APIError,
    AttachRequest,
    ExecRequest,
    InfoRequest,
    LogsRequest,
    NodeAPIServer,
    parse,
    parse_listen,
)

Obj = dict[str, Any]


def _pod(name: str, *containers: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"nodeName": "n1", "containers": [{"name": c, "image": "x"} for c in containers]}}


def _c(pod: str, name: str, attempt: int, state: str = "running") -> ContainerInfo:
    return ContainerInfo(id=f"{pod}-{name}-{attempt}", pod=PodRef(f"uid-{pod}", pod, "default"), name=name,
                         attempt=attempt, image="x", state=state, created_at=0.0)  # type: ignore[arg-type]


class FakeRuntime:
    name = "fake"

    def __init__(self) -> None:
        self.logs_asked: list[tuple[str, int | None, bool]] = []
        self.streams: dict[str, Iterator[bytes]] = {}

    def exec(self, container_id: str, cmd: Sequence[str], *, timeout: float) -> tuple[int, bytes]:
        if cmd[0] == "sleep":
            time.sleep(timeout)
            return -1, b"partial"
        return 3, f"{container_id}: {' '.join(cmd)}\n".encode()

    def exec_session(self, container_id: str, cmd: Sequence[str], *, stdin: bool, tty: bool) -> FakeSession:
        self.session = FakeSession(tty)
        self.session_asked = (container_id, list(cmd), stdin, tty)
        return self.session

    def attach(self, container_id: str, *, stdin: bool) -> FakeSession:
        self.session = FakeAttachSession(False)
        self.session_asked = (container_id, ["<attach>"], stdin, False)
        return self.session

    def logs(self, container_id: str, *, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        self.logs_asked.append((container_id, tail, follow))
        if container_id in self.streams:
            return self.streams[container_id]
        return iter([b"one\n", b"two\n"])


class FakeSession:
    """`cat` with its exit code at the end: stdin comes back on stdout; "err" goes to stderr."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.out: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self.sizes: list[tuple[int, int]] = []
        self.code: int | None = None
        self.killed = threading.Event()

    def write_stdin(self, data: bytes) -> None:
        self.out.put((2 if data == b"err" and not self.tty else 1, data))

    def close_stdin(self) -> None:
        self.code = 7
        self.out.put(None)

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        try:
            return self.out.get(timeout=timeout)
        except queue.Empty:
            return (0, b"")

    def resize(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    def wait(self, timeout: float | None = None) -> int | None:
        return self.code

    def kill(self) -> None:
        if self.code is None:
            self.code = 137
            self.killed.set()
            self.out.put(None)

    def close(self) -> None:
        self.kill()


class FakeAttachSession(FakeSession):
    """An attach: "detach" ends the output while the container runs on (Docker's detach keys)."""

    def write_stdin(self, data: bytes) -> None:
        if data == b"detach":
            self.out.put(None)
        else:
            super().write_stdin(data)


class FakeNode:
    node = "n1"

    def __init__(self) -> None:
        self.runtime = FakeRuntime()
        self.pod_list = {"solo": (_pod("solo", "c"), [_c("solo", "c", 0, "exited"), _c("solo", "c", 1)]),
                         "duo": (_pod("duo", "a", "b"), [_c("duo", "a", 0, "exited")]),
                         "new": (_pod("new", "c"), [])}
        self.pods = self

    def by_index(self, name: str, value: str) -> list[Obj]:
        return [p for p, _ in self.pod_list.values()]

    def pod_containers(self, namespace: str, name: str) -> tuple[Obj, list[ContainerInfo]] | None:
        return self.pod_list.get(name) if namespace == "default" else None

    def health(self) -> tuple[bool, dict[str, Any]]:
        return True, {}

    summary: Obj | None = None

    def stats_summary(self) -> Obj | None:
        return self.summary


CA = certs.new_ca()
ADMIN = certs.client_cert(CA, "admin", ["system:masters"])
NODE_PAIR = certs.self_signed_server("n1@netplane-node", ["127.0.0.1", "n1"])


def _serve(tmp_path: Any, node: Any, *, cas: Sequence[bytes] = (CA.cert,), read_only_group: str = "readonly") -> NodeAPIServer:
    trusted = nodetls.ClientCAs(None, None)
    if cas:
        bundle = tmp_path / "client-ca.crt"
        bundle.write_bytes(b"".join(cas))
        trusted = nodetls.ClientCAs(None, None, bundle)
    srv = NodeAPIServer(("127.0.0.1", 0), node, tls=nodetls.ServerTLS(NODE_PAIR, trusted),
                        authorizer=auth.Authorizer(read_only_group))
    srv.start()
    return srv


@pytest.fixture
def served(tmp_path: Any) -> Iterator[tuple[FakeNode, NodeAPIServer]]:
    node = FakeNode()
    srv = _serve(tmp_path, node)
    yield node, srv
    srv.stop()


def _target(srv: NodeAPIServer, *, pinned: bytes = NODE_PAIR.cert) -> Target:
    return Target(pod={}, node="n1", address="127.0.0.1", port=srv.port, certificate=pinned)


def _client(srv: NodeAPIServer, creds: certs.Pair | None = ADMIN) -> NodeClient:
    return NodeClient(_target(srv), creds)


def _tls_socket(srv: NodeAPIServer, creds: certs.Pair | None = ADMIN) -> ssl.SSLSocket:
    ctx = nodetls.client_context(NODE_PAIR.cert, creds)
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=5))


def _raw(srv: NodeAPIServer, method: str, path: str, creds: certs.Pair | None = ADMIN) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.sock = _tls_socket(srv, creds)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def test_parse_routes_and_queries() -> None:
    assert parse("GET", "/healthz") == InfoRequest("healthz")
    assert parse("GET", "/pods") == InfoRequest("pods")
    assert parse("GET", "/containerLogs/ns/p/c?follow=true&tailLines=5") == LogsRequest("ns", "p", "c", follow=True, tail=5)
    assert parse("GET", "/containerLogs/ns/p") == LogsRequest("ns", "p", None)
    assert parse("GET", "/containerLogs/ns/p/c?follow=0&previous=1").previous
    assert parse("POST", "/exec/ns/p/c?command=sh&command=-c&command=echo%20hi&timeout=2") == \
        ExecRequest("ns", "p", "c", ("sh", "-c", "echo hi"), 2.0)
    for method, path, code in [("GET", "/nope", 404), ("GET", "/containerLogs/ns", 404),
                               ("GET", "/containerLogs/ns/p/c/x", 404),
                               ("GET", "/containerLogs/ns/p/c?tailLines=x", 400),
                               ("GET", "/containerLogs/ns/p/c?tailLines=-1", 400),
                               ("GET", "/containerLogs/ns/p/c?follow=maybe", 400),
                               ("POST", "/containerLogs/ns/p/c", 405), ("GET", "/exec/ns/p/c?command=ls", 405),
                               ("POST", "/exec/ns/p/c", 400), ("POST", "/exec/ns/p/c?command=ls&timeout=0", 400),
                               ("POST", "/exec/ns/p/c?command=ls&timeout=99999", 400), ("DELETE", "/pods", 405)]:
        with pytest.raises(APIError) as e:
            parse(method, path)
        assert e.value.code == code, (method, path)


def test_parse_listen() -> None:
    assert parse_listen("none") is None
    assert parse_listen(":10250") == ("", 10250)
    assert parse_listen("10.0.0.1:1") == ("10.0.0.1", 1)
    with pytest.raises(ConfigError):
        parse_listen("10.0.0.1")


def test_info_and_error_codes(served: tuple[FakeNode, NodeAPIServer]) -> None:
    node, srv = served
    assert _raw(srv, "GET", "/healthz") == (200, "ok")
    code, body = _raw(srv, "GET", "/pods")
    assert code == 200 and {p["metadata"]["name"] for p in json.loads(body)["items"]} == {"solo", "duo", "new"}
    cases = {
        "/containerLogs/default/ghost/c": (404, 'pod "ghost" in namespace "default" is not running on node n1'),
        "/containerLogs/other/solo/c": (404, 'pod "solo" in namespace "other" is not running on node n1'),
        "/containerLogs/default/solo/x": (404, "container x is not valid for pod solo"),
        "/containerLogs/default/duo": (400, "a container name must be specified for pod duo, choose one of: [a b]"),
        "/containerLogs/default/duo/b": (400, 'container "b" in pod "duo" is waiting to start'),
        "/containerLogs/default/duo/a?previous=true": (400, 'previous terminated container "a" in pod "duo" not found'),
        "/nope": (404, "not found: /nope"),
    }
    for path, (code, line) in cases.items():
        assert _raw(srv, "GET", path) == (code, line + "\n"), path
    code, body = _raw(srv, "POST", "/exec/default/duo/a?command=ls")
    assert (code, body) == (400, 'container "a" in pod "duo" is not running (exited)\n')
    assert _raw(srv, "GET", "/stats/summary") == (404, "node n1 runs no stats collector (netplane agent --stats-listen)\n")
    node.summary = {"node": {"nodeName": "n1"}, "pods": []}
    assert _raw(srv, "GET", "/stats/summary") == (200, json.dumps(node.summary))
    assert _raw(srv, "POST", "/stats/summary")[0] == 405


def test_logs_pick_the_instance_and_pass_the_query(served: tuple[FakeNode, NodeAPIServer]) -> None:
    node, srv = served
    client = _client(srv)
    assert b"".join(client.logs("default", "solo", "c", tail=1)) == b"one\ntwo\n"
    assert b"".join(client.logs("default", "solo", "c", previous=True)) == b"one\ntwo\n"
    assert _raw(srv, "GET", "/containerLogs/default/solo") == (200, "one\ntwo\n")  # the only container
    assert node.runtime.logs_asked == [("solo-c-1", 1, False), ("solo-c-0", None, False), ("solo-c-1", None, False)]
    with pytest.raises(NotFoundError, match="container x is not valid for pod solo"):
        client.logs("default", "solo", "x")
    with pytest.raises(UserError, match="a container name must be specified"):
        client.logs("default", "duo", "")  # an empty segment: the path has no container


def test_follow_streams_as_it_comes_and_notices_a_client_that_left(served: tuple[FakeNode, NodeAPIServer]) -> None:
    node, srv = served
    more, closed = threading.Event(), threading.Event()

    def stream() -> Iterator[bytes]:
        try:
            yield b"first\n"
            more.wait(10)
            yield b"second\n"
            threading.Event().wait(10)  # quiet; never ends by itself
        finally:
            closed.set()

    node.runtime.streams["solo-c-1"] = stream()
    chunks = _client(srv).logs("default", "solo", "c", follow=True)
    assert next(chunks) == b"first\n"  # before the stream has ended
    chunks.close()  # the client leaves while the log is quiet
    time.sleep(1.5)  # the server looks at a quiet client's socket every second
    more.set()  # the next output finds nobody: the runtime's stream is closed
    assert closed.wait(5), "the runtime's log stream was not closed after its client left"

    node.runtime.streams["solo-c-1"] = iter([b"a\n", b"b\n"])
    assert b"".join(_client(srv).logs("default", "solo", "c", follow=True)) == b"a\nb\n"  # ends with the log

    def broken() -> Iterator[bytes]:
        yield b"a\n"
        raise NetplaneError("runtime went away")

    node.runtime.streams["solo-c-1"] = broken()
    with pytest.raises(NetplaneError, match="broke off"):
        b"".join(_client(srv).logs("default", "solo", "c", follow=True))


def test_exec_reply(served: tuple[FakeNode, NodeAPIServer]) -> None:
    _, srv = served
    r = _client(srv).exec("default", "solo", "c", ["sh", "-c", "echo hi; exit 3"], timeout=5)
    assert (r.exit_code, r.output, r.timed_out) == (3, "solo-c-1: sh -c echo hi; exit 3\n", False)
    r = _client(srv).exec("default", "solo", "c", ["sleep"], timeout=0.2)
    assert (r.exit_code, r.output, r.timed_out) == (-1, "partial", True)


def test_client_errors_are_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    client = NodeClient(Target(pod={}, node="n9", address="127.0.0.1", port=port, certificate=NODE_PAIR.cert), ADMIN)
    with pytest.raises(NetplaneError, match=r"cannot reach node n9's agent at 127.0.0.1:\d+: Connection refused"):
        client.exec("default", "p", "c", ["true"], timeout=1)
    assert container_of(_pod("p", "only"), None) == "only"
    with pytest.raises(UserError, match=r"choose one of: \[a b\]"):
        container_of(_pod("p", "a", "b"), None)
    with pytest.raises(UserError, match="container z is not valid for pod p"):
        container_of(_pod("p", "a"), "z")


def _upgraded(srv: NodeAPIServer, *, pod: str = "solo", stdin: bool = True, tty: bool = False
              ) -> tuple[ssl.SSLSocket, Any, bytes]:
    s = _tls_socket(srv)
    s.sendall(execstream.upgrade_request("x", "default", pod, "c", ["cat"], stdin=stdin, tty=tty))
    f = s.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += f.read(1)
    return s, f, head


def test_streaming_exec_relays_stdin_output_resizes_and_the_exit_code(served: tuple[FakeNode, NodeAPIServer]) -> None:
    node, srv = served
    s, f, head = _upgraded(srv)
    try:
        assert head.startswith(b"HTTP/1.1 101 ") and f"Upgrade: {execstream.UPGRADE}".encode() in head, head
        assert node.runtime.session_asked == ("solo-c-1", ["cat"], True, False)
        s.sendall(execstream.frame(execstream.STDIN, b"hello"))
        assert execstream.read_frame(f) == (execstream.STDOUT, b"hello")
        s.sendall(execstream.frame(execstream.STDIN, b"err"))
        assert execstream.read_frame(f) == (execstream.STDERR, b"err")
        s.sendall(execstream.frame(execstream.RESIZE, b'{"Width": 120, "Height": 40}'))
        s.sendall(execstream.frame(execstream.RESIZE, b"not json"))  # ignored
        s.sendall(execstream.frame(execstream.CLOSE))
        assert execstream.read_frame(f) == (execstream.STATUS, b'{"exitCode": 7}')
        assert execstream.read_frame(f) is None, "the node closes after the status"
        assert node.runtime.session.sizes == [(120, 40)]
    finally:
        f.close()
        s.close()


def test_streaming_exec_kills_the_command_when_the_client_goes(served: tuple[FakeNode, NodeAPIServer]) -> None:
    node, srv = served
    s, f, head = _upgraded(srv)
    assert head.startswith(b"HTTP/1.1 101 ")
    f.close()
    s.close()
    assert node.runtime.session.killed.wait(5), "a client that left has its command killed"


def test_attach_is_the_same_stream_onto_the_main_process(served: tuple[FakeNode, NodeAPIServer]) -> None:
    node, srv = served
    assert parse("POST", "/attach/ns/p/c?stdin=true") == AttachRequest("ns", "p", "c", stdin=True)
    s = _tls_socket(srv)
    s.sendall(execstream.attach_request("x", "default", "solo", "c", stdin=True))
    f = s.makefile("rb")
    try:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += f.read(1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert node.runtime.session_asked == ("solo-c-1", ["<attach>"], True, False)
        s.sendall(execstream.frame(execstream.STDIN, b"hello"))
        assert execstream.read_frame(f) == (execstream.STDOUT, b"hello")
    finally:
        f.close()
        s.close()
    assert node.runtime.session.killed.wait(5), "a client that left is detached"
    # the container ended: its exit code; the output ended while it runs on: an end without one
    for typed, end in ((execstream.frame(execstream.CLOSE), b'{"exitCode": 7}'),
                       (execstream.frame(execstream.STDIN, b"detach"), b"{}")):
        with _tls_socket(srv) as s2:
            s2.sendall(execstream.attach_request("x", "default", "solo", "c", stdin=True))
            f2 = s2.makefile("rb")
            while f2.readline() not in (b"\r\n", b""):
                pass
            s2.sendall(typed)
            assert execstream.read_frame(f2) == (execstream.STATUS, end)
            f2.close()
    code, text = _raw(srv, "POST", "/attach/default/solo/c?stdin=true")
    assert code == 400 and "attach needs the upgrade" in text, text
    with _tls_socket(srv) as s2:  # a container that has not started: refused before any upgrade
        s2.sendall(execstream.attach_request("x", "default", "new", "c", stdin=False))
        head = b""
        while chunk := s2.recv(4096):
            head += chunk
    assert head.startswith(b"HTTP/1.1 400 ") and b"is waiting to start" in head, head
    viewer = certs.client_cert(CA, "viewer", ["readonly"])
    code, text = _raw(srv, "POST", "/attach/default/solo/c", viewer)
    assert code == 403 and text.strip() == 'Forbidden: user "viewer" may not attach on node n1', text


def test_streaming_exec_refusals_come_before_the_upgrade(served: tuple[FakeNode, NodeAPIServer]) -> None:
    _, srv = served
    code, text = _raw(srv, "POST", "/exec/default/solo/c?command=cat&stdin=true")
    assert code == 400 and "streaming exec" in text, text  # stdin without the upgrade
    sock, f, head = _upgraded(srv, pod="nope", stdin=False)
    f.close()
    sock.close()
    assert head.startswith(b"HTTP/1.1 404 "), head  # a pod this node does not run: no upgrade


# --------------------------------------------------------------------------- TLS and who may ask
def test_who_may_ask(served: tuple[FakeNode, NodeAPIServer]) -> None:
    """No certificate: 401 (healthz answers anyone); the read-only group reads but may not exec;
    a certificate no trusted CA signed does not get through the handshake."""
    _, srv = served
    assert _raw(srv, "GET", "/healthz", None) == (200, "ok")
    for method, path in [("GET", "/pods"), ("GET", "/containerLogs/default/solo/c"),
                         ("POST", "/exec/default/solo/c?command=ls")]:
        code, text = _raw(srv, method, path, None)
        assert code == 401 and text.startswith("Unauthorized: a client certificate signed by a client CA"), text
    viewer = certs.client_cert(CA, "viewer", ["readonly"])
    assert _raw(srv, "GET", "/pods", viewer)[0] == 200
    assert b"".join(_client(srv, viewer).logs("default", "solo", "c")) == b"one\ntwo\n"
    code, text = _raw(srv, "POST", "/exec/default/solo/c?command=ls", viewer)
    assert code == 403 and text.strip() == 'Forbidden: user "viewer" may not exec on node n1', text
    with pytest.raises(NetplaneError, match="node n1: Forbidden"):
        _client(srv, viewer).exec("default", "solo", "c", ["ls"], timeout=5)
    stranger = certs.client_cert(certs.new_ca("elsewhere"), "admin", ["system:masters"])
    with pytest.raises(NetplaneError, match="node n1's agent refused our client certificate"):
        _client(srv, stranger).exec("default", "solo", "c", ["ls"], timeout=5)
    assert _raw(srv, "GET", "/healthz", None) == (200, "ok"), "a failed handshake harms no one else"


def test_a_node_presenting_another_certificate_is_refused(served: tuple[FakeNode, NodeAPIServer]) -> None:
    """The client trusts exactly the certificate the Node announces: an agent (or anyone at its
    address) with another one gets no request, and the error says so."""
    _, srv = served
    impostor_pin = certs.self_signed_server("n1@netplane-node", ["127.0.0.1", "n1"]).cert
    client = NodeClient(_target(srv, pinned=impostor_pin), ADMIN)
    with pytest.raises(NetplaneError, match="presented a certificate other than the one its Node announces"):
        client.exec("default", "solo", "c", ["ls"], timeout=5)
    with pytest.raises(NetplaneError, match="presented a certificate other than"):
        client.exec_stream("default", "solo", "c", ["cat"], stdin=True, tty=False)


def test_a_node_that_knows_no_client_ca_says_so(tmp_path: Any) -> None:
    srv = _serve(tmp_path, FakeNode(), cas=())
    try:
        code, text = _raw(srv, "GET", "/pods", ADMIN)  # not asked for a certificate: anonymous
        assert code == 401 and "knows no client CA yet" in text, text
    finally:
        srv.stop()


def test_node_certificate_round_trip_and_reuse(tmp_path: Any) -> None:
    """What the agent announces is what clients pin; a restart keeps the certificate (pins stay
    valid), a new address makes a new one; a malformed annotation is no certificate."""
    a = nodetls.serving_pair(tmp_path, "n1", "10.0.0.1")
    node = {"metadata": {"name": "n1", "annotations": {nodetls.CERT_ANNOTATION: nodetls.announced(a)}}}
    assert nodetls.node_certificate(node) == a.cert.replace(b"\r", b"")
    assert nodetls.serving_pair(tmp_path, "n1", "10.0.0.1") == a
    assert (tmp_path / "node-api.key").stat().st_mode & 0o777 == 0o600
    b = nodetls.serving_pair(tmp_path, "n1", "10.0.0.2")
    assert b != a and "10.0.0.2" in certs.sans_of(b.cert)
    assert nodetls.node_certificate({"metadata": {"annotations": {nodetls.CERT_ANNOTATION: "bm90IGEgY2VydA=="}}}) is None
    with pytest.raises(NetplaneError, match="node n1 announces no node API certificate"):
        nodetls.pinned({"metadata": {}}, "n1")


def test_the_read_only_group_is_the_one_configured(tmp_path: Any) -> None:
    srv = _serve(tmp_path, FakeNode(), read_only_group="viewers")
    try:
        code, _ = _raw(srv, "POST", "/exec/default/solo/c?command=ls", certs.client_cert(CA, "v", ["viewers"]))
        assert code == 403
        code, _ = _raw(srv, "POST", "/exec/default/solo/c?command=ls", certs.client_cert(CA, "r", ["readonly"]))
        assert code == 200, "readonly is an ordinary group here"
    finally:
        srv.stop()
