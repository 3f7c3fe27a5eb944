"""`AsyncReader` and `LoopBridgedStore` (the API server's etcd calls on its event loop)
against a real etcd: the same answers and errors as the blocking channel, from the loop and
from worker threads, and no hang once the loop is gone."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pytest

from netplane.errors import StoreError
from netplane.store import EtcdStore, Keys
from netplane.store.etcd import AsyncReader, LoopBridgedStore
from netplane.store.txn import Absent, ModRevisionIs, Put


@dataclass
class LoopThread:
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    ident: int


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    idents: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        idents.append(threading.get_ident())
        loop.call_soon(started.set)
        loop.run_forever()

    t = threading.Thread(target=run, name="test-loop", daemon=True)
    t.start()
    assert started.wait(5)
    lt = LoopThread(loop, t, idents[0])
    yield lt
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
    t.join(5)
    loop.close()


def on_loop(lt: LoopThread, coro: object) -> object:
    return asyncio.run_coroutine_threadsafe(coro, lt.loop).result(10)  # type: ignore[arg-type]


def make_reader(lt: LoopThread, store: EtcdStore) -> AsyncReader:
    async def make() -> AsyncReader:
        return AsyncReader(store.config)

    r = on_loop(lt, make())
    assert isinstance(r, AsyncReader)
    return r


def test_reader_gets_what_the_blocking_channel_gets(store: EtcdStore, keys: Keys, loop_thread: LoopThread) -> None:
    reader = make_reader(loop_thread, store)
    key = keys.prefix + "/async/a"
    rev = store.put(key, b"one")
    kv = on_loop(loop_thread, reader.get(key))
    assert kv == store.get(key) and kv.mod_revision == rev  # type: ignore[union-attr]
    assert on_loop(loop_thread, reader.get(key + "-absent")) is None
    on_loop(loop_thread, reader.close())


def test_bridged_store_from_threads_the_loop_and_after_it(store: EtcdStore, keys: Keys,
                                                          loop_thread: LoopThread) -> None:
    reader = make_reader(loop_thread, store)
    bridged = LoopBridgedStore(store, reader, loop_thread.loop, loop_thread.ident)
    base = keys.prefix + "/bridged/"

    def create(i: int) -> int:
        r = bridged.txn([Absent(f"{base}{i}")], [Put(f"{base}{i}", f"v{i}")])
        assert r.succeeded
        return r.revision

    with ThreadPoolExecutor(8) as pool:  # worker threads: awaited on the loop
        revs = list(pool.map(create, range(40)))
    # each key at the revision its transaction answered (batched ones share one)
    assert [store.get(f"{base}{i}").mod_revision for i in range(40)] == revs  # type: ignore[union-attr]
    got = bridged.get(f"{base}7")
    assert got is not None and got.value == b"v7" and got.mod_revision == revs[7]
    assert not bridged.txn([ModRevisionIs(f"{base}7", revs[7] - 1)], [Put(f"{base}7", "x")]).succeeded
    assert bridged.create(f"{base}new", "n") and not bridged.create(f"{base}new", "n")  # cas: a txn
    assert [kv.value for kv in bridged.list(base)[0]][:2] == [b"v0", b"v1"]  # the rest: base's channel

    async def from_the_loop() -> bytes | None:  # on the loop's own thread: blocking, no deadlock
        kv = bridged.get(f"{base}3")
        return kv.value if kv else None

    assert on_loop(loop_thread, from_the_loop()) == b"v3"
    on_loop(loop_thread, reader.close())
    loop_thread.loop.call_soon_threadsafe(loop_thread.loop.stop)
    loop_thread.thread.join(5)
    got = bridged.get(f"{base}9")  # the loop is gone: the blocking channel answers
    assert got is not None and got.value == b"v9"
    bridged.close()  # not its channel: the base store still works
    assert store.get(f"{base}9") is not None
    store.delete_prefix(base)


def unreachable(store: EtcdStore) -> EtcdStore:
    """A store of `store`'s settings at a port nobody listens on, with a short timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return EtcdStore(replace(store.config, endpoints=(f"http://127.0.0.1:{port}",), timeout=0.5))


