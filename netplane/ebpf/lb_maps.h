/* Map layouts shared by the socket LB (lb.bpf.c) and the NodePort program (nodeport.bpf.c).
 * Mirrored once in netplane/ebpf/maps.py; keep the two in sync (sizes are checked at load).
 * Addresses and ports are in network byte order, as the kernel hands them to us.
 * Every map is pinned under PIN_DIR (a -D cflag) so an agent restart keeps them. */
#ifndef NETPLANE_LB_MAPS_H
#define NETPLANE_LB_MAPS_H

#define LB_F_AFFINITY 1

/* Service map: (VIP, port, proto, slot). Slot 0 holds the backend count, flags and the
 * service id; slots 1..count hold backend ids (Cilium's layout). NodePort entries use VIP 0. */
struct lb_svc_key {
    u32 vip;
    u16 port;
    u8 proto;
    u8 pad;
    u16 slot;
    u16 pad2;
};

struct lb_svc_val {
    u32 backend_id;
    u16 count;
    u8 flags;
    u8 pad;
    u32 affinity_timeout; /* seconds */
    u32 svc_id;
};

struct lb_backend {
    u32 ip;
    u16 port;
    u8 proto;
    u8 pad;
    u32 svc_id;
};

/* ClientIP affinity: per client network namespace (a pod, or a host) and service. */
struct lb_aff_key {
    u64 netns;
    u32 svc_id;
    u32 pad;
};

struct lb_aff_val {
    u64 last_ns;
    u32 backend_id;
    u32 pad;
};

/* UDP reverse translation: (socket cookie, backend) -> the VIP the app asked for. */
struct lb_rev_key {
    u64 cookie;
    u32 ip;
    u16 port;
    u16 pad;
};

struct lb_rev_val {
    u32 vip;
    u16 port;
    u16 pad;
};

/* NodePort flows seen at tc: forward (client, nodePort) -> backend, reverse for replies. */
struct np_ct_key {
    u32 addr1;
    u32 addr2;
    u16 port1;
    u16 port2;
    u8 proto;
    u8 pad[3];
};

struct np_ct_val {
    u32 ip;
    u16 port;
    u16 snat_port;  /* forward entries: 0 for a local backend, else the source port we SNATed to */
    u32 backend_id; /* forward entries: to notice the backend went away */
    u32 pad2;
};

/* NodePort flows to a backend on another host, SNATed to (SNAT_IP, snat port): keyed like a
 * reply arrives, (addr1 backend ip, addr2 SNAT_IP, port1 backend port, port2 snat port, proto),
 * -> the client and the nodePort it asked for. Creating the entry (BPF_NOEXIST) claims the
 * snat port for that (backend ip, backend port, proto); a TCP flow seen closing (FIN/RST) or a
 * UDP flow gone idle gives it up to the next flow that probes it (NP_SNAT_* in nodeport.bpf.c). */
struct np_snat_val {
    u32 client_ip;
    u16 client_port;
    u16 node_port;
    u32 last_seen; /* bpf_ktime_get_ns() >> 30, about seconds */
    u8 closing;    /* FIN or RST seen in either direction */
    u8 pad[3];
};

BPF_TABLE_PINNED("hash", struct lb_svc_key, struct lb_svc_val, lb_services, 524288, PIN_DIR "/lb_services");
BPF_TABLE_PINNED("hash", u32, struct lb_backend, lb_backends, 262144, PIN_DIR "/lb_backends");
BPF_TABLE_PINNED("lru_hash", struct lb_aff_key, struct lb_aff_val, lb_affinity, 65536, PIN_DIR "/lb_affinity");

#endif
