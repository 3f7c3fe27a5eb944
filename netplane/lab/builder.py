"""Builds a `Topology` into namespaces, links, cgroups and processes, and tears it down.

`Lab.up()` records every object in the lab's state file right after creating it; `Lab.down()`
walks that record backwards and removes exactly those objects, tolerating ones already gone.
Kernel objects are made over netlink (pyroute2), in the namespace they belong to.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns
from pyroute2.netlink.exceptions import NetlinkError

from netplane import context, netns
from netplane.cgroups import cgroup2_root
from netplane.context import state_dir
from netplane.errors import ConfigError, KernelError, LabError, NetplaneError, UserError
from netplane.lab.state import LabState, list_labs, underlays_in_use
from netplane.lab.topology import Topology
from netplane.logtail import with_tail
from netplane.store.embedded import EmbeddedEtcd, EtcdSpec, is_our_process, stop_pid

log = logging.getLogger(__name__)

# the cgroup2 root: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one
# (netplane.cgroups; NETPLANE_CGROUP2_ROOT overrides)
CGROUP2_ROOT = cgroup2_root()
ETCD_PORT = 2379
LAB_PREFIX = "/netplane"


def _ipr(ns: str | None) -> IPRoute:
    """An rtnetlink socket bound in namespace `ns` (the socket stays there)."""
    with netns.inside(ns):
        return IPRoute()


def _idx(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise KernelError(f"link {name} not found")
    return int(found[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """A built (or partly built) lab. Get one with `Lab.up(topology)` or `Lab.load(name)`."""

    def __init__(self, state: LabState) -> None:
        self.state = state

    # ------------------------------------------------------------------ accessors
    @property
    def topology(self) -> Topology:
        return self.state.topology

    @property
    def name(self) -> str:
        return self.topology.name

    @property
    def dir(self) -> Path:
        return self.state.dir

    @property
    def etcd_endpoint(self) -> str:
        """Reachable from the root namespace (through the loopback relay)."""
        if self.state.relay_port is None:
            raise LabError(f"lab {self.name} has no etcd relay")
        return f"http://127.0.0.1:{self.state.relay_port}"

    @property
    def etcd_endpoint_underlay(self) -> str:
        """Reachable from every host namespace."""
        return f"http://{self.topology.etcd_ip}:{ETCD_PORT}"

    def netns(self, host: str) -> str:
        return self.topology.netns(host)

    def cgroup(self, host: str) -> Path:
        self.topology.host(host)
        return CGROUP2_ROOT / "netplane" / self.name / host

    def host_dir(self, host: str) -> Path:
        return self.dir / host

    # ------------------------------------------------------------------ up
    @classmethod
    def up(cls, topology: Topology, *, start_timeout: float = 60.0) -> Lab:
        if topology.name in list_labs():
            raise ConfigError(f"lab {topology.name!r} already exists; run 'netplane lab down --name {topology.name}' first")
        for other in list_labs():
            try:
                o = LabState.load(other).topology
            except LabError:
                continue
            if o.underlay.overlaps(topology.underlay):
                raise ConfigError(
                    f"underlay {topology.underlay} overlaps lab {other!r} ({o.underlay}); choose another with --underlay"
                )
        for ns in [topology.switch_netns] + [topology.netns(h.name) for h in topology.hosts]:
            if netns.exists(ns):
                raise LabError(f"network namespace {ns} already exists and is not this lab's; not touching it")
        lab = cls(LabState(topology=topology))
        lab.dir.mkdir(parents=True, exist_ok=True)
        lab.state.save()
        try:
            lab._build(start_timeout)
        except BaseException as e:
            kept = lab.keep_logs(failed_logs_dir(topology.name))
            log.error("lab %s: up failed; logs kept in %s; tearing down what was built", topology.name, kept)
            try:
                lab.down()
            except Exception as e2:  # noqa: BLE001 - report the original failure
                log.error("lab %s: teardown after failure also failed: %s", topology.name, e2)
            if isinstance(e, NetplaneError) and not isinstance(e, UserError):
                raise LabError(f"{e}\n(lab {topology.name} is torn down; its logs are kept in {kept})") from e
            raise
        return lab

    def keep_logs(self, dest: Path) -> Path:
        """Copy every log of this lab (etcd, relay, each host's agent and pods) to `dest`,
        keeping their relative paths, so they outlive `down`. Returns `dest`."""
        for src in sorted(self.dir.rglob("*.log")):
            if "etcd" in src.relative_to(self.dir).parts[:-1]:
                continue  # etcd's data dir
            target = dest / src.relative_to(self.dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(src, target)
            except OSError as e:
                log.warning("could not keep %s: %s", src, e)
        return dest

    @classmethod
    def load(cls, name: str) -> Lab:
        return cls(LabState.load(name))

    def _build(self, start_timeout: float) -> None:
        t = self.topology
        st = self.state
        # the underlay switch
        self._add_netns(t.switch_netns)
        sw = _ipr(t.switch_netns)
        try:
            sw.link("set", index=_idx(sw, "lo"), state="up")
            sw.link("add", ifname="br0", kind="bridge", br_stp_state=0, br_forward_delay=0)
            br = _idx(sw, "br0")
            sw.link("set", index=br, mtu=t.mtu, state="up")
            sw.addr("add", index=br, address=str(t.etcd_ip), prefixlen=t.underlay.prefixlen)
            # The switch is also the hosts' default gateway, one with no way out: with
            # forwarding on and a "prohibit" default route it answers ICMP at once, so
            # anything sent beyond the underlay stays in the lab and fails fast.
            with netns.inside(t.switch_netns), open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1")
            # "administratively prohibited" is a hard error even for unconnected UDP, so
            # resolvers give up at once rather than after their timeouts
            sw.route("add", dst="0.0.0.0/0", type="prohibit")
            # hosts: namespace + veth (eth0 in the host, <host> in the switch) + address
            for h in t.hosts:
                ns = t.netns(h.name)
                self._add_netns(ns)
                hi = _ipr(ns)
                try:
                    hi.link("set", index=_idx(hi, "lo"), state="up")
                    hi.link(
                        "add",
                        ifname="eth0",
                        kind="veth",
                        peer={"ifname": h.name, "net_ns_fd": netns.netns_path(t.switch_netns)},
                    )
                    eth0 = _idx(hi, "eth0")
                    hi.link("set", index=eth0, mtu=t.mtu)
                    hi.addr("add", index=eth0, address=str(h.underlay_ip), prefixlen=t.underlay.prefixlen)
                    hi.link("set", index=eth0, state="up")
                    # Like a real host, a default route (to the switch, which has no way
                    # out: traffic to unknown addresses stays inside the lab). Service VIPs
                    # need a route for kube-proxy-style DNAT in nat OUTPUT to apply.
                    hi.route("add", dst="0.0.0.0/0", gateway=str(t.etcd_ip), oif=eth0)
                    port = _idx(sw, h.name)
                    sw.link("set", index=port, master=br, mtu=t.mtu, state="up")
                finally:
                    hi.close()
        except NetlinkError as e:
            raise KernelError(f"building lab {t.name}: {e}", errno=e.code) from e
        finally:
            sw.close()
        # cgroup v2 subtrees standing in for each host's root cgroup
        # The shared parent belongs to no lab: made if missing, removed when the last lab goes.
        (CGROUP2_ROOT / "netplane").mkdir(exist_ok=True)
        self._add_cgroup_dir(CGROUP2_ROOT / "netplane" / t.name)
        for h in t.hosts:
            self._add_cgroup_dir(self.cgroup(h.name))
            self.host_dir(h.name).mkdir(parents=True, exist_ok=True)
        # etcd, inside the switch namespace on the underlay
        self.start_etcd(start_timeout)
        # loopback relay so the root namespace reaches etcd
        st.relay_port = self.add_relay(f"{t.etcd_ip}:{ETCD_PORT}", "relay.log", timeout=start_timeout)
        context.save_context(lab=t.name, etcd=self.etcd_endpoint, prefix=LAB_PREFIX)
        st.record("context")

    def _add_netns(self, name: str) -> None:
        pyroute2_netns.create(name)
        self.state.record("netns", name=name)

    def _add_cgroup_dir(self, path: Path) -> None:
        if path.is_dir():
            return  # shared parent made by another lab: not ours to record
        try:
            path.mkdir()
        except FileExistsError:
            return
        except OSError as e:
            raise LabError(f"cannot create cgroup {path}: {e.strerror}") from e
        self.state.record("cgroup", path=str(path))

    def _spawn(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        ns: str | None = None,
        cgroup: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as logf:
            return subprocess.Popen(
                _in(ns, cgroup, argv),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                start_new_session=True,
            )

    def add_relay(self, target: str, log_name: str, *, timeout: float = 30.0) -> int:
        """A relay from 127.0.0.1:<port> in the root namespace to `target` (host:port) inside
        the switch namespace: the root shell's way to a lab service (etcd, an API server), as a
        user's shell on a real machine would reach it. Recorded, so `lab down` stops it; waits
        until it accepts. Its port."""
        port = _free_port()
        relay = self._spawn(
            [sys.executable, "-m", "netplane.lab.relay", "--listen", f"127.0.0.1:{port}",
             "--netns", self.topology.switch_netns, "--target", target],
            log_path=self.dir / log_name,
        )
        self.state.record("process", role="relay", pid=relay.pid, marker=f"--target {target}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if relay.poll() is not None:
                raise LabError(with_tail(f"relay to {target} exited with code {relay.returncode} at start",
                                         self.dir / log_name))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return port
            except OSError:
                time.sleep(0.02)
        raise LabError(with_tail(f"relay on 127.0.0.1:{port} to {target} did not come up within {timeout:.0f}s",
                                 self.dir / log_name))

    # ------------------------------------------------------------------ processes
    def spawn_on(
        self, host: str, argv: Sequence[str], *, role: str, marker: str, log_name: str, netns: str | None = None
    ) -> int:
        """Start a long-running process in a host's (or pod's) namespace and the host's cgroup;
        recorded for down."""
        p = self._spawn(argv, log_path=self.host_dir(host) / log_name, ns=netns or self.netns(host), cgroup=self.cgroup(host))
        self.state.record("process", role=role, host=host, pid=p.pid, marker=marker)
        return p.pid

    def start_etcd(self, timeout: float) -> int:
        """etcd in the switch namespace on the underlay address, on the lab's data dir (also to
        start it again after `stop_etcd`: same members, same data); recorded; waits healthy."""
        t = self.topology
        etcd = EmbeddedEtcd(
            EtcdSpec(
                name=f"np-{t.name}",
                data_dir=self.dir / "etcd",
                client_urls=(self.etcd_endpoint_underlay,),
                peer_url="http://127.0.0.1:2380",
                netns=t.switch_netns,
                log_path=self.dir / "etcd.log",
            )
        )
        pid = etcd.spawn(detach=True)
        self.state.record("process", role="etcd", pid=pid, marker=str(self.dir / "etcd"))
        etcd.wait_healthy(timeout)  # its error carries the end of etcd.log
        return pid

    def stop_etcd(self) -> None:
        for item in self.state.find("process", role="etcd"):
            self.stop_process(item)

    def spawn_switch(self, argv: Sequence[str], *, role: str, name: str, marker: str, log_name: str) -> int:
        """Start a long-running process in the switch namespace (where etcd runs); recorded.
        `marker` must appear in `argv` (it tells our process from a reused pid)."""
        assert any(marker in a for a in argv), "the marker must be part of the command line"
        p = self._spawn(argv, log_path=self.dir / log_name, ns=self.topology.switch_netns, cgroup=None)
        self.state.record("process", role=role, host=name, pid=p.pid, marker=marker)
        return p.pid

    def stop_process(self, item: dict[str, Any], *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if sig == signal.SIGKILL and is_our_process(item["pid"], item["marker"]):
            os.kill(item["pid"], signal.SIGKILL)
            timeout = 2.0
        stop_pid(item["pid"], item["marker"], timeout=timeout)
        self.state.forget(item)

    def exec(
        self, host: str, argv: Sequence[str], *, netns: str | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run a command on a lab host (its netns — or a pod's `netns` — and its cgroup), wait."""
        return subprocess.run(_in(netns or self.netns(host), self.cgroup(host), argv), check=False, **kwargs)

    def popen(self, host: str, argv: Sequence[str], *, netns: str | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(_in(netns or self.netns(host), self.cgroup(host), argv), **kwargs)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        from netplane.store import EtcdConfig, EtcdStore

        healthy = False
        if self.state.relay_port is not None:
            with EtcdStore(EtcdConfig(endpoints=(self.etcd_endpoint,), timeout=2.0)) as s:
                healthy = s.healthy()
        procs = self.state.find("process")
        return {
            "name": self.name,
            "etcd": {
                "endpoint": self.etcd_endpoint if self.state.relay_port else None,
                "underlay_endpoint": self.etcd_endpoint_underlay,
                "healthy": healthy,
            },
            "underlay": str(self.topology.underlay),
            "proxy": self.topology.proxy,
            "hosts": [
                {
                    "name": h.name,
                    "netns": self.netns(h.name),
                    "underlay_ip": str(h.underlay_ip),
                    "cgroup": str(self.cgroup(h.name)),
                    "processes": {
                        p["role"]: p["pid"]
                        for p in procs
                        if p.get("host") == h.name and is_our_process(p["pid"], p["marker"])
                    },
                }
                for h in self.topology.hosts
            ],
        }

    # ------------------------------------------------------------------ down
    def down(self) -> list[str]:
        """Remove everything recorded, newest first. Returns what could not be removed."""
        problems: list[str] = []
        for item in reversed(list(self.state.items)):
            try:
                self._remove(item)
                self.state.forget(item)
            except Exception as e:  # noqa: BLE001 - keep going, report all
                problems.append(f"{item['kind']} {item.get('name') or item.get('path') or item.get('pid') or ''}: {e}")
        if problems:
            raise LabError(f"lab {self.name}: could not remove: " + "; ".join(problems))
        for shared in (CGROUP2_ROOT / "netplane", Path("/sys/fs/bpf/netplane")):
            try:
                shared.rmdir()  # shared parents: only succeeds when nothing else uses them
            except OSError:
                pass
        self.state.remove_files()
        return problems

    def _hand_over_context(self) -> None:
        """The context pointed at this lab: point it at the newest other lab that finished
        `up` (wrote a context of its own), so the CLI keeps working against a running lab."""
        others = []
        for name in list_labs():
            if name == self.name:
                continue
            try:
                other = Lab.load(name)
                if other.state.find("context"):
                    others.append(((other.state.dir / "state.json").stat().st_mtime, name, other.etcd_endpoint))
            except (LabError, OSError):
                continue
        if others:
            _, name, endpoint = max(others)
            context.save_context(lab=name, etcd=endpoint, prefix=LAB_PREFIX)
            log.info("the current lab is now %s", name)

    def _remove(self, item: dict[str, Any]) -> None:
        kind = item["kind"]
        if kind == "process":
            stop_pid(item["pid"], item["marker"])
        elif kind == "context":
            if context.clear_context(self.name):
                self._hand_over_context()
        elif kind == "cgroup":
            _remove_cgroup(Path(item["path"]))
        elif kind == "netns":
            if netns.exists(item["name"]):
                pyroute2_netns.remove(item["name"])
        elif kind == "bpf":
            from netplane.ebpf.loader import cleanup

            ns_alive = netns.exists(item["netns"])
            cleanup(
                cgroup=item["cgroup"] if Path(item["cgroup"]).is_dir() else None,
                instance=item["instance"],
                iface=item["iface"] if ns_alive else None,
                netns=item["netns"] if ns_alive else None,
                overlay_iface=item.get("overlay") if ns_alive else None,
            )
        elif kind == "pod":
            from netplane.lab import pods

            pods.remove_recorded(self, item)
        elif kind == "runtime":
            from orchestrator.node.cleanup import remove_all

            remove_all(runtime=item["runtime"], runtime_id=item["id"], state_dir=Path(item["dir"]),
                       cgroup=Path(item["cgroup"]) if item.get("cgroup") else None)
        else:
            raise LabError(f"unknown state item kind {kind!r}")


def failed_logs_dir(name: str) -> Path:
    """Where the logs of a lab whose `up` failed are kept (under the state dir, one per try)."""
    return state_dir() / "failed" / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}"


