/*
 * netplane cgroup stats reader (see np_reader.h for why it exists and how it is used).
 *
 * Every parser here has a twin in stats/cgroups/pyreader.py; change both together.
 * Parsing rules shared with the twin:
 *   - numbers are runs of ASCII digits, accumulated modulo 2^64;
 *   - a line that does not have the expected shape is skipped;
 *   - a single-value file without a number is a failure (EINVAL);
 *   - per-cpu/device/interface arrays are capped at their sizes, extra entries ignored.
 */
#define _GNU_SOURCE
#include "np_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Static_assert(NP_NKINDS == 21, "err[] size in struct np_stats");
_Static_assert(NP_MAX_CPUS == 256 && NP_MAX_DEVS == 32 && NP_MAX_IFACES == 32, "array sizes");

#define BUF_SIZE 65536
#define USER_HZ_NS 10000000ULL /* cpuacct.stat unit: USER_HZ is 100 on Linux (ABI) */

struct np_file {
    int kind;
    int fd;
    char *path;
};

struct np_cg {
    size_t n;
    struct np_file files[];
};

static __thread char tbuf[BUF_SIZE];

/* ------------------------------------------------------------------ descriptors */

static int open_ro(const char *path) {
    return open(path, O_RDONLY | O_CLOEXEC);
}

struct np_cg *np_open(const int *kinds, const char *const *paths, size_t n) {
    struct np_cg *cg = calloc(1, sizeof(*cg) + n * sizeof(struct np_file));
    if (!cg)
        return NULL;
    cg->n = n;
    for (size_t i = 0; i < n; i++) {
        cg->files[i].kind = kinds[i];
        cg->files[i].path = strdup(paths[i]);
        cg->files[i].fd = cg->files[i].path ? open_ro(paths[i]) : -1;
    }
    return cg;
}

void np_close(struct np_cg *cg) {
    if (!cg)
        return;
    for (size_t i = 0; i < cg->n; i++) {
        if (cg->files[i].fd >= 0)
            close(cg->files[i].fd);
        free(cg->files[i].path);
    }
    free(cg);
}

size_t np_open_fds(const struct np_cg *cg) {
    size_t k = 0;
    for (size_t i = 0; i < cg->n; i++)
        k += cg->files[i].fd >= 0;
    return k;
}

/* pread at offset 0 into tbuf; on a stale descriptor (cgroup removed: ENODEV, or any error)
 * re-open the path once and retry, so a recreated cgroup is picked up. Returns the length or
 * -errno. */
static ssize_t read_file(struct np_file *f, char *buf, size_t cap) {
    for (int attempt = 0; attempt < 2; attempt++) {
        if (f->fd < 0) {
            if (!f->path)
                return -ENOMEM;
            f->fd = open_ro(f->path);
            if (f->fd < 0)
                return -errno;
            attempt = 1; /* a fresh descriptor gets no second chance */
        }
        ssize_t r = pread(f->fd, buf, cap - 1, 0);
        if (r >= 0) {
            buf[r] = '\0';
            return r;
        }
        int e = errno;
        close(f->fd);
        f->fd = -1;
        if (attempt == 1)
            return -e;
    }
    return -EIO;
}

/* Count the lines of a (possibly large) file: cgroup.procs / cgroup.threads. */
static ssize_t count_lines(struct np_file *f, uint64_t *lines) {
    ssize_t r = read_file(f, tbuf, BUF_SIZE);
    if (r < 0)
        return r;
    uint64_t k = 0;
    off_t off = 0;
    for (;;) {
        for (ssize_t i = 0; i < r; i++)
            k += tbuf[i] == '\n';
        if (r < BUF_SIZE - 1)
            break;
        off += r;
        r = pread(f->fd, tbuf, BUF_SIZE - 1, off);
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
    }
    *lines = k;
    return 0;
}

/* ------------------------------------------------------------------ parsing helpers */

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_space(char c) { return c == ' ' || c == '\t'; }

/* Parse digits at *p (after optional spaces); returns 1 and advances on success. */
static int num(const char **p, uint64_t *v) {
    const char *s = *p;
    while (is_space(*s))
        s++;
    if (!is_digit(*s))
        return 0;
    uint64_t x = 0;
    while (is_digit(*s))
        x = x * 10 + (uint64_t)(*s++ - '0');
    *v = x;
    *p = s;
    return 1;
}

static const char *next_line(const char *p) {
    const char *nl = strchr(p, '\n');
    return nl ? nl + 1 : p + strlen(p);
}

/* "key value" line: key matches exactly up to a space. */
static int key_is(const char *line, const char *key, size_t klen, const char **after) {
    if (strncmp(line, key, klen) != 0 || !is_space(line[klen]))
        return 0;
    *after = line + klen;
    return 1;
}

