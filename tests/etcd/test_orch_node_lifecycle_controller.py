"""The node lifecycle controller against a real etcd with short timings: a node whose
heartbeats stop goes Ready=Unknown and its pods not ready, then they are evicted (marked for
deletion); pods of a deleted Node are deleted, and its service account key withdrawn."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from netplane.store import EtcdStore, Keys
from orchestrator import heartbeat
from orchestrator.controllers.base import Writer
from orchestrator.controllers.events import Recorder
from orchestrator.controllers.informers import Informers
from orchestrator.controllers.node_lifecycle_controller import NodeLifecycleController
from orchestrator.objects import meta
from orchestrator.objects import node as nodeobj
from orchestrator.objects import pod as podobj
from orchestrator.objects.meta import EVENT, NODE, POD
from orchestrator.storage import ObjectStore
from tests.etcd._orch import Running, node, pod, set_status
from tests.waiting import wait_for

GRACE, EVICTION = 1.0, 1.5


def test_lost_node_goes_unknown_then_evicts_and_deleted_node_loses_its_pods(
        store: EtcdStore, keys: Keys, objects: ObjectStore) -> None:
    r = Running()
    try:
        lease = store.grant(30)
        for name in ("n1", "n2"):
            objects.create(node(name))
            heartbeat.renew(store, keys, name, lease=lease, now=datetime.now(UTC))
        for name, on in (("p1", "n1"), ("p2", "n2")):
            objects.create(pod(name, node_name=on))
            set_status(objects, name, ip="10.1.0.2", ready=True, phase="Running")
        infs = Informers(objects)
        rec = Recorder(objects, "node-controller", writer=Writer(), ttl=60)
        ctl = NodeLifecycleController(objects, infs, writer=Writer(), recorder=rec, grace_period=GRACE,
                                      eviction_timeout=EVICTION, monitor_period=0.1)
        infs.start(r.stop)
        assert infs.wait_synced(10)
        r.start(ctl.run, "node-lifecycle")
        r.start(rec.run, "events")

        def beat(stop: object) -> None:  # n2 keeps heartbeating through its lease key; n1 went silent
            while not r.stop.wait(0.2):
                heartbeat.renew(store, keys, "n2", lease=lease, now=datetime.now(UTC))

        r.start(beat, "n2-heartbeat")  # type: ignore[arg-type]
        wait_for(lambda: nodeobj.ready_status(objects.get(NODE, "n1") or {}) == "Unknown", 10, "n1 Unknown")
        wait_for(lambda: not podobj.is_ready(objects.get(POD, "p1") or {}), 10, "p1 not ready")
        wait_for(lambda: meta.is_deleting(objects.get(POD, "p1") or {}), 10, "p1 evicted")
        wait_for(lambda: [e for e in objects.list(EVENT, "default")[0] if e["reason"] == "NodeNotReady"], 10,
                 "NodeNotReady event")
        n2, p2 = objects.get(NODE, "n2"), objects.get(POD, "p2")
        assert n2 is not None and p2 is not None
        assert nodeobj.ready_status(n2) == "True" and podobj.is_ready(p2) and not meta.is_deleting(p2)
        assert ctl.passes > 10  # n2 was judged many times past the grace period, and kept

        objects.delete(NODE, "n2")
        wait_for(lambda: objects.get(POD, "p2") is None, 10, "pod of a deleted node deleted")
    finally:
        r.close()


def test_a_deleted_nodes_service_account_key_is_withdrawn_and_no_other(
        store: EtcdStore, keys: Keys, objects: ObjectStore, tmp_path: Path) -> None:
    """The key a node agent published (with its node's name) goes when its Node does: at the
    controller's first pass for Nodes deleted before it ran, at once for one deleted while it
    runs. An API server's key, a present Node's and a malformed record stay; a key
    published again after its Node is back stays."""
    from orchestrator.apiserver import satokens
    from orchestrator.node import podtokens

    r = Running()
    try:
        objects.create(node("here"))
        signers = {name: podtokens.node_signer(tmp_path / name, store, keys, name) for name in ("here", "gone")}
        server = satokens.Signer(satokens.ensure_signing_key(tmp_path / "apiserver"))
        satokens.publish_key(store, keys.sa_key, server, [])
        store.put(keys.sa_key("B" * 43), b"{not a record")

        def published() -> set[str]:
            return {kv.key[len(keys.sa_keys):] for kv in store.list(keys.sa_keys)[0]}

        everything = {signers["here"].kid, signers["gone"].kid, server.kid, "B" * 43}
        assert published() == everything
        # withdrawn only while the Node is absent, and only the nodes asked for
        node_key = lambda name: objects.key(NODE, name)
        assert satokens.withdraw_node_keys(store, keys.sa_keys, node_key, only={"here"}) == []
        assert satokens.withdraw_node_keys(store, keys.sa_keys, node_key, only={"elsewhere"}) == []
        assert published() == everything

        infs = Informers(objects)
        ctl = NodeLifecycleController(objects, infs, writer=Writer(), monitor_period=30)
        infs.start(r.stop)
        assert infs.wait_synced(10)
        r.start(ctl.run, "node-lifecycle")
        wait_for(lambda: published() == everything - {signers["gone"].kid}, 10, "the absent Node's key withdrawn")

        objects.delete(NODE, "here")  # the next pass comes at once, not after monitor_period
        wait_for(lambda: published() == {server.kid, "B" * 43}, 10, "the deleted Node's key withdrawn")

        # the agent registers its Node again, then publishes its key again: it stays
        objects.create(node("here"))
        podtokens.republish(store, keys, signers["here"], "here")
        passes = ctl.passes
        ctl._wake.set()
        wait_for(lambda: ctl.passes > passes, 10, "another pass")
        assert published() == {signers["here"].kid, server.kid, "B" * 43}
    finally:
        r.close()  # within a second, though the next pass is 30 s away
