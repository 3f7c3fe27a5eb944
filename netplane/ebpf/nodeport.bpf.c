/* NodePort, per packet, at tc (north-south traffic), externalTrafficPolicy=Cluster.
 *
 * np_nodeport_ingress (tc ingress, underlay interface): a packet to NODE_IP:nodePort is DNATed
 * to a backend chosen at random from the service map entry (VIP 0, nodePort, proto) and the
 * flow is remembered (np_ct_fwd), so every later packet of the connection goes to the same
 * backend (a new TCP connection on a reused tuple, or a UDP flow whose backend was removed, is
 * balanced anew).
 *   - Backend on this host (its address in LOCAL_NET/LOCAL_MASK): DNAT only; the stack
 *     delivers it, the pod sees the client's address, and np_nodeport_egress rewrites the
 *     reply's source back to NODE_IP:nodePort (np_ct_rev) on its way out of the underlay.
 *   - Backend on another host: DNAT and SNAT the source to SNAT_IP (this host's VXLAN device
 *     address, the address the iptables backend's MASQUERADE picks for the same packet) and a
 *     port from SNAT_PORT_MIN..SNAT_PORT_MAX claimed per (backend ip, backend port, proto) in
 *     np_snat_rev, then forward it ourselves (bpf_fib_lookup + bpf_redirect, or
 *     bpf_redirect_neigh when the neighbour is not resolved yet): handed back to the stack,
 *     a packet whose source is a local address would be dropped as a martian.
 * np_overlay_ingress (tc ingress, VXLAN device): the backend's reply comes back through the
 * overlay to SNAT_IP:snat port; it is reverse-translated (to the client, from NODE_IP:nodePort)
 * and forwarded out of the underlay the same way. The underlay ingress does the same for a
 * reply that arrives there (flannel DirectRouting routes pod subnets over the underlay).
 * NODE_IP, SNAT_IP (0: no SNAT, every backend is treated as local), LOCAL_NET, LOCAL_MASK
 * (network order u32), SNAT_PORT_MIN/MAX and PIN_DIR come in as -D cflags. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/pkt_cls.h>

#include "lb_maps.h"

BPF_TABLE_PINNED("lru_hash", struct np_ct_key, struct np_ct_val, np_ct_fwd, 65536, PIN_DIR "/np_ct_fwd");
BPF_TABLE_PINNED("lru_hash", struct np_ct_key, struct np_ct_val, np_ct_rev, 65536, PIN_DIR "/np_ct_rev");
BPF_TABLE_PINNED("lru_hash", struct np_ct_key, struct np_snat_val, np_snat_rev, 65536, PIN_DIR "/np_snat_rev");

#ifndef SNAT_IP
#define SNAT_IP 0u
#endif
#ifndef LOCAL_NET
#define LOCAL_NET 0u
#define LOCAL_MASK 0u
#endif
#ifndef SNAT_PORT_MIN
#define SNAT_PORT_MIN 1024
#define SNAT_PORT_MAX 29999
#endif
#define SNAT_PORTS (SNAT_PORT_MAX - SNAT_PORT_MIN + 1)
#define SNAT_TRIES 16
/* when a claimed snat port may be taken over (units of 2^30 ns, about seconds): a TCP flow
 * seen closing after a grace for the last ACKs and retransmitted FINs (a backend that closed
 * first holds TIME_WAIT, which accepts a new SYN with newer timestamps), a UDP flow idle like
 * conntrack's unreplied UDP timeout. An open TCP flow keeps its port until the LRU evicts it. */
#ifndef NP_SNAT_TCP_CLOSED_GRACE
#define NP_SNAT_TCP_CLOSED_GRACE 2
#endif
#ifndef NP_SNAT_UDP_IDLE /* the loader sets it (default 30); tests use a few units */
#define NP_SNAT_UDP_IDLE 30
#endif
#ifndef AF_INET
#define AF_INET 2
#endif

/* bcc 0.26's helpers.h declares bpf_redirect_neigh without its `plen` argument */
static long (*np_redirect_neigh)(u32 ifindex, struct bpf_redir_neigh *params, int plen, u64 flags) =
    (void *)BPF_FUNC_redirect_neigh;

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))

