#!/usr/bin/env bash
# netplane's one install script: everything `make demo` and `make test` need on a fresh
# Debian 12 machine, as root. Idempotent: a second run only verifies (well under 5 s).
#
#   scripts/install.sh            install or verify
#   NETPLANE_VENV=/path scripts/install.sh   use another virtualenv location
#
# What it does, in order:
#   1. apt packages (only `apt-get update` + install when one is missing)
#   2. kernel headers link for bcc: /lib/modules/$(uname -r)/{build,source}
#   3. a virtualenv (Debian's python3) with netplane installed editable + test deps
#   4. bcc (Debian's python3-bpfcc) and libnftables' binding (python3-nftables) made importable
#      inside that virtualenv
#   5. dockerd started when not running, with the netplane-runc runtime; the busybox image for
#      Docker-runtime tests and the pod infra image netplane/pause:3.9 (native/pause.c,
#      compiled statically)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NETPLANE_VENV:-$ROOT/.venv}"
PY=/usr/bin/python3
STAMP="$VENV/.netplane-install-stamp"

log() { printf '[install] %s\n' "$*" >&2; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (netplane programs the kernel and starts etcd/dockerd)"

APT_PACKAGES=(
  etcd-server etcd-client iptables nftables python3-nftables iproute2 bpftool python3-bpfcc
  docker.io busybox-static iperf3 tcpdump prometheus conntrack ethtool
  python3 python3-venv python3-dev gcc libc6-dev linux-headers-amd64 procps psmisc
  iputils-ping netcat-openbsd openssl
)

# ---------------------------------------------------------------- 1. apt packages
missing=()
status=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${APT_PACKAGES[@]}" 2>/dev/null || true)
for p in "${APT_PACKAGES[@]}"; do
  grep -qE "^$p ii" <<<"$status" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- 2. kernel headers for bcc
KREL="$(uname -r)"
MODDIR="/lib/modules/$KREL"
if [ ! -e "$MODDIR/build/include/generated/uapi/linux/version.h" ] || [ ! -e "$MODDIR/source/include/linux/kconfig.h" ]; then
  # The running kernel may not be a Debian one: uapi-level BPF programs compile fine against
  # the newest Debian amd64 headers, so point the module dir at those.
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | grep -v -- '-common' | sort -V | tail -n 1 || true)
  [ -n "$hdr" ] || die "no /usr/src/linux-headers-*-amd64 after installing linux-headers-amd64"
  log "linking $MODDIR/build and source -> $hdr"
  mkdir -p "$MODDIR"
  ln -sfn "$hdr" "$MODDIR/build"
  # Debian splits headers: generated/arch files in -amd64, the rest (include/linux/kconfig.h)
  # in -common; bcc reads build for the first and source for the second.
  common="${hdr%-amd64}-common"
  if [ -d "$common" ]; then ln -sfn "$common" "$MODDIR/source"; else ln -sfn "$hdr" "$MODDIR/source"; fi
fi

# ---------------------------------------------------------------- 3+4. virtualenv
fingerprint() {
  cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/scripts/install.sh" \
      $(find "$ROOT/native" -maxdepth 1 -type f \( -name '*.c' -o -name '*.h' -o -name '*.py' \) 2>/dev/null | sort) \
    | sha256sum | cut -d' ' -f1
}
want="$(fingerprint)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ] || [ ! -x "$VENV/bin/python" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PY" -m venv "$VENV"
  fi
  log "installing netplane (editable) and test dependencies"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel >/dev/null
  "$VENV/bin/pip" install -q -e "$ROOT[test]"
  # bcc's Python module is Debian's (PyPI's "bcc" is an unrelated package). Expose only it,
  # not all of dist-packages, through a directory holding one symlink plus a .pth file.
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$VENV/bcc-bridge"
  ln -sfn /usr/lib/python3/dist-packages/bcc "$VENV/bcc-bridge/bcc"
  # the same for libnftables' binding (the nftables proxy writes its table through it)
  ln -sfn /usr/lib/python3/dist-packages/nftables "$VENV/bcc-bridge/nftables"
  echo "$VENV/bcc-bridge" > "$site/netplane-bcc.pth"
  echo "$want" > "$STAMP"
fi
"$VENV/bin/python" -c 'import netplane, bcc, nftables, pyroute2, pyetcd' \
  || die "virtualenv $VENV is broken; remove it and run again"

# ---------------------------------------------------------------- 5. dockerd
# Started without its own iptables/forwarding management: netplane owns the data path and
# must never change the root namespace's firewall policy (dockerd would set FORWARD to DROP).
# It gets one extra OCI runtime, netplane-runc (scripts/netplane-runc: runc plus a hook that
# puts a pod's processes into the host's cgroup v2 subtree before the entrypoint runs, for
# the eBPF proxy's socket LB). A dockerd running without it (or with another path for it)
# is restarted only when this script started it (its stdout is our log file) and no
# container is running; otherwise the node runtime falls back to runc and says so.
DOCKERD_LOG=/var/log/netplane-dockerd.log
# installed at a fixed path (not this checkout's): a dockerd registered by one clone keeps
# working for every other clone, and after that clone is deleted
RUNC_WRAPPER=/usr/local/lib/netplane/netplane-runc
for f in netplane-runc netplane-runc-create; do
  cmp -s "$ROOT/scripts/$f" "/usr/local/lib/netplane/$f" || install -D -m 0755 "$ROOT/scripts/$f" "/usr/local/lib/netplane/$f"
