"""What the port-forward tests send through: a pod's echo server that answers a connection once
it has read it to its end (so a lost half-close hangs, and a lost byte shows; a lone "ping" line
is answered at once, for clients without half-close), and the client's side of one exchange."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

# argv: PORT [ADDRESS]; by default bound to the pod's 127.0.0.1 (a port-forward reaches it,
# nothing outside the pod can)
ECHO_UNTIL_EOF = """
import socket, sys, threading
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1", int(sys.argv[1])))
ls.listen(16)
print("listening", flush=True)
def serve(c):
    with c:
        data = b""
        while chunk := c.recv(65536):
            data += chunk
            if data == b"ping\\n":  # for clients that cannot half-close: answered at once
                c.sendall(b"pong\\n")
                data = b""
        c.sendall(data.upper() + b" (%d bytes)" % len(data))
while True:
    threading.Thread(target=serve, args=(ls.accept()[0],), daemon=True).start()
"""


def exchange(port: int, payload: bytes, *, address: str = "127.0.0.1", netns: str | None = None,
             timeout: float = 30.0) -> bytes:
    """Connect to `address`:`port` (from network namespace `netns`: the socket is made there),
    send `payload`, half-close, read to the end."""
    from netplane import netns as nsmod

    with nsmod.inside(netns):
        s = socket.socket()
    with s:
        s.settimeout(timeout)
        s.connect((address, port))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


def expected(payload: bytes) -> bytes:
    return payload.upper() + b" (%d bytes)" % len(payload)


@contextmanager
def forwarding(argv: Sequence[str], remote: int) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A port-forward process (kubectl's or ours: both print "Forwarding from 127.0.0.1:L -> R"
    first): the local port it listens on and the process, stopped (SIGTERM, then SIGKILL) at the end."""
    pf = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = pf.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("Forwarding from 127.0.0.1:") and line.rstrip().endswith(f"-> {remote}"), \
            (line, pf.poll(), pf.stderr.read() if pf.poll() is not None else "")  # type: ignore[union-attr]
        yield int(line.split("127.0.0.1:")[1].split()[0]), pf
    finally:
        if pf.poll() is None:
            pf.terminate()
            try:
                pf.wait(10)
            except subprocess.TimeoutExpired:
                pf.kill()
                pf.wait(10)
