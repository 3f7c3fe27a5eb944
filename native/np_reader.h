/*
 * netplane cgroup stats reader: the C side of stats.cgroups._reader (built by cffi, API mode).
 *
 * Why C: reading a cgroup's stats costs mostly syscalls. We keep one file descriptor per stats
 * file open between reads (pread at offset 0 re-generates a kernfs/seq file), re-open a file
 * only when its descriptor goes stale (the cgroup was removed, maybe recreated), and parse in C
 * into a fixed struct, so a batch of thousands of cgroups costs close to the preads alone.
 *
 * Python decides which files a cgroup has (cgroup v1 or v2, which controllers) and hands
 * (kind, path) pairs to np_open(); the C side knows how to parse each kind. The pure-Python
 * reader in stats/cgroups/pyreader.py mirrors every parser here line by line; both must give
 * identical results (tests/unit/test_stats_parsers.py).
 *
 * The text between CDEF-BEGIN and CDEF-END is also the cffi cdef (native/build_reader.py), so
 * it must stay plain declarations: no #include, no #if.
 */
#ifndef NP_READER_H
#define NP_READER_H

#include <stdint.h>
#include <stddef.h>

/* CDEF-BEGIN */
#define NP_MAX_CPUS 256
#define NP_MAX_DEVS 32
#define NP_MAX_IFACES 32
#define NP_IFNAMSIZ 16

/* One stats file kind = one parser. Values are stable: Python mirrors them. */
enum np_kind {
    NP_V1_CPUACCT_PERCPU = 0, /* cpuacct.usage_percpu: ns per cpu; usage = sum */
    NP_V1_CPUACCT_STAT = 1,   /* cpuacct.stat: user/system in USER_HZ ticks */
    NP_V1_CPU_STAT = 2,       /* cpu.stat: nr_periods, nr_throttled, throttled_time (ns) */
    NP_V1_MEM_USAGE = 3,      /* memory.usage_in_bytes */
    NP_V1_MEM_MAX_USAGE = 4,  /* memory.max_usage_in_bytes */
    NP_V1_MEM_FAILCNT = 5,    /* memory.failcnt */
    NP_V1_MEM_STAT = 6,       /* memory.stat (total_* keys, hierarchical like runc/cAdvisor) */
    NP_V1_BLKIO_BYTES = 7,    /* blkio.throttle.io_service_bytes_recursive */
    NP_V1_BLKIO_OPS = 8,      /* blkio.throttle.io_serviced_recursive */
    NP_V2_CPU_STAT = 9,       /* cpu.stat: usage_usec, user_usec, system_usec, throttling */
    NP_V2_MEM_CURRENT = 10,   /* memory.current */
    NP_V2_MEM_PEAK = 11,      /* memory.peak */
    NP_V2_MEM_STAT = 12,      /* memory.stat: anon, file, file_mapped, inactive_file, pg*fault */
    NP_V2_MEM_SWAP = 13,      /* memory.swap.current */
    NP_V2_MEM_EVENTS = 14,    /* memory.events: "max" is the failcnt equivalent */
    NP_V2_IO_STAT = 15,       /* io.stat: MAJ:MIN rbytes= wbytes= rios= wios= ... */
    NP_PIDS_CURRENT = 16,     /* pids.current (tasks = threads) */
    NP_PIDS_MAX = 17,         /* pids.max ("max" = -1) */
    NP_PROCS = 18,            /* cgroup.procs: number of processes (lines) */
    NP_THREADS = 19,          /* cgroup.threads (or tasks): number of threads (lines) */
    NP_NETDEV = 20,           /* /proc/<pid>/net/dev of a process in the container's netns */
    NP_NKINDS = 21
};

struct np_blkdev {
    uint32_t major;
    uint32_t minor;
    uint64_t read_bytes;
    uint64_t write_bytes;
    uint64_t read_ops;
    uint64_t write_ops;
};

struct np_iface {
    char name[16];
    uint64_t rx_bytes;
    uint64_t rx_packets;
    uint64_t rx_errors;
    uint64_t rx_dropped;
    uint64_t tx_bytes;
    uint64_t tx_packets;
    uint64_t tx_errors;
    uint64_t tx_dropped;
};

struct np_stats {
    uint32_t present;          /* bit k: kind k was read and parsed */
    uint32_t failed;           /* bit k: kind k could not be opened/read/parsed */
    int32_t err[21];           /* errno per failed kind (EINVAL: unparsable) */
    uint64_t cpu_usage_ns;
    uint64_t cpu_user_ns;
    uint64_t cpu_system_ns;
    uint32_t ncpus;
    uint64_t percpu_ns[256];
    uint64_t nr_periods;
    uint64_t nr_throttled;
    uint64_t throttled_ns;
    uint64_t mem_usage;
    uint64_t mem_max_usage;
    uint64_t mem_rss;
    uint64_t mem_cache;
    uint64_t mem_mapped_file;
    uint64_t mem_swap;
    uint64_t mem_failcnt;
    uint64_t mem_pgfault;
    uint64_t mem_pgmajfault;
    uint64_t mem_inactive_file;
    uint64_t mem_working_set;  /* usage - inactive_file, floored at 0 */
    uint32_t ndevs;
    struct np_blkdev devs[32];
    int64_t pids_current;
    int64_t pids_max;          /* -1: unlimited */
    uint64_t nprocs;
    uint64_t nthreads;
    uint32_t nifaces;
    struct np_iface ifaces[32];
};

struct np_cg;  /* opaque: one cgroup's kept file descriptors */

/* Open a cgroup's files. kinds[i] is parsed from paths[i]. Files that cannot be opened now
 * are retried at every read. Returns NULL only when out of memory. */
struct np_cg *np_open(const int *kinds, const char *const *paths, size_t n);
/* Read and parse every file of one cgroup (out is zeroed first). Returns the number of failed
 * files (0 = complete). */
int np_read(struct np_cg *cg, struct np_stats *out);
/* Read a batch: out[i] for cgs[i]. A failing cgroup only marks its own result. Returns the
 * number of cgroups with at least one failed file. */
size_t np_read_batch(struct np_cg *const *cgs, size_t n, struct np_stats *out);
/* Close the descriptors and free the handle. */
void np_close(struct np_cg *cg);
/* Number of descriptors currently open in a handle. */
size_t np_open_fds(const struct np_cg *cg);

/* Benchmark helpers (bench/bench_stats*.py): the floor is the same preads on the same kept
 * descriptors with no parsing at all. Returns the total number of bytes read. */
uint64_t np_floor_batch(struct np_cg *const *cgs, size_t n);
/* Nanoseconds per iteration of open+read+close of one file, and of pread on a kept fd. */
double np_bench_open_read_close(const char *path, size_t iters);
double np_bench_pread_kept(const char *path, size_t iters);
/* CDEF-END */

#endif
