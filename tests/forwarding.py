"""What the port-forward tests send through: a pod's echo server that answers a connection once
it has read it to its end (so a lost half-close hangs, and a lost byte shows; a lone "ping" line
is answered at once, for clients without half-close), and the client's side of one exchange."""

from __future__ import annotations

import socket

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
