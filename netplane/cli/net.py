"""`netplane net`: the overlay's config, leases, per-host kernel state and a packet trace.

Commands only parse arguments and delegate to netplane.subnet / netplane.vxlan.
"""

from __future__ import annotations

import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from netplane import netns
from netplane.cli.output import emit, output_option
from netplane.errors import ConfigError, DecodeError, NotFoundError
from netplane.store import codec

if TYPE_CHECKING:
    from netplane.cli.main import Settings


@click.group()
def net() -> None:
    """Inspect and configure the VXLAN overlay (config, subnet leases, kernel state, trace)."""


@net.group("config")
def config() -> None:
    """The overlay's network config in etcd (flannel's field names)."""


def _cidrs(values: tuple[str, ...], flag: str) -> list[IPv4Network]:
    out = []
    for v in values:
        try:
            out.append(IPv4Network(v, strict=False))
        except ValueError as e:
            raise ConfigError(f"{flag} {v!r} is not a CIDR") from e
    return out


@config.command("set")
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False, path_type=Path), help="JSON file with the config ('-' for stdin).")
@click.option("--network", metavar="CIDR", help="Cluster network, e.g. 10.244.0.0/16.")
@click.option("--subnet-len", type=int, help="Prefix length of each host's subnet (default 24).")
@click.option("--subnet-min", metavar="IP", help="First leasable subnet (default: the second).")
@click.option("--subnet-max", metavar="IP", help="Last leasable subnet (default: the last).")
@click.option("--vni", type=int, help="VXLAN network identifier (default 1).")
@click.option("--port", type=int, help="VXLAN UDP port (default 4789).")
@click.option("--mtu", type=int, help="Overlay MTU (default: underlay MTU - 50).")
@click.option("--direct-routing/--no-direct-routing", default=None, help="Plain routes to hosts on the same L2 segment.")
@click.option("--underlay", "underlay", multiple=True, metavar="CIDR", help="Underlay network(s) the cluster network must not overlap.")
@output_option
@click.pass_obj
def config_set(settings: Settings, file: Path | None, network: str | None, subnet_len: int | None, subnet_min: str | None,
               subnet_max: str | None, vni: int | None, port: int | None, mtu: int | None, direct_routing: bool | None,
               underlay: tuple[str, ...], output: str) -> None:
    """Validate and store the network config. Either -f FILE or --network CIDR [...]."""
    from netplane.subnet.config import parse_config

    if file is not None and network is not None:
        raise ConfigError("give either -f FILE or --network, not both")
    if file is not None:
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read {file}: {e.strerror}") from e
        if not text.strip():
            raise ConfigError(f"{file} is empty")
        try:
            raw: Any = codec.loads(text)
        except DecodeError as e:
            raise ConfigError(f"{file}: {e}") from e
    elif network is not None:
        backend: dict[str, Any] = {"Type": "vxlan"}
        for k, v in (("VNI", vni), ("Port", port), ("MTU", mtu), ("DirectRouting", direct_routing)):
            if v is not None:
                backend[k] = v
        raw = {"Network": network, "Backend": backend}
        for k, v2 in (("SubnetLen", subnet_len), ("SubnetMin", subnet_min), ("SubnetMax", subnet_max)):
            if v2 is not None:
                raw[k] = v2
    else:
        raise ConfigError("give -f FILE or --network CIDR")
    cfg = parse_config(raw, underlay=_cidrs(underlay, "--underlay"))
    settings.store().put(settings.keys().network_config, codec.dumps(cfg.to_json()))
    _show_config(cfg.to_json(), output, note=f"stored at {settings.keys().network_config}")


def _show_config(data: dict[str, Any], output: str, *, note: str | None = None) -> None:
    if output == "table":
        b = data.get("Backend", {})
        rows = [
            {"field": "Network", "value": data["Network"]},
            {"field": "SubnetLen", "value": data["SubnetLen"]},
            {"field": "SubnetMin", "value": data["SubnetMin"]},
            {"field": "SubnetMax", "value": data["SubnetMax"]},
        ] + [{"field": f"Backend.{k}", "value": v} for k, v in b.items()]
        from netplane.cli.output import render_table

        emit(data, output, text=render_table(rows, ["field", "value"]) + (f"\n({note})" if note else ""))
    else:
        emit(data, output)


@config.command("get")
@output_option
@click.pass_obj
def config_get(settings: Settings, output: str) -> None:
    """Show the stored network config (with defaults filled in)."""
    from netplane.subnet.config import load_config

    kv = settings.store().get(settings.keys().network_config)
    if kv is None:
        raise NotFoundError(f"no network config at {settings.keys().network_config} (set one with 'netplane net config set')")
    _show_config(load_config(kv.value).to_json(), output)


@net.command("subnets")
@output_option
@click.pass_obj
def subnets(settings: Settings, output: str) -> None:
    """Every subnet lease: subnet, public IP, VTEP MAC, TTL left."""
    from netplane.subnet.lease import list_leases

    rows = [l.row() for l in list_leases(settings.store(), settings.keys())]
    emit(rows, output, rows=rows, columns=["subnet", "public_ip", "vtep_mac", "node", "ttl_left"])


def _host_netns(host: str | None) -> str | None:
    """A lab host name (current lab) or a network namespace name; None: this namespace."""
    if host is None:
        return None
    from netplane.lab.resolve import lab_host

    lh = lab_host(host)
    if lh is not None:
        return lh.netns
    if netns.exists(host):
        return host
    raise NotFoundError(f"no lab host or network namespace named {host!r}")


def _lab_pod(name: str) -> tuple[str, str] | None:
    """(host netns, pod netns) of a pod of the current lab, if `name` is one."""
    from netplane.lab.resolve import lab_pod

    p = lab_pod(name)
    return (p.host_netns, p.netns) if p else None