struct kv { const char *key; size_t len; uint64_t *dst; uint64_t mul; };

/* Parse a flat-keyed file ("key N" per line) into the listed keys. */
static void parse_flat(const char *buf, const struct kv *kvs, size_t nkv) {
    for (const char *line = buf; *line; line = next_line(line)) {
        for (size_t i = 0; i < nkv; i++) {
            const char *p;
            uint64_t v;
            if (key_is(line, kvs[i].key, kvs[i].len, &p) && num(&p, &v)) {
                *kvs[i].dst = v * kvs[i].mul;
                break;
            }
        }
    }
}

#define KV(k, d, m) { k, sizeof(k) - 1, d, m }

static int parse_single(const char *buf, uint64_t *v) {
    const char *p = buf;
    return num(&p, v) ? 0 : -EINVAL;
}

static struct np_blkdev *dev_slot(struct np_stats *s, uint32_t major, uint32_t minor) {
    for (uint32_t i = 0; i < s->ndevs; i++)
        if (s->devs[i].major == major && s->devs[i].minor == minor)
            return &s->devs[i];
    if (s->ndevs >= NP_MAX_DEVS)
        return NULL;
    struct np_blkdev *d = &s->devs[s->ndevs++];
    memset(d, 0, sizeof(*d));
    d->major = major;
    d->minor = minor;
    return d;
}

/* "MAJ:MIN" at the start of a line. */
static int devno(const char **p, uint32_t *major, uint32_t *minor) {
    uint64_t a, b;
    const char *s = *p;
    if (!num(&s, &a) || *s != ':')
        return 0;
    s++;
    if (!num(&s, &b))
        return 0;
    *major = (uint32_t)a;
    *minor = (uint32_t)b;
    *p = s;
    return 1;
}

/* ------------------------------------------------------------------ parsers per kind */

static int p_percpu(const char *buf, struct np_stats *s) {
    const char *p = buf;
    uint64_t v, sum = 0;
    uint32_t n = 0;
    while (num(&p, &v)) {
        if (n < NP_MAX_CPUS)
            s->percpu_ns[n++] = v;
        sum += v;
    }
    s->ncpus = n;
    s->cpu_usage_ns = sum;
    return 0;
}

static int p_cpuacct_stat(const char *buf, struct np_stats *s) {
    struct kv kvs[] = {
        KV("user", &s->cpu_user_ns, USER_HZ_NS),
        KV("system", &s->cpu_system_ns, USER_HZ_NS),
    };
    parse_flat(buf, kvs, 2);
    return 0;
}

static int p_v1_cpu_stat(const char *buf, struct np_stats *s) {
    struct kv kvs[] = {
        KV("nr_periods", &s->nr_periods, 1),
        KV("nr_throttled", &s->nr_throttled, 1),
        KV("throttled_time", &s->throttled_ns, 1),
    };
    parse_flat(buf, kvs, 3);
    return 0;
}

static int p_v1_mem_stat(const char *buf, struct np_stats *s) {
    struct kv kvs[] = {
        KV("total_rss", &s->mem_rss, 1),
        KV("total_cache", &s->mem_cache, 1),
        KV("total_mapped_file", &s->mem_mapped_file, 1),
        KV("total_swap", &s->mem_swap, 1),
        KV("total_pgfault", &s->mem_pgfault, 1),
        KV("total_pgmajfault", &s->mem_pgmajfault, 1),
        KV("total_inactive_file", &s->mem_inactive_file, 1),
    };
    parse_flat(buf, kvs, sizeof(kvs) / sizeof(kvs[0]));
    return 0;
}

static int p_v2_cpu_stat(const char *buf, struct np_stats *s) {
    struct kv kvs[] = {
        KV("usage_usec", &s->cpu_usage_ns, 1000),
        KV("user_usec", &s->cpu_user_ns, 1000),
        KV("system_usec", &s->cpu_system_ns, 1000),
        KV("nr_periods", &s->nr_periods, 1),
        KV("nr_throttled", &s->nr_throttled, 1),
        KV("throttled_usec", &s->throttled_ns, 1000),
    };
    parse_flat(buf, kvs, sizeof(kvs) / sizeof(kvs[0]));
    return 0;
}

static int p_v2_mem_stat(const char *buf, struct np_stats *s) {
    struct kv kvs[] = {
        KV("anon", &s->mem_rss, 1),
        KV("file", &s->mem_cache, 1),
        KV("file_mapped", &s->mem_mapped_file, 1),
        KV("pgfault", &s->mem_pgfault, 1),
        KV("pgmajfault", &s->mem_pgmajfault, 1),
        KV("inactive_file", &s->mem_inactive_file, 1),
    };
    parse_flat(buf, kvs, sizeof(kvs) / sizeof(kvs[0]));
    return 0;
}

