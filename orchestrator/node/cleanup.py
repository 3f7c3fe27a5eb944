"""Removing everything a node runtime made, without the agent: `netplane lab down` after an
agent was SIGKILLed mid-way, or an operator retiring a host.

The runtime itself knows what is its own (Docker labels `netplane.io/node=<runtime id>`, the
namespace runtime's state directory), so this only asks it to list and remove; pod addresses
go with the state directory (their records, and their volumes: the tmpfs of Memory emptyDirs
unmounted first), pod veths with the host's network namespace.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from netplane.cgroups import CGROUP_FS, layout
from orchestrator.node.runtime import Runtime
from orchestrator.node.volumes import VolumeError, remove_tree

log = logging.getLogger(__name__)


def open_runtime(runtime: str, runtime_id: str, state_dir: Path, cgroup: Path | None) -> Runtime:
    if runtime == "docker":
        from orchestrator.node.docker_runtime import DockerRuntime

        return DockerRuntime(runtime_id, v2_cgroup=str(cgroup) if cgroup else None, state_dir=state_dir / "docker")
    if runtime == "namespaces":
        from orchestrator.node.ns_runtime import NamespaceRuntime

        return NamespaceRuntime(runtime_id, state_dir=state_dir / "pods", v2_cgroup=cgroup)
    raise ValueError(f"unknown runtime {runtime!r}")


def remove_all(*, runtime: str, runtime_id: str, state_dir: Path, cgroup: Path | None = None) -> list[str]:
    """Every container and sandbox of `runtime_id`, then its state directory; what was removed."""
    if runtime not in ("docker", "namespaces"):
        return []
    rt = open_runtime(runtime, runtime_id, state_dir, cgroup)
    removed: list[str] = []
    try:
        sweep = getattr(rt, "sweep", None)
        if sweep is not None:  # the namespace runtime: also half-made pods and our empty parents
            removed += [f"pod {u}" for u in sweep(set())]
        for c in rt.list_containers():
            rt.stop_container(c.id, 0)
            rt.remove_container(c.id)
            removed.append(f"container {c.pod.namespace}/{c.pod.name}/{c.name}")
        for s in rt.list_sandboxes():
            rt.remove_sandbox(s.id)
            removed.append(f"sandbox {s.pod.namespace}/{s.pod.name}")
    finally:
        rt.close()
    if runtime == "docker":
        _rmdir_parents(runtime_id)
    try:  # the tmpfs of Memory emptyDirs: unmounted before the directory goes
        remove_tree(state_dir / "kubelet")
    except VolumeError as e:
        log.warning("node runtime %s: %s", runtime_id, e)
    if state_dir.is_dir():
        shutil.rmtree(state_dir, ignore_errors=True)
    if removed:
        log.info("removed %d objects of node runtime %s", len(removed), runtime_id)
    return removed


def hierarchy_roots(base: Path = CGROUP_FS) -> list[Path]:
    """The root directory of every cgroup hierarchy below `base`: `base` itself on a unified
    (v2-only) host, else its children (each v1 controller's mount, and `unified`)."""
    if not base.is_dir():
        return []
    if layout(base) == "unified":
        return [base]
    return list(base.iterdir())


def _rmdir_parents(runtime_id: str, root: str = "netplane", base: Path = CGROUP_FS) -> None:
    """The per-node cgroup parents Docker's cgroupfs driver made (`/<root>/<id>` in every
    hierarchy, v1 or v2): empty once the pods are gone; rmdir only, never anything with processes."""
    for hier in hierarchy_roots(base):
        node_dir = hier / root / runtime_id
        if not node_dir.is_dir():
            continue
        for d in sorted((p for p in node_dir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                d.rmdir()
            except OSError:
                pass
        for d in (node_dir, node_dir.parent):
            try:
                d.rmdir()
            except OSError:
                break  # not empty (another node's pods): leave it
