"""Copying objects: they are JSON trees (dicts, lists, strings, numbers, booleans, None), so a
plain recursive copy does what `copy.deepcopy` does at a fraction of its cost (no memo, no
reduce protocol): 2.4x faster on a pod (bench/results/api.md), and the API server and every
controller copy objects on each read-modify-write. Leaves are not recursed into: a pod's
strings and numbers, most of its values, cost one type test each (a quarter off a pod's copy)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson

T = TypeVar("T")

# immutable JSON leaves, tested by exact type (a subclass goes through `_copy`, which shares it)
_LEAVES = frozenset({str, int, float, bool, type(None)})


def copy(value: T) -> T:
    """A deep copy of a JSON tree (tuples stay tuples; anything else is shared, as immutable)."""
    out: T = _copy(value)
    return out


def copy_decoded(value: T) -> T:
    """A deep copy of a tree decoded from JSON, through orjson: 6 against 13 µs for a stored
    pod here. Only for such a tree: orjson writes NaN and infinities as null and a tuple as a
    list, and decoded JSON holds none; what orjson cannot encode (an integer beyond 64 bits,
    a lone surrogate, a key that is not a string) is copied by `copy`."""
    try:
        out: T = orjson.loads(orjson.dumps(value))
    except TypeError:  # orjson.JSONEncodeError
        return copy(value)
    return out


def own(obj: Mapping[str, Any], adopt: bool) -> dict[str, Any]:
    """An object to change and keep: `obj` itself when the caller gives it away (`adopt`: a
    dict made for this one write and shared with nothing), else a deep copy."""
    return obj if adopt and isinstance(obj, dict) else _copy(dict(obj))


def _copy(v: Any) -> Any:
    t = type(v)
    if t is dict:
        return {k: x if type(x) in _LEAVES else _copy(x) for k, x in v.items()}
    if t is list:
        return [x if type(x) in _LEAVES else _copy(x) for x in v]
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_copy(x) for x in v)
    return v
