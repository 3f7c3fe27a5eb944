"""The streaming responses: watches and `pods/log`.

**Watch** (`?watch=1`): newline-delimited JSON `WatchEvent`s, `{"type": ..., "object": ...}`,
over a chunked 200 response, as kube-apiserver frames them for JSON clients.

* `resourceVersion` unset or "0": synthetic ADDED events for what exists now, then changes;
  R: every change after etcd revision R (a compacted R: 410 Expired before streaming, or an
  ERROR event carrying that Status if etcd compacts it while the watch starts).
* `allowWatchBookmarks=true`: a BOOKMARK every `bookmark_interval` seconds, carrying a
  revision up to which everything has been sent; `sendInitialEvents=true` (the watch-list
  protocol): the synthetic ADDED events, then a BOOKMARK annotated
  `k8s.io/initial-events-end: "true"`.
* `timeoutSeconds`: the stream ends after that long (default: a random 30-60 minutes, as
  kube-apiserver's min-request-timeout spreads them), and the client watches again.

**pods/log**: proxied to the agent of the pod's node, at its InternalIP and the port it
announces in `status.daemonEndpoints.kubeletEndpoint.Port` (`orchestrator.node.server`), over
TLS that trusts exactly the certificate the Node announces and presents this server's kubelet
client certificate (`NodeDialer`, `orchestrator.node.nodetls`):
`/containerLogs/{namespace}/{pod}/{container}` with `follow`, `tailLines`, `previous`, and the
body streamed through as it comes.

**pods/attach** is relayed the same way onto the node agent's attach (the container's main
process; its end is always Success, as kubelet's attach ends).

**pods/exec**: the WebSocket form kubectl (1.30 and later) and the Python client's `stream`
speak (`v5.channel.k8s.io` or `v4.channel.k8s.io`: binary messages whose first byte is the
channel: 0 stdin, 1 stdout, 2 stderr, 3 the closing Status, 4 resize, 255 stdin closed in v5),
relayed onto the node agent's streaming exec (`orchestrator.node.execstream`: the same channel
numbers in our own framing) while the command runs, with a TTY and stdin when asked. The end
is a Status on channel 3: Success, or Failure with reason `NonZeroExitCode` and the exit code
as kubelet reports it (kubectl exits with it). A request that is not a WebSocket upgrade
(SPDY: older kubectl's, and kubectl's fallback) is refused with a 400 saying what is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import ssl
import struct
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from netplane.store.etcd import Compacted
from orchestrator.apiserver import certs
from orchestrator.apiserver.status import APIError, bad_request, not_found, too_old
from orchestrator.apiserver.watchcache import Change, DirectWatch, Watcher
from orchestrator.node import execstream, nodetls
from orchestrator.objects import meta
from orchestrator.objects import node as nodes
from orchestrator.objects.meta import NODE, POD

if TYPE_CHECKING:
    from orchestrator.apiserver.handlers import Context, Target

log = logging.getLogger(__name__)

Obj = dict[str, Any]
LOG_PARAMS = ("follow", "tailLines", "previous", "timestamps", "sinceSeconds", "limitBytes")
NODE_CONNECT_TIMEOUT = 5.0


def _event(typ: str, obj_json: bytes) -> bytes:
    return b'{"type":"' + typ.encode() + b'","object":' + obj_json + b"}\n"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def watch(request: web.Request, ctx: Context, t: Target) -> web.StreamResponse:
    from orchestrator.apiserver.handlers import _int, _true, selectors, table_of, wants_table

    q = request.query
    kind = t.kind
    labels, fields = selectors(kind, q)
    if t.name is not None:  # /api/v1/watch/namespaces/ns/pods/name
        from orchestrator.apiserver import fields as fieldsel

        fields = fieldsel.FieldSelector(kind.kind, (*fields.terms, fieldsel.Term("metadata.name", t.name, True)))
    rv = q.get("resourceVersion") or ""
    if rv and not rv.isdigit():
        raise bad_request(f'Invalid value: "{rv}": resourceVersion must be a number')
    send_initial = _true(q.get("sendInitialEvents"))
    after: int | None = None if send_initial or rv in ("", "0") else int(rv)
    bookmarks = _true(q.get("allowWatchBookmarks"))
    timeout = _int(q, "timeoutSeconds")
    if timeout is None or timeout <= 0:
        timeout = random.randint(1800, 3600)
    table = wants_table(request)
    assert ctx.caches is not None
    cache = ctx.caches.get(kind)
    if not await cache.wait_ready(30.0):
        raise APIError(503, f"the watch cache of {kind.resource} is not ready yet; try again")

    def match(o: Obj) -> bool:
        return (labels is None or labels.matches(meta.labels(o))) and fields.matches(o)

    w = Watcher(ctx.objects.prefix(kind, t.namespace), match)
    if after is None:  # it starts with every current object: decoded off the loop first
        await cache.decode_pending(w.prefix)
    loop = asyncio.get_running_loop()
    direct: DirectWatch | None = None
    if not cache.subscribe(w, after):
        assert after is not None
        direct = DirectWatch(ctx.objects, kind, loop, w, after)
        cache.direct_watches += 1
        try:
            await ctx.run(direct.check)
        except Compacted as e:
            raise too_old(after) from e
        direct.start()

    headers_sent = False

    def encode(typ: str, c: Change, use_prev: bool) -> bytes:
        nonlocal headers_sent
        if table:  # kubectl get -w: a one-row Table per event, column definitions in the first
            prev = c.prev if use_prev else None
            obj = meta_at(prev, c.revision) if prev is not None else c.object
            assert obj is not None  # a watcher's event has its object (Watcher.classify)
            tbl = table_of(kind, [obj], {"resourceVersion": str(c.revision)},
                           include_object=q.get("includeObject"), no_headers=headers_sent)
            headers_sent = True
            return _event(typ, _dumps(tbl))
        return _event(typ, c.prev_json() if use_prev else c.object_json())

    def bookmark(revision: int, annotations: dict[str, str] | None = None) -> bytes:
        md: Obj = {"resourceVersion": str(revision)}
        if annotations:
            md["annotations"] = annotations
        return _event("BOOKMARK", _dumps({"kind": kind.kind, "apiVersion": kind.api_version, "metadata": md}))

    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                   "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        deadline = loop.time() + timeout
        interval = max(ctx.bookmark_interval, 0.05)
        next_bookmark = loop.time() + interval
        sent = w.after
        initial_end = send_initial
        while True:
            if w.queue:
                buf = bytearray()
                n = 0
                while w.queue:
                    typ, c, use_prev = w.queue.popleft()
                    buf += encode(typ, c, use_prev)
                    sent = max(sent, c.revision)
                    n += 1
                await resp.write(bytes(buf))
                cache.events_sent += n
            if initial_end:
                await resp.write(bookmark(w.after, {"k8s.io/initial-events-end": "true"}))
                initial_end = False
            if w.closed is not None:
                if w.error is not None:
                    await resp.write(_event("ERROR", _dumps(w.error)))
                break
            now = loop.time()
            if now >= deadline:
                break
            if bookmarks and now >= next_bookmark:
                done = max(sent, w.after, cache.dispatched if direct is None else 0)
                await resp.write(bookmark(done))
                next_bookmark = now + interval
            w.wake.clear()
            if w.queue or w.closed is not None:
                continue
            wait = deadline - now
            if bookmarks:
                wait = min(wait, max(next_bookmark - now, 0.0))
            try:
                await asyncio.wait_for(w.wake.wait(), timeout=max(wait, 0.001))
            except TimeoutError:
                pass
    except ConnectionResetError:  # the client went away
        pass
    finally:
        cache.unsubscribe(w)
        if direct is not None:
            direct.stop.set()
    return resp


def meta_at(obj: Obj, revision: int) -> Obj:
    out = dict(obj)
    out["metadata"] = {**(obj.get("metadata") or {}), "resourceVersion": str(revision)}
    return out


# --------------------------------------------------------------------------- pods/log
class NodeDialer:
    """TLS towards node agents: per Node, a context that trusts the certificate it announces and
    presents `credentials` (kept for the last 1,024 certificates seen)."""

    def __init__(self, credentials: certs.Pair | None) -> None:
        self.credentials = credentials
        self._contexts: OrderedDict[bytes, ssl.SSLContext] = OrderedDict()

    def context(self, node: Obj) -> ssl.SSLContext:
        if self.credentials is None:
            raise APIError(500, "this API server has no client certificate for node agents "
                                "(--kubelet-client-certificate and --kubelet-client-key)")
        pem = nodetls.node_certificate(node)
        if pem is None:
            raise APIError(500, f"node {meta.name(node)} announces no node API certificate "
                                f"(annotation {nodetls.CERT_ANNOTATION})")
        ctx = self._contexts.get(pem)
        if ctx is None:
            ctx = nodetls.client_context(pem, self.credentials)
            self._contexts[pem] = ctx
            while len(self._contexts) > 1024:
                self._contexts.popitem(last=False)
        else:
            self._contexts.move_to_end(pem)
        return ctx


@dataclasses.dataclass(frozen=True)
class NodeTarget:
    """Where a request for a pod's container goes: that container, its node's agent and TLS."""

    container: str
    node: str
    host: str
    port: int
    tls: ssl.SSLContext


def node_endpoint(node: Obj) -> tuple[str, int]:
    address, port = nodes.internal_ip(node), nodes.node_api_port(node)
    if not address or not port:
        raise APIError(500, f"node {meta.name(node)} announces no node API endpoint (InternalIP and "
                            "status.daemonEndpoints.kubeletEndpoint.Port)")
    return address, port


async def pod_on_node(ctx: Context, namespace: str, name: str, container: str | None, *,
                      any_container: bool = False) -> NodeTarget:
    """Where a pod's container is served: the one named, or the pod's only one (with
    `any_container`, the pod as a whole: container ""); 400 when there is no such container or
    the pod has no node yet."""
    pod = await ctx.get(POD, namespace, name)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise bad_request(f"pod {name} does not have a host assigned")
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    ephemeral = [c.get("name") for c in (pod.get("spec") or {}).get("ephemeralContainers") or []]
    if any_container:
        container = ""
    elif not container:
        if len(containers) != 1:
            raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                              f"[{' '.join(str(c) for c in containers)}]")
        container = str(containers[0])
    elif container not in containers and container not in ephemeral:
        raise bad_request(f"container {container} is not valid for pod {name}")
    node = await ctx.run(ctx.objects.get, NODE, node_name)
    if node is None:
        raise not_found("nodes", node_name)
    host, port = node_endpoint(node)
    dialer = ctx.nodes or NodeDialer(None)
    return NodeTarget(container, node_name, host, port, dialer.context(node))


def _tls_failure(t: NodeTarget, e: BaseException) -> APIError:
    if isinstance(e, ssl.SSLError | ssl.CertificateError):
        return APIError(500, nodetls.handshake_error(t.node, e))
    return APIError(500, f"the node agent at {t.host}:{t.port} does not answer: {e}")


async def pod_log(request: web.Request, ctx: Context, namespace: str, name: str) -> web.StreamResponse:
    q = request.query
    t = await pod_on_node(ctx, namespace, name, q.get("container"))
    params = {k: q[k] for k in LOG_PARAMS if q.get(k)}
    url = f"https://{t.host}:{t.port}/containerLogs/{namespace}/{name}/{t.container}"
    timeout = aiohttp.ClientTimeout(total=None, connect=NODE_CONNECT_TIMEOUT, sock_connect=NODE_CONNECT_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url, params=params, ssl=t.tls) as r:
            if r.status != 200:
                text = (await r.text(errors="replace")).strip()
                code = r.status if r.status in (400, 404) else 500
                raise APIError(code, text or f"the node answered {r.status}")
            resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                async for chunk in r.content.iter_any():
                    await resp.write(chunk)
            except ConnectionResetError:  # the client went away
                pass
            except aiohttp.ClientError:  # the node went away mid-stream: end the body there
                pass
            return resp
    except aiohttp.ClientSSLError as e:
        raise _tls_failure(t, getattr(e, "certificate_error", None) or getattr(e, "os_error", None) or e) from None
    except aiohttp.ClientError as e:
        raise APIError(500, f'Get "{url}": {e}') from None


# --------------------------------------------------------------------------- pods/exec
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")


def exec_status(exit_code: int, command: list[str]) -> Obj:
    """The Status on the error channel, as kubelet's remotecommand writes it."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command {command}, "
                       f"exit code {exit_code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}


