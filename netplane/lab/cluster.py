"""Runs netplane itself on a built lab: network config in etcd, one agent per host.

Kept apart from the builder so the bare lab (namespaces, underlay, etcd) stays usable and
testable on its own (`lab up --no-agents`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from netplane.errors import LabError, NetplaneError
from netplane.lab.builder import LAB_PREFIX, Lab
from netplane.logtail import with_tail
from netplane.store import EtcdConfig, EtcdStore, Keys, codec

log = logging.getLogger(__name__)


def agent_argv(lab: Lab, host: str) -> list[str]:
    t = lab.topology
    argv = [
        sys.executable, "-m", "netplane",
        "--log-level", "info",
        "--etcd", lab.etcd_endpoint_underlay,
        "--prefix", LAB_PREFIX,
        "agent",
        "--node", host,
        "--iface", "eth0",
        "--subnet-file", str(lab.host_dir(host) / "subnet.env"),
        "--health-listen", f"{t.host(host).underlay_ip}:9100",
        # the host's own cgroup subtree stands in for its root cgroup (stats' `/` is the
        # machine's, the same on every lab host); the node runtime hands its pods over itself
        "--stats-listen", f"{t.host(host).underlay_ip}:4194",
        "--stats-source", "cgroup",
        "--stats-cgroup", f"/netplane/{t.name}/{host}",
    ]
    if t.proxy != "none":
        argv += ["--proxy-mode", t.proxy]
    if t.proxy != "none" or t.runtime != "none":
        # the eBPF proxy attaches to this cgroup v2 subtree; pods' processes go below it
        argv += ["--proxy-cgroup", str(lab.cgroup(host))]
    if t.runtime != "none":
        argv += ["--runtime", resolved_runtime(lab), "--runtime-dir", str(runtime_dir(lab, host)),
                 "--runtime-id", runtime_id(lab, host)]
    return argv + list(t.agent_args)


def runtime_id(lab: Lab, host: str) -> str:
    """Marks a lab host's containers apart from every other lab's (one dockerd serves all)."""
    return f"np-{lab.name}-{host}"


def runtime_dir(lab: Lab, host: str) -> Path:
    return lab.host_dir(host) / "node"


def resolved_runtime(lab: Lab) -> str:
    """`auto`: Docker where dockerd answers, plain namespaces otherwise (decided once per lab,
    so every host runs the same and `lab down` knows what to remove)."""
    rt = lab.topology.runtime
    if rt != "auto":
        return rt
    found = lab.state.find("runtime")
    if found:
        return str(found[0]["runtime"])
    from netplane.agent.wiring import docker_available

    return "docker" if docker_available() else "namespaces"


MASTER_DNS_PORT = 10053  # master i (from 1) serves DNS on the etcd address, port 10052 + i
API_PORT = 6443  # the first master's API server, on every address of the switch namespace


def master_argv(lab: Lab, index: int) -> list[str]:
    t = lab.topology
    api = ["--apiserver-listen", f"0.0.0.0:{API_PORT}", "--apiserver-state-dir", str(api_state_dir(lab))] \
        if t.api and index == 1 else []
    if (api or "--apiserver-listen" in t.master_args) and "--apiserver-advertise-address" not in t.master_args:
        # what default/kubernetes' endpoints say: pods reach the switch's address through the
        # hosts' default route (the API server listens on every address of the switch namespace)
        api += ["--apiserver-advertise-address", str(t.etcd_ip)]
    return [
        sys.executable, "-m", "netplane", "--log-level", "info",
        "--etcd", lab.etcd_endpoint_underlay, "--prefix", LAB_PREFIX,
        "master", "--id", master_id(lab, index),
        "--dns-listen", f"{t.etcd_ip}:{MASTER_DNS_PORT + index - 1}",
        *api, *t.master_args,
    ]


def api_state_dir(lab: Lab) -> Path:
    """The lab API server's state: its CA, serving certificate, token file, apiserver.json."""
    return lab.dir / "apiserver"


def kubeconfig_path(lab: Lab) -> Path:
    return lab.dir / "kubeconfig"


