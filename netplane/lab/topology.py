"""A lab's topology as plain data (mininet's Topo, without the building).

Names and addresses only; `netplane.lab.builder` turns a `Topology` into namespaces, links and
processes. Everything a lab creates is named from the lab name, so several labs coexist:

    np-<lab>-sw         the underlay "switch": a namespace holding bridge br0 and etcd
    np-<lab>-<host>     one namespace per host, underlay interface eth0
    <cgroup2 root>/netplane/<lab>/<host>   the host's cgroup v2 subtree (root: /sys/fs/cgroup on
                        a unified host, /sys/fs/cgroup/unified on a hybrid one; netplane.cgroups)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from netplane.errors import ConfigError

LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")
HOST_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")
MAX_HOSTS = 64
PROXY_MODES = ("none", "iptables", "nftables", "ebpf")
RUNTIMES = ("none", "auto", "docker", "namespaces")
MAX_MASTERS = 3


@dataclass(frozen=True)
class HostSpec:
    name: str
    underlay_ip: IPv4Address


@dataclass(frozen=True)
class Topology:
    name: str
    underlay: IPv4Network
    hosts: tuple[HostSpec, ...]
    etcd_ip: IPv4Address
    mtu: int = 1500
    proxy: str = "iptables"
    overlay_network: IPv4Network = field(default=IPv4Network("10.244.0.0/16"))
    runtime: str = "none"  # the hosts' node runtime: auto, docker, namespaces or none
    masters: int = 0  # `netplane master` processes, in the switch namespace beside etcd
    agent_args: tuple[str, ...] = ()  # extra `netplane agent` flags (tests: short back-off, heartbeat)
    master_args: tuple[str, ...] = ()  # extra `netplane master` flags (tests: short node grace periods)
    api: bool = False  # the first master serves the Kubernetes API (relayed to 127.0.0.1, kubeconfig)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def switch_netns(self) -> str:
        return f"np-{self.name}-sw"

    def netns(self, host: str) -> str:
        return f"np-{self.name}-{self.host(host).name}"

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise ConfigError(f"lab {self.name!r} has no host {name!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "underlay": str(self.underlay),
            "etcd_ip": str(self.etcd_ip),
            "mtu": self.mtu,
            "proxy": self.proxy,
            "overlay_network": str(self.overlay_network),
            "runtime": self.runtime,
            "masters": self.masters,
            "agent_args": list(self.agent_args),
            "master_args": list(self.master_args),
            "api": self.api,
            "hosts": [{"name": h.name, "underlay_ip": str(h.underlay_ip)} for h in self.hosts],
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Topology:
        hosts = d["hosts"]
        assert isinstance(hosts, list)
        return cls(
            name=str(d["name"]),
            underlay=IPv4Network(str(d["underlay"])),
            etcd_ip=IPv4Address(str(d["etcd_ip"])),
            mtu=int(str(d["mtu"])),
            proxy=str(d.get("proxy", "iptables")),
            overlay_network=IPv4Network(str(d.get("overlay_network", "10.244.0.0/16"))),
            runtime=str(d.get("runtime", "none")),
            masters=int(str(d.get("masters", 0))),
            agent_args=tuple(str(a) for a in d.get("agent_args", ()) or ()),  # type: ignore[attr-defined]
            master_args=tuple(str(a) for a in d.get("master_args", ()) or ()),  # type: ignore[attr-defined]
            api=bool(d.get("api", False)),
            hosts=tuple(HostSpec(str(h["name"]), IPv4Address(str(h["underlay_ip"]))) for h in hosts),
        )


def default_topology(
    name: str,
    *,
    hosts: int = 3,
    underlay: str | IPv4Network = "10.99.0.0/24",
    mtu: int = 1500,
    proxy: str = "iptables",
    overlay_network: str = "10.244.0.0/16",
    runtime: str = "none",
    masters: int = 0,
    agent_args: tuple[str, ...] = (),
    master_args: tuple[str, ...] = (),
    api: bool = False,
) -> Topology:
    """h1..hN at .11, .12, ... of the underlay; etcd at .2."""
    if not 1 <= hosts <= MAX_HOSTS:
        raise ConfigError(f"--hosts must be between 1 and {MAX_HOSTS}, got {hosts}")
    try:
        net = IPv4Network(underlay, strict=True) if isinstance(underlay, str) else underlay
        overlay = IPv4Network(overlay_network, strict=True)
    except ValueError as e:
        raise ConfigError(f"invalid network: {e}") from e
    if net.num_addresses < hosts + 16:
        raise ConfigError(f"underlay {net} is too small for {hosts} hosts")
    base = net.network_address
    return Topology(
        name=name,
        underlay=net,
        hosts=tuple(HostSpec(f"h{i}", base + 10 + i) for i in range(1, hosts + 1)),
        etcd_ip=base + 2,
        mtu=mtu,
        proxy=proxy,
        overlay_network=overlay,
        runtime=runtime,
        masters=masters,
        agent_args=tuple(agent_args),
        master_args=tuple(master_args),
        api=api,
    )


def validate(t: Topology) -> None:
    if not LAB_NAME.match(t.name):
        raise ConfigError(
            f"invalid lab name {t.name!r}: 1-10 lower-case letters/digits, starting with a letter"
        )
    if not t.hosts:
        raise ConfigError("a lab needs at least one host")
    if len(t.hosts) > MAX_HOSTS:
        raise ConfigError(f"at most {MAX_HOSTS} hosts")
    if not 1280 <= t.mtu <= 9000:
        raise ConfigError(f"MTU {t.mtu} out of range 1280..9000")
    if t.proxy not in PROXY_MODES:
        raise ConfigError(f"proxy mode must be one of {', '.join(PROXY_MODES)}, got {t.proxy!r}")
    if t.runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {t.runtime!r}")
    if not 0 <= t.masters <= MAX_MASTERS:
        raise ConfigError(f"--masters must be between 0 and {MAX_MASTERS}, got {t.masters}")
    if t.api and t.masters < 1:
        raise ConfigError("--api needs a master (--masters 1 or more, with agents): the first master serves it")
    names = [h.name for h in t.hosts]
    if len(set(names)) != len(names):
        raise ConfigError("host names must be unique")
    ips = [h.underlay_ip for h in t.hosts] + [t.etcd_ip]
    if len(set(ips)) != len(ips):
        raise ConfigError("host and etcd addresses must be unique")
    for h in t.hosts:
        if not HOST_NAME.match(h.name) or h.name == "sw":
            raise ConfigError(f"invalid host name {h.name!r}")
    for ip in ips:
        if ip not in t.underlay or ip in (t.underlay.network_address, t.underlay.broadcast_address):
            raise ConfigError(f"address {ip} is not a usable address of underlay {t.underlay}")
    if t.underlay.overlaps(t.overlay_network):
        raise ConfigError(f"underlay {t.underlay} overlaps the overlay network {t.overlay_network}")
