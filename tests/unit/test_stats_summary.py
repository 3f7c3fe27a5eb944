"""`stats.summary` (kubelet's Summary from the collector's samples) and the metrics API's
quantities (`orchestrator.apiserver.metrics`): what `kubectl top` ends up printing."""

from __future__ import annotations

from orchestrator.apiserver.metrics import cpu_quantity, memory_quantity, pod_metrics
from stats.cgroups.model import CgroupStats, CpuStats, MemoryStats
from stats.collector import Sample
from stats.derive import rates
from stats.discovery import Container
from stats.summary import cgroup_key, summary


def _stats(key: str, cpu_ns: int, ws: int) -> CgroupStats:
    return CgroupStats(key=key, cpu=CpuStats(cpu_ns, cpu_ns, 0, (), 0, 0, 0),
                       memory=MemoryStats(ws + 100, ws + 100, ws, ws, 100, 0, 0, 0, 0, 7, 1),
                       io=None, pids=None, network=None)


def _entry(path: str, labels: dict[str, str], ns_per_s: int, ws: int, *, once: bool = False) -> tuple:
    c = Container(id=path, name=path, cgroup_path=path, labels=tuple(labels.items()))
    prev, cur = _stats(path, 1_000_000_000, ws), _stats(path, 1_000_000_000 + ns_per_s * 2, ws)
    return c, Sample(1_764_748_800.0, 12.0, cur), None if once else rates(prev, 10.0, cur, 12.0)


def _pod(name: str, container: str | None) -> dict[str, str]:
    out = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": "u-" + name}
    if container is not None:
        out["io.kubernetes.container.name"] = container
    return out


def test_summary_of_node_pods_and_containers() -> None:
    latest = [
        _entry("/", {}, 900_000_000, 5 << 30),
        _entry("/netplane/lab/h1", {}, 300_000_000, 1 << 30),  # the lab host's own subtree
        _entry("/netplane/lab/h1/podu-web", _pod("web", None), 250_000_000, 3 << 20),
        _entry("/netplane/lab/h1/podu-web/POD", _pod("web", "POD"), 0, 1 << 20),
        _entry("/netplane/lab/h1/podu-web/b", _pod("web", "b"), 50_000_000, 1 << 20),
        _entry("/netplane/lab/h1/podu-web/a", _pod("web", "a"), 200_000_000, 2 << 20),
        _entry("/netplane/lab/h1/podu-new/c", _pod("new", "c"), 0, 4096, once=True),
    ]
    s = summary("h1", latest, node_cgroup="/sys/fs/cgroup/netplane/lab/h1/", start_time=1_764_748_000.0)
    node = s["node"]
    assert (node["nodeName"], node["cpu"]["usageNanoCores"], node["memory"]["workingSetBytes"]) == \
        ("h1", 300_000_000, 1 << 30)  # the host's cgroup, not the machine's root
    assert node["startTime"] == "2025-12-03T07:46:40Z" and node["cpu"]["windowSeconds"] == 2.0
    new, web = s["pods"]
    assert web["podRef"] == {"name": "web", "namespace": "default", "uid": "u-web"}
    assert web["cpu"]["usageNanoCores"] == 250_000_000  # the pod-level cgroup
    assert [(c["name"], c["cpu"]["usageNanoCores"], c["memory"]["workingSetBytes"]) for c in web["containers"]] == \
        [("a", 200_000_000, 2 << 20), ("b", 50_000_000, 1 << 20)]  # sorted; the sandbox is not a container
    assert "usageNanoCores" not in new["containers"][0]["cpu"]  # one sample: no rate yet
    assert summary("h1", latest)["node"]["cpu"]["usageNanoCores"] == 900_000_000  # no node cgroup: the root
    assert summary("h1", latest, node_cgroup="/elsewhere")["node"]["cpu"]["usageNanoCores"] == 900_000_000
    hybrid = [(c, Sample(x.timestamp, x.monotonic, CgroupStats(x.stats.key, x.stats.cpu, None, None, None, None)), r)
              if c.cgroup_path == "/netplane/lab/h1" else (c, x, r) for c, x, r in latest]
    node = summary("h1", hybrid, node_cgroup="/netplane/lab/h1")["node"]  # the host's cgroup has no memory
    assert (node["cpu"]["usageNanoCores"], node["memory"]["workingSetBytes"]) == (300_000_000, 5 << 30)
    assert cgroup_key("/sys/fs/cgroup") == "/" and cgroup_key("/sys/fs/cgroupx/a") == "/sys/fs/cgroupx/a"

    pod = {"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}}
    m = pod_metrics(pod, web)
    assert m is not None and m["containers"] == [{"name": "a", "usage": {"cpu": "200m", "memory": "2Mi"}},
                                                 {"name": "b", "usage": {"cpu": "50m", "memory": "1Mi"}}]
    assert m["window"] == "2s" and m["metadata"]["labels"] == {"app": "web"}
    assert pod_metrics(pod, new) is None  # a container without a rate: the pod is left out (metrics-server)


def test_quantities_as_metrics_server_writes_them() -> None:
    assert [cpu_quantity(n) for n in (0, 2_000_000_000, 250_000_000, 1_500_000, 1_234_567)] == \
        ["0", "2", "250m", "1500u", "1234567n"]
    assert [memory_quantity(n) for n in (0, 1024, 3 << 20, 12345, 5 << 30, 1536, 1536 << 10)] == \
        ["0", "1Ki", "3Mi", "12345", "5Gi", "1536", "1536Ki"]
