#!/usr/bin/env bash
# Provision one netplane VM (run by the Vagrantfile as root, again by `vagrant provision`):
#   1. the project's own scripts/install.sh, allowed to configure this VM's systemd-managed
#      dockerd (netplane-runc runtime, cgroupfs driver: NETPLANE_DOCKERD_CONFIGURE=1);
#   2. `netplane node install`: the systemd units; on the control-plane VM (h1) etcd first, the
#      overlay's network config written once, then the master; the agent on every VM.
# Idempotent: a second run rewrites nothing that is unchanged and restarts only what changed
# (an agent restart keeps its pods: KillMode=process).
#
# Environment (from the Vagrantfile): NODE, NODE_IP, ETCD_IP, CONTROL_PLANE (1 on h1),
# RUNTIME (auto|docker|namespaces), PROXY (iptables|nftables|ebpf).
set -euo pipefail
: "${NODE:?}" "${NODE_IP:?}" "${ETCD_IP:?}" "${CONTROL_PLANE:=0}" "${RUNTIME:=auto}" "${PROXY:=iptables}"
log() { printf '[provision %s] %s\n' "$NODE" "$*" >&2; }

cd /netplane
NETPLANE_DOCKERD_CONFIGURE=1 bash scripts/install.sh
NP=/netplane/.venv/bin/netplane
ETCD="http://${ETCD_IP}:2379"

# The interface that holds this VM's private address: eth1 with both providers, but found
# rather than assumed, so the provider's eth0 (VirtualBox NAT, libvirt's 192.168.121.x
# management network) is never the cluster's.
IFACE="$(ip -o -4 addr show | awk -v ip="$NODE_IP" '{ split($4, a, "/"); if (a[1] == ip) { print $2; exit } }')"
[ -n "$IFACE" ] || { ip -br addr >&2; log "no interface holds $NODE_IP"; exit 1; }
log "cluster interface $IFACE ($NODE_IP), etcd $ETCD"

args=(node install --etcd "$ETCD" --iface "$IFACE" --node "$NODE" --node-ip "$NODE_IP"
      --runtime "$RUNTIME" --proxy-mode "$PROXY")
if [ "$CONTROL_PLANE" = 1 ]; then
  args+=(--etcd-server --master)
  "$NP" "${args[@]}"
  systemctl daemon-reload
  systemctl enable --now netplane-etcd.service
  if ! "$NP" --etcd "$ETCD" net config get >/dev/null 2>&1; then
    log "writing the overlay's network config (10.244.0.0/16, VXLAN)"
    "$NP" --etcd "$ETCD" net config set --network 10.244.0.0/16
  fi
fi
"$NP" "${args[@]}" --start
if [ "$CONTROL_PLANE" = 1 ] && [ ! -s /root/.kube/config ]; then
  # root's kubeconfig on h1, with a client certificate of the cluster CA (kubeadm's admin.conf):
  # what `netplane logs/exec` show node agents and what kubectl uses here. The CA appears at the
  # master's first start.
  ca_key=/var/lib/netplane/apiserver/ca.key
  for _ in $(seq 60); do [ -s "$ca_key" ] && break; sleep 1; done
  [ -s "$ca_key" ] || { journalctl -u netplane-master.service -n 20 --no-pager >&2 || true; log "no cluster CA after 60 s"; exit 1; }
  "$NP" kubeconfig --server "https://${NODE_IP}:6443" -o /root/.kube/config
fi
systemctl --no-pager --lines=0 status 'netplane-*.service' || true
