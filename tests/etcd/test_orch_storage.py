"""Object storage against a real etcd: create-only, resourceVersion = mod revision, optimistic
updates and retries, generation, generateName, list/watch with malformed values skipped."""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

import pytest

from netplane.errors import ConfigError, DecodeError, NetplaneError, NotFoundError, UserError
from netplane.store import EtcdStore, Keys, codec
from orchestrator.objects import meta
from orchestrator.objects.meta import NODE, POD, REPLICATION_CONTROLLER
from orchestrator.objects.selector import parse
from orchestrator.storage import (
    AlreadyExists,
    Conflict,
    Fenced,
    ObjectStore,
    ObjectView,
    Written,
    answer_bytes,
)
from orchestrator.validation import admit
from tests.waiting import wait_for

T0 = 1_700_000_000.0


@pytest.fixture
def objects(store: EtcdStore, keys: Keys) -> ObjectStore:
    uids = iter(f"uid-{i}" for i in range(1000))
    return ObjectStore(store, keys, clock=lambda: T0, new_uid=lambda: next(uids), rng=random.Random(5))


def rc(name: str = "web", replicas: int = 2, ns: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if ns:
        md["namespace"] = ns
    return admit({"apiVersion": "v1", "kind": "ReplicationController", "metadata": md,
                  "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": name}},
                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}).object


def pod(name: str = "", *, generate: str = "", labels: dict[str, str] | None = None, ns: str = "default") -> dict[str, Any]:
    md: dict[str, Any] = {"namespace": ns, "labels": labels or {}}
    if name:
        md["name"] = name
    if generate:
        md["generateName"] = generate
    return admit({"apiVersion": "v1", "kind": "Pod", "metadata": md,
                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}).object


def test_create_sets_system_fields_and_resource_version_is_mod_revision(objects: ObjectStore, store: EtcdStore) -> None:
    out = objects.create(rc())
    md = out["metadata"]
    assert md["uid"] == "uid-0" and md["creationTimestamp"] == "2023-11-14T22:13:20Z"
    assert md["generation"] == 1 and md["namespace"] == "default"
    key = objects.key(REPLICATION_CONTROLLER, "web", "default")
    assert key == f"{objects.keys.prefix}/registry/replicationcontrollers/default/web"
    kv = store.get(key)
    assert kv is not None and md["resourceVersion"] == str(kv.mod_revision)
    assert b"resourceVersion" not in kv.value  # derived, never stored
    got = objects.get(REPLICATION_CONTROLLER, "web")
    assert got == out


def test_writes_copy_what_they_are_given_unless_they_adopt_it(objects: ObjectStore) -> None:
    """The caller's object is left as it was; with `adopt` (the API server's admitted objects,
    made for the one write) the store fills in that very tree and returns it, one deep copy
    fewer (its top level in a `Written`, beside the bytes stored)."""
    given = pod("kept")
    before = codec.dumps(given)
    out = objects.create(given)
    assert out is not given and codec.dumps(given) == before
    mine = pod("adopted")
    out2 = objects.create(mine, adopt=True)
    assert out2 == mine and out2["metadata"] is mine["metadata"] and out2["spec"] is mine["spec"]
    assert mine["metadata"]["uid"] and mine["metadata"]["resourceVersion"]
    change = {**out2, "metadata": {**out2["metadata"], "labels": {"a": "b"}}}
    before = codec.dumps(change)
    upd = objects.update(change, current=out2)
    assert upd is not change and codec.dumps(change) == before
    fresh = {**upd, "metadata": {**upd["metadata"], "labels": {"a": "c"}}}
    upd3 = objects.update(fresh, current=upd, adopt=True)
    assert upd3 == fresh and upd3["metadata"] is fresh["metadata"] and upd3["metadata"]["labels"] == {"a": "c"}
    assert int(upd3["metadata"]["resourceVersion"]) > int(upd["metadata"]["resourceVersion"])
    assert objects.get(POD, "adopted") == upd3


