"""kube-controller-manager's root-ca-cert-publisher: the ConfigMap `kube-root-ca.crt` in every
namespace, its `ca.crt` the CAs the API servers' serving certificates chain to, so that a
pod's client verifies the API server it reaches at 10.96.0.1 (`kubernetes.default.svc`).

Each API server publishes its own CA under `<prefix>/pki/serving-ca/<sha256>` (at start; it
withdraws one it no longer has); the bundle is all of them, in fingerprint order. The leader
keeps the ConfigMaps as they should be: made, reset when someone changes them, made again
when deleted. A namespace being deleted gets none, and while no API server has published a
CA there is nothing to make. Malformed entries are logged and skipped.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from netplane.store.watch import Resync, list_watch
from orchestrator.controllers.base import KeyLoop, Writer
from orchestrator.informer import Informer, wait_all_synced
from orchestrator.objects import meta
from orchestrator.objects.meta import CONFIG_MAP, NAMESPACE
from orchestrator.storage import AlreadyExists, ObjectStore
from orchestrator.validation import admit

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NAME = "kube-root-ca.crt"
KEY = "ca.crt"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")
PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


def _ca(key: str, value: bytes | None) -> bytes | None:
    if value is None:
        return None
    if not value.lstrip().startswith(PEM_BEGIN):
        log.warning("root CA publisher: skipping %s: not a PEM certificate", key)
        return None
    return value.strip() + b"\n"


class RootCAPublisher:
    def __init__(self, objects: ObjectStore, *, writer: Writer, resync: float = 30.0) -> None:
        self.objects = objects
        self.writer = writer
        self.namespaces = Informer(objects, NAMESPACE, resync_period=resync)
        self.configmaps = Informer(objects, CONFIG_MAP, resync_period=resync, keep=lambda o: meta.name(o) == NAME)
        self.loop = KeyLoop("root-ca-cert-publisher", self.sync, writer=writer, workers=1)
        self._lock = threading.Lock()
        self._cas: dict[str, bytes] = {}  # etcd key -> PEM
        self._listed = threading.Event()
        self.namespaces.add_handler(self._on_namespace)
        self.configmaps.add_handler(self._on_config_map)

    def _on_namespace(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None:
            self.loop.queue.add(meta.name(new))

    def _on_config_map(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None and meta.name(obj) == NAME:
            self.loop.queue.add(meta.namespace(obj))

    def run(self, stop: threading.Event) -> None:
        follower = threading.Thread(target=self._follow, args=(stop,), name="root-ca-follower", daemon=True)
        self.namespaces.start(stop)
        self.configmaps.start(stop)
        follower.start()
        if wait_all_synced(stop, self.namespaces, self.configmaps):
            self.loop.run(stop)
        follower.join(timeout=5)

    def _follow(self, stop: threading.Event) -> None:
        for item in list_watch(self.objects.store, self.objects.keys.serving_cas, stop=stop):
            with self._lock:
                if isinstance(item, Resync):
                    self._cas = {kv.key: pem for kv in item.items if (pem := _ca(kv.key, kv.value))}
                else:
                    for ev in item:
                        pem = _ca(ev.key, ev.value) if ev.kind == "put" else None
                        if pem is None:
                            self._cas.pop(ev.key, None)
                        else:
                            self._cas[ev.key] = pem
            self._listed.set()
            for ns in self.namespaces.list():
                self.loop.queue.add(meta.name(ns))

    def bundle(self) -> str:
        with self._lock:
            return b"".join(pem for _, pem in sorted(self._cas.items())).decode()

    def sync(self, namespace: str) -> None:
        bundle = self.bundle() if self._listed.is_set() else ""
        ns = self.namespaces.get(namespace)
        if not bundle or ns is None or meta.is_deleting(ns):
            return
        want = {KEY: bundle}
        cm = self.configmaps.get(NAME, namespace)
        guards = self.writer.guards
        if cm is None:
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": NAME, "namespace": namespace,
                                 "annotations": {"kubernetes.io/description": DESCRIPTION}},
                    "data": want}
            try:
                self.objects.create(admit(body).object, guards=guards)
                log.info("%s/%s published", namespace, NAME)
            except AlreadyExists:
                pass  # our cache is behind: its event queues us again
            return
        if cm.get("data") == want and not cm.get("binaryData"):
            return
        changed = {k: v for k, v in cm.items() if k != "binaryData"}
        changed["data"] = want
        self.objects.update(changed, guards=guards)
        log.info("%s/%s reset to the published CAs", namespace, NAME)
