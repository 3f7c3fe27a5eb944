"""`netplane lab`: emulate several hosts with network namespaces on one machine."""

from __future__ import annotations

import shutil
import time
from ipaddress import IPv4Network
from typing import Any

import click

from netplane import context
from netplane.cli.output import emit, output_option
from netplane.errors import ConfigError, LabError, NotFoundError
from netplane.lab import Lab, default_topology, list_labs
from netplane.lab.state import LabState
from netplane.lab.topology import PROXY_MODES

DEFAULT_NAME = "lab"


def _pick_underlay() -> IPv4Network:
    """The first 10.99.N.0/24 that no existing lab uses."""
    used = []
    for name in list_labs():
        try:
            used.append(LabState.load(name).topology.underlay)
        except LabError:
            continue
    for n in range(256):
        net = IPv4Network(f"10.99.{n}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise ConfigError("no free 10.99.N.0/24 underlay left; give one with --underlay")


def _resolve_name(name: str | None) -> str:
    """Explicit name, else the current context's lab, else the only lab, else 'lab'."""
    if name:
        return name
    ctx = context.load_context()
    if ctx is not None and ctx.lab in list_labs():
        return ctx.lab
    labs = list_labs()
    if len(labs) == 1:
        return labs[0]
    if len(labs) > 1:
        raise ConfigError(f"several labs exist ({', '.join(labs)}): choose one with --name")
    return DEFAULT_NAME


def _load(name: str | None) -> Lab:
    n = _resolve_name(name)
    if n not in list_labs():
        raise NotFoundError(f"no lab named {n!r}" + (f" (labs: {', '.join(list_labs())})" if list_labs() else " (none is up)"))
    return Lab.load(n)


@click.group()
def lab() -> None:
    """Build, inspect and tear down a lab of emulated hosts.

    Each host is a network namespace (np-<lab>-<host>) with an underlay interface eth0 on a
    switch namespace (np-<lab>-sw) that also runs the lab's etcd. The context file makes
    every netplane command talk to the most recently started lab.
    """


@lab.command("up")
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Lab name (1-10 of a-z, 0-9).")
@click.option("--hosts", type=click.IntRange(1, 64), default=3, show_default=True, help="Number of hosts.")
@click.option("--underlay", metavar="CIDR", help="Underlay network. Default: first free 10.99.N.0/24.")
@click.option("--overlay-network", metavar="CIDR", default="10.244.0.0/16", show_default=True, help="Pod network the hosts lease subnets from.")
@click.option("--mtu", type=click.IntRange(1280, 9000), default=1500, show_default=True, help="Underlay MTU.")
@click.option("--proxy", type=click.Choice(PROXY_MODES), default="iptables", show_default=True, help="Service proxy data plane on every host.")
@click.option("--agents/--no-agents", default=True, show_default=True, help="Start a netplane agent on every host.")
@click.option("--runtime", type=click.Choice(["auto", "docker", "namespaces", "none"]), default="auto", show_default=True,
              help="The hosts' node runtime (auto: Docker when dockerd answers, else plain namespaces); none runs no pods.")
@click.option("--masters", type=click.IntRange(0, 3), default=1, show_default=True,
              help="netplane master processes (leader election among them), beside etcd.")
@click.option("--api/--no-api", default=None,
              help="The first master serves the Kubernetes API, relayed to 127.0.0.1 with an admin kubeconfig "
                   "in the lab's directory (kubectl --kubeconfig ...). Default: on when a master runs.")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for etcd and for every agent to be ready.")
@output_option
def up(name: str, hosts: int, underlay: str | None, overlay_network: str, mtu: int, proxy: str, agents: bool,
       runtime: str, masters: int, api: bool | None, timeout: float, output: str) -> None:
    """Create a lab: namespaces, underlay, etcd, agents with their node runtime, masters."""
    masters = masters if agents else 0
    topo = default_topology(
        name, hosts=hosts, underlay=underlay or _pick_underlay(), mtu=mtu, proxy=proxy, overlay_network=overlay_network,
        runtime=runtime if agents else "none", masters=masters, api=masters > 0 if api is None else api,
    )
    t0 = time.monotonic()
    lab_ = Lab.up(topo, start_timeout=timeout)
    if agents:
        from netplane.lab import cluster

        cluster.start(lab_, wait=timeout)
    st = _status(lab_)
    st["up_seconds"] = round(time.monotonic() - t0, 2)
    _show(st, output)
    if output == "table":
        kubectl = f"  kubectl --kubeconfig {st['api']['kubeconfig']} get nodes\n" if st.get("api") else ""
        click.echo(
            f"\nlab {name} is up in {st['up_seconds']} s. Try:\n"
            f"  netplane lab status\n"
            f"  netplane lab exec h1 -- ip -br addr\n"
            f"{kubectl}"
            f"  netplane lab down --name {name}"
        )


@lab.command("control-plane")
@click.argument("action", type=click.Choice(["stop", "start"]))
@click.option("--name", help="Lab name. Default: the current lab.")
def control_plane(action: str, name: str | None) -> None:
    """Stop or start the lab's masters and etcd (pods and proxies keep running meanwhile)."""
    from netplane.lab import cluster

    lab_ = _load(name)
    done = cluster.stop_control_plane(lab_) if action == "stop" else cluster.start_control_plane(lab_)
    click.echo(f"{'stopped' if action == 'stop' else 'started'}: {', '.join(done) or 'nothing to do'}")


@lab.command("down")
@click.option("--name", help="Lab name. Default: the current lab.")
def down(name: str | None) -> None:
    """Remove everything the lab created (also after a failed 'up')."""
    lab_ = _load(name)
    lab_.down()
    click.echo(f"lab {lab_.name} removed")


@lab.command("status")
@click.option("--name", help="Lab name. Default: the current lab.")
@output_option
def status(name: str | None, output: str) -> None:
    """Show a lab's etcd health and hosts."""
    _show(_status(_load(name)), output)


@lab.command("list")
@output_option
def list_(output: str) -> None:
    """List the labs on this machine."""
    ctx = context.load_context()
    rows = [{"name": n, "current": bool(ctx and ctx.lab == n)} for n in list_labs()]
    emit(rows, output, rows=rows, columns=["name", "current"])


@lab.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", help="Lab name. Default: the current lab.")
@click.option("--detach", "-d", is_flag=True, help="Start COMMAND in the background (stopped by 'lab down'); print its pid.")
@click.argument("target")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str | None, detach: bool, target: str, command: tuple[str, ...]) -> None:
    """Run COMMAND on lab host (or pod) TARGET, in its network namespace and its host's cgroup.

    \b
    Examples:
      netplane lab exec h1 -- ping -c1 10.99.0.12
      netplane lab exec -d web1 -- python3 -m http.server 8080
    """
    from netplane.lab import pods

    lab_ = _load(name)
    pod = pods.find(lab_, target)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ConfigError("no command given (netplane lab exec HOST -- CMD ...)")
    if shutil.which(command[0]) is None:
        raise ConfigError(f"command not found: {command[0]}")
    host, ns = (pod["host"], pod["netns"]) if pod is not None else (lab_.topology.host(target).name, None)
    if detach:
        n = len(lab_.state.find("process", role="exec"))
        pid = lab_.spawn_on(host, command, role="exec", marker=" ".join(command), log_name=f"exec-{n}.log", netns=ns)
        click.echo(f"{pid} (output: {lab_.host_dir(host) / f'exec-{n}.log'})")
        return
    rc = lab_.exec(host, command, netns=ns).returncode
    if rc:
        click.get_current_context().exit(rc)