def test_an_answer_is_made_from_the_bytes_stored(objects: ObjectStore, store: EtcdStore) -> None:
    """A written object's JSON answer is the stored value with its resourceVersion added: the
    same object as a read gives; a kind whose stored bytes do not begin with its metadata
    (a ConfigMap's `data` sorts before it) is encoded instead."""
    out = objects.create(pod("answered"))
    upd = objects.update({**out, "metadata": {**out["metadata"], "labels": {"a": "b"}}}, current=out)
    for w in (out, upd):
        assert type(w) is Written
        data = answer_bytes(w)
        assert data is not None and data.startswith(b'{"apiVersion":"v1","kind":"Pod","metadata":{"resourceVersion":"')
        assert codec.loads(data) == w
    assert codec.loads(answer_bytes(upd) or b"") == objects.get(POD, "answered")
    kv = store.get(objects.key(POD, "answered", "default"))
    assert kv is not None and bytes(kv.value) == upd.stored
    cm = objects.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                         "data": {"metadata": "{"}})
    assert answer_bytes(cm) is None
    assert answer_bytes({**upd}) is None  # not as written: encode it


def test_create_is_create_only(objects: ObjectStore) -> None:
    objects.create(rc(replicas=2))
    with pytest.raises(AlreadyExists, match='replicationcontrollers "web" already exists') as ei:
        objects.create(rc(replicas=9))
    assert isinstance(ei.value, UserError)
    stored = objects.get(REPLICATION_CONTROLLER, "web")
    assert stored is not None and stored["spec"]["replicas"] == 2 and stored["metadata"]["uid"] == "uid-0"


def test_same_name_in_two_namespaces_and_cluster_scoped_keys(objects: ObjectStore) -> None:
    objects.create(rc(ns="default"))
    objects.create(rc(ns="prod"))
    n = objects.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "h1", "namespace": "x"}})
    assert "namespace" not in n["metadata"]
    assert objects.key(NODE, "h1") == f"{objects.keys.prefix}/registry/nodes/h1"
    assert objects.get(NODE, "h1") is not None
    all_rcs, _ = objects.list(REPLICATION_CONTROLLER)
    assert [(meta.namespace(o), meta.name(o)) for o in all_rcs] == [("default", "web"), ("prod", "web")]
    prod, _ = objects.list(REPLICATION_CONTROLLER, "prod")
    assert [meta.namespace(o) for o in prod] == ["prod"]


def test_generate_name_and_collision_retry(store: EtcdStore, keys: Keys) -> None:
    # two stores with the same RNG seed: the second's first suffix collides with the first's
    a = ObjectStore(store, keys, rng=random.Random(1))
    b = ObjectStore(store, keys, rng=random.Random(1))
    first = a.create(pod(generate="web-"))
    second = b.create(pod(generate="web-"))
    n1, n2 = meta.name(first), meta.name(second)
    assert n1.startswith("web-") and len(n1) == len("web-") + 5 and n1 != n2
    assert set(n1[4:]) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert first["metadata"]["generateName"] == "web-"


def test_bad_names_never_reach_a_key(objects: ObjectStore) -> None:
    with pytest.raises(ConfigError):
        objects.key(POD, "../../etc", "default")
    with pytest.raises(ConfigError):
        objects.prefix(POD, "a/b")
    with pytest.raises(ConfigError, match="kind 'Deployment'"):
        objects.create({"kind": "Deployment", "metadata": {"name": "x"}})


def test_update_is_optimistic(objects: ObjectStore) -> None:
    v1 = objects.create(rc())
    v2_in = {**v1, "spec": {**v1["spec"], "replicas": 5}}
    v2 = objects.update(v2_in)
    assert int(v2["metadata"]["resourceVersion"]) > int(v1["metadata"]["resourceVersion"])
    stale = {**v1, "spec": {**v1["spec"], "replicas": 7}}
    with pytest.raises(Conflict, match='Operation cannot be fulfilled on replicationcontrollers "web": the object has been modified'):
        objects.update(stale)
    now = objects.get(REPLICATION_CONTROLLER, "web")
    assert now is not None and now["spec"]["replicas"] == 5 and now == v2


def test_update_keeps_identity_and_bumps_generation_on_spec_change_only(objects: ObjectStore) -> None:
    v1 = objects.create(rc())
    tampered = {**v1, "metadata": {**v1["metadata"], "uid": "forged", "creationTimestamp": "1999-01-01T00:00:00Z",
                                   "labels": {"new": "label"}}}
    v2 = objects.update(tampered)
    assert v2["metadata"]["uid"] == "uid-0" and v2["metadata"]["creationTimestamp"] == v1["metadata"]["creationTimestamp"]
    assert v2["metadata"]["generation"] == 1  # metadata-only change
    v3 = objects.update({**v2, "status": {"replicas": 2}})
    assert v3["metadata"]["generation"] == 1  # status-only change
    v4 = objects.update({**v3, "spec": {**v3["spec"], "replicas": 3}})
    assert v4["metadata"]["generation"] == 2


