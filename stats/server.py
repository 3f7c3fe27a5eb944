"""HTTP endpoints of the stats collector (cAdvisor's paths), standalone or mountable.

`StatsAPI.handle(path)` is the whole API as a pure request → response function, so the node
agent can mount it in its own server; `serve()` runs it on a ThreadingHTTPServer in a thread
and returns a handle with `.stop()`.

  /healthz                  "ok" (503 while discovery fails and nothing but the root cgroup is tracked)
  /api/v2.0/machine         machine facts
  /api/v2.0/stats           every container: its newest samples (?count=N, default 2)
  /api/v2.0/stats/<name>    one container by name, id, short id or cgroup path (?count=N)
  /metrics                  Prometheus exposition, cAdvisor metric and label names
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from netplane.errors import ConfigError
from netplane.httpserver import HTTPServer as ThreadingHTTPServer
from stats.collector import Collector, sample_json
from stats.discovery import ROOT
from stats.machine import MachineInfo, machine_info
from stats.metrics import registry_for

log = logging.getLogger(__name__)

JSON = "application/json"


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes


def _json(status: int, data: object) -> Response:
    return Response(status, JSON, (json.dumps(data, default=str) + "\n").encode())


class StatsAPI:
    def __init__(self, collector: Collector, machine: MachineInfo | None = None) -> None:
        self.collector = collector
        self.machine = machine or machine_info(collector.hierarchy)
        self.registry = registry_for(collector, self.machine)

    def handle(self, target: str) -> Response:
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        query = parse_qs(url.query)
        try:
            count = int(query["count"][0]) if "count" in query else None
            if count is not None and count < 1:
                raise ValueError
        except ValueError:
            return _json(400, {"error": "count must be a positive integer"})
        if path == "/healthz":
            failing = self.collector.discovery_error
            if failing and all(c.id == ROOT for c in self.collector.containers()):
                return Response(503, "text/plain", f"discovery failing: {failing}\n".encode())
            return Response(200, "text/plain", b"ok\n")
        if path == "/metrics":
            return Response(200, CONTENT_TYPE_LATEST, generate_latest(self.registry))
        if path == "/api/v2.0/machine":
            return _json(200, self.machine.to_json())
        if path == "/api/v2.0/stats":
            out = {}
            for c in self.collector.containers():
                out[c.name] = sample_json(c, self.collector.samples(c.id, count or 2))
            return _json(200, out)
        if path.startswith("/api/v2.0/stats/"):
            name = unquote(path[len("/api/v2.0/stats/"):])
            found = self.collector.find(name)
            if found is None:
                return _json(404, {"error": f"unknown container {name!r}"})
            return _json(200, {found.name: sample_json(found, self.collector.samples(found.id, count))})
        return _json(404, {"error": f"no such endpoint {url.path!r}"})


@dataclass
class ServerHandle:
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(collector: Collector, host: str = "127.0.0.1", port: int = 8080, *,
          api: StatsAPI | None = None) -> ServerHandle:
    """Serve the API in a background thread (port 0: any free port)."""
    the_api = api or StatsAPI(collector)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                r = the_api.handle(self.path)
            except Exception as e:
                log.exception("stats API failed on %s", self.path)
                r = _json(500, {"error": f"{type(e).__name__}: {e}"})
            self.send_response(r.status)
            self.send_header("Content-Type", r.content_type)
            self.send_header("Content-Length", str(len(r.body)))
            self.end_headers()
            self.wfile.write(r.body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("stats http: " + format, *args)

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, name="stats-http", daemon=True)
    t.start()
    return ServerHandle(server=server, thread=t)


def parse_listen(value: str) -> tuple[str, int]:
    """'ADDR:PORT' (or ':PORT', or '[v6]:PORT') → (host, port); ConfigError when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ConfigError(f"--listen {value!r}: expected ADDR:PORT")
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        raise ConfigError(f"--listen {value!r}: port {port!r} is not a number") from None
    if not 0 <= p <= 65535:
        raise ConfigError(f"--listen {value!r}: port out of range")
    return host, p
