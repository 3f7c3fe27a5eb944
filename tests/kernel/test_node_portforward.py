"""The node API's port-forward against the kernel: the agent connects to localhost:PORT inside
the pod's own network namespace (a namespace this test makes, with a server bound to its
127.0.0.1, which the root namespace cannot reach), relays bytes both ways in frames, passes
half-closes on and ends the connection once both sides have closed, and refuses before the upgrade when nothing listens, the pod is not here or
its sandbox has no namespace yet; a read-only user may not port-forward.

The node API server and client are the real ones over TLS; only the node runtime under them is
the unit tests' stand-in, told which namespace the pod has."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netplane import netns
from netplane.errors import NetplaneError, NotFoundError, UserError
from orchestrator.apiserver import certs
from orchestrator.node import execstream
from orchestrator.node.server import NodeAPIServer
from tests.unit.test_node_api import CA, FakeNode, _client, _serve


class PodNode(FakeNode):
    def __init__(self, ns: str) -> None:
        super().__init__()
        self.ns = ns

    def pod_netns(self, namespace: str, name: str) -> str | None:
        if namespace != "default" or name not in self.pod_list:
            return None
        return f"/run/netns/{self.ns}" if name == "solo" else ""


def echo_until_eof(ns: str) -> tuple[int, threading.Thread]:
    """A server on 127.0.0.1 inside `ns`: reads a connection to its end, answers it upper-cased
    with its length, closes. Its port and thread."""
    with netns.inside(ns):
        ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen()

    def serve() -> None:
        with ls:
            for _ in range(2):
                c, _ = ls.accept()
                with c:
                    data = b""
                    while chunk := c.recv(65536):
                        data += chunk
                    c.sendall(data.upper() + b" (%d bytes)" % len(data))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return ls.getsockname()[1], t


@pytest.fixture
def pod_ns(make_netns: Callable[[str], str]) -> str:
    return make_netns("pf")


@pytest.fixture
def served(pod_ns: str, tmp_path: Path) -> Iterator[NodeAPIServer]:
    srv = _serve(tmp_path, PodNode(pod_ns))
    yield srv
    srv.stop()


def forward(srv: NodeAPIServer, port: int, payload: bytes, creds: certs.Pair | None = None) -> bytes:
    """Send `payload` through a port-forward, half-close, and read to the pod's end."""
    sock, reader = (_client(srv, creds) if creds else _client(srv)).port_forward("default", "solo", port)
    try:
        for at in range(0, len(payload), 100_000):
            sock.sendall(execstream.frame(execstream.STDIN, payload[at:at + 100_000]))
        sock.sendall(execstream.frame(execstream.CLOSE))
        got = b""
        sock.settimeout(10)
        while (frame := execstream.read_frame(reader)) is not None:
            channel, data = frame
            if channel == execstream.CLOSE:
                break
            assert channel == execstream.STDOUT
            got += data
        # both sides have closed theirs: the node ends the connection (no thread or socket left over)
        assert execstream.read_frame(reader) is None
        return got
    finally:
        sock.close()


def test_port_forward_reaches_the_pods_localhost(served: NodeAPIServer, pod_ns: str) -> None:
    port, server = echo_until_eof(pod_ns)
    with socket.socket() as s, pytest.raises(OSError):  # not the root namespace's localhost
        s.settimeout(1)
        s.connect(("127.0.0.1", port))
    assert forward(served, port, b"hello") == b"HELLO (5 bytes)"
    big = bytes(range(97, 123)) * 20_000  # 520,000 bytes: many frames and TCP segments each way
    assert forward(served, port, big) == big.upper() + b" (520000 bytes)"
    server.join(5)


def test_port_forward_refusals_come_before_the_upgrade(served: NodeAPIServer, pod_ns: str) -> None:
    with netns.inside(pod_ns), socket.socket() as s:  # a free port in the pod: nothing listens
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(NetplaneError, match=rf"connect to localhost:{free} in pod solo's network namespace: "
                                            "Connection refused"):
        _client(served).port_forward("default", "solo", free)
    with pytest.raises(NotFoundError, match='pod "gone" in namespace "default" is not running on node n1'):
        _client(served).port_forward("default", "gone", 80)
    with pytest.raises(UserError, match='pod "duo" has no network namespace yet'):
        _client(served).port_forward("default", "duo", 80)
    viewer = certs.client_cert(CA, "viewer", ["readonly"])
    with pytest.raises(NetplaneError, match='Forbidden: user "viewer" may not port-forward on node n1'):
        _client(served, viewer).port_forward("default", "solo", 80)
