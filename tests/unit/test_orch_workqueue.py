"""client-go work queue semantics: fair, stingy, delaying, rate limited, clean shutdown."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from orchestrator.workqueue import ItemExponentialBackoff, MaxOf, TokenBucket, WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(q: WorkQueue[str]) -> list[str]:
    out = []
    while (k := q.get(timeout=0)) is not None:
        out.append(k)
        q.done(k)
    return out


def test_fifo_in_first_added_order() -> None:
    q: WorkQueue[str] = WorkQueue()
    for k in ("c", "a", "b"):
        q.add(k)
    assert len(q) == 3
    assert drain(q) == ["c", "a", "b"]


def test_added_many_times_before_processing_is_processed_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    for k in ("a", "b", "a", "a", "b", "c"):
        q.add(k)
    assert len(q) == 3
    assert drain(q) == ["a", "b", "c"]


def test_readded_while_in_flight_comes_back_after_done_not_before() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0  # not handed to a second worker while in flight
    assert q.get(timeout=0) is None
    q.done("a")
    assert len(q) == 1
    assert q.get(timeout=0) == "a"
    q.done("a")
    assert q.get(timeout=0) is None


def test_in_flight_key_requeued_after_other_keys() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    k = q.get(timeout=0)
    q.add("b")
    q.add("a")
    q.done(k)  # type: ignore[arg-type]
    assert drain(q) == ["b", "a"]


def test_threaded_workers_never_share_a_key_and_see_every_change() -> None:
    """8 workers, 20 keys added 2,000 times from 4 producers: a key is never in two workers at
    once, and every key is processed after its last add (nothing lost)."""
    q: WorkQueue[int] = WorkQueue()
    lock = threading.Lock()
    active: set[int] = set()
    overlap: list[int] = []
    processed: Counter[int] = Counter()
    last_add: dict[int, float] = {}
    last_start: dict[int, float] = {}

    def worker() -> None:
        while (k := q.get()) is not None:
            with lock:
                if k in active:
                    overlap.append(k)
                active.add(k)
                last_start[k] = time.monotonic()
            time.sleep(0.0005)
            with lock:
                active.discard(k)
                processed[k] += 1
            q.done(k)

    def producer(seed: int) -> None:
        for i in range(500):
            k = (i * 7 + seed) % 20
            with lock:
                last_add[k] = time.monotonic()
            q.add(k)

    workers = [threading.Thread(target=worker) for _ in range(8)]
    for t in workers:
        t.start()
    producers = [threading.Thread(target=producer, args=(s,)) for s in range(4)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    assert q.shutdown_with_drain(timeout=10)
    # let workers hand out what is still queued, then stop
    for t in workers:
        t.join(timeout=10)
        assert not t.is_alive()
    assert overlap == []
    assert set(processed) == set(range(20))
    assert sum(processed.values()) < 2000  # stingy: far fewer runs than adds
    for k, added in last_add.items():
        assert last_start[k] >= added, f"key {k} changed after its last run started"


def test_shutdown_wakes_every_waiter() -> None:
    q: WorkQueue[str] = WorkQueue()
    results: list[str | None] = []
    ts = [threading.Thread(target=lambda: results.append(q.get())) for _ in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    q.shutdown()
    for t in ts:
        t.join(timeout=2)
    assert results == [None, None, None]
    assert time.monotonic() - t0 < 1


def test_after_shutdown_queued_keys_still_come_out_new_ones_are_ignored() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add_after("later", 0.01)
    q.shutdown()
    q.add("b")
    assert q.shutting_down
    assert q.get() == "a"
    q.done("a")
    assert q.get() is None  # delayed keys are dropped, "b" was ignored


def test_shutdown_with_drain_waits_for_in_flight() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    k = q.get()
    assert not q.shutdown_with_drain(timeout=0.05)
    threading.Timer(0.05, q.done, args=(k,)).start()
    assert q.shutdown_with_drain(timeout=2)


def test_add_after_with_fake_clock_earliest_deadline_wins() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("b", 5)
    q.add_after("a", 3)  # earlier wins
    q.add_after("b", 50)  # later is ignored
    assert q.get(timeout=0) is None
    clock.now += 3
    assert drain(q) == ["a"]
    clock.now += 2
    assert drain(q) == ["b"]
    clock.now += 100
    assert drain(q) == []  # the superseded deadlines do not fire again
    q.add_after("c", 0)
    assert drain(q) == ["c"]


def test_delayed_key_wakes_a_blocked_get_in_real_time() -> None:
    q: WorkQueue[str] = WorkQueue()
    t0 = time.monotonic()
    q.add_after("a", 0.05)
    assert q.get(timeout=2) == "a"
    assert 0.04 <= time.monotonic() - t0 < 1


def test_delayed_key_already_queued_is_not_duplicated() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add("a")
    q.add_after("a", 1)
    clock.now += 1
    assert drain(q) == ["a"]


def test_item_exponential_backoff_like_client_go() -> None:
    b: ItemExponentialBackoff[str] = ItemExponentialBackoff()
    delays = [b.when("k") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[17] == pytest.approx(0.005 * 2**17)  # 655 s
    assert delays[18] == 1000.0 and delays[19] == 1000.0
    assert b.num_requeues("k") == 20 and b.when("other") == 0.005
    b.forget("k")
    assert b.num_requeues("k") == 0 and b.when("k") == 0.005
    for _ in range(100):
        b.when("x")
    assert b.when("x") == 1000.0


def test_token_bucket_burst_then_qps() -> None:
    clock = FakeClock()
    tb: TokenBucket[str] = TokenBucket(qps=10, burst=3, clock=clock)
    assert [tb.when("k") for _ in range(3)] == [0, 0, 0]
    assert tb.when("k") == pytest.approx(0.1)
    assert tb.when("k") == pytest.approx(0.2)
    clock.now += 1.0  # refills to burst only
    assert [tb.when("k") for _ in range(3)] == [0, 0, 0]


def test_add_rate_limited_and_forget() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock, rate_limiter=MaxOf(ItemExponentialBackoff(base=1, cap=8)))
    for expect_delay in (1, 2, 4, 8, 8):
        q.add_rate_limited("k")
        clock.now += expect_delay - 0.001
        assert q.get(timeout=0) is None
        clock.now += 0.001
        assert q.get(timeout=0) == "k"
        q.done("k")
    assert q.num_requeues("k") == 5
    q.forget("k")
    assert q.num_requeues("k") == 0
    q.add_rate_limited("k")
    clock.now += 1
    assert drain(q) == ["k"]


def test_default_limiter_is_client_go_default() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_rate_limited("k")
    clock.now += 0.004
    assert q.get(timeout=0) is None
    clock.now += 0.001
    assert q.get(timeout=0) == "k"
