"""Talking to a running stats server (for `netplane stats` and `netplane top`), and turning
its JSON into table rows (pure)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from netplane.errors import ConfigError, NetplaneError

DEFAULT_PORT = 4194


class StatsClientError(NetplaneError):
    """The stats server could not be reached or answered with an error."""


def base_url(host: str) -> str:
    """'H', 'H:PORT' or 'http://H:PORT' → 'http://H:PORT'."""
    h = host.strip()
    if not h:
        raise ConfigError("--host must not be empty")
    if h.startswith(("http://", "https://")):
        return h.rstrip("/")
    if h.startswith("["):  # [v6]:port
        return f"http://{h}" if "]:" in h else f"http://{h}:{DEFAULT_PORT}"
    if h.count(":") == 1:
        name, port = h.split(":")
        if not port.isdigit():
            raise ConfigError(f"--host {host!r}: port {port!r} is not a number")
        return f"http://{name or '127.0.0.1'}:{port}"
    if ":" in h:
        return f"http://[{h}]:{DEFAULT_PORT}"
    return f"http://{h}:{DEFAULT_PORT}"


def resolve(host: str) -> tuple[str, str | None]:
    """(base URL, network namespace to connect from). A host of the current lab (`h1`, or
    `h1:PORT`) is reached from inside its own namespace, where its agent serves stats."""
    from netplane.lab.resolve import lab_host

    name, _, port = host.partition(":")
    lh = lab_host(name) if name and (not port or port.isdigit()) else None
    if lh is not None:
        return f"http://{lh.underlay_ip}:{port or DEFAULT_PORT}", lh.netns
    return base_url(host), None


def get_json(url: str, *, timeout: float = 5.0, netns: str | None = None) -> Any:
    from netplane import netns as nsmod

    try:
        with nsmod.inside(netns), urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error", str(e))
        except (ValueError, AttributeError):
            msg = str(e)
        raise StatsClientError(f"{url}: {msg}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise StatsClientError(f"cannot reach the stats server at {url}: {reason}") from e
    except ValueError as e:
        raise StatsClientError(f"{url}: not JSON") from e


def _mib(v: Any) -> str | None:
    return None if v is None else f"{v / 1048576:.1f}Mi"


def short_id(cid: str, name: str) -> str:
    """Docker's 12-hex-digit short id; nothing for a cgroup watched by path (its id is the
    name already, and a path cut at 12 characters means nothing)."""
    if cid == name:
        return ""
    if len(cid) > 12 and all(ch in "0123456789abcdef" for ch in cid):
        return cid[:12]
    return cid


def rows(payload: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per container from /api/v2.0/stats, sorted by CPU use (highest first)."""
    out = []
    for name, samples in payload.items():
        if not isinstance(samples, list) or not samples:
            continue
        s = samples[-1]
        mem = s.get("memory") or {}
        pids = s.get("pids") or {}
        r = s.get("rates") or {}
        cores = r.get("cpu_cores")
        out.append({
            "name": name,
            "id": short_id(str(s.get("id", "")), name),
            "cpu%": None if cores is None else round(cores * 100, 1),
            "memory": _mib(mem.get("usage_bytes")),
            "working_set": _mib(mem.get("working_set_bytes")),
            "pids": pids.get("current"),
            "rx/s": None if r.get("rx_bytes_per_second") is None else f"{r['rx_bytes_per_second'] / 1024:.1f}Ki",
            "tx/s": None if r.get("tx_bytes_per_second") is None else f"{r['tx_bytes_per_second'] / 1024:.1f}Ki",
            "errors": len(s.get("errors") or {}),
        })
    out.sort(key=lambda x: (-float(x["cpu%"] or 0.0), str(x["name"])))
    return out


COLUMNS = ["name", "id", "cpu%", "memory", "working_set", "pids", "rx/s", "tx/s", "errors"]
