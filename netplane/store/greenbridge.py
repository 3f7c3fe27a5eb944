"""Blocking code run on an asyncio event loop, its I/O awaited: the greenlet bridge.

The API server's write path (`orchestrator.apiserver.registry`: admission, the applier, the
object store) is blocking code; it ran in a thread pool, and each etcd round trip it made was
handed back to the loop (`LoopBridgedStore`). Each of those hops costs a Future, a wake-up of
the other thread and a Condition: ~0.3 ms of CPU per write here (bench/results/api.md).
`run` instead runs the blocking function in a greenlet on the loop's own thread; where it
would wait for etcd, `wait` switches back to the loop with the coroutine, the loop awaits it
among its other work, and the greenlet goes on with the result. No thread is involved, and
the blocking code keeps its shape. This is SQLAlchemy's asyncio bridge (`greenlet_spawn` and
`await_only`), in small, except that a greenlet whose call is over waits, idle, for the next
one (up to `IDLE_MAX` per thread) instead of being made anew for each.

Only code whose waits all go through `wait` belongs here: anything else it blocks on (a lock
held by another thread, `time.sleep`, a blocking socket) stops the whole loop meanwhile.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import greenlet

T = TypeVar("T")

IDLE_MAX = 64  # idle greenlets kept per thread for the next `run`


_FINISHED = object()  # what a `_Bridged` switches to its driver with when its call is over


class _Bridged(greenlet.greenlet):
    """A greenlet that `run` drives, kept for the next call when done: a new greenlet costs
    its Python frame stack, a 16 KB mmap and munmap on CPython 3.11 (~10 µs a call here,
    against ~1 µs to switch into an idle one). Each call runs in a fresh, empty
    `contextvars.Context`, as a new greenlet would; `wait` inside it switches to `driver`."""

    def __init__(self) -> None:
        super().__init__(self._serve)
        self.driver: greenlet.greenlet | None = None
        self.outcome: tuple[bool, Any] | None = None  # (returned, its value or what it raised)

    def _serve(self, call: Callable[[], Any]) -> None:
        while True:
            try:
                self.outcome = (True, contextvars.Context().run(call))
            except greenlet.GreenletExit:
                raise
            except BaseException as e:  # noqa: BLE001 - handed to the caller of `run`
                self.outcome = (False, e)
            del call  # nothing of this call stays alive while the greenlet waits for the next
            driver, self.driver = self.driver, None
            assert driver is not None
            call = driver.switch(_FINISHED)


class _Idle(threading.local):
    """This thread's idle greenlets (a greenlet runs only on the thread that made it)."""

    def __init__(self) -> None:
        self.greenlets: list[_Bridged] = []


_idle = _Idle()


def inside() -> bool:
    """Whether the caller runs under `run` (so `wait` may be used)."""
    return isinstance(greenlet.getcurrent(), _Bridged)


def wait(awaitable: Awaitable[T]) -> T:
    """The result of `awaitable`, awaited by the loop that `run` this code (raising what it
    raised). Only under `run`: elsewhere a RuntimeError."""
    current = greenlet.getcurrent()
    if not isinstance(current, _Bridged) or current.driver is None:
        raise RuntimeError("greenbridge.wait outside greenbridge.run")
    return current.driver.switch(awaitable)


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on this loop's thread, each `wait` in it awaited here."""
    idle = _idle.greenlets
    child = idle.pop() if idle else _Bridged()
    child.driver = greenlet.getcurrent()
    pending = child.switch(lambda: fn(*args, **kwargs))
    while pending is not _FINISHED:
        try:
            value = await pending
        except BaseException:  # noqa: BLE001 - thrown into the greenlet, which may handle it
            pending = child.throw(*sys.exc_info())
        else:
            pending = child.switch(value)
    assert child.outcome is not None
    returned, result = child.outcome
    child.outcome = None
    if len(idle) < IDLE_MAX:
        idle.append(child)
    if not returned:
        raise result
    return result
