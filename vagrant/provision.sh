#!/usr/bin/env bash
# Provision one netplane VM: the project's own install script, then etcd (on the first VM)
# and a netplane agent as systemd units. Idempotent.
set -euo pipefail
: "${NODE:?}" "${NODE_IP:?}" "${ETCD_IP:?}" "${RUN_ETCD:=0}"
cd /netplane
bash scripts/install.sh

if [ "$RUN_ETCD" = 1 ]; then
  cat >/etc/systemd/system/netplane-etcd.service <<UNIT
[Unit]
Description=etcd for netplane
After=network-online.target
[Service]
ExecStart=/usr/bin/etcd --name ${NODE} --data-dir /var/lib/netplane/etcd \
  --listen-client-urls http://${ETCD_IP}:2379,http://127.0.0.1:2379 \
  --advertise-client-urls http://${ETCD_IP}:2379 \
  --listen-peer-urls http://${ETCD_IP}:2380 --initial-advertise-peer-urls http://${ETCD_IP}:2380 \
  --initial-cluster ${NODE}=http://${ETCD_IP}:2380 --initial-cluster-state new
Restart=always
[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now netplane-etcd
  /netplane/.venv/bin/netplane --etcd "http://${ETCD_IP}:2379" net config get >/dev/null 2>&1 \
    || /netplane/.venv/bin/netplane --etcd "http://${ETCD_IP}:2379" net config set --network 10.244.0.0/16
fi

cat >/etc/systemd/system/netplane-agent.service <<UNIT
[Unit]
Description=netplane agent
After=network-online.target
[Service]
ExecStart=/netplane/.venv/bin/netplane --etcd http://${ETCD_IP}:2379 agent --node ${NODE} \
  --iface eth1 --public-ip ${NODE_IP} --subnet-file /run/netplane/subnet.env \
  --health-listen ${NODE_IP}:9100
Restart=always
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now netplane-agent
