"""Service load balancing: Service/Endpoints model and API, the proxy loop, and its backends.

    model.py            Service, Endpoints, validation, etcd JSON (pure)
    api.py              create/delete/endpoints/list over etcd; race-safe ClusterIP/nodePort allocation
    desired.py          Services + Endpoints -> LB entries, one per service port (pure)
    runner.py           ProxyComponent: list+watch -> incremental desired state -> backend.sync
    backend.py          the backend protocol (sync / dump / close / cleanup)
    iptables_render.py  kube-proxy's chain layout as iptables-restore input, full and partial (pure)
    conntrack.py        deletes stale UDP flows to removed endpoints (iptables and nftables)
    iptables.py         applies it (iptables-restore --noflush), conntrack flush, cleanup (adapter)
    nftables_render.py  table ip netplane: kube-proxy's verdict maps, endpoints as map elements; full and partial (pure)
    nftables.py         applies it (libnftables or nft -f -, one transaction per sync), conntrack flush, dump, cleanup
    probe.py            tiny TCP/UDP responder and client used by tests, benchmarks and the demo

The eBPF backend lives in `netplane.ebpf`.
"""
