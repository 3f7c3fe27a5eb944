"""Resolving names of the current lab (`--host h1`, `--from pa`) for CLI commands that act on
or talk to one host or pod of it. "Current" is the lab the context file points at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from netplane import context

if TYPE_CHECKING:
    from netplane.lab.builder import Lab


@dataclass(frozen=True)
class LabHost:
    lab: str
    name: str
    netns: str
    underlay_ip: str
    cgroup: str


@dataclass(frozen=True)
class LabPod:
    name: str
    host: str
    host_netns: str
    netns: str


def current_lab() -> Lab | None:
    ctx = context.load_context()
    if ctx is None or not ctx.lab:
        return None
    from netplane.lab import Lab, list_labs

    return Lab.load(ctx.lab) if ctx.lab in list_labs() else None


def lab_host(name: str) -> LabHost | None:
    """The current lab's host `name`, or None when there is no current lab or no such host."""
    lab = current_lab()
    if lab is None:
        return None
    for h in lab.topology.hosts:
        if h.name == name:
            return LabHost(lab=lab.name, name=h.name, netns=lab.netns(h.name),
                           underlay_ip=str(h.underlay_ip), cgroup=str(lab.cgroup(h.name)))
    return None


def lab_pod(name: str) -> LabPod | None:
    """The current lab's pod `name`, or None."""
    lab = current_lab()
    if lab is None:
        return None
    from netplane.lab import pods

    item = pods.find(lab, name)
    if item is None:
        return None
    return LabPod(name=name, host=item["host"], host_netns=lab.netns(item["host"]), netns=item["netns"])
