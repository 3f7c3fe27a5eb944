"""SPDY/3.1 framing (`orchestrator.apiserver.spdy`) and the port-forward session over it
(`orchestrator.apiserver.portforward`): the dictionary is the spec's, frames survive any split
of the byte stream and the shared header compression, bad input is a ProtocolError; a
session pairs a request's streams, relays both ways with half-closes (bytes sent before the
node answered included), echoes pings, refuses malformed streams and reports a node's refusal on
the error stream in kubelet's words. kubectl itself drives the same code in the lab
(tests/lab/test_kubectl_lab.py); the SPDY client here is our encoder, for the edge cases."""

from __future__ import annotations

import asyncio
import hashlib
import struct

import pytest

from orchestrator.apiserver import portforward, spdy
from orchestrator.apiserver.status import APIError
from orchestrator.node import execstream


def test_dictionary_is_the_specs() -> None:
    # SHA-256 of the 1,423 bytes in SPDY/3 section 2.6.10.1 (as Go's and spdystream's framers carry them)
    assert len(spdy.DICTIONARY) == 1423
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == \
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_frames_round_trip_in_any_split() -> None:
    w = spdy.Writer()
    stream = b"".join([
        w.syn_stream(1, {"streamType": ["error"], "port": ["80"], "requestID": ["0"]}),
        w.syn_stream(3, {"streamType": ["data"], "port": ["80"], "requestID": ["0"]}),  # shares the compressor
        w.data(3, b"GET / HTTP/1.0\r\n\r\n"), w.data(1, b"", fin=True), w.ping(7), w.rst_stream(3, spdy.CANCEL),
        w.syn_reply(5, {"a": ["1", "2"]}, fin=True), w.goaway(5),
    ])
    for size in (1, 3, 8, 1000):
        p = spdy.Parser()
        frames = [f for at in range(0, len(stream), size) for f in p.feed(stream[at:at + size])]
        assert frames == [
            spdy.Control(spdy.SYN_STREAM, 0, 1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}),
            spdy.Control(spdy.SYN_STREAM, 0, 3, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}),
            spdy.Data(3, b"GET / HTTP/1.0\r\n\r\n", False), spdy.Data(1, b"", True),
            spdy.Control(spdy.PING, 0, ping_id=7), spdy.Control(spdy.RST_STREAM, 0, 3, status=spdy.CANCEL),
            spdy.Control(spdy.SYN_REPLY, spdy.FLAG_FIN, 5, {"a": ["1", "2"]}),
            spdy.Control(spdy.GOAWAY, 0, 5, status=0),
        ], size


def test_bad_input_is_a_protocol_error() -> None:
    with pytest.raises(spdy.ProtocolError, match="SPDY version 2"):
        spdy.Parser().feed(struct.pack(">HHI", 0x8002, spdy.PING, 4) + b"\0\0\0\1")
    with pytest.raises(spdy.ProtocolError, match="does not inflate"):
        spdy.Parser().feed(struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, 14) + b"\0" * 10 + b"junk")
    with pytest.raises(spdy.ProtocolError, match="too short"):
        spdy.Parser().feed(struct.pack(">HHI", 0x8003, spdy.RST_STREAM, 2) + b"\0\0")


class Node:
    """What `dial` reaches: the node agent's side of one port-forward, an echo that upper-cases,
    in execstream's frames over a real loopback connection."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.client_closed = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            channel, length = execstream.header(await reader.readexactly(execstream.HEADER_SIZE))
            data = await reader.readexactly(length) if length else b""
            if channel == execstream.CLOSE:
                self.client_closed.set()
                writer.write(execstream.frame(execstream.CLOSE))  # the "pod" closes after the client
                await writer.drain()
                writer.close()
                return
            self.got.append(data)
            writer.write(execstream.frame(execstream.STDOUT, data.upper()))
            await writer.drain()


def test_session_relays_a_request_both_ways() -> None:
    async def run() -> None:
        node = Node()
        server = await asyncio.start_server(node.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        out = spdy.Parser()
        got: list[spdy.Frame] = []

        async def send(data: bytes) -> None:
            got.extend(out.feed(data))

        async def dial(p: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            if p != 80:
                raise APIError(500, f"connect to localhost:{p} in pod web's network namespace: Connection refused")
            await asyncio.sleep(0.05)  # the client's bytes arrive before the node answers
            return await asyncio.open_connection("127.0.0.1", port)

        s = portforward.Session(send, dial, "pod web")
        w = spdy.Writer()
        await s.feed(w.syn_stream(1, {"streamType": ["error"], "port": ["80"], "requestID": ["0"]})
                     + w.data(1, b"", fin=True)
                     + w.syn_stream(3, {"streamType": ["data"], "port": ["80"], "requestID": ["0"]})
                     + w.data(3, b"hello") + w.ping(1))
        await s.feed(w.data(3, b" world", fin=True))
        for _ in range(100):
            if any(isinstance(f, spdy.Data) and f.stream_id == 1 and f.fin for f in got):
                break
            await asyncio.sleep(0.02)
        assert node.got == [b"hello", b" world"] and node.client_closed.is_set()
        replies = [f.stream_id for f in got if isinstance(f, spdy.Control) and f.type == spdy.SYN_REPLY]
        assert replies == [1, 3]
        assert spdy.Control(spdy.PING, 0, ping_id=1) in got
        data = b"".join(f.data for f in got if isinstance(f, spdy.Data) and f.stream_id == 3)
        assert data == b"HELLO WORLD"
        assert [f for f in got if isinstance(f, spdy.Data) and f.fin] == [spdy.Data(3, b"", True), spdy.Data(1, b"", True)]

        # a port nothing listens on: the node's refusal on the error stream, the data stream ended
        got.clear()
        await s.feed(w.syn_stream(5, {"streamType": ["error"], "port": ["81"], "requestID": ["1"]})
                     + w.syn_stream(7, {"streamType": ["data"], "port": ["81"], "requestID": ["1"]}))
        for _ in range(100):
            if any(isinstance(f, spdy.Data) and f.stream_id == 5 for f in got):
                break
            await asyncio.sleep(0.02)
        err = [f for f in got if isinstance(f, spdy.Data) and f.stream_id == 5]
        assert err == [spdy.Data(5, b"error forwarding port 81 to pod web: connect to localhost:81 in pod web's "
                                    b"network namespace: Connection refused", True)]
        assert spdy.Data(7, b"", True) in got

        # malformed streams are reset, not served
        got.clear()
        await s.feed(w.syn_stream(9, {"streamType": ["data"], "port": ["http"], "requestID": ["2"]})
                     + w.syn_stream(11, {"streamType": ["stdin"], "port": ["80"], "requestID": ["3"]}))
        assert got == [spdy.Control(spdy.RST_STREAM, 0, 9, status=spdy.PROTOCOL_ERROR),
                       spdy.Control(spdy.RST_STREAM, 0, 11, status=spdy.PROTOCOL_ERROR)]
        await s.close()
        assert isinstance(got[-1], spdy.Control) and got[-1].type == spdy.GOAWAY
        server.close()
        await server.wait_closed()

    asyncio.run(run())
