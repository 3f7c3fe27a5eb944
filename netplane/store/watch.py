"""List-then-watch, the one way netplane follows etcd.

`list_watch` snapshots a prefix at revision R (a `Resync`), then streams changes from R+1. When
the watch breaks (etcd restarted, connection lost) or its revision was compacted, it waits,
re-lists and resyncs — consumers simply replace their view on every `Resync`. It ends when the
stop event is set. `list_watch_async` is the same on an event loop (the API server's watch
caches), its stream awaited there.

`reflect` builds on it for the common case: a decoded dict of objects under a prefix, yielded
after every change batch. Values that fail to decode are logged and left out, never raised.
With `changes_only`, a batch's view carries only the objects it changed, for a consumer that
keeps its own copy (the proxy): a copy of the whole cache per batch is O(n) — 0.1 ms per
endpoint change at 10,000 services, for nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from netplane.errors import DecodeError, StoreError
from netplane.store.etcd import AsyncReader, Compacted, EtcdStore, KeyValue, WatchEvent

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Resync:
    """A full snapshot of the prefix at `revision`: replace whatever you had."""

    items: list[KeyValue]
    revision: int


def list_watch(
    store: EtcdStore,
    prefix: str,
    *,
    stop: threading.Event,
    retry_interval: float = 0.5,
    max_retry_interval: float = 5.0,
) -> Generator[Resync | list[WatchEvent], None, None]:
    """Yield a `Resync`, then event batches; on any break, back off, re-list, resync."""
    delay = retry_interval
    while not stop.is_set():
        try:
            items, rev = store.list(prefix)
            yield Resync(items, rev)
            delay = retry_interval
            yield from store.watch(prefix, start_revision=rev + 1, stop=stop)
        except Compacted as e:
            log.info("watch %s: compacted at %d, re-listing", prefix, e.compact_revision)
            continue
        except StoreError as e:
            if stop.is_set():
                return
            log.warning("watch %s: %s; re-listing in %.1fs", prefix, e, delay)
            if stop.wait(delay):
                return
            delay = min(delay * 2, max_retry_interval)


async def list_watch_async(
    store: EtcdStore,
    reader: AsyncReader,
    prefix: str,
    *,
    retry_interval: float = 0.5,
    max_retry_interval: float = 5.0,
) -> AsyncGenerator[Resync | list[WatchEvent], None]:
    """`list_watch` on an event loop: the list by `store`'s blocking channel in the loop's
    default executor (a large prefix would hold the loop), the watch streamed by `reader`
    on the loop itself. It ends when the consumer is cancelled or closes it."""
    loop = asyncio.get_running_loop()
    delay = retry_interval
    while True:
        try:
            items, rev = await loop.run_in_executor(None, lambda: store.list(prefix))
            yield Resync(items, rev)
            delay = retry_interval
            async for batch in reader.watch(prefix, start_revision=rev + 1):
                yield batch
        except Compacted as e:
            log.info("watch %s: compacted at %d, re-listing", prefix, e.compact_revision)
            continue
        except StoreError as e:
            log.warning("watch %s: %s; re-listing in %.1fs", prefix, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_retry_interval)


@dataclass(frozen=True)
class View(Generic[T]):
    """The decoded objects under a prefix after a change, and what changed.

    `changed` is None after a resync (anything may have changed), else the keys touched.
    From `reflect(changes_only=True)`, `objects` after a change batch holds only the keys in
    `changed` that exist now (a changed key missing from it was deleted); after a resync, all.
    """

    objects: Mapping[str, T]
    revision: int
    changed: frozenset[str] | None


def reflect(
    store: EtcdStore,
    prefix: str,
    decode: Callable[[str, bytes], T],
    *,
    stop: threading.Event,
    retry_interval: float = 0.5,
    changes_only: bool = False,
) -> Iterator[View[T]]:
    """Keep a decoded copy of everything under `prefix`; yield it after each change (each view
    its own snapshot). `changes_only`: after a change batch, yield only what it changed (see
    `View`) and keep no cache at all."""
    cache: dict[str, T] = {}
    for item in list_watch(store, prefix, stop=stop, retry_interval=retry_interval):
        if isinstance(item, Resync):
            listed: dict[str, T] = {}
            for kv in item.items:
                v = _decode(decode, kv.key, kv.value)
                if v is not None:
                    listed[kv.key] = v
            cache = {} if changes_only else dict(listed)
            yield View(listed, item.revision, None)
            continue
        changed = set()
        touched: dict[str, T] = {}  # the batch's objects that exist after it
        for ev in item:
            changed.add(ev.key)
            v = None
            if ev.kind != "delete":
                assert ev.value is not None
                v = _decode(decode, ev.key, ev.value)
            if v is None:
                touched.pop(ev.key, None)
                cache.pop(ev.key, None)
            else:
                touched[ev.key] = v
                if not changes_only:
                    cache[ev.key] = v
        yield View(touched if changes_only else dict(cache), item[-1].mod_revision, frozenset(changed))


def _decode(decode: Callable[[str, bytes], T], key: str, raw: bytes) -> T | None:
    try:
        return decode(key, raw)
    except DecodeError as e:
        log.warning("skipping malformed value at %s: %s", key, e)
        return None
