"""Runs netplane itself on a built lab: cluster config in etcd, one agent per host.

Kept apart from the builder so the bare lab (namespaces, underlay, etcd) stays usable and
testable on its own (`lab up --no-agents`).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Any

from netplane.lab.builder import LAB_PREFIX, Lab

log = logging.getLogger(__name__)


def agent_available() -> bool:
    return importlib.util.find_spec("netplane.cli.agent") is not None


def agent_argv(lab: Lab, host: str) -> list[str]:
    t = lab.topology
    argv = [
        sys.executable, "-m", "netplane",
        "--log-level", "info",
        "--etcd", lab.etcd_endpoint_underlay,
        "--prefix", LAB_PREFIX,
        "agent",
        "--node", host,
        "--iface", "eth0",
        "--subnet-file", str(lab.host_dir(host) / "subnet.env"),
        "--health-listen", f"{t.host(host).underlay_ip}:9100",
    ]
    return argv


def start(lab: Lab) -> None:
    """Start an agent on every host (no-op until the agent exists)."""
    if not agent_available():
        log.warning("netplane agent not available in this build; lab has no agents")
        return
    for h in lab.topology.hosts:
        lab.spawn_on(h.name, agent_argv(lab, h.name), role="agent", marker=str(lab.host_dir(h.name)), log_name="agent.log")


def enrich_status(lab: Lab, st: dict[str, Any]) -> dict[str, Any]:
    return st