def test_unreachable_etcd_is_a_store_error(store: EtcdStore, loop_thread: LoopThread) -> None:
    dead = unreachable(store)
    try:
        reader = make_reader(loop_thread, dead)
        bridged = LoopBridgedStore(dead, reader, loop_thread.loop, loop_thread.ident)
        with ThreadPoolExecutor(1) as pool:
            with pytest.raises(StoreError, match="cannot reach etcd") as e:
                pool.submit(bridged.txn, [Absent("/x")], [Put("/x", "1")]).result(10)
            assert "txn /x" in str(e.value)
            with pytest.raises(StoreError, match="cannot reach etcd"):
                pool.submit(bridged.get, "/x").result(10)
        on_loop(loop_thread, reader.close())
    finally:
        dead.close()


def test_bridged_store_under_greenbridge_awaits_on_the_loop(store: EtcdStore, keys: Keys,
                                                             loop_thread: LoopThread) -> None:
    """Under `greenbridge.run` (the API server's writes) gets and transactions are awaited on
    the loop's own channel: with the blocking channel closed they still work, concurrently."""
    from netplane.store import greenbridge

    own = EtcdStore(store.config)
    reader = make_reader(loop_thread, store)
    bridged = LoopBridgedStore(own, reader, loop_thread.loop, loop_thread.ident)
    own.close()  # only the loop's channel can answer now
    base = keys.prefix + "/green/"

    def write(i: int) -> bytes:
        assert bridged.txn([Absent(f"{base}{i}")], [Put(f"{base}{i}", f"g{i}")]).succeeded
        kv = bridged.get(f"{base}{i}")
        assert kv is not None
        return kv.value

    async def main() -> list[bytes]:
        return list(await asyncio.gather(*(greenbridge.run(write, i) for i in range(20))))

    assert on_loop(loop_thread, main()) == [f"g{i}".encode() for i in range(20)]

    async def outside() -> object:  # the loop's thread, not under run: the (closed) blocking channel
        return bridged.get(f"{base}1")

    with pytest.raises(ValueError, match="closed channel"):
        on_loop(loop_thread, outside())
    on_loop(loop_thread, reader.close())
    store.delete_prefix(base)


# ---------------------------------------------------------------------------- batched transactions
def _create(base: str, i: int, value: str | bytes = "") -> tuple[list[object], list[object]]:
    from netplane.store.etcd import _compare, _request_op

    return [_compare(Absent(f"{base}{i}"))], [_request_op(Put(f"{base}{i}", value or f"v{i}"))]


def test_concurrent_transactions_go_together_each_with_its_own_outcome(store: EtcdStore, keys: Keys,
                                                                      loop_thread: LoopThread) -> None:
    """50 creates at once, 10 of them of keys that exist: the reader sends two at once and the
    rest in batches (nested Txns). Each answers its own guard; the written share a revision,
    which is each key's mod revision; nothing else is written."""
    reader = make_reader(loop_thread, store)
    base = keys.prefix + "/batch/"
    existing = {store.put(f"{base}{i}", "old") and i for i in range(0, 50, 5)}
    calls: list[str] = []
    reader.observer = lambda what, s, failed: calls.append(what)

    async def main() -> list[tuple[bool, int]]:
        return list(await asyncio.gather(*(reader.txn_raw(f"txn {base}{i}", *_create(base, i)) for i in range(50))))

    got = on_loop(loop_thread, main())
    assert isinstance(got, list)
    assert [ok for ok, _ in got] == [i not in existing for i in range(50)]
    for i, (ok, rev) in enumerate(got):
        kv = store.get(f"{base}{i}")
        assert kv is not None
        assert kv.value == (b"old" if i in existing else f"v{i}".encode())
        if ok:
            assert kv.mod_revision == rev
    written = {rev for ok, rev in got if ok}
    assert len(written) < 10, written  # 40 creates in a few transactions, not 40
    assert sorted(calls) == sorted(f"txn {base}{i}" for i in range(50))  # observed once each
    assert len(store.list(base)[0]) == 50
    on_loop(loop_thread, reader.close())
    store.delete_prefix(base)


