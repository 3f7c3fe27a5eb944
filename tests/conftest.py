"""Shared fixtures: a real etcd per session (and fresh ones on demand), test namespaces.

Nothing here mocks etcd or the kernel. Kernel and lab tests need root; without it they fail
loudly rather than skip, because a skipped kernel test proves nothing.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# Property tests explore fresh random examples on a developer's machine; in CI (CI=true) they
# run derandomized, so a landing is never blocked by a newly drawn example that no change of
# the submission caused (a bug found locally is fixed and kept as an @example).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    hypothesis_settings.load_profile("ci")

from netplane.store import EtcdConfig, EtcdStore, Keys
from netplane.store.embedded import EmbeddedEtcd, free_loopback_port

free_port = free_loopback_port  # what the tests import from here


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in ("unit", "etcd", "kernel", "lab"):
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


def pytest_runtest_setup(item: pytest.Item) -> None:
    needs_root = any(item.iter_markers(name=n) for n in ("kernel", "lab", "docker"))
    if needs_root and os.geteuid() != 0:
        pytest.fail("this test needs root (kernel/lab tier); run `make test` as root")


def start_etcd(d: Path, name: str) -> EmbeddedEtcd:
    """A real single-member etcd on free loopback ports, data and log under `d`."""
    return EmbeddedEtcd.on_loopback(d, name)


@pytest.fixture
def etcd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], EmbeddedEtcd]]:
    """Start throwaway etcd servers on loopback; all are stopped at teardown."""
    started: list[EmbeddedEtcd] = []

    def make() -> EmbeddedEtcd:
        e = start_etcd(tmp_path_factory.mktemp("etcd"), "t" + uuid.uuid4().hex[:8])
        started.append(e)
        return e

    yield make
    for e in started:
        e.stop()


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEtcd]:
    """One real etcd for the whole session; tests isolate themselves by key prefix."""
    e = start_etcd(tmp_path_factory.mktemp("etcd-session"), "session")
    yield e
    e.stop()


@pytest.fixture
def store(etcd_server: EmbeddedEtcd) -> Iterator[EtcdStore]:
    s = EtcdStore(EtcdConfig(endpoints=(etcd_server.endpoint,)))
    yield s
    s.close()


@pytest.fixture
def keys(store: EtcdStore) -> Iterator[Keys]:
    """A unique key prefix per test, deleted afterwards."""
    k = Keys(f"/t{uuid.uuid4().hex[:12]}")
    yield k
    store.delete_prefix(k.prefix + "/")


@pytest.fixture
def make_netns() -> Iterator[Callable[[str], str]]:
    """Create uniquely named network namespaces; every one is removed at teardown."""
    made: list[str] = []

    def make(label: str = "t") -> str:
        name = f"npt-{label}-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point NETPLANE_STATE_DIR at a temporary directory for this test."""
    d = tmp_path / "state"
    monkeypatch.setenv("NETPLANE_STATE_DIR", str(d))
    return d
