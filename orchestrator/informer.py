"""An informer (client-go's SharedIndexInformer): a cache of one kind kept by list+watch,
indexes over it, and change handlers that feed work queues.

    pods = Informer(objects, POD, indexers={"node": lambda p: [pod.node_name(p)]})
    pods.add_handler(lambda old, new: queue.add(meta.namespaced_name(new or old)))
    pods.start(stop); pods.wait_synced(10)
    pods.get("web-x7k2p", "default"); pods.by_index("node", "h1"); pods.list("default", sel)

Handlers get `(old, new)` in etcd's order, one call per event: an add is `(None, obj)`, an
update `(old, obj)`, a delete `(obj, None)`; a periodic resync (optional) calls `(obj, obj)` for every object so controllers
re-check what they own. After a re-list (compaction, lost stream) the new list is diffed
against the cache, so handlers see exactly the adds, updates and deletes missed meanwhile;
values still at the revision cached are not decoded again. A watch batch costs O(keys
changed), not O(objects), so 10,000 cached pods stay cheap.

`keep` narrows the cache to the objects it accepts, as a field selector narrows a watch in
Kubernetes (a node agent keeps the pods bound to its node, as kubelet watches
`spec.nodeName=<node>`): one that stops matching is a delete to the handlers, one that starts
matching an add. Every change is still read from etcd and decoded (etcd cannot filter values);
what the filter saves is the memory of the objects not kept, and the handlers' calls for them.
When `keep` itself changes its mind about an unchanged object (a node agent's ConfigMaps are
those its pods refer to), `adopt` reads the object in and `evict` drops it.

Objects handed out are shared, not copied (as in client-go): treat them as read-only and
deep-copy before changing one (the decision modules return new objects).
"""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from netplane.store.watch import Resync, list_watch
from orchestrator.objects import meta
from orchestrator.objects.meta import Kind
from orchestrator.objects.selector import Selector
from orchestrator.storage import ObjectStore, ObjectView

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Handler = Callable[[Obj | None, Obj | None], None]
IndexFunc = Callable[[Obj], Iterable[str]]


