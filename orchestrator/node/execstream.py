"""The node API's streaming exec: the frames a command's standard streams travel in.

`POST /exec/{namespace}/{pod}/{container}?command=...&stdin=true&tty=true` with
`Connection: Upgrade` and `Upgrade: netplane-exec/1` is answered `101 Switching Protocols`
(or an ordinary error reply before anything runs), and from then on both sides send frames:

    1 byte channel | 4 bytes payload length (big-endian) | payload

    client -> node   0 stdin data   4 resize: JSON {"Width": w, "Height": h}   255 stdin closed
    node -> client   1 stdout       2 stderr (none with a TTY)   3 the end: JSON {"exitCode": n}

The channel numbers are kube's remotecommand ones (v5.channel.k8s.io), so the API server relays
kubectl's WebSocket messages by re-framing them; the framing is ours (kubelet upgrades to SPDY or
a WebSocket). The node closes the connection after the status frame. A client that goes away
before that (EOF on the socket) has its command killed.

**Attach** (`kubectl attach`, `kubectl run -it`) is the same conversation with the container's
main process: `POST /attach/{namespace}/{pod}/{container}?stdin=true` with the same upgrade. Its
output from then on comes as stdout and stderr frames (one stream when the container has a TTY,
which is the container's own setting, fixed at its start), stdin and resizes go in, and the
status frame carries the container's exit code once it has exited. A client that goes detaches:
the container runs on (stdin_once closes its stdin then).

**Port-forward** rides the same frames: `POST /portForward/{namespace}/{pod}?port=P` with
`Upgrade: netplane-portforward/1`. The node first connects to `localhost:P` inside the pod's
network namespace (as kubelet's runtimes do), and a failure there is the ordinary error
reply. Then:

    client -> node   0 bytes for the pod   255 no more (the pod's socket is shut for writing)
    node -> client   1 bytes from the pod  255 the pod closed its side

The node closes the connection once both sides have sent 255, and the client then reads EOF.
A client that goes (EOF) has the pod's connection closed too.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable, Sequence
from typing import BinaryIO
from urllib.parse import quote, urlencode

UPGRADE = "netplane-exec/1"
PORTFORWARD_UPGRADE = "netplane-portforward/1"
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
MAX_FRAME = 1 << 20
_HEADER = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size


class FrameError(ValueError):
    """A frame that is not one (length over MAX_FRAME, a cut header)."""


def upgrade_request(authority: str, namespace: str, pod: str, container: str, command: Sequence[str], *,
                    stdin: bool, tty: bool) -> bytes:
    """The HTTP request that opens a streaming exec at the node agent `authority` (host:port)."""
    path = "/".join(quote(p, safe="") for p in ("", "exec", namespace, pod, container))
    query = urlencode([*(("command", c) for c in command), ("stdin", str(stdin).lower()), ("tty", str(tty).lower())])
    return (f"POST {path}?{query} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\n"
            f"Upgrade: {UPGRADE}\r\nContent-Length: 0\r\n\r\n").encode()


def attach_request(authority: str, namespace: str, pod: str, container: str, *, stdin: bool) -> bytes:
    """The HTTP request that attaches to a container's main process at the node agent `authority`."""
    path = "/".join(quote(p, safe="") for p in ("", "attach", namespace, pod, container))
    return (f"POST {path}?stdin={str(stdin).lower()} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\n"
            f"Upgrade: {UPGRADE}\r\nContent-Length: 0\r\n\r\n").encode()


def portforward_request(authority: str, namespace: str, pod: str, port: int) -> bytes:
    """The HTTP request that opens a port-forward to `port` of a pod at the node agent `authority`."""
    path = "/".join(quote(p, safe="") for p in ("", "portForward", namespace, pod))
    return (f"POST {path}?port={int(port)} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\n"
            f"Upgrade: {PORTFORWARD_UPGRADE}\r\nContent-Length: 0\r\n\r\n").encode()


def frame(channel: int, data: bytes = b"") -> bytes:
    return _HEADER.pack(channel, len(data)) + data


def header(raw: bytes) -> tuple[int, int]:
    """(channel, payload length) of a frame's first HEADER_SIZE bytes."""
    channel, length = _HEADER.unpack(raw)
    if length > MAX_FRAME:
        raise FrameError(f"exec stream: a frame of {length} bytes (at most {MAX_FRAME})")
    return channel, length


def read_frame(f: BinaryIO) -> tuple[int, bytes] | None:
    """The next frame from a blocking stream; None at a clean EOF between frames."""
    raw = f.read(HEADER_SIZE)
    if not raw:
        return None
    if len(raw) < HEADER_SIZE:
        raise FrameError("exec stream: cut in a frame header")
    channel, length = header(raw)
    data = f.read(length) if length else b""
    if len(data) < length:
        raise FrameError("exec stream: cut in a frame")
    return channel, data


def socket_to_frames(src: socket.socket, write: Callable[[bytes], object], channel: int) -> None:
    """A port-forward's one direction: what `src` reads, as frames on `channel` through `write`,
    then CLOSE at its EOF. OSError (either side gone) is the caller's."""
    while data := src.recv(65536):
        write(frame(channel, data))
    write(frame(CLOSE))


def frames_to_socket(f: BinaryIO, dst: socket.socket, channel: int, on_close: Callable[[], object] | None = None) -> bool:
    """A port-forward's other direction: the payloads on `channel` into `dst`, and CLOSE as a
    shutdown of its writing side (then `on_close()`); True once that CLOSE came (False at EOF
    first: the peer went). Reading goes on after CLOSE until the peer's EOF."""
    closed = False
    while (got := read_frame(f)) is not None:
        ch, data = got
        if ch == channel and data:
            dst.sendall(data)
        elif ch == CLOSE and not closed:
            dst.shutdown(socket.SHUT_WR)
            closed = True
            if on_close is not None:
                on_close()
    return closed


def resize_of(payload: bytes) -> tuple[int, int] | None:
    """(width, height) of a resize frame (kube's TerminalSize JSON); None when malformed."""
    try:
        size = json.loads(payload)
        w, h = int(size["Width"]), int(size["Height"])
    except (ValueError, TypeError, KeyError):
        return None
    return (w, h) if 0 < w < 65536 and 0 < h < 65536 else None
