"""Memory emptyDirs and Secret volumes on the real kernel (orchestrator.node.volumes): a tmpfs of the sizeLimit,
mounted once however often the pod syncs, and unmounted before its directory goes (by the
kubelet's teardown and by `cleanup.remove_all`, the lab's way after an agent died). Each
test mounts only below its own tmp_path and unmounts what is left there, also on failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.node.cleanup import remove_all
from orchestrator.node.volumes import Volumes, _umount, mounts_below


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for point in mounts_below(tmp_path):
        _umount(point)


def pod(uid: str, size: str | None) -> dict[str, object]:
    src = {"medium": "Memory", **({"sizeLimit": size} if size else {})}
    return {"metadata": {"uid": uid}, "spec": {"volumes": [{"name": "shm", "emptyDir": src}]}}


def test_a_memory_empty_dir_is_a_tmpfs_of_its_size_limit(root: Path) -> None:
    v = Volumes(root / "kubelet")
    path = v.setup(pod("u1", "8Mi"))["shm"]
    v.setup(pod("u1", "8Mi"))  # a second sync mounts nothing more
    assert mounts_below(root) == [path]
    st = os.statvfs(path)
    assert st.f_blocks * st.f_frsize == 8 << 20
    line = next(ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if ln.split()[4] == path)
    assert " - tmpfs " in line
    Path(path, "f").write_text("in memory")
    v.teardown("u1")
    assert mounts_below(root) == [] and not os.path.lexists(path)


def test_remove_all_unmounts_what_a_dead_agent_left(root: Path) -> None:
    state = root / "agent"
    v = Volumes(state / "kubelet")
    path = v.setup(pod("u2", None))["shm"]
    assert mounts_below(root) == [path]
    remove_all(runtime="namespaces", runtime_id="npt-vol-gone", state_dir=state)
    assert mounts_below(root) == [] and not state.exists()


def test_a_secret_volume_is_a_tmpfs_with_the_decoded_keys(root: Path) -> None:
    """A Secret's files never reach the disk: a tmpfs, mounted once, gone with the pod."""
    import base64

    secret = {"data": {"password": base64.b64encode(b"s3cr3t").decode()}}

    def lookup(kind: str, name: str) -> dict[str, object] | None:
        return secret if (kind, name) == ("Secret", "creds") else None

    v = Volumes(root / "kubelet")
    p = {"metadata": {"uid": "u1"}, "spec": {"volumes": [{"name": "creds", "secret": {"secretName": "creds"}}]}}
    path = v.setup(p, lookup)["creds"]
    v.setup(p, lookup)
    assert mounts_below(root) == [path]
    line = next(ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if ln.split()[4] == path)
    assert " - tmpfs " in line
    assert Path(path, "password").read_bytes() == b"s3cr3t"
    v.teardown("u1")
    assert mounts_below(root) == [] and not os.path.lexists(path)


def test_a_projected_volume_merges_its_sources_on_a_tmpfs(root: Path) -> None:
    import base64

    objects = {("ConfigMap", "conf"): {"data": {"app.conf": "x=1", "other": "o"}},
               ("Secret", "creds"): {"data": {"token": base64.b64encode(b"t0k3n").decode()}}}
    v = Volumes(root / "kubelet")
    p = {"metadata": {"uid": "u1", "name": "web", "labels": {"app": "web"}},
         "spec": {"volumes": [{"name": "all", "projected": {"defaultMode": 0o440, "sources": [
             {"configMap": {"name": "conf", "items": [{"key": "app.conf", "path": "conf/app.conf"}]}},
             {"secret": {"name": "creds"}},
             {"configMap": {"name": "absent", "optional": True}},
             {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}}],
                  "containers": [{"name": "c"}]}}
    path = Path(v.setup(p, lambda kind, name: objects.get((kind, name)))["all"])
    assert mounts_below(root) == [str(path)]
    assert (path / "conf" / "app.conf").read_text() == "x=1" and not (path / "other").exists()
    assert (path / "token").read_bytes() == b"t0k3n" and (path / "labels").read_text() == 'app="web"'
    assert oct(os.stat(path / "token").st_mode & 0o777) == "0o440"
    v.teardown("u1")
    assert mounts_below(root) == [] and not os.path.lexists(path)


def test_a_projected_service_account_token_is_written_and_replaced(root: Path) -> None:
    """The token source's file holds what the node's token manager gives (`podtokens`), at
    its path and the volume's mode, rewritten when the manager hands out a new one; a token
    that cannot be had holds the volume with one line naming it."""
    from netplane.errors import NetplaneError
    from orchestrator.node.volumes import VolumeError

    given = [b"first.token.jwt"]
    asked: list[dict[str, object]] = []

    def token(pod: object, source: dict[str, object]) -> bytes:
        asked.append(source)
        if not given:
            raise NetplaneError('serviceaccount "bot" not found in namespace "ns"')
        return given[0]

    v = Volumes(root / "kubelet")
    p = {"metadata": {"uid": "u2", "name": "web", "namespace": "ns"},
         "spec": {"volumes": [{"name": "api", "projected": {"defaultMode": 0o420, "sources": [
             {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
             {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}],
                  "containers": [{"name": "c"}]}}
    try:
        path = Path(v.setup(p, token=token)["api"])
        assert mounts_below(root) == [str(path)]  # a tmpfs: a token never reaches the disk
        assert (path / "token").read_bytes() == b"first.token.jwt" and (path / "namespace").read_text() == "ns"
        assert oct(os.stat(path / "token").st_mode & 0o777) == "0o420"
        assert asked == [{"path": "token", "expirationSeconds": 3607}]
        given[0] = b"second.token.jwt"
        v.setup(p, token=token)
        assert (path / "token").read_bytes() == b"second.token.jwt"
        given.clear()
        with pytest.raises(VolumeError, match='volume "api": service account token: serviceaccount "bot" not found'):
            v.setup(p, token=token)
        assert (path / "token").read_bytes() == b"second.token.jwt"  # the last good one stays
        with pytest.raises(VolumeError, match="cannot make service account tokens"):
            v.setup(p)
    finally:
        v.teardown("u2")
    assert mounts_below(root) == []
