"""Pods in the stats collector, end to end on the real kernel: the agent's own factories
(`netplane.agent.wiring`: node runtime + stats) over real pods of both runtimes, scraped over
HTTP as Prometheus text (promtool-checked) and JSON.

- kubelet's /metrics/cadvisor labels `namespace`, `pod`, `container` on every series, from the
  io.kubernetes.* labels: the container's name on its own cgroup, "" on the pod's cgroup
  (pod<uid>), "POD" on Docker's sandbox, all "" on the root cgroup `/`, which is always there;
- the pod-level cgroup holds the pod's usage (a container fills memory; the pod shows it);
- a removed pod disappears; another node's containers on the same dockerd never show.

Nothing is faked: a NamespaceRuntime with its own state dir and cgroup roots (np-shim and
pause compiled here, as tests/kernel/test_ns_runtime.py does), a DockerRuntime under its own
node name (`npt-stp-<hex>`, also its cgroup directory below /netplane). Each test removes
exactly the containers, processes and cgroups it made, also when it fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import docker
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from netplane.agent import wiring
from netplane.agent.component import AgentContext, HostOverlay
from netplane.cgroups import cgroup2_root
from netplane.store import EtcdStore, Keys
from orchestrator.node.docker_runtime import (
    DockerRuntime,
    cgroup_mounts,
    container_name,
    remove_cgroup_tree,
)
from orchestrator.node.runtime import ContainerConfig, PodRef, SandboxConfig
from stats.collector import Collector
from stats.discovery import DockerSource, kube_labels
from stats.service import StatsService
from tests.cgroup_trees import kill_and_rmdir
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
V2_MOUNT = cgroup2_root()
BUSYBOX = "netplane/busybox:latest"
MiB = 1 << 20
FILL = "x = b'x' * (64 << 20); print('filled', flush=True); import time; time.sleep(600)"

Series = dict[str, list[tuple[dict[str, str], float]]]


# ---------------------------------------------------------------------------- helpers
class StandInOverlay:
    """The overlay's read-only face holding one snapshot (the node runtime reads its subnet
    and bridge when built; it is never started here)."""

    def __init__(self) -> None:
        net = IPv4Network("10.244.7.0/24")
        self.view = HostOverlay(node_ip=IPv4Address("10.98.1.2"), underlay_iface="eth0",
                                network=IPv4Network("10.244.0.0/16"), subnet=net, device="np.1",
                                device_ip=net.network_address, mtu=1450, bridge="np0",
                                gateway=IPv4Interface((net.network_address + 1, net.prefixlen)))

    def wait_ready(self, stop: threading.Event) -> bool:
        return True

    def current(self) -> HostOverlay:
        return self.view

    def on_subnet_change(self, listener: Callable[[HostOverlay], None]) -> Callable[[], None]:
        return lambda: None


def context(store: EtcdStore, keys: Keys) -> AgentContext:
    return AgentContext(store=store, keys=keys, node="h1", overlay=StandInOverlay(), registry=CollectorRegistry())


def scrape(url: str) -> tuple[str, Series]:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    series: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            series.setdefault(s.name, []).append((s.labels, s.value))
    return text, series


def matching(series: Series, name: str, **want: str) -> list[tuple[dict[str, str], float]]:
    """The series of metric `name` whose labels include `want`."""
    return [(labels, v) for labels, v in series.get(name, []) if all(labels.get(k) == w for k, w in want.items())]


def one(series: Series, name: str, **want: str) -> tuple[dict[str, str], float] | None:
    """The one series of metric `name` whose labels include `want` (None when there is none)."""
    hits = matching(series, name, **want)
    assert len(hits) <= 1, hits
    return hits[0] if hits else None


def stats_json(url: str) -> dict[str, dict[str, Any]]:
    """/api/v2.0/stats as {cgroup path (the metrics' id): newest sample}."""
    body = json.loads(urllib.request.urlopen(url + "/api/v2.0/stats", timeout=5).read())
    return {samples[-1]["cgroup"]: samples[-1] for samples in body.values() if samples}


def promtool_ok(text: str) -> None:
    check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, check=False)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr


def assert_root(series: Series, data: dict[str, dict[str, Any]]) -> None:
    """`/` is reported with its own usage and no pod labels, on the metrics and in the JSON."""
    root = one(series, "container_memory_usage_bytes", id="/")
    assert root is not None, "no root cgroup series"
    assert root[0] == {"id": "/", "name": "/", "image": "", "namespace": "", "pod": "", "container": ""}
    assert root[1] > 64 * MiB  # the whole machine, our 64 MiB pod included
    cpu = [v for labels, v in series["container_cpu_usage_seconds_total"] if labels["id"] == "/"]
    assert cpu and sum(cpu) > 0
    assert (data["/"]["namespace"], data["/"]["pod"], data["/"]["container"]) == ("", "", "")


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("bin")
    for src in ("np-shim", "pause"):
        subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-o", str(d / src),
                        str(ROOT / "native" / f"{src}.c")], check=True)
    return d / "np-shim", d / "pause"


