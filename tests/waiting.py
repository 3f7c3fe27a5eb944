"""Waiting on an event instead of on time: poll a condition until it holds, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition", *, interval: float = 0.05) -> Any:
    """Call `cond` until it returns something truthy, and return that; fail naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(interval)
