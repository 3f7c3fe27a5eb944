"""Kubernetes quantities: exact parsing, rounding up like MilliValue/Value, rejects."""

from __future__ import annotations

from fractions import Fraction

import pytest

from orchestrator.objects.quantity import (
    QuantityError,
    cpu_millis,
    format_quantity,
    memory_bytes,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("raw", "millis"),
    [
        ("100m", 100), ("0.5", 500), ("1", 1000), ("2.5", 2500), (".1", 100), ("1.", 1000),
        ("1e-4", 1), ("0.0001", 1), ("1500u", 2), ("250000000n", 250), ("1k", 1_000_000),
        ("+2", 2000), (0.5, 500), (2, 2000), (0.1, 100), ("1e0", 1000), ("0", 0),
    ],
)
def test_cpu_millicores(raw: str | float, millis: int) -> None:
    assert cpu_millis(raw) == millis


@pytest.mark.parametrize(
    ("raw", "nbytes"),
    [
        ("128Mi", 128 * 2**20), ("1Gi", 2**30), ("1.5Gi", 1610612736), ("1G", 10**9),
        ("1e3", 1000), ("1E3", 1000), ("129M", 129_000_000), ("64Ki", 65536), ("1Ti", 2**40),
        ("1Ei", 2**60), ("0.5", 1), ("1500m", 2), (1000, 1000), ("12e6", 12_000_000),
    ],
)
def test_memory_bytes(raw: str | int, nbytes: int) -> None:
    assert memory_bytes(raw) == nbytes


def test_exact_sum_has_no_float_error() -> None:
    total = parse_quantity("0.1").amount + parse_quantity("0.2").amount
    assert total == Fraction(3, 10)
    assert parse_quantity(0.1).amount + parse_quantity(0.2).amount == Fraction(3, 10)


def test_negative_parses_and_rounds_toward_plus_infinity() -> None:
    assert parse_quantity("-1.5").amount == Fraction(-3, 2)
    assert parse_quantity("-1500u").milli == -1


@pytest.mark.parametrize(
    "raw", ["", " 1", "1 ", "abc", "1Kb", "1mi", "1KiB", "--1", "1e", "1e1.5", "1.2.3",
            "Mi", ".", "1e65", "1e9999999", "1Gi1", True, float("inf"), float("nan")],
)
def test_rejects(raw: str | float) -> None:
    for _ in range(2):  # parsed texts are remembered; a refusal is not, and is refused again
        with pytest.raises(QuantityError):
            parse_quantity(raw)


def test_a_remembered_text_is_the_same_value() -> None:
    first = parse_quantity("250m")
    assert parse_quantity("250m") == first and first.milli == 250
    assert parse_quantity(0.25) == first  # a number goes by its text
    with pytest.raises(QuantityError):  # neither text nor number: refused, not a TypeError
        parse_quantity([1])  # type: ignore[arg-type]


def test_too_large_rejected() -> None:
    with pytest.raises(QuantityError, match="too large"):
        parse_quantity("9Ei")


def test_format() -> None:
    assert format_quantity(Fraction(3)) == "3"
    assert format_quantity(Fraction(1, 2)) == "500m"
    assert format_quantity(Fraction(1, 3)) == "333333334n"
    assert str(parse_quantity("100m")) == "100m"
