"""The agent's HTTP endpoint: `/healthz` (JSON, 200 or 503) and `/metrics` (Prometheus).

A component of the agent (start/stop). The listening socket is opened in the agent's network
namespace, so in the lab each host's agent answers on its own underlay address.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from netplane import netns
from netplane.errors import ConfigError
from netplane.httpserver import HTTPServer as ThreadingHTTPServer

log = logging.getLogger(__name__)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--health-listen {text!r}: expected ADDR:PORT")
    return host or "0.0.0.0", int(port)


class HealthServer:
    name = "health"

    def __init__(
        self,
        listen: tuple[str, int],
        *,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        registry: CollectorRegistry,
        netns_name: str | None = None,
    ) -> None:
        self.listen = listen
        self.health = health
        self.registry = registry
        self.netns_name = netns_name
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/healthz":
                    ok, detail = outer.health()
                    body = json.dumps({"ok": ok, **detail}).encode()
                    self._send(200 if ok else 503, "application/json", body)
                elif self.path.split("?")[0] == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(outer.registry))
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        with netns.inside(self.netns_name):
            try:
                self._server = ThreadingHTTPServer(self.listen, Handler)
            except OSError as e:
                raise ConfigError(f"cannot listen on {self.listen[0]}:{self.listen[1]}: {e.strerror}") from e
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)
        self._thread.start()
        log.info("health and metrics on http://%s:%d", self.listen[0], self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
