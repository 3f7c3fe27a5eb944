"""The API registry's writes from the watch cache's copy (kube's GuaranteedUpdate with the
cached object as its suggestion), against a real etcd.

The cache is the API server's own in `test_apiserver.py`; here `cached` is a copy the test
holds on purpose, fresh or stale, so what a cache that trails etcd does to a write is shown
exactly: a stale copy costs a re-read, never a lost change or a wrong 409, and a fresh one
saves the read.
"""

from __future__ import annotations

import json
from typing import Any, Self

import pytest

from netplane.store import EtcdStore
from orchestrator.apiserver.registry import Registry
from orchestrator.objects.meta import NAMESPACE, POD, Kind
from orchestrator.storage import Conflict, ObjectStore

Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class Suggestions:
    """What `Registry(cached=...)` asks: the copies the test put here, else None."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, str | None, str], Obj] = {}

    def hold(self, kind: Kind, obj: Obj) -> None:
        md = obj["metadata"]
        self.held[(kind.resource, md.get("namespace"), md["name"])] = obj

    def __call__(self, kind: Kind, namespace: str | None, name: str, *, owned: bool = False) -> Obj | None:
        obj = self.held.get((kind.resource, namespace, name))
        return json.loads(json.dumps(obj)) if owned and obj is not None else obj  # owned: a copy, as a decode


@pytest.fixture
def cache() -> Suggestions:
    return Suggestions()


@pytest.fixture
def registry(objects: ObjectStore, cache: Suggestions) -> Registry:
    return Registry(objects, cached=cache)


def new_pod(registry: Registry, name: str, labels: dict[str, str] | None = None) -> Obj:
    obj, _ = registry.create(POD, "default", {"metadata": {"name": name, "labels": labels or {}},
                                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    return obj


class CountingReads:
    def __init__(self, store: EtcdStore) -> None:
        self.store, self.reads = store, 0
        self._get = store.get

    def __enter__(self) -> Self:
        def get(key: str) -> Any:
            self.reads += 1
            return self._get(key)

        self.store.get = get  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.store.get  # type: ignore[method-assign]


def test_a_fresh_cached_copy_saves_the_read(registry: Registry, cache: Suggestions, store: EtcdStore) -> None:
    p = new_pod(registry, "fresh")
    cache.hold(POD, p)
    with CountingReads(store) as c:
        out, _ = registry.patch(POD, "default", "fresh", json.dumps({"metadata": {"labels": {"a": "1"}}}).encode(),
                                MERGE)
    assert c.reads == 0, "the transaction is the only round trip"
    assert out["metadata"]["labels"] == {"a": "1"}
    assert registry.get(POD, "default", "fresh") == out


def test_a_stale_cached_copy_loses_no_change(registry: Registry, cache: Suggestions) -> None:
    p = new_pod(registry, "stale")
    cache.hold(POD, p)  # the cache stays at this version
    registry.patch(POD, "default", "stale", json.dumps({"metadata": {"labels": {"other": "writer"}}}).encode(), MERGE)
    out, _ = registry.patch(POD, "default", "stale", json.dumps({"metadata": {"labels": {"mine": "x"}}}).encode(),
                            MERGE)
    assert out["metadata"]["labels"] == {"other": "writer", "mine": "x"}, "the other writer's label is kept"


def test_a_patch_failing_only_against_the_stale_copy_succeeds(registry: Registry, cache: Suggestions) -> None:
    p = new_pod(registry, "jp")
    cache.hold(POD, p)
    registry.patch(POD, "default", "jp", json.dumps({"metadata": {"labels": {"stage": "two"}}}).encode(), MERGE)
    ops = [{"op": "test", "path": "/metadata/labels/stage", "value": "two"},
           {"op": "add", "path": "/metadata/labels/done", "value": "yes"}]
    out, _ = registry.patch(POD, "default", "jp", json.dumps(ops).encode(), JSON_PATCH)
    assert out["metadata"]["labels"] == {"stage": "two", "done": "yes"}
    bad = [{"op": "test", "path": "/metadata/labels/stage", "value": "three"}]
    with pytest.raises(Exception, match="test"):  # a real failure is still one, after the re-read
        registry.patch(POD, "default", "jp", json.dumps(bad).encode(), JSON_PATCH)


def test_resource_version_preconditions_are_judged_against_etcd(registry: Registry, cache: Suggestions) -> None:
    p = new_pod(registry, "rv")
    cache.hold(POD, p)
    now, _ = registry.patch(POD, "default", "rv", json.dumps({"metadata": {"labels": {"n": "1"}}}).encode(), MERGE)
    current_rv = now["metadata"]["resourceVersion"]
    # the patch names etcd's current version while the cache still has the old one: no 409
    out, _ = registry.patch(POD, "default", "rv", json.dumps(
        {"metadata": {"resourceVersion": current_rv, "labels": {"n": "2"}}}).encode(), MERGE)
    assert out["metadata"]["labels"] == {"n": "2"}
    # the old version (the cache's) is a precondition that no longer holds
    with pytest.raises(Conflict):
        registry.patch(POD, "default", "rv", json.dumps(
            {"metadata": {"resourceVersion": p["metadata"]["resourceVersion"], "labels": {"n": "3"}}}).encode(), MERGE)
    # an update (PUT) at the current version, cache stale: written; at the cache's: 409
    body = {**out, "metadata": {**out["metadata"], "labels": {"n": "4"}}}
    put, _ = registry.update(POD, "default", "rv", body)
    assert put["metadata"]["labels"] == {"n": "4"}
    with pytest.raises(Conflict):
        registry.update(POD, "default", "rv", {**p, "metadata": {**p["metadata"], "labels": {"n": "5"}}})
    assert registry.get(POD, "default", "rv")["metadata"]["labels"] == {"n": "4"}


def test_a_namespace_the_cache_does_not_have_yet_is_looked_up(registry: Registry, objects: ObjectStore,
                                                              cache: Suggestions) -> None:
    registry.create(NAMESPACE, None, {"metadata": {"name": "brand-new"}})  # not in the cache
    obj, _ = registry.create(POD, "brand-new", {"metadata": {"name": "p"},
                                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert obj["metadata"]["namespace"] == "brand-new"
    with pytest.raises(Exception, match='namespaces "missing" not found'):
        registry.create(POD, "missing", {"metadata": {"name": "p"},
                                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    # what the cache says is asked first: a namespace it has as terminating refuses creates
    ns = objects.get(NAMESPACE, "brand-new")
    assert ns is not None
    cache.hold(NAMESPACE, {**ns, "metadata": {**ns["metadata"], "namespace": None},
                           "status": {"phase": "Terminating"}})
    with pytest.raises(Exception, match="being terminated"):
        registry.create(POD, "brand-new", {"metadata": {"name": "q"},
                                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
