#!/usr/bin/env bash
# netplane's one install script: everything `make demo` and `make test` need, as root, on
#   - Debian 12 (this project's development machine: cgroup v1+v2 hybrid, dockerd started here),
#   - Ubuntu 24.04 (GitHub's hosted runners: cgroup v2 only, Docker CE already installed and
#     running under systemd), and the Debian 12 Vagrant VMs (vagrant/: cgroup v2 only, systemd).
# Idempotent: a second run only verifies (well under 5 s).
#
#   scripts/install.sh            install or verify
#   NETPLANE_VENV=/path scripts/install.sh   use another virtualenv location
#   NETPLANE_INSTALL_PLAN=1 scripts/install.sh   print the packages it would need here and exit
#                                 (changes nothing; NETPLANE_OS_RELEASE=FILE stands in for
#                                 /etc/os-release: tests/unit/test_install_plan.py)
#   NETPLANE_DOCKERD_CONFIGURE=1 scripts/install.sh   may rewrite /etc/docker/daemon.json and
#                                 restart a systemd-managed dockerd (see 5.; on by itself on
#                                 GitHub Actions runners: CI=true and GITHUB_ACTIONS=true)
#
# What it does, in order:
#   0. which system: /etc/os-release (debian or ubuntu), python3 >= 3.11
#   1. apt packages (only `apt-get update` + install when one is missing); names differ per
#      distribution (etcd, bpftool, kernel headers); docker.io only when there is no `docker`
#   2. kernel headers for bcc: /lib/modules/$(uname -r)/{build,source}
#   3. a virtualenv (the system's python3) with netplane installed editable + test deps
#   4. bcc (python3-bpfcc) and libnftables' binding (python3-nftables) made importable
#      inside that virtualenv
#   5. dockerd with the netplane-runc runtime: started here when nothing runs it; a
#      systemd-managed one is configured through /etc/docker/daemon.json where allowed; the
#      busybox image for Docker-runtime tests and the pod infra image netplane/pause:3.9
#      (native/pause.c, compiled statically)
#   6. a real kubectl v1.33 (scripts/install-kubectl.sh) for the Kubernetes API tests
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NETPLANE_VENV:-$ROOT/.venv}"
PY=/usr/bin/python3
STAMP="$VENV/.netplane-install-stamp"

log() { printf '[install] %s\n' "$*" >&2; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

PLAN="${NETPLANE_INSTALL_PLAN:-}"
[ -n "$PLAN" ] || [ "$(id -u)" = 0 ] || die "run as root (netplane programs the kernel and starts etcd/dockerd)"

# ---------------------------------------------------------------- 0. which system
OS_RELEASE="${NETPLANE_OS_RELEASE:-/etc/os-release}"
[ -r "$OS_RELEASE" ] || die "no $OS_RELEASE: supported are Debian 12 and Ubuntu 24.04"
# shellcheck disable=SC1090  # os-release is shell assignments by definition
OS_ID="$(. "$OS_RELEASE" && echo "${ID:-}")"
# shellcheck disable=SC1090
OS_VERSION="$(. "$OS_RELEASE" && echo "${VERSION_ID:-}")"
case "$OS_ID" in
  debian|ubuntu) ;;
  *) die "unsupported system ${OS_ID:-unknown} ${OS_VERSION}: supported are Debian 12 and Ubuntu 24.04" ;;
esac
KREL="$(uname -r)"
# GitHub's hosted runners: a throw-away VM whose dockerd this script may reconfigure (5.)
ON_GITHUB_RUNNER=0
if [ "${CI:-}" = true ] && [ "${GITHUB_ACTIONS:-}" = true ]; then ON_GITHUB_RUNNER=1; fi
SYSTEMD=0
if [ -d /run/systemd/system ]; then SYSTEMD=1; fi

# ---------------------------------------------------------------- 1. apt packages
# Each entry is one need: a package name, or alternatives "a|b" (the first installed one
# satisfies it; if none is, the first the archive has is installed).
NEEDS=(
  iptables nftables python3-nftables iproute2 python3-bpfcc
  busybox-static iperf3 tcpdump prometheus conntrack ethtool
  python3 python3-venv python3-dev gcc libc6-dev procps psmisc
  iputils-ping netcat-openbsd openssl
)
case "$OS_ID" in
  debian)
    # etcd 3.4; bpftool is its own package; linux-headers-amd64 is the newest Debian kernel's
    # headers, linked below for whatever kernel runs (this machine's is not a Debian one)
    NEEDS+=(etcd-server etcd-client bpftool linux-headers-amd64) ;;
  ubuntu)
    # 24.04: etcd-server/etcd-client 3.4. bpftool is linux-tools-common's wrapper that runs
    # the running kernel's copy from linux-tools-$(uname -r); headers of the running kernel.
    NEEDS+=(etcd-server etcd-client linux-tools-common "linux-tools-$KREL|bpftool"
            "linux-headers-$KREL|linux-headers-generic") ;;
