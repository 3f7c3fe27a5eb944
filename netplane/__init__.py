"""netplane: a kernel-near, networking-first container cluster.

Networking core (store, subnet leases, VXLAN overlay, service proxy, eBPF, lab) and the CLI.
"""

__version__ = "0.1.0"
