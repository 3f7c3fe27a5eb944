"""Collector and HTTP API over a cgroup-shaped directory tree (no root): housekeeping backoff,
2-minute history, discovery add/remove closing descriptors, endpoints and metric names.

The tree is real files read by the real C reader; only the clock is fake where timing matters.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from stats.cgroups import Hierarchy, make_reader
from stats.collector import Collector
from stats.discovery import CgroupSource, Container
from stats.server import StatsAPI, serve


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _write(tmp: Path, path: str, cpu_ns: int, mem: int) -> None:
    c = tmp / "cpuacct" / path.strip("/")
    m = tmp / "memory" / path.strip("/")
    c.mkdir(parents=True, exist_ok=True)
    m.mkdir(parents=True, exist_ok=True)
    (c / "cpuacct.usage_percpu").write_text(f"{cpu_ns} 0 \n")
    (c / "cpuacct.stat").write_text(f"user {cpu_ns // 10_000_000}\nsystem 0\n")
    (c / "cgroup.procs").write_text("")
    (c / "tasks").write_text("")
    (m / "memory.usage_in_bytes").write_text(f"{mem}\n")
    (m / "memory.stat").write_text("total_rss 10\ntotal_inactive_file 0\n")


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Hierarchy]:
    h = Hierarchy(v1=(("cpuacct", str(tmp_path / "cpuacct")), ("memory", str(tmp_path / "memory"))),
                  v2=None, v2_controllers=frozenset())
    return tmp_path, h


def test_backoff_history_and_rates(tree) -> None:
    tmp, h = tree
    _write(tmp, "/a", 0, 100)
    _write(tmp, "/b", 0, 100)
    clock = Clock()
    col = Collector(discover=CgroupSource(lambda: ["/a", "/b"]), interval=1.0, max_interval=8.0,
                    history=120.0, hierarchy=h, reader=make_reader("c"), clock=clock,
                    wall=lambda: clock.t + 1e9)
    reads = {"/a": 0, "/b": 0}
    cpu = 0
    for _ in range(300):  # 300 s of 1 s ticks: /a busy at one core, /b idle
        cpu += 1_000_000_000
        _write(tmp, "/a", cpu, 100)
        col.tick()
        for c, s, _ in col.latest():
            if s.monotonic == clock.t:
                reads[c.id] += 1
        clock.t += 1.0
    assert reads["/a"] == 300  # changing every second: read every second
    assert 300 / 8 <= reads["/b"] <= 300 / 8 + 6  # idle: backed off to max_interval
    a = col.samples("/a")
    assert len(a) == 121 and a[-1].monotonic - a[0].monotonic == 120.0  # 2 minutes kept
    latest = {c.id: r for c, _, r in col.latest() if r is not None}
    assert latest["/a"].cpu_cores == pytest.approx(1.0)
    assert latest["/b"].cpu_cores == 0.0
    for i in range(20):  # /b becomes busy: noticed within max_interval, then read every second
        _write(tmp, "/b", 5 + i, 100)
        col.tick()
        clock.t += 1.0
    assert sum(1 for s in col.samples("/b") if s.monotonic >= clock.t - 10) == 10
    col.stop()


def test_discovery_removal_closes_descriptors(tree) -> None:
    tmp, h = tree
    for p in ("/a", "/b"):
        _write(tmp, p, 1, 1)
    current = ["/a", "/b"]
    reader = make_reader("c")
    col = Collector(discover=CgroupSource(lambda: list(current)), hierarchy=h, reader=reader,
                    discover_interval=0.0)
    col.tick()
    assert {c.id for c in col.containers()} == {"/a", "/b"}
    per = reader.open_fds() // 2
    current.remove("/a")
    col.tick()
    assert [c.id for c in col.containers()] == ["/b"] and reader.open_fds() == per
    col.stop()
    assert reader.open_fds() == 0


def test_malformed_source_entries_are_skipped(tree) -> None:
    tmp, h = tree
    _write(tmp, "/ok", 1, 1)
    src = CgroupSource(lambda: [{"path": "/ok", "name": "web", "labels": {"app": "x"}}, {"name": "no-path"},
                                {"path": "/ok2", "pid": "notanint"}, "/missing"])
    col = Collector(discover=src, hierarchy=h, reader=make_reader("python"))
    col.tick()
    assert [c.name for c in col.containers()] == ["web"]  # /missing has no cgroup: skipped too
    assert col.containers()[0].label_map == {"app": "x"}
    col.stop()


def test_api_endpoints_and_metric_names(tree) -> None:
    tmp, h = tree
    _write(tmp, "/pod/web", 2_000_000_000, 4096)
    _write(tmp, "/pod", 3_000_000_000, 8192)
    pod = {"io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.uid": "u1"}
    src = CgroupSource(lambda: [{"path": "/pod/web", "name": "web", "id": "f" * 64, "image": "busybox",
                                 "labels": {**pod, "io.kubernetes.container.name": "web", "other": "x"}},
                                {"path": "/pod", "name": "shop/web-1", "labels": pod}])
    col = Collector(discover=src, hierarchy=h, reader=make_reader("c"))
    col.tick()
    api = StatsAPI(col)
    assert api.handle("/healthz").status == 200
    machine = json.loads(api.handle("/api/v2.0/machine").body)
    assert machine["num_cores"] >= 1 and machine["memory_capacity"] > 0
    for name in ("web", "f" * 12, "pod/web"):
        r = api.handle(f"/api/v2.0/stats/{name}")
        assert r.status == 200, name
        body = json.loads(r.body)
        assert body["web"][0]["cpu"]["usage_seconds"] == 2.0 and body["web"][0]["memory"]["usage_bytes"] == 4096
        assert (body["web"][0]["namespace"], body["web"][0]["pod"], body["web"][0]["container"]) == ("shop", "web-1", "web")
        assert body["web"][0]["labels"]["other"] == "x"
    pod_json = json.loads(api.handle("/api/v2.0/stats/shop/web-1").body)["shop/web-1"][0]
    assert (pod_json["namespace"], pod_json["pod"], pod_json["container"], pod_json["id"]) == ("shop", "web-1", "", "/pod")
    assert api.handle("/api/v2.0/stats/nope").status == 404
    assert api.handle("/api/v2.0/stats/web?count=0").status == 400
    assert api.handle("/nope").status == 404
    text = api.handle("/metrics").body.decode()
    # kubelet's /metrics/cadvisor labels: namespace, pod, container ("" on the pod's cgroup)
    assert ('container_cpu_usage_seconds_total{container="web",cpu="cpu00",id="/pod/web",image="busybox",name="web",'
            'namespace="shop",pod="web-1"} 2.0') in text
    assert ('container_memory_usage_bytes{container="web",id="/pod/web",image="busybox",name="web",namespace="shop",'
            'pod="web-1"} 4096.0') in text
    assert 'container_memory_usage_bytes{container="",id="/pod",image="",name="shop/web-1",namespace="shop",pod="web-1"} 8192.0' in text
    assert "other=" not in text  # other labels stay off the series, as kubelet's
    assert "container_memory_working_set_bytes{" in text and "container_last_seen{" in text
    assert "machine_cpu_cores " in text
    # and over real HTTP on loopback
    handle = serve(col, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(handle.url + "/api/v2.0/stats") as resp:
            assert "web" in json.loads(resp.read())
    finally:
        handle.stop()
    col.stop()


def test_failing_discovery_keeps_tracked_containers(tree) -> None:
    from stats.discovery import DiscoveryError

    tmp, h = tree
    _write(tmp, "/a", 1, 1)
    state = {"fail": False}

    class Flaky:
        def list(self) -> list[Container]:
            if state["fail"]:
                raise DiscoveryError("docker: down")
            return [Container(id="/a", name="a", cgroup_path="/a")]

    col = Collector(discover=Flaky(), hierarchy=h, reader=make_reader("c"), discover_interval=0.0)
    col.tick()
    state["fail"] = True
    col.tick()
    assert [c.id for c in col.containers()] == ["/a"] and col.discovery_error == "docker: down"
    assert StatsAPI(col).handle("/healthz").status == 200
    col.stop()


def test_a_failing_source_keeps_its_containers_and_only_its_own(tree) -> None:
    """Two sources: while one fails, what it reported last stays tracked; the other's changes
    still apply (a dockerd restart must not drop the pods, nor keep a removed cgroup)."""
    from stats.discovery import DiscoveryError

    tmp, h = tree
    for p in ("/a", "/b", "/c"):
        _write(tmp, p, 1, 1)
    state = {"fail": False}
    other = ["/b", "/c"]

    class Flaky:
        def list(self) -> list[Container]:
            if state["fail"]:
                raise DiscoveryError("docker: down")
            return [Container(id="/a", name="a", cgroup_path="/a")]

    col = Collector(discover=[Flaky(), CgroupSource(lambda: list(other))], hierarchy=h, reader=make_reader("c"),
                    discover_interval=0.0)
    col.tick()
    assert {c.id for c in col.containers()} == {"/a", "/b", "/c"}
    state["fail"] = True
    other.remove("/c")
    col.tick()
    assert {c.id for c in col.containers()} == {"/a", "/b"} and col.discovery_error == "docker: down"
    state["fail"] = False
    col.tick()
    assert {c.id for c in col.containers()} == {"/a", "/b"} and col.discovery_error is None
    col.stop()


def test_healthz_is_503_when_discovery_fails_and_only_the_root_is_tracked(tree) -> None:
    from stats.discovery import DiscoveryError, RootSource

    tmp, h = tree
    _write(tmp, "/", 1, 1)  # the fake tree's hierarchy roots

    class Down:
        def list(self) -> list[Container]:
            raise DiscoveryError("docker: down")

    col = Collector(discover=[RootSource(pid=None), Down()], hierarchy=h, reader=make_reader("c"))
    col.tick()
    assert [c.id for c in col.containers()] == ["/"]
    r = StatsAPI(col).handle("/healthz")
    assert r.status == 503 and b"docker: down" in r.body
    col.stop()


def test_failing_cgroup_callable_is_a_discovery_error(tree) -> None:
    tmp, h = tree
    _write(tmp, "/a", 1, 1)
    calls = {"n": 0}

    def entries() -> list[str]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise FileNotFoundError("sandbox.json vanished")
        return ["/a"]

    col = Collector(discover=CgroupSource(entries, source="pods"), hierarchy=h, reader=make_reader("c"),
                    discover_interval=0.0)
    col.tick()
    col.tick()  # raises inside the source: an error for that source, the container kept
    assert [c.id for c in col.containers()] == ["/a"]
    assert col.discovery_error == "pods: cannot list cgroups: FileNotFoundError: sandbox.json vanished"
    col.stop()
