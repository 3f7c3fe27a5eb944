"""Key layout and JSON decoding (no root, no etcd)."""

from __future__ import annotations

import json
from ipaddress import IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netplane.errors import ConfigError, DecodeError
from netplane.store import codec
from netplane.store.etcd import EtcdConfig, prefix_range_end
from netplane.store.keys import Keys, key_part_to_subnet, subnet_to_key_part


def test_key_layout_under_prefix() -> None:
    k = Keys("/np")
    assert k.network_config == "/np/network/config"
    assert k.subnet(IPv4Network("10.244.3.0/24")) == "/np/network/subnets/10.244.3.0-24"
    assert k.subnet_of("/np/network/subnets/10.244.3.0-24") == IPv4Network("10.244.3.0/24")
    assert k.service("web") == "/np/services/specs/web"
    assert k.endpoints_of("web") == "/np/services/endpoints/web"
    assert k.pod("p-1") == "/np/pods/p-1"
    assert Keys.name_of("/np/pods/p-1", k.pods) == "p-1"


@pytest.mark.parametrize("prefix", ["", "np", "/np/", "/n p", "//x"])
def test_bad_prefix_rejected(prefix: str) -> None:
    with pytest.raises(ConfigError):
        Keys(prefix)


@pytest.mark.parametrize("name", ["Web", "-a", "a-", "a_b", "x" * 64, ""])
def test_bad_object_names_rejected(name: str) -> None:
    with pytest.raises(ConfigError):
        Keys().service(name)


@pytest.mark.parametrize("part", ["10.244.3.0", "10.244.3.1-24", "10.244.3.0-33", "a-b", "-24"])
def test_bad_subnet_key_parts(part: str) -> None:
    with pytest.raises(ValueError):
        key_part_to_subnet(part)


@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=8, max_value=30))
def test_subnet_key_roundtrip(addr: int, plen: int) -> None:
    net = IPv4Network((addr, plen), strict=False)
    assert key_part_to_subnet(subnet_to_key_part(net)) == net


def test_prefix_range_end() -> None:
    assert prefix_range_end(b"/a/") == b"/a0"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\0"


def test_decoder_accepts_good_payload() -> None:
    v = codec.obj(codec.loads(b'{"PublicIP":"10.0.0.1","BackendData":{"VNI":1}}'))
    assert codec.field(v, "PublicIP", str) == "10.0.0.1"
    assert codec.opt(v, "Missing", int, 7) == 7


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"\xff\xfe", b"NaN", b'{"a": Infinity}', b"[" * 100000],
)
def test_decoder_rejects_malformed(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.loads(raw)


def test_field_types_are_strict() -> None:
    v = codec.obj(codec.loads(b'{"n": true, "s": 1}'))
    with pytest.raises(DecodeError, match="got bool"):
        codec.field(v, "n", int)
    with pytest.raises(DecodeError, match="expected str"):
        codec.field(v, "s", str)
    with pytest.raises(DecodeError, match="missing field"):
        codec.field(v, "zz", str)
    with pytest.raises(DecodeError, match="expected an object"):
        codec.obj([1])


@given(st.binary(max_size=200))
def test_loads_never_raises_anything_but_decode_error(raw: bytes) -> None:
    try:
        codec.loads(raw)
    except DecodeError:
        pass


json_values = st.recursive(  # integers: what orjson reads exactly (see the next test but one)
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_dumps_loads_roundtrip(value: object) -> None:
    assert codec.loads(codec.dumps(value)) == value


def test_etcd_config_parsing() -> None:
    c = EtcdConfig.parse("http://10.0.0.1:2379, http://10.0.0.2:2379")
    assert c.hostports() == [("10.0.0.1", 2379), ("10.0.0.2", 2379)]
    assert not c.secure
    for bad in ["", "ftp://x:1", "http://a:1,https://b:2", "http://:1", "http://a:99999"]:
        with pytest.raises(ConfigError):
            EtcdConfig.parse(bad)
    with pytest.raises(ConfigError):
        EtcdConfig.parse("https://a:1", cert="c")


@given(json_values)
def test_dumps_is_canonical_and_the_stdlib_reads_it(value: object) -> None:
    """orjson writes the values (the stdlib what orjson refuses): sorted keys and no spaces,
    so equal objects are equal bytes, and any JSON reader gets the same value back."""
    text = codec.dumps(value)
    assert json.loads(text) == value
    assert text == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) \
        or "\\u" in text  # only a lone surrogate, which UTF-8 cannot carry, is escaped


def test_what_orjson_refuses_the_stdlib_does() -> None:
    big = {"n": 2**70 + 1, "m": -(2**64) - 1}
    text = codec.dumps(big)
    assert text == '{"m":-18446744073709551617,"n":1180591620717411303425}'  # written exactly
    assert codec.loads(text) == {"m": float(-(2**64) - 1), "n": float(2**70 + 1)}  # read as floats
    assert codec.loads('"\\ud800"') == "\ud800"  # a lone surrogate: the stdlib reads it
    assert codec.dump_bytes({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    with pytest.raises(TypeError):
        codec.dump_bytes({"a": object()})
