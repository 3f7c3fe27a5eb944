/* NodePort, per packet, at tc on the host's underlay interface (north-south traffic).
 *
 * Ingress: a packet to NODE_IP:nodePort is DNATed to a backend chosen at random from the
 * service map entry (VIP 0, nodePort, proto) and the flow is remembered both ways, so every
 * later packet of the connection goes to the same backend (a new TCP connection on a reused
 * tuple, or a UDP flow whose backend was removed, is balanced anew). Egress: replies from that backend
 * to the client get their source rewritten back to NODE_IP:nodePort.
 * NODE_IP (network order, as a u32) and PIN_DIR come in as -D cflags. */
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

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))

struct l4 {
    u32 off;       /* offset of the L4 header */
    u32 csum_off;  /* offset of its checksum */
    u16 sport;
    u16 dport;
    u8 proto;
    u8 udp_zero_csum;
    u8 syn; /* a TCP SYN without ACK: a new connection, even on a known tuple */
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

int np_nodeport_ingress(struct __sk_buff *skb)
{
    struct iphdr *ip;
    struct l4 l = {};
    if (parse(skb, &ip, &l) < 0)
        return TC_ACT_OK;
    u32 daddr = ip->daddr;
    u32 saddr = ip->saddr;
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
        if (!fresh)
            be = *known;
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
        np_ct_fwd.update(&fk, &be);
        struct np_ct_key rk = {};
        rk.addr1 = be.ip;
        rk.addr2 = saddr;
        rk.port1 = be.port;
        rk.port2 = l.sport;
        rk.proto = l.proto;
        struct np_ct_val orig = {};
        orig.ip = daddr;
        orig.port = l.dport;
        np_ct_rev.update(&rk, &orig);
    }
    rewrite(skb, &l, IP_DST_OFF, daddr, be.ip, l.off + 2, l.dport, be.port);
    return TC_ACT_OK;
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