@lab.group("pod")
def pod() -> None:
    """Stand-in pods: network namespaces on a host's pod bridge, addressed from its subnet."""


@pod.command("add")
@click.option("--name", "lab_name", help="Lab name. Default: the current lab.")
@click.argument("host")
@click.argument("pod_name")
@output_option
def pod_add(lab_name: str | None, host: str, pod_name: str, output: str) -> None:
    """Create pod POD_NAME on HOST."""
    from netplane.lab import pods

    item = pods.add(_load(lab_name), host, pod_name)
    emit(item, output, text=f"pod {item['name']} on {item['host']}: {item['ip']} (netns {item['netns']})")


@pod.command("del")
@click.option("--name", "lab_name", help="Lab name. Default: the current lab.")
@click.argument("pod_name")
def pod_del(lab_name: str | None, pod_name: str) -> None:
    """Remove pod POD_NAME."""
    from netplane.lab import pods

    pods.remove(_load(lab_name), pod_name)
    click.echo(f"pod {pod_name} removed")


@pod.command("list")
@click.option("--name", "lab_name", help="Lab name. Default: the current lab.")
@output_option
def pod_list(lab_name: str | None, output: str) -> None:
    """List the lab's pods."""
    from netplane.lab import pods

    rows = pods.listing(_load(lab_name))
    emit(rows, output, rows=rows, columns=["name", "host", "ip", "netns"])


def _status(lab_: Lab) -> dict[str, Any]:
    st = lab_.status()
    from netplane.lab import cluster

    return cluster.enrich_status(lab_, st)


def _show(st: dict[str, Any], output: str) -> None:
    rows = [
        {
            "host": h["name"],
            "netns": h["netns"],
            "underlay_ip": h["underlay_ip"],
            "subnet": h.get("subnet"),
            "agent": "running" if "agent" in h.get("processes", {}) else "-",
        }
        for h in st["hosts"]
    ]
    head = f"lab {st['name']}  etcd {st['etcd']['endpoint']} ({'healthy' if st['etcd']['healthy'] else 'UNHEALTHY'})  underlay {st['underlay']}  proxy {st['proxy']}\n"
    if st.get("api"):
        head += f"API {st['api']['url']}  kubeconfig {st['api']['kubeconfig']}\n"
    emit(st, output, text=head + _table(rows))


def _table(rows: list[dict[str, Any]]) -> str:
    from netplane.cli.output import render_table

    return render_table(rows, ["host", "netns", "underlay_ip", "subnet", "agent"])
