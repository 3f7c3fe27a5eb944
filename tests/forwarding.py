"""What the port-forward tests send through: a pod's echo server that answers a connection once
it has read it to its end (so a lost half-close hangs, and a lost byte shows; a lone "ping" line
is answered at once, for clients without half-close), and the client's side of one exchange."""

from __future__ import annotations

import socket

# bound to the pod's 127.0.0.1 (a port-forward reaches it; nothing outside the pod can)
ECHO_UNTIL_EOF = """
import socket, sys, threading
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
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


def exchange(port: int, payload: bytes, *, timeout: float = 30.0) -> bytes:
    """Connect to 127.0.0.1:`port`, send `payload`, half-close, read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


def expected(payload: bytes) -> bytes:
    return payload.upper() + b" (%d bytes)" % len(payload)
