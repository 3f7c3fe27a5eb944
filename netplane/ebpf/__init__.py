"""eBPF service load balancing (bcc): socket-level LB at cgroup v2 connect4/sendmsg4/recvmsg4/
getpeername4, NodePort at tc on the underlay interface (endpoints on other hosts SNATed through the VXLAN device), maps pinned under /sys/fs/bpf/netplane.

    lb.bpf.c, nodeport.bpf.c, lb_maps.h   the programs and the shared map layouts
    maps.py             the layouts mirrored once in ctypes
    plan.py             current maps + desired state -> ordered, minimal map writes (pure)
    mapops.py           batched map reads/writes by fd (adapter)
    loader.py           EbpfBackend: compile, attach, pin, sync, dump, cleanup (adapter)
    sys.py              bpf(2) calls bcc lacks (pinned objects, detach) and mounting bpffs
"""
