"""An informer's re-list decodes only the values that changed since it cached them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from netplane.store import Keys, codec
from netplane.store.etcd import KeyValue
from netplane.store.watch import Resync
from orchestrator import informer as informer_mod
from orchestrator.informer import Informer
from orchestrator.objects import meta
from orchestrator.objects.meta import POD
from orchestrator.storage import ObjectStore


def kv(objects: ObjectStore, name: str, rev: int, node: str = "") -> KeyValue:
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
         "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}
    return KeyValue(objects.key(POD, name, "default"), codec.dumps(p).encode(), rev, rev, 1, 0)


def test_relist_decodes_only_changed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = ObjectStore(None, Keys("/t"))  # type: ignore[arg-type]  # list_watch is faked
    stop = threading.Event()
    first = [kv(objects, "a", 5), kv(objects, "b", 6), kv(objects, "c", 7)]
    # after a compaction: a unchanged, b changed, c gone, d new
    second = [kv(objects, "a", 5), kv(objects, "b", 9, node="h1"), kv(objects, "d", 10)]

    def fake_list_watch(store: Any, prefix: str, **kw: Any) -> Iterator[Resync]:
        yield Resync(first, 7)
        yield Resync(second, 10)
        stop.set()

    monkeypatch.setattr(informer_mod, "list_watch", fake_list_watch)
    decoded: list[str] = []
    real = objects.decode_or_log

    def counting(kind: Any, key: str, raw: bytes, rev: int) -> Any:
        decoded.append(key.rsplit("/", 1)[-1])
        return real(kind, key, raw, rev)

    monkeypatch.setattr(objects, "decode_or_log", counting)
    inf = Informer(objects, POD)
    seen: list[tuple[str, str]] = []
    inf.add_handler(lambda old, new: seen.append(("add" if old is None else "delete" if new is None else "update",
                                                  meta.name(new if new is not None else old))))
    inf.run(stop)
    assert decoded == ["a", "b", "c", "b", "d"]
    assert seen == [("add", "a"), ("add", "b"), ("add", "c"), ("update", "b"), ("delete", "c"), ("add", "d")]
    a = inf.get("a")
    assert a is not None and a["metadata"]["resourceVersion"] == "5"
    assert (inf.get("b") or {})["spec"]["nodeName"] == "h1" and inf.revision == 10
