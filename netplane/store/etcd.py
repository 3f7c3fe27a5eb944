"""The one module that talks to etcd (v3 gRPC API).

We use the generated protobuf stubs shipped by `etcd-sdk-python` (import `pyetcd`, the
maintained fork of python-etcd3 that imports with current protobuf) over our own gRPC channel,
not its high-level client: that client marks an endpoint dead for 300 s after one failure and
runs watches on callback threads we cannot stop or re-list cleanly. Owning the channel gives us
multi-endpoint failover (gRPC round-robin over `ipv4:` targets), keepalives that notice a dead
etcd under an open watch within about 13 s (at the rate etcd's keepalive policy accepts), and a
watch stream we can cancel from a stop event.

Everything raised from here is a `StoreError` naming the endpoint(s), or `Compacted`.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

import grpc
from pyetcd import etcdrpc as _etcdrpc

from netplane.errors import ConfigError, StoreError
from netplane.store import greenbridge
from netplane.store.txn import Absent, Guard, LeaseIs, ModRevisionIs, Op, Put, TxnResult

log = logging.getLogger(__name__)
Observer = Callable[[str, float, bool], None]  # (what, seconds, failed) of one etcd call

etcdrpc: Any = _etcdrpc  # generated protobuf/gRPC code: typed loosely on purpose
T = TypeVar("T")
# AsyncReader's transactions (bench/results/api.md): how many may be on their way before the
# next ones wait and go together, and how much a batch may hold (etcd refuses a Txn of more
# than 128 operations at its defaults, or a request over 1.5 MiB)
TXN_INFLIGHT = 2
BATCH_MAX_TXNS = 64
BATCH_MAX_BYTES = 512 * 1024
# its single-key gets, the same way: while this many Ranges are on their way, the next gets
# wait and go together as one read-only Txn of Ranges (one gRPC call for many: the call, not
# the read, is what a get costs the loop; bench/results/api.md)
GET_INFLIGHT = 2
# Under load, one call on its way at a time, whatever the limits above: once a batch holds
# this many, the next ones wait for the call before them and go together. A gRPC call costs
# the loop ~0.2 ms of CPU whatever it carries and etcd serves one batch after another anyway,
# so at 50 closed-loop clients one call at a time took 6 % off the API server's CPU a patch,
# 12 % a create and 17 % a GET (p50 better in every run); at a light load a second call
# spares a request the wait for the one before it (2026-12-08, bench/results/api.md)
BUSY_BATCH = 4
BATCH_MAX_GETS = 64


@dataclass(frozen=True)
class EtcdConfig:
    """How to reach etcd: endpoint URLs (all http or all https), optional TLS files, timeout."""

    endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)
    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    timeout: float = 5.0

    @classmethod
    def parse(
        cls,
        endpoints: str,
        *,
        ca_cert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        timeout: float = 5.0,
    ) -> EtcdConfig:
        """Build from a comma-separated endpoint list, validating every URL."""
        eps = tuple(e.strip() for e in endpoints.split(",") if e.strip())
        if not eps:
            raise ConfigError("no etcd endpoint given")
        cfg = cls(endpoints=eps, ca_cert=ca_cert, cert=cert, key=key, timeout=timeout)
        cfg.hostports()  # validates
        if (cert is None) != (key is None):
            raise ConfigError("--etcd-cert and --etcd-key must be given together")
        return cfg

    @property
    def secure(self) -> bool:
        return self.endpoints[0].startswith("https://")

    @property
    def label(self) -> str:
        return ",".join(self.endpoints)

    def hostports(self) -> list[tuple[str, int]]:
        out = []
        schemes = set()
        for ep in self.endpoints:
            u = urlsplit(ep if "://" in ep else f"http://{ep}")
            if u.scheme not in ("http", "https"):
                raise ConfigError(f"etcd endpoint {ep!r}: scheme must be http or https")
            schemes.add(u.scheme)
            try:
                port = u.port or 2379
            except ValueError as e:
                raise ConfigError(f"etcd endpoint {ep!r}: bad port") from e
            if not u.hostname:
                raise ConfigError(f"etcd endpoint {ep!r}: no host")
            out.append((u.hostname, port))
        if len(schemes) > 1:
            raise ConfigError("etcd endpoints mix http and https")
        return out


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    version: int
    lease: int


@dataclass(frozen=True)
class WatchEvent:
    kind: Literal["put", "delete"]
    key: str
    value: bytes | None
    mod_revision: int
    create_revision: int = 0
    prev_value: bytes | None = None


@dataclass(frozen=True)
class Page:
    """A range read with a limit: the items, the revision read at, whether more keys follow
    and how many keys the range holds from its start (etcd's `count`)."""

    items: list[KeyValue]
    revision: int
    more: bool
    count: int


class Compacted(StoreError):
    """The watch start revision was compacted away: re-list."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted (now {compact_revision})")
        self.compact_revision = compact_revision


# (text in gRPC's detail, what we say), first match wins. TLS failures come first: with a
# rejected client certificate the TLS 1.3 handshake completes on the client and the server's
# alert then fails the first record ("Unwrap failed"); without these, both read "unavailable",
# like an etcd that is down.
_REASONS: tuple[tuple[str, str], ...] = (
    ("CERTIFICATE_VERIFY_FAILED", "TLS handshake failed: etcd's certificate did not verify against --etcd-ca"),
    ("handshake failed", "TLS handshake failed"),
    ("Unwrap failed", "TLS rejected by etcd: no client certificate, or one etcd's CA did not sign (--etcd-cert/--etcd-key)"),
    ("Connection refused", "connection refused"),
    ("No route to host", "no route to host"),
    ("Network is unreachable", "network is unreachable"),
    ("Connection reset", "connection reset"),
    ("Name or service not known", "name or service not known"),
)


def prefix_range_end(prefix: bytes) -> bytes:
    """The etcd range end that selects every key starting with `prefix`."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


def _b(s: str | bytes) -> bytes:
    return s.encode() if isinstance(s, str) else s


def _kv(kv: Any) -> KeyValue:
    return KeyValue(
        key=kv.key.decode(errors="replace"),
        value=bytes(kv.value),
        mod_revision=kv.mod_revision,
        create_revision=kv.create_revision,
        version=kv.version,
        lease=kv.lease,
    )


def channel_setup(config: EtcdConfig) -> tuple[str, builtins.list[tuple[str, Any]], grpc.ChannelCredentials | None]:
    """gRPC target, channel options and TLS credentials (None: plaintext) for `config`; the
    same for the blocking channel and the asyncio one."""
    hostports = config.hostports()
    if len(hostports) == 1:
        h, p = hostports[0]
        target = f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
    else:
        try:
            parts = []
            for h, p in hostports:
                parts.append(f"[{h}]:{p}" if ip_address(h).version == 6 else f"{h}:{p}")
        except ValueError as e:
            raise ConfigError("several etcd endpoints must be IP addresses") from e
        target = "ipv4:" + ",".join(parts)
    options = [
        # etcd answers pings more often than --grpc-keepalive-min-time (5 s), or any ping on a
        # connection without a call, with GOAWAY "too_many_pings": ping every 10 s, only while
        # a call (a watch) is open; an idle client finds a dead endpoint on its next call
        ("grpc.keepalive_time_ms", 10000),
        ("grpc.keepalive_timeout_ms", 3000),
        # gRPC core waits this long for a ping's ack, whatever keepalive_timeout_ms says
        # (default 60 s: a hung etcd under a watch went unnoticed for ~70 s)
        ("grpc.http2.ping_timeout_ms", 3000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.enable_http_proxy", 0),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]
    if config.secure:
        try:
            ca, cert, key = (
                Path(f).read_bytes() if f else None
                for f in (config.ca_cert, config.cert, config.key)
            )
        except OSError as e:
            raise ConfigError(f"cannot read etcd TLS file: {e}") from e
        return target, options, grpc.ssl_channel_credentials(ca, key, cert)
    return target, options, None


def rpc_error(config: EtcdConfig, what: str, exc: grpc.RpcError) -> StoreError:
    """A gRPC failure as the StoreError a user reads."""
    code = exc.code() if hasattr(exc, "code") else None
    detail = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name.lower() if code is not None else "error"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        # gRPC's text repeats the target and wraps the OS error; keep what a user needs
        reason = "timed out" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "unavailable"
        for known, said in _REASONS:
            if known.lower() in (detail or "").lower():
                reason = said
                break
        return StoreError(f"cannot reach etcd ({reason}) during {what}", endpoint=config.label)
    return StoreError(f"{what}: {name}: {detail}", endpoint=config.label)


@dataclass
class _Stubs:
    kv: Any
    lease: Any
    watch: Any
    maint: Any
    channel: grpc.Channel = field(repr=False)


class EtcdStore:
    """A connection to etcd. Thread-safe; one per process is plenty."""

    def __init__(self, config: EtcdConfig) -> None:
        self.config = config
        self._timeout = config.timeout
        self._stubs = self._connect()

    # ------------------------------------------------------------------ plumbing
    def _connect(self) -> _Stubs:
        target, options, creds = channel_setup(self.config)
        if creds is not None:
            channel = grpc.secure_channel(target, creds, options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        return _Stubs(
            kv=etcdrpc.KVStub(channel),
            lease=etcdrpc.LeaseStub(channel),
            watch=etcdrpc.WatchStub(channel),
            maint=etcdrpc.MaintenanceStub(channel),
            channel=channel,
        )

    def _err(self, what: str, exc: grpc.RpcError) -> StoreError:
        return rpc_error(self.config, what, exc)

    # told of every unary call: (what, e.g. "get <key>", seconds, failed); the API server's
    # etcd_request_* metrics. None: nothing is measured.
    observer: Observer | None = None

    def _call(self, what: str, fn: Any, request: Any) -> Any:
        if self.observer is None:
            try:
                return fn(request, timeout=self._timeout)
            except grpc.RpcError as e:
                raise self._err(what, e) from e
        started, failed = time.perf_counter(), True
        try:
            r = fn(request, timeout=self._timeout)
            failed = False
            return r
        except grpc.RpcError as e:
            raise self._err(what, e) from e
        finally:
            self.observer(what, time.perf_counter() - started, failed)

    def close(self) -> None:
        self._stubs.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ health
    def status(self) -> dict[str, int | str]:
        r = self._call("status", self._stubs.maint.Status, etcdrpc.StatusRequest())
        return {"version": r.version, "revision": r.header.revision, "leader": r.leader}

    def healthy(self) -> bool:
        try:
            self.status()
            return True
        except StoreError:
            return False

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: StoreError | None = None
        while time.monotonic() < deadline:
            try:
                self.status()
                return
            except StoreError as e:
                last = e
                time.sleep(0.05)
        raise StoreError(f"etcd not healthy after {timeout:.0f}s: {last}", endpoint=self.config.label)

    # ------------------------------------------------------------------ KV
    def get(self, key: str) -> KeyValue | None:
        r = self._call("get " + key, self._stubs.kv.Range, etcdrpc.RangeRequest(key=_b(key)))
        return _kv(r.kvs[0]) if r.kvs else None

    def list(self, prefix: str, *, revision: int = 0) -> tuple[builtins.list[KeyValue], int]:
        """All keys under `prefix`, sorted by key, and the store revision they were read at."""
        req = etcdrpc.RangeRequest(
            key=_b(prefix),
            range_end=prefix_range_end(_b(prefix)),
            revision=revision,
            sort_order=etcdrpc.RangeRequest.ASCEND,
            sort_target=etcdrpc.RangeRequest.KEY,
        )
        r = self._call("list " + prefix, self._stubs.kv.Range, req)
        return [_kv(kv) for kv in r.kvs], r.header.revision

    def list_page(self, prefix: str, *, start: str | None = None, limit: int = 0,
                  revision: int = 0) -> Page:
        """One page of the keys under `prefix`, from `start` (inclusive; default the prefix
        itself), at most `limit` (0: all), at `revision` (0: now). `Compacted` when that
        revision is gone — what a paged list (kube's `continue`) must report as expired."""
        begin = _b(start) if start is not None else _b(prefix)
        req = etcdrpc.RangeRequest(
            key=begin,
            range_end=prefix_range_end(_b(prefix)),
            revision=revision,
            limit=limit,
            sort_order=etcdrpc.RangeRequest.ASCEND,
            sort_target=etcdrpc.RangeRequest.KEY,
        )
        started, failed = time.perf_counter(), True
        try:
            r = self._stubs.kv.Range(req, timeout=self._timeout)
            failed = False
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in (e.details() or ""):
                raise Compacted(revision) from e
            raise self._err("list " + prefix, e) from e
        finally:
            if self.observer is not None:
                self.observer("list " + prefix, time.perf_counter() - started, failed)
        return Page([_kv(kv) for kv in r.kvs], int(r.header.revision), bool(r.more), int(r.count))

    def put(self, key: str, value: str | bytes, *, lease: int = 0) -> int:
        req = etcdrpc.PutRequest(key=_b(key), value=_b(value), lease=lease)
        return int(self._call("put " + key, self._stubs.kv.Put, req).header.revision)

    def _txn(self, what: str, compare: builtins.list[Any], success: builtins.list[Any]) -> tuple[bool, int]:
        req = etcdrpc.TxnRequest(compare=compare, success=success, failure=[])
        r = self._call(what, self._stubs.kv.Txn, req)
        return bool(r.succeeded), int(r.header.revision)

    def txn(self, guards: Sequence[Guard], ops: Sequence[Op]) -> TxnResult:
        """Apply `ops` atomically if every guard holds (see `netplane.store.txn`)."""
        compare = [_compare(g) for g in guards]
        success = [_request_op(o) for o in ops]
        what = "txn " + (", ".join(sorted({o.key for o in ops}))[:200] or "(guards only)")
        ok, rev = self._txn(what, compare, success)
        return TxnResult(succeeded=ok, revision=rev)

    def create(self, key: str, value: str | bytes, *, lease: int = 0) -> bool:
        """Put only if the key does not exist (txn on version == 0). True if we created it."""
        return self.cas(key, value, mod_revision=0, lease=lease)

    def cas(self, key: str, value: str | bytes, *, mod_revision: int, lease: int = 0) -> bool:
        """Put only if the key's mod revision is still `mod_revision` (0: must not exist)."""
        cmp = etcdrpc.Compare(
            key=_b(key),
            result=etcdrpc.Compare.EQUAL,
            target=etcdrpc.Compare.MOD,
            mod_revision=mod_revision,
        )
        if mod_revision == 0:
            cmp = etcdrpc.Compare(
                key=_b(key),
                result=etcdrpc.Compare.EQUAL,
                target=etcdrpc.Compare.VERSION,
                version=0,
            )
        op = etcdrpc.RequestOp(
            request_put=etcdrpc.PutRequest(key=_b(key), value=_b(value), lease=lease)
        )
        ok, _ = self._txn("txn put " + key, [cmp], [op])
        return ok

    def delete(self, key: str, *, mod_revision: int | None = None) -> bool:
        """Delete a key (only if its mod revision matches, when given). True if deleted."""
        if mod_revision is None:
            r = self._call(
                "delete " + key,
                self._stubs.kv.DeleteRange,
                etcdrpc.DeleteRangeRequest(key=_b(key)),
            )
            return bool(r.deleted)
        cmp = etcdrpc.Compare(
            key=_b(key),
            result=etcdrpc.Compare.EQUAL,
            target=etcdrpc.Compare.MOD,
            mod_revision=mod_revision,
        )
        op = etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=_b(key)))
        ok, _ = self._txn("txn delete " + key, [cmp], [op])
        return ok

    def delete_prefix(self, prefix: str) -> int:
        req = etcdrpc.DeleteRangeRequest(key=_b(prefix), range_end=prefix_range_end(_b(prefix)))
        return int(self._call("delete " + prefix, self._stubs.kv.DeleteRange, req).deleted)

    def compact(self, revision: int) -> None:
        self._call(
            "compact",
            self._stubs.kv.Compact,
            etcdrpc.CompactionRequest(revision=revision, physical=True),
        )

    # ------------------------------------------------------------------ leases
    def grant(self, ttl: int) -> int:
        """A new etcd lease of `ttl` seconds; returns its id."""
        r = self._call("lease grant", self._stubs.lease.LeaseGrant, etcdrpc.LeaseGrantRequest(TTL=ttl))
        if r.error:
            raise StoreError(f"lease grant: {r.error}", endpoint=self.config.label)
        return int(r.ID)

    def keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; returns the new TTL, 0 when the lease no longer exists."""
        try:
            for r in self._stubs.lease.LeaseKeepAlive(
                iter([etcdrpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=self._timeout
            ):
                return int(r.TTL)
        except grpc.RpcError as e:
            raise self._err("lease keepalive", e) from e
        return 0

    def time_to_live(self, lease_id: int) -> int:
        """Seconds left on a lease, -1 when it does not exist."""
        r = self._call(
            "lease ttl",
            self._stubs.lease.LeaseTimeToLive,
            etcdrpc.LeaseTimeToLiveRequest(ID=lease_id),
        )
        return int(r.TTL)

    def revoke(self, lease_id: int) -> None:
        try:
            self._stubs.lease.LeaseRevoke(etcdrpc.LeaseRevokeRequest(ID=lease_id), timeout=self._timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return
            raise self._err("lease revoke", e) from e

    # ------------------------------------------------------------------ watch
    def watch(
        self, prefix: str, *, start_revision: int, stop: threading.Event, prev_kv: bool = False
    ) -> Iterator[builtins.list[WatchEvent]]:
        """Yield batches of events under `prefix` from `start_revision` on, until `stop` is set.

        Raises `Compacted` if the start revision is gone and `StoreError` when the stream breaks
        (etcd restarted, network lost); the caller re-lists in both cases.
        """
        requests: queue.Queue[object] = queue.Queue()
        requests.put(_watch_request(prefix, start_revision, prev_kv))

        def request_iter() -> Iterator[object]:
            while True:
                item = requests.get()
                if item is None:
                    return
                yield item

        call = self._stubs.watch.Watch(request_iter())
        done = threading.Event()

        def canceller() -> None:
            while not done.is_set():
                if stop.wait(0.2):
                    call.cancel()
                    return

        t = threading.Thread(target=canceller, name="etcd-watch-cancel", daemon=True)
        t.start()
        try:
            for resp in call:
                if resp.compact_revision:
                    raise Compacted(int(resp.compact_revision))
                if resp.canceled:
                    raise StoreError(
                        f"watch on {prefix} canceled: {resp.cancel_reason or 'by server'}",
                        endpoint=self.config.label,
                    )
                if resp.events:
                    yield _batch(resp.events)
        except grpc.RpcError as e:
            if stop.is_set():
                return
            raise self._err("watch " + prefix, e) from e
        finally:
            done.set()
            requests.put(None)
            call.cancel()  # a consumer that stopped iterating ends the stream too (no-op when over)
            call.cancel()
        if not stop.is_set():
            raise StoreError(f"watch on {prefix} ended", endpoint=self.config.label)


class AsyncReader:
    """Reads on an asyncio event loop over a `grpc.aio` channel of its own (same target,
    options and TLS as `EtcdStore`'s). A blocking call from a worker thread costs the thread
    hop and the sync channel's hand-off: ~0.4 ms of CPU per Range here against ~0.13 ms
    for the same Range awaited on the loop (bench/results/api.md). Gets and transactions that
    come while others are on their way go together (`get`, `txn_raw`). Make it, use it and
    close it on one running loop."""

    def __init__(self, config: EtcdConfig, *, max_inflight: int = TXN_INFLIGHT,
                 max_get_inflight: int = GET_INFLIGHT) -> None:
        self.config = config
        self._timeout = config.timeout
        target, options, creds = channel_setup(config)
        if creds is not None:
            self._channel = grpc.aio.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self._kv = etcdrpc.KVStub(self._channel)
        self.max_inflight = max_inflight
        self.batch_max_bytes = BATCH_MAX_BYTES
        self._inflight = 0
        self._queued: deque[_Queued] = deque()
        self._sending: set[asyncio.Task[None]] = set()
        self.max_get_inflight = max_get_inflight
        self._gets_inflight = 0
        self._gets_queued: deque[_QueuedGet] = deque()
        # how many the last batch of transactions and of reads held (a call of its own leaves
        # them: a light load shows in batches of one or two, once a request had to wait)
        self._last_batch = self._last_gets = 1

    def _txn_room(self) -> bool:
        """Whether a transaction may go now (`BUSY_BATCH`)."""
        return self._inflight < (1 if self._last_batch >= BUSY_BATCH else self.max_inflight)

    def _get_room(self) -> bool:
        """Whether a read may go now (`BUSY_BATCH`)."""
        return self._gets_inflight < (1 if self._last_gets >= BUSY_BATCH else self.max_get_inflight)

    observer: Observer | None = None  # as EtcdStore's

    async def get(self, key: str) -> KeyValue | None:
        """The key's value, read at a revision no older than the call (a linearizable read,
        as etcd's Range is). While `max_get_inflight` reads are on their way, the gets that
        come meanwhile wait and go together, as one read-only Txn of Ranges (also
        linearizable: etcd serves it at one revision after the request arrives), each
        answered with its own key. On an idle channel a get goes at once, as a Range."""
        started = time.perf_counter()
        if not self._gets_queued and self._get_room():
            self._gets_inflight += 1
            try:
                return await self._range_one(key, started)
            finally:
                self._gets_inflight -= 1
                self._flush_gets()
        entry = _QueuedGet(key, asyncio.get_running_loop().create_future(), started)
        self._gets_queued.append(entry)
        self._flush_gets()
        return await entry.future

    async def _range_one(self, key: str, started: float) -> KeyValue | None:
        failed = True
        try:
            r = await self._kv.Range(etcdrpc.RangeRequest(key=_b(key)), timeout=self._timeout)
            failed = False
        except grpc.RpcError as e:
            raise rpc_error(self.config, "get " + key, e) from e
        finally:
            if self.observer is not None:
                self.observer("get " + key, time.perf_counter() - started, failed)
        return _kv(r.kvs[0]) if r.kvs else None

    def _flush_gets(self) -> None:
        """Send the gets that wait, `BATCH_MAX_GETS` at a time, while there is room in flight
        (a get whose caller stopped waiting is dropped unsent)."""
        while self._gets_queued and self._get_room():
            batch: builtins.list[_QueuedGet] = []
            while self._gets_queued and len(batch) < BATCH_MAX_GETS:
                e = self._gets_queued.popleft()
                if not e.future.done():
                    batch.append(e)
            if batch:
                self._start_gets(batch)

    def _start_gets(self, batch: builtins.list[_QueuedGet]) -> None:
        self._last_gets = len(batch)
        self._gets_inflight += 1
        self._spawn(self._send_gets(batch))

    async def _send_gets(self, batch: builtins.list[_QueuedGet]) -> None:
        try:
            if len(batch) == 1:
                e = batch[0]
                await self._alone(e.future, "get " + e.key, self._range_one(e.key, e.started))
                return
            await self._range_many(batch)
        finally:
            self._gets_inflight -= 1
            self._flush_gets()

    async def _range_many(self, batch: builtins.list[_QueuedGet]) -> None:
        req = etcdrpc.TxnRequest(compare=[], failure=[], success=[
            etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=_b(e.key))) for e in batch])
        failed, observed = True, True
        try:
            r = await self._kv.Txn(req, timeout=self._timeout)
            failed = False
        except grpc.RpcError as err:
            if err.code() in _REFUSED_WHOLE:  # an answer over the channel's limit: each alone
                observed = False
                for e in batch:
                    self._start_gets([e])
                return
            for e in batch:
                _resolve(e.future, error=rpc_error(self.config, "get " + e.key, err))
            return
        except BaseException as err:
            for e in batch:
                _resolve(e.future, error=StoreError(f"get {e.key}: {err!r}", endpoint=self.config.label))
            raise
        finally:
            if self.observer is not None and observed:
                now = time.perf_counter()
                for e in batch:
                    self.observer("get " + e.key, now - e.started, failed)
        for e, resp in zip(batch, r.responses, strict=True):
            kvs = resp.response_range.kvs
            _resolve(e.future, result=_kv(kvs[0]) if kvs else None)

    async def txn_raw(self, what: str, compare: builtins.list[Any], success: builtins.list[Any]) -> tuple[bool, int]:
        """One transaction: (succeeded, revision). While `max_inflight` transactions are on
        their way, the ones that come meanwhile wait and go together, as one etcd Txn of
        nested transactions (`_Batch`): each keeps its own guards and outcome, and they share
        one revision. Alone, or on an idle channel, it goes at once, as it is."""
        started = time.perf_counter()
        keys = _txn_keys(compare, success)
        if keys is None or (not self._queued and self._txn_room()):
            self._inflight += 1
            try:
                return await self._txn_one(what, compare, success, started)
            finally:
                self._inflight -= 1
                self._flush()
        entry = _Queued(what, compare, success, keys, sum(op.ByteSize() for op in success),
                        asyncio.get_running_loop().create_future(), started)
        self._queued.append(entry)
        self._flush()
        return await entry.future

    async def _txn_one(self, what: str, compare: builtins.list[Any], success: builtins.list[Any],
                       started: float) -> tuple[bool, int]:
        req = etcdrpc.TxnRequest(compare=compare, success=success, failure=[])
        failed = True
        try:
            r = await self._kv.Txn(req, timeout=self._timeout)
            failed = False
        except grpc.RpcError as e:
            raise rpc_error(self.config, what, e) from e
        finally:
            if self.observer is not None:
                self.observer(what, time.perf_counter() - started, failed)
        return bool(r.succeeded), int(r.header.revision)

    def _flush(self) -> None:
        """Send what waits, in batches of distinct keys, while there is room in flight."""
        while self._queued and self._txn_room():
            batch: builtins.list[_Queued] = []
            taken: set[bytes] = set()
            size = 0
            rest: deque[_Queued] = deque()
            while self._queued:
                e = self._queued.popleft()
                if e.future.done():  # its caller was cancelled while it waited: never sent
                    continue
                fits = len(batch) < BATCH_MAX_TXNS and (not batch or size + e.size <= self.batch_max_bytes)
                if not fits or not taken.isdisjoint(e.keys):
                    rest.append(e)  # a key already in this batch: the next one, in order
                    if not fits:
                        break
                    continue
                batch.append(e)
                taken |= e.keys
                size += e.size
            rest.extend(self._queued)
            self._queued = rest
            if not batch:
                return
            self._start(batch)

    def _start(self, batch: builtins.list[_Queued]) -> None:
        """`batch` on its way, counted in flight until `_send` ends."""
        self._last_batch = len(batch)
        self._inflight += 1
        self._spawn(self._send(batch))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """`coro` as a task of the loop, kept until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _alone(self, future: asyncio.Future[Any], what: str, call: Coroutine[Any, Any, Any]) -> None:
        """One queued call sent on its own: its answer into `future`, or its error (anything
        but a StoreError made one, naming `what`)."""
        try:
            result = await call
        except StoreError as err:
            _resolve(future, error=err)
        except BaseException as err:
            _resolve(future, error=StoreError(f"{what}: {err!r}", endpoint=self.config.label))
            raise
        else:
            _resolve(future, result=result)

    async def _send(self, batch: builtins.list[_Queued]) -> None:
        try:
            if len(batch) == 1:
                e = batch[0]
                await self._alone(e.future, e.what, self._txn_one(e.what, e.compare, e.success, e.started))
                return
            await self._send_many(batch)
        finally:
            self._inflight -= 1
            self._flush()

    async def _send_many(self, batch: builtins.list[_Queued]) -> None:
        req = etcdrpc.TxnRequest()
        for e in batch:  # each nested in place: built and then nested, every op was copied twice
            txn = req.success.add().request_txn
            txn.compare.extend(e.compare)
            txn.success.extend(e.success)
        failed, observed = True, True
        try:
            r = await self._kv.Txn(req, timeout=self._timeout)
            failed = False
        except grpc.RpcError as err:
            if err.code() in _REFUSED_WHOLE:
                # refused before it was applied (too large, too many operations, too many
                # requests): each goes again on its own and gets its own answer
                observed = False
                for e in batch:
                    self._start([e])
                return
            for e in batch:  # it may or may not have been applied, as for a call of its own
                _settle(e, error=rpc_error(self.config, e.what, err))
            return
        except BaseException as err:
            for e in batch:
                _settle(e, error=StoreError(f"{e.what}: {err!r}", endpoint=self.config.label))
            raise
        finally:
            if self.observer is not None and observed:
                now = time.perf_counter()
                for e in batch:
                    self.observer(e.what, now - e.started, failed)
        revision = int(r.header.revision)
        for e, resp in zip(batch, r.responses, strict=True):
            _settle(e, result=(bool(resp.response_txn.succeeded), revision))

    async def watch(self, prefix: str, *, start_revision: int,
                    prev_kv: bool = False) -> AsyncIterator[builtins.list[WatchEvent]]:
        """`EtcdStore.watch` awaited on the loop: batches of events under `prefix` from
        `start_revision` on; `Compacted` when that revision is gone, `StoreError` when the
        stream breaks or ends. Cancelling the consumer (or closing the generator) ends the
        stream."""
        call = etcdrpc.WatchStub(self._channel).Watch()
        try:
            await call.write(_watch_request(prefix, start_revision, prev_kv))
            async for resp in call:
                if resp.compact_revision:
                    raise Compacted(int(resp.compact_revision))
                if resp.canceled:
                    raise StoreError(f"watch on {prefix} canceled: {resp.cancel_reason or 'by server'}",
                                     endpoint=self.config.label)
                if resp.events:
                    yield _batch(resp.events)
        except grpc.RpcError as e:
            raise rpc_error(self.config, "watch " + prefix, e) from e
        finally:
            call.cancel()
        raise StoreError(f"watch on {prefix} ended", endpoint=self.config.label)

    async def close(self) -> None:
        await self._channel.close()


# what etcd (or gRPC, for a message over etcd's limit plus its slack) answers for a request it
# did not apply: "request is too large", "too many operations in txn request", "too many requests"
_REFUSED_WHOLE = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass
class _Queued:
    """A transaction waiting for a batch."""

    what: str
    compare: builtins.list[Any]
    success: builtins.list[Any]
    keys: frozenset[bytes]
    size: int
    future: asyncio.Future[tuple[bool, int]]
    started: float


@dataclass
class _QueuedGet:
    """A get waiting for a batch."""

    key: str
    future: asyncio.Future[KeyValue | None]
    started: float


def _settle(e: _Queued, *, result: tuple[bool, int] | None = None, error: BaseException | None = None) -> None:
    _resolve(e.future, result=result, error=error)


def _resolve(future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # its caller stopped waiting
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _txn_keys(compare: builtins.list[Any], success: builtins.list[Any]) -> frozenset[bytes] | None:
    """Every key a transaction compares or writes, or None when it may not share a batch
    (a range, or anything but puts and single deletes). A batch holds transactions of
    pairwise distinct keys: etcd evaluates all of a Txn's guards before it applies any of
    its writes, so transactions that touch no common key are independent, and it refuses a
    Txn that writes one key twice."""
    keys: set[bytes] = set()
    for c in compare:
        if c.range_end:
            return None
        keys.add(c.key)
    for op in success:
        which = op.WhichOneof("request")
        if which == "request_put":
            keys.add(op.request_put.key)
        elif which == "request_delete_range" and not op.request_delete_range.range_end:
            keys.add(op.request_delete_range.key)
        else:
            return None
    return frozenset(keys)


class LoopBridgedStore(EtcdStore):
    """`base` (sharing its channel for everything else) whose `get` and transactions are
    awaited on `loop` through `reader`: blocking code keeps its shape, and its etcd round
    trips skip the sync channel's hand-off. From a worker thread the call is handed to the
    loop and waited for; on the loop's own thread, under `greenbridge.run`, it is awaited
    there (no thread at all). Anywhere else on the loop's thread, or once the loop is gone,
    they take the blocking channel."""

    def __init__(self, base: EtcdStore, reader: AsyncReader, loop: asyncio.AbstractEventLoop,
                 loop_thread: int) -> None:
        self.config = base.config
        self._timeout = base._timeout
        self._stubs = base._stubs
        self._reader, self._loop, self._loop_thread = reader, loop, loop_thread

    def _bridged(self) -> bool:
        if threading.get_ident() == self._loop_thread:
            return greenbridge.inside()
        return self._loop.is_running()

    def _on_loop(self, what: str, coro: Coroutine[Any, Any, T]) -> T:
        if threading.get_ident() == self._loop_thread:  # under greenbridge.run: awaited right here
            return greenbridge.wait(coro)
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            # the call has its own deadline; this one only ends a wait on a loop that stopped
            return future.result(timeout=self._timeout + 2)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise StoreError(f"cannot reach etcd (timed out) during {what}", endpoint=self.config.label) from None

    def get(self, key: str) -> KeyValue | None:
        if not self._bridged():
            return super().get(key)
        return self._on_loop("get " + key, self._reader.get(key))

    def _txn(self, what: str, compare: builtins.list[Any], success: builtins.list[Any]) -> tuple[bool, int]:
        if not self._bridged():
            return super()._txn(what, compare, success)
        return self._on_loop(what, self._reader.txn_raw(what, compare, success))

    def close(self) -> None:
        """The channel is `base`'s: its owner closes it."""


def _watch_request(prefix: str, start_revision: int, prev_kv: bool) -> Any:
    return etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
        key=_b(prefix), range_end=prefix_range_end(_b(prefix)), start_revision=start_revision,
        progress_notify=True, prev_kv=prev_kv))


def _batch(events: Any) -> builtins.list[WatchEvent]:
    batch: builtins.list[WatchEvent] = []
    for ev in events:
        kind: Literal["put", "delete"] = "delete" if ev.type == 1 else "put"
        batch.append(WatchEvent(
            kind=kind,
            key=ev.kv.key.decode(errors="replace"),
            value=bytes(ev.kv.value) if kind == "put" else None,
            mod_revision=ev.kv.mod_revision,
            create_revision=ev.kv.create_revision,
            prev_value=bytes(ev.prev_kv.value) if ev.HasField("prev_kv") else None,
        ))
    return batch


def _compare(g: Guard) -> Any:
    eq = etcdrpc.Compare.EQUAL
    if isinstance(g, Absent):
        return etcdrpc.Compare(key=_b(g.key), result=eq, target=etcdrpc.Compare.VERSION, version=0)
    if isinstance(g, ModRevisionIs):
        return etcdrpc.Compare(key=_b(g.key), result=eq, target=etcdrpc.Compare.MOD, mod_revision=g.revision)
    if isinstance(g, LeaseIs):
        return etcdrpc.Compare(key=_b(g.key), result=eq, target=etcdrpc.Compare.LEASE, lease=g.lease)
    return etcdrpc.Compare(key=_b(g.key), result=eq, target=etcdrpc.Compare.VALUE, value=_b(g.value))


def _request_op(o: Op) -> Any:
    op = etcdrpc.RequestOp()
    if isinstance(o, Put):
        # filled in place: RequestOp(request_put=PutRequest(...)) builds the put, then copies
        # it and its value into the op (2.1 against 0.5 µs for a 1.9 KB pod)
        put = op.request_put
        put.key, put.value = _b(o.key), _b(o.value)
        if o.keep_lease:
            put.ignore_lease = True
        elif o.lease:
            put.lease = o.lease
        return op
    op.request_delete_range.key = _b(o.key)
    return op
