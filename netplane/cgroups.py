"""Where this machine's cgroup v2 hierarchy is: the one place that decides it.

Two layouts are met:

- **unified** (cgroup v2 only; Ubuntu 22.04/24.04, GitHub's hosted runners, Debian 12 booted
  with its defaults): `/sys/fs/cgroup` itself is the cgroup2 root, with `cgroup.controllers`
  in it and the controllers (cpu, memory, pids, io, ...) on v2;
- **hybrid** (this development VM: v1 controllers mounted below a tmpfs at `/sys/fs/cgroup`,
  plus an empty cgroup2 at `/sys/fs/cgroup/unified`, systemd's hybrid mode).

`cgroup2_root()` is `/sys/fs/cgroup` when `/sys/fs/cgroup/cgroup.controllers` exists, else
`/sys/fs/cgroup/unified` (also when neither exists: what netplane always assumed, so a pure v1
host fails where it failed before). `NETPLANE_CGROUP2_ROOT` overrides both (tests, or a cgroup2
mounted elsewhere).

What the layout changes for the lab, the eBPF proxy and the node runtimes is in README.md
(Tests: "Hosts unlike the development machine"). In short: on a unified host with controllers,
a cgroup that holds processes cannot enable controllers for its children (cgroup v2's "no
internal processes" rule), so pods below a lab host's cgroup (where its agent runs) get no v2
limits (the namespace runtime logs it once and goes on), and the Docker runtime does not move
pods into the host's subtree (it would take them out of their limits).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

CGROUP_FS = Path("/sys/fs/cgroup")
HYBRID_SUBDIR = "unified"
ENV_ROOT = "NETPLANE_CGROUP2_ROOT"

Layout = Literal["unified", "hybrid"]


def layout(fs: Path = CGROUP_FS) -> Layout:
    """`unified` when `fs` is itself a cgroup2 root, else `hybrid` (cgroup2 at `fs/unified`)."""
    return "unified" if (fs / "cgroup.controllers").exists() else "hybrid"


def cgroup2_root(fs: Path = CGROUP_FS, env: Mapping[str, str] | None = None) -> Path:
    """The directory of the cgroup v2 hierarchy's root cgroup (see the module doc)."""
    forced = (os.environ if env is None else env).get(ENV_ROOT)
    if forced:
        return Path(forced)
    return fs if layout(fs) == "unified" else fs / HYBRID_SUBDIR

