"""Kubernetes' protobuf request bodies (`application/vnd.kubernetes.protobuf`) as the JSON
objects the rest of the API handles.

client-go's typed clients send them: `kubectl create namespace`, `create service` and
`create role|rolebinding|clusterrole|clusterrolebinding`, and
every Go program using a typed clientset to create, update or delete (its DeleteOptions) pods,
services, nodes, endpoints or events. The wire form (k8s.io/apimachinery's protobuf serializer)
is the magic `k8s\\x00`, then a `runtime.Unknown` {1: TypeMeta {1: apiVersion, 2: kind},
2: raw, 3: contentEncoding, 4: contentType} whose raw bytes are the object's message.

The messages are read with the field layout of the Go types (`k8s-proto-schema.json`, made by
scripts/gen-k8s-proto-schema.py from k8s.io/api and apimachinery v0.33.9), so the JSON is what
Go's encoding/json would make of the decoded struct: a non-pointer field is always on the
wire, its zero value meaning "unset" (dropped here, as `omitempty` drops it); a pointer field is
on the wire only when set, so a zero there is kept (`replicas: 0`, `terminationGracePeriodSeconds:
0`, `enableServiceLinks: false`). Inline fields (a Volume's VolumeSource, a Probe's handler) are
merged into their parent. Time is RFC 3339, Quantity its string, IntOrString an int or a
string, []byte base64, FieldsV1 its JSON. Unknown field numbers (a newer client) are skipped,
as protobuf does. Nothing here writes protobuf: answers are JSON, which client-go accepts.
"""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_SCHEMA = Path(__file__).with_name("k8s-proto-schema.json")
# (apiVersion, kind) of a request body -> its message; every other kind of core/v1 by name
_META_KINDS = {"DeleteOptions": "meta/v1.DeleteOptions"}
_GROUPS = {"v1": "core/v1", "policy/v1": "policy/v1", "policy/v1beta1": "policy/v1",
           "autoscaling/v1": "autoscaling/v1", "meta.k8s.io/v1": "meta/v1",
           "authorization.k8s.io/v1": "authorization/v1", "authentication.k8s.io/v1": "authentication/v1",
           "coordination.k8s.io/v1": "coordination/v1", "rbac.authorization.k8s.io/v1": "rbac/v1"}


class ProtobufError(ValueError):
    """A body that is not a Kubernetes protobuf object this server reads (one line)."""


@cache
def _types() -> dict[str, dict[str, list[str]]]:
    types: dict[str, dict[str, list[str]]] = json.loads(_SCHEMA.read_text())["types"]
    return types


