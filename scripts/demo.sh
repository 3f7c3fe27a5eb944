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

if [ -x "$ROOT/scripts/demo-cluster.sh" ]; then
  "$ROOT/scripts/demo-cluster.sh"
fi

cat <<'TXT'

The demo lab stays up. Things to try:
  .venv/bin/netplane lab status                 hosts, etcd health
  .venv/bin/netplane lab exec h1 -- ip -br addr  run anything on a host
  make demo-down                                 remove the lab (nothing is left behind)
TXT