async def node_upgrade(t: NodeTarget, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A node agent's streaming exec or port-forward, upgraded by `request`
    (`execstream.upgrade_request`, `portforward_request`); the node's refusal (a pod it does not
    run, a stopped container, nothing listening) as the APIError it answers."""
    host, port = t.host, t.port
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=t.tls),
                                                NODE_CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:  # ssl.SSLError is an OSError
        raise _tls_failure(t, e) from None
    writer.write(request)
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), NODE_CONNECT_TIMEOUT * 6)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        code = int(status_line.split()[1])
        if code == 101:
            return reader, writer
        length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines)
                       if k.strip().lower() == "content-length"), 0)
        text = (await reader.readexactly(length)).decode(errors="replace").strip() if length else ""
    except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError) as e:
        writer.close()
        raise APIError(500, f"upgrading at the node agent at {host}:{port}: {e}") from None
    writer.close()
    raise APIError(code if code in (400, 404) else 500, text or f"the node answered {code}")


def _exec_socket(request: web.Request, what: str) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, autoping=True, max_msg_size=execstream.MAX_FRAME)
    if not ws.can_prepare(request).ok:
        raise bad_request(f"pods/{what} is served as a WebSocket upgrade (v5.channel.k8s.io or "
                          "v4.channel.k8s.io), not SPDY: use kubectl 1.30 or later")
    return ws


async def pod_exec(request: web.Request, ctx: Context, namespace: str, name: str) -> web.StreamResponse:
    from orchestrator.apiserver.handlers import _true

    q = request.query
    command = q.getall("command", [])
    if not command:
        raise bad_request("you must specify at least 1 command")
    ws = _exec_socket(request, "exec")
    t = await pod_on_node(ctx, namespace, name, q.get("container"))
    stdin, tty = _true(q.get("stdin")), _true(q.get("tty"))
    reader, writer = await node_upgrade(t, execstream.upgrade_request(
        f"{t.host}:{t.port}", namespace, name, t.container, command, stdin=stdin, tty=tty))
    return await _relay(request, ws, reader, writer, f"exec in {namespace}/{name}", stdin=stdin, tty=tty,
                        status=lambda code: exec_status(code, command))


async def pod_attach(request: web.Request, ctx: Context, namespace: str, name: str) -> web.StreamResponse:
    """`kubectl attach` and `kubectl run -it`: the container's main process, relayed like an
    exec onto the node agent's attach. The end is Success, whatever the container's exit code
    (as kubelet's attach ends; kubectl run reads the code from the pod's status)."""
    from orchestrator.apiserver.handlers import _true

    q = request.query
    ws = _exec_socket(request, "attach")
    t = await pod_on_node(ctx, namespace, name, q.get("container"))
    stdin, tty = _true(q.get("stdin")), _true(q.get("tty"))
    reader, writer = await node_upgrade(t, execstream.attach_request(
        f"{t.host}:{t.port}", namespace, name, t.container, stdin=stdin))
    return await _relay(request, ws, reader, writer, f"attach to {namespace}/{name}", stdin=stdin, tty=tty,
                        status=lambda code: {"metadata": {}, "status": "Success"})


async def _relay(request: web.Request, ws: web.WebSocketResponse, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, what: str, *, stdin: bool, tty: bool,
                 status: Callable[[int], Obj]) -> web.WebSocketResponse:
    """kubectl's channel messages onto the node's frames and back, until the node's status
    frame (then `status(exit code)` on channel 3) or either side's end."""
    from orchestrator.apiserver.handlers import _true

    q = request.query
    await ws.prepare(request)
    want = {execstream.STDOUT: _true(q.get("stdout")), execstream.STDERR: _true(q.get("stderr"))}

    async def client_to_node() -> None:
        async for msg in ws:
            # binary, or text as the Python client sends a str (kube's server reads both alike)
            if msg.type == aiohttp.WSMsgType.TEXT:
                raw = msg.data.encode()
            elif msg.type == aiohttp.WSMsgType.BINARY:
                raw = msg.data
            else:
                continue
            if not raw:
                continue
            channel, data = raw[0], raw[1:]
            if channel == execstream.STDIN and stdin and data:
                writer.write(execstream.frame(execstream.STDIN, data))
            elif channel == execstream.RESIZE:
                writer.write(execstream.frame(execstream.RESIZE, data))
            elif channel == execstream.CLOSE and data[:1] == bytes([execstream.STDIN]):
                writer.write(execstream.frame(execstream.CLOSE))
            await writer.drain()
        client_gone.set()
        writer.close()  # the client left before the end: the node kills the command (detaches)

    client_gone = asyncio.Event()
    inbound = asyncio.create_task(client_to_node())
    try:
        while True:
            raw = await reader.readexactly(execstream.HEADER_SIZE)
            channel, length = execstream.header(raw)
            data = await reader.readexactly(length) if length else b""
            if channel in (execstream.STDOUT, execstream.STDERR):
                if want[channel] or (tty and channel == execstream.STDOUT):
                    await ws.send_bytes(bytes([channel]) + data)
            elif channel == execstream.STATUS:
                code = int(json.loads(data).get("exitCode", -1))
                await ws.send_bytes(bytes([execstream.STATUS]) + _dumps(status(code)))
                break
    except (asyncio.IncompleteReadError, execstream.FrameError, ValueError, OSError) as e:
        if client_gone.is_set() or ws.closed:
            return ws
        log.warning("%s: the node's stream ended early: %s", what, e)
        with contextlib.suppress(ConnectionResetError):
            await ws.send_bytes(bytes([execstream.STATUS]) + _dumps(
                {"metadata": {}, "status": "Failure", "reason": "InternalError",
                 "message": f"the node agent's stream ended before its status: {e}"}))
    finally:
        inbound.cancel()
        writer.close()
        await ws.close()
    return ws