def decode(body: bytes) -> dict[str, Any]:
    """The object in a protobuf request body, with its apiVersion and kind."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf prefix")
    unknown = _fields_by_number(body[len(MAGIC):])
    type_meta = _fields_by_number(_only(unknown, 1, b""))
    api_version = _text(_only(type_meta, 1, b""))
    kind = _text(_only(type_meta, 2, b""))
    if _only(unknown, 3, b""):
        raise ProtobufError(f"content encoding {_text(unknown[3][0])!r} is not supported")
    name = _META_KINDS.get(kind) if api_version in ("v1", "meta.k8s.io/v1") else None
    if name is None and api_version in _GROUPS:
        name = f"{_GROUPS[api_version]}.{kind}"
    if name is None or name not in _types():
        raise ProtobufError(f"a {api_version or '(no apiVersion)'}, Kind={kind or '(none)'} is not read here")
    obj = _message(name, _only(unknown, 2, b""))
    return {"apiVersion": api_version, "kind": kind, **obj}


# --------------------------------------------------------------------------- wire
def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(data):
            raise ProtobufError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) in wire order: an int for varints and fixed-size
    numbers (their raw bits), bytes for length-delimited values."""
    out: list[tuple[int, int, int | bytes]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(data, i)
            out.append((number, wire, v))
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise ProtobufError("truncated field")
            out.append((number, wire, data[i:i + n]))
            i += n
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if i + size > len(data):
                raise ProtobufError("truncated field")
            out.append((number, wire, int.from_bytes(data[i:i + size], "little")))
            i += size
        else:
            raise ProtobufError(f"wire type {wire} is not used by Kubernetes objects")
    return out


def _fields_by_number(data: bytes) -> dict[int, list[int | bytes]]:
    by: dict[int, list[int | bytes]] = {}
    for number, _wire, value in _fields(data):
        by.setdefault(number, []).append(value)
    return by


def _only(fields: dict[int, list[int | bytes]], number: int, default: bytes) -> bytes:
    values = fields.get(number)
    if not values:
        return default
    v = values[-1]
    if not isinstance(v, bytes):
        raise ProtobufError(f"field {number} is not length-delimited")
    return v


def _num(fields: dict[int, list[int | bytes]], number: int) -> int:
    values = fields.get(number)
    if not values:
        return 0
    v = values[-1]
    if isinstance(v, bytes):
        raise ProtobufError(f"field {number} is length-delimited, not a number")
    return v


def _text(raw: int | bytes) -> str:
    if not isinstance(raw, bytes):
        raise ProtobufError("a string field is not length-delimited")
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        raise ProtobufError(f"a string is not UTF-8: {e}") from None


# --------------------------------------------------------------------------- values
def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(typ: str, wire: int, raw: int | bytes) -> Any:
    if typ == "string":
        return _text(raw)
    if typ == "bytes":
        if not isinstance(raw, bytes):
            raise ProtobufError("a bytes field is not length-delimited")
        return base64.b64encode(raw).decode()
    if isinstance(raw, bytes):
        raise ProtobufError(f"a {typ} field is length-delimited")
    if typ == "int":
        return _signed(raw)
    if typ == "uint":
        return raw
    if typ == "bool":
        return raw != 0
    if typ == "float":
        return struct.unpack("<d" if wire == 1 else "<f", raw.to_bytes(8 if wire == 1 else 4, "little"))[0]
    raise ProtobufError(f"unknown scalar type {typ}")


def _packed(typ: str, raw: bytes) -> list[Any]:
    """A packed repeated number field (proto3 style; gogo writes them unpacked, accepted both ways)."""
    out: list[Any] = []
    i = 0
    while i < len(raw):
        if typ == "float":
            out.append(struct.unpack("<d", raw[i:i + 8])[0])
            i += 8
        else:
            v, i = _varint(raw, i)
            out.append(_scalar(typ, 0, v))
    return out


def _time(raw: bytes, micro: bool) -> str | None:
    f = _fields_by_number(raw)
    seconds, nanos = _signed(_num(f, 1)), _num(f, 2)
    if seconds == 0 and nanos == 0:
        return None  # Go's zero time: null, omitted
    try:
        t = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        if seconds == -62135596800:  # 0001-01-01T00:00:00Z, how a zero time may arrive
            return None
        raise ProtobufError(f"a time of {seconds} s is out of range") from None
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _special(typ: str, raw: int | bytes) -> Any:
    if not isinstance(raw, bytes):
        raise ProtobufError(f"a {typ} is not length-delimited")
    if typ in ("Time", "MicroTime"):
        return _time(raw, typ == "MicroTime")
    f = _fields_by_number(raw)
    if typ == "Quantity":
        return _text(_only(f, 1, b""))
    if typ == "IntOrString":
        if _num(f, 1) == 1:
            return _text(_only(f, 3, b""))
        return _signed(_num(f, 2))
    if typ in ("RawExtension", "FieldsV1"):
        inner = _only(f, 1, b"")
        try:
            return json.loads(inner) if inner else None
        except ValueError as e:
            raise ProtobufError(f"a {typ} is not JSON: {e}") from None
    raise ProtobufError(f"unknown type {typ}")


def _value(typ: str, wire: int, raw: int | bytes) -> Any:
    if typ.startswith("list:"):  # a named slice as a map value: {1: repeated}
        if not isinstance(raw, bytes):
            raise ProtobufError("a list value is not length-delimited")
        return [_value(typ[5:], w, v) for n, w, v in _fields(raw) if n == 1]
    if "/" in typ:
        if not isinstance(raw, bytes):
            raise ProtobufError(f"a {typ} is not length-delimited")
        return _message(typ, raw)
    if typ[0].isupper():
        return _special(typ, raw)
    return _scalar(typ, wire, raw)


def _zero(typ: str, v: Any) -> bool:
    """Go's zero value for a non-pointer field (what `omitempty` leaves out)."""
    if v is None:
        return True
    if typ in ("string", "bytes", "int", "uint", "bool", "float"):
        return not v
    return typ == "IntOrString" and v == 0


def _message(name: str, data: bytes) -> dict[str, Any]:
    layout = _types()[name]
    out: dict[str, Any] = {}
    for number, wire, raw in _fields(data):
        field = layout.get(str(number))
        if field is None:
            continue
        key, typ, flags = field
        if typ.startswith("map:"):
            if not isinstance(raw, bytes):
                raise ProtobufError(f"{name}.{key}: a map entry is not length-delimited")
            entry = {n: (w, v) for n, w, v in _fields(raw)}
            k = _text(entry[1][1]) if 1 in entry else ""
            vtyp = typ[4:]
            w, v = entry.get(2, (2, b""))
            out.setdefault(key, {})[k] = _value(vtyp, w, v) if 2 in entry or vtyp == "string" else None
            continue
        if "r" in flags:
            items = out.setdefault(key, [])
            if wire == 2 and typ in ("int", "uint", "bool", "float") and isinstance(raw, bytes):
                items.extend(_packed(typ, raw))
            else:
                items.append(_value(typ, wire, raw))
            continue
        value = _value(typ, wire, raw)
        if "i" in flags:
            out.update(value)
        elif "p" in flags:
            if value is not None:
                out[key] = value
        elif not _zero(typ, value):
            out[key] = value
        else:
            out.pop(key, None)  # the last occurrence wins, as protobuf has it
    return out
