#!/bin/sh
# Run a command where /sys/fs/cgroup looks as it does on a cgroup v2-only host (GitHub's Ubuntu
# runners, Debian 12 booted with its defaults), on this hybrid machine:
#
#   scripts/unified-view.sh CMD [ARG...]
#
# In a private mount namespace (unshare -m; nothing outside it changes) the tmpfs at
# /sys/fs/cgroup with its v1 controller mounts is unmounted and the machine's one cgroup2
# hierarchy (the one mounted at /sys/fs/cgroup/unified outside) is mounted at /sys/fs/cgroup
# instead. Inside, `/sys/fs/cgroup/cgroup.controllers` exists, /proc/self/mountinfo lists one
# cgroup2 mount and no v1 ones, and cgroups made under /sys/fs/cgroup are the same v2 cgroups
# the host sees under /sys/fs/cgroup/unified (BPF programs attached there work the same).
# What it cannot give: controllers. They stay bound to the v1 hierarchies, so
# cgroup.controllers is empty and nothing about limits, memory/io/pids accounting or the
# "no internal processes" rule can be tried here (the CI workflow's runners have them).
# On a host that is already unified this only runs CMD.
set -eu
[ "$#" -gt 0 ] || { echo "usage: $0 CMD [ARG...]" >&2; exit 2; }
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  exec "$@"
fi
if [ "${NETPLANE_IN_UNIFIED_VIEW:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "$0: needs root (a mount namespace)" >&2; exit 1; }
  [ -e /sys/fs/cgroup/unified/cgroup.controllers ] || { echo "$0: no cgroup2 at /sys/fs/cgroup/unified" >&2; exit 1; }
  NETPLANE_IN_UNIFIED_VIEW=1 exec unshare --mount --propagation private "$0" "$@"
fi
# A new cgroup2 mount re-applies its options (nsdelegate, memory_recursiveprot, ...) to the one
# hierarchy, for every mount of it, outside this namespace too: pass exactly the super options the
# host's mount has, so nothing changes there.
opts=$(awk '$5 == "/sys/fs/cgroup/unified" { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 3); exit } }' /proc/self/mountinfo)
[ -n "$opts" ] || { echo "$0: cannot read the options of /sys/fs/cgroup/unified" >&2; exit 1; }
umount -R /sys/fs/cgroup
mount -t cgroup2 -o "$opts" cgroup2 /sys/fs/cgroup
unset NETPLANE_IN_UNIFIED_VIEW NETPLANE_CGROUP2_ROOT
exec "$@"
