"""Stopping on a signal (netplane.signals): the handler never waits for the event's lock, which
the main thread may hold at the moment the signal is handled (`Event.set()` there deadlocks)."""

from __future__ import annotations

import os
import signal
import threading

from netplane import signals


def test_the_handler_does_not_block_while_its_thread_holds_the_events_lock() -> None:
    stop = threading.Event()
    handler = signals.set_later(stop)
    done = threading.Event()

    def main_thread_inside_wait() -> None:
        # where the main thread is during the first bytecodes of stop.wait(): holding the lock
        # that set() takes (threading.Event's Condition over a plain Lock)
        with stop._cond:  # type: ignore[attr-defined]
            handler(signal.SIGTERM, None)  # a plain stop.set() here would never return
            done.set()
            assert not stop.is_set()  # it cannot be set while the lock is held
        assert stop.wait(5)

    t = threading.Thread(target=main_thread_inside_wait, daemon=True)
    t.start()
    t.join(10)
    assert done.is_set() and not t.is_alive() and stop.is_set()


def test_a_real_sigterm_sets_the_event() -> None:
    stop = threading.Event()
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        signals.stop_on(stop)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