def test_one_key_twice_waits_for_the_next_batch(store: EtcdStore, keys: Keys, loop_thread: LoopThread) -> None:
    """etcd refuses a Txn that writes a key twice: two creates of one key at once are sent
    apart, in order, so one wins and the other's guard fails, as without batching."""
    reader = make_reader(loop_thread, store)
    base = keys.prefix + "/twice/"

    async def main() -> list[tuple[bool, int]]:
        calls = [reader.txn_raw(f"txn {base}{i}", *_create(base, i)) for i in range(6)]
        calls += [reader.txn_raw(f"txn {base}0", *_create(base, 0, f"second-{n}")) for n in range(3)]
        return list(await asyncio.gather(*calls))

    got = on_loop(loop_thread, main())
    assert isinstance(got, list)
    assert [ok for ok, _ in got] == [True] * 6 + [False] * 3
    assert store.get(f"{base}0").value == b"v0"  # type: ignore[union-attr]
    on_loop(loop_thread, reader.close())
    store.delete_prefix(base)


def test_a_batch_etcd_refuses_whole_goes_again_one_by_one(store: EtcdStore, keys: Keys,
                                                           loop_thread: LoopThread) -> None:
    """Six values of 450 KB: two go at once, and the other four are let into one batch here
    (the reader's own cap is 512 KB). etcd refuses the 1.8 MB request as too large and applies
    none of it; each then goes alone."""
    reader = make_reader(loop_thread, store)
    reader.batch_max_bytes = 64 * 1024 * 1024
    base = keys.prefix + "/large/"
    big = [bytes([65 + i]) * (450 * 1024) for i in range(6)]

    async def main() -> list[tuple[bool, int]]:
        return list(await asyncio.gather(*(reader.txn_raw(f"txn {base}{i}", *_create(base, i, big[i]))
                                           for i in range(6))))

    got = on_loop(loop_thread, main())
    assert isinstance(got, list)
    assert all(ok for ok, _ in got)
    assert [store.get(f"{base}{i}").value for i in range(6)] == big  # type: ignore[union-attr]
    assert len({rev for _, rev in got}) == 6  # each in a transaction of its own
    on_loop(loop_thread, reader.close())
    store.delete_prefix(base)


def test_a_waiting_transaction_whose_caller_leaves_is_never_sent(store: EtcdStore, keys: Keys,
                                                                 loop_thread: LoopThread) -> None:
    async def make() -> AsyncReader:
        return AsyncReader(store.config, max_inflight=1)

    reader = on_loop(loop_thread, make())
    assert isinstance(reader, AsyncReader)
    base = keys.prefix + "/left/"

    async def main() -> bool:
        first = asyncio.ensure_future(reader.txn_raw(f"txn {base}0", *_create(base, 0)))
        await asyncio.sleep(0)  # on its way: the next waits
        second = asyncio.ensure_future(reader.txn_raw(f"txn {base}1", *_create(base, 1)))
        await asyncio.sleep(0)
        second.cancel()
        ok, _ = await first
        third = await reader.txn_raw(f"txn {base}2", *_create(base, 2))  # after: at once
        return ok and third[0]

    assert on_loop(loop_thread, main()) is True
    assert store.get(f"{base}0") is not None and store.get(f"{base}2") is not None
    assert store.get(f"{base}1") is None
    on_loop(loop_thread, reader.close())
    store.delete_prefix(base)


def test_a_batch_to_an_unreachable_etcd_fails_each_with_its_own_error(store: EtcdStore,
                                                                      loop_thread: LoopThread) -> None:
    dead = unreachable(store)
    try:
        reader = make_reader(loop_thread, dead)

        async def main() -> list[object]:
            return list(await asyncio.gather(*(reader.txn_raw(f"txn /dead/{i}", *_create("/dead/", i))
                                               for i in range(6)), return_exceptions=True))

        got = on_loop(loop_thread, main())
        assert isinstance(got, list)
        assert all(isinstance(e, StoreError) and "cannot reach etcd" in str(e) for e in got), got
        assert [f"/dead/{i}" in str(e) for i, e in enumerate(got)] == [True] * 6
        on_loop(loop_thread, reader.close())
    finally:
        dead.close()