esac
# Docker: Debian's docker.io unless a `dockerd` is already there (GitHub's runners have Docker
# CE: docker.io conflicts with its docker-ce/containerd.io packages). The daemon is what
# counts: a machine may carry only a docker client (a static binary in /usr/local/bin).
command -v dockerd >/dev/null 2>&1 || NEEDS+=(docker.io)
if [ -n "$PLAN" ]; then
  may=0
  if [ "$ON_GITHUB_RUNNER" = 1 ] || [ "${NETPLANE_DOCKERD_CONFIGURE:-}" = 1 ]; then may=1; fi
  printf 'os %s %s\nkernel %s\nconfigure-dockerd %s\n' "$OS_ID" "$OS_VERSION" "$KREL" "$may"
  printf 'need %s\n' "${NEEDS[@]}"
  exit 0
fi

all_names=()
for need in "${NEEDS[@]}"; do IFS='|' read -r -a alts <<<"$need"; all_names+=("${alts[@]}"); done
status=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${all_names[@]}" 2>/dev/null || true)
installed() { grep -qE "^$1 ii" <<<"$status"; }
# (policy's output is read whole first: `grep -q` stopping early would SIGPIPE apt-cache, and
# with pipefail a package that is there would count as missing)
has_candidate() { local p; p=$(apt-cache policy "$1" 2>/dev/null) || return 1; grep -qE '^[[:space:]]*Candidate: [^(]' <<<"$p"; }
unmet=()
for need in "${NEEDS[@]}"; do
  IFS='|' read -r -a alts <<<"$need"
  ok=0
  for p in "${alts[@]}"; do if installed "$p"; then ok=1; break; fi; done
  [ "$ok" = 1 ] || unmet+=("$need")
