"""`netplane master`: the control plane — leader election and, while leading, the scheduler,
replication manager, endpoints and node lifecycle controllers (`orchestrator.master`).

Run one on each of several hosts for high availability: one leads, the others wait and take
over within the lease TTL when it dies, at once when it stops (SIGTERM/SIGINT revoke the lease).
With `--dns-listen` every master (leader or not) also serves cluster DNS there, and the leader
keeps the Service kube-system/kube-dns (`--dns-service-ip`) pointing at those servers.
With `--apiserver-listen` every master also serves the Kubernetes API there (the options of
`netplane apiserver`, prefixed `--apiserver-`), and the leader keeps the Service
default/kubernetes (10.96.0.1, port 443) pointing at those servers' advertise addresses.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import click

from netplane import signals
from netplane.cli.apiserver import apiserver_options, config_from

if TYPE_CHECKING:
    from netplane.cli.main import Settings


@click.command("master")
@click.option("--leader-ttl", type=click.IntRange(min=2), default=15, show_default=True,
              help="Seconds of the leader's etcd lease: how long a dead leader is waited for.")
@click.option("--id", "identity", metavar="NAME", help="This master's name in the election (default: host-pid).")
@click.option("--node-monitor-grace-period", type=click.FloatRange(min=0.1), default=40.0, show_default=True,
              help="Seconds without a heartbeat before a node is Ready=Unknown.")
@click.option("--pod-eviction-timeout", type=click.FloatRange(min=0.0), default=300.0, show_default=True,
              help="Seconds a node may stay not ready before its pods are evicted.")
@click.option("--node-monitor-period", type=click.FloatRange(min=0.05), default=5.0, show_default=True,
              help="Seconds between node health passes.")
@click.option("--resync-period", type=click.FloatRange(min=0.0), default=30.0, show_default=True,
              help="Seconds between full resyncs of every controller (0: never).")
@click.option("--dns-listen", metavar="ADDR:PORT",
              help="Serve cluster DNS on this IPv4 address and port, UDP and TCP (port 0: any free "
                   "port). Default: no DNS server.")
@click.option("--dns-advertise", metavar="ADDR",
              help="The address put into kube-dns' endpoints for this master (default: --dns-listen's; "
                   "required when that is 0.0.0.0).")
@click.option("--dns-service-ip", default="10.96.0.10", show_default=True, metavar="IP|none",
              help="Cluster IP of the Service kube-system/kube-dns the leader keeps; none: no such Service.")
@click.option("--cluster-domain", default="cluster.local", show_default=True,
              help="DNS domain of the cluster: <svc>.<ns>.svc.<domain>.")
@apiserver_options("apiserver-", listen_default=None)
@click.pass_obj
def master(settings: Settings, leader_ttl: int, identity: str | None, node_monitor_grace_period: float,
           pod_eviction_timeout: float, node_monitor_period: float, resync_period: float,
           dns_listen: str | None, dns_advertise: str | None, dns_service_ip: str, cluster_domain: str,
           **api_options: Any) -> None:
    """Run the control plane (leader-elected; several may run)."""
    from netplane import gctune

    gctune.for_servers()  # big caches: fewer, rarer collections (netplane.gctune)
    from ipaddress import IPv4Address

    from netplane.errors import ConfigError
    from orchestrator.dns import parse_listen
    from orchestrator.master import Master, MasterConfig, default_identity

    try:
        listen = parse_listen(dns_listen) if dns_listen else None
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--dns-listen") from None
    try:
        advertise = str(IPv4Address(dns_advertise)) if dns_advertise else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--dns-advertise") from None
    try:
        service_ip = None if dns_service_ip.lower() == "none" else str(IPv4Address(dns_service_ip))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--dns-service-ip") from None
    domain = cluster_domain.strip(".").lower()
    if not domain or any(not label or len(label) > 63 for label in domain.split(".")):
        raise click.BadParameter(f"{cluster_domain!r} is not a domain name", param_hint="--cluster-domain")
    if listen is not None and advertise is None and IPv4Address(listen[0]).is_unspecified:
        raise click.BadParameter("listening on 0.0.0.0 needs --dns-advertise ADDR (the address "
                                 "pods reach this master at)", param_hint="--dns-listen")
    api = config_from(api_options, "apiserver-")
    cfg = MasterConfig(identity=identity or default_identity(), leader_ttl=leader_ttl,
                       node_grace_period=node_monitor_grace_period, pod_eviction_timeout=pod_eviction_timeout,
                       node_monitor_period=node_monitor_period, resync_period=resync_period,
                       dns_listen=listen, dns_advertise=advertise, dns_service_ip=service_ip,
                       cluster_domain=domain, apiserver=api)
    m = Master(settings.store(), settings.keys(), cfg)
    stop = threading.Event()
    signals.stop_on(stop)  # not lambda: stop.set() (netplane.signals: it can deadlock)
    if listen is not None:
        try:
            host, port = m.start_dns() or listen
        except OSError as e:
            raise click.ClickException(f"cannot serve DNS on {dns_listen}: {e.strerror or e}") from None
        click.echo(f"netplane master {cfg.identity}: DNS on {host}:{port} (udp, tcp)", err=True)
    if api is not None:
        try:
            m.start_apiserver()
        except OSError as e:
            raise click.ClickException(f"cannot serve the API on {api_options.get('apiserver_listen') or api.listen}: "
                                       f"{e.strerror or e}") from None
        click.echo(f"netplane master {cfg.identity}: API server on {m.api.url if m.api else '?'}", err=True)
    click.echo(f"netplane master {cfg.identity}: campaigning (leader lease {leader_ttl}s)", err=True)
    m.run(stop)