static int p_v2_mem_events(const char *buf, struct np_stats *s) {
    struct kv kvs[] = { KV("max", &s->mem_failcnt, 1) };
    parse_flat(buf, kvs, 1);
    return 0;
}

/* blkio v1: "MAJ:MIN Read|Write|Sync|Async|Discard|Total N"; only Read and Write count. */
static int p_blkio(const char *buf, struct np_stats *s, int ops) {
    for (const char *line = buf; *line; line = next_line(line)) {
        const char *p = line;
        uint32_t ma, mi;
        uint64_t v;
        if (!devno(&p, &ma, &mi) || !is_space(*p))
            continue;
        while (is_space(*p))
            p++;
        int write;
        const char *q;
        if (key_is(p, "Read", 4, &q))
            write = 0;
        else if (key_is(p, "Write", 5, &q))
            write = 1;
        else
            continue;
        if (!num(&q, &v))
            continue;
        struct np_blkdev *d = dev_slot(s, ma, mi);
        if (!d)
            continue;
        if (ops)
            *(write ? &d->write_ops : &d->read_ops) = v;
        else
            *(write ? &d->write_bytes : &d->read_bytes) = v;
    }
    return 0;
}

/* io.stat v2: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N" */
static int p_io_stat(const char *buf, struct np_stats *s) {
    for (const char *line = buf; *line; line = next_line(line)) {
        const char *p = line;
        uint32_t ma, mi;
        if (!devno(&p, &ma, &mi) || !is_space(*p))
            continue;
        struct np_blkdev *d = dev_slot(s, ma, mi);
        if (!d)
            continue;
        while (*p && *p != '\n') {
            while (is_space(*p))
                p++;
            const char *key = p;
            while (*p && *p != '=' && *p != '\n' && !is_space(*p))
                p++;
            size_t klen = (size_t)(p - key);
            uint64_t v;
            if (*p != '=') {
                continue;
            }
            p++;
            if (!num(&p, &v)) {
                while (*p && *p != '\n' && !is_space(*p))
                    p++;
                continue;
            }
            if (klen == 6 && !memcmp(key, "rbytes", 6))
                d->read_bytes = v;
            else if (klen == 6 && !memcmp(key, "wbytes", 6))
                d->write_bytes = v;
            else if (klen == 4 && !memcmp(key, "rios", 4))
                d->read_ops = v;
            else if (klen == 4 && !memcmp(key, "wios", 4))
                d->write_ops = v;
        }
    }
    return 0;
}

static int p_pids_max(const char *buf, struct np_stats *s) {
    if (!strncmp(buf, "max", 3)) {
        s->pids_max = -1;
        return 0;
    }
    uint64_t v;
    if (parse_single(buf, &v))
        return -EINVAL;
    s->pids_max = (int64_t)v;
    return 0;
}

/* /proc/<pid>/net/dev: two header lines, then "name: rx(8 fields) tx(8 fields)". */
static int p_netdev(const char *buf, struct np_stats *s) {
    const char *line = next_line(next_line(buf));
    for (; *line; line = next_line(line)) {
        const char *p = line;
        while (is_space(*p))
            p++;
        const char *name = p;
        while (*p && *p != ':' && *p != '\n' && !is_space(*p))
            p++;
        if (*p != ':')
            continue;
        size_t nlen = (size_t)(p - name);
        if (nlen == 0 || nlen >= NP_IFNAMSIZ)
            continue;
        p++;
        uint64_t f[16];
        int k = 0;
        while (k < 16 && num(&p, &f[k]))
            k++;
        if (k < 16 || s->nifaces >= NP_MAX_IFACES)
            continue;
        struct np_iface *i = &s->ifaces[s->nifaces++];
        memcpy(i->name, name, nlen);
        i->name[nlen] = '\0';
        i->rx_bytes = f[0];
        i->rx_packets = f[1];
        i->rx_errors = f[2];
        i->rx_dropped = f[3];
        i->tx_bytes = f[8];
        i->tx_packets = f[9];
        i->tx_errors = f[10];
        i->tx_dropped = f[11];
    }
    return 0;
}

