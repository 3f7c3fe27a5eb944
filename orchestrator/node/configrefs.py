"""Which ConfigMaps and Secrets a node agent follows: those its pods use (kubelet's Watch
strategy follows only its pods' objects, not the cluster's).

    refs = ConfigRefs()
    config_maps = Informer(objects, CONFIG_MAP, keep=refs.keeps("ConfigMap"))
    secrets = Informer(objects, SECRET, keep=refs.keeps("Secret"))
    refs.informers = {"ConfigMap": config_maps, "Secret": secrets}
    pods.add_handler(refs.track)            # before the handler that queues the pod's sync
    refs.users("ConfigMap", "default", "conf")  # -> ["default/web"]

`track` sees each change of a pod here (a pods informer handler): a ConfigMap or Secret that
becomes used is read into its informer (`Informer.adopt`), one no longer used by any pod is
dropped (`Informer.evict`). The pods informer calls `track` with its lock held, and `track`
takes a config informer's; the config informers' handlers ask `users`, never the pods
informer, so the locks are always taken in that one order. Its own lock is taken last.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from netplane.errors import NetplaneError
from orchestrator.informer import Informer
from orchestrator.objects import meta, pod

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Ref = tuple[str, str, str]  # (kind, namespace, name)


class ConfigRefs:
    def __init__(self) -> None:
        self.informers: dict[str, Informer] = {}  # "ConfigMap" / "Secret" -> its informer
        self._users: dict[Ref, set[str]] = {}  # -> the pods ("ns/name") that use it
        self._lock = threading.Lock()

    def keeps(self, kind: str) -> Callable[[Obj], bool]:
        """The `keep` filter of `kind`'s informer: the objects a pod here uses."""
        return lambda obj: (kind, meta.namespace(obj), meta.name(obj)) in self._users

    def users(self, kind: str, namespace: str, name: str) -> list[str]:
        with self._lock:
            return sorted(self._users.get((kind, namespace, name), ()))

    def track(self, old: Obj | None, new: Obj | None) -> None:
        p = new if new is not None else old
        if p is None:
            return
        key = meta.namespaced_name(p)
        before = {(k, meta.namespace(old), n) for k, n in pod.config_refs(old)} if old is not None else set()
        after = {(k, meta.namespace(new), n) for k, n in pod.config_refs(new)} if new is not None else set()
        adopted, evicted = [], []
        with self._lock:
            for ref in after - before:
                users = self._users.setdefault(ref, set())
                if not users:
                    adopted.append(ref)
                users.add(key)
            for ref in before - after:
                users = self._users.get(ref, set())
                users.discard(key)
                if not users:
                    self._users.pop(ref, None)
                    evicted.append(ref)
        for kind, ns, name in adopted:
            try:
                self.informers[kind].adopt(name, ns)
            except NetplaneError as e:  # etcd away: missing for the pod until the informer re-lists on its return
                log.warning("node: reading %s %s/%s: %s", kind, ns, name, e)
        for kind, ns, name in evicted:
            self.informers[kind].evict(name, ns)
