"""Watch fan-out: one etcd watch per kind, shared by every API watcher of that kind.

kube-apiserver's watch cache in small. A `KindCache` follows one kind's prefix with
`netplane.store.watch.list_watch_async`, a task on the server's event loop whose etcd watch
stream is awaited there (a blocking stream on a thread of its own cost the server ~12 % of
its CPU under writes, in thread wake-ups: bench/results/api.md). It keeps the current objects
(so a delete carries the object's last state, and a watch without a resourceVersion starts
with synthetic ADDED events) and a window of recent changes (`Change`, JSON-encoded once for
every watcher). Both hold etcd's bytes (`Stored`) and decode them when first asked for (by a
watcher, or a write that starts from the cached copy), then keep the object while it is
current: with nobody watching, a change costs no decode at all (~15 µs of a 2 KB pod's patch
on this machine), and the window's superseded states are bytes, not trees that every young
garbage collection would walk.
Every `Watcher` filters each batch (namespace, label and field selectors) into its own queue.
Registering and replaying a watcher and dispatching a batch all happen on the loop's thread,
so no change is missed or sent twice; the cache's lock is for `cached`, which the pool's
threads call.

* A watch from revision R inside the window replays the window's changes after R; one from
  before the window falls back to its own etcd watch from R+1 (`DirectWatch`, with previous
  values), which answers 410 Expired when etcd has compacted R.
* Selectors apply to each change as kube's cacher does: a change that makes an object match
  is ADDED, one that makes it stop matching is DELETED (with the old object at the change's
  revision).
* A watcher whose queue overflows (a client not reading) is closed; the client re-watches
  from its last revision, as it does after a timeout. After a re-list (compaction under the
  cache's own watch, etcd restarted) continuity is lost, so the cache closes its watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from netplane.errors import StoreError
from netplane.store import codec
from netplane.store.etcd import AsyncReader, Compacted, KeyValue, WatchEvent
from netplane.store.watch import Resync, list_watch_async
from orchestrator.objects.meta import Kind
from orchestrator.storage import ObjectStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]
WINDOW = 20_000  # changes kept per kind for watches that start in the past
MAX_QUEUE = 50_000  # undelivered events before a watcher is closed as too slow
DECODE_ON_LOOP = 200  # undecoded objects a new watch's initial list may decode on the loop (~6 ms)


def _dumps(obj: Obj) -> bytes:
    return codec.dump_bytes(obj)


def _at_revision(obj: Obj, revision: int) -> Obj:
    out = dict(obj)
    out["metadata"] = {**(obj.get("metadata") or {}), "resourceVersion": str(revision)}
    return out


class _Undecoded:
    """`Stored._value` before the bytes are decoded (None is a malformed value's)."""


_UNDECODED = _Undecoded()


class Stored:
    """One cached object as etcd gave it, decoded when first asked for: most never are (a pod
    that nobody watches or writes through the API), and their bytes take about a seventh of
    the memory of the decoded tree, and none of the garbage collector's time (the API server
    holding 10,000 pods: 191 → 110 MB resident). The decoded tree is kept while the object
    is current, and dropped when a newer state has been handed to the watchers (`release`):
    the window's older states stay bytes, decoded again if a replay asks for them."""

    __slots__ = ("_decode", "_raw", "_value", "key", "revision")

    def __init__(self, key: str, raw: bytes, revision: int, decode: Callable[[str, bytes, int], Obj | None]) -> None:
        self.key, self.revision = key, revision
        self._raw = raw
        self._decode = decode
        self._value: Obj | None | _Undecoded = _UNDECODED

    @property
    def pending(self) -> bool:
        """Not decoded (or decoded and released since)."""
        return self._value is _UNDECODED

    def get(self) -> Obj | None:
        """The object, or None when the stored value is malformed (logged when decoded). Any
        thread: two decoding at once each get an equal object, and one of them is kept."""
        v = self._value
        if isinstance(v, _Undecoded):
            v = self._value = self._decode(self.key, self._raw, self.revision)
        return v

    def fresh(self) -> Obj | None:
        """A decode of its own for the caller to change (None when malformed): the bytes are
        decoded again, and the cache keeps no tree of it."""
        if self._value is None:  # malformed, logged already
            return None
        return self._decode(self.key, self._raw, self.revision)

    def release(self) -> None:
        """Drop the decoded tree, keep the bytes (a malformed value's None is kept, so that it
        is logged once). Safe against a `get` on another thread: that returns its own tree."""
        if self._value is not None:
            self._value = _UNDECODED


def _get(v: Obj | Stored | None) -> Obj | None:
    return v.get() if isinstance(v, Stored) else v


class Change:
    """One etcd event of a kind (its objects decoded when first asked for). `object` of a
    DELETED change is the last state, at the deletion's revision; `object` or `prev` is None
    where the value is absent or malformed, and a watcher sends nothing of a malformed one."""

    __slots__ = ("_json", "_new", "_old", "_prev_json", "key", "revision", "type")

    def __init__(self, revision: int, type: str, key: str, new: Obj | Stored | None,
                 old: Obj | Stored | None) -> None:
        self.revision, self.type, self.key = revision, type, key
        self._new, self._old = new, old
        self._json: bytes | None = None
        self._prev_json: bytes | None = None

    @property
    def object(self) -> Obj | None:
        if self.type == "DELETED":
            prev = self.prev
            return None if prev is None else _at_revision(prev, self.revision)
        return _get(self._new)

    @property
    def prev(self) -> Obj | None:
        return _get(self._old)

    def release_prev(self) -> None:
        """The replaced state back to bytes (`Stored.release`), once the watchers have it."""
        if isinstance(self._old, Stored):
            self._old.release()

    def object_json(self) -> bytes:
        if self._json is None:
            obj = self.object
            assert obj is not None
            self._json = _dumps(obj)
        return self._json

    def prev_json(self) -> bytes:
        """The previous object at this change's revision (a DELETED for a watcher it stops
        matching)."""
        if self._prev_json is None:
            prev = self.prev
            assert prev is not None
            self._prev_json = _dumps(_at_revision(prev, self.revision))
        return self._prev_json


Event = tuple[str, Change, bool]  # (type sent, change, send the previous object)


class Watcher:
    """One API watch: its filter and its queue, used in the event loop only."""

    def __init__(self, prefix: str, match: Callable[[Obj], bool], *, max_queue: int = MAX_QUEUE) -> None:
        self.prefix = prefix
        self.match = match
        self.after = 0
        self.generation = 0
        self.queue: deque[Event] = deque()
        self.wake = asyncio.Event()
        self.closed: str | None = None
        self.error: Obj | None = None  # a Status to send as an ERROR event before closing
        self.max_queue = max_queue

    def classify(self, c: Change) -> Event | None:
        obj = c.object if c.type != "DELETED" else None
        prev = c.prev
        cur = obj is not None and self.match(obj)
        old = prev is not None and self.match(prev)
        if cur:
            return ("MODIFIED" if old else "ADDED", c, False)
        if old:
            return ("DELETED", c, c.type != "DELETED")
        return None

    def offer(self, changes: list[Change]) -> None:
        if self.closed:
            return
        for c in changes:
            if c.revision <= self.after or not c.key.startswith(self.prefix):
                continue
            ev = self.classify(c)
            if ev is not None:
                self.queue.append(ev)
        if len(self.queue) > self.max_queue:
            self.close("too slow: the client does not read its events")
        if self.queue:
            self.wake.set()

    def close(self, reason: str, *, error: Obj | None = None) -> None:
        if self.closed is None:
            self.closed = reason
            self.error = error
        self.wake.set()


class KindCache:
    def __init__(self, objects: ObjectStore, kind: Kind, loop: asyncio.AbstractEventLoop, *,
                 window: int = WINDOW) -> None:
        self.objects = objects
        self.kind = kind
        self.loop = loop
        self.window = window
        self.prefix = objects.prefix(kind)
        self._lock = threading.Lock()
        self._current: dict[str, Stored] = {}
        self._buffer: deque[Change] = deque()
        self._covered_from = 0  # every change after this revision is in the buffer (or coming)
        self._revision = 0  # the newest revision the cache has seen
        self._generation = 0
        self._ready = threading.Event()
        self._watchers: set[Watcher] = set()  # loop thread only
        self.dispatched = 0  # newest revision handed to the watchers (loop thread only)
        self.direct_watches = 0  # watches that started before the window (their own etcd watch)
        # for /metrics (kube-apiserver's watch cache metrics), read from any thread
        self.events_received = 0  # etcd events in the watch batches
        self.events_dispatched = 0  # changes handed to the watchers, once each
        self.events_sent = 0  # events written to watch clients (stream.watch counts them)
        self.terminated_watchers = 0  # watchers closed for not reading their events
        self.changes = 0  # lists and applied batches so far: what a reader of `current_objects` may key on
        self._task: asyncio.Task[None] | None = None

    def start(self, reader: AsyncReader) -> None:
        """Follow the kind from now on (on the loop's thread)."""
        self._task = self.loop.create_task(self._run(reader), name=f"watchcache-{self.kind.resource}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def cached(self, key: str, *, owned: bool = False) -> Obj | None:
        """The object at `key` as the cache has it now (any thread; None when absent or the
        cache has not listed yet). It may trail etcd by a moment: a write based on it goes at
        its resourceVersion, so a stale copy costs a Conflict and a re-read, never a lost
        change (kube-apiserver's GuaranteedUpdate with the cached object as its suggestion).
        Shared with the watchers, not to be changed; with `owned`, a decode of the caller's
        own (`Stored.fresh`)."""
        if not self._ready.is_set():
            return None
        with self._lock:
            e = self._current.get(key)
        if e is None:
            return None
        return e.fresh() if owned else e.get()

    def current_objects(self) -> list[Obj]:
        """Every object the cache has now (any thread; shared, not to be changed; [] before it
        has listed). For small kinds: each is decoded."""
        if not self._ready.is_set():
            return []
        with self._lock:
            entries = list(self._current.values())
        return [obj for obj in (e.get() for e in entries) if obj is not None]

    def ready(self) -> bool:
        return self._ready.is_set()

    async def decode_pending(self, prefix: str) -> None:
        """Decode, on an executor thread, what the cache holds under `prefix` that nobody has
        asked for yet (a watch that starts with the current objects is about to), so that the
        loop goes on serving meanwhile: 10,000 pods take ~0.3 s. A few are left to the loop."""
        with self._lock:
            pending = [e for k, e in self._current.items() if e.pending and k.startswith(prefix)]
        if len(pending) > DECODE_ON_LOOP:
            await self.loop.run_in_executor(None, lambda: [e.get() for e in pending])

    async def wait_ready(self, timeout: float) -> bool:
        if self._ready.is_set():
            return True
        return await self.loop.run_in_executor(None, self._ready.wait, timeout)

    # ------------------------------------------------------------------ following etcd
    async def _run(self, reader: AsyncReader) -> None:
        async for item in list_watch_async(self.objects.store, reader, self.prefix):
            if isinstance(item, Resync):  # decoded when asked for (10,000 pods would take ~0.3 s)
                current = self._stored_all(item.items)
                with self._lock:
                    self._current = current
                    self._buffer.clear()
                    self._covered_from = self._revision = item.revision
                    self._generation += 1
                    gen = self._generation
                if gen > 1:
                    self._reset(gen)
                self.changes += 1
                self._ready.set()
                continue
            changes = self._apply(item)
            if changes:
                self.changes += 1
                self._fanout(changes)
                for c in changes:  # judged by every watcher: the state it replaced is bytes again
                    c.release_prev()

    def _decode(self, key: str, raw: bytes, revision: int) -> Obj | None:
        return self.objects.decode_or_log(self.kind, key, raw, revision)

    def _stored_all(self, items: list[KeyValue]) -> dict[str, Stored]:
        decode = self._decode
        return {kv.key: Stored(kv.key, kv.value, kv.mod_revision, decode) for kv in items}

    @property
    def objects_count(self) -> int:
        return len(self._current)

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def initializations(self) -> int:
        """How many times the cache listed (the first list, then each re-list)."""
        return self._generation

    def _apply(self, batch: list[WatchEvent]) -> list[Change]:
        """One batch of etcd events into the current objects and the window, as Changes."""
        changes = []
        self.events_received += len(batch)
        decode = self._decode
        with self._lock:
            for ev in batch:
                prev = self._current.get(ev.key)
                if ev.kind == "put" and ev.value is not None:
                    new = self._current[ev.key] = Stored(ev.key, ev.value, ev.mod_revision, decode)
                    # (a malformed value, found when decoded, stands for none: a watcher of a
                    # key whose value turned malformed gets its DELETED, as from a delete)
                    changes.append(Change(ev.mod_revision, "MODIFIED" if prev is not None else "ADDED",
                                          ev.key, new, prev))
                elif prev is not None:
                    del self._current[ev.key]
                    changes.append(Change(ev.mod_revision, "DELETED", ev.key, None, prev))
            self._buffer.extend(changes)
            while len(self._buffer) > self.window:
                self._covered_from = self._buffer.popleft().revision
            self._revision = batch[-1].mod_revision
        return changes

    # ------------------------------------------------------------------ the loop's side
    def _fanout(self, changes: list[Change]) -> None:
        for w in list(self._watchers):
            was_open = w.closed is None
            w.offer(changes)
            if was_open and w.closed is not None:
                self.terminated_watchers += 1
        self.events_dispatched += len(changes)
        self.dispatched = max(self.dispatched, changes[-1].revision)

    def _reset(self, generation: int) -> None:
        for w in list(self._watchers):
            if w.generation < generation:
                w.close("the watch cache re-listed")

    def subscribe(self, w: Watcher, after: int | None) -> bool:
        """Register `w` to get every change after revision `after` (None: the current objects
        first, as ADDED). False when `after` is older than the window (use a DirectWatch)."""
        with self._lock:
            if after is None:
                w.after = self._revision
                for key in sorted(self._current):
                    if key.startswith(w.prefix):
                        o = self._current[key].get()
                        if o is not None and w.match(o):
                            w.queue.append(("ADDED", Change(int(o["metadata"]["resourceVersion"]), "ADDED",
                                                            key, o, None), False))
            elif after < self._covered_from:
                return False
            else:
                replay = []
                for c in reversed(self._buffer):
                    if c.revision <= after:
                        break
                    replay.append(c)
                replay.reverse()
                w.after = after
                w.offer(replay)
                w.after = max(after, self._buffer[-1].revision if self._buffer else after)
            w.generation = self._generation
        self._watchers.add(w)
        if w.queue:
            w.wake.set()
        return True

    def unsubscribe(self, w: Watcher) -> None:
        self._watchers.discard(w)

    def __len__(self) -> int:
        return len(self._watchers)


class DirectWatch:
    """A watcher's own etcd watch from `after`+1 (a start older than the cache's window)."""

    def __init__(self, objects: ObjectStore, kind: Kind, loop: asyncio.AbstractEventLoop,
                 w: Watcher, after: int) -> None:
        self.objects = objects
        self.kind = kind
        self.loop = loop
        self.watcher = w
        self.after = after
        self.stop = threading.Event()

    def check(self) -> None:
        """Raise Compacted when `after` is gone (before anything is streamed)."""
        self.objects.store.list_page(self.watcher.prefix, limit=1, revision=self.after)

    def start(self) -> None:
        self.watcher.after = self.after
        threading.Thread(target=self._run, name=f"watch-{self.kind.resource}", daemon=True).start()

    def _decode(self, key: str, raw: bytes | None, rev: int) -> Obj | None:
        if raw is None:
            return None
        return self.objects.decode_or_log(self.kind, key, raw, rev)

    def _run(self) -> None:
        w = self.watcher
        try:
            for batch in self.objects.store.watch(w.prefix, start_revision=self.after + 1,
                                                  stop=self.stop, prev_kv=True):
                changes = []
                for ev in batch:
                    # the previous value's revision is unknown here; it only matters for
                    # selector transitions, where kube sends the change's revision anyway
                    prev = self._decode(ev.key, ev.prev_value, ev.mod_revision)
                    new = self._decode(ev.key, ev.value, ev.mod_revision) if ev.kind == "put" else None
                    if new is None:
                        if prev is not None:
                            changes.append(Change(ev.mod_revision, "DELETED", ev.key, None, prev))
                    else:
                        changes.append(Change(ev.mod_revision, "MODIFIED" if prev else "ADDED",
                                              ev.key, new, prev))
                if changes:
                    self._post(w.offer, changes)
        except Compacted as e:
            from orchestrator.apiserver.status import too_old

            error = too_old(e.compact_revision).status()
            self._post(lambda: w.close("compacted", error=error))
            return
        except StoreError as e:
            log.warning("watch of %s from %d ended: %s", self.kind.resource, self.after, e)
        self._post(w.close, "the etcd watch ended")

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the server stopped meanwhile
            self.stop.set()


class WatchCaches:
    """The caches of every kind watched so far (created on first use, on the loop's thread,
    after `start`)."""

    def __init__(self, objects: ObjectStore, loop: asyncio.AbstractEventLoop, *,
                 window: int = WINDOW) -> None:
        self.objects = objects
        self.loop = loop
        self.window = window
        self._reader: AsyncReader | None = None
        self._caches: dict[str, KindCache] = {}

    def start(self, reader: AsyncReader) -> None:
        """From now on caches follow etcd through `reader` (the loop's own channel)."""
        self._reader = reader

    def get(self, kind: Kind) -> KindCache:
        c = self._caches.get(kind.resource)
        if c is None:
            assert self._reader is not None, "WatchCaches.start first"
            c = self._caches[kind.resource] = KindCache(self.objects, kind, self.loop, window=self.window)
            c.start(self._reader)
        return c

    def caches(self) -> list[KindCache]:
        return list(self._caches.values())

    def cached(self, kind: Kind, namespace: str | None, name: str, *, owned: bool = False) -> Obj | None:
        """`KindCache.cached` of one object, from any thread (None when its kind has no cache)."""
        c = self._caches.get(kind.resource)
        if c is None:
            return None
        return c.cached(self.objects.key(kind, name, namespace if kind.namespaced else None), owned=owned)

    async def stop(self) -> None:
        for c in list(self._caches.values()):
            await c.stop()
