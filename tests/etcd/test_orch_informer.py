"""The informer against a real etcd: initial list, ordered add/update/delete handlers,
indexes, re-list diffs, resync, and handler failures that do not stop it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from netplane.store import EtcdStore
from orchestrator.informer import Informer
from orchestrator.objects import meta, pod
from orchestrator.objects.meta import POD
from orchestrator.objects.selector import parse
from orchestrator.storage import ObjectStore, ObjectView
from orchestrator.validation import admit

Event = tuple[str, str, str]  # (what, name, node)


def mkpod(name: str, node: str = "", labels: dict[str, str] | None = None, ns: str = "default") -> dict[str, Any]:
    return admit({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
                  "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}).object


def recorder(out: list[Event]) -> Callable[[Any, Any], None]:
    def h(old: Any, new: Any) -> None:
        what = "add" if old is None else "delete" if new is None else "update"
        o = new if new is not None else old
        out.append((what, meta.name(o), pod.node_name(o)))

    return h


def wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def by_node(p: dict[str, Any]) -> list[str]:
    return [pod.node_name(p)]


def test_list_then_watch_with_ordered_handlers_and_indexes(objects: ObjectStore, stop: threading.Event) -> None:
    objects.create(mkpod("a", "h1"))
    objects.create(mkpod("b", "h2"))
    inf = Informer(objects, POD, indexers={"node": by_node}, retry_interval=0.1)
    seen: list[Event] = []
    inf.add_handler(recorder(seen))
    inf.start(stop)
    assert inf.wait_synced(10)
    assert seen == [("add", "a", "h1"), ("add", "b", "h2")]
    assert [meta.name(p) for p in inf.by_index("node", "h1")] == ["a"]

    b = inf.get("b")
    assert b is not None
    objects.update({**b, "spec": {**b["spec"], "nodeName": "h1"}})
    objects.create(mkpod("c"))
    objects.delete(POD, "a")
    wait(lambda: len(seen) >= 5)
    assert seen[2:] == [("update", "b", "h1"), ("add", "c", ""), ("delete", "a", "h1")]
    assert [meta.name(p) for p in inf.by_index("node", "h1")] == ["b"]
    assert inf.by_index("node", "h2") == []
    assert sorted(meta.name(p) for p in inf.list()) == ["b", "c"] and len(inf) == 2
    got = inf.get("b")
    assert got is not None and got["metadata"]["resourceVersion"] == objects.get(POD, "b")["metadata"]["resourceVersion"]  # type: ignore[index]


def test_keep_narrows_the_cache_as_a_field_selector_narrows_a_watch(objects: ObjectStore, stop: threading.Event) -> None:
    """A node agent's pods: only those bound to its node are cached; one bound there later is
    an add, one that leaves (here: rebound, which the API never does) a delete."""
    objects.create(mkpod("a", "h1"))
    objects.create(mkpod("b", "h2"))
    objects.create(mkpod("c"))
    inf = Informer(objects, POD, retry_interval=0.1, keep=lambda p: pod.node_name(p) == "h1")
    seen: list[Event] = []
    inf.add_handler(recorder(seen))
    inf.start(stop)
    assert inf.wait_synced(10)
    assert seen == [("add", "a", "h1")] and len(inf) == 1 and inf.get("b") is None
    c = inf.get("c") or objects.get(POD, "c")
    assert c is not None
    objects.update({**c, "spec": {**c["spec"], "nodeName": "h1"}})  # bound here: an add
    b = objects.get(POD, "b")
    assert b is not None
    objects.update({**b, "metadata": {**b["metadata"], "labels": {"x": "y"}}})  # not ours: nothing
    a = inf.get("a")
    assert a is not None
    objects.update({**a, "spec": {**a["spec"], "nodeName": "h3"}})  # no longer ours: a delete
    objects.delete(POD, "b")
    objects.create(mkpod("d", "h1"))
    wait(lambda: len(seen) >= 4)
    time.sleep(0.2)  # nothing more comes
    assert seen[1:] == [("add", "c", "h1"), ("delete", "a", "h1"), ("add", "d", "h1")]
    assert sorted(meta.name(p) for p in inf.list()) == ["c", "d"]


def test_list_filters_and_late_handlers(objects: ObjectStore, stop: threading.Event) -> None:
    objects.create(mkpod("web", labels={"app": "web"}))
    objects.create(mkpod("db", labels={"app": "db"}))
    objects.create(mkpod("web", labels={"app": "web"}, ns="prod"))
    inf = Informer(objects, POD, retry_interval=0.1)
    inf.start(stop)
    assert inf.wait_synced(10)
    assert [(meta.namespace(p), meta.name(p)) for p in inf.list(selector=parse("app=web"))] == [
        ("default", "web"), ("prod", "web")]
    assert [meta.name(p) for p in inf.list("prod")] == ["web"]
    assert inf.get("web", "prod") is not None and inf.get("nope") is None
    late: list[Event] = []
    inf.add_handler(recorder(late))
    assert sorted(late) == [("add", "db", ""), ("add", "web", ""), ("add", "web", "")]


def test_relist_is_diffed_into_adds_updates_deletes(objects: ObjectStore) -> None:
    inf = Informer(objects, POD, indexers={"node": by_node})
    seen: list[Event] = []
    inf.add_handler(recorder(seen))

    def obj(name: str, node: str, rv: str) -> dict[str, Any]:
        p = mkpod(name, node)
        p["metadata"]["resourceVersion"] = rv
        return p

    def k(name: str) -> str:
        return objects.key(POD, name, "default")

    inf.apply(ObjectView({k("a"): obj("a", "h1", "5"), k("b"): obj("b", "h1", "6")}, 6, None))
    seen.clear()
    # a watch batch naming one key touches only that key
    inf.apply(ObjectView({k("a"): obj("a", "h1", "5"), k("b"): obj("b", "h2", "7")}, 7, frozenset({k("b")})))
    assert seen == [("update", "b", "h2")]
    seen.clear()
    # after a compaction the re-list shows: a unchanged, b gone, c new
    inf.apply(ObjectView({k("a"): obj("a", "h1", "5"), k("c"): obj("c", "h3", "9")}, 9, None))
    assert seen == [("delete", "b", "h2"), ("add", "c", "h3")]
    assert [meta.name(p) for p in inf.by_index("node", "h3")] == ["c"] and inf.by_index("node", "h2") == []
    assert inf.revision == 9


def test_resync_and_failing_handlers(objects: ObjectStore, stop: threading.Event) -> None:
    objects.create(mkpod("a"))
    inf = Informer(objects, POD, resync_period=0.1, retry_interval=0.1)
    calls: list[tuple[bool, str]] = []

    def broken(old: Any, new: Any) -> None:
        raise RuntimeError("handler bug")

    def ok(old: Any, new: Any) -> None:
        calls.append((old is new, meta.name(new if new is not None else old)))

    inf.add_handler(broken)
    inf.add_handler(ok)
    inf.start(stop)
    assert inf.wait_synced(10)
    wait(lambda: (True, "a") in calls)  # a resync: (obj, obj)
    objects.create(mkpod("b"))
    wait(lambda: (False, "b") in calls)  # still running despite the broken handler


def test_malformed_update_drops_the_object_and_is_logged(
    objects: ObjectStore, store: EtcdStore, stop: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="orchestrator.storage")
    a = objects.create(mkpod("a"))
    inf = Informer(objects, POD, retry_interval=0.1)
    seen: list[Event] = []
    inf.add_handler(recorder(seen))
    inf.start(stop)
    assert inf.wait_synced(10)
    store.put(objects.key_of(a), '{"kind":"Pod","metadata":{"name":"a","namespace":"default"},"spec":{"containers":7}}')
    wait(lambda: ("delete", "a", "") in seen)
    assert inf.get("a") is None
    assert "spec.containers: expected a list of objects" in caplog.text


def test_a_batch_costs_its_changes_not_the_cache(objects: ObjectStore) -> None:
    inf = Informer(objects, POD, indexers={"node": by_node})
    template = mkpod("x", "h1")

    def p(i: int, rv: int) -> dict[str, Any]:
        o = {**template, "metadata": {**template["metadata"], "name": f"p{i}", "resourceVersion": str(rv)}}
        return o

    keys = [objects.key(POD, f"p{i}", "default") for i in range(10000)]
    inf.apply(ObjectView({k: p(i, 1) for i, k in enumerate(keys)}, 1, None))
    t = time.perf_counter()
    for j in range(2000):
        k = keys[j % 10000]
        inf.apply(ObjectView({k: p(j % 10000, j + 2)}, j + 2, frozenset({k})))
    per = (time.perf_counter() - t) / 2000
    assert per < 0.0005, f"{per * 1e6:.0f} us per one-key batch with 10,000 cached pods"
    assert len(inf) == 10000 and len(inf.by_index("node", "h1")) == 10000


def test_one_watch_batch_is_dispatched_in_etcd_order(objects: ObjectStore, store: EtcdStore, stop: threading.Event) -> None:
    """Several changes committed in one transaction arrive as one watch batch: handlers must
    still see them in etcd's order (z before a), one call per event."""
    from netplane.store import codec
    from netplane.store.txn import Put

    inf = Informer(objects, POD, retry_interval=0.1)
    seen: list[Event] = []
    inf.add_handler(recorder(seen))
    inf.start(stop)
    assert inf.wait_synced(10)
    z, a = mkpod("z"), mkpod("a")
    for p in (z, a):
        p["metadata"]["uid"] = "u-" + p["metadata"]["name"]
    store.txn([], [Put(objects.key_of(z), codec.dumps(z)), Put(objects.key_of(a), codec.dumps(a))])
    wait(lambda: len(seen) >= 2)
    assert seen == [("add", "z", ""), ("add", "a", "")]
