"""The Kubernetes API server against a real etcd, driven by the official `kubernetes` client.

The server runs in-process (`APIServer`, its own thread and event loop) on 127.0.0.1 with a
temporary state directory, so the cluster CA, the serving certificate and the kubeconfigs
are made exactly as in production (`netplane kubeconfig`'s code). The client is the real
`kubernetes` package; raw HTTP (urllib) only where the check is about the wire itself: auth
edge cases and watch framing.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from netplane.store import EtcdConfig, EtcdStore, Keys
from orchestrator.apiserver import kubeconfig as kc
from orchestrator.apiserver.auth import add_token
from orchestrator.apiserver.server import APIServer, APIServerConfig
from orchestrator.objects.meta import POD, REPLICATION_CONTROLLER
from orchestrator.storage import ObjectStore
from orchestrator.validation import admit
from tests.waiting import wait_for

Obj = dict[str, Any]


@pytest.fixture
def api(store: EtcdStore, keys: Keys, tmp_path: Path) -> Iterator[APIServer]:
    cfg = APIServerConfig(listen=("127.0.0.1", 0), state_dir=tmp_path / "state", bookmark_interval=0.3)
    server = APIServer(store, keys, cfg)
    server.start()
    yield server
    server.stop()


def accepted(call: Any) -> bool:
    """Whether `call()` gets past authentication (a new token is read within a second)."""
    try:
        call()
        return True
    except ApiException as e:
        if e.status == 401:
            return False
        raise


def kubeconfig_file(api: APIServer, tmp_path: Path, **kw: Any) -> Path:
    path = tmp_path / f"kubeconfig-{uuid.uuid4().hex[:6]}"
    kc.write(path, kc.make(api.config.state_dir, **kw))
    return path


def client_for(path: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(path))


@pytest.fixture
def v1(api: APIServer, tmp_path: Path) -> Iterator[client.CoreV1Api]:
    c = client_for(kubeconfig_file(api, tmp_path))
    yield client.CoreV1Api(c)
    c.close()


def pod(name: str, *, labels: dict[str, str] | None = None, image: str = "busybox") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}}


def rc(name: str, replicas: int = 2) -> Obj:
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"app": name},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def raw(api: APIServer, path: str, *, token: str | None = None, method: str = "GET",
        body: Any = None, ctx: ssl.SSLContext | None = None) -> tuple[int, Any]:
    """One HTTPS request with urllib: (status, decoded JSON body)."""
    if ctx is None:
        ctx = ssl.create_default_context(cafile=str(api.config.state_dir / "ca.crt"))
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(api.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


# --------------------------------------------------------------------------- CRUD
def test_create_get_list_update_patch_delete_pod(v1: client.CoreV1Api) -> None:
    created = v1.create_namespaced_pod("default", pod("web"))
    assert created.metadata.name == "web" and created.metadata.uid
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"  # defaulted by the validation layer
    got = v1.read_namespaced_pod("web", "default")
    assert got.metadata.resource_version == created.metadata.resource_version
    listed = v1.list_namespaced_pod("default")
    assert [p.metadata.name for p in listed.items] == ["web"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)

    got.metadata.labels["tier"] = "front"
    updated = v1.replace_namespaced_pod("web", "default", got)
    assert updated.metadata.labels == {"app": "web", "tier": "front"}
    assert int(updated.metadata.resource_version) > int(got.metadata.resource_version)

    patched = v1.patch_namespaced_pod("web", "default", {"metadata": {"labels": {"tier": None, "x": "y"}}},
                                      _content_type="application/merge-patch+json")
    assert patched.metadata.labels == {"app": "web", "x": "y"}

    v1.delete_namespaced_pod("web", "default")  # unbound: removed at once
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_pod("web", "default")
    assert e.value.status == 404
    body = json.loads(e.value.body)
    assert body["kind"] == "Status" and body["reason"] == "NotFound"
    assert body["message"] == 'pods "web" not found'


def test_a_get_reads_etcd_on_the_loop(v1: client.CoreV1Api, store: EtcdStore, keys: Keys) -> None:
    """A single GET awaits its etcd read on the server's loop (`AsyncReader`): what etcd
    holds at that moment, at its mod revision, for the object and its status; a malformed
    value is a 500 Status and the server goes on serving."""
    v1.create_namespaced_pod("default", pod("web"))
    objects = ObjectStore(store, keys)
    stored = json.loads(store.get(objects.key(POD, "web", "default")).value)  # type: ignore[union-attr]
    stored["metadata"]["labels"]["written"] = "behind-the-api"
    rev = store.put(objects.key(POD, "web", "default"), json.dumps(stored))
    got = v1.read_namespaced_pod("web", "default")
    assert got.metadata.labels["written"] == "behind-the-api" and got.metadata.resource_version == str(rev)
    assert v1.read_namespaced_pod_status("web", "default").metadata.resource_version == str(rev)
    store.put(objects.key(POD, "broken", "default"), "{not json")
    for name, code, reason in (("broken", 500, "InternalError"), ("absent", 404, "NotFound")):
        with pytest.raises(ApiException) as e:
            v1.read_namespaced_pod(name, "default")
        body = json.loads(e.value.body)
        assert (e.value.status, body["kind"], body["reason"]) == (code, "Status", reason)
    assert v1.read_namespaced_pod("web", "default").metadata.name == "web"


def test_pod_writes_do_not_take_the_pool(v1: client.CoreV1Api, api: APIServer) -> None:
    """Creates, patches and updates of pods run on the loop (greenbridge), their etcd calls
    awaited there: with every worker thread of the pool held, they are still answered, while
    a write that does take the pool (a Service's, for its allocations) waits for a worker and
    is answered once one is free. (Its client stays connected: a queued pool job whose client
    has gone is dropped unrun, so a create the client gave up on may or may not happen.)"""
    assert api._pool is not None
    release = threading.Event()
    held = [api._pool.submit(release.wait, 30) for _ in range(api.config.workers)]
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "waits"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    with ThreadPoolExecutor(1) as caller:
        try:
            v1.create_namespaced_pod("default", pod("busy-pool"), _request_timeout=5)
            got = v1.patch_namespaced_pod("busy-pool", "default", {"metadata": {"labels": {"x": "1"}}},
                                          _content_type="application/merge-patch+json", _request_timeout=5)
            assert got.metadata.labels["x"] == "1"
            got.metadata.labels["y"] = "2"
            assert v1.replace_namespaced_pod("busy-pool", "default", got, _request_timeout=5).metadata.labels["y"] == "2"
            waiting = caller.submit(v1.create_namespaced_service, "default", svc, _request_timeout=20)
            time.sleep(1.0)
            assert not waiting.done(), "the Service's create was answered while every worker was held"
        finally:
            release.set()
            for f in held:
                f.result(10)
        assert waiting.result(15).spec.cluster_ip, "the Service's create, once a worker was free"


def test_conflict_on_stale_update(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("default", pod("web"))
    a = v1.read_namespaced_pod("web", "default")
    b = v1.read_namespaced_pod("web", "default")
    a.metadata.labels["n"] = "1"
    v1.replace_namespaced_pod("web", "default", a)
    b.metadata.labels["n"] = "2"
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_pod("web", "default", b)
    assert e.value.status == 409
    assert json.loads(e.value.body)["reason"] == "Conflict"


def test_already_exists(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("default", pod("web"))
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod("default", pod("web"))
    assert e.value.status == 409
    body = json.loads(e.value.body)
    assert body["reason"] == "AlreadyExists" and body["message"] == 'pods "web" already exists'


def test_invalid_names_the_field(v1: client.CoreV1Api) -> None:
    bad = pod("web")
    bad["spec"]["containers"][0]["ports"] = [{"containerPort": 70000}]
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod("default", bad)
    assert e.value.status == 422
    body = json.loads(e.value.body)
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "Pod" and body["details"]["name"] == "web"
    fields = [c["field"] for c in body["details"]["causes"]]
    assert "spec.containers[0].ports[0].containerPort" in fields
    assert 'Pod "web" is invalid: spec.containers[0].ports[0].containerPort' in body["message"]


def test_unknown_fields_warn_or_refuse(api: APIServer) -> None:
    token = add_token(api.config.state_dir / "tokens.csv", "alice", ["system:masters"])
    time.sleep(1.1)  # the token file is re-read at most once a second
    bad = pod("web")
    bad["spec"]["containers"][0]["imagee"] = "x"
    code, body = raw(api, "/api/v1/namespaces/default/pods?fieldValidation=Strict", token=token,
                     method="POST", body=bad)
    assert code == 400, body
    assert 'unknown field "spec.containers[0].imagee"' in body["message"]
    code, body = raw(api, "/api/v1/namespaces/default/pods", token=token, method="POST", body=bad)
    assert code == 201 and "imagee" not in body["spec"]["containers"][0]


def test_label_and_field_selectors(v1: client.CoreV1Api, api: APIServer) -> None:
    for name, app in (("a", "web"), ("b", "web"), ("c", "db")):
        v1.create_namespaced_pod("default", pod(name, labels={"app": app}))
    objects = ObjectStore(api.objects.store, api.objects.keys)
    objects.guaranteed_update(POD, "b", "default", lambda p: {**p, "status": {"phase": "Running"}})

    def names(**kw: Any) -> list[str]:
        return [p.metadata.name for p in v1.list_namespaced_pod("default", **kw).items]

    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app!=web") == ["c"]
    assert names(label_selector="app in (db,web),app notin (db)") == ["a", "b"]
    assert names(field_selector="metadata.name=c") == ["c"]
    assert names(field_selector="status.phase=Running") == ["b"]
    assert names(field_selector="status.phase!=Running,metadata.name!=a") == ["c"]
    assert names(field_selector="spec.nodeName=") == ["a", "b", "c"]
    all_ns = [p.metadata.name for p in v1.list_pod_for_all_namespaces(field_selector="metadata.namespace=default").items]
    assert all_ns == ["a", "b", "c"]
    with pytest.raises(ApiException) as e:
        v1.list_namespaced_pod("default", field_selector="spec.image=x")
    assert e.value.status == 400
    assert json.loads(e.value.body)["message"] == "field label not supported: spec.image"


def test_paging_with_limit_and_continue(v1: client.CoreV1Api) -> None:
    for i in range(7):
        v1.create_namespaced_pod("default", pod(f"p{i}", labels={"app": "web" if i % 2 else "db"}))
    first = v1.list_namespaced_pod("default", limit=3)
    assert [p.metadata.name for p in first.items] == ["p0", "p1", "p2"]
    assert first.metadata._continue and first.metadata.remaining_item_count == 4
    v1.create_namespaced_pod("default", pod("p9"))  # after the snapshot: not in the pages
    seen = [p.metadata.name for p in first.items]
    token = first.metadata._continue
    while token:
        page = v1.list_namespaced_pod("default", limit=3, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        seen += [p.metadata.name for p in page.items]
        token = page.metadata._continue
    assert seen == [f"p{i}" for i in range(7)]
    # a selector filters within the pages
    web, token = [], None
    while True:
        page = v1.list_namespaced_pod("default", limit=2, label_selector="app=web", _continue=token)
        web += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert web == ["p1", "p3", "p5", "p9"]


def test_paging_continue_expires_with_compaction(v1: client.CoreV1Api, api: APIServer) -> None:
    for i in range(4):
        v1.create_namespaced_pod("default", pod(f"p{i}"))
    first = v1.list_namespaced_pod("default", limit=2)
    v1.create_namespaced_pod("default", pod("later"))
    api.objects.store.compact(api.objects.store.status()["revision"])  # type: ignore[arg-type]
    with pytest.raises(ApiException) as e:
        v1.list_namespaced_pod("default", limit=2, _continue=first.metadata._continue)
    assert e.value.status == 410
    assert json.loads(e.value.body)["reason"] == "Expired"


# --------------------------------------------------------------------------- watch
def test_watch_from_a_resource_version(v1: client.CoreV1Api) -> None:
    listed = v1.list_namespaced_pod("default")
    rv = listed.metadata.resource_version
    v1.create_namespaced_pod("default", pod("w"))
    v1.patch_namespaced_pod("w", "default", {"metadata": {"labels": {"x": "1"}}},
                            _content_type="application/merge-patch+json")
    v1.delete_namespaced_pod("w", "default")
    seen = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.labels.get("x")))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "w", None), ("MODIFIED", "w", "1"), ("DELETED", "w", "1")]


def test_watch_without_resource_version_starts_with_the_current_objects(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("default", pod("old"))
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def later() -> None:
        time.sleep(0.5)
        v1.create_namespaced_pod("default", pod("new"))

    t = threading.Thread(target=later)
    t.start()
    for ev in w.stream(v1.list_namespaced_pod, "default", timeout_seconds=10):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    t.join()
    assert seen == [("ADDED", "old"), ("ADDED", "new")]


def test_watch_selector_transitions_are_added_and_deleted(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("default", pod("p", labels={"app": "db"}))
    rv = v1.list_namespaced_pod("default").metadata.resource_version
    for app in ("web", "web2", "db"):
        v1.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": app}}},
                                _content_type="application/merge-patch+json")
    seen = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=rv, label_selector="app=web",
                       timeout_seconds=3):
        seen.append((ev["type"], ev["object"].metadata.labels["app"]))
    assert seen == [("ADDED", "web"), ("DELETED", "web")]


def test_watch_of_a_compacted_revision_is_410(store: EtcdStore, keys: Keys, tmp_path: Path) -> None:
    """A start older than the watch cache's window (2 changes here) is read from etcd: after
    a compaction that is 410 Expired; within the window the cache still serves it."""
    cfg = APIServerConfig(listen=("127.0.0.1", 0), state_dir=tmp_path / "state", watch_window=2)
    api = APIServer(store, keys, cfg)
    api.start()
    try:
        c = client_for(kubeconfig_file(api, tmp_path))
        v1 = client.CoreV1Api(c)
        rv = v1.list_namespaced_pod("default").metadata.resource_version
        for n in ("a", "b", "c"):
            v1.create_namespaced_pod("default", pod(n))
        seen = []
        w = watch.Watch()
        for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=2):
            seen.append(ev["object"].metadata.name)  # not compacted yet: etcd has the history
        assert seen == ["a", "b", "c"]
        store.compact(int(store.status()["revision"]))
        with pytest.raises(ApiException) as e:
            for _ in watch.Watch().stream(v1.list_namespaced_pod, "default", resource_version=rv,
                                          timeout_seconds=3):
                pass
        assert e.value.status == 410
        assert json.loads(e.value.body)["reason"] == "Expired"
        c.close()
    finally:
        api.stop()


def test_watch_framing_and_bookmarks(api: APIServer, v1: client.CoreV1Api) -> None:
    token = add_token(api.config.state_dir / "tokens.csv", "alice", ["system:masters"])
    time.sleep(1.1)
    rv = v1.list_namespaced_pod("default").metadata.resource_version
    v1.create_namespaced_pod("default", pod("f"))
    ctx = ssl.create_default_context(cafile=str(api.config.state_dir / "ca.crt"))
    req = urllib.request.Request(
        f"{api.url}/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
        "&timeoutSeconds=2", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
        lines = r.read().decode().splitlines()
    events = [json.loads(line) for line in lines]
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "f"
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, events
    assert bookmarks[0]["object"]["kind"] == "Pod"
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) >= \
        int(events[0]["object"]["metadata"]["resourceVersion"])


def test_watchers_share_one_cache(api: APIServer, v1: client.CoreV1Api) -> None:
    """Many watchers of one kind: every one sees the change; the server holds one etcd watch."""
    rv = v1.list_namespaced_pod("default").metadata.resource_version
    got: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        w = watch.Watch()
        for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=10):
            with lock:
                got.append(ev["object"].metadata.name)
            w.stop()

    assert api._caches is not None
    cache = api._caches.get(POD)
    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    wait_for(lambda: len(cache) == 10, timeout=10)
    v1.create_namespaced_pod("default", pod("shared"))
    for t in threads:
        t.join(15)
    assert got == ["shared"] * 10
    assert cache.direct_watches == 0  # all ten were served from the one etcd watch


def test_watch_cache_decodes_when_asked_and_malformed_values_are_none(
        api: APIServer, v1: client.CoreV1Api, store: EtcdStore, keys: Keys) -> None:
    """The cache keeps etcd's bytes and decodes them when first asked for: a change nobody
    watches is never decoded. A value turned malformed behind the API is, for a watcher, the
    object's DELETED (its last good state); made good again, its ADDED; a malformed value of
    a key that had none sends nothing, nor does its delete."""
    assert api._caches is not None
    cache = api._caches.get(POD)
    objects = ObjectStore(store, keys)
    v1.create_namespaced_pod("default", pod("m"))
    key = objects.key(POD, "m", "default")
    wait_for(lambda: key in cache._current, timeout=5)
    assert cache._current[key].pending  # nobody asked: still bytes
    rv = v1.list_namespaced_pod("default").metadata.resource_version
    good = store.get(key)
    assert good is not None
    store.put(key, "{not json")
    store.put(key, good.value)
    store.put(objects.key(POD, "x", "default"), "[1, 2")
    store.delete(objects.key(POD, "x", "default"))
    v1.patch_namespaced_pod("m", "default", {"metadata": {"labels": {"after": "yes"}}},
                            _content_type="application/merge-patch+json")
    seen = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name, (ev["object"].metadata.labels or {}).get("after")))
        if len(seen) == 3:
            w.stop()
    assert seen == [("DELETED", "m", None), ("ADDED", "m", None), ("MODIFIED", "m", "yes")]
    assert cache._current[key].get() is not None and api._caches.cached(POD, "default", "x") is None


def test_a_patch_starts_from_its_own_decode_and_leaves_the_cache_as_it_was(
        api: APIServer, v1: client.CoreV1Api, store: EtcdStore, keys: Keys) -> None:
    """A patch changes its own decode of the cached bytes in place (admission drops nulls,
    as kube stores `lastProbeTime: null`, and defaults), never the tree the cache shares with
    watchers and other requests; each owned decode is a new tree."""
    assert api._caches is not None
    cache = api._caches.get(POD)
    objects = ObjectStore(store, keys)
    v1.create_namespaced_pod("default", pod("own"))
    key = objects.key(POD, "own", "default")
    stored = json.loads(bytes(store.get(key).value))
    stored["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastProbeTime": None}]
    store.put(key, json.dumps(stored))
    rev = store.get(key).mod_revision
    wait_for(lambda: key in cache._current and cache._current[key].revision == rev, timeout=5)
    shared = api._caches.cached(POD, "default", "own")
    assert shared is not None and shared["status"]["conditions"][0]["lastProbeTime"] is None
    before = json.dumps(shared, sort_keys=True)
    a, b = (api._caches.cached(POD, "default", "own", owned=True) for _ in range(2))
    assert a == b == shared and a is not b and a["status"] is not shared["status"]
    out = v1.patch_namespaced_pod("own", "default", {"metadata": {"labels": {"patched": "yes"}}})
    assert out.metadata.labels["patched"] == "yes"
    after = json.loads(bytes(store.get(key).value))
    assert after["status"]["conditions"] == [{"type": "Ready", "status": "True"}]  # nulls dropped
    assert json.dumps(shared, sort_keys=True) == before  # the cache's tree untouched


def test_watch_cache_keeps_superseded_states_as_bytes_and_replays_them(
        api: APIServer, v1: client.CoreV1Api) -> None:
    """A state that a newer one replaced, once the watchers have judged the change, goes back
    to bytes (a patch had decoded it); a watch from before the change decodes it again: a
    watcher whose label selector the pod stops matching gets its DELETED with the old labels."""
    assert api._caches is not None
    cache = api._caches.get(POD)
    v1.create_namespaced_pod("default", pod("sup", labels={"app": "sup"}))
    key = cache.prefix + "default/sup"
    wait_for(lambda: key in cache._current, timeout=5)
    before = v1.read_namespaced_pod("sup", "default").metadata.resource_version
    old = cache._current[key]
    assert api._caches.cached(POD, "default", "sup") is not None and not old.pending  # decoded
    v1.patch_namespaced_pod("sup", "default", {"metadata": {"labels": {"app": "other"}}})
    wait_for(lambda: cache._current[key] is not old, timeout=5)
    wait_for(lambda: old.pending, timeout=5, what="the superseded state released")
    seen = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default", label_selector="app=sup",
                       resource_version=before, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.labels))
        w.stop()
    assert seen == [("DELETED", "sup", {"app": "sup"})]


def test_a_watch_from_now_decodes_the_cache_off_the_loop_first(
        api: APIServer, v1: client.CoreV1Api, store: EtcdStore, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch without a resourceVersion lists every current object: what the cache has not
    decoded yet is decoded on an executor thread before (past `DECODE_ON_LOOP` of them), and
    the watch starts with all of them."""
    from orchestrator.apiserver import watchcache

    monkeypatch.setattr(watchcache, "DECODE_ON_LOOP", 2)
    assert api._caches is not None
    cache = api._caches.get(POD)
    objects = ObjectStore(store, keys)
    names = [f"behind-{i}" for i in range(6)]
    for n in names:
        objects.create(admit(pod(n)).object)
    wait_for(lambda: all(objects.key(POD, n, "default") in cache._current for n in names), timeout=5)
    assert all(cache._current[objects.key(POD, n, "default")].pending for n in names)
    threads: set[str] = set()
    real = watchcache.Stored.get

    def get(self: watchcache.Stored) -> Any:
        if self.pending:
            threads.add(threading.current_thread().name)
        return real(self)

    monkeypatch.setattr(watchcache.Stored, "get", get)
    seen = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default", timeout_seconds=3):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == len(names):
            w.stop()
    assert seen == [("ADDED", n) for n in names]
    assert threads and "apiserver" not in threads  # decoded in the executor, not on the loop's thread


def test_watch_cache_relists_after_etcd_restarts(etcd_factory: Any, tmp_path: Path) -> None:
    """etcd goes away under the server: its watch caches re-list when it is back, close the
    watches they served (continuity is lost: kube's cacher does the same), and serve new
    watches and cached writes from the new list."""
    etcd = etcd_factory()
    store = EtcdStore(EtcdConfig(endpoints=(etcd.endpoint,), timeout=2.0))
    keys = Keys("/restart")
    api = APIServer(store, keys, APIServerConfig(listen=("127.0.0.1", 0), state_dir=tmp_path / "state"))
    api.start()
    c = client_for(kubeconfig_file(api, tmp_path))
    try:
        v1 = client.CoreV1Api(c)
        v1.create_namespaced_pod("default", pod("before"))
        ended = threading.Event()
        seen: list[str] = []

        def follow() -> None:
            for ev in watch.Watch().stream(v1.list_namespaced_pod, "default", timeout_seconds=60):
                seen.append(ev["object"].metadata.name)
            ended.set()

        t = threading.Thread(target=follow, daemon=True)
        t.start()
        wait_for(lambda: seen == ["before"], timeout=10)
        etcd.stop()
        etcd.start()
        assert ended.wait(30), "the watch served before the restart was not closed"
        v1.create_namespaced_pod("default", pod("after"))
        names: list[str] = []
        w = watch.Watch()
        for ev in w.stream(v1.list_namespaced_pod, "default", timeout_seconds=10):
            names.append(ev["object"].metadata.name)
            if len(names) == 2:
                w.stop()
        assert sorted(names) == ["after", "before"]
        patched = v1.patch_namespaced_pod("after", "default", {"metadata": {"labels": {"x": "1"}}},
                                          _content_type="application/merge-patch+json")
        assert patched.metadata.labels["x"] == "1"
    finally:
        c.close()
        api.stop()
        store.delete_prefix("/restart/")
        store.close()


# --------------------------------------------------------------------------- subresources
def test_scale_subresource(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_replication_controller("default", rc("web", 2))
    s = v1.read_namespaced_replication_controller_scale("web", "default")
    assert s.spec.replicas == 2 and s.status.selector == "app=web"
    v1.patch_namespaced_replication_controller_scale("web", "default", {"spec": {"replicas": 5}},
                                                     _content_type="application/merge-patch+json")
    assert v1.read_namespaced_replication_controller("web", "default").spec.replicas == 5
    s = v1.read_namespaced_replication_controller_scale("web", "default")
    s.spec.replicas = 1
    v1.replace_namespaced_replication_controller_scale("web", "default", s)
    assert v1.read_namespaced_replication_controller("web", "default").spec.replicas == 1
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_replication_controller_scale(
            "web", "default", {"spec": {"replicas": -1}, "metadata": {"name": "web"}})
    assert e.value.status == 422


def test_eviction_keeps_to_the_disruption_budget(v1: client.CoreV1Api, api: APIServer, store: EtcdStore,
                                                 keys: Keys) -> None:
    """policy/v1 PodDisruptionBudgets: the disruption controller's status over three Ready pods
    (minAvailable 2: one disruption allowed), an eviction taking it, the next one refused 429
    with kube's words (kubectl drain retries on it), a Pending pod evicted whatever the budget,
    and a budget with both minAvailable and maxUnavailable refused 422."""
    from orchestrator.controllers.base import Writer
    from orchestrator.controllers.disruption import DisruptionController
    from orchestrator.controllers.informers import Informers
    from tests.etcd._orch import Running

    objects = ObjectStore(store, keys)
    ready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    for n in ("web-1", "web-2", "web-3", "web-pending"):
        objects.create(admit(pod(n)).object)
        if n != "web-pending":
            objects.guaranteed_update(POD, n, "default", lambda p: {**p, "status": ready})
    policy = client.PolicyV1Api(v1.api_client)
    with pytest.raises(ApiException) as e:
        policy.create_namespaced_pod_disruption_budget("default", {"metadata": {"name": "both"}, "spec": {
            "minAvailable": 1, "maxUnavailable": "10%", "selector": {"matchLabels": {"app": "web"}}}})
    assert e.value.status == 422 and json.loads(e.value.body)["details"]["causes"][0]["field"] == "spec"
    policy.create_namespaced_pod_disruption_budget("default", {"metadata": {"name": "web"}, "spec": {
        "minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}})

    def evict(name: str) -> tuple[int, Any]:
        try:
            v1.create_namespaced_pod_eviction(name, "default", {"apiVersion": "policy/v1", "kind": "Eviction",
                                                                "metadata": {"name": name}})
            return 201, None
        except ApiException as e:
            return e.status, json.loads(e.body)

    # before the controller has looked at it, its status is not for its spec: wait (429)
    code, body = evict("web-1")
    assert (code, body["details"]["causes"][0]["message"]) == \
        (429, "The disruption budget web is still being processed by the server.")
    infs = Informers(objects, resync=30)
    running = Running()
    controller = DisruptionController(objects, infs, writer=Writer())
    infs.start(running.stop)
    running.start(controller.run, "disruption")
    try:
        def budget() -> Any:
            return policy.read_namespaced_pod_disruption_budget("web", "default").status

        status = wait_for(lambda: (s := budget()) is not None and s.disruptions_allowed == 1 and s,
                          what="the budget computed")
        assert (status.current_healthy, status.desired_healthy, status.expected_pods) == (3, 2, 4)
        assert status.conditions[0].type == "DisruptionAllowed" and status.conditions[0].reason == "SufficientPods"
        assert evict("web-1")[0] == 201
        code, body = evict("web-2")
        assert (code, body["reason"], body["message"]) == \
            (429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
        # 3 healthy while the controller has not yet seen web-1 go (the eviction took its disruption), then 2
        assert body["details"]["causes"] in ([{"reason": "DisruptionBudget", "message":
                                               f"The disruption budget web needs 2 healthy pods and has {n} currently"}]
                                             for n in (3, 2))
        assert evict("web-pending")[0] == 201  # not running: no budget to keep
        wait_for(lambda: (s := budget()).current_healthy == 2 and s.disruptions_allowed == 0
                 and s.conditions[0].reason == "InsufficientPods", what="the evicted pod gone from the count")
        assert evict("web-2")[0] == 429
        assert [p.metadata.name for p in v1.list_namespaced_pod("default").items] == ["web-2", "web-3"]
    finally:
        running.close()


def test_a_service_account_token_secret_gets_its_token(v1: client.CoreV1Api, api: APIServer) -> None:
    """kube's long-lived token: a `kubernetes.io/service-account-token` Secret naming an account
    is filled in (token, ca.crt, namespace, the account's uid); its token authenticates as the
    account until the Secret is deleted. One naming no account stays empty; one naming none is 422."""
    import base64

    v1.create_namespaced_service_account("default", {"metadata": {"name": "bot"}})
    sa = v1.read_namespaced_service_account("bot", "default")
    made = v1.create_namespaced_secret("default", {"metadata": {"name": "bot-token", "annotations": {
        "kubernetes.io/service-account.name": "bot"}}, "type": "kubernetes.io/service-account-token"})
    assert set(made.data) == {"token", "ca.crt", "namespace"}  # in the create's own answer
    assert made.metadata.annotations["kubernetes.io/service-account.uid"] == sa.metadata.uid
    assert base64.b64decode(made.data["ca.crt"]) == (api.config.state_dir / "ca.crt").read_bytes()
    assert base64.b64decode(made.data["namespace"]) == b"default"
    token = base64.b64decode(made.data["token"]).decode()
    code, who = raw(api, "/apis/authentication.k8s.io/v1/selfsubjectreviews", token=token, method="POST",
                    body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert (code, who["status"]["userInfo"]["username"]) == (201, "system:serviceaccount:default:bot"), who
    v1.delete_namespaced_secret("bot-token", "default")
    wait_for(lambda: raw(api, "/apis/authentication.k8s.io/v1/selfsubjectreviews", token=token, method="POST",
                         body={})[0] == 401, what="the token revoked with its Secret")
    orphan = v1.create_namespaced_secret("default", {"metadata": {"name": "ghost-token", "annotations": {
        "kubernetes.io/service-account.name": "ghost"}}, "type": "kubernetes.io/service-account-token"})
    assert not orphan.data
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_secret("default", {"metadata": {"name": "x"}, "type": "kubernetes.io/service-account-token"})
    assert e.value.status == 422 and \
        json.loads(e.value.body)["details"]["causes"][0]["field"] == "metadata.annotations[kubernetes.io/service-account.name]"


def test_binding_twice_is_refused(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("default", pod("b"))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}
    v1.create_namespaced_pod_binding("b", "default", binding, _preload_content=False)
    p = v1.read_namespaced_pod("b", "default")
    assert p.spec.node_name == "n1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in p.status.conditions)
    binding["target"]["name"] = "n2"
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod_binding("b", "default", binding, _preload_content=False)
    assert e.value.status == 409
    assert "already assigned to node" in json.loads(e.value.body)["message"]


def test_status_subresource_changes_only_status(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("default", pod("s"))
    v1.patch_namespaced_pod_status("s", "default", {"status": {"phase": "Running", "podIP": "10.0.0.5"},
                                                    "metadata": {"labels": {"ignored": "yes"}}},
                                   _content_type="application/merge-patch+json")
    p = v1.read_namespaced_pod("s", "default")
    assert p.status.phase == "Running" and p.status.pod_ip == "10.0.0.5"
    assert "ignored" not in p.metadata.labels
    # a PUT of the pod itself keeps the status the server has
    p.status.phase = "Failed"
    p.metadata.labels["kept"] = "yes"
    v1.replace_namespaced_pod("s", "default", p)
    p2 = v1.read_namespaced_pod("s", "default")
    assert p2.status.phase == "Running" and p2.metadata.labels["kept"] == "yes"


def test_writes_that_leave_a_stored_spec_unchanged_do_not_check_it_again(
        v1: client.CoreV1Api, store: EtcdStore, keys: Keys) -> None:
    """Ratcheting: a pod spec that today's rules refuse, written behind the API, does not
    block a label patch or a status write (neither changes it); a write that changes the
    spec checks all of it, as before."""
    v1.create_namespaced_pod("default", pod("r"))
    objects = ObjectStore(store, keys)
    stored = json.loads(store.get(objects.key(POD, "r", "default")).value)  # type: ignore[union-attr]
    stored["spec"]["restartPolicy"] = "Sometimes"
    rev = store.put(objects.key(POD, "r", "default"), json.dumps(stored))
    wait_for(lambda: int(v1.list_namespaced_pod("default").metadata.resource_version) >= rev, timeout=5)
    v1.patch_namespaced_pod("r", "default", {"metadata": {"labels": {"patched": "yes"}}})
    v1.patch_namespaced_pod_status("r", "default", {"status": {"phase": "Running"}})
    got = v1.read_namespaced_pod("r", "default")
    assert (got.metadata.labels["patched"], got.status.phase, got.spec.restart_policy) == ("yes", "Running", "Sometimes")
    with pytest.raises(ApiException) as e:
        v1.patch_namespaced_pod("r", "default", {"spec": {"activeDeadlineSeconds": 30}})
    body = json.loads(e.value.body)
    assert (e.value.status, body["reason"]) == (422, "Invalid")
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.restartPolicy"]


def test_delete_rc_with_propagation(v1: client.CoreV1Api, api: APIServer) -> None:
    objects = api.objects
    created = v1.create_namespaced_replication_controller("default", rc("web", 2))
    owner = {"apiVersion": "v1", "kind": "ReplicationController", "name": "web",
             "uid": created.metadata.uid, "controller": True}
    for n in ("web-a", "web-b"):
        p = pod(n, labels={"app": "web"})
        p["metadata"]["ownerReferences"] = [owner]
        v1.create_namespaced_pod("default", p)
    v1.delete_namespaced_replication_controller("web", "default", propagation_policy="Orphan")
    left = v1.list_namespaced_pod("default").items
    assert sorted(p.metadata.name for p in left) == ["web-a", "web-b"]
    assert all(not p.metadata.owner_references for p in left)

    created = v1.create_namespaced_replication_controller("default", rc("web", 2))
    for p in left:
        p.metadata.owner_references = [client.V1OwnerReference(
            api_version="v1", kind="ReplicationController", name="web", uid=created.metadata.uid,
            controller=True)]
        v1.replace_namespaced_pod(p.metadata.name, "default", p)
    v1.delete_namespaced_replication_controller("web", "default", propagation_policy="Background")
    assert v1.list_namespaced_pod("default").items == []
    assert objects.list(POD, "default")[0] == []


def test_deletecollection_with_a_selector(v1: client.CoreV1Api) -> None:
    for name, app in (("a", "web"), ("b", "web"), ("c", "db")):
        v1.create_namespaced_pod("default", pod(name, labels={"app": app}))
    v1.delete_collection_namespaced_pod("default", label_selector="app=web")
    assert [p.metadata.name for p in v1.list_namespaced_pod("default").items] == ["c"]


def test_service_gets_a_cluster_ip(v1: client.CoreV1Api) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    s = v1.create_namespaced_service("default", svc)
    assert s.spec.cluster_ip and s.spec.ports[0].target_port == 80
    # an update that leaves out the cluster IP keeps it (kube's patchAllocatedValues)
    again = v1.replace_namespaced_service("web", "default", {**svc, "metadata": {
        "name": "web", "resourceVersion": s.metadata.resource_version}})
    assert again.spec.cluster_ip == s.spec.cluster_ip
    taken = {**svc, "metadata": {"name": "other"}, "spec": {**svc["spec"], "clusterIP": s.spec.cluster_ip}}
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_service("default", taken)
    assert e.value.status == 422
    assert json.loads(e.value.body)["details"]["causes"][0]["field"] == "spec.clusterIP"


# --------------------------------------------------------------------------- auth
def test_self_reviews_say_what_a_user_may_do_and_who_it_is(v1: client.CoreV1Api, api: APIServer,
                                                          tmp_path: Path) -> None:
    """kubectl auth can-i / whoami: SelfSubjectAccessReview and SelfSubjectReview, for the admin and a
    read-only user, through the official client; both groups are in /apis (with the node
    Leases' and kubectl top's)."""
    groups = {g.name: g.preferred_version.group_version for g in client.ApisApi(v1.api_client).get_api_versions().groups}
    assert groups == {"authorization.k8s.io": "authorization.k8s.io/v1", "authentication.k8s.io": "authentication.k8s.io/v1",
                      "rbac.authorization.k8s.io": "rbac.authorization.k8s.io/v1", "policy": "policy/v1",
                      "coordination.k8s.io": "coordination.k8s.io/v1", "metrics.k8s.io": "metrics.k8s.io/v1beta1"}
    viewer = client_for(kubeconfig_file(api, tmp_path, user="viewer", groups=["readonly"], token=True))
    wait_for(lambda: accepted(lambda: client.CoreV1Api(viewer).list_namespaced_pod("default")),
             what="the viewer's token read")  # the token file is re-read at most once a second

    def can(c: client.ApiClient, verb: str, resource: str = "pods") -> bool:
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(verb=verb, resource=resource, namespace="default")))
        return bool(client.AuthorizationV1Api(c).create_self_subject_access_review(review).status.allowed)

    assert can(v1.api_client, "create") and can(v1.api_client, "delete", "nodes")
    assert can(viewer, "list") and not can(viewer, "create") and not can(viewer, "escalate")
    assert can(v1.api_client, "get", "secrets") and not can(viewer, "get", "secrets")  # kube's view role
    review = client.AuthorizationV1Api(viewer).create_self_subject_access_review(client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
            verb="get", resource="pods", namespace="default"))))
    assert review.status.reason == 'RBAC: allowed by ClusterRoleBinding "netplane:read-only" of ClusterRole "view" ' \
                                   'to Group "readonly"'
    review = client.AuthorizationV1Api(viewer).create_self_subject_access_review(client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(non_resource_attributes=client.V1NonResourceAttributes(
            verb="get", path="/metrics"))))
    assert review.status.allowed is False  # cluster-admin's (nonResourceURLs "*"), not a reader's
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(viewer).list_namespaced_secret("default")
    assert denied.value.status == 403
    def rules(c: client.ApiClient) -> list[tuple[list[str], list[str], list[str]]]:
        review = client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace="default"))
        st = client.AuthorizationV1Api(c).create_self_subject_rules_review(review).status
        assert st.incomplete is False
        return [(r.verbs, r.api_groups, r.resources) for r in st.resource_rules]

    assert (["*"], ["*"], ["*"]) in rules(v1.api_client)  # kubectl auth can-i --list: cluster-admin's
    readable = {r for verbs, groups, resources in rules(viewer) if "get" in verbs and groups == [""] for r in resources}
    assert "secrets" not in readable and not any("create" in verbs for verbs, groups, _ in rules(viewer) if groups == [""])
    assert {"pods", "pods/log", "configmaps", "events", "replicationcontrollers/scale", "nodes"} <= readable
    assert (["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]) \
        in rules(viewer)
    with pytest.raises(ApiException) as e:
        client.AuthorizationV1Api(viewer).create_self_subject_rules_review(
            client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec()))
    assert e.value.status == 400 and json.loads(e.value.body)["message"] == "no namespace on request"
    who = client.AuthenticationV1Api(viewer).create_self_subject_review(client.V1SelfSubjectReview())
    assert (who.status.user_info.username, who.status.user_info.groups) == ("viewer", ["readonly", "system:authenticated"])
    with pytest.raises(ApiException) as e:
        client.AuthorizationV1Api(viewer).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec()))
    assert e.value.status == 422
    viewer.close()


