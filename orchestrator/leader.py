"""Leader election over an etcd lease, with fenced writes.

Several `netplane master` processes may run; one leads. A candidate grants itself an etcd
lease and creates the leader key on it (create-only); the winner keeps the lease alive, the
others watch the key and campaign again as soon as it is gone: at once when the leader steps
down cleanly (it revokes its lease), within the lease TTL when it dies.

Two leaders must never act at once, also when a leader is paused (a stopped process, a long GC,
a partition) and resumes believing it still leads. Hence *fencing*: every controller write is a
transaction guarded by `Fence.guards()` — the leader key is still attached to our lease — so
etcd itself rejects the writes of a leader whose lease expired. The elector also steps down on
its own before its lease can have expired when it cannot renew (2/3 of the TTL since the last
renewal), and as soon as a renewal or a fenced write shows the lease is gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from netplane.errors import StoreError
from netplane.store import EtcdStore
from netplane.store.txn import Guard, LeaseIs
from netplane.store.watch import Resync, list_watch

log = logging.getLogger(__name__)

DEFAULT_TTL = 15


@dataclass(frozen=True)
class Fence:
    """Proof of leadership for one term: the leader key held on our lease."""

    key: str
    lease: int
    identity: str

    def guards(self) -> list[Guard]:
        return [LeaseIs(self.key, self.lease)]


LeadFn = Callable[[Fence, threading.Event], None]


class Elector:
    """Campaign for `key` as `identity` until stopped; while leading, run `lead`.

    `lead(fence, lost)` runs in its own thread for one term. It must guard its writes with
    `fence.guards()` and return promptly once `lost` is set (leadership lost or stopping). If it
    returns or raises by itself, the term ends and the lease is given up, so another candidate
    takes over at once."""

    def __init__(self, store: EtcdStore, key: str, identity: str, *, ttl: int = DEFAULT_TTL) -> None:
        if ttl < 2:
            raise ValueError("leader lease TTL must be at least 2 s")
        self.store = store
        self.key = key
        self.identity = identity
        self.ttl = ttl
        self.leading = threading.Event()
        self.terms = 0

    def run(self, stop: threading.Event, lead: LeadFn) -> None:
        delay = 0.2
        while not stop.is_set():
            try:
                lease = self.store.grant(self.ttl)
                won = self.store.create(self.key, self.identity, lease=lease)
            except StoreError as e:
                log.warning("leader election: %s; retrying in %.1fs", e, delay)
                stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            if won:
                self._lead(stop, lead, lease)
            else:
                self._revoke(lease)
                self._wait_vacant(stop)

    # ------------------------------------------------------------------ one term
    def _lead(self, stop: threading.Event, lead: LeadFn, lease: int) -> None:
        fence = Fence(self.key, lease, self.identity)
        self.terms += 1
        lost = threading.Event()
        log.info("%s is the leader (lease %x, TTL %ds)", self.identity, lease, self.ttl)
        self.leading.set()

        def body() -> None:
            try:
                lead(fence, lost)
            except Exception:
                log.exception("leader work failed; giving up leadership")
            finally:
                lost.set()

        t = threading.Thread(target=body, name="leader-term", daemon=True)
        t.start()
        renew_every = self.ttl / 3.0
        renewed = time.monotonic()
        why = "stopping"
        while not stop.is_set() and not lost.is_set():
            if stop.wait(renew_every) or lost.is_set():
                break
            try:
                left = self.store.keepalive(lease)
            except StoreError as e:
                if time.monotonic() - renewed > self.ttl * 2 / 3:
                    why = f"could not renew the leader lease for {time.monotonic() - renewed:.1f}s ({e})"
                    break
                continue
            if left <= 0:
                why = "the leader lease expired"
                break
            renewed = time.monotonic()
        else:
            if lost.is_set():
                why = "the leader's work ended"
        self.leading.clear()
        lost.set()
        t.join()
        log.info("%s stops leading: %s", self.identity, why)
        self._revoke(lease)  # hand over at once (a no-op when the lease is gone already)

    def _revoke(self, lease: int) -> None:
        try:
            self.store.revoke(lease)
        except StoreError as e:
            log.warning("could not revoke lease %x (it expires by itself): %s", lease, e)

    def _wait_vacant(self, stop: threading.Event) -> None:
        """Until the leader key is gone (or we are stopped)."""
        watch = list_watch(self.store, self.key, stop=stop)
        try:
            for item in watch:
                if isinstance(item, Resync):
                    holders = [kv.value.decode(errors="replace") for kv in item.items if kv.key == self.key]
                    if not holders:
                        return
                    log.info("%s waits: %s leads", self.identity, holders[0])
                elif any(ev.key == self.key and ev.kind == "delete" for ev in item):
                    return
        finally:
            watch.close()  # ends the watch stream