done
if [ "${#unmet[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  missing=()
  for need in "${unmet[@]}"; do
    IFS='|' read -r -a alts <<<"$need"
    pick=""
    for p in "${alts[@]}"; do if has_candidate "$p"; then pick=$p; break; fi; done
    [ -n "$pick" ] || die "none of ${alts[*]} is in this system's apt sources ($OS_ID $OS_VERSION)"
    missing+=("$pick")
  done
  log "installing apt packages: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$SYSTEMD" = 1 ]; then
    # Their packages start services netplane does not want running: etcd on 127.0.0.1:2379
    # (netplane runs its own etcd: the lab's, the tests', netplane-etcd.service) and a
    # prometheus server (only promtool is used). Stopped only when installed by this run.
    for unit_pkg in etcd:etcd-server prometheus:prometheus; do
      unit=${unit_pkg%%:*} pkg=${unit_pkg#*:}
      if printf '%s\n' "${missing[@]}" | grep -qx "$pkg"; then
        log "disabling $unit.service (installed with $pkg; netplane does not use it)"
        systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
      fi
    done
  fi
fi
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PY is $("$PY" -V 2>&1): netplane needs Python >= 3.11 (Ubuntu 22.04 has 3.10: use 24.04)"

# ---------------------------------------------------------------- 2. kernel headers for bcc
MODDIR="/lib/modules/$KREL"
have_headers() {
  [ -e "$MODDIR/build/include/generated/uapi/linux/version.h" ] \
    && { [ -e "$MODDIR/source/include/linux/kconfig.h" ] || [ -e "$MODDIR/build/include/linux/kconfig.h" ]; }
}
if ! have_headers; then
  # The running kernel may have no headers package (this machine's is not a Debian one; on
  # Ubuntu linux-headers-$(uname -r) normally provides build/): uapi-level BPF programs compile
  # fine against the newest headers installed, so point the module dir at those.
  hdr=""
  for d in $(ls -d /usr/src/linux-headers-* 2>/dev/null | sort -V); do
    [ -e "$d/include/generated/uapi/linux/version.h" ] && hdr=$d
  done
  [ -n "$hdr" ] || die "no kernel headers with include/generated under /usr/src after installing them"
  log "linking $MODDIR/build and source -> $hdr"
  mkdir -p "$MODDIR"
  ln -sfn "$hdr" "$MODDIR/build"
  # Debian splits headers: generated/arch files in -amd64, the rest (include/linux/kconfig.h)
  # in -common; bcc reads build for the first and source for the second.
  common="${hdr%-amd64}-common"
  if [ "$common" != "$hdr" ] && [ -d "$common" ]; then ln -sfn "$common" "$MODDIR/source"; else ln -sfn "$hdr" "$MODDIR/source"; fi
  have_headers || die "kernel headers linked from $hdr are incomplete (no include/linux/kconfig.h)"
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
  log "installing netplane (editable), test and benchmark dependencies"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel >/dev/null
  "$VENV/bin/pip" install -q -e "${ROOT}[test,bench]"
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
# A dockerd that systemd runs (GitHub's runners: Docker CE with the systemd cgroup driver; the
# Vagrant VMs: Debian's docker.io) is not this script's to restart from a shell: it is
# configured through /etc/docker/daemon.json (keys merged, others kept: `runtimes` gets
# netplane-runc, `exec-opts` the cgroupfs driver, since the node runtime gives cgroupfs cgroup
# parents, which the systemd driver refuses) and restarted with systemctl, and only where the
# machine is netplane's to change: on a GitHub Actions runner (CI=true and GITHUB_ACTIONS=true,
# a VM thrown away after the job) or when NETPLANE_DOCKERD_CONFIGURE=1 says so (vagrant/
# provision.sh does, on its VMs), and never while containers run. Elsewhere a warning says
# what is missing. Docker's own iptables rules and bridge are left as its configuration has
# them there (netplane's FORWARD rules accept the cluster network even under Docker's DROP).
DAEMON_JSON=/etc/docker/daemon.json
systemd_dockerd() { [ "$SYSTEMD" = 1 ] && systemctl cat docker.service >/dev/null 2>&1; }
may_configure_dockerd() { [ "$ON_GITHUB_RUNNER" = 1 ] || [ "${NETPLANE_DOCKERD_CONFIGURE:-}" = 1 ]; }
cgroupfs_driver() { [ "$(docker info --format '{{.CgroupDriver}}' 2>/dev/null)" = cgroupfs ]; }
merge_daemon_json() {  # prints "changed" when it rewrote the file
  "$PY" - "$DAEMON_JSON" "$RUNC_WRAPPER" <<'PYEOF'
import json, os, sys
path, wrapper = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        cfg = json.load(f)
except FileNotFoundError:
    cfg = {}
new = dict(cfg)
new["runtimes"] = {**(cfg.get("runtimes") or {}), "netplane-runc": {"path": wrapper}}
opts = [o for o in cfg.get("exec-opts") or [] if not o.replace(" ", "").startswith("native.cgroupdriver=")]
new["exec-opts"] = opts + ["native.cgroupdriver=cgroupfs"]
if new != cfg:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".netplane-new", "w") as f:
        json.dump(new, f, indent=2)
        f.write("\n")
    os.replace(path + ".netplane-new", path)
    print("changed")
PYEOF
}
wait_docker() {
  for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
if systemd_dockerd; then
  if may_configure_dockerd; then
    changed="$(merge_daemon_json)"
    if ! systemctl is-active --quiet docker.service; then
      log "starting docker.service"
      systemctl start docker.service
    elif [ -n "$changed" ] || ! wrapper_registered || ! cgroupfs_driver; then
      if [ -z "$(docker ps -q 2>/dev/null)" ]; then
        log "restarting docker.service for $DAEMON_JSON (netplane-runc runtime, cgroupfs driver)"
        systemctl restart docker.service
      else
        log "warning: containers are running: not restarting docker.service for $DAEMON_JSON"
      fi
    fi
    wait_docker || die "docker.service did not come up; see journalctl -u docker.service"
    if docker info >/dev/null 2>&1 && ! { wrapper_registered && cgroupfs_driver; }; then
      log "warning: dockerd still lacks netplane-runc or the cgroupfs driver (restart docker.service when no container runs)"
    fi
  else
    systemctl is-active --quiet docker.service || { log "starting docker.service"; systemctl start docker.service; }
    wait_docker || die "docker.service did not come up; see journalctl -u docker.service"
    if ! cgroupfs_driver; then
      log "warning: dockerd (docker.service) uses the $(docker info --format '{{.CgroupDriver}}' 2>/dev/null) cgroup" \
          "driver: the Docker node runtime needs cgroupfs (NETPLANE_DOCKERD_CONFIGURE=1 sets it in $DAEMON_JSON)"
    fi
    if ! wrapper_registered; then
      log "warning: dockerd (docker.service) has no netplane-runc runtime: Docker pods will miss the eBPF" \
          "proxy's first connects (NETPLANE_DOCKERD_CONFIGURE=1 registers it in $DAEMON_JSON)"
    fi
  fi
elif ! docker info >/dev/null 2>&1; then
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
# ---------------------------------------------------------------- 6. kubectl (the API's real client)
NETPLANE_VENV="$VENV" bash "$ROOT/scripts/install-kubectl.sh"
log "ready: venv $VENV"
