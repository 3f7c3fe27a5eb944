"""The etcd client with several endpoints, and with an etcd that stops answering.

README (Dependency notes): "Our own channel gives multi-endpoint failover, keepalives that
notice a dead etcd in seconds". Two independent real etcd servers stand in for two members:
what is under test is the client's choice of endpoint, not etcd's replication.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from netplane.errors import StoreError
from netplane.store import EtcdConfig, EtcdStore
from netplane.store.embedded import EmbeddedEtcd
from netplane.store.etcd import WatchEvent
from tests.waiting import wait_for

# what "in seconds" has to mean for a watch on a hung etcd: a keepalive ping every 10 s
# while a call is open (etcd's policy allows no more) and 3 s for its answer, plus slack
HUNG_BOUND = 16.0


def _watch_in_thread(
    s: EtcdStore, prefix: str, stop: threading.Event, events: list[WatchEvent], errors: list[tuple[float, StoreError]]
) -> threading.Thread:
    start = s.status()["revision"]
    assert isinstance(start, int)

    def run() -> None:
        try:
            for batch in s.watch(prefix, start_revision=start + 1, stop=stop):
                events.extend(batch)
        except StoreError as e:
            errors.append((time.monotonic(), e))

    t = threading.Thread(target=run, name="test-watch", daemon=True)
    t.start()
    return t


def _value(e: EmbeddedEtcd, key: str) -> bytes | None:
    with EtcdStore(EtcdConfig(endpoints=(e.endpoint,), timeout=2.0)) as one:
        kv = one.get(key)
        return kv.value if kv is not None else None


def test_calls_go_to_the_other_endpoint_when_one_etcd_is_down(etcd_factory: Callable[[], EmbeddedEtcd]) -> None:
    a, b = etcd_factory(), etcd_factory()
    s = EtcdStore(EtcdConfig(endpoints=(a.endpoint, b.endpoint), timeout=2.0))
    try:
        # both endpoints carry calls (round robin): each server has seen some of these puts
        for i in range(10):
            s.put("/fo/spread", str(i))
        assert _value(a, "/fo/spread") is not None and _value(b, "/fo/spread") is not None

        a.stop()
        for i in range(20):
            t0 = time.monotonic()
            s.put(f"/fo/k{i}", str(i))
            kv = s.get(f"/fo/k{i}")
            assert kv is not None and kv.value == str(i).encode()
            assert time.monotonic() - t0 < 1.0, f"call {i} waited on the stopped endpoint"
        assert _value(b, "/fo/k19") == b"19"
        # a watch opened now runs on the remaining endpoint
        stop = threading.Event()
        events: list[WatchEvent] = []
        errors: list[tuple[float, StoreError]] = []
        t = _watch_in_thread(s, "/fo/w/", stop, events, errors)
        s.put("/fo/w/x", "1")
        wait_for(lambda: any(e.key == "/fo/w/x" for e in events) or bool(errors), what="the watch event")
        assert not errors, errors
        stop.set()
        t.join(5)

        # with no endpoint left: one StoreError naming both, after the call timeout at most
        b.stop()
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="cannot reach etcd") as exc:
            s.put("/fo/none", "x")
        assert time.monotonic() - t0 < 3.0
        assert a.endpoint in str(exc.value) and b.endpoint in str(exc.value)
    finally:
        s.close()


def test_a_hung_etcd_is_noticed_within_seconds(etcd_factory: Callable[[], EmbeddedEtcd]) -> None:
    """SIGSTOP (a hung server or a lost link: the TCP connection stays up, nothing answers).
    An open watch on it must fail, and a two-endpoint client must move its calls to the other
    endpoint, both within HUNG_BOUND seconds."""
    a, b = etcd_factory(), etcd_factory()
    watcher = EtcdStore(EtcdConfig(endpoints=(a.endpoint,), timeout=2.0))
    pair = EtcdStore(EtcdConfig(endpoints=(a.endpoint, b.endpoint), timeout=2.0))
    stop = threading.Event()
    assert a.pid is not None
    try:
        for i in range(4):
            pair.put("/hung/warm", str(i))
        events: list[WatchEvent] = []
        errors: list[tuple[float, StoreError]] = []
        t = _watch_in_thread(watcher, "/hung/", stop, events, errors)
        watcher.put("/hung/x", "1")
        wait_for(lambda: bool(events), what="the watch to be established")

        os.kill(a.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        in_a_row = 0
        recovered: float | None = None
        while time.monotonic() - t0 < HUNG_BOUND and (recovered is None or not errors):
            if recovered is None:
                c0 = time.monotonic()
                try:
                    pair.put("/hung/k", "v")
                    in_a_row = in_a_row + 1 if time.monotonic() - c0 < 1.0 else 0
                except StoreError:
                    in_a_row = 0
                if in_a_row == 10:
                    recovered = time.monotonic() - t0
            else:
                time.sleep(0.05)
        problems = []
        if not errors or errors[0][0] - t0 >= HUNG_BOUND:
            problems.append(f"the watch on the hung etcd is still open after {HUNG_BOUND:.0f} s")
        elif "cannot reach etcd" not in str(errors[0][1]):
            problems.append(f"the watch ended with {errors[0][1]}")
        if recovered is None:
            problems.append(f"calls still go to the hung endpoint after {HUNG_BOUND:.0f} s")
        assert not problems, problems
        stop.set()
        t.join(5)
    finally:
        os.kill(a.pid, signal.SIGCONT)
        stop.set()
        watcher.close()
        pair.close()
