"""`netplane proxy`: run the service proxy standalone, show what it programmed, clean it up.

In an agent the proxy runs as a component (`netplane agent --proxy-mode ...`); these commands
are for running it alone (`proxy run`), inspecting a host (`proxy dump`) and removing every
kernel object it owns (`proxy cleanup`).
"""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

import click

from netplane import netns, signals
from netplane.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from netplane.cli.main import Settings

MODES = click.Choice(["iptables", "nftables", "ebpf"])


def _ip(v: str | None) -> IPv4Address | None:
    if v is None:
        return None
    try:
        return IPv4Address(v)
    except ValueError:
        raise ConfigError(f"--node-ip {v!r} is not an IPv4 address") from None


def _net(v: str | None) -> IPv4Network | None:
    if v is None:
        return None
    try:
        return IPv4Network(v)
    except ValueError:
        raise ConfigError(f"--local-cidr {v!r} is not an IPv4 network") from None


def _lab_host(host: str) -> tuple[str, Path]:
    """(netns, cgroup) of a host of the current lab."""
    from netplane.lab.resolve import current_lab, lab_host

    lab = current_lab()
    if lab is None:
        raise NotFoundError("--host needs a running lab (no lab context; run `netplane lab up`)")
    lh = lab_host(host)
    if lh is None:
        raise NotFoundError(f"host {host!r} is not in lab {lab.name}")
    return lh.netns, Path(lh.cgroup)


@click.group()
def proxy() -> None:
    """The service proxy (iptables, nftables or eBPF data plane)."""


@proxy.command("run")
@click.option("--mode", type=MODES, default="iptables", show_default=True,
              help="Data plane: iptables (kube-proxy's chains), nftables (table ip netplane, verdict maps) or ebpf.")
@click.option("--node", default="local", show_default=True, help="This host's name.")
@click.option("--netns", "netns_name", metavar="NAME",
              help="Program this network namespace (name in /run/netns); etcd is still reached from this one.")
@click.option("--cgroup", metavar="DIR", help="cgroup v2 directory to attach the eBPF programs to (ebpf).")
@click.option("--iface", help="Underlay interface for NodePort at tc (ebpf).")
@click.option("--node-ip", help="This host's address NodePorts are reached on (ebpf).")
@click.option("--local-cidr", help="This host's pod subnet (ebpf NodePort: backends outside it are SNATed; without "
              "--overlay-iface/--overlay-ip only these backends are used).")
@click.option("--overlay-iface", help="The VXLAN device (np.<VNI>) remote NodePort backends are reached through (ebpf).")
@click.option("--overlay-ip", help="That device's address (<subnet>.0): the SNAT source for remote NodePort backends (ebpf).")
@click.option("--cleanup", "do_cleanup", is_flag=True, help="Remove everything this proxy mode owns here, then exit (kube-proxy --cleanup).")
@click.pass_context
def run(ctx: click.Context, mode: str, node: str, netns_name: str | None, cgroup: str | None, iface: str | None,
        node_ip: str | None, local_cidr: str | None, overlay_iface: str | None, overlay_ip: str | None,
        do_cleanup: bool) -> None:
    """Run the proxy in this network namespace (or --netns) until SIGTERM/SIGINT."""
    from netplane.proxy.backend import Placement
    from netplane.proxy.runner import ProxyComponent

    if do_cleanup:
        ctx.invoke(cleanup, mode=mode, host=None, netns_name=netns_name, cgroup=cgroup, iface=iface,
                   overlay_iface=overlay_iface)
        return
    settings: Settings = ctx.obj

    if netns_name is not None and not netns.exists(netns_name):
        raise NotFoundError(f"no network namespace named {netns_name!r}")
    where = Placement(netns=netns_name, cgroup=cgroup, iface=iface, node_ip=_ip(node_ip), local_cidr=_net(local_cidr),
                      overlay_iface=overlay_iface, overlay_ip=_ip(overlay_ip))
    comp = ProxyComponent(settings.store(), settings.keys(), mode=mode, node=node, where=where)
    stop = threading.Event()
    signals.stop_on(stop)  # not lambda: stop.set() (netplane.signals: it can deadlock)
    comp.run(stop)