# --------------------------------------------------------------------------- pods/portforward
async def pod_portforward(request: web.Request, ctx: Context, namespace: str, name: str) -> web.StreamResponse:
    """kubectl's port-forward (SPDY inside a WebSocket, `orchestrator.apiserver.portforward`) or
    the Python client's (`v4.channel.k8s.io` with `?ports=`, `channel_portforward`), each
    forwarded connection relayed onto the node agent's port-forward."""
    from orchestrator.apiserver import portforward, spdy

    ws = web.WebSocketResponse(protocols=(portforward.TUNNEL_PROTOCOL, CHANNEL_PROTOCOL), autoping=True,
                               max_msg_size=1 << 24)
    protocol = ws.can_prepare(request).protocol
    if protocol not in (portforward.TUNNEL_PROTOCOL, CHANNEL_PROTOCOL):
        raise bad_request(f"pods/portforward is served as a WebSocket tunnel ({portforward.TUNNEL_PROTOCOL}, or "
                          f"{CHANNEL_PROTOCOL} with ?ports=), not a plain SPDY upgrade: use kubectl 1.31 or later")
    ports: list[int] = []
    if protocol == CHANNEL_PROTOCOL:
        for text in ",".join(request.query.getall("ports", [])).split(","):
            if not text.strip().isdigit() or not 0 < int(text) < 65536:
                raise bad_request(f"ports={text!r}: expected port numbers from 1 to 65535, comma-separated")
            ports.append(int(text))
        if not ports:
            raise bad_request("at least one port must be given (?ports=)")
    t = await pod_on_node(ctx, namespace, name, None, any_container=True)
    await ws.prepare(request)

    async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await node_upgrade(t, execstream.portforward_request(f"{t.host}:{t.port}", namespace, name, port))

    if protocol == CHANNEL_PROTOCOL:
        await channel_portforward(ws, ports, dial, f"pod {name}")
        return ws
    session = portforward.Session(ws.send_bytes, dial, f"pod {name}")
    try:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await session.feed(msg.data)
    except spdy.ProtocolError as e:
        log.info("port-forward to %s/%s: %s", namespace, name, e)
    finally:
        await session.close()
        await ws.close()
    return ws