def test_bodies_it_cannot_read(api: APIServer) -> None:
    """A body type the server does not read is kube's 415; protobuf it cannot decode is a 400
    saying why (kubectl's own protobuf bodies: tests/lab/test_kubectl_lab.py)."""
    token = add_token(api.config.state_dir / "tokens.csv", "alice", ["system:masters"])
    wait_for(lambda: raw(api, "/api/v1/pods", token=token)[0] == 200, what="alice's token read")
    ctx = ssl.create_default_context(cafile=str(api.config.state_dir / "ca.crt"))
    for ctype, body, code, reason, says in (
            ("application/cbor", b"\xa1", 415, "UnsupportedMediaType",
             ("the body of the request was in an unknown format - accepted media types include: "
              "application/json, application/yaml, application/vnd.kubernetes.protobuf")),
            ("application/vnd.kubernetes.protobuf", b"k8s\x00\n\x0f\n\x02v1", 400, "BadRequest",
             "the body of the request could not be decoded: truncated field")):
        req = urllib.request.Request(api.url + "/api/v1/namespaces", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, context=ctx, timeout=10)
        status = json.loads(e.value.read())
        assert (e.value.code, status["reason"], status["message"]) == (code, reason, says)


def test_no_credentials_is_401_with_a_status(api: APIServer) -> None:
    code, body = raw(api, "/api/v1/namespaces/default/pods")
    assert code == 401
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    code, body = raw(api, "/api/v1/pods", token="not-a-token")
    assert code == 401
    code, body = raw(api, "/version")  # public, like kube's system:public-info-viewer
    assert code == 200 and body["gitVersion"].startswith("v1.33.")


