"""The replication manager against a real etcd: exactly N pods while the pod watch lags,
scale up and down in Kubernetes' deletion order, adoption and release, cascading deletion
and orphaning."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from orchestrator.controllers.base import Writer
from orchestrator.controllers.informers import POD_INDEXERS, Informers
from orchestrator.controllers.replication_manager import (
    ReplicationManager,
    request_orphaning_deletion,
)
from orchestrator.objects import meta
from orchestrator.objects.meta import POD, REPLICATION_CONTROLLER
from orchestrator.storage import ObjectStore
from tests.etcd._orch import DelayedInformer, Running, names, pod, pods_of, rc, set_status
from tests.waiting import wait_for


@pytest.fixture
def running() -> Iterator[Running]:
    r = Running()
    yield r
    r.close()


def start(objects: ObjectStore, running: Running, *, pod_delay: float = 0.0) -> ReplicationManager:
    pods = DelayedInformer(objects, POD, indexers=POD_INDEXERS, delay=pod_delay) if pod_delay else None
    infs = Informers(objects, pods=pods)
    rm = ReplicationManager(objects, infs, writer=Writer())
    infs.start(running.stop)
    assert infs.wait_synced(10)
    running.start(rm.run, "rm")
    return rm


def active(objects: ObjectStore) -> list[dict]:  # type: ignore[type-arg]
    return [p for p in pods_of(objects) if not meta.is_deleting(p)]


def scale(objects: ObjectStore, name: str, n: int) -> None:
    def m(r: dict) -> dict:  # type: ignore[type-arg]
        r["spec"]["replicas"] = n
        return r

    objects.guaranteed_update(REPLICATION_CONTROLLER, name, "default", m)


def touch(objects: ObjectStore, name: str, value: str) -> None:
    def m(r: dict) -> dict:  # type: ignore[type-arg]
        r["metadata"].setdefault("annotations", {})["touched"] = value
        return r

    objects.guaranteed_update(REPLICATION_CONTROLLER, name, "default", m)


def test_exactly_n_pods_while_the_pod_watch_lags(objects: ObjectStore, running: Running) -> None:
    rm = start(objects, running, pod_delay=0.4)
    objects.create(rc("web", 12))
    # while the pod watch lags, the RC keeps being synced (here: a user touching an annotation,
    # as status writes and resyncs do): with the stale cache and no expectations, each of those
    # syncs would create again (kubernetes#7561)
    for i in range(15):
        touch(objects, "web", str(i))
        time.sleep(0.1)
    wait_for(lambda: len(pods_of(objects)) >= 12, 15, "12 pods")
    time.sleep(1.0)
    assert len(pods_of(objects)) == 12
    assert rm.created == 12
    st = wait_for(lambda: (objects.get(REPLICATION_CONTROLLER, "web") or {}).get("status", {}).get("replicas") == 12
                  and objects.get(REPLICATION_CONTROLLER, "web"), 10, "status")
    assert st["status"]["observedGeneration"] == 1


def test_scale_down_in_kubernetes_order_then_up(objects: ObjectStore, running: Running) -> None:
    start(objects, running)
    objects.create(rc("web", 4))
    wait_for(lambda: len(pods_of(objects)) == 4, 10, "4 pods")
    unscheduled, pending, not_ready, ready = names(pods_of(objects))
    set_status(objects, pending, node_name="n1", phase="Pending")
    set_status(objects, not_ready, node_name="n1", phase="Running", ready=False, ip="10.0.0.3")
    set_status(objects, ready, node_name="n2", phase="Running", ready=True, ip="10.0.0.4")
    expected_victims = [unscheduled, pending, not_ready]
    for n, victim in zip((3, 2, 1), expected_victims, strict=True):
        scale(objects, "web", n)
        wait_for(lambda n=n: len(active(objects)) == n, 10, f"scaled to {n}")
        assert victim not in names(active(objects)), (victim, names(active(objects)))
    assert names(active(objects)) == [ready]
    assert objects.get(POD, unscheduled) is None  # never bound: deleted outright
    marked = objects.get(POD, pending)
    assert marked is not None and meta.is_deleting(marked)  # bound: graceful, the node finishes it
    scale(objects, "web", 3)
    wait_for(lambda: len(active(objects)) == 3, 10, "scaled up to 3")
    time.sleep(0.5)
    assert len(active(objects)) == 3


def test_adoption_release_cascade_and_orphaning(objects: ObjectStore, running: Running) -> None:
    objects.create(pod("stray", labels={"app": "web"}))
    objects.create(pod("other", labels={"app": "db"}))
    start(objects, running)
    web = objects.create(rc("web", 2))
    wait_for(lambda: len(pods_of(objects)) == 3, 10, "1 adopted + 1 created")
    stray = objects.get(POD, "stray")
    assert stray is not None and (meta.controller_ref(stray) or {}).get("uid") == meta.uid(web)
    assert not meta.owner_references(objects.get(POD, "other") or {})

    # release: a pod whose labels stop matching loses its owner reference and is replaced
    def relabel(p: dict) -> dict:  # type: ignore[type-arg]
        p["metadata"]["labels"] = {"app": "debug"}
        return p

    objects.guaranteed_update(POD, "stray", "default", relabel)
    wait_for(lambda: not meta.owner_references(objects.get(POD, "stray") or {"metadata": {}}), 10, "released")
    wait_for(lambda: len([p for p in pods_of(objects) if meta.labels(p) == {"app": "web"}]) == 2, 10, "replaced")

    # deleting the RC outright cascades to its pods; the released one stays
    objects.delete(REPLICATION_CONTROLLER, "web")
    wait_for(lambda: names(pods_of(objects)) == ["other", "stray"], 10, "cascade")

    # orphaning: the RC goes, its pods stay, without the owner reference
    objects.create(rc("db", 1, labels={"app": "db"}))
    wait_for(lambda: meta.controller_ref(objects.get(POD, "other") or {}) is not None, 10, "db adopts other")
    time.sleep(0.3)
    assert names(pods_of(objects)) == ["other", "stray"]
    cur = objects.get(REPLICATION_CONTROLLER, "db")
    assert cur is not None
    objects.update(request_orphaning_deletion(cur, now=datetime.now(UTC)))
    wait_for(lambda: objects.get(REPLICATION_CONTROLLER, "db") is None, 10, "rc gone")
    assert names(pods_of(objects)) == ["other", "stray"]
    assert not meta.owner_references(objects.get(POD, "other") or {})
