"""Objects in etcd: create-only creates, optimistic updates, list and watch with decoding.

Layout, like kube-apiserver's `/registry` (one prefix per resource, so one range read lists a
kind, and one per namespace):

    <prefix>/registry/<resource>/<namespace>/<name>    namespaced kinds (pods, services, ...)
    <prefix>/registry/<resource>/<name>                cluster-scoped kinds (nodes, namespaces)

(It sits beside, not on, the proxy's `services/specs/<name>` keys, which carry the flat
Service form the proxy reads; see `objects.service` for the bridge.)

* `resourceVersion` is the key's etcd mod revision. It is never stored in the value; it is
  set on every object read, and an update succeeds only if the key's mod revision is still the
  one the caller read (an etcd transaction), else `Conflict` — kube-apiserver's semantics.
* `create` is create-only (transaction on version == 0); it sets `uid`, `creationTimestamp`
  and `generation` 1, and expands `generateName` (retrying on a name collision).
* `update` keeps `uid` and `creationTimestamp` from the stored object and bumps `generation`
  when `spec` changed. `guaranteed_update(mutate)` re-reads and retries on conflict, so
  concurrent writers never lose each other's changes.
* Values that do not decode (not JSON, wrong kind, a name that is not the key's, a field a
  controller reads with the wrong type or an unparsable quantity or time — `validation.reads`)
  are logged and skipped by `list` and `watch`, never raised into a control loop; `get`
  raises DecodeError for them.

Every write is one etcd transaction (`EtcdStore.txn`): the object's own precondition (absent,
or still at the revision read) plus any extra guards the caller passes — a leader's
`Fence.guards()`, so a deposed leader's writes are refused by etcd itself (`Fenced`). The
commit revision is the new resourceVersion.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netplane.errors import ConfigError, DecodeError, NetplaneError, NotFoundError, UserError
from netplane.store import EtcdStore, Keys, codec
from netplane.store.etcd import AsyncReader, KeyValue
from netplane.store.txn import Absent, Delete, Guard, ModRevisionIs, Op, Put
from netplane.store.watch import Resync, list_watch
from orchestrator.objects import meta, names, tree
from orchestrator.objects.meta import Kind
from orchestrator.objects.selector import Selector
from orchestrator.validation import reads

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# kube's utilrand alphabet for generated names: no vowels (no words), no 0/1/3 (look-alikes)
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATED_SUFFIX_LEN = 5
GENERATE_NAME_TRIES = 8
UPDATE_RETRIES = 16


class AlreadyExists(UserError):
    def __init__(self, kind: Kind, name: str) -> None:
        super().__init__(f'{kind.qualified} "{name}" already exists')


class Conflict(NetplaneError):
    """The object changed since it was read (optimistic concurrency): re-read and retry."""

    def __init__(self, kind: Kind, name: str) -> None:
        super().__init__(
            f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again")


class Fenced(NetplaneError):
    """A write's extra guards (a leader's fence) no longer hold: this process lost its
    leadership, nothing was written, and it must stop acting."""

    def __init__(self, kind: Kind, name: str) -> None:
        super().__init__(f'write to {kind.resource} "{name}" refused: leadership lost '
                         "(the leader key is no longer held on our lease)")


def not_found(kind: Kind, name: str) -> NotFoundError:
    return NotFoundError(f'{kind.resource} "{name}" not found')


@dataclass(frozen=True)
class ObjectView:
    """Objects of one kind after a change: by storage key, the revision, the keys that
    changed (None after a full re-list)."""

    objects: Mapping[str, Obj]
    revision: int
    changed: frozenset[str] | None


class ObjectStore:
    """Typed object storage over `EtcdStore`. Thread-safe (no state beyond the connection)."""

    def __init__(
        self,
        store: EtcdStore,
        keys: Keys,
        *,
        clock: Callable[[], float] = time.time,
        new_uid: Callable[[], str] = meta.new_uid,
        rng: random.Random | None = None,
        read_check: Callable[[Mapping[str, Any]], str | None] | None = reads.read_check,
    ) -> None:
        self.store = store
        self._read_check = read_check
        self.keys = keys
        self._clock = clock
        self._new_uid = new_uid
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    # ------------------------------------------------------------------ keys
    def prefix(self, kind: Kind, namespace: str | None = None) -> str:
        """Every object of `kind` (in `namespace`, for namespaced kinds, when given)."""
        base = f"{self.keys.prefix}/registry/{kind.resource}/"
        if namespace is None or not kind.namespaced:
            return base
        return base + _checked("namespace", namespace, names.dns1123_label) + "/"

    def key(self, kind: Kind, name: str, namespace: str | None = None) -> str:
        _checked("name", name, names.path_segment if kind in meta.RBAC_KINDS else names.dns1123_subdomain)
        if kind.namespaced:
            return self.prefix(kind, namespace or meta.DEFAULT_NAMESPACE) + name
        return self.prefix(kind) + name

    def key_of(self, obj: Mapping[str, Any]) -> str:
        return self.key(_kind_of(obj), meta.name(obj), meta.namespace(obj))

    # ------------------------------------------------------------------ decoding
    def decode(self, kind: Kind, kv_key: str, raw: bytes, mod_revision: int) -> Obj:
        """A stored value as an object with its resourceVersion; DecodeError if malformed."""
        value = codec.loads(raw)
        if not isinstance(value, dict):
            raise DecodeError(f"{kv_key}: expected an object, got {type(value).__name__}")
        if value.get("kind") != kind.kind:
            raise DecodeError(f"{kv_key}: kind {value.get('kind')!r}, expected {kind.kind!r}")
        md = value.get("metadata")
        if not isinstance(md, dict) or md.get("name") != kv_key.rsplit("/", 1)[-1]:
            raise DecodeError(f"{kv_key}: metadata.name does not match the key")
        if kind.namespaced and kv_key.split("/")[-2] != md.get("namespace"):
            raise DecodeError(f"{kv_key}: metadata.namespace does not match the key")
        if self._read_check is not None:
            problem = self._read_check(value)
            if problem:
                raise DecodeError(f"{kv_key}: {problem}")
        md["resourceVersion"] = str(mod_revision)
        return value

    def _decode_kv(self, kind: Kind, kv: KeyValue) -> Obj:
        return self.decode(kind, kv.key, kv.value, kv.mod_revision)

    @staticmethod
    def _encode(obj: Mapping[str, Any]) -> bytes:
        """The stored bytes of `obj`: canonical JSON (`codec.dumps`'s), without its
        resourceVersion (`obj` is not changed, and not copied: only its metadata is, shallowly)."""
        body = dict(obj)
        md = body.get("metadata")
        body["metadata"] = {k: v for k, v in md.items() if k != "resourceVersion"} if isinstance(md, dict) else {}
        return codec.dump_bytes(body, sort_keys=True)

    # ------------------------------------------------------------------ reads
    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Obj | None:
        kv = self.store.get(self.key(kind, name, namespace))
        if kv is None:
            return None
        return self._decode_kv(kind, kv)

    async def get_async(self, reader: AsyncReader, kind: Kind, name: str,
                        namespace: str | None = None) -> Obj | None:
        """`get` awaited on an event loop through `reader` (the API server's GETs)."""
        kv = await reader.get(self.key(kind, name, namespace))
        if kv is None:
            return None
        return self._decode_kv(kind, kv)

    def list(self, kind: Kind, namespace: str | None = None, *,
             selector: Selector | None = None) -> tuple[list[Obj], int]:
        """Objects of `kind` (in `namespace`, or all), sorted by key, and the revision read at.
        Malformed values are logged and skipped."""
        items, rev = self.store.list(self.prefix(kind, namespace))
        out = []
        for kv in items:
            try:
                obj = self._decode_kv(kind, kv)
            except DecodeError as e:
                log.warning("skipping malformed value at %s: %s", kv.key, e)
                continue
            if selector is None or selector.matches(meta.labels(obj)):
                out.append(obj)
        return out, rev

    # ------------------------------------------------------------------ writes
    def _commit(self, kind: Kind, name: str, guards: Sequence[Guard], extra: Sequence[Guard],
                ops: Sequence[Op]) -> int | None:
        """One transaction: `guards` (the object's own preconditions) and `extra` (a leader's
        fence). The commit revision, or None when an own guard failed; Fenced when the
        fence no longer holds."""
        r = self.store.txn([*guards, *extra], ops)
        if r.succeeded:
            return r.revision
        if extra and not self.store.txn(list(extra), []).succeeded:
            raise Fenced(kind, name)
        return None

    def create(self, obj: Mapping[str, Any], *, lease: int = 0, guards: Sequence[Guard] = (),
               adopt: bool = False) -> Obj:
        """Store a new (validated, defaulted) object; AlreadyExists if the name is taken.
        With `lease` (an etcd lease id) the object goes when the lease does: events' TTL.
        `guards` (a leader's `Fence.guards()`) must hold too, else Fenced and nothing is written.
        The store writes and returns a copy of `obj`; with `adopt` (made for this write, shared
        with nothing) `obj` itself, its metadata filled in."""
        kind = _kind_of(obj)
        new = tree.own(obj, adopt)
        md = new.setdefault("metadata", {})
        if kind.namespaced:
            md.setdefault("namespace", meta.DEFAULT_NAMESPACE)
        else:
            md.pop("namespace", None)
        md.pop("resourceVersion", None)
        md.pop("deletionTimestamp", None)
        md["uid"] = self._new_uid()
        md["creationTimestamp"] = meta.from_epoch(self._clock())
        md["generation"] = 1
        generate = md.get("generateName") if not md.get("name") else None
        tries = GENERATE_NAME_TRIES if generate else 1
        for _ in range(tries):
            if generate:
                md["name"] = generate + self._suffix()
            key = self.key(kind, md.get("name", ""), md.get("namespace"))
            raw = self._encode(new)
            rev = self._commit(kind, md["name"], [Absent(key)], guards, [Put(key, raw, lease)])
            if rev is not None:
                return _with_rv(new, rev, raw)
        raise AlreadyExists(kind, md.get("name", ""))

    def update(self, obj: Mapping[str, Any], *, guards: Sequence[Guard] = (),
               current: Mapping[str, Any] | None = None, adopt: bool = False) -> Obj:
        """Replace a stored object. With a resourceVersion, only if it is still current
        (else Conflict); without one, against whatever is stored now. The key keeps its
        lease (a plain put would detach it).

        `current`: the stored object as the caller read it. When `obj`'s resourceVersion is
        `current`'s, the write goes at that revision without reading the key again (one etcd
        round trip: the transaction, which keeps the key's lease with `ignore_lease`); a
        stale `current` is then a Conflict, as it would be after a read. `adopt`: as `create`'s."""
        kind = _kind_of(obj)
        name, ns = meta.name(obj), meta.namespace(obj)
        key = self.key(kind, name, ns)
        want = meta.meta(obj).get("resourceVersion")
        if current is not None and want is not None and str(want).isdigit() \
                and meta.meta(current).get("resourceVersion") == want:
            new = self._merge_system_fields(kind, dict(current), obj, adopt)
            raw = self._encode(new)
            rev = self._commit(kind, name, [ModRevisionIs(key, int(want))], guards,
                               [Put(key, raw, keep_lease=True)])
            if rev is None:
                if self.store.get(key) is None:
                    raise not_found(kind, name)
                raise Conflict(kind, name)
            return _with_rv(new, rev, raw)
        kv = self.store.get(key)
        if kv is None:
            raise not_found(kind, name)
        want = meta.meta(obj).get("resourceVersion")
        if want is not None and want != str(kv.mod_revision):
            raise Conflict(kind, name)
        try:
            current = self._decode_kv(kind, kv)
        except DecodeError:
            current = {}  # a malformed stored value may be replaced by a good one
        new = self._merge_system_fields(kind, current, obj, adopt)
        raw = self._encode(new)
        rev = self._commit(kind, name, [ModRevisionIs(key, kv.mod_revision)], guards, [Put(key, raw, kv.lease)])
        if rev is None:
            raise Conflict(kind, name)
        return _with_rv(new, rev, raw)

    def guaranteed_update(
        self,
        kind: Kind,
        name: str,
        namespace: str | None,
        mutate: Callable[[Obj], Obj | None],
        *,
        retries: int | None = None,
        guards: Sequence[Guard] = (),
    ) -> Obj:
        """Read, `mutate(copy)`, write if unchanged since the read, else re-read and retry.
        `mutate` returning None means "nothing to change" (no write).

        Like kube-apiserver's GuaranteedUpdate it retries until it wins (`retries` caps
        that): every lost race means another writer made progress. After a few losses in a
        row it pauses a random millisecond or few, so one writer is not starved by others."""
        attempt = 0
        while retries is None or attempt < retries:
            if attempt >= 3:
                with self._rng_lock:
                    pause = self._rng.uniform(0.0005, min(0.002 * attempt, 0.05))
                time.sleep(pause)
            attempt += 1
            current = self.get(kind, name, namespace)
            if current is None:
                raise not_found(kind, name)
            changed = mutate(tree.copy(current))
            if changed is None:
                return current
            changed.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                return self.update(changed, guards=guards, current=current)
            except Conflict:
                continue
        raise Conflict(kind, name)

    def delete(self, kind: Kind, name: str, namespace: str | None = None, *,
               resource_version: str | None = None, guards: Sequence[Guard] = ()) -> bool:
        """Delete (only at `resource_version` when given: else Conflict). False if absent."""
        key = self.key(kind, name, namespace)
        if resource_version is not None and not resource_version.isdigit():
            raise Conflict(kind, name)
        for _ in range(UPDATE_RETRIES):
            kv = self.store.get(key)
            if kv is None:
                return False
            if resource_version is not None and str(kv.mod_revision) != resource_version:
                raise Conflict(kind, name)
            if self._commit(kind, name, [ModRevisionIs(key, kv.mod_revision)], guards,
                            [Delete(key)]) is not None:
                return True
            if resource_version is not None:
                raise Conflict(kind, name)
        raise Conflict(kind, name)

    def _merge_system_fields(self, kind: Kind, current: Obj, obj: Mapping[str, Any], adopt: bool = False) -> Obj:
        new = tree.own(obj, adopt)
        md = new.setdefault("metadata", {})
        cur_md = current.get("metadata") or {}
        for f in ("uid", "creationTimestamp"):
            if f in cur_md:
                md[f] = cur_md[f]
        if kind.namespaced:
            md["namespace"] = meta.namespace(obj)
        gen = cur_md.get("generation", 1)
        md["generation"] = gen + 1 if current.get("spec") != new.get("spec") and current else gen
        return new

    def _suffix(self) -> str:
        with self._rng_lock:
            return "".join(self._rng.choice(_NAME_ALPHABET) for _ in range(GENERATED_SUFFIX_LEN))

    # ------------------------------------------------------------------ watch
    def watch(self, kind: Kind, namespace: str | None = None, *, stop: threading.Event,
              retry_interval: float = 0.5) -> Iterator[ObjectView]:
        """list+watch of one kind: a full view after each change batch (re-listing on
        compaction or a broken stream, see `netplane.store.watch`), objects with their
        resourceVersion, malformed values logged and left out. Each view is a copy, which
        costs O(objects) per batch: large kinds are better followed by an `Informer`."""
        cache: dict[str, Obj] = {}
        for item in list_watch(self.store, self.prefix(kind, namespace), stop=stop,
                               retry_interval=retry_interval):
            if isinstance(item, Resync):
                cache = {}
                for kv in item.items:
                    v = self.decode_or_log(kind, kv.key, kv.value, kv.mod_revision)
                    if v is not None:
                        cache[kv.key] = v
                yield ObjectView(dict(cache), item.revision, None)
                continue
            changed = set()
            for ev in item:
                changed.add(ev.key)
                if ev.kind == "delete" or ev.value is None:
                    cache.pop(ev.key, None)
                    continue
                v = self.decode_or_log(kind, ev.key, ev.value, ev.mod_revision)
                if v is None:
                    cache.pop(ev.key, None)
                else:
                    cache[ev.key] = v
            yield ObjectView(dict(cache), item[-1].mod_revision, frozenset(changed))

    def decode_or_log(self, kind: Kind, key: str, raw: bytes, rev: int) -> Obj | None:
        """`decode`, or None (logged) for a malformed value."""
        try:
            return self.decode(kind, key, raw, rev)
        except DecodeError as e:
            log.warning("skipping malformed value at %s: %s", key, e)
            return None


class Written(dict[str, Any]):
    """An object as the store just wrote it, with the bytes it wrote (`stored`), so that an
    answer is made from those (`answer_bytes`) instead of encoding the tree again. After the
    write's etcd round trip, the API server has served other requests, and the tree is out of
    the CPU's caches: encoding a 2 KB pod then took 13-15 µs there, against 1.5-3 µs while it
    is hot (2026-12-08). Anything that changes the object afterwards must not answer with it:
    the store's writers hand it back unchanged, and an answer is what was stored."""

    __slots__ = ("stored",)

    def __init__(self, obj: Obj, stored: bytes) -> None:
        super().__init__(obj)
        self.stored = stored


def _with_rv(obj: Obj, revision: int, stored: bytes) -> Obj:
    """`obj`, the store's own copy that was just written as `stored`, with the revision it
    was written at."""
    out = Written(obj, stored)
    md = out.get("metadata")
    if not isinstance(md, dict):
        md = out["metadata"] = {}
    md["resourceVersion"] = str(revision)
    return out


_HEADS: dict[tuple[str, str], bytes] = {}


def answer_bytes(obj: Mapping[str, Any]) -> bytes | None:
    """The JSON answer for `obj`, a `Written`, from the bytes stored: its resourceVersion put
    first in its metadata (JSON objects are unordered); None when it cannot be (then encode
    the object). Canonical JSON sorts keys, so the stored bytes of an object whose only keys
    before "metadata" are apiVersion and kind (strings, which cannot hold an unescaped
    quote) begin with `{"apiVersion":..,"kind":..,"metadata":{`, the object's own metadata."""
    raw = getattr(obj, "stored", None)
    md = obj.get("metadata")
    if not isinstance(raw, bytes) or not isinstance(md, dict):
        return None
    rv, api_version, kind = md.get("resourceVersion"), obj.get("apiVersion"), obj.get("kind")
    if not (isinstance(rv, str) and rv.isdigit() and isinstance(api_version, str) and isinstance(kind, str)):
        return None
    head = _HEADS.get((api_version, kind))
    if head is None:
        head = codec.dump_bytes({"apiVersion": api_version, "kind": kind})[:-1] + b',"metadata":{'
        if len(_HEADS) < 256:
            _HEADS[(api_version, kind)] = head
    n = len(head)
    if not raw.startswith(head) or raw[n:n + 1] in (b"}", b""):
        return None
    return b"".join((head, b'"resourceVersion":"', rv.encode(), b'",', raw[n:]))


def _kind_of(obj: Mapping[str, Any]) -> Kind:
    k = meta.kind_named(str(obj.get("kind", "")))
    if k is None:
        raise ConfigError(f"cannot store an object of kind {obj.get('kind')!r}")
    return k


def _checked(what: str, value: str, rule: Callable[[str], list[str]]) -> str:
    errs = rule(value)
    if errs:
        raise ConfigError(f"invalid {what} {value!r}: {errs[0]}")
    return value
