"""`netplane agent`: the per-host daemon (lease + overlay + health, plus the service proxy and
the stats server when asked). Parses flags, turns them into component factories
(`netplane.agent.wiring`), hands those to the Agent and runs it until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import threading
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING

import click

from netplane import signals
from netplane.agent import wiring
from netplane.agent.agent import Agent, AgentOptions, check_options
from netplane.agent.component import ComponentFactory
from netplane.agent.health import parse_listen
from netplane.errors import ConfigError
from orchestrator.node.server import DEFAULT_PORT as DEFAULT_NODE_API_PORT
from orchestrator.node.server import parse_listen as parse_node_api_listen

if TYPE_CHECKING:
    from netplane.cli.main import Settings

log = logging.getLogger("netplane.agent")


def _ip(text: str | None) -> IPv4Address | None:
    if text is None:
        return None
    try:
        return IPv4Address(text)
    except ValueError as e:
        raise ConfigError(f"--public-ip {text!r} is not an IPv4 address") from e


@click.command()
@click.option("--node", required=True, envvar="NETPLANE_NODE", help="This host's name.")
@click.option("--iface", envvar="NETPLANE_IFACE", help="Underlay interface carrying VXLAN traffic.")
@click.option("--public-ip", envvar="NETPLANE_PUBLIC_IP", help="Address peers use to reach this host (on --iface).")
@click.option(
    "--subnet-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/run/netplane/subnet.env"),
    show_default=True,
    help="Local record of our subnet (flannel's subnet.env variables), written atomically.",
)
@click.option("--lease-ttl", type=click.IntRange(min=5), default=86400, show_default=True, help="Subnet lease TTL in seconds.")
@click.option("--release-on-exit", is_flag=True, help="Give the subnet back on a clean exit (default: keep it).")
@click.option("--health-listen", metavar="ADDR:PORT", help="Serve /healthz and /metrics here.")
@click.option("--tx-checksum-off", is_flag=True, help="Turn tx checksum offload off on the VXLAN device.")
@click.option("--no-masquerade", is_flag=True, help="Do not masquerade traffic leaving the cluster network.")
@click.option("--resync", type=click.FloatRange(min=0.5), default=10.0, show_default=True, help="Seconds between full reconciles.")
@click.option("--proxy-mode", type=click.Choice(["none", "iptables", "nftables", "ebpf"]), default="none", show_default=True,
              envvar="NETPLANE_PROXY_MODE", help="Service proxy data plane run by this agent (nftables: one table `ip netplane`).")
@click.option("--proxy-cgroup", metavar="PATH", envvar="NETPLANE_PROXY_CGROUP",
              help="cgroup v2 directory the eBPF proxy attaches to (this host's pods; never the machine's root cgroup).")
@click.option("--stats-listen", metavar="ADDR:PORT", help="Also run the container stats collector and serve it here.")
@click.option("--stats-source", "stats_sources", type=click.Choice(["docker", "cgroup"]), multiple=True,
              help="Stats discovery sources (default: docker, plus cgroup when --stats-cgroup is given).")
@click.option("--stats-cgroup", "stats_cgroups", multiple=True, metavar="PATH", help="A cgroup path the stats collector watches (repeatable).")
@click.option("--runtime", type=click.Choice(list(wiring.RUNTIMES)), default="none", show_default=True,
              help="Run the pods bound to this node: with Docker, as plain namespaces, or auto (Docker when "
                   "dockerd answers); none runs no pods.")
@click.option("--runtime-dir", metavar="DIR", default="/var/lib/netplane/node", show_default=True,
              help="The node runtime's state: pod address records and per-pod files.")
@click.option("--runtime-id", metavar="ID", help="Marks this node's containers apart from other nodes' on one "
              "machine (default: --node).")
@click.option("--heartbeat", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds between node heartbeats (the node lease lasts 40 s).")
@click.option("--crashloop-backoff", metavar="INITIAL:CAP:RESET", default="10:300:600", show_default=True,
              help="Crash-loop back-off in seconds: first hold, cap of the doubling, run time that resets it.")
@click.option("--housekeeping-interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              metavar="SECONDS", help="How often pods' on-disk emptyDirs are measured; one past its sizeLimit "
                                      "gets its pod evicted (kubelet's local-storage eviction).")
@click.option("--node-api-listen", metavar="ADDR:PORT|none",
              help="The node API (logs, exec; kubelet's paths; HTTPS, client certificates of the cluster's CA) "
                   "listens here [default: <node IP>:10250]; none: off.")
@click.option("--node-api-client-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="CA bundle whose client certificates the node API accepts (kubelet's --client-ca-file) "
                   "[default: the CAs the cluster's API servers publish in etcd].")
@click.option("--node-api-read-only-group", default="readonly", show_default=True, metavar="GROUP",
              help="Members may read pods and logs on the node API, not exec or port-forward (as the API "
                   "server's --read-only-group: give both the same).")
@click.pass_obj
def agent(
    settings: Settings,
    node: str,
    iface: str | None,
    public_ip: str | None,
    subnet_file: Path,
    lease_ttl: int,
    release_on_exit: bool,
    health_listen: str | None,
    tx_checksum_off: bool,
    no_masquerade: bool,
    resync: float,
    proxy_mode: str,
    proxy_cgroup: str | None,
    stats_listen: str | None,
    stats_sources: tuple[str, ...],
    stats_cgroups: tuple[str, ...],
    runtime: str,
    runtime_dir: str,
    runtime_id: str | None,
    heartbeat: float,
    crashloop_backoff: str,
    housekeeping_interval: float,
    node_api_listen: str | None,
    node_api_client_ca: Path | None,
    node_api_read_only_group: str,
) -> None:
    """Run this host's agent: lease a subnet, program the VXLAN overlay, follow etcd."""
    opts = AgentOptions(
        node=node,
        subnet_file=subnet_file,
        iface=iface,
        public_ip=_ip(public_ip),
        lease_ttl=lease_ttl,
        release_on_exit=release_on_exit,
        health_listen=parse_listen(health_listen) if health_listen else None,
        tx_checksum_off=tx_checksum_off,
        masquerade=not no_masquerade,
        resync_interval=resync,
    )
    check_options(opts)
    # started in this order once the overlay holds its lease, stopped in reverse; the node
    # runtime's factory goes after the proxy (a pod's first connect finds its services)
    components: list[ComponentFactory] = []
    if proxy_mode != "none":
        components.append(wiring.proxy(mode=proxy_mode, cgroup=proxy_cgroup))
    api_listen = ("", DEFAULT_NODE_API_PORT) if node_api_listen is None else parse_node_api_listen(node_api_listen)
    if runtime != "none":
        components.append(wiring.node_runtime(runtime=runtime, state_dir=runtime_dir, runtime_id=runtime_id,
                                              cgroup=proxy_cgroup, heartbeat=heartbeat,
                                              backoff=_backoff(crashloop_backoff),
                                              options={"api_listen": api_listen,
                                                       "housekeeping_interval": housekeeping_interval,
                                                       "api_client_ca": node_api_client_ca,
                                                       "api_read_only_group": node_api_read_only_group}))
    elif node_api_listen is not None and api_listen is not None:
        raise ConfigError("--node-api-listen needs --runtime (the node API serves the node runtime's pods)")
    elif node_api_client_ca is not None:
        raise ConfigError("--node-api-client-ca needs --runtime (the node API serves the node runtime's pods)")
    if node_api_client_ca is not None:  # a bad file fails now, not once the overlay is up
        from orchestrator.node.nodetls import ClientCAs

        ClientCAs(None, None, node_api_client_ca)
    if stats_listen:
        components.append(wiring.stats(listen=stats_listen, sources=stats_sources, cgroups=stats_cgroups))
    elif stats_sources or stats_cgroups:
        raise ConfigError("--stats-source/--stats-cgroup need --stats-listen")
    stop = threading.Event()
    signals.stop_on(stop)  # not lambda: stop.set() (netplane.signals: it can deadlock)
    try:
        Agent(settings.store(), settings.keys(), opts, components=components).run(stop)
    except Exception:
        # a daemon's log is read after the fact: the whole story there, whatever --log-level
        # says; the user's terminal still gets the one line from `main`
        log.exception("agent %s stopped", node)
        raise


def _backoff(text: str) -> tuple[float, float, float]:
    parts = text.split(":")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(v > 0 for v in values) or values[0] > values[1]:
        raise ConfigError(f"bad --crashloop-backoff {text!r}: expected INITIAL:CAP:RESET seconds, "
                          "all positive, INITIAL <= CAP")
    return values[0], values[1], values[2]
