"""`netplane net config|subnets` as a user runs them, against a real etcd."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

from netplane.store import EtcdStore, Keys, codec
from netplane.store.embedded import EmbeddedEtcd
from netplane.subnet.config import parse_config
from netplane.subnet.lease import LeaseAttrs
from netplane.subnet.manager import LeaseManager


def run(etcd: EmbeddedEtcd, keys: Keys, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netplane", "--etcd", etcd.endpoint, "--prefix", keys.prefix, *args],
        capture_output=True, text=True, input=stdin, timeout=60, check=False,
    )


def test_config_set_get_and_subnets(etcd_server: EmbeddedEtcd, store: EtcdStore, keys: Keys, tmp_path: Path) -> None:
    r = run(etcd_server, keys, "net", "config", "set", "--network", "10.50.0.0/16", "--subnet-len", "26", "--vni", "9", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Backend"]["VNI"] == 9
    kv = store.get(keys.network_config)
    assert kv is not None and json.loads(kv.value)["SubnetLen"] == 26
    r = run(etcd_server, keys, "net", "config", "get", "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["Network"] == "10.50.0.0/16"
    f = tmp_path / "net.json"
    f.write_text(json.dumps({"Network": "10.60.0.0/16", "Backend": {"Type": "vxlan", "Port": 8472}}))
    r = run(etcd_server, keys, "net", "config", "set", "-f", str(f))
    assert r.returncode == 0, r.stderr
    assert "Backend.Port" in r.stdout and "8472" in r.stdout
    cfg = parse_config(codec.loads(store.get(keys.network_config).value))  # type: ignore[union-attr]
    LeaseManager(store, keys, ttl=120).acquire(cfg, LeaseAttrs(public_ip=IPv4Address("10.9.9.9"), vtep_mac="02:00:00:00:00:01", vni=1, node="n1"))
    r = run(etcd_server, keys, "net", "subnets", "-o", "json")
    rows = json.loads(r.stdout)
    assert len(rows) == 1 and rows[0]["public_ip"] == "10.9.9.9" and rows[0]["node"] == "n1" and 0 < rows[0]["ttl_left"] <= 120
    r = run(etcd_server, keys, "net", "subnets")
    assert r.stdout.splitlines()[0].split() == ["SUBNET", "PUBLIC_IP", "VTEP_MAC", "NODE", "TTL_LEFT"]


def test_bad_input_is_one_line_and_exit_2(etcd_server: EmbeddedEtcd, keys: Keys, tmp_path: Path) -> None:
    cases = [
        (["net", "config", "set", "--network", "10.0.0.0/33"], "not a valid IPv4 CIDR"),
        (["net", "config", "set", "--network", "10.0.0.0/16", "--subnet-min", "10.0.1.3"], "subnet boundary"),
        (["net", "config", "set", "--network", "10.0.0.0/16", "--underlay", "10.0.5.0/24"], "overlaps the underlay"),
        (["net", "config", "set"], "give -f FILE or --network"),
        (["net", "config", "set", "-f", str(tmp_path / "missing.json")], "cannot read"),
        (["net", "config", "get"], "no network config"),
    ]
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    cases.append((["net", "config", "set", "-f", str(bad)], "not valid JSON"))
    for args, message in cases:
        r = run(etcd_server, keys, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr
