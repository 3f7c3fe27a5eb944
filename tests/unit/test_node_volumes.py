"""The kubelet's volumes on disk (orchestrator.node.volumes), in a temporary directory:
emptyDir's lifetime and layout, hostPath's type checks and creation, subPath, the sweep of
what deleted pods left. The tmpfs of Memory emptyDirs: tests/kernel/test_node_volumes_tmpfs.py."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from orchestrator.node.runtime import Mount
from orchestrator.node.volumes import EMPTY_DIR, VolumeError, Volumes


def pod(uid: str, *volumes: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": "p", "namespace": "default"},
            "spec": {"volumes": list(volumes), "containers": [{"name": "c"}]}}


def test_an_empty_dir_lives_with_the_pod_and_is_world_writable(tmp_path: Path) -> None:
    v = Volumes(tmp_path / "kubelet")
    paths = v.setup(pod("u1", {"name": "cache", "emptyDir": {}}))
    d = tmp_path / "kubelet" / "pods" / "u1" / "volumes" / EMPTY_DIR / "cache"
    assert paths == {"cache": str(d)}
    assert stat.S_IMODE(d.stat().st_mode) == 0o777
    (d / "data").write_text("kept")
    assert v.setup(pod("u1", {"name": "cache", "emptyDir": {}})) == paths  # a later sync keeps the data
    assert (d / "data").read_text() == "kept"
    v.teardown("u1")
    assert not (tmp_path / "kubelet" / "pods" / "u1").exists()
    v.teardown("u1")  # idempotent


def test_host_path_types_are_checked_or_made(tmp_path: Path) -> None:
    v = Volumes(tmp_path / "kubelet")
    f = tmp_path / "file"
    f.write_text("")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))

    def one(path: Path, kind: str) -> str:
        return v.setup(pod("u", {"name": "h", "hostPath": {"path": str(path), "type": kind}}))["h"]

    assert one(tmp_path, "Directory") == str(tmp_path)
    assert one(f, "File") == str(f)
    assert one(tmp_path / "sock", "Socket") == str(tmp_path / "sock")
    assert one(Path("/dev/null"), "CharDevice") == "/dev/null"
    with pytest.raises(VolumeError, match=r'volume "h": hostPath type check failed: .*/file is not a directory '
                                          r"\(it is a file\)"):
        one(f, "Directory")
    with pytest.raises(VolumeError, match="does not exist"):
        one(tmp_path / "nope", "File")
    with pytest.raises(VolumeError, match="is not a block device"):
        one(Path("/dev/null"), "BlockDevice")
    made = one(tmp_path / "a" / "b", "DirectoryOrCreate")
    assert Path(made).is_dir() and stat.S_IMODE(Path(made).stat().st_mode) == 0o755
    made = one(tmp_path / "c" / "f.conf", "FileOrCreate")
    assert Path(made).is_file() and Path(made).read_text() == ""
    assert Path(one(tmp_path / "d", "")).is_dir()  # "" makes a missing path a directory, as containerd does
    assert one(f, "") == str(f)  # and checks nothing of what exists
    v.teardown("u")
    assert f.exists() and (tmp_path / "a" / "b").is_dir()  # a hostPath is never removed
    sock.close()


def test_mounts_resolve_sub_paths_inside_the_volume_and_order_parents_first(tmp_path: Path) -> None:
    v = Volumes(tmp_path / "kubelet")
    out = tmp_path / "outside"
    out.mkdir()
    paths = v.setup(pod("u2", {"name": "e", "emptyDir": {}}, {"name": "h", "hostPath": {"path": str(out)}}))
    (Path(paths["e"]) / "link").symlink_to(out)
    container = {"volumeMounts": [{"name": "e", "mountPath": "/a/b/c", "subPath": "x/y"},
                                  {"name": "h", "mountPath": "/a", "readOnly": True},
                                  {"name": "e", "mountPath": "/a/b/"}]}
    mounts = v.mounts(container, paths)
    assert mounts == (Mount("/a", str(out), True), Mount("/a/b", paths["e"]), Mount("/a/b/c", paths["e"] + "/x/y"))
    assert (Path(paths["e"]) / "x" / "y").is_dir()  # a missing subPath is made, as kubelet does
    with pytest.raises(VolumeError, match=r'volume "e": subPath link/z resolves to .*/outside, outside the volume'):
        v.mounts({"volumeMounts": [{"name": "e", "mountPath": "/z", "subPath": "link/z"}]}, paths)
    assert os.listdir(out) == []  # refused before anything was made through the link
    with pytest.raises(VolumeError, match='no volume "q"'):
        v.mounts({"volumeMounts": [{"name": "q", "mountPath": "/q"}]}, paths)


def test_the_sweep_removes_only_pods_not_kept(tmp_path: Path) -> None:
    v = Volumes(tmp_path / "kubelet")
    for uid in ("keep", "gone"):
        v.setup(pod(uid, {"name": "e", "emptyDir": {}}))
    assert v.sweep(lambda: {"keep"}) == ["gone"]
    assert v.pods() == ["keep"]
    with pytest.raises(VolumeError, match="cannot name a directory"):
        v.teardown("..")


def test_over_limit_counts_what_an_on_disk_empty_dir_takes(tmp_path: Path) -> None:
    v = Volumes(tmp_path / "kubelet")
    p = pod("u4", {"name": "small", "emptyDir": {"sizeLimit": "1Mi"}}, {"name": "free", "emptyDir": {}},
            {"name": "big", "emptyDir": {"sizeLimit": "1Gi"}})
    paths = v.setup(p)
    assert v.over_limit(p) is None
    outside = tmp_path / "outside"
    outside.write_bytes(os.urandom(3 << 20))
    Path(paths["small"], "link").symlink_to(outside)  # not followed: not the volume's
    (Path(paths["free"]) / "x").write_bytes(os.urandom(3 << 20))  # no limit: never over
    (Path(paths["big"]) / "x").write_bytes(os.urandom(3 << 20))
    assert v.over_limit(p) is None
    half = Path(paths["small"], "half")
    half.write_bytes(os.urandom(600 << 10))
    os.link(half, Path(paths["small"], "again"))  # one inode, counted once (du's rule)
    assert v.over_limit(p) is None
    Path(paths["small"], "sub").mkdir()
    Path(paths["small"], "sub", "more").write_bytes(os.urandom(600 << 10))
    assert v.over_limit(p) == ("small", "1Mi")


def test_a_config_map_volume_is_written_atomically_and_follows_changes(tmp_path: Path) -> None:
    """kubelet's AtomicWriter layout: the files in a ..<time> directory, ..data a symlink to
    it, each key a symlink through ..data; a change switches the whole set at once."""
    import base64

    from orchestrator.node.volumes import CONFIG_MAP_DIR

    store = {("ConfigMap", "conf"): {"data": {"app.conf": "x=1\n", "LEVEL": "debug"},
                                     "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()}}}
    v = Volumes(tmp_path / "kubelet")

    def lookup(kind: str, name: str) -> dict[str, Any] | None:
        return store.get((kind, name))

    vol = {"name": "cfg", "configMap": {"name": "conf"}}
    d = Path(v.setup(pod("u1", vol), lookup)["cfg"])
    assert d == tmp_path / "kubelet" / "pods" / "u1" / "volumes" / CONFIG_MAP_DIR / "cfg"
    assert (d / "app.conf").read_text() == "x=1\n" and (d / "blob").read_bytes() == b"\x00\x01"
    assert os.readlink(d / "app.conf") == "..data/app.conf" and (d / "..data").is_symlink()
    assert stat.S_IMODE((d / "app.conf").stat().st_mode) == 0o644
    first = os.readlink(d / "..data")
    v.setup(pod("u1", vol), lookup)
    assert os.readlink(d / "..data") == first  # unchanged: not rewritten
    store[("ConfigMap", "conf")] = {"data": {"app.conf": "x=2\n"}}
    v.setup(pod("u1", vol), lookup)
    assert (d / "app.conf").read_text() == "x=2\n"
    assert set(os.listdir(d)) == {"..data", os.readlink(d / "..data"), "app.conf"}  # old set and keys gone
    # items pick keys and paths, with their modes
    picked = {"name": "cfg", "configMap": {"name": "conf", "defaultMode": 0o400,
                                           "items": [{"key": "app.conf", "path": "etc/app.conf", "mode": 0o440}]}}
    d2 = Path(v.setup(pod("u2", picked), lookup)["cfg"])
    assert os.listdir(d2 / "etc") == ["app.conf"] and os.readlink(d2 / "etc") == "..data/etc"
    assert stat.S_IMODE((d2 / "etc" / "app.conf").stat().st_mode) == 0o440
    with pytest.raises(VolumeError, match='volume "cfg": configmap "absent" not found'):
        v.setup(pod("u3", {"name": "cfg", "configMap": {"name": "absent"}}), lookup)
    empty = v.setup(pod("u4", {"name": "cfg", "configMap": {"name": "absent", "optional": True}}), lookup)["cfg"]
    assert [n for n in os.listdir(empty) if not n.startswith("..")] == []
    with pytest.raises(VolumeError, match="configmap references non-existent key: nope"):
        v.setup(pod("u5", {"name": "cfg", "configMap": {"name": "conf", "items": [{"key": "nope", "path": "n"}]}}),
                lookup)
    for uid in ("u1", "u2", "u3", "u4", "u5"):
        v.teardown(uid)
    assert os.listdir(tmp_path / "kubelet" / "pods") == []


def test_a_downward_api_volume_holds_the_pods_fields_and_follows_its_labels(tmp_path: Path) -> None:
    from orchestrator.node.volumes import DOWNWARD_API_DIR

    v = Volumes(tmp_path / "kubelet")
    p = pod("u1", {"name": "info", "downwardAPI": {"items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "limits/mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                                    "divisor": "1Mi"}, "mode": 0o400}]}})
    p["metadata"]["labels"] = {"tier": "web", "app": "shop"}
    d = Path(v.setup(p, allocatable={"cpu": "2", "memory": "1Gi"})["info"])
    assert d == tmp_path / "kubelet" / "pods" / "u1" / "volumes" / DOWNWARD_API_DIR / "info"
    assert (d / "name").read_text() == "p" and (d / "labels").read_text() == 'app="shop"\ntier="web"'
    assert (d / "limits" / "mem").read_text() == "1024"  # no limit: the node's memory
    assert stat.S_IMODE((d / "limits" / "mem").stat().st_mode) == 0o400
    p["metadata"]["labels"]["tier"] = "db"
    v.setup(p, allocatable={"cpu": "2", "memory": "1Gi"})
    assert (d / "labels").read_text() == 'app="shop"\ntier="db"'
    v.teardown("u1")