class Informer:
    def __init__(
        self,
        objects: ObjectStore,
        kind: Kind,
        *,
        namespace: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        resync_period: float = 0.0,
        retry_interval: float = 0.5,
        keep: Callable[[Obj], bool] | None = None,
    ) -> None:
        self.objects = objects
        self._keep = keep
        self.kind = kind
        self.namespace = namespace
        self.resync_period = resync_period
        self.retry_interval = retry_interval
        self._indexers = dict(indexers or {})
        self._lock = threading.RLock()
        self._items: dict[str, Obj] = {}  # storage key -> object
        self._indexes: dict[str, dict[str, set[str]]] = {n: {} for n in self._indexers}
        self._index_values: dict[str, dict[str, tuple[str, ...]]] = {n: {} for n in self._indexers}
        self._handlers: list[Handler] = []
        self._synced = threading.Event()
        self.revision = 0

    # ------------------------------------------------------------------ handlers
    def add_handler(self, handler: Handler) -> None:
        """Register before `start`; a handler added later first gets an add per cached object."""
        with self._lock:
            self._handlers.append(handler)
            for obj in list(self._items.values()):
                self._call(handler, None, obj)

    def _call(self, h: Handler, old: Obj | None, new: Obj | None) -> None:
        try:
            h(old, new)
        except Exception:  # a failing handler must not stop the informer
            log.exception("%s informer: handler failed", self.kind.resource)

    def _dispatch(self, old: Obj | None, new: Obj | None) -> None:
        for h in self._handlers:
            self._call(h, old, new)

    # ------------------------------------------------------------------ applying views
    def apply(self, view: ObjectView) -> None:
        """Bring the cache to `view` and tell the handlers (the watch loop calls this; tests
        may call it with views they make). With `view.changed` set, only those keys are
        looked at, and `view.objects` need hold only them (absent = deleted)."""
        with self._lock:
            keys = set(self._items) | set(view.objects) if view.changed is None else view.changed
            for key in sorted(keys):
                self._change(key, view.objects.get(key))
            self.revision = view.revision
            self._synced.set()

    def _change(self, key: str, new: Obj | None, revision: int | None = None) -> None:
        """`revision`: the etcd revision of the watch event this change is (None for a list's)."""
        if new is not None and self._keep is not None and not self._keep(new):
            new = None  # not (or no longer) one of ours: absent from this cache
        old = self._items.get(key)
        if old is None and new is None:
            return
        if old is not None and new is not None and _rv(old) == _rv(new):
            return
        if revision is not None and old is not None and revision < (_rv_int(old) or 0):
            return  # older than what is cached: an adopted object's past, still in the watch's pipe
        self._store(key, new)
        self._dispatch(old, new)

    def _store(self, key: str, obj: Obj | None) -> None:
        for name in self._indexers:
            for v in self._index_values[name].pop(key, ()):
                members = self._indexes[name].get(v)
                if members is not None:
                    members.discard(key)
                    if not members:
                        del self._indexes[name][v]
        if obj is None:
            self._items.pop(key, None)
            return
        self._items[key] = obj
        for name, fn in self._indexers.items():
            try:
                values = tuple(dict.fromkeys(fn(obj)))
            except Exception:
                log.exception("%s informer: index %s failed on %s", self.kind.resource, name, key)
                values = ()
            self._index_values[name][key] = values
            for v in values:
                self._indexes[name].setdefault(v, set()).add(key)

    def resync(self) -> None:
        """Call every handler with (obj, obj) for every cached object (client-go's resync)."""
        with self._lock:
            for obj in list(self._items.values()):
                self._dispatch(obj, obj)

    # ------------------------------------------------------------------ running
    def run(self, stop: threading.Event) -> None:
        """Follow etcd until `stop` is set (blocking)."""
        timer: threading.Thread | None = None
        if self.resync_period > 0:
            timer = threading.Thread(target=self._resync_loop, args=(stop,),
                                     name=f"{self.kind.resource}-resync", daemon=True)
            timer.start()
        prefix = self.objects.prefix(self.kind, self.namespace)
        for item in list_watch(self.objects.store, prefix, stop=stop,
                               retry_interval=self.retry_interval):
            if isinstance(item, Resync):
                listed = {}
                with self._lock:
                    cached = dict(self._items)
                for kv in item.items:
                    # a key still at the revision we hold is the value we decoded then: after a
                    # compaction most of a large kind is, and decoding is most of a re-list's cost
                    obj = cached.get(kv.key)
                    if obj is None or _rv(obj) != str(kv.mod_revision):
                        obj = self.objects.decode_or_log(self.kind, kv.key, kv.value, kv.mod_revision)
                    if obj is not None:
                        listed[kv.key] = obj
                self.apply(ObjectView(listed, item.revision, None))
                continue
            # event by event, in etcd's order: O(changes), whatever the size of the cache
            with self._lock:
                for ev in item:
                    obj = None
                    if ev.kind == "put" and ev.value is not None:
                        obj = self.objects.decode_or_log(self.kind, ev.key, ev.value, ev.mod_revision)
                    self._change(ev.key, obj, ev.mod_revision)
                    self.revision = ev.mod_revision
        if timer is not None:
            timer.join(timeout=5)

    def _resync_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.resync_period):
            if self._synced.is_set():
                self.resync()

    def start(self, stop: threading.Event) -> threading.Thread:
        t = threading.Thread(target=self.run, args=(stop,), name=f"{self.kind.resource}-informer",
                             daemon=True)
        t.start()
        return t

    def wait_synced(self, timeout: float | None = None) -> bool:
        """True once the first list is in the cache (controllers must not act before)."""
        return self._synced.wait(timeout)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    # ------------------------------------------------------------------ a changing `keep`
    def adopt(self, name: str, namespace: str | None = None) -> bool:
        """Read one object `keep` now accepts but left out when it last changed, into the
        cache (an add to the handlers); True when it is cached. Before the first list, nothing
        is read: the list will apply `keep` itself. The etcd read is made with the cache's lock
        held, so no watch event is applied meanwhile: what it reads is at least as new as
        every event applied, and each later change comes through the watch (older events for
        the key still on their way are skipped by their revision)."""
        key = self.objects.key(self.kind, name, namespace)
        with self._lock:
            if not self._synced.is_set() or key in self._items:
                return key in self._items
            kv = self.objects.store.get(key)
            obj = self.objects.decode_or_log(self.kind, kv.key, kv.value, kv.mod_revision) if kv is not None else None
            if obj is not None:
                self._change(key, obj)
            return key in self._items

    def evict(self, name: str, namespace: str | None = None) -> None:
        """Drop one object `keep` no longer accepts (a delete to the handlers)."""
        with self._lock:
            self._change(self.objects.key(self.kind, name, namespace), None)

    # ------------------------------------------------------------------ reads
    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        with self._lock:
            return self._items.get(self.objects.key(self.kind, name, namespace))

    def list(self, namespace: str | None = None, selector: Selector | None = None) -> list[Obj]:
        with self._lock:
            objs = list(self._items.values())
        return [o for o in objs
                if (namespace is None or not self.kind.namespaced or meta.namespace(o) == namespace)
                and (selector is None or selector.matches(meta.labels(o)))]

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        with self._lock:
            return [self._items[k] for k in sorted(self._indexes[name].get(value, ()))]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _rv_int(obj: Mapping[str, Any]) -> int | None:
    rv = _rv(obj)
    return int(rv) if rv.isdigit() else None


def wait_all_synced(stop: threading.Event, *informers: Informer) -> bool:
    """Block until every informer has listed (True), or `stop` is set first (False)."""
    while not all(i.wait_synced(0.2) for i in informers):
        if stop.is_set():
            return False
    return True
