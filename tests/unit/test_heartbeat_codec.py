"""The node heartbeat's value: what agents write, what the controller and the Lease view read,
old values (renewTime only) included, malformed ones refused without an exception."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator import heartbeat

T = datetime(2026, 12, 3, 8, 0, 0, 5, UTC)


def test_round_trip_with_and_without_the_lease_fields() -> None:
    full = heartbeat.read(heartbeat.encode(T, duration=40, since=T.replace(hour=7)).encode())
    assert full == heartbeat.Beat(T, 40, T.replace(hour=7))
    assert heartbeat.read(b'{"renewTime": "2026-12-03T08:00:00.000005Z"}') == heartbeat.Beat(T)
    assert heartbeat.decode(heartbeat.encode(T).encode()) == T
    assert heartbeat.encode(T) == '{"renewTime": "2026-12-03T08:00:00.000005Z"}'


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"{}", b'{"renewTime": "yesterday"}',
                                 b'{"renewTime": "2026-12-03T08:00:00Z", "leaseDurationSeconds": "40"}',
                                 b'{"renewTime": "2026-12-03T08:00:00Z", "leaseDurationSeconds": true}',
                                 b'{"renewTime": "2026-12-03T08:00:00Z", "since": 5}'])
def test_malformed_values_are_none(raw: bytes) -> None:
    assert heartbeat.read(raw) is None
    assert heartbeat.decode(raw) is None
