"""Decoding of JSON values read from etcd, with validation.

Anything read from etcd may have been written by another version, another tool or a human with
etcdctl. Decoders raise `DecodeError` with a message saying which field is wrong; the list/watch
helpers log and skip such values instead of letting them into a reconcile loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from netplane.errors import DecodeError

T = TypeVar("T")


def loads(raw: bytes | str) -> Any:
    """Parse JSON, turning every parse failure (bad UTF-8, syntax, NaN) into DecodeError.
    orjson parses (2-3x the stdlib's speed on a pod), and reads an integer beyond 64 bits as
    the nearest float, where the stdlib is exact: such an integer can only come from another
    writer (admission refuses them where Kubernetes has int64 fields, and prunes unknown
    fields), and a decoder that wants an int then calls the value malformed. What orjson
    refuses (a lone surrogate escape) the stdlib reads."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DecodeError(f"not valid JSON: {e}") from e


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def dumps(obj: Any) -> str:
    """Canonical JSON for etcd: stable key order, no spaces, so equal objects are equal bytes."""
    return dump_bytes(obj, sort_keys=True).decode()


def dump_bytes(obj: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON as UTF-8 bytes: orjson (~8x the stdlib's speed), or the stdlib for what
    orjson refuses (integers beyond 64 bits, keys that are not strings), which raises
    TypeError or ValueError for what neither can encode."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:
        return json.dumps(obj, sort_keys=sort_keys, separators=(",", ":"), allow_nan=False).encode()


def obj(value: Any, what: str = "value") -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def field(m: Mapping[str, Any], name: str, typ: type[T] | tuple[type, ...], *, what: str = "value") -> T:
    """A required field of exactly the given JSON type (bool is not an int here)."""
    if name not in m:
        raise DecodeError(f"{what}: missing field {name!r}")
    return _typed(m[name], typ, f"{what}.{name}")


def opt(
    m: Mapping[str, Any], name: str, typ: type[T] | tuple[type, ...], default: T, *, what: str = "value"
) -> T:
    """An optional field: `default` when absent or null."""
    if m.get(name) is None:
        return default
    return _typed(m[name], typ, f"{what}.{name}")


def _typed(v: Any, typ: type[T] | tuple[type, ...], where: str) -> T:
    types = typ if isinstance(typ, tuple) else (typ,)
    if isinstance(v, bool) and bool not in types:
        raise DecodeError(f"{where}: expected {_names(types)}, got bool")
    if not isinstance(v, types):
        raise DecodeError(f"{where}: expected {_names(types)}, got {type(v).__name__}")
    return v  # type: ignore[return-value]


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def convert(what: str, fn: Callable[[], T]) -> T:
    """Run a constructor that may raise ValueError/TypeError (ip_address, IPv4Network...) and
    report failures as DecodeError."""
    try:
        return fn()
    except (ValueError, TypeError) as e:
        raise DecodeError(f"{what}: {e}") from e
