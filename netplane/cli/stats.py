"""`netplane stats ...` and `netplane top`: container resource stats (cAdvisor-compatible).

Commands only parse arguments and delegate to stats/ (reader, collector, server, client).
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import click

from netplane import signals
from netplane.cli.output import emit, output_option
from netplane.errors import ConfigError, NetplaneError

log = logging.getLogger(__name__)

HOST_HELP = "Stats server: a host of the current lab (h1), HOST[:PORT] or URL (default port 4194)."


@click.group("stats", invoke_without_command=True)
@click.option("--host", envvar="NETPLANE_STATS_HOST", default="127.0.0.1", show_default=True, help=HOST_HELP)
@output_option
@click.pass_context
def stats(ctx: click.Context, host: str, output: str) -> None:
    """Container CPU, memory, IO, pids and network, as a running collector sees them.

    Without a subcommand: one line per container from the server at --host.
    """
    if ctx.invoked_subcommand is not None:
        return
    from stats.client import COLUMNS, get_json, resolve, rows

    base, ns = resolve(host)
    payload = get_json(base + "/api/v2.0/stats?count=2", netns=ns)
    emit(payload, output, rows=rows(payload), columns=COLUMNS)


@stats.command("cgroup")
@click.argument("path")
@click.option("--cgroup-version", type=click.Choice(["auto", "1", "2"]), default="auto", show_default=True,
              help="Which cgroup files to read (auto: per controller, as detected on this host).")
@click.option("--reader", type=click.Choice(["auto", "c", "python"]), default="auto", show_default=True,
              help="C reader (default when built) or the pure-Python one.")
@click.option("--pid", type=click.IntRange(min=1), help="Also read the network interfaces of this process's netns.")
@output_option
def cgroup_cmd(path: str, cgroup_version: str, reader: str, pid: int | None, output: str) -> None:
    """Read one cgroup directly. PATH is below the hierarchy roots (e.g. /docker/ID)."""
    from stats.cgroups import Hierarchy, make_reader

    if "\0" in path or ".." in path.split("/"):
        raise ConfigError(f"invalid cgroup path {path!r}")
    version = "auto" if cgroup_version == "auto" else int(cgroup_version)
    spec = Hierarchy.detect().spec(path, version=version, pid=pid)  # type: ignore[arg-type]
    r = make_reader(reader)  # type: ignore[arg-type]
    try:
        st = r.read(spec)
    finally:
        r.close()
    data = st.to_json()
    data["reader"] = r.name
    if output == "table":
        rows = []
        for section in ("cpu", "memory", "pids"):
            for k, v in (data.get(section) or {}).items():
                rows.append({"field": f"{section}.{k}", "value": v})
        for d in data.get("io") or []:
            rows.append({"field": f"io.{d['device']}", "value": f"read {d['read_bytes']} B, write {d['write_bytes']} B"})
        for i in data.get("network") or []:
            rows.append({"field": f"network.{i['name']}", "value": f"rx {i['rx_bytes']} B, tx {i['tx_bytes']} B"})
        for k, v in data["errors"].items():
            rows.append({"field": f"error.{k}", "value": v})
        emit(data, output, rows=rows, columns=["field", "value"])
    else:
        emit(data, output)
    if st.vanished:
        raise NetplaneError(f"cgroup {path} vanished while reading")


@stats.command("serve")
@click.option("--listen", default="127.0.0.1:4194", show_default=True, metavar="ADDR:PORT", help="Where to serve HTTP.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True, help="Housekeeping seconds.")
@click.option("--max-interval", type=click.FloatRange(min=0.05), default=15.0, show_default=True,
              help="Longest housekeeping interval while a container does not change.")
@click.option("--source", "sources", type=click.Choice(["docker", "cgroup"]), multiple=True,
              help="Discovery sources (default: docker, plus cgroup when --cgroup is given).")
@click.option("--cgroup", "cgroups", multiple=True, metavar="PATH", help="Also watch this cgroup path (repeatable).")
@click.option("--reader", type=click.Choice(["auto", "c", "python"]), default="auto", show_default=True)
def serve_cmd(listen: str, interval: float, max_interval: float, sources: tuple[str, ...],
              cgroups: tuple[str, ...], reader: str) -> None:
    """Run the standalone collector and its HTTP server until interrupted."""
    from stats.service import StatsService

    svc = StatsService(listen=listen, sources=sources, cgroups=cgroups, interval=interval,
                       max_interval=max_interval, reader=reader)
    svc.start()
    done = threading.Event()
    signals.stop_on(done)  # not lambda: done.set() (netplane.signals: it can deadlock)
    reader_name = svc.collector.reader.name if svc.collector and svc.collector.reader else "?"
    click.echo(f"netplane stats: serving {svc.url} (reader {reader_name})", err=True)
    try:
        done.wait()
    finally:
        svc.stop()


@click.command("top")
@click.option("--host", envvar="NETPLANE_STATS_HOST", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Refresh seconds.")
@click.option("-n", "--iterations", type=click.IntRange(min=1), help="Stop after N refreshes (default: until Ctrl-C).")
def top(host: str, interval: float, iterations: int | None) -> None:
    """Live per-container usage from a running collector, sorted by CPU."""
    from netplane.cli.output import render_table
    from stats.client import COLUMNS, get_json, resolve, rows

    base, ns = resolve(host)
    url = base + "/api/v2.0/stats?count=2"
    live = iterations != 1
    i = 0
    while True:
        table = render_table(rows(get_json(url, netns=ns)), COLUMNS)
        stamp = time.strftime("%H:%M:%S")
        if live and sys.stdout.isatty():
            click.clear()
        click.echo(f"netplane top - {stamp} - {base}\n{table}")
        i += 1
        if iterations is not None and i >= iterations:
            return
        time.sleep(interval)
