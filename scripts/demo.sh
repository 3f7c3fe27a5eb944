#!/usr/bin/env bash
# `make demo`: bring up a 3-host lab named "demo" and show it working.
# Re-running rebuilds the demo lab from scratch. `make demo-down` removes it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NETPLANE_VENV:-$ROOT/.venv}"
NP="$VENV/bin/netplane"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if "$NP" lab list -o json | grep -q '"name": "demo"'; then
  step "removing the previous demo lab"
  "$NP" lab down --name demo
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

step "netplane lab up --name demo --hosts 3 (a master beside etcd, a node runtime on every host)"
"$NP" lab up --name demo --hosts 3
# the demo lab's etcd, even if another lab becomes the current context meanwhile
NETPLANE_ETCD=$("$NP" lab status --name demo -o json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["etcd"]["endpoint"])')
export NETPLANE_ETCD

step "every host reaches every other over the underlay"
for h in h1 h2 h3; do
  for ip in $("$NP" lab status --name demo -o json | "$VENV/bin/python" -c 'import json,sys; print(" ".join(h["underlay_ip"] for h in json.load(sys.stdin)["hosts"]))'); do
    if "$NP" lab exec --name demo "$h" -- ping -c1 -W2 -q "$ip" >/dev/null; then
      echo "  $h -> $ip ok"
    else
      echo "  $h -> $ip FAILED"; exit 1
    fi
  done
done

step "subnet leases in etcd (netplane net subnets)"
"$NP" net subnets

step "a stand-in pod on every host (netplane lab pod add HOST NAME)"
"$NP" lab pod add --name demo h1 web1
"$NP" lab pod add --name demo h2 web2
"$NP" lab pod add --name demo h3 client
pod_ip() { "$NP" lab pod list --name demo -o json | "$VENV/bin/python" -c "import json,sys; print([p['ip'] for p in json.load(sys.stdin) if p['name']=='$1'][0])"; }

step "pods on different hosts reach each other over the VXLAN overlay"
for src in web1 web2 client; do
  for dst in web1 web2 client; do
    [ "$src" = "$dst" ] && continue
    ip=$(pod_ip "$dst")
    if "$NP" lab exec --name demo "$src" -- ping -c1 -W2 -q "$ip" >/dev/null; then
      echo "  $src -> $dst ($ip) ok"
    else
      echo "  $src -> $dst ($ip) FAILED"; exit 1
    fi
  done
done

step "host h1's overlay state in the kernel vs etcd (netplane net show --host h1)"
"$NP" net show --host h1

step "one probe traced across the underlay (netplane net trace)"
"$NP" net trace --from client --to "$(pod_ip web1)"

step "the source article's story: an RC of 3 web pods across the hosts (netplane apply)"
cat > "$TMP/web.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: ReplicationController
metadata: {name: web}
spec:
  replicas: 3
  selector: {app: web}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: netplane/busybox:latest
        # answers every connection with its pod's name (the hostname)
        command: [busybox, nc, -ll, -p, "8080", -e, busybox, hostname]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
YAML
cat "$TMP/web.yaml"
"$NP" apply -f "$TMP/web.yaml"
ready() { "$NP" get pods -l app=web -o json | "$VENV/bin/python" -c '
import json,sys
items=json.load(sys.stdin)["items"]
print(sum(1 for p in items if not p["metadata"].get("deletionTimestamp") and any(c["type"]=="Ready" and c["status"]=="True" for c in p.get("status",{}).get("conditions",[]))))'; }
wait_ready() { for _ in $(seq 1 600); do [ "$(ready)" = "$1" ] && return 0; sleep 0.1; done; echo "pods not ready"; "$NP" get pods -o wide; exit 1; }
wait_ready 3
"$NP" get pods -o wide
"$NP" get rc,svc,endpoints

vip=$("$NP" get svc web -o json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["spec"]["clusterIP"])')
step "the Service's cluster IP $vip spreads 60 requests from the client pod on h3 over the pods"
sleep 1
"$NP" lab exec --name demo client -- "$VENV/bin/python" -m netplane.proxy.probe probe "$vip:80" -n 60

step "one pod deleted: the replication controller replaces it"
victim=$("$NP" get pods -l app=web -o json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["metadata"]["name"])')
"$NP" delete pod "$victim"
wait_ready 3
"$NP" get pods -o wide

step "netplane scale rc web --replicas 5"
"$NP" scale rc web --replicas 5
wait_ready 5
"$NP" get pods -o wide

step "the master and etcd stopped: the cluster IP keeps answering"
"$NP" lab control-plane stop --name demo
for i in 1 2 3 4 5; do
  "$NP" lab exec --name demo client -- "$VENV/bin/python" -m netplane.proxy.probe probe "$vip:80" -n 20 | tr '\n' ' '; echo
  sleep 1
done

step "both started again: everything converges (scale back to 3 goes through)"
"$NP" lab control-plane start --name demo
"$NP" scale rc web --replicas 3
wait_ready 3
"$NP" get pods -o wide

step "how h3's proxy implements it (netplane proxy dump --host h3 web)"
"$NP" proxy dump --host h3 web

KUBECTL=/usr/local/lib/netplane/kubectl  # the real kubectl v1.33 (scripts/install-kubectl.sh)
KUBECONFIG=$("$NP" lab status --name demo -o json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["api"]["kubeconfig"])')
export KUBECONFIG
step "the same cluster through its Kubernetes API: the real kubectl (KUBECONFIG=$KUBECONFIG)"
# the restarted master's API server answers within a few seconds
for _ in $(seq 1 100); do "$KUBECTL" get nodes >/dev/null 2>&1 && break; sleep 0.2; done
"$KUBECTL" get nodes -o wide
"$KUBECTL" get rc,pods,svc,endpoints -o wide
echo "+ kubectl describe node h1 (its Lease: the agent's heartbeat)"
"$KUBECTL" describe node h1 | sed -n '/^Lease:/,/^Conditions:/p' | head -4
echo "+ kubectl top nodes (each node agent's stats collector)"
for _ in $(seq 1 50); do "$KUBECTL" top nodes 2>/dev/null && break; sleep 0.2; done
echo "+ kubectl get --raw /metrics (the API server's request counters, a few)"
"$KUBECTL" get --raw /metrics | grep '^apiserver_request_total' | grep 'resource="pods"' | head -4

cat <<'TXT'

The demo lab stays up. Things to try:
  .venv/bin/netplane lab status                 hosts, subnets, etcd health
  .venv/bin/netplane lab exec h1 -- ip -br addr  run anything on a host (or pod: lab exec web1 -- ...)
  .venv/bin/netplane net subnets / net show --host h2 / net trace --from h1 --to <pod ip>
  .venv/bin/netplane get pods -o wide / describe rc web / get events
  .venv/bin/netplane logs <pod> / exec <pod> -- busybox env
  .venv/bin/netplane svc list / svc show web / proxy dump --host h1 web
  .venv/bin/netplane stats --host h1 / top --host h2    per-host resource usage
  KUBECONFIG=/run/netplane/labs/demo/kubeconfig /usr/local/lib/netplane/kubectl get pods -o wide
  make demo-down                                 remove the lab (nothing is left behind)
TXT
