"""The local subnet file and the lease value codec."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from netplane.errors import DecodeError
from netplane.store import Keys
from netplane.subnet import subnetfile
from netplane.subnet.lease import LeaseAttrs, decode_attrs, decoder


def test_subnet_file_round_trip_with_flannel_variables(tmp_path: Path) -> None:
    sf = subnetfile.SubnetFile(IPv4Network("10.244.0.0/16"), IPv4Network("10.244.3.0/24"), 1450, True)
    p = tmp_path / "d" / "subnet.env"
    subnetfile.write(p, sf)
    text = p.read_text()
    assert "FLANNEL_NETWORK=10.244.0.0/16\n" in text
    assert "FLANNEL_SUBNET=10.244.3.1/24\n" in text
    assert "FLANNEL_MTU=1450\n" in text and "FLANNEL_IPMASQ=true\n" in text
    assert subnetfile.read(p) == sf
    assert [f.name for f in p.parent.iterdir()] == ["subnet.env"]  # no temp file left behind


def test_unreadable_subnet_file_is_ignored(tmp_path: Path) -> None:
    assert subnetfile.read(tmp_path / "missing") is None
    (tmp_path / "bad").write_text("FLANNEL_SUBNET=zzz\n")
    assert subnetfile.read(tmp_path / "bad") is None


def test_lease_value_has_flannels_shape() -> None:
    a = LeaseAttrs(public_ip=IPv4Address("10.0.0.1"), vtep_mac="aa:bb:cc:dd:ee:ff", vni=1, node="h1")
    assert a.encode() == '{"BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"BackendType":"vxlan","Node":"h1","PublicIP":"10.0.0.1"}'
    assert decode_attrs(a.encode()) == a
    # flannel's own value (no Node, upper-case MAC) is accepted too
    assert decode_attrs('{"PublicIP":"10.0.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"AA:BB:CC:DD:EE:01"}}').vtep_mac == "aa:bb:cc:dd:ee:01"


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{", "not valid JSON"),
        (b"[]", "expected an object"),
        (b'{"BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}', "missing field 'PublicIP'"),
        (b'{"PublicIP":"10.0.0.300","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}', "PublicIP"),
        (b'{"PublicIP":"10.0.0.3","BackendData":{"VNI":true,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}', "got bool"),
        (b'{"PublicIP":"10.0.0.3","BackendData":{"VNI":1,"VtepMAC":"nope"}}', "VtepMAC"),
        (b'{"PublicIP":"10.0.0.3"}', "missing field 'BackendData'"),
    ],
)
def test_malformed_lease_values_raise_decode_error(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as e:
        decode_attrs(raw)
    assert message in str(e.value)


def test_decoder_rejects_a_key_that_is_not_a_subnet() -> None:
    k = Keys("/x")
    d = decoder(k)
    good = LeaseAttrs(public_ip=IPv4Address("10.0.0.1"), vtep_mac="aa:bb:cc:dd:ee:ff", vni=1).encode().encode()
    assert d(k.subnet(IPv4Network("10.244.3.0/24")), good).subnet == IPv4Network("10.244.3.0/24")
    with pytest.raises(DecodeError):
        d("/x/network/subnets/garbage", good)
    with pytest.raises(DecodeError):
        d("/x/network/subnets/10.244.3.1-24", good)  # host bits
