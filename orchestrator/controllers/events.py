"""The event recorder: Kubernetes' Events in etcd, on a TTL lease, written off the hot path.

`record(obj, reason, message)` only queues; one writer thread creates the queued events in
transactions of up to `BATCH` (each create-only, all carrying the leader's fence), so a
scheduler binding 1,000 pods a second does not pay a second round trip per pod for its
`Scheduled` events. Events are best effort, as in client-go: a failed write is logged and the
event dropped, and a full queue drops the newest.

* **TTL.** Events live on an etcd lease (`objects.event.DEFAULT_TTL_SECONDS`, one hour, like
  kube-apiserver's `--event-ttl`). Like kube-apiserver's lease manager, one lease is reused for
  the events of a short window (a tenth of the TTL) and granted that much longer, so each event
  lives at least the TTL and etcd does not hold a lease per event.
* **De-duplication.** A repeat of an event this recorder wrote (same source, object, reason,
  message, type — `event.dedup_key`) updates the stored one: count + 1, lastTimestamp.
* **Names** are `<object>.<nanoseconds hex>` (`event.new_event`); the recorder keeps its clock
  strictly increasing so two events in the same microsecond do not collide.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from netplane.errors import NetplaneError
from netplane.store import codec
from netplane.store.txn import Absent, Put
from orchestrator.controllers.base import Writer
from orchestrator.objects import event as ev
from orchestrator.objects import meta
from orchestrator.objects.meta import EVENT
from orchestrator.storage import Fenced, ObjectStore

log = logging.getLogger(__name__)

BATCH = 100  # creates per transaction (etcd's --max-txn-ops is 128, the fence is one more)
QUEUE_SIZE = 10_000
DEDUP_CACHE = 4096


class Recorder:
    def __init__(self, objects: ObjectStore, component: str, *, writer: Writer, host: str = "",
                 ttl: int = ev.DEFAULT_TTL_SECONDS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.objects = objects
        self.component = component
        self.host = host
        self.writer = writer
        self.ttl = ttl
        self._clock = clock
        self._queue: queue.Queue[ev.Event] = queue.Queue(QUEUE_SIZE)
        self._last = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()
        self._lease = 0
        self._lease_until = 0.0
        self._seen: dict[tuple[str, ...], tuple[str, str]] = {}  # dedup key -> (namespace, name)
        self.written = 0
        self.dropped = 0

    # ------------------------------------------------------------------ producers
    def record(self, involved: Mapping[str, Any], reason: str, message: str, *,
               type: ev.EventType = "Normal") -> None:
        with self._lock:
            now = self._clock()
            if now <= self._last:
                now = self._last + timedelta(microseconds=1)
            self._last = now
        e = ev.new_event(involved, reason=reason, message=message, type=type,
                         component=self.component, host=self.host, now=now)
        try:
            self._queue.put_nowait(e)
        except queue.Full:
            self.dropped += 1

    # ------------------------------------------------------------------ the writer
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.flush_batch(first)
        while True:  # what is queued at stop is still written (the fence decides)
            try:
                first = self._queue.get_nowait()
            except queue.Empty:
                return
            self.flush_batch(first)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until the queue is empty (tests, clean stops)."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)

    def flush_batch(self, first: ev.Event) -> None:
        batch = [first]
        while len(batch) < BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        fresh = []
        for e in batch:
            k = ev.dedup_key(e)
            if k in self._seen:
                self._repeat(k, e)
            else:
                fresh.append(e)
        if not fresh:
            return
        try:
            self._create(fresh)
        except Fenced:
            self.writer.on_fenced()
        except NetplaneError as e:
            self.dropped += len(fresh)
            log.warning("could not write %d events: %s", len(fresh), e)

    def _lease_id(self) -> int:
        now = time.monotonic()
        if self._lease == 0 or now >= self._lease_until:
            window = max(self.ttl // 10, 1)
            self._lease = self.objects.store.grant(self.ttl + window)
            self._lease_until = now + window
        return self._lease

    def _create(self, fresh: list[ev.Event]) -> None:
        lease = self._lease_id()
        for e in fresh:  # what ObjectStore.create (and kube-apiserver) gives every object
            md = e["metadata"]
            md.setdefault("uid", meta.new_uid())
            md.setdefault("creationTimestamp", e["firstTimestamp"])
        keys = [self.objects.key(EVENT, e["metadata"]["name"], e["metadata"]["namespace"]) for e in fresh]
        guards = [Absent(k) for k in keys]
        ops = [Put(k, codec.dumps(e), lease) for k, e in zip(keys, fresh, strict=True)]
        r = self.objects.store.txn([*guards, *self.writer.guards], ops)
        if r.succeeded:
            done = fresh
        else:  # a name taken or the fence gone: one by one, so only the culprit is lost
            done = []
            for e in fresh:
                try:
                    self.objects.create(dict(e), lease=lease, guards=self.writer.guards)
                    done.append(e)
                except Fenced:
                    raise
                except NetplaneError as err:
                    self.dropped += 1
                    log.info("event %s not written: %s", e["metadata"]["name"], err)
        for e in done:
            if len(self._seen) >= DEDUP_CACHE:
                self._seen.pop(next(iter(self._seen)))
            self._seen[ev.dedup_key(e)] = (e["metadata"]["namespace"], e["metadata"]["name"])
        self.written += len(done)

    def _repeat(self, k: tuple[str, ...], e: ev.Event) -> None:
        ns, name = self._seen[k]
        now = self._clock()
        try:
            self.objects.guaranteed_update(EVENT, name, ns, lambda cur: ev.repeated(cur, now=now),
                                           retries=4, guards=self.writer.guards)
            self.written += 1
        except Fenced:
            self.writer.on_fenced()
        except NetplaneError:  # gone (expired) or contended: write it as a new event
            del self._seen[k]
            try:
                self._create([e])
            except Fenced:
                self.writer.on_fenced()
            except NetplaneError as err:
                self.dropped += 1
                log.info("event %s not written: %s", e["metadata"]["name"], err)
