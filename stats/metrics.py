"""Prometheus exposition with cAdvisor's metric and label names (DESIGN.md §4).

A custom prometheus_client collector builds the families from the collector's newest sample
of every container at scrape time; nothing is registered globally (its own registry).
Labels on every container series: `id` (cgroup path), `name`, `image`, and the three kubelet's
/metrics/cadvisor adds from the io.kubernetes.* labels: `namespace`, `pod` and `container`
(empty where absent: `container=""` on a pod-level cgroup, `"POD"` on the sandbox, all three
empty on the root cgroup `/` and on anything that is not a pod's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import CollectorRegistry

from stats.collector import Collector, Sample
from stats.discovery import Container, kube_labels
from stats.machine import MachineInfo

BASE = ["id", "name", "image", "namespace", "pod", "container"]


def _base(c: Container) -> list[str]:
    return [c.cgroup_path, c.name, c.image, *kube_labels(c)]


class _Families:
    def __init__(self) -> None:
        self.f: dict[str, Any] = {}

    def counter(self, name: str, doc: str, extra: Iterable[str] = ()) -> Any:
        if name not in self.f:
            self.f[name] = CounterMetricFamily(name, doc, labels=BASE + list(extra))
        return self.f[name]

    def gauge(self, name: str, doc: str, extra: Iterable[str] = ()) -> Any:
        if name not in self.f:
            self.f[name] = GaugeMetricFamily(name, doc, labels=BASE + list(extra))
        return self.f[name]

    def untyped(self, name: str, doc: str, extra: Iterable[str] = ()) -> Any:
        if name not in self.f:
            self.f[name] = UnknownMetricFamily(name, doc, labels=BASE + list(extra))
        return self.f[name]


def families(items: Iterable[tuple[Container, Sample]], machine: MachineInfo | None) -> list[Metric]:
    fam = _Families()
    for c, s in items:
        b = _base(c)
        st = s.stats
        if st.cpu is not None:
            cpu = st.cpu
            usage = fam.counter("container_cpu_usage_seconds_total",
                                "Cumulative cpu time consumed in seconds.", ["cpu"])
            if cpu.per_cpu_ns:
                for i, v in enumerate(cpu.per_cpu_ns):
                    usage.add_metric(b + [f"cpu{i:02d}"], v / 1e9)
            else:
                usage.add_metric(b + ["total"], cpu.usage_ns / 1e9)
            fam.counter("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds."
                        ).add_metric(b, cpu.user_ns / 1e9)
            fam.counter("container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds."
                        ).add_metric(b, cpu.system_ns / 1e9)
            fam.counter("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals."
                        ).add_metric(b, cpu.nr_periods)
            fam.counter("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals."
                        ).add_metric(b, cpu.nr_throttled)
            fam.counter("container_cpu_cfs_throttled_seconds_total",
                        "Total time duration the container has been throttled.").add_metric(b, cpu.throttled_ns / 1e9)
        if st.memory is not None:
            m = st.memory
            for name, doc, v in (
                ("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", m.usage_bytes),
                ("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", m.max_usage_bytes),
                ("container_memory_working_set_bytes", "Current working set in bytes.", m.working_set_bytes),
                ("container_memory_rss", "Size of RSS in bytes.", m.rss_bytes),
                ("container_memory_cache", "Number of bytes of page cache memory.", m.cache_bytes),
                ("container_memory_mapped_file", "Size of memory mapped files in bytes.", m.mapped_file_bytes),
                ("container_memory_swap", "Container swap usage in bytes.", m.swap_bytes),
            ):
                fam.gauge(name, doc).add_metric(b, v)
            # cAdvisor's name has no _total, which a CounterMetricFamily would append.
            fam.untyped("container_memory_failcnt", "Number of memory usage hits limits"
                        ).add_metric(b, m.failcnt)
            fails = fam.counter("container_memory_failures_total",
                                "Cumulative count of memory allocation failures.", ["failure_type", "scope"])
            fails.add_metric(b + ["pgfault", "container"], m.pgfault)
            fails.add_metric(b + ["pgmajfault", "container"], m.pgmajfault)
        if st.io is not None:
            for d in st.io:
                dev = [f"{d.major}:{d.minor}"]
                fam.counter("container_fs_reads_bytes_total", "Cumulative count of bytes read", ["device"]
                            ).add_metric(b + dev, d.read_bytes)
                fam.counter("container_fs_writes_bytes_total", "Cumulative count of bytes written", ["device"]
                            ).add_metric(b + dev, d.write_bytes)
                fam.counter("container_fs_reads_total", "Cumulative count of reads completed", ["device"]
                            ).add_metric(b + dev, d.read_ops)
                fam.counter("container_fs_writes_total", "Cumulative count of writes completed", ["device"]
                            ).add_metric(b + dev, d.write_ops)
        if st.pids is not None:
            p = st.pids
            if p.processes is not None:
                fam.gauge("container_processes", "Number of processes running inside the container."
                          ).add_metric(b, p.processes)
            if p.current is not None:
                fam.gauge("container_threads", "Number of threads running inside the container"
                          ).add_metric(b, p.current)
            if p.limit is not None and p.limit >= 0:
                fam.gauge("container_threads_max", "Maximum number of threads allowed inside the container"
                          ).add_metric(b, p.limit)
        if st.network is not None:
            for nif in st.network:
                if nif.name == "lo":
                    continue
                ifc = [nif.name]
                for direction, vals in (
                    ("receive", (nif.rx_bytes, nif.rx_packets, nif.rx_errors, nif.rx_dropped)),
                    ("transmit", (nif.tx_bytes, nif.tx_packets, nif.tx_errors, nif.tx_dropped)),
                ):
                    for what, v in zip(("bytes", "packets", "errors", "packets_dropped"), vals):
                        fam.counter(f"container_network_{direction}_{what}_total",
                                    f"Cumulative count of {what.replace('_', ' ')} {direction}d",
                                    ["interface"]).add_metric(b + ifc, v)
        fam.gauge("container_last_seen", "Last time a container was seen by the exporter"
                  ).add_metric(b, s.timestamp)
        if st.errors:
            fam.gauge("container_stats_errors", "Stats files of the container that could not be read at the last housekeeping"
                      ).add_metric(b, len(st.errors))
    out: list[Metric] = list(fam.f.values())
    if machine is not None:
        g = GaugeMetricFamily("machine_cpu_cores", "Number of logical CPU cores.")
        g.add_metric([], machine.num_cores)
        out.append(g)
        g = GaugeMetricFamily("machine_memory_bytes", "Amount of memory installed on the machine.")
        g.add_metric([], machine.memory_capacity)
        out.append(g)
    return out


class _Bridge:
    def __init__(self, source: Callable[[], list[Metric]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source()


def registry_for(collector: Collector, machine: MachineInfo | None = None) -> CollectorRegistry:
    """A private registry exposing the collector's newest samples."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Bridge(lambda: families(((c, s) for c, s, _ in collector.latest()), machine)))
    return reg
