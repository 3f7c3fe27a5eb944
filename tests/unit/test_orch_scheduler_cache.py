"""The scheduler loop's cache against its informers, without etcd: whatever the mix of
decisions, binding echoes, failed bindings (forgotten), foreign bindings, status and label
changes, resyncs, deletions and finished pods, once every binding has landed or been forgotten
the cache counts exactly what a fresh snapshot of the informer's pods counts. (The loop skips
re-reading a bound pod whose footprint did not change; this is what keeps that honest.)"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from netplane.store import Keys
from orchestrator.controllers.base import Writer
from orchestrator.controllers.informers import Informers
from orchestrator.controllers.scheduler import Scheduler
from orchestrator.objects import meta
from orchestrator.objects.selector import from_set
from orchestrator.scheduling import SpreadGroup, snapshot
from orchestrator.storage import ObjectStore, ObjectView
from tests.unit.test_orch_scheduling import mknode, mkpod

Obj = dict[str, Any]


class Feed:
    """Informers fed by hand: every change is one watch batch with the next revision."""

    def __init__(self) -> None:
        self.objects = ObjectStore(None, Keys("/t"))  # type: ignore[arg-type]  # nothing is written
        self.infs = Informers(self.objects)
        self.rev = 1

    def put(self, inf: Any, obj: Obj) -> Obj:
        self.rev += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rev)
        k = self.objects.key_of(obj)
        inf.apply(ObjectView({k: obj}, self.rev, frozenset({k})))
        return obj

    def delete(self, inf: Any, obj: Obj) -> None:
        self.rev += 1
        k = self.objects.key_of(obj)
        inf.apply(ObjectView({}, self.rev, frozenset({k})))


def rc(name: str, app: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"app": app},
                     "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": []}}}}


def assert_cache_matches(s: Scheduler, f: Feed) -> None:
    assert set(s._groups) <= {"rc:default/a"}
    pods = [p for p in f.infs.pods.list() if p["spec"].get("nodeName")]
    fresh = snapshot(f.infs.nodes.list(), pods, {"rc:default/a": SpreadGroup("default", from_set({"app": "a"}))})
    for name, a in s.state.nodes.items():
        b = fresh.nodes[name]
        assert (a.requested, a.nonzero_cpu, a.nonzero_memory) == (b.requested, b.nonzero_cpu, b.nonzero_memory), name
        assert a.ports == b.ports and a.signatures == b.signatures and set(a.pods) == set(b.pods), name
        assert a.pods == b.pods, name


@pytest.mark.parametrize("seed", range(6))
def test_cache_equals_a_fresh_snapshot_after_any_mix_of_events(seed: int) -> None:
    rng = random.Random(seed)
    f = Feed()
    s = Scheduler(f.objects, f.infs, writer=Writer(), rng=random.Random(seed))
    parked: list[str] = []
    s._mark_unschedulable = lambda key, pod, message: parked.append(key)  # type: ignore[method-assign]
    for i in range(6):
        f.put(f.infs.nodes, mknode(f"n{i}", cpu="64", memory="256Gi", pods=500))
    f.put(f.infs.rcs, rc("a", "a"))
    live: dict[str, Obj] = {}  # name -> the pod as the informer has it

    def drain_decisions() -> None:
        while (key := s.queue.get(timeout=0)) is not None:
            s._schedule_one(key)
            s.queue.done(key)

    def settle_one() -> None:
        key, read, b, _ = s._binds.get_nowait()
        name = key.split("/")[1]
        cur = live.get(name)
        outcome = rng.random()
        if cur is None or meta.resource_version(cur) != meta.resource_version(read) or outcome < 0.2:
            s._forget(key)  # the revision guard failed (the pod changed), or etcd was away
            if cur is not None and outcome < 0.1 and not cur["spec"].get("nodeName"):
                other = copy.deepcopy(cur)  # ... because another scheduler bound it elsewhere
                other["spec"]["nodeName"] = rng.choice([f"n{i}" for i in range(6)])
                live[name] = f.put(f.infs.pods, other)
            s.queue.add(key)
        else:
            live[name] = f.put(f.infs.pods, b)  # our binding lands: its echo

    for step in range(500):
        r = rng.random()
        if r < 0.35 or not live:
            name = f"p{step}"
            cpu, mem = rng.choice([("100m", "64Mi"), ("1", None), (None, None)])
            live[name] = f.put(f.infs.pods, mkpod(name, cpu=cpu, memory=mem, labels={"app": rng.choice("ab")},
                                                  host_port=rng.choice([0, 0, 0, 80, 81])))
        elif r < 0.5:
            drain_decisions()
        elif r < 0.7 and not s._binds.empty():
            settle_one()
        else:
            name = rng.choice(sorted(live))
            p = copy.deepcopy(live[name])
            what = rng.random()
            if what < 0.3:  # a status change (the node's runtime)
                p["status"]["podIP"] = f"10.0.0.{step % 250}"
            elif what < 0.5:  # a label change: the spread signature follows
                p["metadata"]["labels"] = {"app": rng.choice("ab")}
            elif what < 0.6:
                p["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
            elif what < 0.7:
                p["status"]["phase"] = "Succeeded"
            elif what < 0.8:
                f.delete(f.infs.pods, p)
                del live[name]
                continue
            elif what < 0.85:
                f.infs.pods.resync()
                continue
            elif what < 0.9 and not p["spec"].get("nodeName"):
                # another scheduler binds it, often to the node ours assumed it on
                ours = s.state.pod(f"default/{name}")
                p["spec"]["nodeName"] = ours.node if ours and rng.random() < 0.7 else rng.choice(["n0", "n1"])
            else:  # requests changed in place (not allowed on a bound pod, but etcdctl can)
                p["spec"]["containers"][0]["resources"] = {"requests": {"cpu": f"{rng.randrange(1, 900)}m"}}
            live[name] = f.put(f.infs.pods, p)
    drain_decisions()
    while not s._binds.empty():
        settle_one()
        drain_decisions()
    assert not s._assumed
    assert_cache_matches(s, f)
    assert sum(1 for p in live.values() if p["spec"].get("nodeName")) > 50
    assert parked  # some pods found no free host port: they are not in the cache either


def test_a_pod_changed_and_bound_elsewhere_while_assumed_is_counted_as_bound() -> None:
    """Assumed from revision R; the pod is changed (R') and bound by someone else to the same
    node (R''): the cache must count R'', not our assumption from R."""
    f = Feed()
    s = Scheduler(f.objects, f.infs, writer=Writer(), rng=random.Random(0))
    f.put(f.infs.nodes, mknode("n0", cpu="4"))
    p = f.put(f.infs.pods, mkpod("p", cpu="100m"))
    key = s.queue.get(timeout=0)
    assert key == "default/p"
    s._schedule_one(key)
    assert s.state.nodes["n0"].req_cpu == 100  # assumed
    changed = copy.deepcopy(p)
    changed["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "500m"}}
    changed = f.put(f.infs.pods, changed)
    changed["spec"]["nodeName"] = "n0"
    f.put(f.infs.pods, changed)
    s._forget(key)  # our binding's revision guard failed
    assert s.state.nodes["n0"].req_cpu == 500
    assert_cache_matches(s, f)
