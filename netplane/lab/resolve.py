"""Resolving a lab host name (`--host h1`) from the current context, for CLI commands that
act on or talk to one host of the current lab."""

from __future__ import annotations

from dataclasses import dataclass

from netplane import context


@dataclass(frozen=True)
class LabHost:
    lab: str
    name: str
    netns: str
    underlay_ip: str


def lab_host(name: str) -> LabHost | None:
    """The current lab's host `name`, or None when there is no current lab or no such host."""
    ctx = context.load_context()
    if ctx is None or not ctx.lab:
        return None
    from netplane.lab import Lab, list_labs

    if ctx.lab not in list_labs():
        return None
    lab = Lab.load(ctx.lab)
    for h in lab.topology.hosts:
        if h.name == name:
            return LabHost(lab=lab.name, name=h.name, netns=lab.netns(h.name), underlay_ip=str(h.underlay_ip))
    return None