done
wrapper_registered() {
  [ "$(docker info --format '{{with index .Runtimes "netplane-runc"}}{{.Path}}{{end}}' 2>/dev/null)" = "$RUNC_WRAPPER" ]
}
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
start_dockerd() {
  log "starting dockerd"
  mkdir -p /var/log
  setsid dockerd --iptables=false --ip6tables=false --ip-forward=false --bridge=none \
    --add-runtime "netplane-runc=$RUNC_WRAPPER" >"$DOCKERD_LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || die "dockerd did not start; see $DOCKERD_LOG"
  wrapper_registered || die "dockerd started without the netplane-runc runtime; see $DOCKERD_LOG"
}
if ! docker info >/dev/null 2>&1; then
  start_dockerd
elif ! wrapper_registered; then
  dpid="$(cat /var/run/docker.pid 2>/dev/null || true)"
  if [ -n "$dpid" ] && [ "$(readlink "/proc/$dpid/fd/1" 2>/dev/null)" = "$DOCKERD_LOG" ] \
      && [ -z "$(docker ps -q)" ]; then
    log "restarting dockerd (pid $dpid, started by this script) to register netplane-runc"
    kill -TERM "$dpid"
    for _ in $(seq 1 150); do alive "$dpid" || break; sleep 0.2; done
    ! alive "$dpid" || die "dockerd (pid $dpid) did not stop within 30 s"
    start_dockerd
  else
    log "warning: the running dockerd has no netplane-runc runtime ($RUNC_WRAPPER) and was not" \
        "started by this script or runs containers: not restarting it; Docker pods will miss" \
        "the eBPF proxy's first connects until dockerd runs with --add-runtime netplane-runc=$RUNC_WRAPPER"
  fi
fi
if ! docker image inspect netplane/busybox:latest >/dev/null 2>&1; then
  log "building netplane/busybox image with docker import"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin"
  cp /bin/busybox "$tmp/bin/busybox"
  for app in $("$tmp/bin/busybox" --list); do
    [ "$app" = busybox ] || ln -sf busybox "$tmp/bin/$app"
  done
  tar -C "$tmp" -c . | docker import -c 'CMD ["/bin/sh"]' - netplane/busybox:latest >/dev/null
fi
# The pod infra ("pause") image: native/pause.c built static (the image holds nothing else),
# labelled with its source's hash so a changed pause.c is rebuilt and an unchanged one skipped.
PAUSE_IMAGE=netplane/pause:3.9
pause_src="$(sha256sum "$ROOT/native/pause.c" | cut -d' ' -f1)"
if [ "$(docker image inspect -f '{{index .Config.Labels "io.netplane.pause.source"}}' "$PAUSE_IMAGE" 2>/dev/null || true)" != "$pause_src" ]; then
  log "building $PAUSE_IMAGE from native/pause.c (gcc -static) with docker import"
  ptmp=$(mktemp -d)
  trap 'rm -rf "${tmp:-}" "$ptmp"' EXIT
  gcc -static -O2 -Wall -Wextra -std=gnu11 -o "$ptmp/pause" "$ROOT/native/pause.c" \
    || die "cannot build native/pause.c statically (is libc6-dev installed?)"
  "$ptmp/pause" -v >/dev/null 2>&1 || die "the static pause binary does not run"
  tar -C "$ptmp" -c pause | docker import -c 'ENTRYPOINT ["/pause"]' \
    -c "LABEL io.netplane.pause.source=$pause_src" - "$PAUSE_IMAGE" >/dev/null
fi
# The plain-namespace runtime's static helpers (orchestrator.node.ns_runtime looks for them in
# /usr/local/lib/netplane): np-shim, the per-container supervisor (native/np-shim.c), and the
# pause process on the host (native/pause.c, the same source as the image). Each is rebuilt
# only when its source changed (the hash is kept beside it) and replaced by a rename, so
# running shims keep their binary.
NP_LIBEXEC=/usr/local/lib/netplane
for prog in np-shim pause; do
  src="$ROOT/native/$prog.c"
  sum="$(sha256sum "$src" | cut -d' ' -f1)"
  if [ ! -x "$NP_LIBEXEC/$prog" ] || [ "$(cat "$NP_LIBEXEC/$prog.source" 2>/dev/null || true)" != "$sum" ]; then
    log "building $NP_LIBEXEC/$prog from native/$prog.c (gcc -static)"
    mkdir -p "$NP_LIBEXEC"
    gcc -static -O2 -Wall -Wextra -std=gnu11 -o "$NP_LIBEXEC/.$prog.new" "$src" \
      || die "cannot build native/$prog.c statically (is libc6-dev installed?)"
    "$NP_LIBEXEC/.$prog.new" -v >/dev/null 2>&1 || die "the static $prog binary does not run"
    mv -f "$NP_LIBEXEC/.$prog.new" "$NP_LIBEXEC/$prog"
    echo "$sum" > "$NP_LIBEXEC/$prog.source"
  fi
done
log "ready: venv $VENV"
