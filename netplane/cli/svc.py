"""`netplane svc`: create, delete, list and show Services; set their endpoints by hand.

Commands parse arguments and delegate to `netplane.proxy.api.ServiceAPI`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from netplane.cli.output import emit, output_option
from netplane.errors import ConfigError
from netplane.proxy.api import ServiceAPI
from netplane.proxy.model import (
    DEFAULT_AFFINITY_TIMEOUT,
    Service,
    parse_ip,
    parse_port_spec,
    service_to_json,
)
from netplane.store.keys import check_name

if TYPE_CHECKING:
    from netplane.cli.main import Settings


def _api(settings: Settings) -> ServiceAPI:
    return ServiceAPI(settings.store(), settings.keys())


@click.group()
def svc() -> None:
    """Services: a cluster IP and ports spread over endpoints."""


@svc.command("create")
@click.argument("name")
@click.option("--port", "ports", multiple=True, required=True, metavar="PORT[:TARGET][/tcp|/udp[:NODEPORT]]",
              help="Service port (repeatable), e.g. 80:8080, 53/udp, 80:8080/tcp:30080.")
@click.option("--endpoint", "endpoints", multiple=True, metavar="IP", help="Backend address (repeatable).")
@click.option("--cluster-ip", metavar="IP", help="Ask for this cluster IP (default: allocate one).")
@click.option("--type", "svc_type", type=click.Choice(["ClusterIP", "NodePort"]), default="ClusterIP", show_default=True)
@click.option("--affinity", type=click.Choice(["None", "ClientIP"]), default="None", show_default=True,
              help="Session affinity.")
@click.option("--affinity-timeout", type=int, default=DEFAULT_AFFINITY_TIMEOUT, show_default=True, help="Seconds.")
@click.option("--selector", "selectors", multiple=True, metavar="KEY=VALUE",
              help="Pod labels whose ready pods become the endpoints (the master's endpoints controller "
                   "writes them; not with --endpoint; repeatable).")
@output_option
@click.pass_obj
def create(settings: Settings, name: str, ports: tuple[str, ...], endpoints: tuple[str, ...], cluster_ip: str | None,
           svc_type: str, affinity: str, affinity_timeout: int, selectors: tuple[str, ...], output: str) -> None:
    """Create service NAME in the default namespace (the same v1 Service `netplane apply`
    writes; `netplane get svc NAME -o yaml` shows it)."""
    check_name("service", name)
    sel = []
    for item in selectors:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise ConfigError(f"bad --selector {item!r}: expected KEY=VALUE")
        sel.append((k, v))
    parsed = tuple(parse_port_spec(p, index=i) for i, p in enumerate(ports))
    if any(p.node_port for p in parsed) and svc_type != "NodePort":
        raise ConfigError("a nodePort needs --type NodePort")
    s = Service(
        name=name,
        cluster_ip=parse_ip("cluster IP", "0.0.0.0"),
        ports=parsed,
        type=svc_type,  # type: ignore[arg-type]
        session_affinity=affinity,  # type: ignore[arg-type]
        affinity_timeout=affinity_timeout,
        selector=tuple(sorted(sel)),
    )
    ips = tuple(parse_ip("endpoint", e) for e in endpoints)
    api = _api(settings)
    made = api.create(s, cluster_ip=parse_ip("cluster IP", cluster_ip) if cluster_ip else None, endpoints=ips)
    svc_obj, ep = api.get(made.name)
    data = service_to_json(svc_obj, ep)
    emit(data, output, text=f"service/{name} created with cluster IP {made.cluster_ip}")


@svc.command("delete")
@click.argument("name")
@click.pass_obj
def delete(settings: Settings, name: str) -> None:
    """Delete service NAME (and release its cluster IP and node ports)."""
    _api(settings).delete(check_name("service", name))
    click.echo(f"service/{name} deleted")


@svc.command("endpoints")
@click.argument("name")
@click.option("--set", "ips", multiple=True, metavar="IP", help="The complete new endpoint list (repeatable; none = empty).")
@output_option
@click.pass_obj
def endpoints(settings: Settings, name: str, ips: tuple[str, ...], output: str) -> None:
    """Replace the endpoints of service NAME."""
    api = _api(settings)
    api.set_endpoints(check_name("service", name), tuple(parse_ip("endpoint", i) for i in ips))
    s, ep = api.get(name)
    emit(service_to_json(s, ep), output, text=f"service/{name} endpoints: {', '.join(ips) or '(none)'}")


def _row(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": data["name"],
        "type": data["type"],
        "cluster_ip": data["cluster_ip"],
        "ports": [
            f"{p['port']}:{p['target_port']}/{p['protocol'].lower()}" + (f":{p['node_port']}" if p["node_port"] else "")
            for p in data["ports"]
        ],
        "endpoints": [e["ip"] for e in data["endpoints"] if e["ready"]] or "<none>",
        "affinity": data["session_affinity"],
    }


COLUMNS = ["name", "type", "cluster_ip", "ports", "endpoints", "affinity"]


@svc.command("list")
@output_option
@click.pass_obj
def list_(settings: Settings, output: str) -> None:
    """List services."""
    data = [service_to_json(s, ep) for s, ep in _api(settings).list()]
    emit(data, output, rows=[_row(d) for d in data], columns=COLUMNS)


@svc.command("show")
@click.argument("name")
@output_option
@click.pass_obj
def show(settings: Settings, name: str, output: str) -> None:
    """Show service NAME with its endpoints."""
    s, ep = _api(settings).get(check_name("service", name))
    data = service_to_json(s, ep)
    emit(data, output, rows=[_row(data)], columns=COLUMNS)
