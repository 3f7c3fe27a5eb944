"""Subnet leases against a real etcd: acquire order, races, renewal without events, release."""

from __future__ import annotations

import random
import threading
from ipaddress import IPv4Address, IPv4Network

import pytest

from netplane.errors import LeaseError
from netplane.store import EtcdStore, Keys, codec
from netplane.store.etcd import WatchEvent
from netplane.subnet.config import parse_config
from netplane.subnet.lease import LeaseAttrs, list_leases
from netplane.subnet.manager import LeaseManager

CFG = parse_config({"Network": "10.244.0.0/16"})


def attrs(i: int, mac: str | None = None) -> LeaseAttrs:
    return LeaseAttrs(public_ip=IPv4Address(f"192.168.0.{i}"), vtep_mac=mac or f"02:00:00:00:00:{i:02x}", vni=1, node=f"h{i}")


def test_acquire_is_distinct_and_restart_reuses_by_public_ip(store: EtcdStore, keys: Keys) -> None:
    m = LeaseManager(store, keys, ttl=60)
    a = m.acquire(CFG, attrs(1))
    b = m.acquire(CFG, attrs(2))
    assert a.subnet != b.subnet and CFG.contains_subnet(a.subnet)
    rev = store.list(keys.subnets)[1]
    again = m.acquire(CFG, attrs(1))  # a restart: same PublicIP and MAC
    assert again.subnet == a.subnet and again.lease_id == a.lease_id
    assert store.list(keys.subnets)[1] == rev  # nothing was written
    rows = {l.subnet: l for l in list_leases(store, keys)}
    assert rows[a.subnet].public_ip == IPv4Address("192.168.0.1")
    assert 0 < (rows[a.subnet].ttl_left or 0) <= 60


def test_changed_vtep_mac_updates_the_value(store: EtcdStore, keys: Keys) -> None:
    m = LeaseManager(store, keys, ttl=60)
    a = m.acquire(CFG, attrs(1))
    b = m.acquire(CFG, attrs(1, mac="02:00:00:00:aa:aa"))
    assert b.subnet == a.subnet
    assert [l.vtep_mac for l in list_leases(store, keys)] == ["02:00:00:00:aa:aa"]


def test_remembered_subnet_is_used_when_the_lease_is_gone(store: EtcdStore, keys: Keys) -> None:
    m = LeaseManager(store, keys, ttl=60)
    want = IPv4Network("10.244.77.0/24")
    assert m.acquire(CFG, attrs(1), remembered=want).subnet == want
    store.delete(keys.subnet(want))
    assert m.acquire(CFG, attrs(1), remembered=want).subnet == want


def test_lost_race_retries_with_another_subnet(store: EtcdStore, keys: Keys) -> None:
    want = IPv4Network("10.244.50.0/24")
    results: dict[int, IPv4Network] = {}
    barrier = threading.Barrier(8)

    def run(i: int) -> None:
        m = LeaseManager(store, keys, ttl=60, rng=random.Random(i))
        barrier.wait()
        results[i] = m.acquire(CFG, attrs(i), remembered=want).subnet

    ts = [threading.Thread(target=run, args=(i,)) for i in range(1, 9)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(results) == 8 and len(set(results.values())) == 8
    assert want in results.values()
    assert len(store.list(keys.subnets)[0]) == 8


def test_exhaustion_is_a_clear_error(store: EtcdStore, keys: Keys) -> None:
    small = parse_config({"Network": "10.9.0.0/24", "SubnetLen": 26})  # 3 leasable subnets
    m = LeaseManager(store, keys, ttl=60)
    got = {m.acquire(small, attrs(i)).subnet for i in (1, 2, 3)}
    assert len(got) == 3
    with pytest.raises(LeaseError, match="no free subnet: all 3 /26 subnets"):
        m.acquire(small, attrs(4))


def test_malformed_values_are_skipped_but_their_subnet_stays_taken(store: EtcdStore, keys: Keys) -> None:
    small = parse_config({"Network": "10.9.0.0/24", "SubnetLen": 25})  # 1 leasable subnet: .128
    store.put(keys.subnet(IPv4Network("10.9.0.128/25")), "{not json")
    store.put(keys.subnets + "not-a-subnet", codec.dumps({"x": 1}))
    assert list_leases(store, keys) == []
    with pytest.raises(LeaseError, match="no free subnet"):
        LeaseManager(store, keys, ttl=60).acquire(small, attrs(1))


def test_renewal_is_a_keepalive_that_peers_do_not_see(store: EtcdStore, keys: Keys) -> None:
    m = LeaseManager(store, keys, ttl=30)
    a = m.acquire(CFG, attrs(1))
    kv0 = store.get(keys.subnet(a.subnet))
    assert kv0 is not None
    stop = threading.Event()
    seen: list[WatchEvent] = []
    cv = threading.Condition()

    def watch() -> None:
        for batch in store.watch(keys.subnets, start_revision=kv0.mod_revision + 1, stop=stop):
            with cv:
                seen.extend(batch)
                cv.notify_all()

    t = threading.Thread(target=watch)
    t.start()
    try:
        for _ in range(3):
            assert m.renew(a) > 0
        assert m.still_ours(a)
        b = m.acquire(CFG, attrs(2))  # a real change after the renewals: the marker
        with cv:  # the watch replays from kv0's revision in order, so b's event comes after any renewal's
            assert cv.wait_for(lambda: any(e.key == keys.subnet(b.subnet) for e in seen), 10), seen
    finally:
        stop.set()
        t.join(10)
    assert [e.key for e in seen] == [keys.subnet(b.subnet)]  # nothing for a's key
    kv1 = store.get(keys.subnet(a.subnet))
    assert kv1 is not None and kv1.mod_revision == kv0.mod_revision


def test_release_deletes_and_expiry_removes(store: EtcdStore, keys: Keys) -> None:
    m = LeaseManager(store, keys, ttl=60)
    a = m.acquire(CFG, attrs(1))
    m.release(a)
    assert store.get(keys.subnet(a.subnet)) is None
    short = LeaseManager(store, keys, ttl=2).acquire(CFG, attrs(2))
    assert store.get(keys.subnet(short.subnet)) is not None
    deadline = threading.Event()
    for _ in range(40):
        if store.get(keys.subnet(short.subnet)) is None:
            break
        deadline.wait(0.25)
    assert store.get(keys.subnet(short.subnet)) is None
    assert LeaseManager(store, keys, ttl=60).renew(short) == 0
