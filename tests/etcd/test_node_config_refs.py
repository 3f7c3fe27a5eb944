"""A node agent's ConfigMaps and Secrets (orchestrator.node.configrefs) against a real etcd:
only those its pods use are cached, one a new pod uses is read in at once, one no pod uses
any more is dropped, and a change reaches the handlers with the pods that use it."""

from __future__ import annotations

import threading
from typing import Any

from orchestrator.informer import Informer
from orchestrator.node.configrefs import ConfigRefs
from orchestrator.objects import meta
from orchestrator.objects.meta import CONFIG_MAP, POD, SECRET
from orchestrator.storage import ObjectStore
from orchestrator.validation import admit
from tests.waiting import wait_for

Obj = dict[str, Any]


def config_map(name: str, value: str = "1") -> Obj:
    return admit({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}}).object


def secret(name: str) -> Obj:
    return admit({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": "s"}}).object


def pod(name: str, *config_maps: str, secret_name: str = "") -> Obj:
    env = [{"name": f"V{i}", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "k"}}} for i, cm in enumerate(config_maps)]
    volumes = [{"name": "s", "secret": {"secretName": secret_name}}] if secret_name else []
    return admit({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                  "spec": {"nodeName": "h1", "volumes": volumes,
                           "containers": [{"name": "c", "image": "i", "env": env}]}}).object


def test_only_what_the_pods_use_is_cached(objects: ObjectStore, stop: threading.Event) -> None:
    for name in ("a", "b", "unused"):
        objects.create(config_map(name))
    objects.create(secret("creds"))
    objects.create(secret("other"))
    objects.create(pod("early", "a"))  # here before the agent starts
    refs = ConfigRefs()
    cms = Informer(objects, CONFIG_MAP, keep=refs.keeps("ConfigMap"), retry_interval=0.1)
    secrets = Informer(objects, SECRET, keep=refs.keeps("Secret"), retry_interval=0.1)
    refs.informers = {"ConfigMap": cms, "Secret": secrets}
    seen: list[tuple[str, str, list[str]]] = []

    def on_cm(old: Obj | None, new: Obj | None) -> None:
        o = new if new is not None else old
        assert o is not None
        what = "add" if old is None else "delete" if new is None else "update"
        seen.append((what, meta.name(o), refs.users("ConfigMap", "default", meta.name(o))))

    cms.add_handler(on_cm)
    pods = Informer(objects, POD, retry_interval=0.1)
    pods.add_handler(refs.track)
    # the config informers list first, before any pod is known: the pods' arrival reads theirs in
    for inf in (cms, secrets):
        inf.start(stop)
        assert inf.wait_synced(10)
    assert len(cms) == 0 and len(secrets) == 0
    pods.start(stop)
    assert pods.wait_synced(10)
    wait_for(lambda: cms.get("a") is not None, what="a, which the early pod uses, read in")
    objects.create(pod("web", "a", "b", secret_name="creds"))
    wait_for(lambda: cms.get("b") is not None and secrets.get("creds") is not None, what="web's read in")
    assert sorted(meta.name(o) for o in cms.list()) == ["a", "b"] and [meta.name(o) for o in secrets.list()] == ["creds"]
    assert refs.users("ConfigMap", "default", "a") == ["default/early", "default/web"]
    # a change of one in use: handled, with its users; of one not in use: not even cached
    objects.guaranteed_update(CONFIG_MAP, "b", "default", lambda o: {**o, "data": {"k": "2"}})
    objects.guaranteed_update(CONFIG_MAP, "unused", "default", lambda o: {**o, "data": {"k": "2"}})
    wait_for(lambda: (cms.get("b") or {}).get("data") == {"k": "2"}, what="b's change")
    # web goes: b and creds are no longer used, a still is (by early)
    objects.delete(POD, "web")
    wait_for(lambda: cms.get("b") is None and secrets.get("creds") is None, what="web's dropped")
    assert cms.get("a") is not None and cms.get("unused") is None
    assert seen == [("add", "a", ["default/early"]), ("add", "b", ["default/web"]),
                    ("update", "b", ["default/web"]), ("delete", "b", [])]


def test_an_object_made_after_its_pod_arrives_through_the_watch(objects: ObjectStore, stop: threading.Event) -> None:
    refs = ConfigRefs()
    cms = Informer(objects, CONFIG_MAP, keep=refs.keeps("ConfigMap"), retry_interval=0.1)
    refs.informers = {"ConfigMap": cms, "Secret": Informer(objects, SECRET, keep=refs.keeps("Secret"))}
    pods = Informer(objects, POD, retry_interval=0.1)
    pods.add_handler(refs.track)
    cms.start(stop)
    pods.start(stop)
    assert cms.wait_synced(10) and pods.wait_synced(10)
    objects.create(pod("web", "late"))
    wait_for(lambda: refs.users("ConfigMap", "default", "late") == ["default/web"], what="web's use of late")
    assert cms.get("late") is None  # nothing to read yet
    objects.create(config_map("late"))
    wait_for(lambda: cms.get("late") is not None, what="late, made after its pod")