static int parse_kind(int kind, const char *buf, struct np_stats *s) {
    uint64_t v;
    int rc;
    switch (kind) {
    case NP_V1_CPUACCT_PERCPU: return p_percpu(buf, s);
    case NP_V1_CPUACCT_STAT: return p_cpuacct_stat(buf, s);
    case NP_V1_CPU_STAT: return p_v1_cpu_stat(buf, s);
    case NP_V1_MEM_USAGE:
    case NP_V2_MEM_CURRENT:
        if ((rc = parse_single(buf, &v)))
            return rc;
        s->mem_usage = v;
        return 0;
    case NP_V1_MEM_MAX_USAGE:
    case NP_V2_MEM_PEAK:
        if ((rc = parse_single(buf, &v)))
            return rc;
        s->mem_max_usage = v;
        return 0;
    case NP_V1_MEM_FAILCNT:
        if ((rc = parse_single(buf, &v)))
            return rc;
        s->mem_failcnt = v;
        return 0;
    case NP_V1_MEM_STAT: return p_v1_mem_stat(buf, s);
    case NP_V1_BLKIO_BYTES: return p_blkio(buf, s, 0);
    case NP_V1_BLKIO_OPS: return p_blkio(buf, s, 1);
    case NP_V2_CPU_STAT: return p_v2_cpu_stat(buf, s);
    case NP_V2_MEM_STAT: return p_v2_mem_stat(buf, s);
    case NP_V2_MEM_SWAP:
        if ((rc = parse_single(buf, &v)))
            return rc;
        s->mem_swap = v;
        return 0;
    case NP_V2_MEM_EVENTS: return p_v2_mem_events(buf, s);
    case NP_V2_IO_STAT: return p_io_stat(buf, s);
    case NP_PIDS_CURRENT:
        if ((rc = parse_single(buf, &v)))
            return rc;
        s->pids_current = (int64_t)v;
        return 0;
    case NP_PIDS_MAX: return p_pids_max(buf, s);
    case NP_NETDEV: return p_netdev(buf, s);
    default: return -EINVAL;
    }
}

/* ------------------------------------------------------------------ reading */

static void fail(struct np_stats *out, int kind, int e) {
    out->failed |= 1u << kind;
    out->err[kind] = e;
}

int np_read(struct np_cg *cg, struct np_stats *out) {
    memset(out, 0, offsetof(struct np_stats, percpu_ns));
    memset(&out->nr_periods, 0, offsetof(struct np_stats, devs) - offsetof(struct np_stats, nr_periods));
    memset(&out->pids_current, 0, offsetof(struct np_stats, ifaces) - offsetof(struct np_stats, pids_current));
    int failed = 0;
    for (size_t i = 0; i < cg->n; i++) {
        struct np_file *f = &cg->files[i];
        int kind = f->kind;
        if (kind < 0 || kind >= NP_NKINDS) {
            fail(out, 0, EINVAL);
            failed++;
            continue;
        }
        ssize_t r;
        if (kind == NP_PROCS || kind == NP_THREADS) {
            uint64_t lines = 0;
            r = count_lines(f, &lines);
            if (r == 0) {
                if (kind == NP_PROCS)
                    out->nprocs = lines;
                else
                    out->nthreads = lines;
            }
        } else {
            r = read_file(f, tbuf, BUF_SIZE);
            if (r >= 0)
                r = parse_kind(kind, tbuf, out);
        }
        if (r < 0) {
            fail(out, kind, (int)-r);
            failed++;
        } else {
            out->present |= 1u << kind;
        }
    }
    if ((out->present & ((1u << NP_V1_MEM_USAGE) | (1u << NP_V2_MEM_CURRENT))) &&
        out->mem_usage > out->mem_inactive_file)
        out->mem_working_set = out->mem_usage - out->mem_inactive_file;
    return failed;
}

size_t np_read_batch(struct np_cg *const *cgs, size_t n, struct np_stats *out) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += np_read(cgs[i], &out[i]) != 0;
    return bad;
}

/* ------------------------------------------------------------------ benchmark helpers */

uint64_t np_floor_batch(struct np_cg *const *cgs, size_t n) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct np_cg *cg = cgs[i];
        for (size_t j = 0; j < cg->n; j++) {
            if (cg->files[j].fd < 0)
                continue;
            ssize_t r = pread(cg->files[j].fd, tbuf, BUF_SIZE - 1, 0);
            if (r > 0)
                total += (uint64_t)r;
        }
    }
    return total;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

double np_bench_open_read_close(const char *path, size_t iters) {
    double t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        int fd = open_ro(path);
        if (fd < 0)
            return -1;
        if (read(fd, tbuf, BUF_SIZE - 1) < 0) {
            close(fd);
            return -1;
        }
        close(fd);
    }
    return (now_ns() - t0) / (double)(iters ? iters : 1);
}

double np_bench_pread_kept(const char *path, size_t iters) {
    int fd = open_ro(path);
    if (fd < 0)
        return -1;
    double t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        if (pread(fd, tbuf, BUF_SIZE - 1, 0) < 0) {
            close(fd);
            return -1;
        }
    }
    double t = (now_ns() - t0) / (double)(iters ? iters : 1);
    close(fd);
    return t;
}
