"""kubelet's Summary API (`/stats/summary`), the part metrics-server reads, from the collector.

metrics-server (what `kubectl top` asks, through `metrics.k8s.io`) scrapes every kubelet's
resource usage: the node's and each pod container's CPU usage rate and memory working set
(`k8s.io/kubelet/pkg/apis/stats/v1alpha1`: `Summary`, `NodeStats`, `PodStats`,
`ContainerStats`, `CPUStats.usageNanoCores`, `MemoryStats.workingSetBytes`). Here they come
from the collector's newest two samples of each cgroup it tracks:

* the node: the cgroup that stands in for the host (`node_cgroup`, a lab host's own subtree),
  else the root cgroup `/`, as cAdvisor's machine totals; a figure the node's cgroup lacks is
  the root's (on a hybrid hierarchy a v2 subtree has no memory controller: its memory is in
  v1, where the lab makes no host cgroups);
* pods and their containers: cgroups carrying dockershim's labels (`stats.discovery`), the
  pod-level cgroup for the pod's totals; the sandbox (`POD`) is not a container of the pod,
  as kubelet leaves it out.

A cgroup seen only once has no rate yet: its CPU has no `usageNanoCores` (metrics-server
then skips it, as it skips a container kubelet reports without one).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from stats.collector import Sample
from stats.derive import Rates
from stats.discovery import POD_UID_LABEL, ROOT, Container, kube_labels

Obj = dict[str, Any]
SANDBOX = "POD"


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cpu(sample: Sample, r: Rates | None) -> Obj | None:
    cpu = sample.stats.cpu
    if cpu is None:
        return None
    out: Obj = {"time": _time(sample.timestamp), "usageCoreNanoSeconds": cpu.usage_ns}
    if r is not None and r.cpu_cores is not None:
        out["usageNanoCores"] = round(r.cpu_cores * 1e9)
        out["windowSeconds"] = round(r.interval_seconds, 3)  # ours: the rate's interval (metrics' window)
    return out


def _memory(sample: Sample) -> Obj | None:
    mem = sample.stats.memory
    if mem is None:
        return None
    return {"time": _time(sample.timestamp), "usageBytes": mem.usage_bytes,
            "workingSetBytes": mem.working_set_bytes, "rssBytes": mem.rss_bytes,
            "pageFaults": mem.pgfault, "majorPageFaults": mem.pgmajfault}


def _usage(sample: Sample, r: Rates | None) -> Obj:
    out: Obj = {}
    cpu, mem = _cpu(sample, r), _memory(sample)
    if cpu is not None:
        out["cpu"] = cpu
    if mem is not None:
        out["memory"] = mem
    return out


def cgroup_key(path: str) -> str:
    """A cgroup as the collector names it: the path below the hierarchy root (a path under
    /sys/fs/cgroup is taken below it), "/" for the root."""
    p = path.rstrip("/")
    for mount in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if p == mount or p.startswith(mount + "/"):
            p = p[len(mount):]
            break
    return p or ROOT


def summary(node_name: str, latest: Sequence[tuple[Container, Sample, Rates | None]], *,
            node_cgroup: str | None = None, start_time: float | None = None) -> Obj:
    """The Summary of one node from `Collector.latest()`."""
    want = cgroup_key(node_cgroup) if node_cgroup else ROOT
    node_entry = root_entry = None
    pods: dict[tuple[str, str], Obj] = {}
    for c, sample, r in latest:
        path = cgroup_key(c.cgroup_path)
        if path == want:
            node_entry = (sample, r)
        if path == ROOT:
            root_entry = (sample, r)
        namespace, pod, container = kube_labels(c)
        if not namespace or not pod:
            continue
        entry = pods.get((namespace, pod))
        if entry is None:
            entry = pods[(namespace, pod)] = {
                "podRef": {"name": pod, "namespace": namespace, "uid": c.label_map.get(POD_UID_LABEL, "")},
                "startTime": _time(sample.timestamp), "containers": []}
        if container == "":
            entry.update(_usage(sample, r))
        elif container != SANDBOX:
            entry["containers"].append({"name": container, "startTime": _time(sample.timestamp),
                                        **_usage(sample, r)})
    node: Obj = {"nodeName": node_name}
    for chosen in (root_entry, node_entry):  # the node's own cgroup where it has the figure
        if chosen is not None:
            node.update(_usage(*chosen))
    if start_time is not None:
        node["startTime"] = _time(start_time)
    for entry in pods.values():
        entry["containers"].sort(key=lambda x: x["name"])
    return {"node": node, "pods": [pods[k] for k in sorted(pods)]}
