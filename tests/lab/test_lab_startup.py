"""Agent start-up in the lab: a start that cannot succeed says why (the error carries the end of
the agent's log, and fails at once rather than at the deadline); a start that can succeed later
is retried until it does."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable

import pytest

from netplane import netns
from netplane.errors import LabError
from netplane.lab import Lab, cluster
from netplane.lab.builder import LAB_PREFIX
from netplane.store import Keys

KEYS = Keys(LAB_PREFIX)


def test_agent_that_cannot_start_fails_fast_with_the_end_of_its_log(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(2, proxy="none")
    h1 = str(lab.topology.host("h1").underlay_ip)
    with netns.inside(lab.netns("h1")):
        squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((h1, 9100))  # h1's health port, taken by someone else
    squatter.listen()
    try:
        t0 = time.monotonic()
        with pytest.raises(LabError) as e:
            cluster.start(lab, wait=60)
        took = time.monotonic() - t0
    finally:
        squatter.close()
    msg = str(e.value)
    assert msg.startswith("agent on h1 exited with code 2 during start-up; last lines of "), msg
    assert f"cannot listen on {h1}:9100: Address already in use" in msg, msg
    assert took < 15, f"an agent that exited was only noticed after {took:.1f}s"


def test_agent_retries_until_a_subnet_is_free(lab_factory: Callable[..., Lab]) -> None:
    # a /23 pod network with /24 subnets has exactly one subnet to lease (10.244.1.0/24)
    lab = lab_factory(2, proxy="none", overlay_network="10.244.0.0/23")
    with pytest.raises(LabError) as e:
        cluster.start(lab, wait=4)
    assert str(e.value).startswith("hosts not ready after 4s: "), str(e.value)  # not "exited"
    waiting = next(h for h in ("h1", "h2") if f"hosts not ready after 4s: {h}\n" in str(e.value))
    holder = "h1" if waiting == "h2" else "h2"
    assert "no free subnet" in str(e.value), str(e.value)
    # the waiting agent is still alive, retrying; once the holder is gone and its lease deleted,
    # it takes the subnet and finishes its start-up
    item = lab.state.find("process", role="agent", host=waiting)[0]
    assert cluster._alive(item)
    lab.stop_process(lab.state.find("process", role="agent", host=holder)[0], sig=signal.SIGKILL)
    with cluster.store_for(lab) as s:
        s.delete_prefix(KEYS.subnets)
    deadline = time.monotonic() + 30
    while not (lab.host_dir(waiting) / "subnet.env").exists():
        assert cluster._alive(item), (lab.host_dir(waiting) / "agent.log").read_text()
        assert time.monotonic() < deadline, "the waiting agent never took the freed subnet"
        time.sleep(0.1)
    assert cluster.host_subnets(lab) == {waiting: "10.244.1.0/24"}
    log = (lab.host_dir(waiting) / "agent.log").read_text()
    assert "acquiring a lease failed: no free subnet" in log and "retrying in" in log
