"""The cgroup v2-only ("unified") layout, as far as this hybrid machine can show it.

GitHub's Ubuntu runners and Debian 12 with its defaults mount cgroup2 at /sys/fs/cgroup itself;
this machine mounts v1 controllers there and an empty cgroup2 at /sys/fs/cgroup/unified.
scripts/unified-view.sh runs a command in a private mount namespace where the machine's cgroup2
hierarchy is mounted at /sys/fs/cgroup and no v1 hierarchy is visible: the layout a unified
host has, minus controllers (they stay bound to v1 here). These tests run netplane's code in
that view: layout detection, then existing kernel and lab tests (pytest in a subprocess) whose
cgroup paths follow the detected root: eBPF programs attached below /sys/fs/cgroup, the
namespace runtime's pods, a 3-host lab with agents.

`make test` runs the CORE selection (about 30 s). `make test-unified` runs FULL (about three
minutes more: proxy conformance in all three data planes, the lab's pods and services, the
stats of namespace-runtime pods). Tests left out need what the view cannot give: v1 or v2
controllers (limits, memory/io/pids accounting, OOM kills) or a dockerd that sees the same
layout (dockerd runs outside the view). The CI workflow runs all of them on real unified hosts.
On a host that is already unified the view is the host itself, so these are skipped there:
the rest of the suite runs on that layout directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VIEW = ROOT / "scripts" / "unified-view.sh"

CORE = [
    "tests/unit/test_cgroups_layout.py",
    "tests/kernel/test_ebpf_backend.py",
    "tests/kernel/test_ns_runtime.py",
    "tests/lab/test_lab.py",
]
FULL = CORE + [
    "tests/kernel/test_proxy_conformance.py",
    "tests/kernel/test_agent_inprocess.py",
    "tests/kernel/test_stats_pods.py",
    "tests/lab/test_lab_cli.py",
    "tests/lab/test_lab_pods.py",
    "tests/lab/test_services_lab.py",
]
# need v2 controllers (limits, OOM) or memory accounting: none in the view
NEEDS_CONTROLLERS = [
    "tests/kernel/test_ns_runtime.py::test_limits_in_the_cgroup_files[auto]",
    "tests/kernel/test_ns_runtime.py::test_a_container_over_its_memory_limit_is_oomkilled[auto]",
    "tests/kernel/test_stats_pods.py::test_namespace_runtime_pods_carry_kubelet_labels",
]

pytestmark = pytest.mark.skipif(Path("/sys/fs/cgroup/cgroup.controllers").exists(),
                                reason="this host is unified itself: the whole suite runs on that layout")


def in_view(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NETPLANE_CGROUP2_ROOT"}
    return subprocess.run([str(VIEW), *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_the_view_is_detected_as_unified_by_every_user_of_the_root() -> None:
    probe = """
import json
from netplane import cgroups
from netplane.ebpf import loader
from netplane.lab import builder
from orchestrator.node import cleanup
from orchestrator.node.ns_runtime import cgroup_roots
from stats.cgroups.hierarchy import Hierarchy
h = Hierarchy.detect()
print(json.dumps({
    "root": str(cgroups.cgroup2_root()), "layout": cgroups.layout(), "lab": str(builder.CGROUP2_ROOT),
    "ebpf": str(loader.ROOT_CGROUP), "stats": [h.mode, h.v2, list(h.v1)],
    "hierarchies": [str(p) for p in cleanup.hierarchy_roots()],
    "ns_runtime": [(r.version, str(r.base)) for r in cgroup_roots("h1", v2_cgroup=None)],
}))
"""
    p = in_view([sys.executable, "-c", probe], timeout=60)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got == {
        "root": "/sys/fs/cgroup", "layout": "unified", "lab": "/sys/fs/cgroup", "ebpf": "/sys/fs/cgroup",
        "stats": ["v2", "/sys/fs/cgroup", []], "hierarchies": ["/sys/fs/cgroup"],
        "ns_runtime": [[2, "/sys/fs/cgroup/netplane/h1"]],
    }
    # and nothing changed outside the view
    assert Path("/sys/fs/cgroup/unified/cgroup.controllers").exists()


@pytest.mark.timeout(1800)  # FULL takes about 3 minutes, more on a busy machine
def test_kernel_and_lab_tests_pass_in_the_unified_view(tmp_path: Path) -> None:
    selection = FULL if os.environ.get("NETPLANE_UNIFIED_VIEW") == "full" else CORE
    deselect = [a for t in NEEDS_CONTROLLERS if t.split("::")[0] in selection for a in ("--deselect", t)]
    p = in_view([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not docker",
                 "--basetemp", str(tmp_path / "inner"), *deselect, *selection], timeout=1800)
    tail = "\n".join(p.stdout.splitlines()[-40:])
    assert p.returncode == 0, f"pytest in the unified view failed (exit {p.returncode}):\n{tail}\n{p.stderr[-2000:]}"
    assert " passed" in tail and " failed" not in tail, tail
