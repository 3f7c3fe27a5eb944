"""Helpers for the orchestrator's etcd-tier tests: simulated nodes (Node objects with a Ready
condition and heartbeats, no runtime), objects built through the validation layer, a
controller harness, an informer whose watch feed is delayed, and waiting on conditions."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from netplane.store.watch import Resync, list_watch
from orchestrator.informer import Informer
from orchestrator.objects import meta
from orchestrator.objects.meta import POD
from orchestrator.storage import ObjectStore, ObjectView
from orchestrator.validation import admit

Obj = dict[str, Any]


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: int = 110, ready: str = "True",
         labels: dict[str, str] | None = None) -> Obj:
    return admit({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
                  "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": str(pods)},
                             "conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": now_text(),
                                             "lastTransitionTime": now_text()}]}}).object


def pod(name: str, *, labels: dict[str, str] | None = None, cpu: str | None = None,
        ports: list[dict[str, Any]] | None = None, node_name: str = "") -> Obj:
    c: dict[str, Any] = {"name": "c", "image": "busybox"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    if ports:
        c["ports"] = ports
    spec: dict[str, Any] = {"containers": [c]}
    if node_name:
        spec["nodeName"] = node_name
    return admit({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
                  "spec": spec}).object


def rc(name: str, replicas: int, *, labels: dict[str, str] | None = None) -> Obj:
    lab = labels or {"app": name}
    return admit({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
                  "spec": {"replicas": replicas, "selector": lab,
                           "template": {"metadata": {"labels": lab},
                                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}).object


def set_status(objects: ObjectStore, name: str, *, ip: str | None = None, ready: bool | None = None,
               phase: str | None = None, node_name: str | None = None) -> Obj:
    """What a node's runtime would write about its pod."""
    def mutate(p: Obj) -> Obj:
        st = p.setdefault("status", {})
        if ip is not None:
            st["podIP"] = ip
        if phase is not None:
            st["phase"] = phase
        if node_name is not None:
            p["spec"]["nodeName"] = node_name
        if ready is not None:
            conds = [c for c in st.get("conditions") or [] if c.get("type") != "Ready"]
            conds.append({"type": "Ready", "status": "True" if ready else "False",
                          "lastTransitionTime": now_text()})
            st["conditions"] = conds
        return p

    return objects.guaranteed_update(POD, name, "default", mutate)


def pods_of(objects: ObjectStore) -> list[Obj]:
    return objects.list(POD, "default")[0]


class Running:
    """Start controller loops (and their informers) in threads; stop and join them all."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, fn: Callable[[threading.Event], None], name: str = "loop") -> None:
        t = threading.Thread(target=fn, args=(self.stop,), name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)
            assert not t.is_alive(), f"{t.name} did not stop"


@contextlib.contextmanager
def running(fn: Callable[[threading.Event], None], name: str) -> Iterator[None]:
    """One controller loop in a thread for the block, stopped and joined after it."""
    r = Running()
    r.start(fn, name)
    try:
        yield
    finally:
        r.close()


class DelayedInformer(Informer):
    """An informer whose watch batches reach the cache `delay` seconds late (a lagging watch):
    the lag is in the feed, not in the controller under test."""

    def __init__(self, *args: Any, delay: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delay = delay

    def run(self, stop: threading.Event) -> None:
        prefix = self.objects.prefix(self.kind, self.namespace)
        for item in list_watch(self.objects.store, prefix, stop=stop, retry_interval=self.retry_interval):
            if isinstance(item, Resync):
                listed = {kv.key: o for kv in item.items
                          if (o := self.objects.decode_or_log(self.kind, kv.key, kv.value, kv.mod_revision))}
                self.apply(ObjectView(listed, item.revision, None))
                continue
            if stop.wait(self.delay):
                return
            objs: dict[str, Obj] = {}
            for e in item:
                obj = None
                if e.kind == "put" and e.value is not None:
                    obj = self.objects.decode_or_log(self.kind, e.key, e.value, e.mod_revision)
                if obj is None:
                    objs.pop(e.key, None)
                else:
                    objs[e.key] = obj
            self.apply(ObjectView(objs, item[-1].mod_revision, frozenset(e.key for e in item)))


def names(objs: list[Obj]) -> list[str]:
    return sorted(meta.name(o) for o in objs)