CHANNEL_PROTOCOL = "v4.channel.k8s.io"


async def channel_portforward(ws: web.WebSocketResponse, ports: list[int],
                              dial: Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
                              describe: str) -> None:
    """The channel protocol kubelet serves over WebSockets, as the Python client speaks it: one
    connection per port for the WebSocket's life, the i-th port's bytes on channel 2i and its
    errors on 2i+1, each channel opened by a frame holding the port (2 bytes, little-endian).
    It has no half-close; the WebSocket closes once every port's connection has ended."""
    for i, port in enumerate(ports):
        for channel in (2 * i, 2 * i + 1):
            await ws.send_bytes(bytes([channel]) + struct.pack("<H", port))
    writers: dict[int, asyncio.StreamWriter] = {}
    pending: dict[int, list[bytes]] = {i: [] for i in range(len(ports))}

    async def pump(i: int, port: int) -> None:
        try:
            reader, writer = await dial(port)
        except APIError as e:
            await ws.send_bytes(bytes([2 * i + 1]) + f"error forwarding port {port} to {describe}: {e}".encode())
            return
        writers[i] = writer
        for data in pending.pop(i, []):
            writer.write(execstream.frame(execstream.STDIN, data))
        try:
            while True:
                channel, length = execstream.header(await reader.readexactly(execstream.HEADER_SIZE))
                data = await reader.readexactly(length) if length else b""
                if channel == execstream.STDOUT and data:
                    await ws.send_bytes(bytes([2 * i]) + data)
                elif channel == execstream.CLOSE:
                    return
        except (OSError, asyncio.IncompleteReadError, execstream.FrameError) as e:
            log.info("port-forward to %s, port %d: the node's stream broke off: %s", describe, port, e)
        finally:
            writer.close()

    pumps: asyncio.Future[Any] = asyncio.gather(*(pump(i, p) for i, p in enumerate(ports)))

    async def inbound() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or len(msg.data) < 2 or msg.data[0] % 2:
                continue
            i, data = msg.data[0] // 2, msg.data[1:]
            if i in writers:
                writers[i].write(execstream.frame(execstream.STDIN, data))
                await writers[i].drain()
            elif i in pending:
                pending[i].append(data)

    reading: asyncio.Future[Any] = asyncio.create_task(inbound())
    try:
        await asyncio.wait([pumps, reading], return_when=asyncio.FIRST_COMPLETED)
    finally:
        reading.cancel()
        pumps.cancel()
        for w in writers.values():
            w.close()
        with contextlib.suppress(Exception):
            await pumps
        await ws.close()