struct l4 {
    u32 off;       /* offset of the L4 header */
    u32 csum_off;  /* offset of its checksum */
    u16 sport;
    u16 dport;
    u8 proto;
    u8 udp_zero_csum;
    u8 syn; /* a TCP SYN without ACK: a new connection, even on a known tuple */
    u8 fin_rst; /* a TCP FIN or RST: the connection is closing */
};

static __always_inline int parse(struct __sk_buff *skb, struct iphdr **ipp, struct l4 *l)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return -1;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl < 5)
        return -1;
    if (ip->frag_off & bpf_htons(0x3fff))
        return -1;
    u32 off = ETH_HLEN + ip->ihl * 4;
    l->off = off;
    l->proto = ip->protocol;
    if (ip->protocol == IPPROTO_TCP) {
        struct tcphdr *t = data + off;
        if ((void *)(t + 1) > end)
            return -1;
        l->sport = t->source;
        l->dport = t->dest;
        l->csum_off = off + offsetof(struct tcphdr, check);
        l->udp_zero_csum = 0;
        l->syn = t->syn && !t->ack;
        l->fin_rst = t->fin || t->rst;
    } else if (ip->protocol == IPPROTO_UDP) {
        struct udphdr *u = data + off;
        if ((void *)(u + 1) > end)
            return -1;
        l->sport = u->source;
        l->dport = u->dest;
        l->csum_off = off + offsetof(struct udphdr, check);
        l->udp_zero_csum = u->check == 0;
    } else {
        return -1;
    }
    *ipp = ip;
    return 0;
}

/* Rewrite one address (at addr_off) and one port (at port_off) with checksum fixes. */
static __always_inline void rewrite(struct __sk_buff *skb, struct l4 *l, u32 addr_off, u32 old_ip, u32 new_ip,
                                    u32 port_off, u16 old_port, u16 new_port)
{
    u64 l4flags = BPF_F_PSEUDO_HDR | sizeof(new_ip);
    if (l->proto == IPPROTO_UDP)
        l4flags |= BPF_F_MARK_MANGLED_0;
    if (!(l->proto == IPPROTO_UDP && l->udp_zero_csum)) {
        bpf_l4_csum_replace(skb, l->csum_off, old_ip, new_ip, l4flags);
        bpf_l4_csum_replace(skb, l->csum_off, old_port, new_port,
                            sizeof(new_port) | (l->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0));
    }
    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ip, new_ip, sizeof(new_ip));
    bpf_skb_store_bytes(skb, addr_off, &new_ip, sizeof(new_ip), 0);
    bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0);
}

/* We route the packet ourselves: TTL - 1, like any forwarded packet. */
static __always_inline int dec_ttl(struct __sk_buff *skb)
{
    u8 ttl;
    if (bpf_skb_load_bytes(skb, IP_TTL_OFF, &ttl, 1) < 0 || ttl <= 1)
        return -1;
    u8 nttl = ttl - 1;
    bpf_l3_csum_replace(skb, IP_CSUM_OFF, bpf_htons((u16)ttl << 8), bpf_htons((u16)nttl << 8), 2);
    bpf_skb_store_bytes(skb, IP_TTL_OFF, &nttl, 1, 0);
    return 0;
}

/* Send a rewritten packet (source = one of our addresses) to its next hop ourselves. */
static __always_inline int forward(struct __sk_buff *skb, u32 src, u32 dst)
{
    if (dec_ttl(skb) < 0)
        return TC_ACT_SHOT;
    struct bpf_fib_lookup p = {};
    p.family = AF_INET;
    p.ipv4_src = src;
    p.ipv4_dst = dst;
    p.ifindex = skb->ingress_ifindex;
    long rc = bpf_fib_lookup(skb, &p, sizeof(p), 0);
#ifndef NP_ALWAYS_REDIRECT_NEIGH
    /* FRAG_NEEDED (only on a fully resolved lookup: params are filled): send anyway, the VXLAN
     * device fragments the outer packet; TCP never gets here thanks to the MSS both ends use */
    if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
        if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), p.dmac, ETH_ALEN, 0) < 0 ||
            bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), p.smac, ETH_ALEN, 0) < 0)
            return TC_ACT_SHOT;
        return bpf_redirect(p.ifindex, 0);
    }
#endif
    if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED || rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
        /* the neighbour subsystem resolves (and queues) for us; p.ipv4_dst is the next hop */
        struct bpf_redir_neigh nh = {};
        nh.nh_family = AF_INET;
        nh.ipv4_nh = p.ipv4_dst;
        return np_redirect_neigh(p.ifindex, &nh, sizeof(nh), 0);
    }
    return TC_ACT_SHOT; /* no route (or not forwardable): the stack would drop it too */
}