@pytest.fixture
def owner() -> str:
    """This test's node runtime id: the cgroup directory /netplane/<owner> (v1) and Docker's
    netplane.io/node label."""
    return f"npt-stp-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def host_v2(owner: str) -> Iterator[Path]:
    """A cgroup v2 directory standing in for the host's subtree (the lab host's): the agent's
    `--stats-cgroup` and the namespace runtime's v2 cgroup. Removed with what is left in it."""
    d = V2_MOUNT / f"{owner}-host"
    d.mkdir()
    try:
        yield d
    finally:
        kill_and_rmdir(d)


def rel_v2(d: Path) -> str:
    return "/" + str(d.relative_to(V2_MOUNT))


# ---------------------------------------------------------------------------- namespaces
def test_namespace_runtime_pods_carry_kubelet_labels(store: EtcdStore, keys: Keys, tmp_path: Path,
                                                     binaries: tuple[Path, Path], owner: str, host_v2: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETPLANE_SHIM", str(binaries[0]))
    monkeypatch.setenv("NETPLANE_PAUSE", str(binaries[1]))
    ctx = context(store, keys)
    # stats made first, the node runtime second: the link works in either order
    stats = wiring.stats(listen="127.0.0.1:0", sources=("cgroup",), cgroups=(rel_v2(host_v2),))(ctx)
    assert isinstance(stats, StatsService)
    node = wiring.node_runtime(runtime="namespaces", state_dir=str(tmp_path / "node"), runtime_id=owner,
                               cgroup=str(host_v2))(ctx)
    rt = node.runtime  # type: ignore[attr-defined]
    v1_trees = [r.base for r in rt.roots if r.version == 1]  # /sys/fs/cgroup/<ctrl>/netplane/<owner>
    uid = uuid.uuid4().hex
    try:
        stats.start()
        url = stats.url
        box = rt.run_sandbox(SandboxConfig(PodRef(uid, "web-1", "shop"), resolv_conf="nameserver 10.96.0.10\n"))
        app = rt.create_and_start(box, ContainerConfig("app", "busybox", command=[sys.executable, "-c", FILL]))
        wait_for(lambda: b"filled" in b"".join(rt.logs(app.id)), 15, "the app to fill 64 MiB")
        pod_ids = {f"/netplane/{owner}/pod{uid}", f"{rel_v2(host_v2)}/pod{uid}"}  # v1 memory's, else v2's

        def filled() -> Series | None:
            _, s = scrape(url)
            hit = one(s, "container_memory_usage_bytes", container="app", pod="web-1")
            pod = one(s, "container_memory_usage_bytes", container="", pod="web-1")
            return s if hit and pod and hit[1] >= 64 * MiB and pod[1] >= 64 * MiB else None

        wait_for(filled, 20, "the pod's and the app's 64 MiB on /metrics")
        text, series = scrape(url)
        promtool_ok(text)
        data = stats_json(url)
        c = one(series, "container_memory_usage_bytes", container="app", pod="web-1")
        p = one(series, "container_memory_usage_bytes", container="", pod="web-1")
        sandbox = one(series, "container_memory_usage_bytes", container="POD", pod="web-1")
        assert c is not None and p is not None and sandbox is not None
        assert p[0]["id"] in pod_ids and c[0]["id"] == p[0]["id"] + "/app" and sandbox[0]["id"] == p[0]["id"] + "/POD"
        assert (c[0]["namespace"], c[0]["image"], p[0]["namespace"], p[0]["image"]) == ("shop", "busybox", "shop", "")
        for labels in (c[0], p[0]):  # the cgroup a series names is the pod's, on this host
            assert any(Path(m, labels["id"].lstrip("/")).is_dir() for m in [*(str(r.mount) for r in rt.roots)])
        # every container_* series carries the three (Prometheus: one label set per family)
        assert all({"namespace", "pod", "container"} <= set(labels)
                   for name, rows in series.items() if name.startswith("container_") for labels, _ in rows)
        cpu = one(series, "container_cpu_usage_seconds_total", container="app", pod="web-1", cpu="cpu00")
        assert cpu is not None and cpu[0]["namespace"] == "shop"
        # the JSON says the same
        assert (data[c[0]["id"]]["namespace"], data[c[0]["id"]]["pod"], data[c[0]["id"]]["container"]) == \
            ("shop", "web-1", "app")
        assert data[c[0]["id"]]["labels"]["io.kubernetes.pod.uid"] == uid
        assert (data[p[0]["id"]]["pod"], data[p[0]["id"]]["container"]) == ("web-1", "")
        host = data[rel_v2(host_v2)]  # the flags' cgroup source still reports the host's subtree
        assert (host["namespace"], host["pod"], host["container"]) == ("", "", "")
        assert_root(series, data)

        # the pod goes: its series go with it at the next discovery; the root stays
        rt.stop_container(app.id, 2)
        rt.remove_container(app.id)
        rt.stop_sandbox(box.id)
        rt.remove_sandbox(box.id)
        def gone() -> bool:
            _, s = scrape(url)
            return not matching(s, "container_last_seen", pod="web-1") and bool(matching(s, "container_last_seen", id="/"))

        wait_for(gone, 15, "the removed pod's series to go")
    finally:
        stats.stop()
        try:
            rt.sweep(set())
        finally:
            for tree in v1_trees:
                kill_and_rmdir(tree)


# ---------------------------------------------------------------------------- Docker
def _docker() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.info()
    except docker.errors.DockerException as e:
        pytest.fail(f"docker info fails, no dockerd to test against: {e}")
    return client


def remove_node(client: docker.DockerClient, name: str) -> None:
    """Exactly the containers labelled as this node's, then its cgroup directories."""
    for c in client.containers.list(all=True, filters={"label": f"netplane.io/node={name}"}):
        c.remove(force=True)
    for mount in cgroup_mounts():
        remove_cgroup_tree(mount / "netplane" / name)


@pytest.mark.docker
def test_docker_runtime_pods_carry_kubelet_labels(store: EtcdStore, keys: Keys, tmp_path: Path, owner: str,
                                                  host_v2: Path) -> None:
    client = _docker()
    other = f"{owner}-other"  # another node on the same dockerd (the lab's hosts share one)
    ctx = context(store, keys)
    node = wiring.node_runtime(runtime="docker", state_dir=str(tmp_path / "node"), runtime_id=owner)(ctx)
    rt: DockerRuntime = node.runtime  # type: ignore[attr-defined]
    # the node runtime made first this time, stats second
    stats = wiring.stats(listen="127.0.0.1:0", sources=("cgroup",), cgroups=(rel_v2(host_v2),))(ctx)
    assert isinstance(stats, StatsService)
    col: Collector | None = None
    try:
        neighbour = DockerRuntime(other, client=client, state_dir=tmp_path / "other")
        ref, intruder = PodRef(uuid.uuid4().hex, "web-1", "shop"), PodRef(uuid.uuid4().hex, "intruder", "shop")
        box = rt.run_sandbox(SandboxConfig(ref))
        app = rt.create_and_start(box, ContainerConfig(
            "app", BUSYBOX, command=("sh", "-c", "head -c 50331648 /dev/zero > /dev/shm/x; echo filled; exec sleep 600")))
        neighbour.run_sandbox(SandboxConfig(intruder))
        wait_for(lambda: b"filled" in b"".join(rt.logs(app.id)), 20, "the app to fill 48 MiB")
        stats.start()
        url = stats.url
        pod_id = f"/netplane/{owner}/pod{ref.uid}"

        def filled() -> Series | None:
            _, s = scrape(url)
            hit = one(s, "container_memory_usage_bytes", container="app", pod="web-1")
            pod = one(s, "container_memory_usage_bytes", id=pod_id)
            return s if hit and pod and hit[1] >= 48 * MiB and pod[1] >= 48 * MiB else None

        wait_for(filled, 20, "the pod's and the app's 48 MiB on /metrics")
        text, series = scrape(url)
        promtool_ok(text)
        data = stats_json(url)
        c = one(series, "container_memory_usage_bytes", container="app", pod="web-1")
        s = one(series, "container_memory_usage_bytes", container="POD", pod="web-1")
        p = one(series, "container_memory_usage_bytes", id=pod_id)
        assert c is not None and s is not None and p is not None
        assert c[0] == {"id": f"{pod_id}/{app.id}", "name": container_name(ref, "app", 0), "image": BUSYBOX,
                        "namespace": "shop", "pod": "web-1", "container": "app"}
        assert s[0]["id"] == f"{pod_id}/{box.id}" and s[0]["namespace"] == "shop"
        assert p[0] == {"id": pod_id, "name": "shop/web-1", "image": "", "namespace": "shop", "pod": "web-1",
                        "container": ""}
        assert (data[pod_id]["namespace"], data[pod_id]["pod"], data[pod_id]["container"]) == ("shop", "web-1", "")
        app_json = data[f"{pod_id}/{app.id}"]
        assert (app_json["namespace"], app_json["pod"], app_json["container"]) == ("shop", "web-1", "app")
        assert app_json["labels"]["netplane.io/node"] == owner
        # network from the pod's namespace: Docker's NetworkMode none has only lo there
        assert [i["name"] for i in data[pod_id]["network"]] == ["lo"]
        # only this node's containers: the neighbour's pod on the same dockerd is not ours
        assert all(labels.get("pod") != "intruder" for labels, _ in series["container_last_seen"])
        assert_root(series, data)
        stats.stop()

        # a plain Docker source (`--stats-source docker`: every container of the machine)
        # labels them from their Docker labels too, pods' cgroups included
        col = Collector(discover=DockerSource(client=client))
        col.discover_now()
        found = {c.id: c for c in col.containers()}
        assert kube_labels(found[app.id]) == ("shop", "web-1", "app")
        assert kube_labels(found[box.id]) == ("shop", "web-1", "POD")
        assert kube_labels(found[pod_id]) == ("shop", "web-1", "")
        assert kube_labels(found[f"/netplane/{other}/pod{intruder.uid}"]) == ("shop", "intruder", "")
    finally:
        stats.stop()
        if col is not None:
            col.stop()
        try:
            for name in (owner, other):
                remove_node(client, name)
        finally:
            rt.close()
            client.close()
