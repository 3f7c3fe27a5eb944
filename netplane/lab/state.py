"""What a lab has created, recorded as it goes, so `down` removes exactly that.

Every creation is appended to `<state>/labs/<name>/state.json` (written atomically) *before*
the next step starts, so a `lab up` that crashed midway is still torn down completely, and
nothing the lab did not record is ever touched (no pattern-based cleanup).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from netplane.context import state_dir, write_atomic
from netplane.errors import LabError
from netplane.lab.topology import Topology


def labs_dir() -> Path:
    return state_dir() / "labs"


def lab_dir(name: str) -> Path:
    return labs_dir() / name


def pki_dir(name: str) -> Path:
    """The lab's cluster CA (`ca.crt`, `ca.key`), made at `lab up` like kubeadm's: node agents
    accept client certificates it signs, and the CLI makes its own from it (`netplane logs`)."""
    return lab_dir(name) / "pki"


@dataclass
class LabState:
    topology: Topology
    items: list[dict[str, Any]] = field(default_factory=list)
    relay_port: int | None = None

    @property
    def dir(self) -> Path:
        return lab_dir(self.topology.name)

    @property
    def path(self) -> Path:
        return self.dir / "state.json"

    def save(self) -> None:
        data = {"topology": self.topology.to_json(), "items": self.items, "relay_port": self.relay_port}
        write_atomic(self.path, json.dumps(data, indent=1) + "\n")

    def record(self, kind: str, **fields: Any) -> None:
        self.items.append({"kind": kind, **fields})
        self.save()

    def forget(self, item: dict[str, Any]) -> None:
        self.items.remove(item)
        self.save()

    def find(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [i for i in self.items if i["kind"] == kind and all(i.get(k) == v for k, v in match.items())]

    @classmethod
    def load(cls, name: str) -> LabState:
        path = lab_dir(name) / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab named {name!r} (see 'netplane lab status')") from None
        except (OSError, ValueError) as e:
            raise LabError(f"lab {name!r}: state file {path} unreadable: {e}") from e
        return cls(topology=Topology.from_json(data["topology"]), items=list(data["items"]), relay_port=data.get("relay_port"))

    def remove_files(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def underlays_in_use() -> set[IPv4Network]:
    """The underlays of the labs that are up (a half-written state file: that lab is not up yet)."""
    used = set()
    for name in list_labs():
        try:
            used.add(LabState.load(name).topology.underlay)
        except LabError:
            continue
    return used


def list_labs() -> list[str]:
    d = labs_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "state.json").is_file())
