"""cgroup layout detection (netplane.cgroups) and what follows from it, over fake sysfs trees.

A unified (cgroup v2 only) host has `cgroup.controllers` in /sys/fs/cgroup itself; a hybrid one
(this development VM) has v1 controller mounts there and an empty cgroup2 at `unified/`. The
trees here are plain directories in tmp_path: enough for every decision that only looks at
which files exist, and for rmdir-only cleanup (a real cgroup directory is removed by rmdir too).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netplane import cgroups
from netplane.ebpf import loader
from netplane.errors import ConfigError
from orchestrator.node import cleanup
from orchestrator.node.ns_runtime import cgroup_roots
from stats.cgroups.hierarchy import Hierarchy


def unified_tree(tmp_path: Path) -> Path:
    fs = tmp_path / "cgroup"
    fs.mkdir()
    (fs / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (fs / "cgroup.procs").write_text("")
    for d in ("system.slice", "user.slice", "init.scope"):
        (fs / d).mkdir()
        (fs / d / "cgroup.procs").write_text("")
    return fs


def hybrid_tree(tmp_path: Path) -> Path:
    fs = tmp_path / "cgroup"
    fs.mkdir()
    for d in ("cpu", "cpuacct", "memory", "pids", "systemd"):
        (fs / d).mkdir()
        (fs / d / "cgroup.procs").write_text("")
    (fs / "unified").mkdir()
    (fs / "unified" / "cgroup.controllers").write_text("")
    return fs


def test_unified_root_when_the_mount_itself_has_cgroup_controllers(tmp_path: Path) -> None:
    fs = unified_tree(tmp_path)
    assert cgroups.layout(fs) == "unified"
    assert cgroups.cgroup2_root(fs, env={}) == fs


def test_hybrid_root_is_the_unified_subdirectory(tmp_path: Path) -> None:
    fs = hybrid_tree(tmp_path)
    assert cgroups.layout(fs) == "hybrid"
    assert cgroups.cgroup2_root(fs, env={}) == fs / "unified"


def test_neither_layout_keeps_the_old_default(tmp_path: Path) -> None:
    """No cgroup2 anywhere (a v1-only host): the path netplane always used, so what failed
    there fails the same way."""
    fs = tmp_path / "cgroup"
    fs.mkdir()
    assert cgroups.cgroup2_root(fs, env={}) == fs / "unified"


def test_the_environment_overrides_detection(tmp_path: Path) -> None:
    fs = unified_tree(tmp_path)
    assert cgroups.cgroup2_root(fs, env={cgroups.ENV_ROOT: "/somewhere/else"}) == Path("/somewhere/else")
    assert cgroups.cgroup2_root(fs, env={cgroups.ENV_ROOT: ""}) == fs  # empty: not set


def test_this_machine_matches_its_mountinfo() -> None:
    """The real /sys/fs/cgroup: whatever layout this machine has, the root detected is the
    cgroup2 mount /proc/self/mountinfo lists (unless the environment forces one)."""
    h = Hierarchy.detect()
    if h.v2 is None:
        pytest.skip("no cgroup2 mount on this machine")
    assert cgroups.cgroup2_root(env={}) == Path(h.v2)
    assert cgroups.layout() == ("unified" if h.mode == "v2" else "hybrid")


def test_hierarchy_roots_unified_is_the_mount_itself(tmp_path: Path) -> None:
    fs = unified_tree(tmp_path)
    assert cleanup.hierarchy_roots(fs) == [fs]


def test_hierarchy_roots_hybrid_is_every_controller_mount(tmp_path: Path) -> None:
    fs = hybrid_tree(tmp_path)
    assert sorted(p.name for p in cleanup.hierarchy_roots(fs)) == ["cpu", "cpuacct", "memory", "pids", "systemd",
                                                                    "unified"]
    assert cleanup.hierarchy_roots(tmp_path / "absent") == []


@pytest.mark.parametrize("kind", ["unified", "hybrid"])
def test_docker_parents_are_removed_in_every_hierarchy_and_only_ours(tmp_path: Path, kind: str) -> None:
    """What Docker's cgroupfs driver leaves per node (`/netplane/<id>/pod<uid>`) goes in both
    layouts (on a unified host it is directly below /sys/fs/cgroup); another node's parent and
    the shared `netplane` parent with something else in it stay."""
    fs = unified_tree(tmp_path) if kind == "unified" else hybrid_tree(tmp_path)
    hiers = [fs] if kind == "unified" else [fs / d for d in ("cpu", "memory", "unified")]
    for h in hiers:
        (h / "netplane" / "np-lab-h1" / "podabc" / "cid1").mkdir(parents=True)
        (h / "netplane" / "np-lab-h2" / "podxyz").mkdir(parents=True)
    cleanup._rmdir_parents("np-lab-h1", base=fs)
    for h in hiers:
        assert not (h / "netplane" / "np-lab-h1").exists()
        assert (h / "netplane" / "np-lab-h2" / "podxyz").is_dir()
    if kind == "unified":  # the host's own cgroups are never walked into
        assert {p.name for p in fs.iterdir() if p.is_dir()} == {"system.slice", "user.slice", "init.scope",
                                                                "netplane"}


def test_shared_parent_goes_when_the_last_node_leaves(tmp_path: Path) -> None:
    fs = unified_tree(tmp_path)
    (fs / "netplane" / "np-lab-h1" / "podabc").mkdir(parents=True)
    cleanup._rmdir_parents("np-lab-h1", base=fs)
    assert not (fs / "netplane").exists()


@pytest.mark.parametrize("root", ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"])
def test_ebpf_pin_names_are_the_same_in_both_layouts(monkeypatch: pytest.MonkeyPatch, root: str) -> None:
    monkeypatch.setattr(loader, "ROOT_CGROUP", Path(root))
    assert loader.instance_for(f"{root}/netplane/demo/h1") == "netplane_demo_h1"


@pytest.mark.parametrize("root", ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"])
def test_ebpf_refuses_the_root_cgroup_in_both_layouts(monkeypatch: pytest.MonkeyPatch, root: str) -> None:
    monkeypatch.setattr(loader, "ROOT_CGROUP", Path(root))
    for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/"):
        with pytest.raises(ConfigError, match="root cgroup"):
            loader.check_cgroup(path)


def test_namespace_runtime_cgroups_on_a_unified_host() -> None:
    """No v1 hierarchies: one v2 root, pods below <root>/netplane/<node> unless the host's own
    v2 cgroup is given; a v2 cgroup outside the mount is refused."""
    h = Hierarchy(v1=(), v2="/sys/fs/cgroup", v2_controllers=frozenset({"cpu", "memory", "pids", "io"}))
    (only,) = cgroup_roots("h1", v2_cgroup=None, hierarchy=h)
    assert (only.version, only.mount, only.base) == (2, Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/netplane/h1"))
    (given,) = cgroup_roots("h1", v2_cgroup=Path("/sys/fs/cgroup/netplane/lab/h1"), hierarchy=h)
    assert given.base == Path("/sys/fs/cgroup/netplane/lab/h1") and given.rel(given.base / "podu1") == \
        "/netplane/lab/h1/podu1"
    with pytest.raises(ConfigError, match="not inside the cgroup2 mount"):
        cgroup_roots("h1", v2_cgroup=Path("/elsewhere/h1"), hierarchy=h)