class _Counted:
    """The reader's own KV stub, counting the gRPC calls made through it."""

    def __init__(self, kv: object) -> None:
        self.kv, self.calls = kv, {"Range": 0, "Txn": 0}

    def __getattr__(self, name: str) -> object:
        if name in ("Range", "Txn"):
            self.calls[name] += 1
        return getattr(self.kv, name)


def test_concurrent_gets_go_together_each_with_its_own_key(store: EtcdStore, keys: Keys,
                                                           loop_thread: LoopThread) -> None:
    """70 gets at once, of 30 keys (each twice) and 10 that do not exist: two go at once as
    Ranges, the rest wait and go together as read-only Txns of Ranges. Each answers its own
    key at its own mod revision (what the blocking channel reads), and each is observed once."""
    reader = make_reader(loop_thread, store)
    counted = _Counted(reader._kv)
    reader._kv = counted
    base = keys.prefix + "/gets/"
    for i in range(30):
        store.put(f"{base}{i}", f"value-{i}" * (i + 1))
    names = [f"{base}{i % 40}" for i in range(80) if i % 40 < 30 or i < 40]
    assert len(names) == 70
    observed: list[str] = []
    reader.observer = lambda what, s, failed: observed.append(what) if not failed else None

    async def main() -> list[object]:
        return list(await asyncio.gather(*(reader.get(k) for k in names)))

    got = on_loop(loop_thread, main())
    assert isinstance(got, list)
    for k, kv in zip(names, got, strict=True):
        want = store.get(k)
        if want is None:
            assert kv is None, k
        else:
            assert kv == want, k
    assert counted.calls["Range"] == 2 and 1 <= counted.calls["Txn"] <= 4, counted.calls
    assert sorted(observed) == sorted(f"get {k}" for k in names)
    # an idle channel: a get goes at once, as a Range
    assert on_loop(loop_thread, reader.get(f"{base}3")) == store.get(f"{base}3")
    assert counted.calls["Range"] == 3
    on_loop(loop_thread, reader.close())
    store.delete_prefix(base)


def test_under_load_one_call_goes_at_a_time(store: EtcdStore, keys: Keys, loop_thread: LoopThread) -> None:
    """An idle reader sends two transactions (or reads) at once and batches the rest; once a
    batch held `BUSY_BATCH` or more, the next ones wait for the one call on its way and go
    together, until a small batch shows the load gone."""
    from netplane.store.etcd import BUSY_BATCH

    reader = make_reader(loop_thread, store)
    counted = _Counted(reader._kv)
    reader._kv = counted
    base = keys.prefix + "/busy/"

    async def wave(start: int, n: int) -> list[tuple[bool, int]]:
        return list(await asyncio.gather(*(reader.txn_raw(f"txn {base}{i}", *_create(base, i))
                                           for i in range(start, start + n))))

    async def gets(n: int) -> list[object]:
        return list(await asyncio.gather(*(reader.get(f"{base}{i}") for i in range(n))))

    got = on_loop(loop_thread, wave(0, 30))
    assert all(ok for ok, _ in got) and counted.calls["Txn"] == 3  # two alone, one batch of 28
    got = on_loop(loop_thread, wave(30, 30))
    assert all(ok for ok, _ in got) and counted.calls["Txn"] == 5  # one alone, one batch of 29
    assert on_loop(loop_thread, gets(30)) and counted.calls["Range"] == 2 and counted.calls["Txn"] == 6
    assert len(on_loop(loop_thread, gets(30))) == 30
    assert counted.calls["Range"] == 3 and counted.calls["Txn"] == 7  # one Range, one batch of 29
    # a light load again: one waits for the call on its way and goes as a batch of its own,
    # small, after which two may go at once again
    assert BUSY_BATCH > 2
    got = on_loop(loop_thread, wave(60, 2))
    assert all(ok for ok, _ in got) and counted.calls["Txn"] == 9
    got = on_loop(loop_thread, wave(62, 2))
    assert all(ok for ok, _ in got) and counted.calls["Txn"] == 11 and reader._txn_room()
    on_loop(loop_thread, reader.close())
    store.delete_prefix(base)