def test_read_only_user_gets_403_on_writes(api: APIServer, tmp_path: Path) -> None:
    c = client_for(kubeconfig_file(api, tmp_path, user="viewer", groups=["readonly"], token=True))
    time.sleep(1.1)
    ro = client.CoreV1Api(c)
    assert ro.list_namespaced_pod("default").items == []
    with pytest.raises(ApiException) as e:
        ro.create_namespaced_pod("default", pod("x"))
    assert e.value.status == 403
    body = json.loads(e.value.body)
    assert body["reason"] == "Forbidden"
    assert body["message"] == ('pods is forbidden: User "viewer" cannot create resource "pods" in API '
                               'group "" in the namespace "default"')
    c.close()


def test_client_certificate_auth(api: APIServer, tmp_path: Path) -> None:
    path = kubeconfig_file(api, tmp_path, user="carol", groups=["readonly"])
    cfg = yaml.safe_load(path.read_text())
    assert "client-certificate-data" in cfg["users"][0]["user"]
    c = client_for(path)
    ro = client.CoreV1Api(c)
    ro.list_node()
    with pytest.raises(ApiException) as e:
        ro.create_namespaced_pod("default", pod("x"))
    assert e.value.status == 403 and 'User "carol"' in json.loads(e.value.body)["message"]
    c.close()
    # a certificate from another CA does not authenticate (the TLS handshake refuses it)
    from orchestrator.apiserver import certs

    other = certs.new_ca("other")
    pair = certs.client_cert(other, "mallory", ["system:masters"])
    (tmp_path / "m.crt").write_bytes(pair.cert)
    (tmp_path / "m.key").write_bytes(pair.key)
    ctx = ssl.create_default_context(cafile=str(api.config.state_dir / "ca.crt"))
    ctx.load_cert_chain(str(tmp_path / "m.crt"), str(tmp_path / "m.key"))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        raw(api, "/api/v1/pods", ctx=ctx)


