"""The eBPF data plane (adapter): compiles the programs with bcc, attaches them, fills the maps.

- lb.bpf.c: connect4 / sendmsg4 / recvmsg4 / getpeername4 attached to one cgroup v2 directory (the host's
  subtree; never the machine's root cgroup).
- nodeport.bpf.c: tc ingress/egress on the underlay interface, when an interface and node IP
  are given; with the VXLAN device and its address (`overlay_iface`, `overlay_ip`) and the
  host's pod subnet (`local_cidr`) also tc ingress on the VXLAN device, and a NodePort reaches
  every endpoint (externalTrafficPolicy=Cluster): remote ones SNATed to the VXLAN address and a
  port from `snat_ports`. Without them, only this host's endpoints (the Local policy).
- Maps are pinned under /sys/fs/bpf/netplane/<instance>. Programs stay attached when the agent
  stops (`close`), so a restart interrupts neither established nor new connections: the new
  process reuses the pinned maps, replaces the programs atomically (exclusive cgroup attach and
  tc `replace`), and reconciles map contents without touching entries that did not change.
- `cleanup` detaches everything and unpins the maps (works from a fresh process, no compile).

Map contents are rebuilt from the maps themselves at start (the maps are the only memory that
survives a restart); the update plan is in `netplane.ebpf.plan` (pure).
"""

from __future__ import annotations

import ctypes
import logging
import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from netplane import netns as nsmod
from netplane.cgroups import CGROUP_FS, cgroup2_root
from netplane.ebpf import maps as M
from netplane.ebpf import sys as bsys
from netplane.ebpf.mapops import MapOps
from netplane.ebpf.plan import MapState, plan_sync
from netplane.errors import ConfigError, KernelError
from netplane.proxy.desired import LbKey, ProxyState

log = logging.getLogger(__name__)

SRC_DIR = Path(__file__).parent
PIN_ROOT = bsys.BPF_FS / "netplane"
# the cgroup2 root (/sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one)
ROOT_CGROUP = cgroup2_root()
# tc filter identity we own on the underlay interface: (parent, prio/handle)
TC_INGRESS = 0xFFFFFFF2
TC_EGRESS = 0xFFFFFFF3
TC_PRIO = 0x4E50  # "NP"
# Source ports for NodePort flows SNATed to remote backends: below the nodePort range
# (30000-32767) and the default ephemeral range (net.ipv4.ip_local_port_range 32768-60999,
# whose ports the host's own connections from the same address use), above the privileged
# ports. A claimed port could only shadow a reply to a local socket bound explicitly to it and
# talking to that very backend ip:port. 28,976 ports per (backend ip, backend port, protocol);
# a port returns 2 s after its TCP flow closes or 30 s after its UDP flow goes quiet.
# (61000-65535, also clear of both ranges, measured too small: 1,000 UDP flows/s to one
# backend ran out of ports.)
SNAT_PORTS = (1024, 29999)
SNAT_UDP_IDLE = 30  # a UDP flow's SNAT port is given back after this much quiet (units of 2^30 ns)


def pin_dir(instance: str) -> Path:
    if not instance or "/" in instance or instance.startswith("."):
        raise ConfigError(f"invalid BPF pin instance name {instance!r}")
    return PIN_ROOT / instance


def instance_for(cgroup: str | Path) -> str:
    """A pin directory name unique per cgroup (so per lab host): its path below the cgroup2
    root, '/' turned into '_' (/sys/fs/cgroup/unified/netplane/demo/h1 on a hybrid host and
    /sys/fs/cgroup/netplane/demo/h1 on a unified one -> netplane_demo_h1)."""
    p = Path(cgroup).resolve()
    try:
        rel = p.relative_to(ROOT_CGROUP)
    except ValueError:
        rel = p.relative_to("/sys/fs/cgroup") if str(p).startswith("/sys/fs/cgroup/") else Path(p.name)
    return "_".join(rel.parts) or "root"


def check_cgroup(path: str) -> Path:
    p = Path(path).resolve()
    if p in (ROOT_CGROUP, CGROUP_FS, CGROUP_FS / "unified"):
        raise ConfigError(f"refusing to attach BPF to the machine's root cgroup {p}")
    if not (p / "cgroup.procs").exists() or not str(p).startswith("/sys/fs/cgroup/"):
        raise ConfigError(f"{path} is not a cgroup v2 directory")
    return p


