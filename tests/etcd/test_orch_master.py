"""`netplane master` processes against a real etcd: the leader runs the controllers, a
SIGKILLed leader is replaced within the lease TTL, and there is never a second acting leader
(every controller write is fenced; the events each master's controllers write, in time order,
come from one master, then the other). SIGTERM stops a master cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netplane.store import EtcdStore, Keys
from netplane.store.embedded import EmbeddedEtcd
from orchestrator.master import leader_key
from orchestrator.objects import pod as podobj
from orchestrator.objects.meta import EVENT, REPLICATION_CONTROLLER
from orchestrator.storage import ObjectStore
from tests.etcd._orch import node, pods_of, rc
from tests.waiting import wait_for

TTL = 2
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def masters(etcd_server: EmbeddedEtcd, keys: Keys, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(ident: str) -> subprocess.Popen[str]:
        with open(tmp_path / f"{ident}.log", "w") as log:
            p = subprocess.Popen([sys.executable, "-m", "netplane.cli.main", "--log-level", "info",
                                  "--etcd", etcd_server.endpoint, "--prefix", keys.prefix, "master", "--id", ident,
                                  "--leader-ttl", str(TTL), "--node-monitor-period", "0.5"],
                                 cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def holder(store: EtcdStore, keys: Keys) -> str:
    kv = store.get(leader_key(keys))
    return kv.value.decode() if kv else ""


def all_bound(objects: ObjectStore, n: int) -> bool:
    ps = pods_of(objects)
    return len(ps) == n and all(podobj.node_name(p) for p in ps)


def event_authors(objects: ObjectStore) -> list[str]:
    """reportingInstance of every event, in the order the events happened (names end in ns hex)."""
    evs = objects.list(EVENT, "default")[0]
    evs.sort(key=lambda e: int(e["metadata"]["name"].rsplit(".", 1)[1], 16))
    return [e["reportingInstance"] for e in evs]


def scale(objects: ObjectStore, n: int) -> None:
    def m(r: dict) -> dict:  # type: ignore[type-arg]
        r["spec"]["replicas"] = n
        return r

    objects.guaranteed_update(REPLICATION_CONTROLLER, "web", "default", m)


def runs(seq: list[str]) -> list[str]:
    return [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x]


def test_sigkilled_master_hands_over_and_never_two_act(store: EtcdStore, keys: Keys, tmp_path: Path,
                                                       masters: Callable[[str], subprocess.Popen[str]]) -> None:
    objects = ObjectStore(store, keys)
    for i in range(3):
        objects.create(node(f"n{i}"))
    a = masters("a")
    wait_for(lambda: holder(store, keys) == "a", 20, "a leads")
    objects.create(rc("web", 3))
    wait_for(lambda: all_bound(objects, 3), 20, "a's controllers: 3 pods created and bound")
    b = masters("b")
    wait_for(lambda: "b waits: a leads" in (tmp_path / "b.log").read_text(), 20, "b waiting")
    scale(objects, 4)  # work while both run: only the leader may act on it
    wait_for(lambda: all_bound(objects, 4), 20, "a's controllers: 4 pods")
    time.sleep(0.5)
    assert set(event_authors(objects)) == {"a"}

    a.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    wait_for(lambda: holder(store, keys) == "b", TTL + 5, "b takes over")
    took = time.monotonic() - t0
    assert took <= TTL + 1.5, took

    scale(objects, 6)
    wait_for(lambda: all_bound(objects, 6), 20, "b's controllers: 6 pods")
    wait_for(lambda: "b" in event_authors(objects), 10, "b's events")
    assert runs(event_authors(objects)) == ["a", "b"], runs(event_authors(objects))

    b.send_signal(signal.SIGTERM)
    assert b.wait(15) == 0
    assert holder(store, keys) == "", "a clean stop gives the lease back at once"
