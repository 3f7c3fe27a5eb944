"""Lab fixtures: labs built for real (namespaces, etcd, processes), torn down after each test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netplane.lab import Lab, default_topology
from netplane.lab.topology import Topology


@pytest.fixture
def lab_factory(state_dir: Path) -> Iterator[Callable[..., Lab]]:
    """Build labs with unique names on unique underlays; every one is torn down afterwards."""
    made: list[Lab] = []

    def make(hosts: int = 3, *, agents: bool = False, **kwargs: object) -> Lab:
        name = "t" + uuid.uuid4().hex[:8]
        idx = 100 + len(made) + (uuid.uuid4().int % 100)
        topo: Topology = default_topology(name, hosts=hosts, underlay=f"10.98.{idx}.0/24", **kwargs)  # type: ignore[arg-type]
        lab = Lab.up(topo)
        made.append(lab)
        if agents:
            from netplane.lab import cluster

            cluster.start(lab)
        return lab

    yield make
    errors = []
    for lab in reversed(made):
        try:
            lab.down()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    assert not errors, errors
