"""The loop every controller shares: client-go's worker pattern over our `WorkQueue`.

    loop = KeyLoop("replication", sync, workers=2, on_fenced=lost.set)
    informer.add_handler(lambda old, new: loop.queue.add(key_of(new or old)))
    loop.run(stop)   # blocks; workers take keys, `sync(key)` reads the caches and writes

A sync that raises is retried with the queue's per-key exponential back-off (5 ms doubling,
client-go's default limiter) up to `max_retries`, then dropped with a log line — the next
change or the informers' periodic resync queues the key again. A sync that returns cleanly
`forget`s the key's failures. `Fenced` is not a failure to retry: the write was refused because
this process lost its leadership, so the loop calls `on_fenced` (the master ends the term) and
stops taking keys. `stop` shuts the queue down, and the workers finish their current key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from netplane.store.txn import Guard
from orchestrator.storage import Fenced
from orchestrator.workqueue import WorkQueue

log = logging.getLogger(__name__)

DEFAULT_MAX_RETRIES = 15  # client-go controllers' maxRetries


@dataclass(frozen=True)
class Writer:
    """What a controller writes with: the extra guards of every write (the leader's fence;
    empty when run without election, e.g. in a unit of a test) and whom to tell when they fail."""

    guards: Sequence[Guard] = ()
    on_fenced: Callable[[], None] = field(default=lambda: None)


class KeyLoop:
    def __init__(self, name: str, sync: Callable[[str], None], *, writer: Writer,
                 workers: int = 1, max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        self.name = name
        self.sync = sync
        self.writer = writer
        self.workers = workers
        self.max_retries = max_retries
        self.queue: WorkQueue[str] = WorkQueue()
        self.fenced = threading.Event()

    def run(self, stop: threading.Event) -> None:
        threads = [threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
                   for i in range(self.workers)]
        for t in threads:
            t.start()
        while not stop.wait(0.5) and not self.fenced.is_set():
            pass
        self.queue.shutdown()
        for t in threads:
            t.join(timeout=10)

    def _work(self) -> None:
        q = self.queue
        while (key := q.get()) is not None:
            if self.fenced.is_set():
                q.done(key)
                continue
            try:
                self.sync(key)
                q.forget(key)
            except Fenced as e:
                log.warning("%s: %s", self.name, e)
                self.fenced.set()
                self.writer.on_fenced()
            except Exception as e:  # any failure: retry this key later, never stop the loop
                if q.num_requeues(key) < self.max_retries:
                    log.info("%s: syncing %s failed (%s); retrying", self.name, key, e)
                    q.add_rate_limited(key)
                else:
                    log.warning("%s: dropping %s after %d retries: %s", self.name, key,
                                self.max_retries, e, exc_info=True)
                    q.forget(key)
            finally:
                q.done(key)
