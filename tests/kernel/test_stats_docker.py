"""Our numbers for a real Docker container agree with Docker's own stats API.

Uses the running dockerd and the `netplane/busybox:latest` image (docker import), creates one
container with a unique name and removes it afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from stats.cgroups import make_reader
from stats.collector import Collector
from stats.discovery import DockerSource

pytestmark = pytest.mark.docker

MiB = 1 << 20


@pytest.fixture
def container() -> Iterator[Any]:
    client = docker.from_env()
    name = f"npt-stats-{uuid.uuid4().hex[:8]}"
    c = client.containers.run(
        "netplane/busybox:latest",
        ["sh", "-c", "head -c 83886080 /dev/zero > /data/x; echo filled; while :; do :; done"],
        name=name, detach=True, network_mode="none", tmpfs={"/data": "size=200m"},
        labels={"netplane.test": "stats"},
    )
    try:
        deadline = time.monotonic() + 20
        while b"filled" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"filled" in c.logs(), c.logs()
        c.reload()
        yield c
    finally:
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass  # the test removed it itself
        client.close()


def test_collector_agrees_with_docker_stats(container: Any) -> None:
    api = container.client.api
    col = Collector(discover=DockerSource(client=container.client), reader=make_reader("c"))
    try:
        col.discover_now()
        found = col.find(container.name)
        assert found is not None
        assert found.id == container.id and found.image == "netplane/busybox:latest"
        assert found.label_map == {"netplane.test": "stats"}
        assert found.cgroup_path.endswith(container.id) and found.pid == container.attrs["State"]["Pid"]
        spec = next(t.spec for t in col._tracked.values() if t.container.id == container.id)
        reader = col.reader
        assert reader is not None

        def both() -> tuple[dict[str, Any], Any, float]:
            d = api.stats(container.id, stream=False, one_shot=True)
            ours = reader.read(spec)
            return d, ours, time.monotonic()

        d0, o0, t0 = both()
        time.sleep(2.0)
        d1, o1, t1 = both()
        # memory: Docker's API reports memory.usage_in_bytes as "usage" on cgroup v1
        assert abs(o1.memory.usage_bytes - d1["memory_stats"]["usage"]) <= 0.05 * d1["memory_stats"]["usage"]
        assert o1.memory.usage_bytes >= 80 * MiB  # the 80 MiB file in the container's tmpfs
        assert o1.memory.max_usage_bytes >= o1.memory.usage_bytes
        # CPU over the same window
        dd = d1["cpu_stats"]["cpu_usage"]["total_usage"] - d0["cpu_stats"]["cpu_usage"]["total_usage"]
        do = o1.cpu.usage_ns - o0.cpu.usage_ns
        assert abs(do - dd) <= 0.10 * dd, (do, dd)
        assert 0.2 <= do / 1e9 / (t1 - t0) <= 1.1  # about one core (less when the host is loaded)
        assert o1.pids.current == d1["pids_stats"]["current"]
        assert o1.network is not None and [i.name for i in o1.network] == ["lo"]  # --network none
        # and through the collector's own loop + rates
        col.tick()
        time.sleep(1.0)
        col.tick()
        _, sample, r = next(x for x in col.latest() if x[0].id == container.id)
        assert r is not None and r.cpu_cores is not None and 0.2 <= r.cpu_cores <= 1.1
        assert sample.stats.ok, sample.stats.errors
    finally:
        col.stop()


def test_removed_container_disappears(container: Any) -> None:
    col = Collector(discover=DockerSource(client=container.client), reader=make_reader("c"),
                    discover_interval=0.0)
    try:
        col.tick()
        assert col.find(container.name) is not None
        fds = col.reader.open_fds()  # type: ignore[union-attr]
        assert fds > 0
        container.remove(force=True)
        col.tick()
        assert col.find(container.name) is None
        assert col.reader.open_fds() < fds  # type: ignore[union-attr]
    finally:
        col.stop()
