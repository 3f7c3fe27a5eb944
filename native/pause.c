/*
 * netplane's pod infra ("pause") process.
 *
 * The Docker runtime starts one per pod, first, to hold the pod's network (and IPC) namespace
 * while app containers come and go; they join it with `container:<infra>`. As PID 1 of that
 * container it also reaps zombies: an orphan in the pod is re-parented to us, and without a
 * wait it would stay <defunct> forever. Started as an ordinary process instead, it makes itself
 * a child subreaper, so the orphans of its own descendants come to it the same way.
 *
 * All work is done in the signal handlers, with async-signal-safe calls only (waitpid, write,
 * _exit), so there is no window between "check a flag" and "pause()" in which a SIGTERM could
 * be missed. PID 1 of a PID namespace gets no default signal actions, which is why SIGTERM and
 * SIGINT need a handler to end it at all.
 *
 * Built statically by scripts/install.sh (`gcc -static -O2`) and imported as the image
 * netplane/pause:3.9 with ENTRYPOINT ["/pause"].
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define NP_PAUSE_VERSION "netplane-pause 3.9"

static void say(const char *s) {
  ssize_t r = write(STDERR_FILENO, s, strlen(s));
  (void)r;
}

static void on_term(int signo) {
  say(signo == SIGTERM ? "pause: SIGTERM, exiting\n" : "pause: SIGINT, exiting\n");
  _exit(0);
}

static void on_child(int signo) {
  (void)signo;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0)
    ;
  errno = saved;
}

static int handle(int signo, void (*fn)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sa.sa_flags = flags;
  /* a SIGTERM arriving while we reap (or the reverse) waits until the handler returns */
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGCHLD);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaddset(&sa.sa_mask, SIGINT);
  return sigaction(signo, &sa, NULL);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--version") == 0) {
      say(NP_PAUSE_VERSION "\n");
      return 0;
    }
  }
  /* Outside a PID namespace of its own (the plain-namespace runtime may run it so), become a
   * subreaper: orphans among our descendants are then re-parented to us, as to a PID 1. */
  if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
    say("pause: warning: not PID 1 and cannot be a subreaper; orphans go to the real init\n");
  if (handle(SIGTERM, on_term, 0) < 0 || handle(SIGINT, on_term, 0) < 0)
    return 1;
  if (handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART) < 0)
    return 2;
  /* children that exited before the handler was installed */
  on_child(SIGCHLD);
  for (;;)
    pause();
}