static __always_inline u32 now_s(void)
{
    return bpf_ktime_get_ns() >> 30;
}

/* Note activity (and a closing TCP flow) on a claimed snat port; written only on change. */
static __always_inline void touch(struct np_snat_val *sv, struct l4 *l)
{
    u32 now = now_s();
    if (sv->last_seen != now)
        sv->last_seen = now;
    if (l->fin_rst && !sv->closing)
        sv->closing = 1;
}

static __always_inline int snat_owner(struct np_snat_val *sv, struct np_snat_val *want)
{
    return sv->client_ip == want->client_ip && sv->client_port == want->client_port && sv->node_port == want->node_port;
}

/* A reply from a remote backend to SNAT_IP:snat port -> from NODE_IP:nodePort to the client. */
static __always_inline int snat_reply(struct __sk_buff *skb, struct iphdr *ip, struct l4 *l)
{
    struct np_ct_key rk = {};
    rk.addr1 = ip->saddr;
    rk.addr2 = ip->daddr;
    rk.port1 = l->sport;
    rk.port2 = l->dport;
    rk.proto = l->proto;
    u32 saddr = ip->saddr;
    struct np_snat_val *sv = np_snat_rev.lookup(&rk);
    if (!sv)
        return TC_ACT_OK;
    touch(sv, l);
    struct np_snat_val v = *sv;
    rewrite(skb, l, IP_DST_OFF, SNAT_IP, v.client_ip, l->off + 2, l->dport, v.client_port);
    rewrite(skb, l, IP_SRC_OFF, saddr, NODE_IP, l->off, l->sport, v.node_port);
    return forward(skb, NODE_IP, v.client_ip);
}

/* Claim a source port for (backend, SNAT_IP, proto): random probes in np_snat_rev; a free port,
 * or one whose flow has ended (see NP_SNAT_*). */
static __always_inline int snat_alloc(struct np_ct_key *rk, struct np_snat_val *sv)
{
    u32 start = bpf_get_prandom_u32();
    u32 now = sv->last_seen;
    for (int i = 0; i < SNAT_TRIES; i++) {
        u16 port = SNAT_PORT_MIN + ((start + i * 2654435761u) % SNAT_PORTS);
        rk->port2 = bpf_htons(port);
        if (np_snat_rev.insert(rk, sv) == 0)
            return 0;
        struct np_snat_val *old = np_snat_rev.lookup(rk);
        if (!old)
            continue;
        u32 idle = now - old->last_seen;
        int done = rk->proto == IPPROTO_TCP ? (old->closing && idle >= NP_SNAT_TCP_CLOSED_GRACE)
                                            : idle >= NP_SNAT_UDP_IDLE;
        if (done) {
            /* two CPUs may take the same ended flow's port at once; a lost race costs one flow */
            np_snat_rev.update(rk, sv);
            return 0;
        }
    }
    return -1;
}

