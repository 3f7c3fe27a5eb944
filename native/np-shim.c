/*
 * np-shim: the per-container supervisor of netplane's plain-namespace runtime
 * (orchestrator/node/ns_runtime.py), in the role of conmon / containerd-shim, plus the two other
 * jobs that need a fresh single-threaded process: making a pod sandbox and entering a container.
 *
 *   np-shim sandbox --status-fd N --dir D --hostname H --pause PAUSE [--cgroup DIR]... [--host-network on]
 *                   [--host-ipc on]
 *       Daemonizes (fork, setsid), joins the cgroups, unshares the network, IPC and UTS
 *       namespaces, sets the hostname, brings lo up, records "pid=/start=" in D/pause and execs
 *       PAUSE, which then holds the namespaces. STATUS_FD sees EOF once PAUSE runs, or one line
 *       "error: ..." first. With --host-network (the pod's hostNetwork) only IPC is unshared:
 *       the pod keeps the caller's network and UTS namespaces, as kubelet's host-network pods
 *       do (the hostname is then the node's). With --host-ipc (hostIPC) IPC is not unshared.
 *
 *   np-shim run --status-fd N --dir D --ns-pidfd N --log FILE [--cgroup DIR]... [--resolv F]
 *               [--root DIR] [--cwd DIR] [--stdin open|once] [--tty on] [--attach NAME]
 *               [--bind SRC --bind-to DST --bind-mode ro|rw]... -- ARGV...
 *       Daemonizes and stays as the supervisor S (recorded in D/shim); forks the container
 *       process C, which joins the cgroups and the namespaces of the pidfd's process (the
 *       sandbox's pause: net, ipc, uts) *before* exec, gets a private mount namespace with F
 *       bind-mounted over /etc/resolv.conf, optionally chroots, and execs ARGV with S's own
 *       environment (the caller passes the container's). S records "pid=/start=/started_ns=" in
 *       D/pid, then writes "ok" to STATUS_FD and closes it; a failed start is "error: ...".
 *       --bind/--bind-to/--bind-mode (one triple per volume mount, parents first): SRC is
 *       rbind-mounted at DST inside the root, read-only (that mount only) with "ro". DST must
 *       exist unless it lies below an earlier DST (then it is made there, beneath that volume),
 *       or below an existing directory other than the root: then that directory is covered,
 *       in C's mount namespace only, by a tmpfs holding a bind mount (rbind) of each of its
 *       entries and its symlinks, and the missing path is made in the tmpfs (kubelet's
 *       /var/run/secrets/kubernetes.io/serviceaccount on a host that has no /run/secrets).
 *       S relays C's stdout and stderr into FILE in the CRI log format kubelet reads
 *       ("<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>", P = a partial line of 16 KiB or the
 *       unterminated end), forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to C,
 *       and when C exits kills what C left in its cgroups (the container ends with its main
 *       process, as under Docker), then writes D/exit atomically (rename): "status= code=
 *       signal= finished_ns= oom_kill=" and exits. The exit status therefore survives the agent.
 *       --stdin: C's stdin is a pipe S holds (else /dev/null), written by attach sessions; "once"
 *       closes it for good when the first session that attached stdin leaves or closes it
 *       (the pod spec's stdinOnce). --tty: C's stdin, stdout and stderr are the slave of a pty
 *       whose master S holds; C is a session leader with it as its controlling terminal, and
 *       its output is logged as stdout.
 *       --attach NAME: S listens on the SOCK_SEQPACKET unix socket D/NAME (mode 0600) for attach
 *       sessions, as conmon does (kubectl attach). Each packet's first byte is its channel:
 *         session -> S   16 "I attach stdin"   0 stdin data   4 resize: uint16 cols, rows (big-
 *                        endian)   255 stdin closed
 *         S -> session   1 stdout   2 stderr (none with a TTY): what C writes from then on
 *       S closes every session when C's output ends (EOF: the container exited). A session that
 *       cannot take output for 5 s is dropped; while C's stdin is full, S reads no session's
 *       packets (the backpressure reaches the writer), while output flows on.
 *
 *   np-shim exec --ns-pidfd N [--cgroup DIR]... [--root DIR] [--cwd DIR] -- ARGV...
 *       Joins the cgroups, enters the net, ipc, uts and mount namespaces of the pidfd's process
 *       (the container), chroots/chdirs like the container, becomes a session leader (with
 *       a terminal as stdin, that terminal becomes its controlling one) and execs ARGV (its exit
 *       status is ARGV's; 126 = could not enter, 127 = could not exec).
 *
 * Built statically by scripts/install.sh (gcc -static -O2) next to the pause binary.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CGROUPS 16
#define MAX_MOUNTS 64
#define LINE_MAX_BYTES 16384
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct opts {
  int status_fd;
  int ns_pidfd;
  const char *dir;
  const char *hostname;
  const char *pause;
  const char *log;
  const char *resolv;
  const char *root;
  const char *cwd;
  const char *stdin_mode; /* NULL, "open" or "once" */
  const char *tty;        /* NULL or "on" */
  const char *attach;     /* the attach socket's name in dir */
  const char *host_network; /* NULL or "on" */
  const char *host_ipc;     /* NULL or "on" */
  /* volume mounts, in order (parents first): source on the host, target in the container */
  const char *bind_src[MAX_MOUNTS];
  const char *bind_dst[MAX_MOUNTS];
  int bind_ro[MAX_MOUNTS];
  int nsrc, ndst, nmode;
  const char *cgroups[MAX_CGROUPS];
  int ncgroups;
  char **argv;
};

