"""The store adapter and list+watch helpers against a real etcd."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from netplane.errors import DecodeError, StoreError
from netplane.store import EtcdConfig, EtcdStore, Keys
from netplane.store.embedded import EmbeddedEtcd
from netplane.store.watch import Resync, View, list_watch, reflect


def test_get_put_list_delete(store: EtcdStore, keys: Keys) -> None:
    p = keys.prefix
    store.put(f"{p}/a", "1")
    store.put(f"{p}/b", b"2")
    kv = store.get(f"{p}/a")
    assert kv is not None and kv.value == b"1" and kv.version == 1
    items, rev = store.list(p + "/")
    assert [i.key for i in items] == [f"{p}/a", f"{p}/b"]
    assert rev >= kv.mod_revision
    assert store.delete(f"{p}/a")
    assert not store.delete(f"{p}/a")
    assert store.get(f"{p}/a") is None


def test_create_only_race_exactly_one_wins(etcd_server: EmbeddedEtcd, keys: Keys) -> None:
    """Two clients (two connections) race 50 times for the same key: one winner each time."""
    a = EtcdStore(EtcdConfig(endpoints=(etcd_server.endpoint,)))
    b = EtcdStore(EtcdConfig(endpoints=(etcd_server.endpoint,)))
    try:
        for i in range(50):
            key = f"{keys.prefix}/race/{i}"
            results: dict[str, bool] = {}
            barrier = threading.Barrier(2)

            def go(name: str, s: EtcdStore, key: str, barrier: threading.Barrier, results: dict[str, bool]) -> None:
                barrier.wait()
                results[name] = s.create(key, name)

            ts = [threading.Thread(target=go, args=(n, s, key, barrier, results)) for n, s in (("a", a), ("b", b))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert sorted(results.values()) == [False, True], results
            winner = next(n for n, ok in results.items() if ok)
            kv = a.get(key)
            assert kv is not None and kv.value.decode() == winner
    finally:
        a.close()
        b.close()


def test_cas_on_mod_revision(store: EtcdStore, keys: Keys) -> None:
    k = f"{keys.prefix}/cas"
    assert store.cas(k, "v1", mod_revision=0)
    kv = store.get(k)
    assert kv is not None
    assert not store.cas(k, "v2", mod_revision=kv.mod_revision - 1)
    assert store.cas(k, "v2", mod_revision=kv.mod_revision)
    assert store.get(k).value == b"v2"  # type: ignore[union-attr]
    assert not store.delete(k, mod_revision=kv.mod_revision)
    assert store.delete(k, mod_revision=store.get(k).mod_revision)  # type: ignore[union-attr]


def test_lease_keys_expire_and_keepalive_extends(store: EtcdStore, keys: Keys) -> None:
    lease = store.grant(2)
    k = f"{keys.prefix}/leased"
    store.put(k, "x", lease=lease)
    assert 0 < store.time_to_live(lease) <= 2
    for _ in range(3):
        time.sleep(1)
        assert store.keepalive(lease) == 2
    assert store.get(k) is not None  # 3 s later, kept alive
    deadline = time.monotonic() + 6
    while store.get(k) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.get(k) is None
    assert store.time_to_live(lease) == -1
    assert store.keepalive(lease) == 0


def test_revoke_deletes_keys(store: EtcdStore, keys: Keys) -> None:
    lease = store.grant(60)
    store.put(f"{keys.prefix}/r", "x", lease=lease)
    store.revoke(lease)
    assert store.get(f"{keys.prefix}/r") is None
    store.revoke(lease)  # idempotent


def _collect(store: EtcdStore, prefix: str, stop: threading.Event, out: list) -> threading.Thread:
    def run() -> None:
        out.extend(list_watch(store, prefix, stop=stop, retry_interval=0.1))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_watch_sees_puts_and_deletes_in_order(store: EtcdStore, keys: Keys) -> None:
    p = keys.prefix + "/w/"
    store.put(p + "before", "0")
    stop = threading.Event()
    out: list = []
    t = _collect(store, p, stop, out)
    _wait(lambda: len(out) >= 1)
    assert isinstance(out[0], Resync) and [i.key for i in out[0].items] == [p + "before"]
    ops = []
    for i in range(20):
        store.put(p + f"k{i % 3}", str(i))
        ops.append(("put", p + f"k{i % 3}", str(i).encode()))
        if i % 5 == 4:
            store.delete(p + f"k{i % 3}")
            ops.append(("delete", p + f"k{i % 3}", None))
    _wait(lambda: sum(len(b) for b in out[1:]) >= len(ops))
    stop.set()
    t.join(5)
    assert not t.is_alive(), "watch did not stop on the stop event"
    events = [e for batch in out[1:] for e in batch]
    assert [(e.kind, e.key, e.value) for e in events] == ops
    revs = [e.mod_revision for e in events]
    assert revs == sorted(revs)


def test_watch_relists_after_etcd_restart(etcd_factory: Callable[[], EmbeddedEtcd]) -> None:
    etcd = etcd_factory()
    s = EtcdStore(EtcdConfig(endpoints=(etcd.endpoint,), timeout=2.0))
    try:
        s.put("/r/a", "1")
        stop = threading.Event()
        out: list = []
        t = _collect(s, "/r/", stop, out)
        _wait(lambda: len(out) >= 1)
        etcd.stop()
        etcd.start()
        s.put("/r/b", "2")
        # Either the watch survived the restart (then b arrives as an event) or it re-listed
        # (then a Resync holding both arrives). The helper must re-list after the break.
        _wait(lambda: any(isinstance(o, Resync) and {i.key for i in o.items} == {"/r/a", "/r/b"} for o in out[1:])
              or any(not isinstance(o, Resync) and any(e.key == "/r/b" for e in o) for o in out[1:]), 20)
        resyncs = [o for o in out if isinstance(o, Resync)]
        assert len(resyncs) >= 2, "expected a re-list after etcd restart"
        stop.set()
        t.join(5)
    finally:
        s.close()


def test_watch_relists_after_compaction(store: EtcdStore, keys: Keys) -> None:
    p = keys.prefix + "/c/"
    store.put(p + "x", "1")
    _, rev = store.list(p)
    for i in range(5):
        store.put(p + "x", str(i))
    _, rev2 = store.list(p)
    store.compact(rev2)
    stop = threading.Event()
    got: list = []
    with pytest.raises(StoreError, match="compacted"):
        got.extend(store.watch(p, start_revision=rev + 1, stop=stop))
    assert got == []


def test_reflect_skips_malformed_values(store: EtcdStore, keys: Keys) -> None:
    p = keys.prefix + "/objs/"
    store.put(p + "good", '{"n": 1}')
    store.put(p + "bad", "{not json")

    def decode(key: str, raw: bytes) -> int:
        from netplane.store import codec

        return codec.field(codec.obj(codec.loads(raw)), "n", int)

    stop = threading.Event()
    views: list[View[int]] = []

    def run() -> None:
        views.extend(reflect(store, p, decode, stop=stop))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    _wait(lambda: len(views) >= 1)
    assert dict(views[0].objects) == {p + "good": 1}
    store.put(p + "bad", '{"n": 2}')
    store.put(p + "good", '{"n": "str"}')
    _wait(lambda: p + "bad" in views[-1].objects and p + "good" not in views[-1].objects)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    with pytest.raises(DecodeError):
        decode("x", b"[]")


def test_unreachable_etcd_is_store_error_naming_endpoint() -> None:
    s = EtcdStore(EtcdConfig(endpoints=("http://127.0.0.1:1",), timeout=0.5))
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1"):
        s.get("/x")
    s.close()