def _attach_types() -> dict[str, int]:
    from bcc import BPFAttachType

    return {
        "np_connect4": BPFAttachType.CGROUP_INET4_CONNECT,
        "np_sendmsg4": BPFAttachType.CGROUP_UDP4_SENDMSG,
        "np_recvmsg4": BPFAttachType.CGROUP_UDP4_RECVMSG,
        "np_getpeername4": BPFAttachType.CGROUP_INET4_GETPEERNAME,
    }


class EbpfBackend:
    name = "ebpf"

    def __init__(
        self,
        *,
        cgroup: str,
        instance: str,
        iface: str | None = None,
        node_ip: IPv4Address | None = None,
        local_cidr: IPv4Network | None = None,
        netns: str | None = None,
        overlay_iface: str | None = None,
        overlay_ip: IPv4Address | None = None,
        snat_ports: tuple[int, int] = SNAT_PORTS,
        snat_udp_idle: int = SNAT_UDP_IDLE,
    ) -> None:
        if not (1024 <= snat_ports[0] <= snat_ports[1] <= 65535):
            raise ConfigError(f"SNAT port range {snat_ports[0]}-{snat_ports[1]} must lie within 1024-65535")
        if not 1 <= snat_udp_idle <= 3600:
            raise ConfigError(f"UDP SNAT idle time {snat_udp_idle} must be 1-3600 (units of 2^30 ns)")
        self.snat_udp_idle = snat_udp_idle
        self.cgroup = check_cgroup(cgroup)
        self.pins = pin_dir(instance)
        self.iface = iface
        self.node_ip = node_ip
        self.local_cidr = local_cidr
        self.netns = netns
        self.overlay_iface = overlay_iface
        self.overlay_ip = overlay_ip
        self.snat_ports = snat_ports
        self._lb: Any = None
        self._np: Any = None
        self._ops: MapOps | None = None
        self.current: MapState | None = None
        self.applied: ProxyState | None = None
        self.last_writes = 0

    @property
    def snat(self) -> bool:
        """NodePort reaches endpoints on other hosts (SNAT through the overlay)."""
        return bool(self.iface and self.node_ip and self.overlay_iface and self.overlay_ip and self.local_cidr)

    @property
    def nodeport_cidr(self) -> IPv4Network | None:
        """The backends NodePort entries carry: all (None) when remote ones can be SNATed, else
        this host's pods only (None too when the pod subnet is unknown)."""
        return None if self.snat else self.local_cidr

    # ------------------------------------------------------------------ load / attach
    def _cflags(self) -> list[str]:
        node = M.ip_u32(self.node_ip) if self.node_ip else 0
        flags = [f'-DPIN_DIR="{self.pins}"', f"-DNODE_IP={node}u", f"-I{SRC_DIR}", "-Wno-unused-function"]
        if self.snat:
            assert self.overlay_ip is not None and self.local_cidr is not None
            flags += [
                f"-DSNAT_IP={M.ip_u32(self.overlay_ip)}u",
                f"-DLOCAL_NET={M.ip_u32(self.local_cidr.network_address)}u",
                f"-DLOCAL_MASK={M.ip_u32(self.local_cidr.netmask)}u",
                f"-DSNAT_PORT_MIN={self.snat_ports[0]}",
                f"-DSNAT_PORT_MAX={self.snat_ports[1]}",
                f"-DNP_SNAT_UDP_IDLE={self.snat_udp_idle}",
            ]
            if os.environ.get("NETPLANE_NP_REDIRECT_NEIGH") == "1":  # measurement switch
                flags.append("-DNP_ALWAYS_REDIRECT_NEIGH")
        return flags

    def load(self) -> None:
        from bcc import BPF

        bsys.ensure_bpffs()
        self.pins.mkdir(parents=True, exist_ok=True)
        try:
            self._lb = BPF(src_file=str(SRC_DIR / "lb.bpf.c").encode(), cflags=self._cflags())
        except Exception as e:  # bcc raises bare Exception on compile/load errors
            raise KernelError(f"loading lb.bpf.c: {e}") from e
        fd = os.open(self.cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for fn_name, atype in _attach_types().items():
                fn = self._lb.load_func(fn_name.encode(), BPF.CGROUP_SOCK_ADDR, attach_type=atype)
                try:
                    BPF.attach_func(fn, fd, atype)
                except Exception as e:
                    raise KernelError(f"attach {fn_name} to {self.cgroup}: {e}") from e
        finally:
            os.close(fd)
        if self.iface and self.node_ip:
            self._load_tc()
        self._ops = MapOps(self._lb.get_table(b"lb_services").map_fd, self._lb.get_table(b"lb_backends").map_fd)
        self.current = self._ops.read()
        self.applied = None

    def _load_tc(self) -> None:
        from bcc import BPF
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            self._np = BPF(src_file=str(SRC_DIR / "nodeport.bpf.c").encode(), cflags=self._cflags())
        except Exception as e:
            raise KernelError(f"loading nodeport.bpf.c: {e}") from e
        ing = self._np.load_func(b"np_nodeport_ingress", BPF.SCHED_CLS)
        eg = self._np.load_func(b"np_nodeport_egress", BPF.SCHED_CLS)
        attach: list[tuple[str, int, Any, str]] = [
            (str(self.iface), TC_INGRESS, ing, "np-nodeport-in"),
            (str(self.iface), TC_EGRESS, eg, "np-nodeport-out"),
        ]
        if self.snat:
            ovl = self._np.load_func(b"np_overlay_ingress", BPF.SCHED_CLS)
            attach.append((str(self.overlay_iface), TC_INGRESS, ovl, "np-nodeport-ovl"))
        with nsmod.inside(self.netns):
            ipr = IPRoute()
        dev = str(self.iface)
        try:
            for dev, parent, fn, nm in attach:
                links = ipr.link_lookup(ifname=dev)
                if not links:
                    raise ConfigError(f"interface {dev} not found")
                idx = links[0]
                try:
                    ipr.tc("add", "clsact", idx)
                except NetlinkError as e:
                    if e.code != 17:  # EEXIST
                        raise
                # replace: a restarted agent swaps the program in place (pinned maps keep the flows)
                ipr.tc("replace-filter", "bpf", idx, handle=1, fd=fn.fd, name=nm, parent=parent,
                       prio=TC_PRIO, classid=1, direct_action=True)
        except NetlinkError as e:
            raise KernelError(f"tc on {dev}: {e}", errno=e.code) from e
        finally:
            ipr.close()

    # ------------------------------------------------------------------ backend protocol
    def sync(self, state: ProxyState, *, full: bool, changed: set[LbKey] | None = None) -> None:
        if self._ops is None:
            self.load()
        assert self._ops is not None
        if full or self.current is None or self.applied is None:
            self.current = self._ops.read()
            plan = plan_sync(self.current, state, local_cidr=self.nodeport_cidr)
        else:
            ch = changed if changed is not None else state.changed(self.applied)
            plan = plan_sync(self.current, state, local_cidr=self.nodeport_cidr, changed=ch, previous=self.applied, inplace=True)
        try:
            self._ops.apply(plan)
        except BaseException:
            self.current = None  # in-memory view may be ahead of the kernel: re-read next time
            raise
        self.current = plan.result
        self.applied = state
        self.last_writes = plan.writes

    def dump(self, service: str | None = None) -> str:
        return dump_pinned(self.pins, None)

    def close(self) -> None:
        """Forget our handles; programs stay attached and maps pinned (traffic goes on)."""
        for b in (self._lb, self._np):
            if b is not None:
                b.cleanup()
        self._lb = self._np = None
        self._ops = None

    def cleanup(self) -> None:
        self.close()
        cleanup(cgroup=str(self.cgroup), instance=self.pins.name, iface=self.iface, netns=self.netns,
                overlay_iface=self.overlay_iface)


def cleanup(*, cgroup: str | None, instance: str, iface: str | None = None, netns: str | None = None,
            overlay_iface: str | None = None) -> list[str]:
    """Detach our cgroup programs and tc filters, unpin our maps. Returns what was removed."""
    done: list[str] = []
    if cgroup:
        p = check_cgroup(cgroup)
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for fn_name, atype in _attach_types().items():
                if bsys.prog_detach(fd, int(atype)):
                    done.append(f"detached {fn_name} from {p}")
        finally:
            os.close(fd)
    if iface or overlay_iface:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with nsmod.inside(netns):
            ipr = IPRoute()
        try:
            for dev, parents in ((iface, (TC_INGRESS, TC_EGRESS)), (overlay_iface, (TC_INGRESS,))):
                if not dev:
                    continue
                for idx in ipr.link_lookup(ifname=dev):
                    for parent in parents:
                        try:
                            ipr.tc("del-filter", "bpf", idx, handle=1, parent=parent, prio=TC_PRIO)
                            done.append(f"removed tc filter on {dev}")
                        except NetlinkError:
                            pass
        finally:
            ipr.close()
    d = pin_dir(instance)
    if d.exists():
        for name in M.MAP_NAMES:
            f = d / name
            if f.exists():
                f.unlink()
                done.append(f"unpinned {f}")
        try:
            d.rmdir()
        except OSError as e:
            log.warning("pin dir %s not removed: %s", d, e)
    return done


def dump_pinned(pins: Path, names: dict[tuple[IPv4Address, int, str], str] | None) -> str:
    """The service and backend maps in human-readable form (from the pinned maps), with the
    NodePort flows the tc program remembers under their nodePort."""
    if not (pins / "lb_services").exists():
        raise KernelError(f"no pinned maps at {pins} (is the eBPF proxy running?)")
    sfd = bsys.obj_get(pins / "lb_services")
    bfd = bsys.obj_get(pins / "lb_backends")
    try:
        backends: dict[int, Any] = {int(k.value): v for k, v in bsys.map_items(bfd, ctypes.c_uint32, M.BackendVal)}
        svcs: list[tuple[Any, Any]] = list(bsys.map_items(sfd, M.SvcKey, M.SvcVal))
    finally:
        os.close(sfd)
        os.close(bfd)
    flows = _nodeport_flows(pins)
    heads = sorted((k for k, _ in svcs if k.slot == 0), key=lambda k: (k.vip, M.u16_port(k.port), k.proto))
    slots = {(k.vip, k.port, k.proto, k.slot): v for k, v in svcs}
    lines = []
    for k in heads:
        head = slots[(k.vip, k.port, k.proto, 0)]
        vip = M.u32_ip(k.vip)
        port = M.u16_port(k.port)
        proto = M.PROTO_NAME.get(k.proto, str(k.proto))
        label = names.get((vip, port, proto)) if names else None
        if names is not None and label is None:
            continue
        front = f"nodePort {port}/{proto.lower()}" if int(vip) == 0 else f"{vip}:{port}/{proto.lower()}"
        aff = f" affinity=ClientIP({head.affinity_timeout}s)" if head.flags & M.LB_F_AFFINITY else ""
        lines.append(f"{front}{' (' + label + ')' if label else ''} svc_id={head.svc_id} backends={head.count}{aff}")
        if head.count == 0:
            lines.append("  (no backends: connections are refused)")
        for s in range(1, head.count + 1):
            v = slots.get((k.vip, k.port, k.proto, s))
            b = backends.get(v.backend_id) if v else None
            if b is None or v is None:
                lines.append(f"  slot {s}: (missing)")
            else:
                lines.append(f"  slot {s}: backend {v.backend_id} -> {M.u32_ip(b.ip)}:{M.u16_port(b.port)}")
        if int(vip) == 0 and flows.get((k.port, k.proto)):
            fl = flows[(k.port, k.proto)]
            lines.append(f"  {len(fl)} flow(s) remembered by the tc program (closed ones too, until the LRU drops them):")
            lines += fl[:MAX_DUMP_FLOWS] + ([f"  ... and {len(fl) - MAX_DUMP_FLOWS} more"] if len(fl) > MAX_DUMP_FLOWS else [])
    return "\n".join(lines)


MAX_DUMP_FLOWS = 32


def _nodeport_flows(pins: Path) -> dict[tuple[int, int], list[str]]:
    """The tc program's remembered NodePort flows (np_ct_fwd), per (nodePort, proto) in map
    byte order: `flow client -> backend`, with the SNAT port for a backend on another host."""
    path = pins / "np_ct_fwd"
    if not path.exists():
        return {}
    fd = bsys.obj_get(path)
    try:
        items = list(bsys.map_items(fd, M.CtKey, M.CtVal))
    finally:
        os.close(fd)
    out: dict[tuple[int, int], list[str]] = {}
    for k, v in sorted(items, key=lambda kv: (int(kv[0].addr1), M.u16_port(kv[0].port1))):
        snat = f" (SNAT source port {M.u16_port(v.snat_port)}, backend on another host)" if v.snat_port else " (local backend)"
        out.setdefault((k.port2, k.proto), []).append(
            f"  flow {M.u32_ip(k.addr1)}:{M.u16_port(k.port1)} -> {M.u32_ip(v.ip)}:{M.u16_port(v.port)}{snat}")
    return out