def test_kubeconfig_command_writes_a_working_config(api: APIServer, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from netplane.cli.main import cli

    out = tmp_path / "kc.yaml"
    r = CliRunner().invoke(cli, ["kubeconfig", "--state-dir", str(api.config.state_dir), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_mode & 0o777 == 0o600
    c = client_for(out)
    v1 = client.CoreV1Api(c)
    v1.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    assert "team" in [n.metadata.name for n in v1.list_namespace().items]
    assert client.VersionApi(c).get_code().git_version.endswith("-netplane")
    c.close()


def test_a_dry_run_in_the_delete_options_deletes_nothing(v1: client.CoreV1Api) -> None:
    """DeleteOptions' own dryRun (where client-go puts it: `kubectl delete --dry-run=server`)
    is a dry run, as the query parameter is; a bad value is a 400."""
    v1.create_namespaced_pod("default", pod("kept"))
    v1.delete_namespaced_pod("kept", "default", body=client.V1DeleteOptions(dry_run=["All"]))
    assert v1.read_namespaced_pod("kept", "default").metadata.deletion_timestamp is None
    with pytest.raises(ApiException) as e:
        v1.delete_namespaced_pod("kept", "default", body=client.V1DeleteOptions(dry_run=["Some"]))
    assert e.value.status == 400 and "dryRun: Unsupported value" in json.loads(e.value.body)["message"]
    v1.delete_namespaced_pod("kept", "default", body=client.V1DeleteOptions())
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_pod("kept", "default")
    assert e.value.status == 404


def test_eviction_deletes_the_pod_with_its_delete_options(v1: client.CoreV1Api) -> None:
    """pods/eviction as `kubectl drain` and the Python client send it (policy/v1): no
    PodDisruptionBudget can refuse, so it is the pod's deletion, graceful for a bound pod."""
    def eviction(name: str, **opts: Any) -> client.V1Eviction:
        return client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace="default"),
                                 delete_options=client.V1DeleteOptions(**opts) if opts else None)

    v1.create_namespaced_pod("default", pod("ev"))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "ev"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}
    v1.create_namespaced_pod_binding("ev", "default", binding, _preload_content=False)
    v1.create_namespaced_pod_eviction("ev", "default", eviction("ev", dry_run=["All"]))
    assert v1.read_namespaced_pod("ev", "default").metadata.deletion_timestamp is None  # a dry run
    _, code, _ = v1.create_namespaced_pod_eviction_with_http_info("ev", "default", eviction("ev", grace_period_seconds=7))
    assert code == 201
    marked = v1.read_namespaced_pod("ev", "default")  # bound: the node stops it, then removes it
    assert marked.metadata.deletion_timestamp is not None and marked.metadata.deletion_grace_period_seconds == 7

    v1.create_namespaced_pod("default", pod("loose"))  # unbound: gone at once
    v1.create_namespaced_pod_eviction("loose", "default", eviction("loose"))
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_pod("loose", "default")
    assert e.value.status == 404
    for name, body, code in (("loose", eviction("loose"), 404), ("ev", eviction("other"), 400)):
        with pytest.raises(ApiException) as e:
            v1.create_namespaced_pod_eviction(name, "default", body)
        assert e.value.status == code, e.value.body
    assert json.loads(e.value.body)["message"] == "name in URL does not match name in Eviction object"


# --------------------------------------------------------------------------- rbac objects
def role(name: str, rules: list[Obj]) -> Obj:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules}


