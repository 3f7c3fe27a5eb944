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

step "netplane lab up --name demo --hosts 3"
"$NP" lab up --name demo --hosts 3

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

step "a service over the pods on h1 and h2 (netplane svc create)"
for p in web1 web2; do
  "$NP" lab exec --name demo -d "$p" -- "$VENV/bin/python" -m netplane.proxy.probe serve --name "$p" --port 8080 >/dev/null
done
"$NP" svc create web --port 80:8080 --endpoint "$(pod_ip web1)" --endpoint "$(pod_ip web2)"
"$NP" svc list
vip=$("$NP" svc show web -o json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["cluster_ip"])')
sleep 1

step "100 connections from the client pod on h3 to $vip:80 spread over both pods"
"$NP" lab exec --name demo client -- "$VENV/bin/python" -m netplane.proxy.probe probe "$vip:80" -n 100

step "how h3's proxy implements it (netplane proxy dump --host h3 web)"
"$NP" proxy dump --host h3 web

cat <<'TXT'

The demo lab stays up. Things to try:
  .venv/bin/netplane lab status                 hosts, subnets, etcd health
  .venv/bin/netplane lab exec h1 -- ip -br addr  run anything on a host (or pod: lab exec web1 -- ...)
  .venv/bin/netplane net subnets / net show --host h2 / net trace --from h1 --to <pod ip>
  .venv/bin/netplane svc list / svc show web / proxy dump --host h1 web
  .venv/bin/netplane stats --host h1 / top --host h2    per-host resource usage
  make demo-down                                 remove the lab (nothing is left behind)
TXT