def test_update_without_resource_version_is_unconditional(objects: ObjectStore) -> None:
    v1 = objects.create(rc())
    objects.update({**v1, "spec": {**v1["spec"], "replicas": 4}})
    plain = {**v1, "metadata": {k: v for k, v in v1["metadata"].items() if k != "resourceVersion"}}
    assert objects.update({**plain, "spec": {**plain["spec"], "replicas": 3}})["spec"]["replicas"] == 3


def test_writes_fenced_by_the_leaders_lease(objects: ObjectStore, store: EtcdStore, keys: Keys) -> None:
    """Controller writes carry the leader's fence: once the lease is gone (expired, or a
    paused leader woke up after a hand-over), etcd refuses them and nothing is written."""
    from orchestrator.leader import Fence

    leader_key = keys.prefix + "/leader"
    lease = store.grant(30)
    assert store.create(leader_key, "me", lease=lease)
    fence = Fence(leader_key, lease, "me")
    v1 = objects.create(rc(), guards=fence.guards())
    v2 = objects.update({**v1, "spec": {**v1["spec"], "replicas": 5}}, guards=fence.guards())
    assert int(v2["metadata"]["resourceVersion"]) > int(v1["metadata"]["resourceVersion"])
    store.revoke(lease)  # leadership lost
    with pytest.raises(Fenced, match='write to replicationcontrollers "web" refused: leadership lost'):
        objects.update({**v2, "spec": {**v2["spec"], "replicas": 9}}, guards=fence.guards())
    with pytest.raises(Fenced):
        objects.create(rc("other"), guards=fence.guards())
    with pytest.raises(Fenced):
        objects.guaranteed_update(REPLICATION_CONTROLLER, "web", "default", lambda o: o, guards=fence.guards())
    with pytest.raises(Fenced):
        objects.delete(REPLICATION_CONTROLLER, "web", guards=fence.guards())
    now = objects.get(REPLICATION_CONTROLLER, "web")
    assert now == v2 and objects.get(REPLICATION_CONTROLLER, "other") is None
    # an own precondition failing under a holding fence is still a Conflict, not Fenced
    lease2 = store.grant(30)
    assert store.create(leader_key, "me", lease=lease2)
    fence2 = Fence(leader_key, lease2, "me")
    with pytest.raises(Conflict):
        objects.update(v1, guards=fence2.guards())
    with pytest.raises(AlreadyExists):
        objects.create(rc(), guards=fence2.guards())
    assert objects.delete(REPLICATION_CONTROLLER, "web", guards=fence2.guards())


def test_update_missing_is_not_found(objects: ObjectStore) -> None:
    with pytest.raises(NotFoundError, match='replicationcontrollers "ghost" not found'):
        objects.update(rc("ghost"))
    with pytest.raises(NotFoundError):
        objects.guaranteed_update(REPLICATION_CONTROLLER, "ghost", "default", lambda o: o)


