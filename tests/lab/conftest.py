"""Lab fixtures: labs built for real (namespaces, etcd, processes), torn down after each test.

A lab test that fails keeps its labs' logs (etcd, relay, every agent and pod): they are copied
before teardown to `<the test's tmp_path>/lab-logs/<lab>/`, and the failure report names the
place. Start-up deadlines are generous (a first run on a cold machine is slow) and can be
raised with NETPLANE_TEST_START_TIMEOUT (seconds); waiting ends as soon as the lab is ready.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from netplane.lab import Lab
from netplane.lab.builder import up_on_free_underlay

START_TIMEOUT = float(os.environ.get("NETPLANE_TEST_START_TIMEOUT", "60"))

# 10.98.100-199.0/24, handed out in turn; one not used by a lab that is up (this run's or a
# concurrent one's) is taken, and a lost race with another run moves on to the next
_NEXT = itertools.cycle(range(100, 200))

# what a test's lab_factory made, and where its logs go if it fails
_LABS = pytest.StashKey[tuple[list[Lab], Path]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed lab test: copy its labs' logs while the labs are still up, and say where."""
    report = yield
    labs, base = item.stash.get(_LABS, ([], Path()))
    if report.failed and labs:
        kept = []
        for lab in labs:
            if lab.dir.is_dir():
                kept.append(str(lab.keep_logs(base / lab.name)))
        if kept:
            report.sections.append(("lab logs kept", "\n".join(kept)))
            print(f"\nlab logs of {item.nodeid} kept in: {', '.join(kept)}")
    return report


@pytest.fixture
def lab_factory(state_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Lab]]:
    """Build labs with unique names on unique underlays; every one is torn down afterwards."""
    made: list[Lab] = []
    request.node.stash[_LABS] = (made, tmp_path / "lab-logs")

    def make(hosts: int = 3, *, agents: bool = False, **kwargs: object) -> Lab:
        name = "t" + uuid.uuid4().hex[:8]
        lab = up_on_free_underlay(name, (next(_NEXT) for _ in range(100)), start_timeout=START_TIMEOUT,
                                  hosts=hosts, **kwargs)
        made.append(lab)
        if agents:
            from netplane.lab import cluster

            cluster.start(lab, wait=START_TIMEOUT)
        return lab

    yield make
    errors = []
    for lab in reversed(made):
        try:
            lab.down()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    assert not errors, errors


KUBECTL = "/usr/local/lib/netplane/kubectl"


@pytest.fixture(scope="session")
def kubectl_binary() -> str:
    """The real kubectl: the test setup installs it (scripts/install-kubectl.sh, a no-op that
    only checks the version when it is there)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "install-kubectl.sh"
    p = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, f"scripts/install-kubectl.sh: {p.stderr}"
    return KUBECTL
