"""client-go's work queue (k8s.io/client-go/util/workqueue), with its exact semantics.

Controllers queue *keys* ("default/web"), never objects: the worker reads the latest state
from its cache when it gets the key, so ten changes before a worker is free cost one
reconcile. The queue is

* **fair** — keys come out in the order they were first added;
* **stingy** — a key added many times before it is processed is processed once (the *dirty*
  set), and a key being processed is never handed to a second worker (the *processing* set); a
  key re-added while in flight goes back in the queue when its worker calls `done`;
* **delaying** — `add_after(key, seconds)` (an earlier deadline for the same key wins);
* **rate limited** — `add_rate_limited(key)` waits as long as the limiter says: by default
  client-go's `DefaultControllerRateLimiter`, the max of a per-key exponential back-off (5 ms
  doubling to 1000 s, reset by `forget`) and an overall token bucket (10 qps, burst 100);
* **shut down cleanly** — `shutdown()` wakes every waiting worker; keys still queued are
  handed out (like client-go), delayed ones are dropped, `add` is ignored, and `get` returns
  None once the queue is empty. `shutdown_with_drain()` also waits for in-flight keys.

Delays need no timer thread: a waiting `get` sleeps until the next deadline. The clock is
injectable (monotonic seconds), so back-off is testable without sleeping.

    while (key := q.get()) is not None:
        try:
            reconcile(key)
            q.forget(key)
        except Exception:
            q.add_rate_limited(key)
        finally:
            q.done(key)
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
Clock = Callable[[], float]

DEFAULT_BASE_DELAY = 0.005
DEFAULT_MAX_DELAY = 1000.0
DEFAULT_QPS = 10.0
DEFAULT_BURST = 100


class RateLimiter(Protocol[K]):  # type: ignore[misc]
    def when(self, key: K) -> float:
        """Seconds to wait before this key may be retried (counts one more failure)."""
        ...

    def forget(self, key: K) -> None:
        """The key succeeded: reset its failure count."""
        ...

    def num_requeues(self, key: K) -> int: ...


class ItemExponentialBackoff(Generic[K]):
    """base · 2^failures, capped (client-go ItemExponentialFailureRateLimiter)."""

    def __init__(self, base: float = DEFAULT_BASE_DELAY, cap: float = DEFAULT_MAX_DELAY) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[K, int] = {}
        self._lock = threading.Lock()

    def when(self, key: K) -> float:
        with self._lock:
            exp = self._failures.get(key, 0)
            self._failures[key] = exp + 1
        if exp > 62:  # 2**exp would only overflow the comparison below
            return self.cap
        return min(self.base * (2**exp), self.cap)

    def forget(self, key: K) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        with self._lock:
            return self._failures.get(key, 0)


class TokenBucket(Generic[K]):
    """An overall limit for all keys (client-go BucketRateLimiter over x/time/rate): a token per
    retry, refilled at `qps` up to `burst`; a retry without a token waits for one."""

    def __init__(self, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST, *,
                 clock: Clock = time.monotonic) -> None:
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def when(self, key: K) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, key: K) -> None:
        return None

    def num_requeues(self, key: K) -> int:
        return 0


class MaxOf(Generic[K]):
    """The longest wait of several limiters (client-go MaxOfRateLimiter)."""

    def __init__(self, *limiters: RateLimiter[K]) -> None:
        self.limiters = limiters

    def when(self, key: K) -> float:
        return max(lim.when(key) for lim in self.limiters)

    def forget(self, key: K) -> None:
        for lim in self.limiters:
            lim.forget(key)

    def num_requeues(self, key: K) -> int:
        return max(lim.num_requeues(key) for lim in self.limiters)


def default_rate_limiter(clock: Clock = time.monotonic) -> MaxOf[K]:
    """client-go's DefaultControllerRateLimiter."""
    return MaxOf(ItemExponentialBackoff(), TokenBucket(clock=clock))


class WorkQueue(Generic[K]):
    """Fair, stingy, delaying, rate-limited queue of keys. Thread-safe."""

    def __init__(self, *, rate_limiter: RateLimiter[K] | None = None,
                 clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._limiter: RateLimiter[K] = rate_limiter if rate_limiter is not None else default_rate_limiter(clock)
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiting: list[tuple[float, int, K]] = []  # heap of (ready_at, seq, key)
        self._ready_at: dict[K, float] = {}
        self._seq = itertools.count()
        self._shutting_down = False

    # ------------------------------------------------------------------ basic queue
    def add(self, key: K) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._cond.notify()

    def get(self, timeout: float | None = None) -> K | None:
        """The next key, marked in flight until `done(key)`. Blocks until one is ready; None
        when the queue is shut down and empty, or when `timeout` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_locked()
                if self._queue or self._shutting_down:
                    break
                wait = self._next_wait_locked()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            if not self._queue:
                return None
            key = self._queue.popleft()
            self._processing.add(key)
            self._dirty.discard(key)
            return key

    def done(self, key: K) -> None:
        """The worker finished `key`; if it was added meanwhile, queue it again."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()
            elif not self._processing:
                self._cond.notify_all()  # shutdown_with_drain waits for this

    def __len__(self) -> int:
        """Keys ready to be handed out (not in flight, not delayed)."""
        with self._cond:
            self._promote_locked()
            return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down

    def shutdown(self) -> None:
        with self._cond:
            self._shutting_down = True
            self._waiting.clear()
            self._ready_at.clear()
            self._cond.notify_all()

    def shutdown_with_drain(self, timeout: float | None = None) -> bool:
        """Shut down, then wait until every in-flight key is done. False on timeout."""
        self.shutdown()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._processing:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # ------------------------------------------------------------------ delays
    def add_after(self, key: K, delay: float) -> None:
        """Add `key` once `delay` seconds have passed (at once when delay <= 0)."""
        with self._cond:
            if self._shutting_down:
                return
            if delay <= 0:
                self._add_locked(key)
                return
            ready = self._clock() + delay
            known = self._ready_at.get(key)
            if known is not None and known <= ready:
                return
            self._ready_at[key] = ready
            heapq.heappush(self._waiting, (ready, next(self._seq), key))
            self._cond.notify_all()  # a waiting get() may need to wake earlier

    def _promote_locked(self) -> None:
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            ready, _, key = heapq.heappop(self._waiting)
            if self._ready_at.get(key) != ready:
                continue  # superseded by an earlier deadline
            del self._ready_at[key]
            self._add_locked(key)

    def _next_wait_locked(self) -> float | None:
        if not self._waiting:
            return None
        return max(0.0, self._waiting[0][0] - self._clock())

    # ------------------------------------------------------------------ rate limiting
    def add_rate_limited(self, key: K) -> None:
        self.add_after(key, self._limiter.when(key))

    def forget(self, key: K) -> None:
        self._limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self._limiter.num_requeues(key)
