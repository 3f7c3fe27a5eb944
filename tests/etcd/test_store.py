"""The store adapter and list+watch helpers against a real etcd."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from netplane.errors import DecodeError, StoreError
from netplane.store import EtcdConfig, EtcdStore, Keys
from netplane.store.embedded import EmbeddedEtcd
from netplane.store.etcd import Compacted
from netplane.store.watch import Resync, View, list_watch, reflect
from tests.waiting import wait_for


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
    granted = time.monotonic()
    assert 0 < store.time_to_live(lease) <= 2
    # keep it alive for well past its TTL: each time etcd says the lease has aged, refresh it
    while time.monotonic() - granted < 3.5:
        wait_for(lambda: store.time_to_live(lease) < 2, timeout=5)
        assert store.keepalive(lease) == 2
    assert store.get(k) is not None  # 3.5 s later, longer than its TTL: kept alive
    wait_for(lambda: store.get(k) is None, timeout=8)  # no more keepalives: etcd expires it
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


def test_watch_sees_puts_and_deletes_in_order(store: EtcdStore, keys: Keys) -> None:
    p = keys.prefix + "/w/"
    store.put(p + "before", "0")
    stop = threading.Event()
    out: list = []
    t = _collect(store, p, stop, out)
    wait_for(lambda: len(out) >= 1)
    assert isinstance(out[0], Resync) and [i.key for i in out[0].items] == [p + "before"]
    ops = []
    for i in range(20):
        store.put(p + f"k{i % 3}", str(i))
        ops.append(("put", p + f"k{i % 3}", str(i).encode()))
        if i % 5 == 4:
            store.delete(p + f"k{i % 3}")
            ops.append(("delete", p + f"k{i % 3}", None))
    wait_for(lambda: sum(len(b) for b in out[1:]) >= len(ops))
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
        wait_for(lambda: len(out) >= 1)
        etcd.stop()
        etcd.start()
        s.put("/r/b", "2")
        # Either the watch survived the restart (then b arrives as an event) or it re-listed
        # (then a Resync holding both arrives). The helper must re-list after the break.
        wait_for(lambda: any(isinstance(o, Resync) and {i.key for i in o.items} == {"/r/a", "/r/b"} for o in out[1:])
              or any(not isinstance(o, Resync) and any(e.key == "/r/b" for e in o) for o in out[1:]), 20)
        resyncs = [o for o in out if isinstance(o, Resync)]
        assert len(resyncs) >= 2, "expected a re-list after etcd restart"
        stop.set()
        t.join(5)
    finally:
        s.close()


def test_a_second_start_while_running_is_refused(etcd_factory: Callable[[], EmbeddedEtcd]) -> None:
    """Starting a running etcd again would spawn a second one and lose track of the first."""
    etcd = etcd_factory()
    pid = etcd.pid
    with pytest.raises(StoreError, match="already running"):
        etcd.start()
    assert etcd.pid == pid and etcd.proc is not None and etcd.proc.poll() is None


def test_raw_watch_from_a_compacted_revision_raises_compacted(store: EtcdStore, keys: Keys) -> None:
    p = keys.prefix + "/c/"
    store.put(p + "x", "1")
    _, rev = store.list(p)
    for i in range(5):
        store.put(p + "x", str(i))
    _, rev2 = store.list(p)
    store.compact(rev2)
    got: list = []
    with pytest.raises(Compacted, match="compacted") as exc:
        got.extend(store.watch(p, start_revision=rev + 1, stop=threading.Event()))
    assert got == [] and exc.value.compact_revision == rev2


def test_reflect_relists_after_compaction_and_keeps_following(
    store: EtcdStore, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """The reflector listed at R and its consumer is still busy with that view (the watch from
    R+1 is not open yet) while keys change and etcd compacts past R. When the consumer comes
    back, the watch from R+1 is refused as compacted: the reflector must re-list, hand over the
    full current view (the changes made in the gap included) and then follow new changes."""
    caplog.set_level(logging.INFO, logger="netplane.store.watch")
    p = keys.prefix + "/rc/"
    store.put(p + "keep", "1")
    store.put(p + "drop", "1")
    store.put(p + "edit", "1")
    stop = threading.Event()
    busy = threading.Event()  # set: the consumer is done with the first view
    views: list[View[bytes]] = []

    def run() -> None:
        for v in reflect(store, p, lambda _k, raw: raw, stop=stop, retry_interval=0.1):
            views.append(v)
            if len(views) == 1:
                busy.wait(20)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(views) >= 1)
        first = views[0]
        assert dict(first.objects) == {p + "keep": b"1", p + "drop": b"1", p + "edit": b"1"}
        # the gap: changes, then a compaction past the revision the reflector listed at
        store.delete(p + "drop")
        store.put(p + "edit", "2")
        store.put(p + "new", "3")
        for i in range(3):
            store.put(p + "edit", f"3.{i}")
        _, gap_rev = store.list(p)
        store.compact(gap_rev)
        assert gap_rev > first.revision
        busy.set()
        want = {p + "keep": b"1", p + "edit": b"3.2", p + "new": b"3"}
        wait_for(lambda: len(views) >= 2)
        relisted = views[1]
        assert relisted.changed is None, "expected a resync (full view) after the compaction"
        assert dict(relisted.objects) == want
        assert relisted.revision >= gap_rev
        assert any("compacted" in r.getMessage() for r in caplog.records), "the re-list was not for compaction"
        # and it does not stall: a change after the re-list arrives as an ordinary event
        store.put(p + "after", "4")
        wait_for(lambda: p + "after" in views[-1].objects)
        last = views[-1]
        assert last.changed == frozenset({p + "after"}) and dict(last.objects) == {**want, p + "after": b"4"}
        assert [v.changed for v in views].count(None) == 2  # one list at start, one re-list
    finally:
        busy.set()
        stop.set()
        t.join(5)
    assert not t.is_alive(), "reflect did not stop on the stop event"


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
    wait_for(lambda: len(views) >= 1)
    assert dict(views[0].objects) == {p + "good": 1}
    store.put(p + "bad", '{"n": 2}')
    store.put(p + "good", '{"n": "str"}')
    wait_for(lambda: p + "bad" in views[-1].objects and p + "good" not in views[-1].objects)
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