def open_api(lab: Lab, *, wait: float = 60.0) -> dict[str, str]:
    """The first master's API server reachable from the root namespace: waits until it is up,
    relays 127.0.0.1:<port> to it (the serving certificate names 127.0.0.1) and writes an
    admin kubeconfig (a client certificate the lab's API CA signs) for kubectl and the Python
    client. Recorded in `<lab>/api.json`; the relay is a recorded process, `lab down` stops it."""
    from orchestrator.apiserver import kubeconfig as kc

    state = api_state_dir(lab)
    deadline = time.monotonic() + wait
    while not (state / "apiserver.json").exists():
        masters = [p for p in lab.state.find("process", role="master") if p.get("host") == "m1"]
        if not masters or not _alive(masters[0]) or time.monotonic() > deadline:
            raise LabError(with_tail("the lab's API server (master m1) did not start", lab.dir / "master-m1.log"))
        time.sleep(0.1)
    port = lab.add_relay(f"{lab.topology.etcd_ip}:{API_PORT}", "api-relay.log")
    url = f"https://127.0.0.1:{port}"
    path = kubeconfig_path(lab)
    kc.write(path, kc.make(state, server=url))
    info = {"url": url, "kubeconfig": str(path)}
    (lab.dir / "api.json").write_text(json.dumps(info) + "\n")
    return info


def api_info(lab: Lab) -> dict[str, str] | None:
    try:
        v = json.loads((lab.dir / "api.json").read_text())
    except (OSError, ValueError):
        return None
    return v if isinstance(v, dict) else None


def master_id(lab: Lab, index: int) -> str:
    return f"np-{lab.name}-m{index}"


def start_master(lab: Lab, index: int) -> int:
    """A master in the switch namespace (beside etcd: the lab's "master machine")."""
    return lab.spawn_switch(master_argv(lab, index), role="master", name=f"m{index}",
                            marker=master_id(lab, index), log_name=f"master-m{index}.log")


def store_for(lab: Lab) -> EtcdStore:
    return EtcdStore(EtcdConfig(endpoints=(lab.etcd_endpoint,), timeout=3.0))


def ensure_network_config(lab: Lab, store: EtcdStore) -> str:
    """Write the lab's overlay config unless one is there already (create-only); returns the
    VXLAN device name the agents will use (from the config in etcd)."""
    from netplane.subnet.config import load_config, parse_config

    cfg = parse_config({"Network": str(lab.topology.overlay_network), "Backend": {"Type": "vxlan"}},
                       underlay=[lab.topology.underlay])
    key = Keys(LAB_PREFIX).network_config
    store.create(key, codec.dumps(cfg.to_json()))
    kv = store.get(key)
    return load_config(kv.value).device_name if kv is not None else cfg.device_name


def publish_lab_ca(lab: Lab, store: EtcdStore) -> None:
    """The lab's cluster CA (`pki_dir`), made if missing, published as a client CA node agents
    accept (as an API server publishes its own): before the agents start, so they know it at once."""
    from netplane.lab.state import pki_dir
    from orchestrator.apiserver import certs
    from orchestrator.node.nodetls import publish_client_cas

    ca = certs.ensure_ca(pki_dir(lab.name))
    publish_client_cas(store, Keys(LAB_PREFIX), ca.cert)


def start_agent(lab: Lab, host: str) -> int:
    return lab.spawn_on(host, agent_argv(lab, host), role="agent", marker=str(lab.host_dir(host)), log_name="agent.log")


def start(lab: Lab, *, wait: float = 60.0) -> None:
    """Network config, then an agent on every host; waits until every host holds a subnet."""
    with store_for(lab) as s:
        device = ensure_network_config(lab, s)
        if lab.topology.runtime != "none":
            publish_lab_ca(lab, s)
    for h in lab.topology.hosts:
        if lab.topology.proxy == "ebpf":
            # recorded before the agent starts, so `lab down` (newest first) stops the agent,
            # then detaches and unpins what its eBPF proxy pinned (pins outlive namespaces)
            from netplane.ebpf.loader import instance_for

            lab.state.record("bpf", host=h.name, cgroup=str(lab.cgroup(h.name)),
                             instance=instance_for(lab.cgroup(h.name)), netns=lab.netns(h.name), iface="eth0",
                             overlay=device)
        if lab.topology.runtime != "none":
            # recorded before the agent, so `lab down` (newest first) stops the agent, then
            # removes every container, sandbox and pod cgroup its runtime made, also after a
            # SIGKILL of the agent mid-way
            lab.state.record("runtime", host=h.name, runtime=resolved_runtime(lab), id=runtime_id(lab, h.name),
                             dir=str(runtime_dir(lab, h.name)), cgroup=str(lab.cgroup(h.name)))
        start_agent(lab, h.name)
    for i in range(1, lab.topology.masters + 1):
        start_master(lab, i)
    wait_subnets(lab, timeout=wait)
    if lab.topology.api:
        open_api(lab, wait=wait)


