"""A leader-election candidate for tests/etcd/test_leader.py, run as its own process (so a test
can SIGKILL or SIGSTOP it). While it leads it appends its identity to a shared log in etcd,
every write fenced by its lease and ordered by a counter key: if two leaders ever acted at
once, their entries would interleave."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from netplane.store import EtcdConfig, EtcdStore
from netplane.store.txn import ModRevisionIs, Put
from orchestrator.leader import Elector, Fence

log = logging.getLogger("candidate")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcd", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--ttl", type=int, default=2)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    store = EtcdStore(EtcdConfig(endpoints=(a.etcd,), timeout=1.0))
    counter, entries = a.prefix + "/counter", a.prefix + "/log/"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def lead(fence: Fence, lost: threading.Event) -> None:
        while not lost.wait(0.05):
            kv = store.get(counter)
            n = int(kv.value) if kv else 0
            guards = [*fence.guards(), ModRevisionIs(counter, kv.mod_revision)] if kv else fence.guards()
            r = store.txn(guards, [Put(counter, str(n + 1)), Put(f"{entries}{n + 1:08d}", a.id)])
            if r.succeeded:
                continue
            held = store.get(fence.key)
            if held is None or held.lease != fence.lease:
                log.info("%s: a fenced write was refused: not the leader any more", a.id)
                return

    Elector(store, a.prefix + "/leader", a.id, ttl=a.ttl).run(stop, lead)
    store.close()


if __name__ == "__main__":
    main()
