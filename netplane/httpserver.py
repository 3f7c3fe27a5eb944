"""The HTTP server class netplane's small endpoints (agent health, stats) run on.

`http.server.HTTPServer.server_bind` resolves the bind address with `socket.getfqdn`, a
reverse DNS lookup. On a host (or lab namespace) whose resolver is unreachable that blocks
start-up for the resolver's timeout; an agent must never wait on DNS to serve /healthz.
"""

from __future__ import annotations

import socketserver
from http.server import ThreadingHTTPServer


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
