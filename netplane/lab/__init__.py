"""The lab: several emulated hosts on one machine, built from a topology as data.

`Topology` (names and addresses) is separate from `Lab` (which makes namespaces, links,
cgroups, etcd and processes and records each one for an exact teardown).
"""

from netplane.lab.builder import Lab
from netplane.lab.state import list_labs
from netplane.lab.topology import HostSpec, Topology, default_topology

__all__ = ["HostSpec", "Lab", "Topology", "default_topology", "list_labs"]