def test_rbac_objects_through_the_client(v1: client.CoreV1Api) -> None:
    """Roles, ClusterRoles and their bindings are stored, defaulted and validated as kube does:
    names with colons, a binding's apiGroups defaulted, a bad rule and a changed roleRef 422
    naming the field."""
    rbac = client.RbacAuthorizationV1Api(v1.api_client)
    v1.create_namespace({"metadata": {"name": "team"}})
    r = rbac.create_namespaced_role("team", role("pod-reader", [
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]))
    assert r.rules[0].resources == ["pods", "pods/log"] and r.metadata.namespace == "team"
    cr = rbac.create_cluster_role({"metadata": {"name": "netplane:node-reader"},
                                   "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
                                             {"nonResourceURLs": ["/healthz", "/logs/*"], "verbs": ["get"]}]})
    assert cr.metadata.name == "netplane:node-reader" and cr.rules[1].non_resource_urls == ["/healthz", "/logs/*"]
    b = rbac.create_namespaced_role_binding("team", {
        "metadata": {"name": "read-pods"}, "roleRef": {"kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "default"}]})
    assert b.role_ref.api_group == "rbac.authorization.k8s.io"  # defaulted, and a User's subject's too
    assert [(s.kind, s.api_group) for s in b.subjects] == [("User", "rbac.authorization.k8s.io"), ("ServiceAccount", None)]

    def invalid(call: Any) -> list[str]:
        with pytest.raises(ApiException) as e:
            call()
        assert e.value.status == 422, e.value.body
        return [c["field"] for c in json.loads(e.value.body)["details"]["causes"]]

    assert invalid(lambda: rbac.create_namespaced_role("team", role("r", [{"resources": ["pods"], "verbs": ["get"]}]))) \
        == ["rules[0].apiGroups"]
    assert invalid(lambda: rbac.create_namespaced_role("team", role("r", [
        {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]))) == ["rules[0].nonResourceURLs"]
    assert invalid(lambda: rbac.create_cluster_role_binding({
        "metadata": {"name": "x"}, "roleRef": {"kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "default"}, {"kind": "Robot", "name": "r2"}]})) \
        == ["roleRef.kind", "subjects[0].namespace", "subjects[1].kind"]
    assert invalid(lambda: rbac.create_namespaced_role("team", role("a/b", []))) == ["metadata.name"]
    assert invalid(lambda: rbac.patch_namespaced_role_binding(
        "read-pods", "team", {"roleRef": {"kind": "ClusterRole", "name": "view", "apiGroup": "rbac.authorization.k8s.io"}})) \
        == ["roleRef"]
    # subjects may change (a strategic merge patch replaces the list: it has no merge key)
    b = rbac.patch_namespaced_role_binding("read-pods", "team", {"subjects": [{"kind": "Group", "name": "devs"}]})
    assert [(s.kind, s.name) for s in b.subjects] == [("Group", "devs")]
    assert [r.metadata.name for r in rbac.list_role_binding_for_all_namespaces().items] == ["read-pods"]
    rbac.delete_cluster_role("netplane:node-reader")
    with pytest.raises(ApiException) as e:
        rbac.read_cluster_role("netplane:node-reader")
    assert e.value.status == 404 and json.loads(e.value.body)["details"]["group"] == "rbac.authorization.k8s.io"


def test_rbac_decides_who_may_do_what(v1: client.CoreV1Api, api: APIServer, tmp_path: Path) -> None:
    """kube's RBAC: a user with no binding may only discover; a RoleBinding grants its role in
    its namespace only; a user may grant only what they hold (no escalation); the bootstrap
    roles are stored at start; non-resource URLs are authorized too."""
    rbac = client.RbacAuthorizationV1Api(v1.api_client)
    view = rbac.read_cluster_role("view")  # stored at start, aggregated from system:aggregate-to-view
    assert view.metadata.labels["kubernetes.io/bootstrapping"] == "rbac-defaults" and view.aggregation_rule
    assert {b.metadata.name for b in rbac.list_cluster_role_binding().items} >= {
        "cluster-admin", "system:discovery", "system:basic-user", "netplane:read-only"}
    v1.create_namespace({"metadata": {"name": "team"}})
    jane_c = client_for(kubeconfig_file(api, tmp_path, user="jane", token=True))
    jane = client.CoreV1Api(jane_c)
    jane_rbac = client.RbacAuthorizationV1Api(jane_c)
    wait_for(lambda: accepted(lambda: client.CoreApi(jane_c).get_api_versions()), what="jane's token read")

    def status(call: Any) -> tuple[int, str]:
        try:
            call()
            return 200, ""
        except ApiException as e:
            return e.status, json.loads(e.body)["message"]

    assert status(lambda: jane.list_namespaced_pod("team")) == (403, ('pods is forbidden: User "jane" cannot list '
                                                                 'resource "pods" in API group "" in the namespace "team"'))
    # a second token for jane (raw HTTP), read within a second: then the path is refused by RBAC
    token = kc.make(api.config.state_dir, user="jane", token=True)["users"][0]["user"]["token"]
    code, body = wait_for(lambda: (r := raw(api, "/metrics", token=token))[0] != 401 and r, what="the token read")
    assert (code, body["message"]) == (403, 'forbidden: User "jane" cannot get path "/metrics"')
    # the admin acting as jane (kubectl --as jane): jane's rights, not the admin's
    as_jane = client_for(kubeconfig_file(api, tmp_path))
    as_jane.set_default_header("Impersonate-User", "jane")
    assert status(lambda: client.CoreV1Api(as_jane).list_namespaced_pod("team"))[0] == 403
    who = client.AuthenticationV1Api(as_jane).create_self_subject_review(client.V1SelfSubjectReview())
    assert who.status.user_info.username == "jane"
    jane_c.set_default_header("Impersonate-User", "admin")  # and jane may not act as anyone
    assert status(lambda: jane.list_namespaced_pod("team")) == (403, (
        'users "admin" is forbidden: User "jane" cannot impersonate resource "users" in API group "" at the '
        'cluster scope'))
    del jane_c.default_headers["Impersonate-User"]
    rbac.create_namespaced_role_binding("team", {
        "metadata": {"name": "jane-admin"}, "roleRef": {"kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "jane"}]})
    wait_for(lambda: status(lambda: jane.list_namespaced_pod("team"))[0] == 200, what="the binding in force")
    assert status(lambda: client.CoreV1Api(as_jane).list_namespaced_pod("team"))[0] == 200
    as_jane.close()
    assert status(lambda: jane.list_namespaced_pod("default"))[0] == 403  # its namespace only
    assert status(lambda: jane.list_node())[0] == 403  # cluster-scoped: a RoleBinding never grants it
    jane.create_namespaced_config_map("team", {"metadata": {"name": "c"}})
    # she may grant what she holds there, and not more
    jane_rbac.create_namespaced_role("team", role("pod-reader", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]))
    code, message = status(lambda: jane_rbac.create_namespaced_role("team", role("node-killer", [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["delete"]}])))
    assert code == 403 and message.startswith('roles.rbac.authorization.k8s.io "node-killer" is forbidden: user "jane" '
                                              '(groups=["system:authenticated"]) is attempting to grant RBAC '
                                              'permissions not currently held:'), message
    assert '{APIGroups:[""], Resources:["nodes"], Verbs:["delete"]}' in message
    code, message = status(lambda: jane_rbac.create_namespaced_role_binding("team", {
        "metadata": {"name": "bob-root"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "User", "name": "bob"}]}))
    assert code == 403 and "is attempting to grant RBAC permissions not currently held" in message, message
    jane_rbac.create_namespaced_role_binding("team", {
        "metadata": {"name": "bob-view"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "bob"}]})
    code, message = status(lambda: jane_rbac.create_namespaced_role_binding("team", {
        "metadata": {"name": "ghost"}, "roleRef": {"kind": "ClusterRole", "name": "no-such-role"},
        "subjects": [{"kind": "User", "name": "bob"}]}))
    assert (code, message) == (403, ('rolebindings.rbac.authorization.k8s.io "ghost" is forbidden: '
                                    'clusterrole.rbac.authorization.k8s.io "no-such-role" not found'))
    # a patch is judged by what it makes: adding nodes to her own Role is refused
    code, message = status(lambda: jane_rbac.patch_namespaced_role("pod-reader", "team", {"rules": [
        {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get"]}]}))
    assert code == 403 and "Resources:[\"nodes\"]" in message, message
    # asking about someone else: SubjectAccessReview (the admin), LocalSubjectAccessReview (jane, admin in team)
    authz = client.AuthorizationV1Api(v1.api_client)
    sar = authz.create_subject_access_review(client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user="bob", resource_attributes=client.V1ResourceAttributes(verb="list", resource="pods", namespace="team"))))
    assert sar.status.allowed and sar.status.reason == 'RBAC: allowed by RoleBinding "bob-view/team" of ClusterRole ' \
                                                      '"view" to User "bob"'
    assert status(lambda: client.AuthorizationV1Api(jane_c).create_subject_access_review(client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(user="bob", resource_attributes=client.V1ResourceAttributes(
            verb="list", resource="pods")))))[0] == 403  # cluster-wide questions are the admin's
    local = client.AuthorizationV1Api(jane_c).create_namespaced_local_subject_access_review("team", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
        "spec": {"user": "bob", "resourceAttributes": {"verb": "delete", "resource": "pods", "namespace": "team"}}})
    assert local.status.allowed is False and local.metadata.namespace == "team"
    assert status(lambda: authz.create_namespaced_local_subject_access_review("team", {
        "spec": {"user": "bob", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "other"}}})) == \
        (400, "spec.resourceAttributes.namespace must match namespace: team")
    rbac.delete_namespaced_role_binding("jane-admin", "team")
    wait_for(lambda: status(lambda: jane.list_namespaced_pod("team"))[0] == 403, what="the binding gone")
    jane_c.close()


# --------------------------------------------------------------------------- discovery and errors
def test_discovery(v1: client.CoreV1Api, api: APIServer) -> None:
    res = v1.get_api_resources()
    by_name = {r.name: r for r in res.resources}
    assert by_name["pods"].short_names == ["po"] and by_name["pods"].namespaced
    assert by_name["nodes"].short_names == ["no"] and not by_name["nodes"].namespaced
    assert {"pods/status", "pods/log", "pods/binding", "pods/eviction", "replicationcontrollers/scale",
            "replicationcontrollers/status"} <= set(by_name)
    assert by_name["replicationcontrollers/scale"].group == "autoscaling"
    assert [n for n, r in by_name.items() if r.categories == ["all"]] == ["pods", "replicationcontrollers", "services"]
    assert (by_name["pods/eviction"].group, by_name["pods/eviction"].version,
            by_name["pods/eviction"].kind, by_name["pods/eviction"].verbs) == ("policy", "v1", "Eviction", ["create"])
    assert set(by_name["pods"].verbs) >= {"create", "delete", "deletecollection", "get", "list", "patch",
                                          "update", "watch"}
    token = add_token(api.config.state_dir / "tokens.csv", "alice", ["system:masters"])
    time.sleep(1.1)
    code, groups = raw(api, "/apis", token=token)  # the self reviews' groups (kubectl auth), the node Leases' and kubectl top's
    assert (code, [g["name"] for g in groups["groups"]]) == \
        (200, ["authorization.k8s.io", "authentication.k8s.io", "rbac.authorization.k8s.io", "policy",
               "coordination.k8s.io", "metrics.k8s.io"])
    code, metrics = raw(api, "/apis/metrics.k8s.io/v1beta1", token=token)
    assert code == 200 and {r["name"]: r["kind"] for r in metrics["resources"]} == \
        {"nodes": "NodeMetrics", "pods": "PodMetrics"}
    code, body = raw(api, "/api/v1/frobs", token=token)
    assert code == 404 and body["reason"] == "NotFound"
    code, body = raw(api, "/api/v1/namespaces/default/pods", token=token, method="PUT", body={})
    assert code == 405 and body["reason"] == "MethodNotAllowed"
    code, body = raw(api, "/api/v1/namespaces/default/pods?labelSelector=a%20in", token=token)
    assert code == 400 and body["reason"] == "BadRequest"


@contextlib.contextmanager
def node_agent_stand_in(v1: client.CoreV1Api, api: APIServer, handler: type[BaseHTTPRequestHandler],
                        pod_name: str) -> Iterator[None]:
    """`handler` serving as node n1's agent on loopback (the server finds it from the Node:
    InternalIP + daemonEndpoints), and pod `pod_name` bound to n1. Its TLS is the agent's own
    (`nodetls`): a self-signed certificate announced in the Node, and client certificates checked
    against the CAs published in etcd, where the API server put its own at start."""
    from orchestrator.node import nodetls
    from orchestrator.node.server import TLSHTTPServer

    pair = nodetls.serving_pair(api.config.state_dir / "n1", "n1", "127.0.0.1")
    cas = nodetls.ClientCAs(api.objects.store, api.objects.keys)
    cas.refresh()
    server_class = type("StandIn", (TLSHTTPServer,), {"tls": nodetls.ServerTLS(pair, cas)})
    agent = server_class(("127.0.0.1", 0), handler)
    threading.Thread(target=agent.serve_forever, daemon=True).start()
    try:
        v1.create_node({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": "n1", "annotations": {nodetls.CERT_ANNOTATION: nodetls.announced(pair)}},
                        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                   "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.server_address[1]}}}})
        p = pod(pod_name)
        p["spec"]["nodeName"] = "n1"
        v1.create_namespaced_pod("default", p)
        yield
    finally:
        agent.shutdown()
        agent.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    def peer(self) -> str:
        """The CN of the client certificate the connection was made with."""
        from orchestrator.apiserver.auth import user_from_peercert

        user = user_from_peercert(self.connection.getpeercert())  # type: ignore[attr-defined]
        return user.name if user else ""

    def reply(self, ctype: str, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_pod_log_is_proxied_to_the_node(v1: client.CoreV1Api, api: APIServer) -> None:
    """A stand-in for the node agent's log endpoint: the server streams its answer through."""
    asked: list[tuple[str, str]] = []

    class Agent(QuietHandler):
        def do_GET(self) -> None:
            asked.append((self.path, self.peer()))
            self.reply("text/plain", b"line 1\nline 2\n")

    with node_agent_stand_in(v1, api, Agent, "logger"):
        text = v1.read_namespaced_pod_log("logger", "default", tail_lines=2)
        assert text == "line 1\nline 2\n"
        # over TLS, as the API server's kubelet client (its CA published for the node)
        assert asked == [("/containerLogs/default/logger/c?tailLines=2", "kube-apiserver-kubelet-client")]
        # a Node announcing another certificate than its agent serves: nothing is asked of it
        from orchestrator.apiserver import certs
        from orchestrator.node import nodetls

        other = nodetls.announced(certs.self_signed_server("n1@netplane-node", ["127.0.0.1"]))
        v1.patch_node("n1", {"metadata": {"annotations": {nodetls.CERT_ANNOTATION: other}}})
        with pytest.raises(ApiException) as e:
            v1.read_namespaced_pod_log("logger", "default")
        assert e.value.status == 500 and "presented a certificate other than the one its Node announces" in \
            json.loads(e.value.body)["message"], e.value.body
        assert len(asked) == 1
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_pod_log("logger", "default", container="nope")
    assert e.value.status == 400


def test_metrics_api_reads_the_nodes_summaries(v1: client.CoreV1Api, api: APIServer) -> None:
    """kubectl top's metrics.k8s.io: the server asks the node's /stats/summary (a stand-in
    agent here; the lab's kubectl top reads real ones) and answers NodeMetrics and PodMetrics
    in metrics-server's quantities, through the official client's custom-objects API."""
    summary = {"node": {"nodeName": "n1", "cpu": {"time": "2026-12-03T08:00:00Z", "usageNanoCores": 250_000_000,
                                                 "windowSeconds": 1.5},
                        "memory": {"time": "2026-12-03T08:00:00Z", "workingSetBytes": 3 << 20}},
               "pods": [{"podRef": {"name": "topped", "namespace": "default", "uid": "u"},
                         "containers": [{"name": "c", "cpu": {"time": "2026-12-03T08:00:00Z",
                                                              "usageNanoCores": 1_234_567, "windowSeconds": 1.0},
                                         "memory": {"workingSetBytes": 12345}}]},
                        {"podRef": {"name": "elsewhere", "namespace": "default", "uid": "v"},
                         "containers": [{"name": "c", "cpu": {"usageNanoCores": 1}, "memory": {"workingSetBytes": 1}}]}]}
    asked: list[str] = []

    class Agent(QuietHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.reply("application/json", json.dumps(summary).encode())

    with node_agent_stand_in(v1, api, Agent, "topped"):
        summary["pods"][0]["podRef"]["uid"] = v1.read_namespaced_pod("topped", "default").metadata.uid
        m = client.CustomObjectsApi(v1.api_client)
        nodes = m.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
        assert [(n["metadata"]["name"], n["usage"], n["window"]) for n in nodes["items"]] == \
            [("n1", {"cpu": "250m", "memory": "3Mi"}, "1.5s")]
        pods = m.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods")
        # "elsewhere" is in n1's summary but no such pod is bound to n1: not served
        assert [(p["metadata"]["name"], p["metadata"]["labels"], p["containers"]) for p in pods["items"]] == \
            [("topped", {"app": "web"}, [{"name": "c", "usage": {"cpu": "1234567n", "memory": "12345"}}])]
        assert m.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods",
                                               label_selector="app=db")["items"] == []
        one = m.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods", "topped")
        assert one["kind"] == "PodMetrics" and one["window"] == "1s"
        assert set(asked) == {"/stats/summary"}
        summary["pods"][0]["podRef"]["uid"] = "an-earlier-pod"  # the node measured another pod of that name
        assert m.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods")["items"] == []
        v1.create_namespaced_pod("default", pod("unbound"))  # no node yet: no metrics
        with pytest.raises(ApiException) as e:
            m.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods", "unbound")
        assert e.value.status == 404 and json.loads(e.value.body)["message"] == \
            'podmetrics.metrics.k8s.io "default/unbound" not found'
    # the agent is gone: the node is left out, as metrics-server leaves out a node it cannot scrape
    assert m.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")["items"] == []


def test_pod_exec_over_a_websocket(v1: client.CoreV1Api, api: APIServer) -> None:
    """pods/exec as the official client streams it (v4.channel.k8s.io), relayed onto the node
    agent's streaming exec (a stand-in speaking `orchestrator.node.execstream`): output on its
    channels as it comes, stdin through, and the closing Status carrying the exit code."""
    from urllib.parse import parse_qs, urlsplit

    from kubernetes.stream import stream

    from orchestrator.node import execstream

    asked: list[tuple[str, list[str], str]] = []

    class Agent(QuietHandler):
        def do_POST(self) -> None:
            u = urlsplit(self.path)
            q = parse_qs(u.query)
            cmd = q["command"]
            asked.append((u.path, cmd, q["stdin"][0]))
            assert self.peer() == "kube-apiserver-kubelet-client"
            assert self.headers["Upgrade"] == execstream.UPGRADE
            self.send_response(101)
            self.send_header("Upgrade", execstream.UPGRADE)
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            code = 0
            if cmd[0] == "exit":
                self.wfile.write(execstream.frame(execstream.STDOUT, b"out\n"))
                self.wfile.write(execstream.frame(execstream.STDERR, b"err\n"))
                code = int(cmd[1])
            elif cmd[0] == "cat":  # echo stdin until it closes
                while (got := execstream.read_frame(self.rfile)) is not None and got[0] == execstream.STDIN:
                    self.wfile.write(execstream.frame(execstream.STDOUT, got[1]))
                    self.wfile.flush()
                return
            else:
                self.wfile.write(execstream.frame(execstream.STDOUT, f"ran {' '.join(cmd)}\n".encode()))
            self.wfile.write(execstream.frame(execstream.STATUS, json.dumps({"exitCode": code}).encode()))
            self.wfile.flush()
            self.close_connection = True

    with node_agent_stand_in(v1, api, Agent, "execd"):
        out = stream(v1.connect_get_namespaced_pod_exec, "execd", "default", command=["echo", "hi"],
                     stdout=True, stderr=True, stdin=False, tty=False)
        assert out == "ran echo hi\n"
        assert asked == [("/exec/default/execd/c", ["echo", "hi"], "false")]
        ws = stream(v1.connect_get_namespaced_pod_exec, "execd", "default", command=["exit", "3"],
                    stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
        ws.run_forever(timeout=10)
        assert (ws.read_stdout(), ws.read_stderr()) == ("out\n", "err\n")  # each on its own channel
        assert ws.returncode == 3  # from the Status on the error channel: NonZeroExitCode, ExitCode 3
        ws = stream(v1.connect_get_namespaced_pod_exec, "execd", "default", command=["cat"],
                    stdout=True, stderr=True, stdin=True, tty=False, _preload_content=False)
        ws.write_stdin("ping")
        got = ""
        deadline = time.monotonic() + 10
        while got != "ping" and time.monotonic() < deadline:
            ws.update(timeout=1)
            got += ws.read_stdout(timeout=0.1) if ws.peek_stdout() else ""
        assert got == "ping"
        ws.close()
        token = kc.make(api.config.state_dir, user="tok", groups=["system:masters"],
                        token=True)["users"][0]["user"]["token"]
        ro_token = kc.make(api.config.state_dir, user="viewer", groups=["readonly"],
                           token=True)["users"][0]["user"]["token"]
        wait_for(lambda: raw(api, "/api/v1/namespaces/default/pods", token=ro_token)[0] == 200, 10,
                 "the new tokens read from the token file")
        # not a WebSocket (what kubectl's SPDY fallback sends): a 400 naming what is served
        path = "/api/v1/namespaces/default/pods/execd/exec?command=ls"
        code, body = raw(api, path + "&stdout=true", token=token, method="POST")
        assert code == 400 and "WebSocket upgrade" in body["message"], body
        # a read-only user may not exec, even over a GET
        code, body = raw(api, path, token=ro_token)
        assert code == 403 and body["reason"] == "Forbidden", body
        # pods/portforward: WebSocket tunnels only (kubectl's SPDY fallback is told so); a write
        forward = "/api/v1/namespaces/default/pods/execd/portforward"
        code, body = raw(api, forward, token=token, method="POST")
        assert code == 400 and "WebSocket tunnel (SPDY/3.1+portforward.k8s.io, or v4.channel.k8s.io" in body["message"], body
        code, body = raw(api, forward, token=ro_token)
        assert code == 403 and body["reason"] == "Forbidden", body


def test_pod_attach_over_a_websocket(v1: client.CoreV1Api, api: APIServer) -> None:
    """pods/attach as the official client streams it, relayed onto the node agent's attach (a
    stand-in): stdin through, output back, and Success at the end whatever the container's exit
    code (kubelet's attach; kubectl run reads the code from the pod's status)."""
    from urllib.parse import parse_qs, urlsplit

    from kubernetes.stream import stream

    from orchestrator.node import execstream

    asked: list[tuple[str, dict[str, list[str]]]] = []

    class Agent(QuietHandler):
        def do_POST(self) -> None:
            u = urlsplit(self.path)
            asked.append((u.path, parse_qs(u.query)))
            assert self.headers["Upgrade"] == execstream.UPGRADE and self.peer() == "kube-apiserver-kubelet-client"
            self.send_response(101)
            self.send_header("Upgrade", execstream.UPGRADE)
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.write(execstream.frame(execstream.STDERR, b"attached\n"))
            self.wfile.flush()
            while (got := execstream.read_frame(self.rfile)) is not None and got[0] == execstream.STDIN:
                self.wfile.write(execstream.frame(execstream.STDOUT, got[1]))
                self.wfile.flush()
                if got[1] == b"bye":  # the container exits 5
                    self.wfile.write(execstream.frame(execstream.STATUS, b'{"exitCode": 5}'))
                    self.wfile.flush()
                    self.close_connection = True
                    return

    with node_agent_stand_in(v1, api, Agent, "attached"):
        ws = stream(v1.connect_get_namespaced_pod_attach, "attached", "default", stdin=True, stdout=True,
                    stderr=True, tty=False, _preload_content=False)
        ws.write_stdin("bye")
        ws.run_forever(timeout=10)
        assert (ws.read_stdout(), ws.read_stderr()) == ("bye", "attached\n")
        assert ws.returncode == 0  # Success: an attach does not end with the container's code
        assert asked == [("/attach/default/attached/c", {"stdin": ["true"]})]
        token = kc.make(api.config.state_dir, user="viewer", groups=["readonly"], token=True)["users"][0]["user"]["token"]
        wait_for(lambda: raw(api, "/api/v1/namespaces/default/pods", token=token)[0] == 200, 10,
                 "the new token read from the token file")
        code, body = raw(api, "/api/v1/namespaces/default/pods/attached/attach?stdout=true", token=token)
        assert code == 403 and body["reason"] == "Forbidden", body  # attach is a write, as exec is


def test_events_list_by_involved_object(v1: client.CoreV1Api) -> None:
    ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1"},
          "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u1"},
          "reason": "Scheduled", "message": "ok", "type": "Normal",
          "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z",
          "count": 1, "source": {"component": "test"}}
    v1.create_namespaced_event("default", ev)
    v1.create_namespaced_event("default", {**ev, "metadata": {"name": "db.1"},
                                           "involvedObject": {**ev["involvedObject"], "name": "db"}})
    found = v1.list_namespaced_event("default", field_selector="involvedObject.name=web,involvedObject.kind=Pod")
    assert [e.metadata.name for e in found.items] == ["web.1"]


def test_a_write_through_the_api_is_the_clis_write(v1: client.CoreV1Api, api: APIServer) -> None:
    """What the API stores is what `netplane get` reads (one storage layer)."""
    v1.create_namespaced_replication_controller("default", rc("web", 3))
    stored = api.objects.get(REPLICATION_CONTROLLER, "web", "default")
    assert stored is not None and stored["spec"]["replicas"] == 3
    assert stored["spec"]["template"]["spec"]["restartPolicy"] == "Always"


# --------------------------------------------------------------------------- server-side apply
def test_server_side_apply_with_the_python_client(v1: client.CoreV1Api) -> None:
    """application/apply-patch+yaml as the official client sends it: created with its managed
    fields, merged on a second apply, a conflict (409, FieldManagerConflict per field) with a
    field another writer took over, force, and what a manager stops applying removed."""
    apply = "application/apply-patch+yaml"
    cfg = rc("ssa", replicas=2)
    cfg["metadata"]["labels"] = {"app": "ssa", "tier": "front"}
    made = v1.patch_namespaced_replication_controller("ssa", "default", cfg, field_manager="ci", _content_type=apply)
    assert made.spec.replicas == 2 and made.status.replicas == 0
    (entry,) = made.metadata.managed_fields
    assert (entry.manager, entry.operation, entry.fields_type) == ("ci", "Apply", "FieldsV1")
    assert entry.fields_v1["f:spec"]["f:replicas"] == {}
    # another writer (a merge patch naming its manager) takes replicas over
    v1.patch_namespaced_replication_controller("ssa", "default", {"spec": {"replicas": 5}}, field_manager="hpa")
    with pytest.raises(ApiException) as e:
        v1.patch_namespaced_replication_controller("ssa", "default", cfg, field_manager="ci", _content_type=apply)
    body = json.loads(e.value.body)
    assert e.value.status == 409 and body["reason"] == "Conflict", body
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "hpa" using v1: .spec.replicas'
    assert body["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "hpa" using v1',
                                          "field": ".spec.replicas"}]
    # the same value co-owns; force takes it; a label no longer applied goes
    del cfg["metadata"]["labels"]["tier"]
    cfg["spec"]["replicas"] = 3
    got = v1.patch_namespaced_replication_controller("ssa", "default", cfg, field_manager="ci", force=True,
                                                     _content_type=apply)
    assert got.spec.replicas == 3 and got.metadata.labels == {"app": "ssa"}
    assert {m.manager for m in got.metadata.managed_fields} == {"ci"}  # hpa owned nothing else
    # an apply must name its manager
    with pytest.raises(ApiException) as e:
        v1.patch_namespaced_replication_controller("ssa", "default", cfg, _content_type=apply)
    assert e.value.status == 400 and "fieldManager is required" in json.loads(e.value.body)["message"]
    # a dry run changes nothing; an apply of a pod that is not there creates it, Pending
    cfg["spec"]["replicas"] = 9
    dry = v1.patch_namespaced_replication_controller("ssa", "default", cfg, field_manager="ci", dry_run="All",
                                                     _content_type=apply)
    assert dry.spec.replicas == 9 and v1.read_namespaced_replication_controller("ssa", "default").spec.replicas == 3
    p = v1.patch_namespaced_pod("solo", "default", pod("solo"), field_manager="ci", _content_type=apply)
    assert p.status.phase == "Pending" and p.metadata.managed_fields[0].manager == "ci"


def test_ephemeral_containers_are_added_through_their_subresource(v1: client.CoreV1Api) -> None:
    """pods/ephemeralcontainers, as `kubectl debug` patches it: added (strategic merge by name),
    never changed or removed; fields an ephemeral container may not have are refused; the main
    resource may not touch them."""
    v1.create_namespaced_pod("default", pod("dbg"))
    debugger = {"name": "debugger", "image": "busybox", "command": ["sh"], "stdin": True, "tty": True,
                "targetContainerName": "c"}
    got = v1.patch_namespaced_pod_ephemeralcontainers("dbg", "default", {"spec": {"ephemeralContainers": [debugger]}})
    assert [(c.name, c.target_container_name) for c in got.spec.ephemeral_containers] == [("debugger", "c")]
    more = v1.patch_namespaced_pod_ephemeralcontainers(
        "dbg", "default", {"spec": {"ephemeralContainers": [{"name": "second", "image": "busybox"}]}})
    assert sorted(c.name for c in more.spec.ephemeral_containers) == ["debugger", "second"]  # merged by name

    def refused(patch: Obj) -> str:
        with pytest.raises(ApiException) as e:
            v1.patch_namespaced_pod_ephemeralcontainers("dbg", "default", patch,
                                                        _content_type="application/merge-patch+json")
        assert e.value.status == 422, e.value.body
        return str(json.loads(e.value.body)["message"])

    cur = v1.read_namespaced_pod("dbg", "default").spec.ephemeral_containers
    bad = [client.ApiClient().sanitize_for_serialization(c) for c in cur]
    assert 'existing ephemeral containers "second" may not be removed' in refused(
        {"spec": {"ephemeralContainers": [c for c in bad if c["name"] == "debugger"]}})
    assert 'existing ephemeral containers "debugger" may not be changed' in refused(
        {"spec": {"ephemeralContainers": [{**c, "image": "other"} if c["name"] == "debugger" else c for c in bad]}})
    msg = refused({"spec": {"ephemeralContainers": [*bad, {"name": "p", "image": "x", "ports": [{"containerPort": 1}],
                                                            "targetContainerName": "nope"}]}})
    assert "spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container" in msg, msg
    assert 'spec.ephemeralContainers[2].targetContainerName: Not found: "nope"' in msg, msg
    with pytest.raises(ApiException) as e:  # not through the pod itself
        v1.patch_namespaced_pod("dbg", "default", {"spec": {"ephemeralContainers": [*bad, {"name": "z", "image": "x"}]}})
    assert e.value.status == 422 and "pod updates may not change fields" in json.loads(e.value.body)["message"]


def test_node_leases_are_the_agents_heartbeats(v1: client.CoreV1Api, api: APIServer, store: EtcdStore,
                                               keys: Keys) -> None:
    """coordination.k8s.io/v1 Leases in kube-node-lease: each node agent's heartbeat key, read
    through the official client's CoordinationV1Api (kubectl describe node reads the same)."""
    from datetime import UTC, datetime, timedelta

    from orchestrator import heartbeat

    lease_id = store.grant(40)
    try:
        since = datetime(2026, 12, 3, 8, 0, 0, 123456, UTC)
        heartbeat.renew(store, keys, "n1", lease=lease_id, now=since + timedelta(seconds=5), duration=40, since=since)
        store.put(keys.node("n0"), heartbeat.encode(since), lease=lease_id)  # an older agent's value
        store.put(keys.nodes + "n2", b"{not json", lease=lease_id)  # logged and left out
        co = client.CoordinationV1Api(v1.api_client)
        le = co.read_namespaced_lease("n1", "kube-node-lease")
        assert (le.spec.holder_identity, le.spec.lease_duration_seconds, le.spec.renew_time) == \
            ("n1", 40, since + timedelta(seconds=5))
        assert le.metadata.creation_timestamp == since.replace(microsecond=0)
        kv = store.get(keys.node("n1"))
        assert kv is not None and le.metadata.resource_version == str(kv.mod_revision)
        assert [(x.metadata.name, x.spec.lease_duration_seconds) for x in co.list_namespaced_lease("kube-node-lease").items] \
            == [("n0", None), ("n1", 40)]
        assert [x.metadata.name for x in co.list_lease_for_all_namespaces().items] == ["n0", "n1"]
        assert co.list_namespaced_lease("default").items == []
        # a renewal is the same Lease, renewed
        heartbeat.renew(store, keys, "n1", lease=lease_id, now=since + timedelta(seconds=15), duration=40, since=since)
        again = co.read_namespaced_lease("n1", "kube-node-lease")
        assert again.spec.renew_time == since + timedelta(seconds=15) and again.metadata.uid == le.metadata.uid
        assert int(again.metadata.resource_version) > int(le.metadata.resource_version)
        for ns, name in (("kube-node-lease", "n2"), ("kube-node-lease", "nope"), ("default", "n1")):
            with pytest.raises(ApiException) as e:
                co.read_namespaced_lease(name, ns)
            assert e.value.status == 404 and f'leases.coordination.k8s.io \\"{name}\\" not found' in e.value.body
        with pytest.raises(ApiException) as e:
            co.create_namespaced_lease("kube-node-lease", {"metadata": {"name": "x"}, "spec": {}})
        assert e.value.status == 405
        # owned by its Node, as kubelet's Lease is, once the Node exists
        assert le.metadata.owner_references is None
        node = v1.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        owners = wait_for(lambda: co.read_namespaced_lease("n1", "kube-node-lease").metadata.owner_references,
                          what="the Lease's owner reference")
        assert [(o.api_version, o.kind, o.name, o.uid) for o in owners] == [("v1", "Node", "n1", node.metadata.uid)]
        v1.delete_node("n1")
    finally:
        store.revoke(lease_id)


def test_leases_for_leader_election_through_the_client(v1: client.CoreV1Api, api: APIServer, store: EtcdStore,
                                                       keys: Keys) -> None:
    """Stored Leases (every namespace but kube-node-lease): what leader election reads and
    writes. The official client's own LeaseLock elects one of two candidates; when the leader
    stops, the other takes over once the Lease's duration has passed."""
    from datetime import UTC, datetime, timedelta

    from kubernetes.leaderelection import electionconfig, leaderelection
    from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

    from orchestrator import heartbeat

    co = client.CoordinationV1Api(v1.api_client)
    group = co.get_api_resources()
    assert [(r.name, r.namespaced, sorted(r.verbs)) for r in group.resources] == \
        [("leases", True, ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])]
    renewed = datetime(2026, 12, 7, 8, 0, 0, 250000, UTC)
    made = co.create_namespaced_lease("default", {"metadata": {"name": "lock"}, "spec": {
        "holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": renewed.isoformat(),  # +00:00
        "strategy": "OldestEmulationVersion"}})
    assert made.spec.renew_time == renewed and made.spec.strategy is None  # its feature gate is off in 1.33
    token = add_token(api.config.state_dir / "tokens.csv", "reader", ["readonly"])  # netplane:cluster-reader
    code, body = wait_for(lambda: (r := raw(api, "/apis/coordination.k8s.io/v1/namespaces/default/leases/lock",
                                            token=token))[0] != 401 and r, what="the new token")
    assert code == 200 and body["spec"]["renewTime"] == "2026-12-07T08:00:00.250000Z"  # MicroTime's wire form
    # an update at a stale resourceVersion is a Conflict, as a losing candidate's is
    made.spec.holder_identity = "b"
    co.replace_namespaced_lease("lock", "default", made)
    with pytest.raises(ApiException) as e:
        co.replace_namespaced_lease("lock", "default", made)
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "Conflict"
    with pytest.raises(ApiException) as e:
        co.patch_namespaced_lease("lock", "default", {"spec": {"leaseDurationSeconds": 0}})
    assert e.value.status == 422 and "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0" \
        in json.loads(e.value.body)["message"]
    # every namespace's: the stored ones, then the node heartbeats'
    lease_id = store.grant(40)
    try:
        heartbeat.renew(store, keys, "n1", lease=lease_id, now=renewed, duration=40, since=renewed - timedelta(1))
        assert [(x.metadata.namespace, x.metadata.name) for x in co.list_lease_for_all_namespaces().items] == \
            [("default", "lock"), ("kube-node-lease", "n1")]
    finally:
        store.revoke(lease_id)
    co.delete_namespaced_lease("lock", "default")
    assert co.list_namespaced_lease("default").items == []

    # leader election with the client's LeaseLock; each candidate leads until told to stop
    started = {"a": threading.Event(), "b": threading.Event()}
    stop = {"a": threading.Event(), "b": threading.Event()}
    stopped = {"a": threading.Event(), "b": threading.Event()}

    def candidate(name: str) -> threading.Thread:
        lock = LeaseLock("controller", "default", name)
        lock.api_instance = co  # LeaseLock makes its own client from the default configuration

        def lead() -> None:
            started[name].set()
            stop[name].wait(60)
            raise RuntimeError(f"{name} stops leading")  # the renew loop ends, and the Lease is not renewed

        cfg = electionconfig.Config(lock, lease_duration=3, renew_deadline=2, retry_period=1,
                                    onstarted_leading=lead, onstopped_leading=stopped[name].set)
        t = threading.Thread(target=leaderelection.LeaderElection(cfg).run, daemon=True)
        t.start()
        return t

    threads = [candidate("a")]
    try:
        assert started["a"].wait(10)
        threads.append(candidate("b"))
        time.sleep(2.5)  # b sees a renewing: no second leader
        assert not started["b"].is_set()
        assert co.read_namespaced_lease("controller", "default").spec.holder_identity == "a"
        stop["a"].set()
        assert stopped["a"].wait(10) and started["b"].wait(15)
        assert co.read_namespaced_lease("controller", "default").spec.holder_identity == "b"
    finally:
        for ev in stop.values():
            ev.set()
        for t in threads:
            t.join(15)
    assert not any(t.is_alive() for t in threads)


def test_request_metrics_count_what_clients_did(v1: client.CoreV1Api, api: APIServer) -> None:
    """/metrics: kube-apiserver's request counters, latency histogram and long-running gauge,
    after requests made with the official client, read with prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        c = v1.api_client
        r = c.call_api(*c.param_serialize("GET", "/metrics", auth_settings=["BearerToken"]))
        r.read()
        assert r.status == 200 and r.getheader("Content-Type").startswith("text/plain; version=0.0.4")
        kept = ("verb", "resource", "scope", "code", "subresource", "request_kind", "operation", "type")
        return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k in kept))): s.value
                for fam in text_string_to_metric_families(r.data.decode()) for s in fam.samples}

    v1.create_namespaced_pod("default", pod("metered"))
    v1.read_namespaced_pod("metered", "default")
    v1.patch_namespaced_pod("metered", "default", {"metadata": {"labels": {"m": "1"}}},
                            _content_type="application/merge-patch+json")
    with pytest.raises(ApiException):
        v1.read_namespaced_pod("nosuch", "default")
    v1.list_namespaced_pod("default")
    ended = threading.Event()

    def follow() -> None:
        for _ in watch.Watch().stream(v1.list_namespaced_pod, "default", timeout_seconds=3):
            pass
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    watching = (("resource", "pods"), ("scope", "namespace"), ("subresource", ""), ("verb", "WATCH"))
    m = wait_for(lambda: (s := scrape()).get(("apiserver_longrunning_requests", watching)) == 1 and s,
                 what="the open watch in apiserver_longrunning_requests")
    total = "apiserver_request_total"
    for verb, scope, code in (("POST", "namespace", "201"), ("GET", "resource", "200"), ("PATCH", "resource", "200"),
                              ("GET", "resource", "404"), ("LIST", "namespace", "200")):
        key = (total, (("code", code), ("resource", "pods"), ("scope", scope), ("subresource", ""), ("verb", verb)))
        assert m.get(key) == 1, (key, sorted(k for k in m if k[0] == total))
    gets = (("resource", "pods"), ("scope", "resource"), ("subresource", ""), ("verb", "GET"))
    assert m[("apiserver_request_duration_seconds_count", gets)] == 2
    assert m[("apiserver_current_inflight_requests", (("request_kind", "readOnly"),))] == 1  # this scrape
    assert m[("process_cpu_seconds_total", ())] > 0
    # the server's own etcd calls: the create's and patch's transactions, the GETs' ranges
    etcd = "etcd_request_duration_seconds_count"
    assert m[(etcd, (("operation", "txn"), ("type", "pods")))] >= 2, sorted(k for k in m if k[0] == etcd)
    assert m[(etcd, (("operation", "get"), ("type", "pods")))] >= 2
    assert ("etcd_request_errors_total", (("operation", "get"), ("type", "pods"))) not in m  # none failed
    assert ended.wait(10)
    after = scrape()
    assert after[("apiserver_longrunning_requests", watching)] == 0
    assert after[(total, (("code", "200"), *watching))] == 1
    code, _ = raw(api, "/metrics")  # no credentials: like every path but /healthz and /version
    assert code == 401


def test_watch_cache_metrics_follow_the_caches(v1: client.CoreV1Api, api: APIServer) -> None:
    """/metrics: the stored-object gauge and the watch caches' counters, against what the
    client wrote and what its watch received."""
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        c = v1.api_client
        r = c.call_api(*c.param_serialize("GET", "/metrics", auth_settings=["BearerToken"]))
        r.read()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(r.data.decode()) for s in fam.samples}

    pods_gr = (("group", ""), ("resource", "pods"))
    before = scrape()
    assert before[("apiserver_watch_cache_initializations_total", pods_gr)] == 1  # the first list
    assert before[("apiserver_storage_objects", (("resource", "leases.coordination.k8s.io"),))] == 0
    got: list[tuple[str, str]] = []
    ended = threading.Event()

    def follow() -> None:
        for ev in watch.Watch().stream(v1.list_namespaced_pod, "default", timeout_seconds=3):
            got.append((ev["type"], ev["object"].metadata.resource_version))
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    wait_for(lambda: scrape().get(("apiserver_longrunning_requests", (
        ("component", "apiserver"), ("group", ""), ("resource", "pods"), ("scope", "namespace"),
        ("subresource", ""), ("verb", "WATCH"), ("version", "v1")))) == 1, what="the watch open")
    for name in ("m1", "m2"):
        v1.create_namespaced_pod("default", pod(name))
    v1.delete_namespaced_pod("m1", "default")  # never scheduled: deleted at once
    assert ended.wait(10) and [t for t, _ in got] == ["ADDED", "ADDED", "DELETED"], got
    m = scrape()
    assert m[("apiserver_storage_objects", (("resource", "pods"),))] == 1
    assert m[("apiserver_watch_cache_events_received_total", pods_gr)] - \
        before.get(("apiserver_watch_cache_events_received_total", pods_gr), 0) == 3
    assert m[("apiserver_watch_cache_events_dispatched_total", pods_gr)] - \
        before.get(("apiserver_watch_cache_events_dispatched_total", pods_gr), 0) == 3
    assert m[("apiserver_watch_events_total", (("group", ""), ("kind", "Pod"), ("version", "v1")))] == 3
    assert m[("apiserver_watch_cache_resource_version", pods_gr)] == int(got[-1][1])  # the delete's revision
    assert m[("apiserver_terminated_watchers_total", pods_gr)] == 0


def test_config_maps_and_secrets_through_the_client(v1: client.CoreV1Api) -> None:
    """ConfigMaps and Secrets with the official client: stringData stored as data, the
    `type` field selector, and `immutable` refusing a later change with kube's 422."""
    made = v1.create_namespaced_secret("default", client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds"), string_data={"password": "s3cr3t"}))
    assert made.type == "Opaque" and made.data == {"password": "czNjcjN0"} and not made.string_data
    v1.create_namespaced_secret("default", {"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                                            "stringData": {"tls.crt": "c", "tls.key": "k"}})
    assert [s.metadata.name for s in v1.list_namespaced_secret("default", field_selector="type=Opaque").items] == ["creds"]
    cm = v1.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="frozen"), data={"a": "1"}, immutable=True))
    assert cm.immutable is True and cm.data == {"a": "1"}
    with pytest.raises(ApiException) as e:
        v1.patch_namespaced_config_map("frozen", "default", {"data": {"a": "2"}})
    assert e.value.status == 422 and "field is immutable when `immutable` is set" in e.value.body
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_config_map("default", {"metadata": {"name": "bad"}, "data": {"bad key": "1"}})
    assert e.value.status == 422 and "a valid config key must consist of alphanumeric characters" in e.value.body
    v1.patch_namespaced_config_map("frozen", "default", {"metadata": {"labels": {"ok": "yes"}}})  # metadata may change
    v1.delete_namespaced_config_map("frozen", "default")
    for name in ("creds", "tls"):
        v1.delete_namespaced_secret(name, "default")


def test_a_replaced_ca_is_withdrawn_from_the_nodes(store: EtcdStore, keys: Keys, tmp_path: Path) -> None:
    """The client CA a server published for node agents is withdrawn once the server has
    another (its state directory's CA replaced); a CA someone else published stays."""
    from orchestrator.apiserver import certs
    from orchestrator.node import nodetls

    state = tmp_path / "state"
    other = certs.new_ca("someone else's")
    nodetls.publish_client_cas(store, keys, other.cert)

    def published() -> set[str]:
        return {kv.key for kv in store.list(keys.client_cas)[0]}

    cfg = APIServerConfig(listen=("127.0.0.1", 0), state_dir=state)
    first = APIServer(store, keys, cfg)
    first.start()
    first.stop()
    ca1 = keys.client_ca(nodetls.fingerprint((state / "ca.crt").read_bytes()))
    assert published() == {ca1, keys.client_ca(nodetls.fingerprint(other.cert))}
    for f in state.iterdir():  # a new CA at the next start
        if f.suffix in (".crt", ".key"):
            f.unlink()
    second = APIServer(store, keys, APIServerConfig(listen=("127.0.0.1", 0), state_dir=state))
    second.start()
    second.stop()
    ca2 = keys.client_ca(nodetls.fingerprint((state / "ca.crt").read_bytes()))
    assert ca2 != ca1 and published() == {ca2, keys.client_ca(nodetls.fingerprint(other.cert))}
    assert json.loads((state / "apiserver.json").read_text())["publishedClientCAs"] == [ca2.rsplit("/", 1)[1]]
