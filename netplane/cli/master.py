"""`netplane master`: the control plane — leader election and, while leading, the scheduler,
replication manager, endpoints and node lifecycle controllers (`orchestrator.master`).

Run one on each of several hosts for high availability: one leads, the others wait and take
over within the lease TTL when it dies, at once when it stops (SIGTERM/SIGINT revoke the lease).
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

import click

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
@click.pass_obj
def master(settings: Settings, leader_ttl: int, identity: str | None, node_monitor_grace_period: float,
           pod_eviction_timeout: float, node_monitor_period: float, resync_period: float) -> None:
    """Run the control plane (leader-elected; several may run)."""
    from orchestrator.master import Master, MasterConfig, default_identity

    cfg = MasterConfig(identity=identity or default_identity(), leader_ttl=leader_ttl,
                       node_grace_period=node_monitor_grace_period, pod_eviction_timeout=pod_eviction_timeout,
                       node_monitor_period=node_monitor_period, resync_period=resync_period)
    m = Master(settings.store(), settings.keys(), cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"netplane master {cfg.identity}: campaigning (leader lease {leader_ttl}s)", err=True)
    m.run(stop)
