"""The proxy loop over a real etcd with a recording backend (a fake adapter): waits for both
lists before the first sync, passes only changed keys on partial syncs, skips malformed values,
does a full sync after a resync, keeps going after a backend failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from netplane.errors import KernelError
from netplane.proxy.api import ServiceAPI
from netplane.proxy.desired import LbKey, ProxyState
from netplane.proxy.model import Service, ServicePort
from netplane.proxy.runner import ProxyComponent
from netplane.store import EtcdStore, Keys


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[ProxyState, bool, set[LbKey] | None]] = []
        self.at: list[float] = []  # time.monotonic() of each recorded call
        self.done = 0  # syncs the component finished (stats and metrics recorded), via on_sync
        self.fail_next = 0
        self.closed = False
        self.cv = threading.Condition()

    def sync(self, state: ProxyState, *, full: bool, changed: set[LbKey] | None = None) -> None:
        with self.cv:
            if self.fail_next:
                self.fail_next -= 1
                raise KernelError("injected")
            self.calls.append((state, full, changed))
            self.at.append(time.monotonic())
            self.cv.notify_all()

    def attach(self, comp: ProxyComponent) -> ProxyComponent:
        """Count the syncs `comp` has finished: its on_sync hook runs after stats and metrics."""
        def finished(_state: ProxyState) -> None:
            with self.cv:
                self.done += 1
                self.cv.notify_all()

        comp.on_sync = finished
        return comp

    def wait(self, pred: Callable[[], bool], timeout: float = 10) -> None:
        with self.cv:
            assert self.cv.wait_for(pred, timeout), self.calls

    def dump(self, service: str | None = None) -> str:
        return ""

    def close(self) -> None:
        self.closed = True

    def cleanup(self) -> None:
        pass


def svc(name: str) -> Service:
    return Service(name=name, cluster_ip=IPv4Address(0), ports=(ServicePort("http", "TCP", 80, 8080),))


def test_first_sync_has_endpoints_then_partial_syncs(store: EtcdStore, keys: Keys) -> None:
    api = ServiceAPI(store, keys)
    for i in range(3):
        api.create(svc(f"s{i}"), cluster_ip=None, endpoints=(IPv4Address(f"10.0.0.{i + 1}"),))
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    rec = Recorder()
    comp = rec.attach(ProxyComponent(store, keys, backend=rec, registry=reg))
    comp.start()
    try:
        rec.wait(lambda: len(rec.calls) >= 1)
        state, full, _ = rec.calls[0]
        assert full and len(state.entries) == 3
        assert all(e.backends for e in state.entries.values())  # never programmed without endpoints
        api.set_endpoints("s1", (IPv4Address("10.0.0.9"),))
        rec.wait(lambda: len(rec.calls) >= 2)
        state, full, changed = rec.calls[-1]
        assert not full and changed == {LbKey("default/s1", "http")}
        assert [str(b.ip) for b in state.entries[LbKey("default/s1", "http")].backends] == ["10.0.0.9"]
        api.delete("s2")
        rec.wait(lambda: any(LbKey("default/s2", "http") in (c[2] or ()) for c in rec.calls))
        assert LbKey("default/s2", "http") not in rec.calls[-1][0].entries
        store.put(f"{keys.prefix}/registry/services/default/broken", b'{"kind": "Service", "spec": 1}')  # malformed: skipped
        api.create(svc("s9"), cluster_ip=None)
        rec.wait(lambda: LbKey("default/s9", "http") in rec.calls[-1][0].entries and rec.done == len(rec.calls))
        assert not any(k.service == "default/broken" for k in rec.calls[-1][0].entries)
        # every sync the backend saw is counted, by kind (s2's two keys may make one sync or two)
        fulls, partials = sum(c[1] for c in rec.calls), sum(not c[1] for c in rec.calls)
        assert fulls == 1 and partials >= 3
        for kind, n in (("full", fulls), ("partial", partials)):
            labels = {"mode": "recorder", "kind": kind, "result": "ok"}
            assert reg.get_sample_value("netplane_proxy_syncs_total", labels) == n, kind
        assert reg.get_sample_value("netplane_proxy_services", {"mode": "recorder"}) == 3  # s0, s1, s9
    finally:
        comp.stop()
    assert rec.closed


def test_backend_failure_is_retried_with_a_full_sync(store: EtcdStore, keys: Keys) -> None:
    api = ServiceAPI(store, keys)
    api.create(svc("a"), cluster_ip=None)
    rec = Recorder()
    rec.fail_next = 1
    comp = ProxyComponent(store, keys, backend=rec)
    comp.start()
    try:
        rec.wait(lambda: len(rec.calls) >= 1)
        assert rec.calls[0][1] is True and comp.stats.errors == 1
    finally:
        comp.stop()


def test_periodic_full_resync(store: EtcdStore, keys: Keys) -> None:
    ServiceAPI(store, keys).create(svc("a"), cluster_ip=None)
    rec = Recorder()
    comp = ProxyComponent(store, keys, backend=rec, resync_interval=0.3)
    comp.start()
    try:
        rec.wait(lambda: sum(c[1] for c in rec.calls) >= 4)  # the first sync, then 3 on the timer
        assert all(c[1] for c in rec.calls[:4]), "nothing changed in etcd: only full syncs"
        gaps = [b - a for a, b in zip(rec.at[:4], rec.at[1:4])]
        assert all(0.25 <= g <= 3.0 for g in gaps), gaps  # on the 0.3 s timer, not a busy loop
    finally:
        comp.stop()


def test_run_with_external_stop_event(store: EtcdStore, keys: Keys) -> None:
    rec = Recorder()
    comp = ProxyComponent(store, keys, backend=rec)
    stop = threading.Event()
    t = threading.Thread(target=comp.run, args=(stop,))
    t.start()
    rec.wait(lambda: len(rec.calls) >= 1)  # empty cluster: still one (empty) full sync
    assert rec.calls[0][0].entries == {}
    stop.set()
    t.join(10)
    assert not t.is_alive() and rec.closed