NETNS_HELP = "A network namespace (name in /run/netns) instead of this one."


@proxy.command("cleanup")
@click.option("--mode", type=MODES, required=True, help="Which data plane's objects to remove (nftables: the table ip netplane).")
@click.option("--host", help="A host of the current lab (default: this namespace).")
@click.option("--netns", "netns_name", metavar="NAME", help=NETNS_HELP)
@click.option("--cgroup", metavar="DIR", help="cgroup v2 directory the eBPF programs are attached to.")
@click.option("--iface", help="Interface carrying the NodePort tc programs.")
@click.option("--overlay-iface", help="VXLAN device carrying the NodePort reply program (with --host: np.1).")
@click.pass_obj
def cleanup(settings: Settings, mode: str, host: str | None, netns_name: str | None, cgroup: str | None,
            iface: str | None, overlay_iface: str | None) -> None:
    """Remove every kernel object the proxy owns (iptables: chains and jumps; nftables: the table
    `ip netplane`; eBPF: programs and pins)."""
    netns = netns_name
    if host:
        netns, cg = _lab_host(host)
        cgroup = cgroup or str(cg)
        iface = iface or "eth0"
        overlay_iface = overlay_iface or "np.1"
    if mode == "iptables":
        from netplane.proxy.iptables import IptablesBackend

        IptablesBackend(netns=netns).cleanup()
        click.echo("removed netplane iptables chains and jumps")
        return
    if mode == "nftables":
        from netplane.proxy.nftables import NftablesBackend

        NftablesBackend(netns=netns).cleanup()
        click.echo("removed nftables table ip netplane")
        return
    if not cgroup:
        raise ConfigError("ebpf cleanup needs --cgroup (or --host)")
    from netplane.ebpf.loader import cleanup as ebpf_cleanup
    from netplane.ebpf.loader import instance_for

    for line in ebpf_cleanup(cgroup=cgroup, instance=instance_for(cgroup), iface=iface, netns=netns,
                             overlay_iface=overlay_iface):
        click.echo(line)


@proxy.command("dump")
@click.option("--host", help="A host of the current lab (default: this namespace).")
@click.option("--netns", "netns_name", metavar="NAME", help=NETNS_HELP)
@click.option("--cgroup", metavar="DIR", help="For eBPF without --host: the cgroup the proxy is attached to.")
@click.argument("service", required=False)
@click.pass_obj
def dump(settings: Settings, host: str | None, netns_name: str | None, cgroup: str | None, service: str | None) -> None:
    """The iptables chains, nftables map elements and chains, or BPF map entries of SERVICE
    (NAME in the default namespace, or NAMESPACE/NAME; default: all), human-readable."""
    from netplane.ebpf.loader import dump_pinned, instance_for, pin_dir
    from netplane.proxy import registry
    from netplane.proxy.desired import compute
    from netplane.proxy.dump import frontend_names
    from netplane.proxy.iptables import IptablesBackend

    netns = netns_name
    if host:
        netns, cg = _lab_host(host)
        cgroup = cgroup or str(cg)
    services, endpoints = registry.load(settings.store(), settings.keys())
    if service is not None:
        given, service = service, registry.qualified(service)
        if service not in services:
            raise NotFoundError(f"service {given} not found")
    state = compute(services, endpoints)
    shown = False
    if cgroup:
        pins = pin_dir(instance_for(cgroup))
        if (pins / "lb_services").exists():
            click.echo(f"# eBPF maps at {pins}")
            click.echo(dump_pinned(pins, frontend_names(state, service)) or "(no entries)")
            shown = True
    from netplane.proxy.nftables import Nft, dump_table

    text = dump_table(Nft(netns=netns, use_lib=False), state, service)
    if text:
        click.echo("# nftables (table ip netplane)")
        click.echo(text)
        shown = True
    text = IptablesBackend(netns=netns).dump(service)
    if text:
        click.echo("# iptables")
        click.echo(text)
        shown = True
    if not shown:
        click.echo("(no proxy state found: is the proxy running here?)")
