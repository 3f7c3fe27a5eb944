"""hostPort on a 2-host lab (namespace runtime): a pod's container port reachable at its node's
address, as the CNI portmap plugin makes it (`orchestrator.node.hostports`).

A pod on h1 maps hostPort 18080 to its 8080. It answers from the other host (h2 → h1's
underlay address), from h1 itself at its own address and on 127.0.0.1, and from another pod
on h1 (the hairpin), and a UDP hostPort answers datagrams. h2, which runs no hostPort pod, has no hostPort chain at all. h1's agent
restarts without a single failed exchange meanwhile (with one pod the new agent adopts it before
its first relist, so this does not tell whether the wait for adoption in `_sync_hostports` is
what keeps it; a node with many pods needs that wait). Once the pod is deleted, its rule goes and the port is closed again."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netplane import ipt, netns
from netplane.lab import Lab
from netplane.lab.builder import LAB_PREFIX
from orchestrator.node.hostports import CHAIN
from tests.forwarding import ECHO_UNTIL_EOF, exchange, expected
from tests.lab.test_overlay_lab import restart_agent, started_count
from tests.waiting import wait_for

NETPLANE = str(Path(sys.executable).parent / "netplane")


def np(lab: Lab, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NETPLANE, "--etcd", lab.etcd_endpoint, "--prefix", LAB_PREFIX, *args], input=input,
                          capture_output=True, text=True, timeout=60, check=False)


def exchange_from(ns: str, address: str, port: int, payload: bytes) -> bytes:
    return exchange(port, payload, address=address, netns=ns, timeout=10)


def refused_from(ns: str, address: str, port: int) -> bool:
    try:
        exchange_from(ns, address, port, b"x")
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data.upper(), peer)
"""


def udp_ask(ns: str, address: str, port: int, payload: bytes) -> bytes | None:
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(1)
        s.sendto(payload, (address, port))
        try:
            return s.recv(2048)
        except OSError:
            return None


def pod_on(name: str, node: str, command: list[str], **port: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox", "command": command,
                                     **({"ports": [port]} if port else {})}]}}


