/* Socket-level service load balancing (Cilium's socket LB, reduced).
 *
 * cgroup v2 connect4 rewrites the destination of TCP and connected-UDP sockets from a
 * service VIP:port to a backend, once, at connect time: no per-packet NAT afterwards.
 * sendmsg4 does the same for each unconnected UDP datagram and records the translation
 * by socket cookie (connect4 too); recvmsg4 rewrites the source of replies back to the VIP and
 * getpeername4 reports the VIP as the peer, so the application never sees the backend.
 * A service with no backends refuses (ECONNREFUSED). */
#include <uapi/linux/bpf.h>
#include <uapi/linux/in.h>
#define NP_SOCK_STREAM 1
#define NP_SOCK_DGRAM 2

#include "lb_maps.h"

BPF_TABLE_PINNED("lru_hash", struct lb_rev_key, struct lb_rev_val, lb_revnat, 262144, PIN_DIR "/lb_revnat");

#define NP_ECONNREFUSED 111
static long (*np_set_retval)(int retval) = (void *)187; /* BPF_FUNC_set_retval */
static u64 (*np_netns_cookie)(void *ctx) = (void *)122; /* BPF_FUNC_get_netns_cookie */
static u64 (*np_socket_cookie)(void *ctx) = (void *)46; /* BPF_FUNC_get_socket_cookie */

static __always_inline int lb4(struct bpf_sock_addr *ctx, int record_rev)
{
    u8 proto;
    if (ctx->type == NP_SOCK_STREAM)
        proto = IPPROTO_TCP;
    else if (ctx->type == NP_SOCK_DGRAM)
        proto = IPPROTO_UDP;
    else
        return 1;

    struct lb_svc_key key = {};
    key.vip = ctx->user_ip4;
    key.port = (u16)ctx->user_port;
    key.proto = proto;
    struct lb_svc_val *svc = lb_services.lookup(&key);
    if (!svc)
        return 1;
    u16 count = svc->count;
    u32 svc_id = svc->svc_id;
    u8 flags = svc->flags;
    u64 timeout_ns = (u64)svc->affinity_timeout * 1000000000ULL;
    if (count == 0) {
        np_set_retval(-NP_ECONNREFUSED);
        return 0;
    }

    u32 backend_id = 0;
    struct lb_aff_key ak = {};
    u64 now = 0;
    if (flags & LB_F_AFFINITY) {
        ak.netns = np_netns_cookie(ctx);
        ak.svc_id = svc_id;
        now = bpf_ktime_get_ns();
        struct lb_aff_val *av = lb_affinity.lookup(&ak);
        if (av && now - av->last_ns < timeout_ns) {
            u32 id = av->backend_id;
            struct lb_backend *ab = lb_backends.lookup(&id);
            if (ab && ab->svc_id == svc_id)
                backend_id = id;
        }
    }
    if (!backend_id) {
        key.slot = (bpf_get_prandom_u32() % count) + 1;
        struct lb_svc_val *slot = lb_services.lookup(&key);
        if (!slot)
            return 1;
        backend_id = slot->backend_id;
    }
    struct lb_backend *b = lb_backends.lookup(&backend_id);
    if (!b)
        return 1;
    if (flags & LB_F_AFFINITY) {
        struct lb_aff_val nv = {};
        nv.last_ns = now;
        nv.backend_id = backend_id;
        lb_affinity.update(&ak, &nv);
    }
    if (record_rev) {
        struct lb_rev_key rk = {};
        rk.cookie = np_socket_cookie(ctx);
        rk.ip = b->ip;
        rk.port = b->port;
        struct lb_rev_val rv = {};
        rv.vip = ctx->user_ip4;
        rv.port = (u16)ctx->user_port;
        lb_revnat.update(&rk, &rv);
    }
    ctx->user_ip4 = b->ip;
    ctx->user_port = (u32)b->port;
    return 1;
}

int np_connect4(struct bpf_sock_addr *ctx)
{
    return lb4(ctx, 1);
}

int np_sendmsg4(struct bpf_sock_addr *ctx)
{
    return lb4(ctx, 1);
}

/* Show the VIP instead of the backend this socket was sent to: replies (recvmsg) and
 * getpeername() both translate through the per-socket reverse map. */
static __always_inline int rev_translate(struct bpf_sock_addr *ctx)
{
    struct lb_rev_key rk = {};
    rk.cookie = np_socket_cookie(ctx);
    rk.ip = ctx->user_ip4;
    rk.port = (u16)ctx->user_port;
    struct lb_rev_val *rv = lb_revnat.lookup(&rk);
    if (rv) {
        ctx->user_ip4 = rv->vip;
        ctx->user_port = (u32)rv->port;
    }
    return 1;
}

int np_recvmsg4(struct bpf_sock_addr *ctx)
{
    return rev_translate(ctx);
}

int np_getpeername4(struct bpf_sock_addr *ctx)
{
    return rev_translate(ctx);
}
