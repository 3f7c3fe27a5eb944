"""Pure parts of stats: hierarchy detection from mountinfo, spec building, rates, client rows,
--listen / --host parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from netplane.errors import ConfigError, NotFoundError
from stats.cgroups import CgroupStats, CpuStats, Hierarchy, Kind, MemoryStats, NetInterface
from stats.client import base_url, rows
from stats.derive import fingerprint, rates
from stats.server import parse_listen

HYBRID = """\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw shared:13 - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/pids rw shared:14 - cgroup cgroup rw,pids
"""
V2 = "35 30 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"


def test_mountinfo_hybrid_and_v2() -> None:
    h = Hierarchy.parse(HYBRID, read_controllers=False)
    assert h.mode == "hybrid"
    assert h.v1_mount("cpu") == h.v1_mount("cpuacct") == "/sys/fs/cgroup/cpu,cpuacct"
    assert h.v1_mount("memory") == "/sys/fs/cgroup/memory" and h.v1_mount("blkio") is None
    assert h.v2 == "/sys/fs/cgroup/unified"
    v2 = Hierarchy.parse(V2, read_controllers=False)
    assert v2.mode == "v2" and v2.v1 == () and v2.v2 == "/sys/fs/cgroup"


def _tree(tmp: Path, layout: dict[str, list[str]], path: str) -> None:
    for mount, files in layout.items():
        d = tmp / mount / path.strip("/")
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            (d / f).write_text("0\n")


def test_spec_on_a_v2_host_with_controllers(tmp_path: Path) -> None:
    _tree(tmp_path, {"v2": ["cpu.stat", "memory.current", "memory.stat", "memory.events", "io.stat",
                            "pids.current", "pids.max", "cgroup.procs", "cgroup.threads"]}, "/pod/a")
    h = Hierarchy(v1=(), v2=str(tmp_path / "v2"), v2_controllers=frozenset({"cpu", "memory", "io", "pids"}))
    spec = h.spec("/pod/a", pid=42)
    kinds = [k for k, _ in spec.files]
    # memory.peak and memory.swap.current do not exist in this tree: left out, not errors
    assert kinds == [Kind.V2_CPU_STAT, Kind.V2_MEM_CURRENT, Kind.V2_MEM_STAT, Kind.V2_MEM_EVENTS,
                     Kind.V2_IO_STAT, Kind.PIDS_CURRENT, Kind.PIDS_MAX, Kind.PROCS, Kind.NETDEV]
    assert dict(spec.files)[Kind.NETDEV] == "/proc/42/net/dev"
    assert spec.key == "/pod/a"


def test_spec_on_a_hybrid_host_prefers_v1_per_controller(tmp_path: Path) -> None:
    _tree(tmp_path, {"cpuacct": ["cpuacct.usage_percpu", "cpuacct.stat", "cgroup.procs", "tasks"],
                     "memory": ["memory.usage_in_bytes", "memory.stat", "cgroup.procs"],
                     "v2": ["cpu.stat", "cgroup.procs", "cgroup.threads"]}, "/c")
    h = Hierarchy(v1=(("cpuacct", str(tmp_path / "cpuacct")), ("memory", str(tmp_path / "memory"))),
                  v2=str(tmp_path / "v2"), v2_controllers=frozenset())
    kinds = [k for k, _ in h.spec("/c").files]
    assert kinds == [Kind.V1_CPUACCT_PERCPU, Kind.V1_CPUACCT_STAT, Kind.V1_MEM_USAGE, Kind.V1_MEM_STAT,
                     Kind.PROCS, Kind.THREADS]
    assert [k for k, _ in h.spec("/c", version=2).files] == [Kind.V2_CPU_STAT, Kind.PROCS, Kind.THREADS]
    with pytest.raises(NotFoundError):
        h.spec("/missing")


def _st(cpu_ns: int, rx: int, mem: int = 100) -> CgroupStats:
    return CgroupStats(
        key="k",
        cpu=CpuStats(usage_ns=cpu_ns, user_ns=cpu_ns // 2, system_ns=cpu_ns // 2, per_cpu_ns=(),
                     nr_periods=0, nr_throttled=0, throttled_ns=0),
        memory=MemoryStats(mem, mem, mem, 0, 0, 0, 0, 0, 0, 0, 0),
        io=(), pids=None,
        network=(NetInterface("lo", 999, 0, 0, 0, 999, 0, 0, 0), NetInterface("eth0", rx, 0, 0, 0, 0, 0, 0, 0)),
    )


def test_rates_and_counter_reset() -> None:
    r = rates(_st(1_000_000_000, 1000), 10.0, _st(3_000_000_000, 5000), 12.0)
    assert r.cpu_cores == pytest.approx(1.0) and r.cpu_user_cores == pytest.approx(0.5)
    assert r.rx_bytes_per_second == pytest.approx(2000.0)  # lo excluded
    assert r.io_read_bytes_per_second == 0.0
    reset = rates(_st(3_000_000_000, 5000), 12.0, _st(1_000, 10), 13.0)
    assert reset.cpu_cores is None and reset.rx_bytes_per_second is None
    assert fingerprint(_st(1, 2)) == fingerprint(_st(1, 2)) != fingerprint(_st(1, 2, mem=7))


def test_client_rows_sorted_by_cpu() -> None:
    payload = {
        "idle": [{"id": "a" * 64, "memory": {"usage_bytes": 1048576, "working_set_bytes": 0},
                  "pids": {"current": 1}, "rates": {"cpu_cores": 0.0}}],
        "busy": [{"id": "b" * 64, "memory": {"usage_bytes": 2097152}, "pids": {"current": 3},
                  "rates": {"cpu_cores": 0.97, "rx_bytes_per_second": 2048.0}}],
        "new": [{"id": "c" * 64}],
        "broken": "not a list",
    }
    out = rows(payload)  # type: ignore[arg-type]
    assert [r["name"] for r in out] == ["busy", "idle", "new"]
    assert out[0]["cpu%"] == 97.0 and out[0]["memory"] == "2.0Mi" and out[0]["rx/s"] == "2.0Ki"
    assert out[0]["id"] == "b" * 12 and out[2]["cpu%"] is None


def test_host_and_listen_parsing() -> None:
    assert base_url("10.0.0.1") == "http://10.0.0.1:4194"
    assert base_url("h:8080") == "http://h:8080"
    assert base_url("http://x:1/") == "http://x:1"
    assert base_url("::1") == "http://[::1]:4194"
    with pytest.raises(ConfigError):
        base_url("h:port")
    assert parse_listen("0.0.0.0:4194") == ("0.0.0.0", 4194)
    assert parse_listen(":0") == ("127.0.0.1", 0)
    for bad in ("4194", "h:x", "h:70000"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def test_pod_cgroups_from_kubernetes_labelled_containers() -> None:
    """The pod<uid> parent of a pod's containers is reported once, labelled with the pod and no
    container, with the sandbox's pid; containers not in such a parent add nothing."""
    from stats.discovery import Container, kube_labels, pod_cgroups

    def c(cid: str, path: str, pid: int, **labels: str) -> Container:
        return Container(id=cid, name=cid, cgroup_path=path, pid=pid, source="docker",
                         labels=tuple(sorted(labels.items())))

    pod = {"io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.uid": "u1"}
    app = c("a", "/netplane/n1/podu1/a", 11, **pod, **{"io.kubernetes.container.name": "app"})
    box = c("s", "/netplane/n1/podu1/s", 10, **pod, **{"io.kubernetes.container.name": "POD",
                                                       "io.kubernetes.docker.type": "podsandbox"})
    elsewhere = c("x", "/docker/x", 12, **{**pod, "io.kubernetes.pod.uid": "u2"})  # no pod parent
    plain = c("p", "/netplane/n1/podu3/p", 13)  # no pod labels
    for order in ([app, box, elsewhere, plain], [box, app, elsewhere, plain]):
        (p,) = pod_cgroups(order)
        assert (p.id, p.cgroup_path, p.name, p.pid) == ("/netplane/n1/podu1", "/netplane/n1/podu1", "shop/web-1", 10)
        assert kube_labels(p) == ("shop", "web-1", "")
        assert p.label_map == pod
    assert kube_labels(box) == ("shop", "web-1", "POD") and kube_labels(plain) == ("", "", "")
