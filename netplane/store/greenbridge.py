"""Blocking code run on an asyncio event loop, its I/O awaited: the greenlet bridge.

The API server's write path (`orchestrator.apiserver.registry`: admission, the applier, the
object store) is blocking code; it ran in a thread pool, and each etcd round trip it made was
handed back to the loop (`LoopBridgedStore`). Each of those hops costs a Future, a wake-up of
the other thread and a Condition: ~0.3 ms of CPU per write here (bench/results/api.md).
`run` instead runs the blocking function in a greenlet on the loop's own thread; where it
would wait for etcd, `wait` switches back to the loop with the coroutine, the loop awaits it
among its other work, and the greenlet goes on with the result. No thread is involved, and
the blocking code keeps its shape. This is SQLAlchemy's asyncio bridge (`greenlet_spawn` and
`await_only`), in small.

Only code whose waits all go through `wait` belongs here: anything else it blocks on (a lock
held by another thread, `time.sleep`, a blocking socket) stops the whole loop meanwhile.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import greenlet

T = TypeVar("T")


class _Bridged(greenlet.greenlet):
    """A greenlet that `run` drives: `wait` inside it switches to `driver`."""

    def __init__(self, fn: Callable[..., Any], driver: greenlet.greenlet) -> None:
        super().__init__(fn, driver)
        self.driver = driver


def inside() -> bool:
    """Whether the caller runs under `run` (so `wait` may be used)."""
    return isinstance(greenlet.getcurrent(), _Bridged)


def wait(awaitable: Awaitable[T]) -> T:
    """The result of `awaitable`, awaited by the loop that `run` this code (raising what it
    raised). Only under `run`: elsewhere a RuntimeError."""
    current = greenlet.getcurrent()
    if not inside():
        raise RuntimeError("greenbridge.wait outside greenbridge.run")
    return current.driver.switch(awaitable)


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on this loop's thread, each `wait` in it awaited here."""
    child = _Bridged(lambda: fn(*args, **kwargs), greenlet.getcurrent())
    pending = child.switch()
    while not child.dead:
        try:
            value = await pending
        except BaseException:  # noqa: BLE001 - thrown into the greenlet, which may handle it
            pending = child.throw(*sys.exc_info())
        else:
            pending = child.switch(value)
    return pending
