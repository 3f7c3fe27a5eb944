"""Fixtures the etcd-tier tests share (the session's etcd, `store` and `keys`, come from
tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from netplane.store import EtcdStore, Keys
from orchestrator.storage import ObjectStore


@pytest.fixture
def objects(store: EtcdStore, keys: Keys) -> ObjectStore:
    """The test's object store over its own key prefix."""
    return ObjectStore(store, keys)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    """Set when the test ends, whatever happened: it ends the informers and loops started with it."""
    ev = threading.Event()
    yield ev
    ev.set()