def test_guaranteed_update_retries_so_concurrent_writers_lose_nothing(
    objects: ObjectStore, store: EtcdStore, keys: Keys
) -> None:
    objects.create(rc())
    other = ObjectStore(EtcdStore(store.config), keys)
    conflicts = [0]

    def bump(o: dict[str, Any]) -> dict[str, Any]:
        ann = o["metadata"].setdefault("annotations", {})
        ann["count"] = str(int(ann.get("count", "0")) + 1)
        return o

    failures: list[NetplaneError] = []

    def writer(s: ObjectStore) -> None:
        try:
            for _ in range(15):
                s.guaranteed_update(REPLICATION_CONTROLLER, "web", "default", bump)
        except NetplaneError as e:  # reported below, not lost in the thread
            failures.append(e)

    real_update = ObjectStore.update

    def counting_update(self: ObjectStore, obj: Any, **kw: Any) -> Any:
        try:
            return real_update(self, obj, **kw)
        except Conflict:
            conflicts[0] += 1
            raise

    ObjectStore.update = counting_update  # type: ignore[method-assign]
    try:
        ts = [threading.Thread(target=writer, args=(s,)) for s in (objects, other, objects)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
    finally:
        ObjectStore.update = real_update  # type: ignore[method-assign]
        other.store.close()
    assert failures == []
    final = objects.get(REPLICATION_CONTROLLER, "web")
    assert final is not None and final["metadata"]["annotations"]["count"] == "45"
    assert conflicts[0] > 0, "the writers never raced; the test proves nothing"


def test_guaranteed_update_rereads_after_each_conflict_and_can_be_capped(objects: ObjectStore) -> None:
    objects.create(rc())
    calls = [0]

    def meddle(o: dict[str, Any]) -> dict[str, Any]:
        """Someone else writes between our read and our write, every time."""
        calls[0] += 1
        cur = objects.get(REPLICATION_CONTROLLER, "web")
        assert cur is not None
        objects.update({**cur, "metadata": {**cur["metadata"], "labels": {"n": str(calls[0])}}})
        o["spec"]["replicas"] = 7
        return o

    with pytest.raises(Conflict):
        objects.guaranteed_update(REPLICATION_CONTROLLER, "web", "default", meddle, retries=4)
    assert calls[0] == 4  # re-read and re-mutated each time
    won = [0]

    def meddle_twice(o: dict[str, Any]) -> dict[str, Any]:
        won[0] += 1
        return meddle(o) if won[0] <= 2 else {**o, "spec": {**o["spec"], "replicas": 7}}

    out = objects.guaranteed_update(REPLICATION_CONTROLLER, "web", "default", meddle_twice)
    assert out["spec"]["replicas"] == 7 and won[0] == 3
    assert out["metadata"]["labels"] == {"n": "6"}  # the other writer's change is kept


def test_guaranteed_update_no_change_writes_nothing(objects: ObjectStore) -> None:
    v1 = objects.create(rc())
    out = objects.guaranteed_update(REPLICATION_CONTROLLER, "web", "default", lambda o: None)
    assert out["metadata"]["resourceVersion"] == v1["metadata"]["resourceVersion"]
    assert objects.get(REPLICATION_CONTROLLER, "web") == v1


def test_delete_with_precondition(objects: ObjectStore) -> None:
    v1 = objects.create(rc())
    objects.update({**v1, "spec": {**v1["spec"], "replicas": 4}})
    with pytest.raises(Conflict):
        objects.delete(REPLICATION_CONTROLLER, "web", resource_version=v1["metadata"]["resourceVersion"])
    cur = objects.get(REPLICATION_CONTROLLER, "web")
    assert cur is not None
    assert objects.delete(REPLICATION_CONTROLLER, "web", resource_version=cur["metadata"]["resourceVersion"])
    assert objects.get(REPLICATION_CONTROLLER, "web") is None
    assert not objects.delete(REPLICATION_CONTROLLER, "web")
    assert not objects.delete(REPLICATION_CONTROLLER, "web", resource_version="5")


def test_list_selector_and_malformed_values_skipped(
    objects: ObjectStore, store: EtcdStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="orchestrator.storage")
    objects.create(pod("a", labels={"app": "web"}))
    objects.create(pod("b", labels={"app": "db"}))
    base = objects.prefix(POD, "default")
    store.put(base + "garbage", b"\xff not json")
    store.put(base + "wrongkind", '{"kind":"Node","metadata":{"name":"wrongkind"}}')
    store.put(base + "wrongname", '{"kind":"Pod","metadata":{"name":"other","namespace":"default"}}')
    store.put(objects.prefix(POD, "prod") + "misplaced", '{"kind":"Pod","metadata":{"name":"misplaced","namespace":"default"}}')
    badcpu = pod("badcpu")
    badcpu["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "abc"}}
    store.put(base + "badcpu", codec.dumps(badcpu))  # written around validation, e.g. by etcdctl
    got, rev = objects.list(POD)
    assert [meta.name(p) for p in got] == ["a", "b"]
    assert rev > 0
    web, _ = objects.list(POD, selector=parse("app=web"))
    assert [meta.name(p) for p in web] == ["a"]
    text = caplog.text
    for bad in ("garbage", "wrongkind", "wrongname", "misplaced", "badcpu"):
        assert f"{bad}:" in text or f"/{bad}" in text
    assert "spec.containers[0].resources.requests[cpu]: quantities must match" in text
    with pytest.raises(DecodeError, match="quantities must match"):
        objects.get(POD, "badcpu")
    # a store for trusted readers can skip the check
    lax = ObjectStore(objects.store, objects.keys, read_check=None)
    assert {meta.name(p) for p in lax.list(POD)[0]} == {"a", "b", "badcpu"}


def _watch(objects: ObjectStore, stop: threading.Event, views: list[ObjectView]) -> threading.Thread:
    def run() -> None:
        views.extend(objects.watch(POD, "default", stop=stop, retry_interval=0.1))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_watch_follows_changes_with_resource_versions(
    objects: ObjectStore, store: EtcdStore, stop: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="orchestrator.storage")
    a = objects.create(pod("a"))
    views: list[ObjectView] = []
    t = _watch(objects, stop, views)
    wait_for(lambda: len(views) >= 1)
    assert views[0].changed is None and list(views[0].objects.values()) == [a]
    b = objects.create(pod("b"))
    store.put(objects.prefix(POD, "default") + "junk", "[]")
    a2 = objects.update({**a, "metadata": {**a["metadata"], "labels": {"x": "y"}}})
    objects.delete(POD, "b")
    wait_for(lambda: not any(meta.name(o) == "b" for o in views[-1].objects.values()) and len(views) >= 3)
    last = views[-1].objects
    assert list(last.values()) == [a2]  # junk skipped, b gone, a at its new resourceVersion
    seen_b = [v.objects[objects.key_of(b)] for v in views if objects.key_of(b) in v.objects]
    assert seen_b and seen_b[0]["metadata"]["resourceVersion"] == b["metadata"]["resourceVersion"]
    assert "junk" in caplog.text
    stop.set()
    t.join(5)
    assert not t.is_alive()


def test_events_live_on_a_lease_and_keep_it_when_counted(objects: ObjectStore, store: EtcdStore) -> None:
    from datetime import UTC, datetime

    from orchestrator.objects import event
    from orchestrator.objects.meta import EVENT

    now = datetime(2024, 6, 1, tzinfo=UTC)
    ev = admit(event.new_event(pod("p"), reason="Scheduled", message="m", component="test", now=now)).object
    lease = store.grant(event.DEFAULT_TTL_SECONDS)
    stored = objects.create(ev, lease=lease)
    key = objects.key_of(stored)
    kv = store.get(key)
    assert kv is not None and kv.lease == lease
    objects.update(event.repeated(stored, now=now))
    kv = store.get(key)
    assert kv is not None and kv.lease == lease, "an update must not detach the event from its TTL"
    got = objects.get(EVENT, meta.name(stored), "default")
    assert got is not None and got["count"] == 2
    store.revoke(lease)  # what the TTL running out does
    assert objects.get(EVENT, meta.name(stored), "default") is None


def test_update_at_the_revision_read_writes_in_one_round_trip_and_keeps_the_lease(
        objects: ObjectStore, store: EtcdStore) -> None:
    """`update(obj, current=read)` skips the re-read: the transaction alone, which keeps the
    key's lease (etcd's ignore_lease) and the stored identity, and is refused by etcd when
    `current` has gone stale or the key is gone."""
    lease = store.grant(60)
    v1 = objects.create(rc(), lease=lease)
    key = objects.key_of(v1)
    calls: list[str] = []
    real_get = store.get

    def counting_get(k: str) -> Any:
        calls.append(k)
        return real_get(k)

    store.get = counting_get  # type: ignore[method-assign]
    try:
        forged = {**v1, "metadata": {**v1["metadata"], "uid": "forged"}, "spec": {**v1["spec"], "replicas": 5}}
        v2 = objects.update(forged, current=v1)
    finally:
        del store.get  # type: ignore[method-assign]
    assert calls == [], "no read before the write"
    kv = store.get(key)
    assert kv is not None and kv.lease == lease, "the key keeps its lease"
    assert str(kv.mod_revision) == v2["metadata"]["resourceVersion"]
    assert v2["metadata"]["uid"] == v1["metadata"]["uid"] and v2["metadata"]["generation"] == 2
    # v1 is stale now: etcd refuses the write, nothing changes
    with pytest.raises(Conflict):
        objects.update({**v1, "spec": {**v1["spec"], "replicas": 9}}, current=v1)
    assert objects.get(REPLICATION_CONTROLLER, "web") == v2
    # a current whose resourceVersion is not obj's: the ordinary path (read, then write)
    v3 = objects.update({**v2, "spec": {**v2["spec"], "replicas": 6}}, current=v1)
    assert v3["spec"]["replicas"] == 6
    assert objects.delete(REPLICATION_CONTROLLER, "web")
    with pytest.raises(NotFoundError):
        objects.update(v3, current=v3)
    store.revoke(lease)