@net.command("show")
@click.option("--host", help="Lab host (or network namespace). Default: this namespace.")
@output_option
@click.pass_obj
def show(settings: Settings, host: str | None, output: str) -> None:
    """A host's kernel overlay state next to the desired state, with drift marked."""
    from netplane.cli.output import render_table
    from netplane.vxlan.inspect import inspect_host

    st = inspect_host(settings.store(), settings.keys(), netns_name=_host_netns(host), host_label=host or "this host")
    head = (
        f"host {st['host']}  subnet {st['subnet']}  public ip {st['public_ip']}  vtep {st['device']} {st['vtep_mac']}  "
        f"peers {len(st['peers'])}  {'in sync' if st['in_sync'] else str(st['drift']) + ' DRIFT'}\n"
    )
    emit(st, output, text=head + render_table(st["entries"], ["kind", "entry", "status"]))


@net.command("trace")
@click.option("--from", "src", required=True, metavar="HOST|POD", help="Lab host or lab pod (or a netns) to send from; the host's underlay is captured.")
@click.option("--pod", metavar="POD|NETNS", help="Send from this pod (lab pod name or netns) on HOST instead of the host itself.")
@click.option("--to", "dst", required=True, metavar="IP", help="Destination address (a pod on another host).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=2.0, show_default=True)
@output_option
@click.pass_obj
def trace_cmd(settings: Settings, src: str, pod: str | None, dst: str, timeout: float, output: str) -> None:
    """Send a probe across the overlay, decode the VXLAN packets on the underlay, show the path.

    Example: netplane net trace --from pa --to 10.244.22.2   (pa: a lab pod; or --from h1)
    Exits 1 when the probe gets no reply.
    """
    from netplane.subnet.config import load_config
    from netplane.vxlan.netlink import Netlink
    from netplane.vxlan.trace import trace

    try:
        to = IPv4Address(dst)
    except ValueError as e:
        raise ConfigError(f"--to {dst!r} is not an IPv4 address") from e
    as_pod = _lab_pod(src) if pod is None else None
    host_ns: str | None
    if as_pod is not None:
        host_ns, pod = as_pod
    else:
        host_ns = _host_netns(src)
    if pod is not None and not netns.exists(pod):
        found = _lab_pod(pod)
        if found is None:
            raise NotFoundError(f"no lab pod or network namespace {pod!r}")
        pod = found[1]
    kv = settings.store().get(settings.keys().network_config)
    if kv is None:
        raise NotFoundError(f"no network config at {settings.keys().network_config}")
    cfg = load_config(kv.value)
    with Netlink(netns_name=host_ns) as nl:
        dev = nl.link(cfg.device_name)
        if dev is None or dev.local is None:
            raise NotFoundError(f"{src}: no VXLAN device {cfg.device_name} (is the agent running?)")
        ul = next((l.name for l in nl.links() if any(a.ip == dev.local for a in l.addresses)), None)
    if ul is None:
        raise NotFoundError(f"{src}: no interface holds {dev.local}")
    res = trace(
        src_netns=pod or host_ns,
        src_label=f"{src}" + (f" pod {pod}" if pod else ""),
        capture_netns=host_ns,
        capture_iface=ul,
        dst=to,
        port=cfg.backend.port,
        timeout=timeout,
    )
    emit(res.to_json(), output, text=res.text())
    if not res.arrived:
        click.get_current_context().exit(1)


@net.command("cleanup")
@click.option("--host", help="Lab host (or network namespace). Default: this namespace.")
@click.option("--subnet-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The agent's subnet file, removed too. Default: /run/netplane/subnet.env without --host, none with it.")
@click.option("--release", is_flag=True, help="Also give the subnet lease back in etcd (else it expires with its TTL).")
@click.option("--force", is_flag=True, help="Even with pod interfaces still on the bridge (they are left, detached).")
@output_option
@click.pass_obj
def cleanup_cmd(settings: Settings, host: str | None, subnet_file: Path | None, release: bool, force: bool,
                output: str) -> None:
    """Remove this host's overlay: VXLAN device, pod bridge, iptables chains (the overlay's and
    the node runtime's hostPort ones), subnet file.

    For a host leaving the cluster; stop its agent first (a running agent puts everything back).
    """
    from netplane.vxlan.cleanup import cleanup_host
    from orchestrator.node.hostports import remove_rules

    if subnet_file is None and host is None:
        subnet_file = Path("/run/netplane/subnet.env")
    done = cleanup_host(netns_name=_host_netns(host), subnet_file=subnet_file, force=force)
    done.removed += remove_rules(_host_netns(host))
    if release:
        done.removed.append(_release(settings, done.subnet, done.public_ip))
    emit({"removed": done.removed}, output, text="\n".join(done.removed or ["nothing to remove"]) + "\n")


def _release(settings: Settings, subnet: IPv4Network | None, public_ip: IPv4Address | None) -> str:
    from netplane.subnet.lease import list_leases
    from netplane.subnet.manager import LeaseManager

    if subnet is None and public_ip is None:
        raise NotFoundError("--release: no subnet file and no VXLAN device here, so no lease to find")
    store = settings.store()
    for lease in list_leases(store, settings.keys(), with_ttl=False):
        if (subnet is None or lease.subnet == subnet) and (public_ip is None or lease.public_ip == public_ip):
            if lease.lease_id:
                LeaseManager(store, settings.keys()).release(lease)
            else:  # a key bound to no etcd lease (written by hand): delete it
                store.delete(settings.keys().subnet(lease.subnet))
            return f"released subnet lease {lease.subnet} ({lease.public_ip})"
    return f"no subnet lease for {subnet or public_ip} in etcd (already gone)"
