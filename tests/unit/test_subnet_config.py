"""Network config validation: defaults, and one clear error per kind of mistake."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from netplane.errors import ConfigError, DecodeError
from netplane.subnet.config import decode_config, parse_config


def test_defaults_follow_flannel() -> None:
    c = parse_config({"Network": "10.244.0.0/16"})
    assert c.subnet_len == 24
    assert c.subnet_min == IPv4Network("10.244.1.0/24")
    assert c.subnet_max == IPv4Network("10.244.255.0/24")
    assert (c.backend.type, c.backend.vni, c.backend.port, c.backend.mtu, c.backend.direct_routing) == ("vxlan", 1, 4789, None, False)
    assert c.subnet_count() == 255
    assert c.device_name == "np.1"
    assert c.mtu_for(1500) == 1450


def test_round_trip_through_json() -> None:
    raw = {"Network": "10.10.0.0/16", "SubnetLen": 26, "SubnetMin": "10.10.0.64", "SubnetMax": "10.10.1.192",
           "Backend": {"Type": "vxlan", "VNI": 42, "Port": 8472, "MTU": 1400, "DirectRouting": True}}
    c = parse_config(raw)
    assert parse_config(c.to_json()) == c
    assert c.subnet_count() == 7
    assert c.subnets()[0] == IPv4Network("10.10.0.64/26") and c.subnets()[-1] == IPv4Network("10.10.1.192/26")
    assert c.mtu_for(9000) == 1400


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"Network": "10.244.0.0/33"}, "not a valid IPv4 CIDR"),
        ({"Network": "10.244.1.0/16"}, "not a valid IPv4 CIDR"),  # host bits set
        ({"Network": "banana"}, "not a valid IPv4 CIDR"),
        ({"Network": 5}, "must be a CIDR string"),
        ({}, "missing field 'Network'"),
        ({"Network": "10.244.0.0/16", "SubnetLen": 16}, "SubnetLen 16 out of range"),
        ({"Network": "10.244.0.0/16", "SubnetLen": 31}, "SubnetLen 31 out of range"),
        ({"Network": "10.244.0.0/16", "SubnetLen": "24"}, "SubnetLen must be an integer"),
        ({"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.7"}, "not on a /24 subnet boundary"),
        ({"Network": "10.244.0.0/16", "SubnetMax": "10.245.0.0"}, "outside Network"),
        ({"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.3.0"}, "above SubnetMax"),
        ({"Network": "10.244.0.0/30"}, "too small"),
        ({"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}, "not supported"),
        ({"Network": "10.244.0.0/16", "Backend": {"VNI": 0}}, "VNI 0 out of range"),
        ({"Network": "10.244.0.0/16", "Backend": {"Port": 70000}}, "Port 70000 out of range"),
        ({"Network": "10.244.0.0/16", "Backend": {"MTU": 100}}, "MTU 100 out of range"),
        ({"Network": "10.244.0.0/16", "Backend": {"DirectRouting": "yes"}}, "true or false"),
        ({"Network": "10.244.0.0/16", "Subnetlen": 24}, "unknown network config field(s): Subnetlen"),
        ({"Network": "10.244.0.0/16", "Backend": {"Vni": 1}}, "unknown Backend field(s): Vni"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_config_gives_one_clear_error(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert message in str(e.value)


def test_overlap_with_underlay_is_rejected() -> None:
    with pytest.raises(ConfigError, match="overlaps the underlay network 10.0.0.0/8"):
        parse_config({"Network": "10.244.0.0/16"}, underlay=[IPv4Network("10.0.0.0/8")])
    parse_config({"Network": "10.244.0.0/16"}, underlay=[IPv4Network("192.168.1.0/24")])


def test_stored_values_decode_or_raise_decode_error() -> None:
    assert decode_config(b'{"Network":"10.244.0.0/16"}').network == IPv4Network("10.244.0.0/16")
    with pytest.raises(DecodeError):
        decode_config(b"{not json")
    with pytest.raises(DecodeError, match="network config"):
        decode_config(b'{"Network":"10.244.0.0/40"}')