@contextmanager
def started(lab: Lab, *, keep_logs_in: Path, wait: float = 60.0) -> Iterator[Lab]:
    """netplane started on `lab` (`start`) for the body; the lab torn down afterwards, and when
    the body (or the start) fails, its logs copied to `keep_logs_in` first. For scripts that own
    a lab, such as the benches."""
    try:
        start(lab, wait=wait)
        yield lab
    except BaseException:
        kept = lab.keep_logs(keep_logs_in) if lab.dir.is_dir() else None
        if kept:
            print(f"lab logs kept in {kept}", file=sys.stderr)
        raise
    finally:
        lab.down()


def wait_subnets(lab: Lab, *, timeout: float) -> dict[str, str]:
    """Until every host holds a lease and its agent has set the host up (subnet file). An agent
    that exits meanwhile, or a host still not ready at the deadline, is an error carrying the
    end of that agent's log."""
    deadline = time.monotonic() + timeout
    subnets: dict[str, str] = {}
    while time.monotonic() < deadline:
        subnets = host_subnets(lab)
        # the agent writes its subnet file last, once bridge, forwarding, iptables and its
        # components (proxy, stats) are up
        ready = all((lab.host_dir(h) / "subnet.env").exists() for h in subnets)
        if len(subnets) == len(lab.topology.hosts) and ready:
            return subnets
        for p in lab.state.find("process", role="agent"):
            if not _alive(p):
                raise LabError(with_tail(f"agent on {p['host']} exited{_exit_status(p['pid'])} during start-up",
                                         lab.host_dir(p["host"]) / "agent.log"))
        time.sleep(0.1)
    waiting = sorted(h.name for h in lab.topology.hosts
                     if h.name not in subnets or not (lab.host_dir(h.name) / "subnet.env").exists())
    raise LabError(f"hosts not ready after {timeout:.0f}s: {', '.join(waiting)}\n"
                   + "\n".join(with_tail(f"{h} is still starting", lab.host_dir(h) / "agent.log", lines=10) for h in waiting))


def _exit_status(pid: int) -> str:
    """' with code N' / ' on signal S' when the dead agent is our unreaped child."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return ""
    if got != pid:
        return ""
    if os.WIFSIGNALED(status):
        return f" on signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f" with code {os.WEXITSTATUS(status)}"


def _alive(item: dict[str, Any]) -> bool:
    from netplane.store.embedded import is_our_process

    return is_our_process(item["pid"], item["marker"])


def agent_running(lab: Lab, host: str) -> bool:
    """The host's recorded agent process is alive (not merely recorded)."""
    return any(_alive(p) for p in lab.state.find("process", role="agent", host=host))


def host_subnets(lab: Lab) -> dict[str, str]:
    """host name -> leased subnet, matched by the lease's PublicIP."""
    from netplane.subnet.lease import list_leases

    by_ip = {str(h.underlay_ip): h.name for h in lab.topology.hosts}
    with store_for(lab) as s:
        try:
            leases = list_leases(s, Keys(LAB_PREFIX), with_ttl=False)
        except NetplaneError as e:
            log.warning("cannot read leases: %s", e)
            return {}
    return {by_ip[str(ls.public_ip)]: str(ls.subnet) for ls in leases if str(ls.public_ip) in by_ip}


def enrich_status(lab: Lab, st: dict[str, Any]) -> dict[str, Any]:
    """Add each host's subnet (from etcd) and the lab's pods to `lab.status()`."""
    from netplane.lab import pods

    subnets = host_subnets(lab) if st["etcd"]["healthy"] else {}
    for h in st["hosts"]:
        h["subnet"] = subnets.get(h["name"])
    st["pods"] = pods.listing(lab)
    st["api"] = api_info(lab)
    return st


def stop_control_plane(lab: Lab) -> list[str]:
    """Stop every master, then etcd (the source article's test: the pods keep serving)."""
    stopped = []
    for item in lab.state.find("process", role="master"):
        lab.stop_process(item)
        stopped.append(f"master {item['host']}")
    if lab.state.find("process", role="etcd"):
        lab.stop_etcd()
        stopped.append("etcd")
    return stopped


def start_control_plane(lab: Lab, *, timeout: float = 60.0) -> list[str]:
    """etcd again (same data), then the masters the topology asks for that are not running."""
    started = []
    if not any(_alive(p) for p in lab.state.find("process", role="etcd")):
        for item in lab.state.find("process", role="etcd"):
            lab.state.forget(item)
        lab.start_etcd(timeout)
        started.append("etcd")
    running = {p["host"] for p in lab.state.find("process", role="master") if _alive(p)}
    for i in range(1, lab.topology.masters + 1):
        if f"m{i}" not in running:
            start_master(lab, i)
            started.append(f"master m{i}")
    return started
