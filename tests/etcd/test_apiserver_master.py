"""`netplane master --apiserver-listen` and `netplane kubeconfig` as processes, as the lab and
the benchmarks run them: the master serves the API, the kubeconfig the command writes works
with the official client, and what is created through the API is acted on by the master's
controllers (an RC gets its pods), seen through a watch with a label selector.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from netplane.store import Keys
from netplane.store.embedded import EmbeddedEtcd
from tests.conftest import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def master(etcd_server: EmbeddedEtcd, keys: Keys, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    state = tmp_path / "api"
    log = (tmp_path / "master.log").open("w")
    p = subprocess.Popen([sys.executable, "-m", "netplane.cli.main", "--log-level", "info",
                          "--etcd", etcd_server.endpoint, "--prefix", keys.prefix, "master", "--id", "m1",
                          "--leader-ttl", "3", "--apiserver-listen", f"127.0.0.1:{port}",
                          "--apiserver-state-dir", str(state)],
                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (state / "apiserver.json").exists() or p.poll() is not None, 30, "the API server")
        assert p.poll() is None, (tmp_path / "master.log").read_text()
        yield f"https://127.0.0.1:{port}", state
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            assert p.wait(20) == 0, (tmp_path / "master.log").read_text()
        finally:
            if p.poll() is None:
                p.kill()
            log.close()


def test_master_serves_the_api_and_acts_on_it(master: tuple[str, Path], tmp_path: Path) -> None:
    url, state = master
    kc = tmp_path / "kubeconfig"
    r = subprocess.run([sys.executable, "-m", "netplane.cli.main", "kubeconfig", "--state-dir", str(state),
                        "-o", str(kc)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    api = config.new_client_from_config(config_file=str(kc))
    v1 = client.CoreV1Api(api)
    assert api.configuration.host == url
    rv = v1.list_namespaced_pod("default").metadata.resource_version
    v1.create_namespaced_replication_controller("default", {
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"app": "web"},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    added: set[str] = set()
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default", label_selector="app=web", resource_version=rv,
                       timeout_seconds=30):
        if ev["type"] == "ADDED":
            added.add(ev["object"].metadata.name)
            assert ev["object"].metadata.owner_references[0].name == "web"
        if len(added) == 2:
            w.stop()
    assert len(added) == 2
    # a token credential works too (the server re-reads its token file)
    r = subprocess.run([sys.executable, "-m", "netplane.cli.main", "kubeconfig", "--state-dir", str(state),
                        "--user", "viewer", "--group", "readonly", "--token"],
                       check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (tmp_path / "viewer").write_text(r.stdout)
    ro = client.CoreV1Api(config.new_client_from_config(config_file=str(tmp_path / "viewer")))

    def listed() -> set[str] | None:
        try:
            return {p.metadata.name for p in ro.list_namespaced_pod("default").items}
        except ApiException as e:  # 401 until the server has re-read its token file (<= 1 s)
            assert e.status == 401
            return None

    assert wait_for(listed, 5, "the viewer's token works") == added
    api.close()
