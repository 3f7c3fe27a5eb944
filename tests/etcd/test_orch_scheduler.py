"""The scheduler loop against a real etcd: two schedulers racing never bind a pod twice;
unschedulable pods get kube-scheduler's condition and event and are retried when a node comes;
the events are stored on a TTL lease."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator

import pytest

from netplane.store import EtcdStore
from netplane.store.watch import Resync, list_watch
from orchestrator.controllers.base import Writer
from orchestrator.controllers.events import Recorder
from orchestrator.controllers.informers import Informers
from orchestrator.controllers.scheduler import Scheduler
from orchestrator.objects import meta
from orchestrator.objects import pod as podobj
from orchestrator.objects.meta import EVENT, NODE, POD
from orchestrator.storage import ObjectStore
from tests.etcd._orch import Running, node, pod, pods_of
from tests.waiting import wait_for


@pytest.fixture
def running() -> Iterator[Running]:
    r = Running()
    yield r
    r.close()


def scheduler(objects: ObjectStore, running: Running, seed: int, *, events: bool = False) -> Scheduler:
    infs = Informers(objects)
    rec = Recorder(objects, "default-scheduler", writer=Writer(), ttl=60) if events else None
    s = Scheduler(objects, infs, writer=Writer(), recorder=rec, rng=random.Random(seed), batch=20)
    infs.start(running.stop)
    assert infs.wait_synced(10)
    running.start(s.run, f"scheduler-{seed}")
    if rec is not None:
        running.start(rec.run, f"events-{seed}")
    return s


def test_two_schedulers_racing_never_bind_a_pod_twice(store: EtcdStore, objects: ObjectStore, running: Running) -> None:
    for i in range(4):
        objects.create(node(f"n{i}"))
    history: dict[str, list[str]] = defaultdict(list)  # pod key -> nodeName of every write

    def record(stop: object) -> None:
        for item in list_watch(store, objects.prefix(POD), stop=running.stop):
            if isinstance(item, Resync):
                continue
            for e in item:
                if e.kind == "put" and e.value is not None:
                    p = objects.decode(POD, e.key, e.value, e.mod_revision)
                    history[e.key].append(podobj.node_name(p))

    running.start(record, "history")  # type: ignore[arg-type]
    a, b = scheduler(objects, running, 1), scheduler(objects, running, 2)
    for i in range(150):
        objects.create(pod(f"p{i:03d}"))
    wait_for(lambda: all(podobj.node_name(p) for p in pods_of(objects)), 30, "all bound")
    wait_for(lambda: sum(1 for h in history.values() if h and h[-1]) == 150, 10, "history complete")
    assert a.bound + b.bound == 150, (a.bound, b.bound)
    # both schedulers raced (under load one may win every pod: the other's attempts then all
    # lost the compare-and-swap, which is the point)
    assert a.bound + a.conflicts > 0 and b.bound + b.conflicts > 0, (a.bound, a.conflicts, b.bound, b.conflicts)
    for key, h in history.items():
        bound_values = [n for n in h if n]
        assert len(bound_values) == 1, (key, h)  # exactly one binding write, never rebound
    assert a.conflicts + b.conflicts > 0, "the race was real: some bindings lost the compare-and-swap"


def test_unschedulable_pod_gets_condition_event_and_is_retried(objects: ObjectStore, running: Running) -> None:
    for i in range(3):
        objects.create(node(f"n{i}", cpu="1"))
    scheduler(objects, running, 3, events=True)
    objects.create(pod("big", cpu="2"))
    msg = "0/3 nodes are available: 3 Insufficient cpu."

    def condition() -> dict | None:  # type: ignore[type-arg]
        return podobj.condition(objects.get(POD, "big") or {}, "PodScheduled")  # type: ignore[return-value]

    c = wait_for(lambda: condition() if (condition() or {}).get("status") == "False" else None, 10, "unschedulable")
    assert c["reason"] == "Unschedulable" and c["message"] == msg
    ev = wait_for(lambda: [e for e in objects.list(EVENT, "default")[0] if e["reason"] == "FailedScheduling"],
                  10, "FailedScheduling event")
    assert ev[0]["message"] == msg and ev[0]["type"] == "Warning"
    assert ev[0]["involvedObject"]["name"] == "big"
    # as every created object: a uid and a creationTimestamp (kubectl get events --sort-by them)
    assert ev[0]["metadata"]["uid"] and ev[0]["metadata"]["creationTimestamp"] == ev[0]["firstTimestamp"]
    kv = objects.store.get(objects.key(EVENT, meta.name(ev[0]), "default"))
    assert kv is not None and kv.lease != 0 and 0 < objects.store.time_to_live(kv.lease) <= 66  # on a TTL lease

    objects.create(node("large", cpu="8"))  # a node change retries the parked pod
    p = wait_for(lambda: (objects.get(POD, "big") or {}).get("spec", {}).get("nodeName") == "large"
                 and objects.get(POD, "big"), 10, "scheduled on the new node")
    assert (podobj.condition(p, "PodScheduled") or {}).get("status") == "True"
    wait_for(lambda: [e for e in objects.list(EVENT, "default")[0] if e["reason"] == "Scheduled"
                      and e["message"] == "Successfully assigned default/big to large"], 10, "Scheduled event")
    assert objects.get(NODE, "large") is not None