def test_a_waiting_get_whose_caller_leaves_is_never_sent(store: EtcdStore, keys: Keys,
                                                          loop_thread: LoopThread) -> None:
    async def make() -> AsyncReader:
        return AsyncReader(store.config, max_get_inflight=1)

    reader = on_loop(loop_thread, make())
    assert isinstance(reader, AsyncReader)
    counted = _Counted(reader._kv)
    reader._kv = counted
    base = keys.prefix + "/left-get/"
    store.put(f"{base}0", "zero")

    async def main() -> object:
        first = asyncio.ensure_future(reader.get(f"{base}0"))
        await asyncio.sleep(0)  # on its way: the next waits
        second = asyncio.ensure_future(reader.get(f"{base}1"))
        await asyncio.sleep(0)
        second.cancel()
        kv = await first
        await asyncio.sleep(0.2)
        return kv

    kv = on_loop(loop_thread, main())
    assert kv == store.get(f"{base}0")
    assert counted.calls == {"Range": 1, "Txn": 0}
    on_loop(loop_thread, reader.close())
    store.delete_prefix(base)


def test_a_batch_of_gets_whose_answer_is_over_the_limit_goes_again_one_by_one(
        store: EtcdStore, keys: Keys, loop_thread: LoopThread) -> None:
    """Six values of 600 KB through a channel that takes answers of up to 1 MB: two go at once,
    the other four together; gRPC refuses their 2.4 MB answer (RESOURCE_EXHAUSTED), and each
    then goes alone and is answered."""
    import grpc

    from netplane.store.etcd import channel_setup, etcdrpc

    reader = make_reader(loop_thread, store)
    target, options, _ = channel_setup(store.config)
    assert store.config.secure is False
    small = [(k, v) for k, v in options if k != "grpc.max_receive_message_length"]

    async def narrow() -> None:
        await reader._channel.close()
        reader._channel = grpc.aio.insecure_channel(target, options=[*small, ("grpc.max_receive_message_length", 1 << 20)])
        reader._kv = etcdrpc.KVStub(reader._channel)

    on_loop(loop_thread, narrow())
    counted = _Counted(reader._kv)
    reader._kv = counted
    base = keys.prefix + "/large-get/"
    big = [bytes([65 + i]) * (600 * 1024) for i in range(6)]
    for i, v in enumerate(big):
        store.put(f"{base}{i}", v)

    async def main() -> list[object]:
        return list(await asyncio.gather(*(reader.get(f"{base}{i}") for i in range(6))))

    got = on_loop(loop_thread, main())
    assert isinstance(got, list)
    assert [kv.value for kv in got] == big  # type: ignore[attr-defined]
    assert counted.calls == {"Range": 6, "Txn": 1}, counted.calls
    on_loop(loop_thread, reader.close())
    store.delete_prefix(base)


def test_a_batch_of_gets_to_an_unreachable_etcd_fails_each_with_its_own_error(
        store: EtcdStore, loop_thread: LoopThread) -> None:
    dead = unreachable(store)
    try:
        reader = make_reader(loop_thread, dead)

        async def main() -> list[object]:
            return list(await asyncio.gather(*(reader.get(f"/dead/{i}") for i in range(6)),
                                             return_exceptions=True))

        got = on_loop(loop_thread, main())
        assert isinstance(got, list)
        assert all(isinstance(e, StoreError) and "cannot reach etcd" in str(e) for e in got), got
        assert [f"/dead/{i}" in str(e) for i, e in enumerate(got)] == [True] * 6
        on_loop(loop_thread, reader.close())
    finally:
        dead.close()
