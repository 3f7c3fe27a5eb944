"""Stand-in pods on lab hosts: a network namespace plumbed into the host's pod bridge.

Kept beside the orchestrator's pods: a bare namespace with no runtime, no etcd object and no
controller is what overlay and proxy tests (and `net trace`) want — the network alone, nothing
that restarts or moves. `np-<lab>-p-<pod>` is joined to the host's bridge `np0` with an address
of the host's leased subnet (read from the agent's subnet file). On a host that runs a node
runtime the address comes from that runtime's own IPAM records (owner `lab-pod/<pod>`), so a
stand-in pod and a real pod never get the same address. Each pod is recorded in the lab state
before it is plumbed, so `lab down` removes it even if plumbing failed halfway.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Interface
from typing import Any

from netplane import podnet
from netplane.errors import ConfigError
from netplane.lab.builder import Lab
from netplane.subnet import subnetfile

POD_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")


def pod_netns(lab: Lab, pod: str) -> str:
    return f"np-{lab.name}-p-{pod}"


def find(lab: Lab, pod: str) -> dict[str, Any] | None:
    found = lab.state.find("pod", name=pod)
    return found[0] if found else None


def add(lab: Lab, host: str, pod: str) -> dict[str, Any]:
    """Create pod `pod` on `host`; returns its record (name, host, netns, ip)."""
    lab.topology.host(host)
    if not POD_NAME.match(pod) or pod in {h.name for h in lab.topology.hosts}:
        raise ConfigError(f"invalid pod name {pod!r}: 1-10 of a-z/0-9, starting with a letter, not a host name")
    if find(lab, pod) is not None:
        raise ConfigError(f"pod {pod!r} already exists in lab {lab.name}")
    used = {p.get("index") for p in lab.state.find("pod", host=host)}
    index = next(i for i in range(1, 10_000) if i not in used)
    ns = pod_netns(lab, pod)
    subnet_file = lab.host_dir(host) / "subnet.env"
    if not subnet_file.exists():
        raise ConfigError(f"host {host} has no leased subnet yet ({subnet_file}); is its agent running?")
    podnet.create_netns(ns)
    lab.state.record("pod", name=pod, host=host, netns=ns, index=index)
    item = lab.state.find("pod", name=pod)[0]
    ipam = _ipam(lab, host)
    if ipam is None:
        net = podnet.add_pod_from_subnet_file(ns, host_netns=lab.netns(host), subnet_file=subnet_file, index=index)
    else:
        item["ipam_owner"] = f"lab-pod/{pod}"
        lab.state.save()
        ip = ipam.allocate(item["ipam_owner"])
        sf = subnetfile.read(subnet_file)
        assert sf is not None
        net = podnet.add_pod_network(ns, host_netns=lab.netns(host), address=IPv4Interface((ip, sf.subnet.prefixlen)),
                                     mtu=sf.mtu)
    item["ip"] = str(net.address.ip)
    lab.state.save()
    return dict(item)


def remove(lab: Lab, pod: str) -> None:
    item = find(lab, pod)
    if item is None:
        raise ConfigError(f"no pod {pod!r} in lab {lab.name}")
    remove_recorded(lab, item)
    lab.state.forget(item)


def remove_recorded(lab: Lab, item: dict[str, Any]) -> None:
    """Undo one recorded pod: its veth (if the host still exists), then its namespace."""
    from netplane import netns

    host_ns = lab.netns(item["host"])
    if netns.exists(host_ns) and netns.exists(item["netns"]):
        podnet.remove_pod_network(item["netns"], host_netns=host_ns)
    podnet.delete_netns(item["netns"])
    if item.get("ipam_owner"):
        ipam = _ipam(lab, item["host"])
        if ipam is not None:
            ipam.release(item["ipam_owner"])


def _ipam(lab: Lab, host: str) -> Any:
    """The host's node-runtime IPAM, when the lab runs one (else None: addresses by index)."""
    if lab.topology.runtime == "none":
        return None
    from netplane.lab.cluster import runtime_dir
    from orchestrator.node.ipam import HostLocalIPAM

    sf = subnetfile.read(lab.host_dir(host) / "subnet.env")
    if sf is None:
        return None
    return HostLocalIPAM(sf.subnet, runtime_dir(lab, host) / "ipam")


def listing(lab: Lab) -> list[dict[str, Any]]:
    return [{k: p.get(k) for k in ("name", "host", "netns", "ip")} for p in lab.state.find("pod")]
