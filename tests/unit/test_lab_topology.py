"""Lab topology validation (pure data, no root)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from netplane.errors import ConfigError
from netplane.lab.topology import HostSpec, Topology, default_topology


def test_default_topology() -> None:
    t = default_topology("demo", hosts=3, underlay="10.99.5.0/24")
    assert [h.name for h in t.hosts] == ["h1", "h2", "h3"]
    assert [str(h.underlay_ip) for h in t.hosts] == ["10.99.5.11", "10.99.5.12", "10.99.5.13"]
    assert str(t.etcd_ip) == "10.99.5.2"
    assert t.netns("h2") == "np-demo-h2"
    assert t.switch_netns == "np-demo-sw"
    assert Topology.from_json(t.to_json()) == t
    with_api = default_topology("demo", masters=1, api=True)
    assert with_api.api and Topology.from_json(with_api.to_json()) == with_api
    assert Topology.from_json({k: v for k, v in with_api.to_json().items() if k != "api"}).api is False  # older state


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "Bad"},
        {"name": "a" * 11},
        {"name": "1ab"},
        {"hosts": 0},
        {"hosts": 65},
        {"underlay": "10.99.0.0/29"},
        {"underlay": "10.99.0.1/24"},
        {"underlay": "nonsense"},
        {"mtu": 100},
        {"proxy": "ipvs"},
        {"underlay": "10.244.0.0/24"},
        {"api": True},  # no master to serve it
    ],
)
def test_invalid_topologies(kwargs: dict) -> None:
    args = {"name": "lab", **kwargs}
    name = args.pop("name")
    with pytest.raises(ConfigError):
        default_topology(name, **args)


def test_duplicate_and_outside_addresses() -> None:
    net = IPv4Network("10.99.0.0/24")
    with pytest.raises(ConfigError, match="unique"):
        Topology("x", net, (HostSpec("h1", IPv4Address("10.99.0.5")), HostSpec("h2", IPv4Address("10.99.0.5"))), IPv4Address("10.99.0.2"))
    with pytest.raises(ConfigError, match="not a usable"):
        Topology("x", net, (HostSpec("h1", IPv4Address("10.98.0.5")),), IPv4Address("10.99.0.2"))
    with pytest.raises(ConfigError, match="unique"):
        Topology("x", net, (HostSpec("h1", IPv4Address("10.99.0.5")), HostSpec("h1", IPv4Address("10.99.0.6"))), IPv4Address("10.99.0.2"))
    with pytest.raises(ConfigError, match="host name"):
        Topology("x", net, (HostSpec("sw", IPv4Address("10.99.0.5")),), IPv4Address("10.99.0.2"))