static int status_fd = -1;

/* One line to the caller's status pipe (ignored when it is gone: the agent may have died). */
static void status(const char *fmt, ...) {
  if (status_fd < 0)
    return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof buf)
    n = sizeof buf - 1;
  ssize_t r = write(status_fd, buf, (size_t)n);
  (void)r;
}

static int write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static int write_file(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int r = write_all(fd, s, strlen(s));
  int saved = errno;
  close(fd);
  errno = saved;
  return r;
}

/* DIR/NAME written via DIR/.NAME.tmp + rename: readers see all of it or nothing. No fsync: the
 * records describe processes, which a power cut ends anyway (the runtime compares boot ids). */
static int write_record(const char *dir, const char *name, const char *text) {
  char tmp[4096], dst[4096];
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
  snprintf(dst, sizeof dst, "%s/%s", dir, name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  if (write_all(fd, text, strlen(text)) < 0) {
    int saved = errno;
    close(fd);
    unlink(tmp);
    errno = saved;
    return -1;
  }
  close(fd);
  return rename(tmp, dst);
}

/* Field 22 of /proc/<pid>/stat: the start time in clock ticks since boot (tells a reused pid). */
static unsigned long long start_time(pid_t pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p)
    return 0;
  p += 2; /* field 3 (state) */
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (!p)
      return 0;
    p++;
  }
  return strtoull(p, NULL, 10);
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int join_cgroups(const struct opts *o) {
  char path[4096], pid[32];
  snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  for (int i = 0; i < o->ncgroups; i++) {
    snprintf(path, sizeof path, "%s/cgroup.procs", o->cgroups[i]);
    if (write_file(path, pid) < 0)
      return i + 1;
  }
  return 0;
}