def _in(ns: str | None, cgroup: Path | None, argv: Sequence[str]) -> list[str]:
    return netns.command_in(ns, list(argv), cgroup=str(cgroup) if cgroup else None)


def _remove_cgroup(path: Path) -> None:
    """Remove a cgroup the lab made. Processes still in it were started by the lab (agents,
    `lab exec`, pods): stop them first, then rmdir."""
    if not path.is_dir():
        return
    for attempt in range(50):
        pids = _cgroup_pids(path)
        if not pids:
            try:
                for d in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    d.rmdir()  # children first: pods' cgroups below a host's (all lab-made)
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM if attempt < 20 else signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.1)
    raise LabError(f"cgroup {path} still busy")


def _cgroup_pids(path: Path) -> list[int]:
    """Every pid in the cgroup and its descendants (children are lab-made too)."""
    out: list[int] = []
    for d in [path, *[p for p in path.rglob("*") if p.is_dir()]]:
        try:
            out += [int(x) for x in (d / "cgroup.procs").read_text().split()]
        except OSError:
            pass
    return out


def up_on_free_underlay(name: str, thirds: Iterable[int], *, start_timeout: float = 60.0, **topology: Any) -> Lab:
    """Lab `name` on the first 10.98.<third>.0/24 of `thirds` that no lab that is up uses. A race
    lost to another run (its `up` finds the underlay taken after all) moves on to the next one."""
    from netplane.lab.topology import default_topology

    for third in thirds:
        underlay = IPv4Network(f"10.98.{third}.0/24")
        if underlay in underlays_in_use():
            continue
        try:
            return Lab.up(default_topology(name, underlay=str(underlay), **topology), start_timeout=start_timeout)
        except ConfigError as e:
            if "overlaps" not in str(e):
                raise
    raise LabError(f"no free 10.98.N.0/24 underlay for lab {name}")
