#!/usr/bin/env bash
# Cross-VM smoke test of a running Vagrant cluster: pods on two VMs reach each other, and a
# Service (by cluster IP and by DNS name) reaches both, from a pod and from a VM's own shell.
#
#   cd vagrant && vagrant up && ./smoke.sh          (on the host; the workflow .github/workflows/vagrant.yml)
#   ./smoke.sh --keep                               leave the workload in place afterwards
#
# The host needs nothing but vagrant: every netplane command runs on h1 through `vagrant ssh`
# (this same script with --in-vm, from the synced /netplane), as root, against the cluster's
# etcd on the private network. It applies vagrant/smoke.yaml (an RC of 2 pods that answer each
# TCP connection with their own name, and the Service "smoke" in front of them), waits until
# both pods are ready on two different VMs, and checks with `netplane exec` + busybox nc:
#   - each pod reaches the other pod's address (overlay, VM to VM);
#   - from a pod, the Service's cluster IP answers with both pods' names over 20 connections;
#   - from a pod, smoke.default.svc.cluster.local answers (cluster DNS, 10.96.0.10);
# and then, from the second VM's root shell (no pod), the cluster IP answers (the node's proxy).
#
# --in-vm can also run against any cluster the netplane CLI reaches, e.g. a local lab:
#   netplane lab up --runtime auto && SMOKE_NETPLANE=.venv/bin/netplane vagrant/smoke.sh --in-vm
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUBNET="${NETPLANE_UNDERLAY:-192.168.56}"
ETCD="${SMOKE_ETCD:-http://$SUBNET.10:2379}"
TIMEOUT="${SMOKE_TIMEOUT:-180}"

say() { printf '[smoke] %s\n' "$*" >&2; }
fail() { printf '[smoke] FAILED: %s\n' "$*" >&2; exit 1; }

in_vm() {
  local keep=$1
  # shellcheck disable=SC2206  # a command line by design: "path [--etcd URL]"
  local np=(${SMOKE_NETPLANE:-/netplane/.venv/bin/netplane --etcd $ETCD})
  local py="${SMOKE_PYTHON:-python3}"
  local manifest="$HERE/smoke.yaml"
  local deadline=$((SECONDS + TIMEOUT))

  say "nodes"
  until [ "$("${np[@]}" get nodes -o json | "$py" -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(sum(1 for n in items if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))))')" -ge 2 ]; do
    [ "$SECONDS" -lt "$deadline" ] || { "${np[@]}" get nodes -o wide >&2 || true; fail "fewer than 2 nodes Ready within ${TIMEOUT}s"; }
    sleep 2
  done
  "${np[@]}" get nodes -o wide

  say "applying $manifest"
  "${np[@]}" apply -f "$manifest"
  local pods=""
  while :; do
    # name ip node of every ready pod of app=smoke, one per line
    pods="$("${np[@]}" get pods -l app=smoke -o json | "$py" -c '
import json, sys
for p in json.load(sys.stdin)["items"]:
    st = p.get("status", {})
    if p["metadata"].get("deletionTimestamp") or not st.get("podIP"):
        continue
    if any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])):
        print(p["metadata"]["name"], st["podIP"], p["spec"].get("nodeName", ""))')"
    [ "$(wc -l <<<"$pods")" -ge 2 ] && [ -n "$pods" ] && break
    [ "$SECONDS" -lt "$deadline" ] || { "${np[@]}" get pods -o wide >&2 || true; "${np[@]}" get events >&2 || true
                                        fail "2 ready smoke pods not there within ${TIMEOUT}s"; }
    sleep 1
  done
  "${np[@]}" get pods -l app=smoke -o wide
  local a_name a_ip a_node b_name b_ip b_node
  read -r a_name a_ip a_node < <(sed -n 1p <<<"$pods")
  read -r b_name b_ip b_node < <(sed -n 2p <<<"$pods")
  [ "$a_node" != "$b_node" ] || fail "both pods are on $a_node: nothing crosses VMs (the scheduler should spread an RC)"

  ask() {  # ask POD ADDR PORT: what the server at ADDR:PORT answers, asked from inside POD
    "${np[@]}" exec "$1" -- busybox nc -w 5 "$2" "$3" </dev/null | tr -d '\r\n'
  }
  say "pod to pod: $a_name ($a_node) -> $b_name at $b_ip ($b_node), and back"
  [ "$(ask "$a_name" "$b_ip" 8080)" = "$b_name" ] || fail "$a_name could not reach $b_name at $b_ip:8080"
  [ "$(ask "$b_name" "$a_ip" 8080)" = "$a_name" ] || fail "$b_name could not reach $a_name at $a_ip:8080"

  local vip seen=" "
  vip="$("${np[@]}" get svc smoke -o json | "$py" -c 'import json, sys; print(json.load(sys.stdin)["spec"]["clusterIP"])')"
  say "service smoke at $vip:80 from $a_name: 20 connections reach both pods"
  for _ in $(seq 1 20); do
    got="$(ask "$a_name" "$vip" 80)"
    case "$got" in
      "$a_name"|"$b_name") case "$seen" in *" $got "*) ;; *) seen="$seen$got " ;; esac ;;
      *) fail "the cluster IP $vip:80 answered ${got:-nothing} from $a_name" ;;
    esac
  done
  [ "$seen" = " $a_name $b_name " ] || [ "$seen" = " $b_name $a_name " ] \
    || fail "20 connections to $vip:80 reached only:$seen"

  say "service by name from $b_name: smoke.default.svc.cluster.local:80"
  got="$(ask "$b_name" smoke.default.svc.cluster.local 80)"
  [ "$got" = "$a_name" ] || [ "$got" = "$b_name" ] || fail "smoke.default.svc.cluster.local:80 answered ${got:-nothing}"

  if [ "$keep" != 1 ]; then
    "${np[@]}" delete -f "$manifest"
  fi
  # for the host side: the cluster IP, and a VM that holds one of the pods
  printf 'VIP %s\n' "$vip"
}

keep=0 mode=host
for arg in "$@"; do
  case "$arg" in
    --in-vm) mode=vm ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [--keep] [--in-vm]" >&2; exit 2 ;;
  esac
done
if [ "$mode" = vm ]; then
  in_vm "$keep"
  exit 0
fi

cd "$HERE"
command -v vagrant >/dev/null || fail "vagrant is not installed"
A="${SMOKE_VM:-h1}" B="${SMOKE_OTHER_VM:-h2}"
say "running the checks on $A (vagrant ssh)"
args="--keep"  # the workload goes after the host-side check below
out="$(vagrant ssh "$A" -c "sudo NETPLANE_UNDERLAY=$SUBNET SMOKE_TIMEOUT=$TIMEOUT bash /netplane/vagrant/smoke.sh --in-vm $args" -- -q)" \
  || { printf '%s\n' "$out"; fail "the checks on $A failed"; }
printf '%s\n' "$out"
vip="$(sed -n 's/^VIP //p' <<<"$out" | tail -n 1)"
[ -n "$vip" ] || fail "no cluster IP reported by $A"
say "service from $B's own shell (no pod): $vip:80"
got="$(vagrant ssh "$B" -c "busybox nc -w 5 $vip 80 </dev/null" -- -q | tr -d '\r\n')"
case "$got" in
  smoke-*) say "$B reached $got through $vip" ;;
  *) fail "$B: $vip:80 answered ${got:-nothing}" ;;
esac
if [ "$keep" != 1 ]; then
  vagrant ssh "$A" -c "sudo /netplane/.venv/bin/netplane --etcd $ETCD delete -f /netplane/vagrant/smoke.yaml" -- -q
fi
say "passed"
