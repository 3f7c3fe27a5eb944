"""Leader election against a real etcd, candidates as real processes: hand-over after a SIGKILL
within the lease TTL, at once after a clean stop, and never two acting leaders, also when a
paused leader wakes up believing it still leads (its writes are fenced by its lease)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netplane.store import EtcdStore, Keys
from netplane.store.embedded import EmbeddedEtcd
from tests.waiting import wait_for

TTL = 2
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def candidates(etcd_server: EmbeddedEtcd, keys: Keys, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(ident: str) -> subprocess.Popen[str]:
        with open(tmp_path / f"{ident}.log", "w") as log:  # the child keeps its own descriptor
            p = subprocess.Popen([sys.executable, "-m", "tests.etcd._leader_candidate", "--etcd", etcd_server.endpoint,
                                  "--prefix", keys.prefix, "--id", ident, "--ttl", str(TTL)],
                                 cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
        p.wait()


def writers(store: EtcdStore, keys: Keys) -> list[str]:
    """The shared log's entries in order: which candidate acted, one entry per fenced write."""
    return [kv.value.decode() for kv in store.list(keys.prefix + "/log/")[0]]


def runs(seq: list[str]) -> list[str]:
    """['a', 'a', 'b', 'b', 'a'] -> ['a', 'b', 'a']"""
    return [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x]


def test_sigkilled_leader_is_replaced_within_the_lease_ttl(store: EtcdStore, keys: Keys,
                                                           candidates: Callable[[str], subprocess.Popen[str]]) -> None:
    a = candidates("a")
    wait_for(lambda: "a" in writers(store, keys), 10, "a leads")
    candidates("b")
    time.sleep(0.5)  # b is up and waiting (its writes would show if it acted)
    assert set(writers(store, keys)) == {"a"}
    a.kill()
    t0 = time.monotonic()
    wait_for(lambda: "b" in writers(store, keys), TTL + 3, "b takes over")
    took = time.monotonic() - t0
    assert took <= TTL + 1.5, took
    assert runs(writers(store, keys)) == ["a", "b"]


def test_clean_stop_hands_over_at_once(store: EtcdStore, keys: Keys, candidates: Callable[[str], subprocess.Popen[str]],
                                       tmp_path: Path) -> None:
    a = candidates("a")
    wait_for(lambda: "a" in writers(store, keys), 10, "a leads")
    candidates("b")
    wait_for(lambda: "b waits: a leads" in (tmp_path / "b.log").read_text(), 10, "b waiting")
    a.terminate()
    t0 = time.monotonic()
    wait_for(lambda: "b" in writers(store, keys), TTL + 3, "b takes over")
    took = time.monotonic() - t0
    assert a.wait(10) == 0
    assert took < 1.0, f"a clean stop took {took:.2f}s to hand over (the lease is revoked, not left to expire)"
    assert runs(writers(store, keys)) == ["a", "b"]


def test_a_paused_leader_that_wakes_up_cannot_act(store: EtcdStore, keys: Keys,
                                                  candidates: Callable[[str], subprocess.Popen[str]], tmp_path: Path) -> None:
    a = candidates("a")
    wait_for(lambda: "a" in writers(store, keys), 10, "a leads")
    b = candidates("b")
    wait_for(lambda: "b waits: a leads" in (tmp_path / "b.log").read_text(), 10, "b waiting")
    a.send_signal(signal.SIGSTOP)  # a freezes mid-term, believing it leads
    wait_for(lambda: "b" in writers(store, keys), TTL + 3, "b takes over")
    a.send_signal(signal.SIGCONT)
    wait_for(lambda: "a stops leading" in (tmp_path / "a.log").read_text(), 10, "a notices it lost")
    n = len(writers(store, keys))
    wait_for(lambda: len(writers(store, keys)) >= n + 20, 10, "b keeps acting")
    # no entry of a after b's first: a's writes after waking were refused by the fence
    assert runs(writers(store, keys)) == ["a", "b"], runs(writers(store, keys))
    assert a.poll() is None and b.poll() is None  # a is a candidate again, not crashed