def test_host_port_reaches_the_pod_from_everywhere(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(2, agents=True, runtime="namespaces", masters=1)
    h1 = lab.topology.host("h1")
    server = pod_on("hp", "h1", [sys.executable, "-c", ECHO_UNTIL_EOF, "8080", "0.0.0.0"],
                    containerPort=8080, hostPort=18080)
    client = pod_on("peer", "h1", ["sleep", "3600"])
    udp = pod_on("dns", "h1", [sys.executable, "-c", UDP_ECHO], containerPort=5353, hostPort=15353, protocol="UDP")
    for p in (server, client, udp):
        got = np(lab, "apply", "-f", "-", input=json.dumps(p))
        assert got.returncode == 0, got.stderr

    def running(name: str) -> bool:
        got = np(lab, "get", "pod", name, "-o", "json")
        return got.returncode == 0 and (json.loads(got.stdout).get("status") or {}).get("phase") == "Running"

    wait_for(lambda: running("hp") and running("peer") and "listening" in np(lab, "logs", "hp").stdout, 60,
             "pods hp and peer Running, hp listening")
    node_ip = str(h1.underlay_ip)
    # from the other host, at h1's address (PREROUTING)
    wait_for(lambda: not refused_from(lab.netns("h2"), node_ip, 18080), 20, "hostPort 18080 mapped on h1")
    assert exchange_from(lab.netns("h2"), node_ip, 18080, b"from h2") == expected(b"from h2")
    # from h1 itself: its own address (OUTPUT) and localhost (route_localnet, masqueraded)
    assert exchange_from(lab.netns("h1"), node_ip, 18080, b"from h1") == expected(b"from h1")
    assert exchange_from(lab.netns("h1"), "127.0.0.1", 18080, b"localhost") == expected(b"localhost")
    # from a pod on the same node (hairpin through the bridge, masqueraded)
    probe = (f"import socket; s = socket.create_connection(('{node_ip}', 18080), timeout=10); "
             "s.sendall(b'hairpin'); s.shutdown(socket.SHUT_WR); print(s.recv(100).decode())")
    got = np(lab, "exec", "peer", "--", sys.executable, "-c", probe)
    assert got.returncode == 0 and got.stdout.strip() == expected(b"hairpin").decode(), got
    # UDP: a datagram to h1's hostPort 15353 reaches the pod's 5353 and the answer comes back
    wait_for(lambda: running("dns"), 60, "pod dns Running")
    wait_for(lambda: udp_ask(lab.netns("h2"), node_ip, 15353, b"query") == b"QUERY", 20, "UDP hostPort 15353 answering")
    # a node without hostPort pods has no chain of ours
    rules = ipt.run(["iptables-save", "-t", "nat"], netns=lab.netns("h2")).stdout
    assert CHAIN not in rules, rules
    assert f"{CHAIN} " in ipt.run(["iptables-save", "-t", "nat"], netns=lab.netns("h1")).stdout

    # the agent restarts (SIGTERM, then a new one adopts the pods): the mapping holds all along,
    # also while the new agent has not attached the pod's network again
    failures: list[str] = []
    stop = threading.Event()

    def keep_asking() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if exchange_from(lab.netns("h2"), node_ip, 18080, b"%d" % n) != expected(b"%d" % n):
                    failures.append(f"exchange {n}: a wrong answer")
            except OSError as e:
                failures.append(f"exchange {n}: {e}")
            time.sleep(0.05)

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    try:
        before = started_count(lab, "h1")
        restart_agent(lab, "h1", sig=signal.SIGTERM)
        wait_for(lambda: started_count(lab, "h1") == before + 1, 60, "h1's agent started again")
        time.sleep(3)  # past the new agent's first relists and syncs
    finally:
        stop.set()
        asker.join(15)
    assert failures == [], failures[:5]

    # deleted: the rule goes, and the port is closed
    assert np(lab, "delete", "pod", "hp").returncode == 0
    wait_for(lambda: refused_from(lab.netns("h2"), node_ip, 18080), 30, "hostPort 18080 unmapped")
    assert "--dport 18080" not in ipt.run(["iptables-save", "-t", "nat"], netns=lab.netns("h1")).stdout


def test_a_host_network_pod_is_the_node_on_the_network(lab_factory: Callable[..., Lab]) -> None:
    """hostNetwork (namespace runtime): the pod's IP is its node's, a server in it listens on
    the node's own addresses (reached from the other host with no rule of ours), it sees the
    node's links (the overlay's VXLAN device), and it resolves as the node does."""
    lab = lab_factory(2, agents=True, runtime="namespaces", masters=1)
    h1 = lab.topology.host("h1")
    pod = pod_on("hn", "h1", [sys.executable, "-c", ECHO_UNTIL_EOF, "18181", "0.0.0.0"], containerPort=18181)
    pod["spec"]["hostNetwork"] = True
    got = np(lab, "apply", "-f", "-", input=json.dumps(pod))
    assert got.returncode == 0, got.stderr

    def status() -> dict[str, Any] | None:
        got = np(lab, "get", "pod", "hn", "-o", "json")
        p = json.loads(got.stdout) if got.returncode == 0 else {}
        return p if (p.get("status") or {}).get("phase") == "Running" else None

    live = wait_for(status, 60, "pod hn Running")
    node_ip = str(h1.underlay_ip)
    assert live["status"]["podIP"] == live["status"]["hostIP"] == node_ip
    assert live["spec"]["containers"][0]["ports"][0]["hostPort"] == 18181  # defaulted, as kube does
    wait_for(lambda: not refused_from(lab.netns("h2"), node_ip, 18181), 20, "the pod listening on h1's address")
    assert exchange_from(lab.netns("h2"), node_ip, 18181, b"to the node") == expected(b"to the node")
    assert CHAIN not in ipt.run(["iptables-save", "-t", "nat"], netns=lab.netns("h1")).stdout  # no DNAT needed
    links = np(lab, "exec", "hn", "--", "ip", "-o", "link", "show")
    assert links.returncode == 0 and " vxlan" in ipt.run(["ip", "-d", "-o", "link", "show"], netns=lab.netns("h1")).stdout
    node_links = {line.split(":")[1].strip().split("@")[0]
                  for line in ipt.run(["ip", "-o", "link", "show"], netns=lab.netns("h1")).stdout.splitlines()}
    pod_links = {line.split(":")[1].strip().split("@")[0] for line in links.stdout.splitlines()}
    assert pod_links == node_links, (pod_links, node_links)
    resolv = np(lab, "exec", "hn", "--", "cat", "/etc/resolv.conf")
    assert "10.96.0.10" not in resolv.stdout, resolv.stdout  # dnsPolicy ClusterFirst on the host network: the node's
    assert np(lab, "delete", "pod", "hn").returncode == 0
    wait_for(lambda: refused_from(lab.netns("h2"), node_ip, 18181), 30, "the port closed with the pod")
