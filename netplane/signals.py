"""Stopping a daemon on SIGTERM/SIGINT without the deadlock `lambda *_: stop.set()` can hit.

A Python signal handler runs in the main thread between two bytecodes, wherever that thread
is. `threading.Event.set()` takes the event's (non-reentrant) lock; when the main thread is at
that moment inside `stop.wait()` or `stop.set()` holding the same lock (the few bytecodes
before it blocks, or after it wakes), the handler waits for a lock its own thread holds,
forever: the process ignores SIGTERM until it is killed. Seen once in CI as an agent that
logged nothing when told to stop and was SIGKILLed 10 s later (its lease kept, but not by its
own shutdown). So the handler hands `set()` to a new thread, which takes the lock as soon as
the main thread lets go of it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType

Handler = Callable[[int, FrameType | None], None]


def set_later(event: threading.Event) -> Handler:
    """A signal handler that sets `event` from a thread of its own (see the module docstring)."""
    def handler(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=event.set, name=f"signal-{signum}", daemon=True).start()

    return handler


def stop_on(event: threading.Event, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Set `event` when one of `signals` arrives (main thread only, as `signal.signal`)."""
    handler = set_later(event)
    for sig in signals:
        signal.signal(sig, handler)
