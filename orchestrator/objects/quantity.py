"""Kubernetes resource quantities ("100m", "0.5", "128Mi", "1G", "1e3"), parsed exactly.

Kubernetes keeps quantities as arbitrary-precision decimals and only rounds when a consumer asks
for an integer: `MilliValue()` is ceil(q * 1000), `Value()` is ceil(q). The scheduler and the
kubelet account cpu in millicores and memory in bytes, so those are the two integers we hand out.
Parsing goes through `fractions.Fraction`, never `float`, so "0.1" + "0.2" cpu is exactly 300m
and "1.5Gi" is exactly 1610612736 bytes.

Grammar (k8s.io/apimachinery/pkg/api/resource/quantity.go):

    <quantity>  ::= <sign>? <number> <suffix>
    <number>    ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>    ::= <binarySI> | <decimalSI> | <decimalExponent>
    <binarySI>  ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI> ::= n | u | m | "" | k | M | G | T | P | E
    <decimalExponent> ::= e <signedInt> | E <signedInt>

YAML and JSON manifests may also give a bare number (`cpu: 0.5`, `memory: 1000`); those are read
through their decimal text, so 0.1 stays one tenth.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from fractions import Fraction

_RE = re.compile(
    r"^(?P<sign>[+-])?(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<si>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exp>[+-]?[0-9]+))?$"
)

_SUFFIX: dict[str, Fraction] = {
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}

# Kubernetes caps quantities at what fits an int64 (and refuses absurd exponents); an exponent
# beyond this would only be a way to make Fraction arithmetic slow.
_MAX_EXPONENT = 64
MAX_VALUE = 2**63 - 1


class QuantityError(ValueError):
    """Not a quantity. The message is the detail Kubernetes gives for such a value."""


@dataclass(frozen=True, order=True)
class Quantity:
    """An exact quantity. `milli` / `value` round up like Kubernetes' MilliValue / Value."""

    amount: Fraction

    @property
    def milli(self) -> int:
        return math.ceil(self.amount * 1000)

    @property
    def value(self) -> int:
        return math.ceil(self.amount)

    def __str__(self) -> str:
        return format_quantity(self.amount)


_SYNTAX = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def parse_quantity(raw: str | float) -> Quantity:
    """Parse a quantity as a manifest gives it (string, or a YAML/JSON number)."""
    if isinstance(raw, bool):
        raise QuantityError(_SYNTAX)
    if isinstance(raw, int):
        return Quantity(Fraction(raw))
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise QuantityError("quantities must be finite")
        return _parse_text(repr(raw))
    if isinstance(raw, str):
        return _parse_text(raw)
    raise QuantityError(_SYNTAX)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Quantity:
    """A quantity's text parsed, remembered: a cluster's pods repeat a few ("100m", "64Mi"),
    admission parses each of them on every write, and a Quantity does not change. (What
    raises is not remembered.)"""
    m = _RE.match(text) if text == text.strip() else None
    if m is None:
        raise QuantityError(_SYNTAX)
    amount = Fraction(m["num"] if not m["num"].endswith(".") else m["num"][:-1])
    if m["si"]:
        amount *= _SUFFIX[m["si"]]
    elif m["exp"] is not None:
        exp = int(m["exp"])
        if abs(exp) > _MAX_EXPONENT:
            raise QuantityError("unable to parse quantity's suffix")
        amount *= Fraction(10) ** exp
    if m["sign"] == "-":
        amount = -amount
    if abs(amount) > MAX_VALUE:
        raise QuantityError("quantity is too large")
    return Quantity(amount)


def cpu_millis(raw: str | float) -> int:
    """CPU in millicores: "100m" -> 100, "0.5" -> 500, "1" -> 1000, "1e-4" -> 1 (rounded up)."""
    return parse_quantity(raw).milli


def memory_bytes(raw: str | float) -> int:
    """Memory in bytes: "128Mi" -> 134217728, "1G" -> 10**9, "1e3" -> 1000."""
    return parse_quantity(raw).value


def format_quantity(amount: Fraction) -> str:
    """A short exact text for an amount: whole numbers plain, else millis, else a fraction
    of nanos rounded up (what Kubernetes would store)."""
    if amount.denominator == 1:
        return str(amount.numerator)
    milli = amount * 1000
    if milli.denominator == 1:
        return f"{milli.numerator}m"
    return f"{math.ceil(amount * 10**9)}n"