int np_nodeport_ingress(struct __sk_buff *skb)
{
    struct iphdr *ip;
    struct l4 l = {};
    if (parse(skb, &ip, &l) < 0)
        return TC_ACT_OK;
    u32 daddr = ip->daddr;
    u32 saddr = ip->saddr;
    if (SNAT_IP != 0 && daddr == SNAT_IP)
        return snat_reply(skb, ip, &l);
    if (daddr != NODE_IP)
        return TC_ACT_OK;

    struct np_ct_key fk = {};
    fk.addr1 = saddr;
    fk.port1 = l.sport;
    fk.port2 = l.dport;
    fk.proto = l.proto;
    struct np_ct_val be = {};
    struct np_ct_val *known = np_ct_fwd.lookup(&fk);
    int fresh = 1;
    if (known) {
        if (l.proto == IPPROTO_TCP) {
            /* an established connection stays where it is (like conntrack); a SYN on a reused
             * tuple is a new connection and is balanced anew */
            fresh = l.syn;
        } else {
            /* UDP has no connections: a flow whose backend went away moves (iptables mode
             * deletes the conntrack entry for the same effect) */
            u32 kid = known->backend_id;
            struct lb_backend *kb = lb_backends.lookup(&kid);
            fresh = !(kb && kb->ip == known->ip && kb->port == known->port);
        }
        be = *known;
    }
    struct np_ct_key rk = {};
    struct np_snat_val sv = {};
    sv.client_ip = saddr;
    sv.client_port = l.sport;
    sv.node_port = l.dport;
    sv.last_seen = now_s();
    sv.closing = l.fin_rst;
    rk.addr2 = SNAT_IP;
    rk.proto = l.proto;
    if (known && be.snat_port) {
        rk.addr1 = be.ip;
        rk.port1 = be.port;
        rk.port2 = be.snat_port;
        struct np_snat_val *held = np_snat_rev.lookup(&rk);
        if (held && snat_owner(held, &sv)) {
            if (fresh)
                np_snat_rev.delete(&rk); /* the flow moves: release the port it held */
            else
                touch(held, &l);
        } else if (held) {
            fresh = 1; /* its port went to another flow after this one ended: start over */
        } else if (!fresh && np_snat_rev.insert(&rk, &sv) != 0) {
            /* the LRU dropped the entry of a live flow: put it back, unless another flow
             * claimed the port meanwhile (then start over) */
            fresh = 1;
        }
    }
    if (fresh) {
        struct lb_svc_key key = {};
        key.vip = 0;
        key.port = l.dport;
        key.proto = l.proto;
        struct lb_svc_val *svc = lb_services.lookup(&key);
        if (!svc || svc->count == 0)
            return TC_ACT_OK; /* not a nodePort, or no backends: the stack refuses it */
        key.slot = (bpf_get_prandom_u32() % svc->count) + 1;
        struct lb_svc_val *slot = lb_services.lookup(&key);
        if (!slot)
            return TC_ACT_OK;
        u32 id = slot->backend_id;
        struct lb_backend *b = lb_backends.lookup(&id);
        if (!b)
            return TC_ACT_OK;
        be.ip = b->ip;
        be.port = b->port;
        be.backend_id = id;
        be.snat_port = 0;
        be.pad2 = 0;
        if (SNAT_IP != 0 && (be.ip & LOCAL_MASK) != LOCAL_NET) {
            rk.addr1 = be.ip;
            rk.port1 = be.port;
            if (snat_alloc(&rk, &sv) < 0)
                return TC_ACT_SHOT; /* every probed port busy for this backend */
            be.snat_port = rk.port2;
        } else {
            struct np_ct_key lk = {};
            lk.addr1 = be.ip;
            lk.addr2 = saddr;
            lk.port1 = be.port;
            lk.port2 = l.sport;
            lk.proto = l.proto;
            struct np_ct_val orig = {};
            orig.ip = daddr;
            orig.port = l.dport;
            np_ct_rev.update(&lk, &orig);
        }
        np_ct_fwd.update(&fk, &be);
    }
    rewrite(skb, &l, IP_DST_OFF, daddr, be.ip, l.off + 2, l.dport, be.port);
    if (!be.snat_port)
        return TC_ACT_OK; /* a local backend: the stack delivers it, the pod sees the client */
    rewrite(skb, &l, IP_SRC_OFF, saddr, SNAT_IP, l.off, l.sport, be.snat_port);
    return forward(skb, SNAT_IP, be.ip);
}

/* tc ingress on the VXLAN device: replies of SNATed NodePort flows. */
int np_overlay_ingress(struct __sk_buff *skb)
{
    struct iphdr *ip;
    struct l4 l = {};
    if (SNAT_IP == 0 || parse(skb, &ip, &l) < 0)
        return TC_ACT_OK;
    if (ip->daddr != SNAT_IP)
        return TC_ACT_OK;
    return snat_reply(skb, ip, &l);
}

int np_nodeport_egress(struct __sk_buff *skb)
{
    struct iphdr *ip;
    struct l4 l = {};
    if (parse(skb, &ip, &l) < 0)
        return TC_ACT_OK;
    struct np_ct_key rk = {};
    rk.addr1 = ip->saddr;
    rk.addr2 = ip->daddr;
    rk.port1 = l.sport;
    rk.port2 = l.dport;
    rk.proto = l.proto;
    u32 saddr = ip->saddr;
    struct np_ct_val *orig = np_ct_rev.lookup(&rk);
    if (!orig)
        return TC_ACT_OK;
    rewrite(skb, &l, IP_SRC_OFF, saddr, orig->ip, l.off, l.sport, orig->port);
    return TC_ACT_OK;
}