/* Every descriptor from 3 up is closed at exec (the status pipe too: EOF tells "exec'd"). */
static void cloexec_from(int lowest) {
  if (syscall(SYS_close_range, (unsigned)lowest, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
    return;
  for (int fd = lowest; fd < 4096; fd++)
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static void reset_signals(void) {
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP)
      signal(s, SIG_DFL);
}

static int lo_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  int r = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (r == 0 && !(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP;
    r = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int saved = errno;
  close(s);
  errno = saved;
  return r;
}

/* ------------------------------------------------------------------ sandbox */
static int do_sandbox(struct opts *o) {
  if (!o->dir || !o->pause || !o->hostname) {
    status("error: sandbox needs --dir, --pause and --hostname\n");
    return 2;
  }
  pid_t pid = fork();
  if (pid < 0) {
    status("error: fork: %s\n", strerror(errno));
    return 1;
  }
  if (pid > 0)
    return 0; /* the caller reaps us at once; the pause process is re-parented away from it */
  setsid();
  reset_signals();
  char log[4096];
  snprintf(log, sizeof log, "%s/pause.log", o->dir);
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (devnull < 0 || logfd < 0) {
    status("error: open %s: %s\n", devnull < 0 ? "/dev/null" : log, strerror(errno));
    _exit(1);
  }
  int bad = join_cgroups(o);
  if (bad) {
    status("error: join cgroup %s: %s\n", o->cgroups[bad - 1], strerror(errno));
    _exit(1);
  }
  int flags = (o->host_network ? 0 : CLONE_NEWNET | CLONE_NEWUTS) | (o->host_ipc ? 0 : CLONE_NEWIPC);
  if (flags && unshare(flags) < 0) {
    status("error: unshare(%s%s): %s\n", o->host_network ? "" : "net, uts", o->host_ipc ? "" :
           o->host_network ? "ipc" : ", ipc", strerror(errno));
    _exit(1);
  }
  if (!o->host_network) {
    if (sethostname(o->hostname, strlen(o->hostname)) < 0) {
      status("error: sethostname %s: %s\n", o->hostname, strerror(errno));
      _exit(1);
    }
    if (lo_up() < 0) {
      status("error: set lo up: %s\n", strerror(errno));
      _exit(1);
    }
  }
  char rec[128];
  snprintf(rec, sizeof rec, "pid=%d\nstart=%llu\n", (int)getpid(), start_time(getpid()));
  if (write_record(o->dir, "pause", rec) < 0) {
    status("error: record %s/pause: %s\n", o->dir, strerror(errno));
    _exit(1);
  }
  if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(logfd, 2) < 0) {
    status("error: dup2: %s\n", strerror(errno));
    _exit(1);
  }
  cloexec_from(3);
  char *argv[] = {(char *)o->pause, NULL};
  execv(o->pause, argv);
  status("error: exec %s: %s\n", o->pause, strerror(errno));
  _exit(127);
}

/* ------------------------------------------------------------------ run: the container child */
static void child_say(int errfd, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) {
    ssize_t r = write(errfd, buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
    (void)r;
  }
  _exit(127);
}

static void child_fail(int errfd, const char *what, const char *arg) {
  child_say(errfd, "%s%s%s: %s", what, arg ? " " : "", arg ? arg : "", strerror(errno));
}

/* ------------------------------------------------------------------ run: volume mounts */
#ifndef RESOLVE_NO_XDEV
struct open_how {
  unsigned long long flags, mode, resolve;
};
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_BENEATH 0x08
#define RESOLVE_IN_ROOT 0x10
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

static int openat2_(int dirfd, const char *path, int flags, unsigned long long resolve) {
  struct open_how how = {.flags = (unsigned long long)(flags | O_CLOEXEC), .mode = 0, .resolve = resolve};
  return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* Make the missing mount point `rel` below the directory `base` (a volume mounted before this
 * one, never the host's own filesystem), component by component, each resolved beneath `base`
 * and on its mount (a symlink in the volume pointing out is refused, never followed); the
 * last component a file when the source is one. The mount point's O_PATH fd, or -1. */
static int make_mount_point(int base, const char *rel, int file) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", rel);
  int dir = dup(base);
  char *save = NULL;
  for (char *part = strtok_r(buf, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
    int last = save == NULL || *save == '\0';
    int next = openat2_(dir, part, O_PATH, RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS);
    if (next < 0 && errno == ENOENT) {
      int made = last && file ? mknodat(dir, part, S_IFREG | 0644, 0) : mkdirat(dir, part, 0755);
      if (made < 0 && errno != EEXIST) {
        close(dir);
        return -1;
      }
      next = openat2_(dir, part, O_PATH, RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS);
    }
    close(dir);
    if (next < 0)
      return -1;
    dir = next;
  }
  return dir;
}

/* Cover the directory at `path` (resolved in `root`; `dirfd` its O_PATH fd), in the container's
 * mount namespace only (nothing of this reaches the host's), with a tmpfs that shows what it
 * held: each entry bind-mounted (rbind, with what is mounted below it) onto a same-named mount
 * point, each symlink made again. Its subdirectories stay the host's own, live; what is made
 * at its top level later is the container's alone. The tmpfs's directory (O_PATH fd), or -1. */
static int pass_through(int root, const char *path, int dirfd) {
  int old = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct stat st;
  if (old < 0 || fstat(old, &st) < 0)
    return -1;
  char target[64], opts[64];
  snprintf(target, sizeof target, "/proc/self/fd/%d", dirfd);
  snprintf(opts, sizeof opts, "mode=%o,uid=%u,gid=%u", (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
           (unsigned)st.st_gid);
  if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
    close(old);
    return -1;
  }
  /* the path again, walked from the root: it now crosses into the tmpfs (the fd does not) */
  int nw = openat2_(root, path, O_PATH | O_DIRECTORY, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
  struct stat ns;
  DIR *d = fdopendir(dup(old));
  if (nw < 0 || fstat(nw, &ns) < 0 || ns.st_dev == st.st_dev || d == NULL) {
    if (d != NULL)
      closedir(d);
    close(old);
    return -1;
  }
  int ok = 1;
  for (struct dirent *e; ok && (e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    struct stat es;
    if (fstatat(old, e->d_name, &es, AT_SYMLINK_NOFOLLOW) < 0)
      continue; /* gone meanwhile */
    if (S_ISLNK(es.st_mode)) {
      char link[4096];
      ssize_t n = readlinkat(old, e->d_name, link, sizeof link - 1);
      if (n >= 0) {
        link[n] = '\0';
        ok = symlinkat(link, nw, e->d_name) == 0;
      }
      continue;
    }
    int made = S_ISDIR(es.st_mode) ? mkdirat(nw, e->d_name, 0755) : mknodat(nw, e->d_name, S_IFREG | 0644, 0);
    int src = openat(old, e->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    int dst = made == 0 ? openat(nw, e->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (src >= 0 && dst >= 0) {
      char from[64], to[64];
      snprintf(from, sizeof from, "/proc/self/fd/%d", src);
      snprintf(to, sizeof to, "/proc/self/fd/%d", dst);
      ok = mount(from, to, NULL, MS_BIND | MS_REC, NULL) == 0;
    } else {
      ok = src < 0 && errno == ENOENT; /* gone meanwhile: fine */
    }
    if (src >= 0)
      close(src);
    if (dst >= 0)
      close(dst);
  }
  closedir(d);
  close(old);
  if (!ok) {
    close(nw);
    return -1;
  }
  return nw;
}

/* The deepest existing directory holding the missing `dst` (resolved in `root`) other than the
 * root itself, covered by `pass_through`; *rest is what is left of `dst` below it. -1 when
 * there is none (only the root) or it cannot be covered. */
static int cover_parent(int root, const char *dst, const char **rest) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", dst);
  struct stat rs, ps;
  if (fstat(root, &rs) < 0)
    return -1;
  for (char *cut = strrchr(buf, '/'); cut && cut != buf; cut = strrchr(buf, '/')) {
    *cut = '\0';
    int at = openat2_(root, buf, O_PATH | O_DIRECTORY, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    if (at < 0)
      continue;
    if (fstat(at, &ps) < 0 || (ps.st_dev == rs.st_dev && ps.st_ino == rs.st_ino)) {
      close(at);
      return -1;
    }
    *rest = dst + strlen(buf) + 1;
    int nw = pass_through(root, buf, at);
    close(at);
    return nw;
  }
  return -1;
}

/* Bind every volume (rbind: with what is mounted below its source) at its target inside the
 * container's root (resolved in that root: a symlink in an image directory never reaches the
 * host's tree), read-only where asked (that mount only, as Kubernetes' readOnly). A target
 * must exist, except below a volume mounted before it: the host's filesystem (or an image
 * directory) is never written to. */
static void volume_mounts(struct opts *o, int errfd) {
  int root = open(o->root ? o->root : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0)
    child_fail(errfd, "open the container's root", o->root ? o->root : "/");
  int done[MAX_MOUNTS];
  for (int i = 0; i < o->nsrc; i++) {
    const char *dst = o->bind_dst[i];
    struct stat src;
    if (stat(o->bind_src[i], &src) < 0)
      child_fail(errfd, "volume source", o->bind_src[i]);
    int at = openat2_(root, dst, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    if (at < 0 && errno == ENOENT) {
      int parent = -1;
      size_t plen = 0;
      for (int j = 0; j < i; j++) { /* the deepest earlier mount that holds dst */
        size_t n = strlen(o->bind_dst[j]);
        if (n > plen && strncmp(dst, o->bind_dst[j], n) == 0 && (dst[n] == '/' || n == 1)) {
          parent = done[j];
          plen = n;
        }
      }
      if (parent >= 0) {
        at = make_mount_point(parent, dst + plen, !S_ISDIR(src.st_mode));
      } else {
        const char *rest = NULL;
        int covered = cover_parent(root, dst, &rest);
        if (covered < 0)
          child_say(errfd, "mount point %s does not exist in the container's filesystem, and no directory "
                    "above it but the root can be covered (the namespace runtime runs containers in the "
                    "host's or an image directory's filesystem and never writes to it)", dst);
        at = make_mount_point(covered, rest, !S_ISDIR(src.st_mode));
        close(covered);
      }
    }
    if (at < 0)
      child_fail(errfd, "mount point", dst);
    char target[64];
    snprintf(target, sizeof target, "/proc/self/fd/%d", at);
    if (mount(o->bind_src[i], target, NULL, MS_BIND | MS_REC, NULL) < 0)
      child_fail(errfd, "bind mount a volume at", dst);
    close(at);
    /* the mount now at dst (the fd above still names the directory below it) */
    at = openat2_(root, dst, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    if (at < 0)
      child_fail(errfd, "open the mounted volume at", dst);
    snprintf(target, sizeof target, "/proc/self/fd/%d", at);
    if (o->bind_ro[i] && mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
      child_fail(errfd, "make a volume read-only at", dst);
    done[i] = at;
  }
  for (int i = 0; i < o->nsrc; i++)
    close(done[i]);
  close(root);
}

/* in: C's stdin (the stdin pipe's reading end, or the pty's slave with a TTY, then also out
 * and err), or -1 for /dev/null */
static void container_child(struct opts *o, int in, int out, int err, int errfd) {
  reset_signals();
  int devnull = in >= 0 ? in : open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0)
    child_fail(errfd, "open", "/dev/null");
  if (o->tty) {
    /* S is the session leader; C leads its own, with the pty as its controlling terminal */
    if (setsid() < 0 || ioctl(in, TIOCSCTTY, 0) < 0)
      child_fail(errfd, "make the pty the controlling terminal", NULL);
  }
  /* cgroups first: from its first instruction after exec the process is in them */
  int bad = join_cgroups(o);
  if (bad)
    child_fail(errfd, "join cgroup", o->cgroups[bad - 1]);
  if (setns(o->ns_pidfd, CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
    child_fail(errfd, "enter the sandbox's namespaces (setns net, ipc, uts)", NULL);
  close(o->ns_pidfd);
  if (o->resolv || o->nsrc) {
    if (unshare(CLONE_NEWNS) < 0)
      child_fail(errfd, "unshare(mount)", NULL);
    /* mounts of the host still propagate in; ours never propagate out */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
      child_fail(errfd, "make / rslave", NULL);
  }
  if (o->resolv) {
    char target[4096];
    snprintf(target, sizeof target, "%s/etc/resolv.conf", o->root ? o->root : "");
    if (access(target, F_OK) == 0 && mount(o->resolv, target, NULL, MS_BIND, NULL) < 0)
      child_fail(errfd, "bind mount resolv.conf over", target);
  }
  if (o->nsrc)
    volume_mounts(o, errfd);
  if (o->root && (chroot(o->root) < 0 || chdir("/") < 0))
    child_fail(errfd, "chroot", o->root);
  const char *cwd = o->cwd && *o->cwd ? o->cwd : "/";
  if (chdir(cwd) < 0)
    child_fail(errfd, "chdir", cwd);
  if (dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
    child_fail(errfd, "dup2", NULL);
  cloexec_from(3);
  execvp(o->argv[0], o->argv);
  child_fail(errfd, "exec", o->argv[0]);
}

/* ------------------------------------------------------------------ run: the supervisor */
struct stream {
  int fd;
  int channel; /* the attach sessions' channel: 1 stdout, 2 stderr */
  const char *name;
  char buf[LINE_MAX_BYTES];
  size_t len;
};

static int logfd = -1;

/* ------------------------------------------------------------------ run: attach sessions */
#define MAX_SESSIONS 32
#define PACKET_MAX 65536
#define CH_STDIN 0
#define CH_RESIZE 4
#define CH_CLOSE 255
#define CH_HELLO_STDIN 16

static int sessions[MAX_SESSIONS];
static int nsessions;
static int stdin_sessions[MAX_SESSIONS]; /* 1: that session attached stdin */

static void drop_session(int i) {
  close(sessions[i]);
  sessions[i] = sessions[nsessions - 1];
  stdin_sessions[i] = stdin_sessions[nsessions - 1];
  nsessions--;
}

/* C's output to every session: one packet each; `gone(i)` for a session that cannot take it
 * for 5 s (or has gone), which drops it. */
static void broadcast(int channel, const char *data, size_t n, void (*gone)(int)) {
  unsigned char ch = (unsigned char)channel;
  for (int i = 0; i < nsessions;) {
    struct iovec iov[2] = {{&ch, 1}, {(void *)data, n}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    int sent = 0;
    for (;;) {
      if (sendmsg(sessions[i], &m, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
        sent = 1;
        break;
      }
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN)
        break;
      struct pollfd p = {sessions[i], POLLOUT, 0};
      if (poll(&p, 1, 5000) <= 0 || !(p.revents & POLLOUT))
        break;
    }
    if (!sent) {
      gone(i);
      continue;
    }
    i++;
  }
}

/* C's stdin as the sessions write it: one packet pending at a time (none read while it is) */
static int stdin_fd = -1;   /* the pipe's writing end, or the pty master; -1: none */
static int stdin_is_tty;
static int pty_fd = -1;     /* the pty master (resizes), -1 without a TTY */
static int stdin_once;
static int stdin_claimed;   /* once: a session has attached stdin (no other one will) */
static int stdin_closing;   /* close once what is pending is written */
static int stdin_closed;
static char pending[PACKET_MAX];
static size_t pending_len, pending_off;

static void close_stdin(void) {
  if (stdin_fd >= 0 && !stdin_closed)
    stdin_closing = 1;
}

/* After the pending bytes: the close itself. A pty cannot be half-closed: the terminal's
 * end-of-file character goes in instead (what a reader at a line's start takes as EOF). */
static void finish_stdin(void) {
  if (!stdin_closing || stdin_closed || pending_len)
    return;
  if (stdin_is_tty) {
    ssize_t r = write(stdin_fd, "\x04", 1);
    (void)r;
  } else {
    close(stdin_fd);
  }
  stdin_fd = stdin_is_tty ? stdin_fd : -1;
  stdin_closed = 1;
}

static void write_stdin(void) {
  while (pending_off < pending_len) {
    ssize_t w = write(stdin_fd, pending + pending_off, pending_len - pending_off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return;
      /* C closed its stdin (EPIPE): what is pending is lost, as with any reader gone */
      pending_len = pending_off = 0;
      if (!stdin_is_tty) {
        close(stdin_fd);
        stdin_fd = -1;
      }
      stdin_closed = 1;
      return;
    }
    pending_off += (size_t)w;
  }
  pending_len = pending_off = 0;
  finish_stdin();
}

static void session_gone(int i) {
  if (stdin_sessions[i] && stdin_once)
    close_stdin();
  drop_session(i);
  finish_stdin();
}

/* One packet of session i (0: it has gone and was dropped). */
static int session_packet(int i) {
  static unsigned char pkt[PACKET_MAX + 1];
  ssize_t n = recv(sessions[i], pkt, sizeof pkt, MSG_DONTWAIT);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return 1;
  if (n <= 0) {
    session_gone(i);
    return 0;
  }
  switch (pkt[0]) {
  case CH_HELLO_STDIN:
    if (stdin_fd >= 0 && !stdin_closing && !stdin_closed && !(stdin_once && stdin_claimed)) {
      stdin_sessions[i] = 1;
      stdin_claimed = 1;
    }
    break;
  case CH_STDIN:
    if (stdin_sessions[i] && !stdin_closing && !stdin_closed && n > 1) {
      memcpy(pending, pkt + 1, (size_t)n - 1);
      pending_len = (size_t)n - 1;
      pending_off = 0;
      write_stdin();
    }
    break;
  case CH_RESIZE:
    if (pty_fd >= 0 && n >= 5) {
      struct winsize ws = {.ws_col = (unsigned short)(pkt[1] << 8 | pkt[2]),
                           .ws_row = (unsigned short)(pkt[3] << 8 | pkt[4])};
      ioctl(pty_fd, TIOCSWINSZ, &ws);
    }
    break;
  case CH_CLOSE:
    if (stdin_sessions[i]) {
      stdin_sessions[i] = 0;
      if (stdin_once)
        close_stdin();
      finish_stdin();
    }
    break;
  default:
    break;
  }
  return 1;
}

static void accept_sessions(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
      return;
    if (nsessions == MAX_SESSIONS) {
      close(fd);
      continue;
    }
    int size = 1 << 18;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    sessions[nsessions] = fd;
    stdin_sessions[nsessions] = 0;
    nsessions++;
  }
}

/* The attach socket D/NAME, bound relative to D (sun_path holds only 108 bytes). */
static int attach_socket(const struct opts *o, int dirfd) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(o->attach) >= sizeof a.sun_path) {
    errno = ENAMETOOLONG;
    close(fd);
    return -1;
  }
  strcpy(a.sun_path, o->attach);
  unlinkat(dirfd, o->attach, 0);
  mode_t old = umask(0177); /* the socket: 0600 */
  int r = fchdir(dirfd) < 0 ? -1 : bind(fd, (struct sockaddr *)&a, sizeof a);
  int saved = errno;
  umask(old);
  if (chdir("/") < 0 && r == 0) {
    r = -1;
    saved = errno;
  }
  if (r == 0 && listen(fd, 16) < 0) {
    r = -1;
    saved = errno;
  }
  if (r < 0) {
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

static void emit(struct stream *s, const char *text, size_t n, char tag) {
  struct timespec ts;
  struct tm tm;
  char head[96];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t h = strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
  h += (size_t)snprintf(head + h, sizeof head - h, ".%09ldZ %s %c ", ts.tv_nsec, s->name, tag);
  struct iovec iov[3] = {{head, h}, {(void *)text, n}, {"\n", 1}};
  /* one writev per record on an O_APPEND file: records never interleave */
  ssize_t r = writev(logfd, iov, 3);
  (void)r;
}

/* Read what is there; returns 0 at EOF. Whole lines become F records, a full buffer a P; what
 * was read also goes to the attach sessions. */
static int pump(struct stream *s, void (*gone)(int)) {
  ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
  if (n < 0)
    return errno == EINTR || errno == EAGAIN ? 1 : 0; /* EIO: a pty whose slave all closed */
  if (n > 0 && nsessions)
    broadcast(s->channel, s->buf + s->len, (size_t)n, gone);
  if (n == 0) {
    if (s->len)
      emit(s, s->buf, s->len, 'P');
    s->len = 0;
    return 0;
  }
  s->len += (size_t)n;
  size_t start = 0;
  for (size_t i = s->len - (size_t)n; i < s->len; i++) {
    if (s->buf[i] == '\n') {
      emit(s, s->buf + start, i - start, 'F');
      start = i + 1;
    }
  }
  memmove(s->buf, s->buf + start, s->len - start);
  s->len -= start;
  if (s->len == sizeof s->buf) {
    emit(s, s->buf, s->len, 'P');
    s->len = 0;
  }
  return 1;
}

/* The container ends with its main process: kill what it left behind in its cgroups. */
static void kill_leftovers(const struct opts *o) {
  char path[4096], buf[8192];
  for (int i = 0; i < o->ncgroups; i++) {
    snprintf(path, sizeof path, "%s/cgroup.kill", o->cgroups[i]);
    if (access(path, F_OK) == 0 && write_file(path, "1") == 0)
      continue;
    for (int round = 0; round < 50; round++) {
      snprintf(path, sizeof path, "%s/cgroup.procs", o->cgroups[i]);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        break;
      ssize_t n = read(fd, buf, sizeof buf - 1);
      close(fd);
      if (n <= 0)
        break;
      buf[n] = 0;
      for (char *p = buf; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
          break;
        if (pid > 0)
          kill((pid_t)pid, SIGKILL);
        p = end;
        while (*p == '\n')
          p++;
      }
      struct timespec d = {0, 10 * 1000 * 1000};
      nanosleep(&d, NULL);
    }
  }
}

/* oom_kill count of the container's memory cgroup (v2 memory.events, v1 memory.oom_control). */
static long oom_kills(const struct opts *o) {
  const char *files[] = {"memory.events", "memory.oom_control"};
  char path[4096], buf[1024];
  for (int i = 0; i < o->ncgroups; i++) {
    for (int f = 0; f < 2; f++) {
      snprintf(path, sizeof path, "%s/%s", o->cgroups[i], files[f]);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        continue;
      ssize_t n = read(fd, buf, sizeof buf - 1);
      close(fd);
      if (n <= 0)
        continue;
      buf[n] = 0;
      char *p = strstr(buf, "oom_kill ");
      if (p)
        return strtol(p + 9, NULL, 10);
    }
  }
  return 0;
}

static int do_run(struct opts *o) {
  if (!o->dir || !o->log || o->ns_pidfd < 0 || !o->argv || !o->argv[0]) {
    status("error: run needs --dir, --log, --ns-pidfd and a command\n");
    return 2;
  }
  pid_t pid = fork();
  if (pid < 0) {
    status("error: fork: %s\n", strerror(errno));
    return 1;
  }
  if (pid > 0)
    return 0;
  setsid();
  signal(SIGPIPE, SIG_IGN); /* the agent may be gone when we report */
  char path[4096];
  snprintf(path, sizeof path, "%s/shim.log", o->dir);
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  int shimlog = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  logfd = open(o->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (devnull < 0 || shimlog < 0 || logfd < 0) {
    status("error: open %s: %s\n", logfd < 0 ? o->log : path, strerror(errno));
    _exit(1);
  }
  dup2(devnull, 0);
  dup2(devnull, 1);
  dup2(shimlog, 2);
  char rec[256];
  snprintf(rec, sizeof rec, "pid=%d\nstart=%llu\n", (int)getpid(), start_time(getpid()));
  if (write_record(o->dir, "shim", rec) < 0) {
    status("error: record %s/shim: %s\n", o->dir, strerror(errno));
    _exit(1);
  }
  int outp[2] = {-1, -1}, errp[2] = {-1, -1}, failp[2], inp[2] = {-1, -1}, master = -1, slave = -1;
  if (pipe2(failp, O_CLOEXEC) < 0) {
    status("error: pipe: %s\n", strerror(errno));
    _exit(1);
  }
  if (o->tty) {
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    const char *name = master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ? NULL : ptsname(master);
    if (!name || (slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
      status("error: allocate a pty: %s\n", strerror(errno));
      _exit(1);
    }
  } else if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
             (o->stdin_mode && pipe2(inp, O_CLOEXEC) < 0)) {
    status("error: pipe: %s\n", strerror(errno));
    _exit(1);
  }
  int lfd = -1, dirfd = -1;
  if (o->attach) {
    dirfd = open(o->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0 || (lfd = attach_socket(o, dirfd)) < 0) {
      status("error: attach socket %s/%s: %s\n", o->dir, o->attach, strerror(errno));
      _exit(1);
    }
  }
  sigset_t mask;
  sigemptyset(&mask);
  int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
    sigaddset(&mask, forwarded[i]);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL); /* before fork: no signal is lost in between */
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) {
    status("error: signalfd: %s\n", strerror(errno));
    _exit(1);
  }
  pid_t child = fork();
  if (child < 0) {
    status("error: fork: %s\n", strerror(errno));
    _exit(1);
  }
  if (child == 0) {
    close(failp[0]);
    if (o->tty)
      container_child(o, slave, slave, slave, failp[1]);
    close(outp[0]);
    close(errp[0]);
    if (inp[1] >= 0)
      close(inp[1]);
    container_child(o, inp[0], outp[1], errp[1], failp[1]);
  }
  if (o->tty) {
    close(slave); /* C's copies are the only ones: its exit (and its children's) is EIO here */
    fcntl(master, F_SETFL, O_NONBLOCK);
  } else {
    close(outp[1]);
    close(errp[1]);
    if (inp[0] >= 0) {
      close(inp[0]);
      fcntl(inp[1], F_SETFL, O_NONBLOCK);
    }
  }
  close(failp[1]);
  close(o->ns_pidfd);
  char why[1024];
  ssize_t n;
  do
    n = read(failp[0], why, sizeof why - 1);
  while (n < 0 && errno == EINTR);
  close(failp[0]);
  if (n > 0) {
    why[n] = 0;
    waitpid(child, NULL, 0);
    if (lfd >= 0)
      unlinkat(dirfd, o->attach, 0);
    status("error: %s\n", why);
    _exit(1);
  }
  long long started = now_ns();
  snprintf(rec, sizeof rec, "pid=%d\nstart=%llu\nstarted_ns=%lld\n", (int)child, start_time(child), started);
  if (write_record(o->dir, "pid", rec) < 0) {
    /* it runs but cannot be found again: end it rather than leave it unsupervised */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    if (lfd >= 0)
      unlinkat(dirfd, o->attach, 0);
    status("error: record %s/pid: %s\n", o->dir, strerror(errno));
    _exit(1);
  }
  status("ok\n");
  close(status_fd);
  status_fd = -1;

  stdin_is_tty = o->tty != NULL;
  pty_fd = master;
  stdin_fd = o->tty ? (o->stdin_mode ? master : -1) : inp[1];
  stdin_once = o->stdin_mode && strcmp(o->stdin_mode, "once") == 0;
  struct stream out = {.fd = o->tty ? master : outp[0], .channel = 1, .name = "stdout"},
                err = {.fd = o->tty ? -1 : errp[0], .channel = 2, .name = "stderr"};
  int wstatus = 0, done = 0;
  long long finished = 0, deadline = 0;
  enum { P_SIG, P_OUT, P_ERR, P_LISTEN, P_STDIN, P_SESSIONS };
  struct pollfd p[P_SESSIONS + MAX_SESSIONS];
  while (out.fd >= 0 || err.fd >= 0 || !done) {
    p[P_SIG] = (struct pollfd){sfd, POLLIN, 0};
    p[P_OUT] = (struct pollfd){out.fd, POLLIN, 0};
    p[P_ERR] = (struct pollfd){err.fd, POLLIN, 0};
    p[P_LISTEN] = (struct pollfd){lfd, POLLIN, 0};
    p[P_STDIN] = (struct pollfd){pending_len ? stdin_fd : -1, POLLOUT, 0};
    int polled = nsessions; /* sessions are read only while nothing is pending for stdin */
    for (int i = 0; i < polled; i++)
      p[P_SESSIONS + i] = (struct pollfd){sessions[i], pending_len ? 0 : POLLIN, 0};
    int timeout = -1;
    if (done) {
      /* pipes held open by something outside the cgroups: give them 2 s, then stop */
      long long left = (deadline - now_ns()) / 1000000;
      if (left <= 0)
        break;
      timeout = (int)left;
    }
    if (poll(p, (nfds_t)(P_SESSIONS + polled), timeout) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (p[P_SIG].revents & POLLIN) {
      struct signalfd_siginfo si;
      if (read(sfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
          int st;
          if (!done && waitpid(child, &st, WNOHANG) == child) {
            wstatus = st;
            done = 1;
            finished = now_ns();
            deadline = finished + 2000000000LL;
            kill_leftovers(o);
          }
        } else if (!done) {
          kill(child, (int)si.ssi_signo);
        }
      }
    }
    if (p[P_STDIN].revents)
      write_stdin();
    /* sessions from the last to the first: dropping one moves the last into its place */
    for (int i = polled - 1; i >= 0; i--)
      if (i < nsessions && (p[P_SESSIONS + i].revents & (POLLIN | POLLHUP | POLLERR)) && !pending_len)
        session_packet(i);
    if (p[P_LISTEN].revents & POLLIN)
      accept_sessions(lfd);
    struct stream *ss[2] = {&out, &err};
    for (int i = 0; i < 2; i++) {
      if (ss[i]->fd >= 0 && (p[i + P_OUT].revents & (POLLIN | POLLHUP | POLLERR)) && !pump(ss[i], session_gone)) {
        close(ss[i]->fd);
        if (ss[i]->fd == pty_fd)
          stdin_fd = pty_fd = -1; /* the pty's master: stdin goes with it */
        ss[i]->fd = -1;
      }
    }
  }
  /* the end: every session reads EOF, and the socket goes */
  while (nsessions)
    drop_session(nsessions - 1);
  if (lfd >= 0) {
    unlinkat(dirfd, o->attach, 0);
    close(lfd);
  }
  struct stream *ss[2] = {&out, &err};
  for (int i = 0; i < 2; i++)
    if (ss[i]->len)
      emit(ss[i], ss[i]->buf, ss[i]->len, 'P');
  int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  snprintf(rec, sizeof rec, "status=%d\ncode=%d\nsignal=%d\nfinished_ns=%lld\noom_kill=%ld\n", wstatus, code,
           sig, finished, oom_kills(o));
  if (write_record(o->dir, "exit", rec) < 0) {
    fprintf(stderr, "np-shim: cannot record the exit status %d in %s: %s\n", code, o->dir, strerror(errno));
    _exit(1);
  }
  _exit(0);
}

/* ------------------------------------------------------------------ exec */
static int do_exec(struct opts *o) {
  if (o->ns_pidfd < 0 || !o->argv || !o->argv[0]) {
    fprintf(stderr, "np-shim exec: needs --ns-pidfd and a command\n");
    return 126;
  }
  int bad = join_cgroups(o);
  if (bad) {
    fprintf(stderr, "np-shim exec: join cgroup %s: %s\n", o->cgroups[bad - 1], strerror(errno));
    return 126;
  }
  if (setns(o->ns_pidfd, CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS) < 0) {
    fprintf(stderr, "np-shim exec: enter the container's namespaces: %s\n", strerror(errno));
    return 126;
  }
  close(o->ns_pidfd);
  if (o->root && (chroot(o->root) < 0 || chdir("/") < 0)) {
    fprintf(stderr, "np-shim exec: chroot %s: %s\n", o->root, strerror(errno));
    return 126;
  }
  const char *cwd = o->cwd && *o->cwd ? o->cwd : "/";
  if (chdir(cwd) < 0) {
    fprintf(stderr, "np-shim exec: chdir %s: %s\n", cwd, strerror(errno));
    return 126;
  }
  setsid(); /* a timeout kills the whole process group */
  if (isatty(0))
    ioctl(0, TIOCSCTTY, 0); /* an exec with a TTY: its controlling terminal (job control) */
  execvp(o->argv[0], o->argv);
  fprintf(stderr, "np-shim exec: %s: %s\n", o->argv[0], strerror(errno));
  return 127;
}

/* ------------------------------------------------------------------ main */
static int parse(int argc, char **argv, struct opts *o) {
  memset(o, 0, sizeof *o);
  o->status_fd = -1;
  o->ns_pidfd = -1;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      o->argv = argv + i + 1;
      return 0;
    }
    if (i + 1 >= argc)
      return -1;
    const char *v = argv[++i];
    if (strcmp(a, "--status-fd") == 0)
      o->status_fd = atoi(v);
    else if (strcmp(a, "--ns-pidfd") == 0)
      o->ns_pidfd = atoi(v);
    else if (strcmp(a, "--dir") == 0)
      o->dir = v;
    else if (strcmp(a, "--hostname") == 0)
      o->hostname = v;
    else if (strcmp(a, "--pause") == 0)
      o->pause = v;
    else if (strcmp(a, "--log") == 0)
      o->log = v;
    else if (strcmp(a, "--resolv") == 0)
      o->resolv = v;
    else if (strcmp(a, "--root") == 0)
      o->root = v;
    else if (strcmp(a, "--cwd") == 0)
      o->cwd = v;
    else if (strcmp(a, "--stdin") == 0 && (strcmp(v, "open") == 0 || strcmp(v, "once") == 0))
      o->stdin_mode = v;
    else if (strcmp(a, "--tty") == 0 && strcmp(v, "on") == 0)
      o->tty = v;
    else if (strcmp(a, "--attach") == 0 && *v && !strchr(v, '/'))
      o->attach = v;
    else if (strcmp(a, "--host-network") == 0 && strcmp(v, "on") == 0)
      o->host_network = v;
    else if (strcmp(a, "--host-ipc") == 0 && strcmp(v, "on") == 0)
      o->host_ipc = v;
    else if (strcmp(a, "--bind") == 0 && o->nsrc < MAX_MOUNTS && *v == '/')
      o->bind_src[o->nsrc++] = v;
    else if (strcmp(a, "--bind-to") == 0 && o->ndst < MAX_MOUNTS && *v == '/')
      o->bind_dst[o->ndst++] = v;
    else if (strcmp(a, "--bind-mode") == 0 && o->nmode < MAX_MOUNTS && (strcmp(v, "ro") == 0 || strcmp(v, "rw") == 0))
      o->bind_ro[o->nmode++] = strcmp(v, "ro") == 0;
    else if (strcmp(a, "--cgroup") == 0) {
      if (o->ncgroups == MAX_CGROUPS)
        return -1;
      o->cgroups[o->ncgroups++] = v;
    } else
      return -1;
  }
  return o->nsrc == o->ndst && o->ndst == o->nmode ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
    fprintf(stderr, "netplane np-shim 1\n");
    return 0;
  }
  struct opts o;
  if (argc < 2 || parse(argc, argv, &o) < 0) {
    fprintf(stderr, "usage: np-shim sandbox|run|exec [options] [-- ARGV...]\n");
    return 2;
  }
  status_fd = o.status_fd;
  if (strcmp(argv[1], "sandbox") == 0)
    return do_sandbox(&o);
  if (strcmp(argv[1], "run") == 0)
    return do_run(&o);
  if (strcmp(argv[1], "exec") == 0)
    return do_exec(&o);
  fprintf(stderr, "np-shim: unknown mode %s\n", argv[1]);
  return 2;
}
