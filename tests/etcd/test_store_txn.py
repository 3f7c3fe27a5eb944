"""Transactions against a real etcd: every guard kind, all-or-nothing, lease fencing."""

from __future__ import annotations

from netplane.store import EtcdStore, Keys
from netplane.store.txn import Absent, Delete, LeaseIs, ModRevisionIs, Put, ValueIs


def test_all_operations_or_none(store: EtcdStore, keys: Keys) -> None:
    a, b, c = (keys.prefix + f"/{n}" for n in "abc")
    store.put(c, "old")
    r = store.txn([Absent(a), Absent(b)], [Put(a, "1"), Put(b, "2"), Delete(c)])
    assert r.succeeded
    kv_a = store.get(a)
    assert kv_a is not None and kv_a.value == b"1" and kv_a.mod_revision == r.revision
    assert store.get(c) is None
    # one failing guard: nothing at all is written
    r2 = store.txn([Absent(c), Absent(a)], [Put(c, "x"), Put(keys.prefix + "/d", "y")])
    assert not r2.succeeded
    assert store.get(c) is None and store.get(keys.prefix + "/d") is None


def test_mod_revision_guard_rejects_a_stale_read(store: EtcdStore, keys: Keys) -> None:
    k = keys.prefix + "/obj"
    rev = store.put(k, "v1")
    assert store.txn([ModRevisionIs(k, rev)], [Put(k, "v2")]).succeeded
    # the revision we read is stale now
    r = store.txn([ModRevisionIs(k, rev)], [Put(k, "v3")])
    assert not r.succeeded
    kv = store.get(k)
    assert kv is not None and kv.value == b"v2"
    assert not store.txn([ModRevisionIs(keys.prefix + "/missing", rev)], [Put(k, "v4")]).succeeded


def test_lease_guard_fences_writes_after_the_lease_is_gone(store: EtcdStore, keys: Keys) -> None:
    leader, obj = keys.prefix + "/leader", keys.prefix + "/obj"
    lease = store.grant(30)
    assert store.create(leader, "me", lease=lease)
    assert store.txn([LeaseIs(leader, lease)], [Put(obj, "written by the leader")]).succeeded
    other = store.grant(30)
    assert not store.txn([LeaseIs(leader, other)], [Put(obj, "not the leader")]).succeeded
    store.revoke(lease)  # the key goes with its lease
    assert store.get(leader) is None
    assert not store.txn([LeaseIs(leader, lease)], [Put(obj, "deposed")]).succeeded
    kv = store.get(obj)
    assert kv is not None and kv.value == b"written by the leader"
    store.revoke(other)


def test_value_guard(store: EtcdStore, keys: Keys) -> None:
    k = keys.prefix + "/v"
    store.put(k, "a")
    assert not store.txn([ValueIs(k, b"b")], [Put(k, "c")]).succeeded
    assert store.txn([ValueIs(k, b"a")], [Put(k, "c")]).succeeded
    kv = store.get(k)
    assert kv is not None and kv.value == b"c"
