"""`pods/portforward`: kubectl's SPDY port-forward, served over its WebSocket tunnel.

kubectl (1.31 and later) asks for a WebSocket with subprotocol `SPDY/3.1+portforward.k8s.io` and
speaks SPDY inside it (`spdy`). For every connection made to its local port it opens two SPDY
streams with the same `requestID` header, and both name the pod's `port`:
  * `streamType: error`, which kubectl half-closes at once and reads to its end: empty when
    all went well, else the reason, which kubectl prints;
  * `streamType: data`, the connection's bytes both ways. kubectl half-closes it (FIN) when
    its local peer stops sending, and resets it after the remote side has finished.
Once both streams of a request are there, the pair is relayed onto the node agent's
port-forward (`orchestrator.node.execstream`: the node connects to `localhost:<port>` inside
the pod's network namespace, as kubelet's runtimes do) by `forward` in a task of its own. That
relay carries a half-close each way. The agent's refusal (no such pod on the node, nothing
listening) goes back on the error stream, in kubelet's words.

As in kube, the requests are authorized as `create` on pods/portforward; stream pairing,
PING echo and GOAWAY follow spdystream's server side. kube's plain SPDY upgrade (kubectl's
fallback, and kubectl before 1.31) is refused with 400. The Python client's `portforward`
speaks kubelet's channel protocol instead (`stream.channel_portforward`). Forwarded connections are not counted against a
limit: each is one relay task and one node connection, for as long as kubectl keeps it open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from orchestrator.apiserver import spdy
from orchestrator.apiserver.status import APIError
from orchestrator.node import execstream

log = logging.getLogger(__name__)

TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
READ_SIZE = 32 * 1024
PAIR_TIMEOUT = 30.0  # kubelet's stream creation timeout: a request whose second stream never comes

Send = Callable[[bytes], Awaitable[None]]
Dial = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass
class _Pair:
    request_id: str
    port: int
    error: int = 0  # stream ids
    data: int = 0
    client_done: asyncio.Event = field(default_factory=asyncio.Event)  # the data stream's FIN or reset
    pending: list[bytes] = field(default_factory=list)  # the client's bytes before the node answered
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    reset: bool = False  # the client reset the data stream
    data_closed: bool = False  # nothing more goes out on the data stream (FIN sent, or reset)


class Session:
    """One kubectl port-forward connection: SPDY bytes in through `feed`, out through `send`;
    `dial(port)` opens the node agent's port-forward for one request."""

    def __init__(self, send: Send, dial: Dial, describe: str) -> None:
        self._send_raw = send
        self.dial = dial
        self.describe = describe  # "pod web-1" in messages
        self.parser = spdy.Parser()
        self.writer = spdy.Writer()
        self._lock = asyncio.Lock()
        self.pairs: dict[str, _Pair] = {}
        self.by_stream: dict[int, _Pair] = {}
        self.last_stream = 0
        self.closed = False
        self._expiring: set[asyncio.Future[None]] = set()  # resets of expired requests, being sent

    async def send(self, make: Callable[[spdy.Writer], bytes]) -> None:
        """Encode and send under one lock: header blocks share a compressor, so frames must
        leave in the order they were made."""
        async with self._lock:
            if self.closed:
                return
            try:
                await self._send_raw(make(self.writer))
            except (ConnectionError, RuntimeError) as e:  # the WebSocket is gone
                log.debug("port-forward to %s: sending: %s", self.describe, e)
                self.closed = True

    async def feed(self, data: bytes) -> None:
        for frame in self.parser.feed(data):
            await self._on(frame)

    async def _on(self, f: spdy.Frame) -> None:
        if isinstance(f, spdy.Data):
            pair = self.by_stream.get(f.stream_id)
            if pair is None or f.stream_id != pair.data:
                return  # the error stream's FIN, or a stream already gone
            if f.data:
                if pair.writer is None:
                    pair.pending.append(f.data)
                else:
                    pair.writer.write(execstream.frame(execstream.STDIN, f.data))
                    await pair.writer.drain()
            if f.fin:
                pair.client_done.set()
                if pair.writer is not None:
                    pair.writer.write(execstream.frame(execstream.CLOSE))
            return
        if f.type == spdy.SYN_STREAM:
            await self._syn_stream(f)
        elif f.type == spdy.RST_STREAM:
            pair = self.by_stream.get(f.stream_id)
            if pair is not None and f.stream_id == pair.data:
                pair.reset = pair.data_closed = True
                pair.client_done.set()
                if pair.writer is not None:
                    pair.writer.close()
        elif f.type == spdy.PING:
            await self.send(lambda w: w.ping(f.ping_id))
        elif f.type == spdy.GOAWAY:
            await self.close()

    async def _syn_stream(self, f: spdy.Control) -> None:
        sid = f.stream_id
        self.last_stream = max(self.last_stream, sid)
        h = {k: v[0] for k, v in f.headers.items() if v}
        stype, port_text, rid = h.get("streamtype"), h.get("port", ""), h.get("requestid")
        port = int(port_text) if port_text.isdigit() else 0
        if stype not in ("error", "data") or not 0 < port < 65536 or rid is None:
            log.info("port-forward to %s: refusing stream %d (streamType %r, port %r, requestID %r)",
                     self.describe, sid, stype, port_text, rid)
            await self.send(lambda w: w.rst_stream(sid, spdy.PROTOCOL_ERROR))
            return
        pair = self.pairs.get(rid)
        if pair is None:
            pair = self.pairs[rid] = _Pair(rid, port)
            asyncio.get_running_loop().call_later(PAIR_TIMEOUT, self._expire, rid)
        if getattr(pair, stype) or pair.port != port:
            await self.send(lambda w: w.rst_stream(sid, spdy.PROTOCOL_ERROR))
            return
        setattr(pair, stype, sid)
        self.by_stream[sid] = pair
        await self.send(lambda w: w.syn_reply(sid))
        if stype == "data" and f.fin:
            pair.client_done.set()
        if pair.error and pair.data:
            pair.task = asyncio.create_task(self._forward(pair))

    def _expire(self, rid: str) -> None:
        pair = self.pairs.get(rid)
        if pair is not None and pair.task is None:
            log.info("port-forward to %s: request %s got one stream of two in %.0f s", self.describe, rid, PAIR_TIMEOUT)
            self._forget(pair)
            sids = [sid for sid in (pair.error, pair.data) if sid]
            fut = asyncio.ensure_future(self.send(lambda w: b"".join(w.rst_stream(sid, spdy.CANCEL) for sid in sids)))
            self._expiring.add(fut)
            fut.add_done_callback(self._expiring.discard)

    def _forget(self, pair: _Pair) -> None:
        self.pairs.pop(pair.request_id, None)
        for sid in (pair.error, pair.data):
            self.by_stream.pop(sid, None)

    async def _forward(self, pair: _Pair) -> None:
        message = ""
        try:
            try:
                reader, pair.writer = await self.dial(pair.port)
            except APIError as e:
                message = f"error forwarding port {pair.port} to {self.describe}: {e}"
                return
            for data in pair.pending:  # what the client sent before the node answered
                pair.writer.write(execstream.frame(execstream.STDIN, data))
            pair.pending.clear()
            if pair.client_done.is_set():  # and its FIN
                pair.writer.write(execstream.frame(execstream.CLOSE))
            await self._from_node(pair, reader)
        except (OSError, asyncio.IncompleteReadError, execstream.FrameError) as e:
            if not pair.reset:
                message = f"error forwarding port {pair.port} to {self.describe}: the node's stream broke off: {e}"
        finally:
            if pair.writer is not None:
                pair.writer.close()
            if message:
                log.info("port-forward: %s", message)
            if not pair.data_closed:
                await self.send(lambda w: w.data(pair.data, b"", fin=True))
            await self.send(lambda w: w.data(pair.error, message.encode(), fin=True))
            self._forget(pair)

    async def _from_node(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        """The pod's bytes onto the data stream until its side closed and the client's is done
        (or the client reset the stream)."""
        while True:
            raw = await reader.readexactly(execstream.HEADER_SIZE)
            channel, length = execstream.header(raw)
            data = await reader.readexactly(length) if length else b""
            if channel == execstream.STDOUT and data and not pair.data_closed:
                await self.send(lambda w, d=data: w.data(pair.data, d))  # type: ignore[misc]
            elif channel == execstream.CLOSE:
                break
        if not pair.data_closed:
            await self.send(lambda w: w.data(pair.data, b"", fin=True))
            pair.data_closed = True
        await pair.client_done.wait()

    async def close(self) -> None:
        """The connection is ending: every relay stops."""
        if self.closed:
            return
        for pair in list(self.pairs.values()):
            if pair.task is not None:
                pair.task.cancel()
            if pair.writer is not None:
                pair.writer.close()
        with contextlib.suppress(Exception):
            await self.send(lambda w: w.goaway(self.last_stream))
        self.closed = True
