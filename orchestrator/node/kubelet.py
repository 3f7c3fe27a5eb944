"""The node runtime: our kubelet, a component of every host's agent.

    etcd (pods bound here, services) -> informers -> queue of pod keys -> sync_pod(key)
    runtime relist every second (PLEG)  ->  pods whose containers changed  -> queue
    probes (one scheduler thread)       ->  pods whose readiness changed   -> queue
    housekeeping every 10 s             ->  pods past an emptyDir sizeLimit -> queue (evicted)

`sync_pod` reads the pod from the cache and the runtime's containers of it, decides with the
pure rules of `orchestrator.node.lifecycle` and acts: it makes the sandbox, attaches it to the
host's pod bridge (`PodNetwork`, address from the host's subnet), starts, restarts (crash-loop
back-off) or stops containers (also one whose image the pod's spec changed, as kubelet's
"definition changed"), and writes the pod's status only when it changed. A pod being
deleted is stopped (SIGTERM, its grace period, SIGKILL), its network released, and then its
object removed from etcd: the node confirms the pod is gone, as kubelet does. A pod whose object
is gone (or moved off this node) is torn down the same way.

The Node object is registered (InternalIP = the underlay address, podCIDR = the leased subnet,
capacity and allocatable cpu, memory and pods) and heartbeats through an etcd lease
(`orchestrator.heartbeat`). A restarted agent adopts what runs: sandboxes and containers are
found by the runtime's labels or state, addresses by the IPAM's records; nothing restarts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netplane.agent.component import AgentContext, HostOverlay
from netplane.errors import NetplaneError
from orchestrator import heartbeat
from orchestrator.controllers.base import KeyLoop, Writer
from orchestrator.controllers.events import Recorder
from orchestrator.informer import Informer
from orchestrator.node import envvars, lifecycle, podtokens
from orchestrator.node.configrefs import ConfigRefs
from orchestrator.node.hostports import HostPorts, mappings_of
from orchestrator.node.ipam import HostLocalIPAM
from orchestrator.node.lifecycle import (
    Backoff,
    BackoffPolicy,
    ObservedContainer,
    Running,
    Terminated,
    Waiting,
)
from orchestrator.node.podnet import PodNetwork
from orchestrator.node.podtokens import PodTokens
from orchestrator.node.probes import ProbeManager, Transition
from orchestrator.node.runtime import (
    ContainerConfig,
    ContainerInfo,
    Mount,
    PodRef,
    Runtime,
    RuntimeError_,
    SandboxConfig,
    SandboxInfo,
)
from orchestrator.node.volumes import VolumeError, Volumes
from orchestrator.objects import meta
from orchestrator.objects import pod as pods
from orchestrator.objects.meta import CONFIG_MAP, NODE, POD, SECRET, SERVICE, SERVICE_ACCOUNT
from orchestrator.objects.quantity import cpu_millis, memory_bytes
from orchestrator.storage import Conflict, ObjectStore

if TYPE_CHECKING:
    from orchestrator.node.server import NodeAPIServer
    from stats.collector import Collector

log = logging.getLogger(__name__)

Obj = dict[str, Any]
VERSION = "netplane-node/0.1"
HOSTPORTS_GRACE = 30.0  # seconds a restarted agent waits for its pods' networks before rewriting hostPort rules


@dataclass(frozen=True)
class NodeOptions:
    state_dir: Path  # IPAM records and the runtime's per-pod files live below it
    heartbeat_interval: float = 10.0  # kubelet's node lease renewal
    lease_ttl: int = 40  # the node lease's duration (kubelet: 40 s)
    relist_interval: float = 1.0  # PLEG: how often the runtime's containers are compared
    resync_interval: float = 60.0  # every pod synced at least this often (kubelet: 1 min; PLEG and probes trigger the rest)
    housekeeping_interval: float = 10.0  # how often emptyDirs are measured against their sizeLimit (kubelet: 10 s)
    max_pods: int = 110
    cpu: str = ""  # capacity; default: this machine's CPUs
    memory: str = ""  # capacity; default: MemTotal
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    cluster_dns: str = envvars.DEFAULT_CLUSTER_DNS
    cluster_domain: str = envvars.DEFAULT_CLUSTER_DOMAIN
    workers: int = 4
    labels: Mapping[str, str] = field(default_factory=dict)
    # the node API (`orchestrator.node.server`: logs, exec) listens here; host "" = the node IP
    api_listen: tuple[str, int] | None = None
    # the CAs whose client certificates it accepts (kubelet's --client-ca-file); None: those the
    # cluster's API servers publish in etcd (`orchestrator.node.nodetls.ClientCAs`)
    api_client_ca: Path | None = None
    api_read_only_group: str = "readonly"  # may read (pods, logs) but not exec or port-forward: the API server's rule
    # this agent's stats collector, when it runs one (`/stats/summary`, what `kubectl top` reads),
    # and the cgroup that stands for the node in it (default: the root cgroup)
    stats: Callable[[], Collector | None] | None = None
    stats_cgroup: str | None = None


def machine_capacity() -> tuple[str, str]:
    cpu = str(os.cpu_count() or 1)
    mem = "1Gi"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1])}Ki"
                break
    except OSError:
        pass
    return cpu, mem


GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def node_info(runtime: str, version: str = "") -> dict[str, str]:
    """NodeSystemInfo: every field v1 requires (clients refuse a Node without them)."""
    u = os.uname()
    os_image = ""
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_image = line.split("=", 1)[1].strip('"')
    return {"machineID": _read("/etc/machine-id"), "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"), "kernelVersion": u.release,
            "osImage": os_image, "containerRuntimeVersion": f"{runtime}://{version}", "kubeletVersion": VERSION,
            "kubeProxyVersion": VERSION, "operatingSystem": "linux",
            "architecture": GOARCH.get(u.machine, u.machine)}


def _now_text() -> str:
    return meta.from_epoch(time.time())


def cpu_shares(millicpu: int) -> int:
    """kubelet's MilliCPUToShares."""
    if millicpu <= 0:
        return 2
    return max(2, millicpu * 1024 // 1000)


def _millicpu(value: Any) -> int:
    return 0 if value in (None, "") else cpu_millis(str(value))


def _bytes(value: Any) -> int:
    return 0 if value in (None, "") else memory_bytes(str(value))


def container_config(container: Mapping[str, Any], env: Mapping[str, str], attempt: int,
                     services: Mapping[str, str], mounts: tuple[Mount, ...] = ()) -> ContainerConfig:
    res = container.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    cpu_req = _millicpu(req.get("cpu") or lim.get("cpu"))
    cpu_lim = _millicpu(lim.get("cpu"))
    command, args = envvars.expand_command(container, env)
    return ContainerConfig(
        name=str(container.get("name") or ""),
        image=str(container.get("image") or ""),
        command=tuple(command),
        args=tuple(args),
        env=dict(env),
        working_dir=str(container.get("workingDir") or ""),
        attempt=attempt,
        cpu_shares=cpu_shares(cpu_req) if cpu_req else 0,
        cpu_quota_us=cpu_lim * 100 if cpu_lim else 0,  # per 100 ms period: millicpu * 100 µs
        memory_limit=_bytes(lim.get("memory")),
        stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        tty=bool(container.get("tty")),
        mounts=mounts,
    )


class NodeRuntime:
    """The agent component `node` (start/stop/health)."""

    name = "node"

    def __init__(self, ctx: AgentContext, runtime: Runtime, options: NodeOptions, *,
                 network: PodNetwork | None = None) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.opts = options
        self.node = ctx.node
        self.objects = ObjectStore(ctx.store, ctx.keys)
        self.overlay: HostOverlay = ctx.overlay.current()
        options.state_dir.mkdir(parents=True, exist_ok=True)
        if network is None:
            ipam = HostLocalIPAM(self.overlay.subnet, options.state_dir / "ipam")
            network = PodNetwork(bridge=self.overlay.bridge, subnet=self.overlay.subnet,
                                 gateway=self.overlay.gateway.ip, mtu=self.overlay.mtu, ipam=ipam)
        self.network = network
        self.volumes = Volumes(options.state_dir / "kubelet")
        # projected service account tokens, signed with the node's key (published at start)
        self.tokens: PodTokens | None = None
        # only the pods bound here are kept, as kubelet watches spec.nodeName=<node>
        self.pods = Informer(self.objects, POD, indexers={"node": lambda p: (pods.node_name(p),)},
                             resync_period=options.resync_interval, keep=lambda p: pods.node_name(p) == self.node)
        self.services = Informer(self.objects, SERVICE)
        # a change of a ConfigMap or Secret syncs the pods here that use it (their volumes follow
        # at once; a container waiting for a missing one starts). Only those the pods here
        # use are kept, as kubelet's Watch strategy follows only its pods' (`configrefs`)
        self.config_refs = ConfigRefs()
        self.config_maps = Informer(self.objects, CONFIG_MAP, keep=self.config_refs.keeps("ConfigMap"))
        self.secrets = Informer(self.objects, SECRET, keep=self.config_refs.keeps("Secret"))
        self.config_refs.informers = {"ConfigMap": self.config_maps, "Secret": self.secrets}
        self.loop = KeyLoop("node", self.sync_pod, writer=Writer(), workers=options.workers,
                            max_retries=1_000_000)
        self.probes = ProbeManager(self._on_probe)
        # kubelet's events (reasons and messages as kubelet writes them), off the sync path
        self.events = Recorder(self.objects, "kubelet", writer=Writer(), host=self.node)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._uids: dict[str, str] = {}  # pod key -> uid we run for it
        self._backoff: dict[tuple[str, str], Backoff] = {}  # (uid, container) -> crash-loop state
        self._last_relist: dict[str, tuple[tuple[str, str, str], ...]] = {}
        self._net: dict[str, tuple[str, str]] = {}  # pod uid -> (sandbox id, IP) its network was attached to
        self._evict: dict[str, str] = {}  # pod uid -> why housekeeping evicts it (carried out by its sync)
        self.hostports = HostPorts(self.overlay.subnet, self.overlay.bridge, netns_name=ctx.netns_name)
        self._hostports_ready = False  # until every running sandbox is attached again (see _sync_hostports)
        self._hostports_lock = threading.Lock()
        self._started_at = time.monotonic()
        self._lease = 0
        self._version: str | None = None  # the runtime's, once asked
        self._capacity: dict[str, str] | None = None  # cpu and memory, once read
        self._lease_since: datetime | None = None  # when self._lease was granted (the Lease object's creation)
        self.api: NodeAPIServer | None = None
        self._api_cert = ""  # the node API's certificate, announced in the Node (nodetls.CERT_ANNOTATION)
        self.syncs = 0
        self.errors = 0
        self.last_error = ""

    # ------------------------------------------------------------------ component
    def start(self) -> None:
        self._stop.clear()
        if self.opts.api_listen is not None:  # first: a taken port fails the start; the Node names the port
            from orchestrator.apiserver.auth import Authorizer
            from orchestrator.node import nodetls
            from orchestrator.node.server import NodeAPIServer

            host, port = self.opts.api_listen
            host = host or str(self.overlay.node_ip)
            pair = nodetls.serving_pair(self.opts.state_dir, self.node, host if host not in ("0.0.0.0", "::")
                                        else str(self.overlay.node_ip))
            cas = nodetls.ClientCAs(self.ctx.store, self.ctx.keys, self.opts.api_client_ca)
            if self.opts.api_client_ca is None:
                try:
                    cas.refresh()  # known at once when there are some; followed from here on
                except NetplaneError as e:
                    log.info("node API: reading the client CAs: %s (following them)", e)
            self.api = NodeAPIServer((host, port), self, tls=nodetls.ServerTLS(pair, cas),
                                     netns_name=self.ctx.netns_name,
                                     authorizer=Authorizer(self.opts.api_read_only_group))
            self.api.start()
            self._api_cert = nodetls.announced(pair)
            self._start_thread("node-api-cas", lambda: cas.run(self._stop))
        self.pods.add_handler(self.config_refs.track)  # before the pod's sync is queued
        self.pods.add_handler(self._on_pod)
        self.config_maps.add_handler(lambda old, new: self._on_config("ConfigMap", old, new))
        self.secrets.add_handler(lambda old, new: self._on_config("Secret", old, new))
        self._register_node()
        # the key after the Node: the node lifecycle controller withdraws a node's key only
        # while its Node is absent (orchestrator.apiserver.satokens.withdraw_node_keys)
        self.tokens = PodTokens(podtokens.node_signer(self.opts.state_dir, self.ctx.store, self.ctx.keys, self.node),
                                self.node, account=lambda ns, name: self.objects.get(SERVICE_ACCOUNT, name, ns),
                                node_object=lambda: self.objects.get(NODE, self.node))
        self._start_thread("node-pods", lambda: self.pods.run(self._stop))
        self._start_thread("node-services", lambda: self.services.run(self._stop))
        self._start_thread("node-configmaps", lambda: self.config_maps.run(self._stop))
        self._start_thread("node-secrets", lambda: self.secrets.run(self._stop))
        self._start_thread("node-heartbeat", self._heartbeat_loop)
        self.probes.start()
        self.pods.wait_synced(30)
        self.services.wait_synced(30)
        # a pod's volumes and variables are read from these: synced before the first sync, so a
        # running pod's ConfigMap is never taken for a missing one
        self.config_maps.wait_synced(30)
        self.secrets.wait_synced(30)
        self._start_thread("node-workers", lambda: self.loop.run(self._stop))
        self._start_thread("node-relist", self._relist_loop)
        self._start_thread("node-housekeeping", self._housekeeping_loop)
        self._start_thread("node-events", lambda: self.events.run(self._stop))
        log.info("node runtime %s (%s) started on %s", self.node, self.runtime.name, self.overlay.subnet)

    def _start_thread(self, name: str, fn: Any) -> None:
        t = threading.Thread(target=self._guard(name, fn), name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _guard(self, name: str, fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except Exception:
                log.exception("node runtime: %s failed", name)

        return run

    def stop(self) -> None:
        """Stop following etcd; pods keep running (a restarted agent adopts them)."""
        self._stop.set()
        if self.api is not None:
            self.api.stop()
            self.api = None
        self.probes.stop()
        for t in self._threads:
            t.join(timeout=15)
        self._threads = []
        if self._lease:
            try:
                self.ctx.store.revoke(self._lease)
            except NetplaneError as e:
                log.info("revoking the node lease: %s", e)
            self._lease = 0
        self.runtime.close()

    def health(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            running = len(self._uids)
        return self.pods.synced, {"runtime": self.runtime.name, "pods": running, "syncs": self.syncs,
                                  "errors": self.errors, "last_error": self.last_error}

    def stats_summary(self) -> Obj | None:
        """kubelet's Summary of this node from the agent's stats collector (None without one)."""
        collector = self.opts.stats() if self.opts.stats is not None else None
        if collector is None:
            return None
        from stats.summary import summary

        return summary(self.node, collector.latest(), node_cgroup=self.opts.stats_cgroup,
                       start_time=time.time() - (time.monotonic() - self._started_at))

    # ------------------------------------------------------------------ node object
    def _node_object(self, current: Obj | None) -> Obj:
        cap = self._allocatable()
        cpu, mem = cap["cpu"], cap["memory"]
        now = _now_text()
        capacity = {"cpu": cpu, "memory": mem, "pods": str(self.opts.max_pods)}
        old_ready: dict[str, Any] = next((c for c in ((current or {}).get("status") or {}).get("conditions") or []
                          if c.get("type") == "Ready"), {})
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "netplane node runtime is posting ready status",
                 "lastHeartbeatTime": now,
                 "lastTransitionTime": old_ready.get("lastTransitionTime") if old_ready.get("status") == "True" else now}
        md = dict((current or {}).get("metadata") or {})
        md["name"] = self.node
        md["labels"] = {**(md.get("labels") or {}), "kubernetes.io/hostname": self.node,
                        "kubernetes.io/os": "linux", **self.opts.labels}
        md["annotations"] = self._annotations(md.get("annotations"))
        spec = dict((current or {}).get("spec") or {})
        spec["podCIDR"] = str(self.overlay.subnet)
        spec["podCIDRs"] = [str(self.overlay.subnet)]
        return {
            "apiVersion": "v1", "kind": "Node", "metadata": md, "spec": spec,
            "status": {
                "capacity": capacity, "allocatable": dict(capacity),
                "addresses": [{"type": "InternalIP", "address": str(self.overlay.node_ip)},
                              {"type": "Hostname", "address": self.node}],
                "conditions": [ready],
                "nodeInfo": node_info(self.runtime.name, self._runtime_version()),
                **({"daemonEndpoints": {"kubeletEndpoint": {"Port": self.api.port}}} if self.api else {}),
            },
        }

    def _annotations(self, current: Mapping[str, str] | None) -> dict[str, str]:
        from orchestrator.node.nodetls import CERT_ANNOTATION

        out = {k: v for k, v in (current or {}).items() if k != CERT_ANNOTATION}
        if self._api_cert:
            out[CERT_ANNOTATION] = self._api_cert
        return out

    def _register_node(self) -> None:
        current = self.objects.get(NODE, self.node)
        if current is None:
            try:
                self.objects.create(self._node_object(None))
                log.info("registered node %s (%s, podCIDR %s)", self.node, self.overlay.node_ip, self.overlay.subnet)
                return
            except NetplaneError as e:  # created meanwhile (another agent of this name?)
                log.info("node %s: create raced (%s); updating", self.node, e)

        def mutate(n: Obj) -> Obj:
            fresh = self._node_object(n)
            n["metadata"] = {**n["metadata"], "labels": fresh["metadata"]["labels"],
                             "annotations": fresh["metadata"]["annotations"]}
            n["spec"] = fresh["spec"]
            n["status"] = fresh["status"]
            return n

        self.objects.guaranteed_update(NODE, self.node, None, mutate)

    def _heartbeat_loop(self) -> None:
        beats = 0
        while not self._stop.is_set():
            try:
                if not self._lease:
                    self._lease = self.ctx.store.grant(self.opts.lease_ttl)
                    self._lease_since = datetime.now(UTC)
                else:
                    self.ctx.store.keepalive(self._lease)
                heartbeat.renew(self.ctx.store, self.ctx.keys, self.node, lease=self._lease, now=datetime.now(UTC),
                                duration=self.opts.lease_ttl, since=self._lease_since)
                beats += 1
                node = self.objects.get(NODE, self.node)
                # the Ready condition is ours: the lifecycle controller sets it Unknown while we are
                # silent; say True again as soon as we are back (and re-register a deleted Node)
                if node is None or any(c.get("type") == "Ready" and c.get("status") != "True"
                                       for c in (node.get("status") or {}).get("conditions") or []):
                    self._register_node()
                    if node is None and self.tokens is not None:
                        # deleted: the lifecycle controller withdraws our key with the Node
                        podtokens.republish(self.ctx.store, self.ctx.keys, self.tokens.signer, self.node)
            except NetplaneError as e:
                log.warning("node heartbeat failed: %s", e)
                self._lease = 0 if "lease" in str(e).lower() and "not found" in str(e).lower() else self._lease
            self._stop.wait(self.opts.heartbeat_interval)

    def pod_containers(self, namespace: str, name: str) -> tuple[Obj, list[ContainerInfo]] | None:
        """A pod bound to this node and the runtime's containers of it, oldest attempt first (for
        the node API's logs and exec); None when this node runs no such pod."""
        pod = self._cached(f"{namespace}/{name}")
        if pod is None or not self._mine(pod):
            return None
        return pod, sorted(self.runtime.list_containers(meta.uid(pod)), key=lambda c: c.attempt)

    def pod_netns(self, namespace: str, name: str) -> str | None:
        """The network namespace of a pod this node runs (its newest ready sandbox's; "" when
        none is ready); None when this node runs no such pod (for the node API's port-forward)."""
        pod = self._cached(f"{namespace}/{name}")
        if pod is None or not self._mine(pod):
            return None
        ready = [s for s in self.runtime.list_sandboxes() if s.pod.uid == meta.uid(pod) and s.state == "ready"]
        return max(ready, key=lambda s: s.created_at).netns_path if ready else ""

    # ------------------------------------------------------------------ triggers
    def _mine(self, p: Obj | None) -> bool:
        return p is not None and pods.node_name(p) == self.node

    def _on_pod(self, old: Obj | None, new: Obj | None) -> None:
        for p in (old, new):
            if self._mine(p):
                assert p is not None
                self.loop.queue.add(f"{meta.namespace(p)}/{meta.name(p)}")

    def _on_config(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is None or (old is not None and new is not None and
                           {k: v for k, v in old.items() if k != "metadata"} ==
                           {k: v for k, v in new.items() if k != "metadata"}):
            return  # only its metadata changed: nothing a pod sees
        for key in self.config_refs.users(kind, meta.namespace(obj), meta.name(obj)):
            self.loop.queue.add(key)

    def _on_probe(self, t: Transition) -> None:
        key = self._key_of_uid(t.key.pod_uid)
        if key is None:
            return
        pod = self._cached(key)
        if not t.success and t.probed and pod is not None:
            said = f": {t.message}" if t.message else ""
            self.events.record(pod, "Unhealthy", f"{t.key.kind.capitalize()} probe failed{said}", type="Warning")
        if t.key.kind == "liveness" and not t.success:
            log.info("pod %s container %s failed its liveness probe (%s): restarting it", key, t.key.container, t.message)
            if pod is not None:
                self.events.record(pod, "Killing", f"Container {t.key.container} failed liveness probe, will be restarted")
            grace = lifecycle.grace_period(pod) if pod else lifecycle.DEFAULT_GRACE_PERIOD
            try:
                self.runtime.stop_container(t.container_id, grace)
            except NetplaneError as e:
                log.warning("stopping %s after its liveness failure: %s", t.container_id, e)
        self.loop.queue.add(key)

    def _key_of_uid(self, uid: str) -> str | None:
        with self._lock:
            for k, u in self._uids.items():
                if u == uid:
                    return k
        return None

    def _cached(self, key: str) -> Obj | None:
        ns, _, name = key.partition("/")
        return self.pods.get(name, ns)

    def _relist_loop(self) -> None:
        """PLEG: compare every container's (id, state) with the last relist; queue the pods that
        changed, and the pods of sandboxes no object of ours explains (orphans to tear down)."""
        last_resync = time.monotonic()
        swept = False
        while not self._stop.wait(self.opts.relist_interval):
            try:
                seen: dict[str, list[tuple[str, str, str]]] = {}
                for c in self.runtime.list_containers():
                    seen.setdefault(c.pod.uid, []).append((c.name, c.id, c.state))
                sandboxes = self.runtime.list_sandboxes()
                for s in sandboxes:
                    seen.setdefault(s.pod.uid, []).append(("POD", s.id, s.state))
                    if self._key_of_uid(s.pod.uid) is None:
                        self._uids.setdefault(f"{s.pod.namespace}/{s.pod.name}", s.pod.uid)
                        self.loop.queue.add(f"{s.pod.namespace}/{s.pod.name}")
                snapshot = {uid: tuple(sorted(v)) for uid, v in seen.items()}
                for uid in set(snapshot) | set(self._last_relist):
                    if snapshot.get(uid) != self._last_relist.get(uid):
                        key = self._key_of_uid(uid)
                        if key:
                            self.loop.queue.add(key)
                self._last_relist = snapshot
                if not self._hostports_ready:
                    running = {s.pod.uid for s in sandboxes if s.state == "ready"}
                    with self._lock:
                        attached = set(self._net)
                    self._hostports_ready = running <= attached or \
                        time.monotonic() - self._started_at > HOSTPORTS_GRACE
                self._sync_hostports()
                if not swept and self.pods.synced:
                    swept = True
                    self._sweep_volumes(sandboxes)
                if time.monotonic() - last_resync >= self.opts.resync_interval:
                    last_resync = time.monotonic()
                    self._sweep_volumes(sandboxes)
                    for p in self.pods.by_index("node", self.node):
                        self.loop.queue.add(f"{meta.namespace(p)}/{meta.name(p)}")
            except NetplaneError as e:
                log.warning("runtime relist failed: %s", e)

    def _housekeeping_loop(self) -> None:
        """kubelet's local-storage eviction: a pod whose on-disk emptyDir takes more than its
        sizeLimit is evicted (its sync stops it at once and marks it Failed, reason Evicted;
        its controller makes another). Memory emptyDirs need no check: tmpfs has the size."""
        while not self._stop.wait(self.opts.housekeeping_interval):
            for p in self.pods.by_index("node", self.node):
                if pods.phase(p) in ("Succeeded", "Failed") or meta.is_deleting(p):
                    continue
                try:
                    hit = self.volumes.over_limit(p)
                except (OSError, VolumeError, ValueError) as e:
                    log.warning("pod %s: measuring its volumes: %s", meta.name(p), e)
                    continue
                if hit is not None:
                    with self._lock:
                        self._evict[meta.uid(p)] = f'Usage of EmptyDir volume "{hit[0]}" exceeds the limit "{hit[1]}". '
                    self.loop.queue.add(f"{meta.namespace(p)}/{meta.name(p)}")

    def _evicted(self, pod: Obj, message: str) -> None:
        """Stop the pod's containers without a grace period (kubelet's eviction for local
        storage), write it Failed with reason Evicted and the message, and tear it down. Until
        the pod cache shows it Failed, its syncs come here again (never to `_run`, which would
        start it anew from a stale copy)."""
        uid = meta.uid(pod)
        log.warning("pod %s/%s evicted: %s", meta.namespace(pod), meta.name(pod), message.strip())
        self.events.record(pod, "Evicted", message.strip(), type="Warning")
        self.probes.remove_pod(uid)
        self._stop_containers(uid, 0)
        last: dict[str, ContainerInfo] = {}
        for c in self.runtime.list_containers(uid):
            if c.name not in last or c.attempt > last[c.name].attempt:
                last[c.name] = c
        observed = [ObservedContainer(c.name, _terminated(c), restart_count=c.attempt,
                                      container_id=f"{self.runtime.name}://{c.id}") for c in last.values()]
        self._write_status(pod, observed, pod_ip="", now=time.time(), terminal=True,
                           override={"phase": "Failed", "reason": "Evicted", "message": message})
        self._teardown(uid, grace=0, keep_status=True)

    def _sweep_volumes(self, sandboxes: list[SandboxInfo]) -> None:
        """Volumes of pods that are neither ours in the pod cache nor have a sandbox (deleted
        while the agent was down, or a teardown that failed) go."""
        def keep() -> set[str]:
            with self._lock:
                known = set(self._uids.values())
            return known | {meta.uid(p) for p in self.pods.by_index("node", self.node)} | \
                {s.pod.uid for s in sandboxes}

        for uid in self.volumes.sweep(keep):
            log.info("pod %s: removed the volumes it left", uid)

    # ------------------------------------------------------------------ the sync
    def sync_pod(self, key: str) -> None:
        self.syncs += 1
        try:
            self._sync(key)
        except Exception as e:
            self.errors += 1
            self.last_error = f"{key}: {e}"
            raise

    def _sync(self, key: str) -> None:
        pod = self._cached(key)
        with self._lock:
            known_uid = self._uids.get(key)
        if pod is not None and not self._mine(pod):
            pod = None
        if pod is not None and known_uid and known_uid != meta.uid(pod):
            self._teardown(known_uid, grace=0)  # the name was reused by a new pod: the old one goes
            known_uid = None
        if pod is None:
            if known_uid:
                self._teardown(known_uid, grace=0)
                with self._lock:
                    self._uids.pop(key, None)
            return
        uid = meta.uid(pod)
        with self._lock:
            self._uids[key] = uid
        if meta.is_deleting(pod):
            self._terminate(pod)
            return
        if pods.phase(pod) in ("Succeeded", "Failed"):
            self._teardown(uid, grace=0, keep_status=True)
            with self._lock:
                self._evict.pop(uid, None)
            return
        with self._lock:
            eviction = self._evict.get(uid)
        if eviction is not None:
            self._evicted(pod, eviction)
            return
        self._run(pod)

    def _sandbox(self, pod: Obj) -> SandboxInfo:
        ref = PodRef.of(pod)
        boxes = sorted((s for s in self.runtime.list_sandboxes() if s.pod.uid == ref.uid), key=lambda s: s.attempt)
        ready = [s for s in boxes if s.state == "ready"]
        if ready:
            for s in boxes:
                if s is not ready[-1]:
                    self.runtime.remove_sandbox(s.id)
            return ready[-1]
        attempt = boxes[-1].attempt + 1 if boxes else 0
        for s in boxes:  # a dead sandbox: its containers restart in a new one
            for c in self.runtime.list_containers(ref.uid):
                self.runtime.remove_container(c.id)
            self.runtime.remove_sandbox(s.id)
        spec = pods.spec(pod)
        host_network = bool(spec.get("hostNetwork"))
        # dnsPolicy: a hostNetwork pod resolves as its node does unless ClusterFirstWithHostNet
        # (kubelet's rule); Default is always the node's
        policy = spec.get("dnsPolicy") or "ClusterFirst"
        cluster_dns = policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network)
        cfg = SandboxConfig(pod=ref, attempt=attempt, hostname=meta.name(pod)[:63], host_network=host_network,
                            host_ipc=bool(spec.get("hostIPC")), host_pid=bool(spec.get("hostPID")),
                            share_pid=bool(spec.get("shareProcessNamespace")),
                            resolv_conf=envvars.resolv_conf(ref.namespace, nameserver=self.opts.cluster_dns,
                                                            domain=self.opts.cluster_domain)
                            if cluster_dns else "")  # cgroups: the runtime's own, per runtime id
        return self.runtime.run_sandbox(cfg)

    def _run(self, pod: Obj) -> None:
        now = time.time()
        uid = meta.uid(pod)
        try:
            # before the sandbox: a volume that cannot be made holds the pod
            volumes = self.volumes.setup(pod, self._config_lookup(pod), allocatable=self._allocatable(),
                                         token=self.tokens.token if self.tokens is not None else None)
            box = self._sandbox(pod)
            ip = self._attach(uid, box, host_network=bool(pods.spec(pod).get("hostNetwork")))
            if mappings_of(pod, ip):
                self._sync_hostports()
        except NetplaneError as e:
            if isinstance(e, VolumeError):
                self.events.record(pod, "FailedMount", f"MountVolume.SetUp failed: {e}", type="Warning")
            else:
                self.events.record(pod, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}", type="Warning")
            self._write_status(pod, [ObservedContainer(str(c.get("name") or ""), Waiting("ContainerCreating", str(e)))
                                     for c in pods.spec(pod).get("containers") or []], pod_ip="", now=now)
            raise
        self.probes.add_pod(pod)
        instances: dict[str, list[ContainerInfo]] = {}
        for c in self.runtime.list_containers(uid):
            instances.setdefault(c.name, []).append(c)
        services_env: dict[str, str] | None = None
        observed: list[ObservedContainer] = []
        for spec in pods.spec(pod).get("containers") or []:
            name = str(spec.get("name") or "")
            history = sorted(instances.get(name, []), key=lambda c: c.attempt)
            cur = history[-1] if history else None
            prev = history[-2] if len(history) > 1 else None
            last = _terminated(prev) if prev else None
            restarts = cur.attempt if cur else 0
            # kubelet's "definition changed": a pod update may change a container's image (the
            # one field of a container that is not immutable); the running instance is stopped
            # and a new one started whatever the restartPolicy (also for an adopted instance)
            changed = cur is not None and cur.state == "running" and cur.image != str(spec.get("image") or "")
            if changed:
                assert cur is not None
                cur = self._stop_changed(pod, cur, str(spec.get("image") or ""))
            if cur is not None and cur.state == "running":
                cid = f"{self.runtime.name}://{cur.id}"
                # an adopted instance (agent restarted) keeps the readiness it had until probed
                was_ready = any(cs.get("name") == name and cs.get("ready") and
                                str(cs.get("containerID") or "").endswith(cur.id)
                                for cs in (pods.status(pod) or {}).get("containerStatuses") or [])
                self.probes.container_started(uid, name, container_id=cur.id, pod_ip=ip,
                                              exec_fn=self._exec_fn(cur.id),
                                              running_for=now - (cur.started_at or now), assume_ready=was_ready)
                ready = self.probes.ready(uid, name)
                observed.append(ObservedContainer(name, Running(cur.started_at or now), last, restarts,
                                                  ready=True if ready is None else ready, container_id=cid))
                continue
            start_attempt: int | None = None
            waiting: Waiting | None = None
            if cur is None:
                start_attempt = 0
            elif changed:
                start_attempt = cur.attempt + 1
            elif cur.state in ("exited", "unknown", "created"):
                self.probes.container_stopped(uid, name)
                ended = _terminated(cur)
                decision = lifecycle.decide_restart(pod, name, ended, now=now, backoff=self._backoff.get((uid, name)),
                                                    policy=self.opts.backoff)
                if decision.restart:
                    start_attempt = cur.attempt + 1
                    if decision.backoff is not None:
                        self._backoff[(uid, name)] = decision.backoff
                else:
                    if decision.waiting is not None and decision.waiting.reason == "CrashLoopBackOff":
                        self.events.record(pod, "BackOff", f"Back-off restarting failed container {name} in pod "
                                                           f"{meta.name(pod)}_{meta.namespace(pod)}({uid})", type="Warning")
                    observed.append(ObservedContainer(name, decision.waiting or ended, last, restarts,
                                                      container_id=f"{self.runtime.name}://{cur.id}")
                                    if decision.waiting is None else
                                    lifecycle.held(ObservedContainer(name, ended, last, restarts), decision.waiting))
                    if decision.at is not None:
                        self.loop.queue.add_after(f"{meta.namespace(pod)}/{meta.name(pod)}", max(0.05, decision.at - now))
                    continue
            if start_attempt is not None:
                if services_env is None:
                    services_env = envvars.service_env(self.services.list(), meta.namespace(pod))
                try:
                    env = envvars.container_env(spec, services_env, lookup=self._config_lookup(pod),
                                                pod=self._env_pod(pod, ip), allocatable=self._allocatable())
                    for old in history[:-1]:  # keep only the last instance (lastState)
                        self.runtime.remove_container(old.id)
                    info = self.runtime.create_and_start(box, container_config(
                        spec, env, start_attempt, services_env, self.volumes.mounts(spec, volumes)))
                    self.events.record(pod, "Created", f"Created container: {name}")
                    self.events.record(pod, "Started", f"Started container {name}")
                    observed.append(ObservedContainer(name, Running(info.started_at or now),
                                                      _terminated(cur) if cur else None, start_attempt,
                                                      ready=not spec.get("readinessProbe"),
                                                      container_id=f"{self.runtime.name}://{info.id}"))
                    self.probes.container_started(uid, name, container_id=info.id, pod_ip=ip,
                                                  exec_fn=self._exec_fn(info.id))
                    if spec.get("readinessProbe"):
                        observed[-1] = ObservedContainer(name, Running(info.started_at or now),
                                                         _terminated(cur) if cur else None, start_attempt,
                                                         ready=False, container_id=f"{self.runtime.name}://{info.id}")
                except (RuntimeError_, VolumeError, envvars.EnvError) as e:  # a subPath, a ConfigMap: config errors
                    waiting = Waiting("RunContainerError" if isinstance(e, RuntimeError_) else
                                      "CreateContainerConfigError", str(e))
                    log.warning("pod %s: starting %s failed: %s", meta.name(pod), name, e)
                    self.events.record(pod, "Failed", f"Error: {e}", type="Warning")
                    observed.append(ObservedContainer(name, waiting, last, restarts))
                    self.loop.queue.add_after(f"{meta.namespace(pod)}/{meta.name(pod)}", self.opts.backoff.initial)
        observed += self._ephemeral(pod, box, instances, volumes, now)
        self._write_status(pod, observed, pod_ip=ip, now=now)

    def _runtime_version(self) -> str:
        """The runtime's version, asked once (the Node is rewritten at each registration)."""
        if self._version is None:
            self._version = self.runtime.version()
        return self._version

    def _allocatable(self) -> dict[str, str]:
        """The node's cpu and memory as its Node says them (allocatable = capacity here), read
        from the machine once."""
        if self._capacity is None:
            cpu, mem = machine_capacity()
            self._capacity = {"cpu": self.opts.cpu or cpu, "memory": self.opts.memory or mem}
        return self._capacity

    def _env_pod(self, pod: Obj, ip: str) -> Obj:
        """The pod as `fieldRef` reads it when a container starts: its addresses are this
        start's, which its status may not carry yet."""
        host = str(self.overlay.node_ip)
        return {**pod, "status": {**(pod.get("status") or {}), "podIP": ip, "podIPs": [{"ip": ip}],
                                  "hostIP": host, "hostIPs": [{"ip": host}]}}

    def _config_lookup(self, pod: Obj) -> envvars.Lookup:
        """The pod's ConfigMaps and Secrets, from the informers that follow them (kubelet's
        Watch strategy): one just made that they have not seen yet is missing for a moment, and
        its arrival syncs the pod again (`_on_config`)."""
        namespace = meta.namespace(pod)

        def lookup(kind: str, name: str) -> Obj | None:
            return self.config_refs.informers[kind].get(name, namespace) if name else None

        return lookup

    def _stop_changed(self, pod: Obj, cur: ContainerInfo, image: str) -> ContainerInfo | None:
        """Stop a running container whose definition changed (its pod's grace period, as
        kubelet's killContainer); the stopped instance, or None if it is gone."""
        log.info("pod %s/%s: container %s definition changed (image %s -> %s), will be restarted",
                 meta.namespace(pod), meta.name(pod), cur.name, cur.image, image)
        self.events.record(pod, "Killing", f"Container {cur.name} definition changed, will be restarted")
        self.probes.container_stopped(meta.uid(pod), cur.name)
        self.runtime.stop_container(cur.id, float(lifecycle.grace_period(pod)))
        return next((c for c in self.runtime.list_containers(meta.uid(pod)) if c.id == cur.id), None)

    def _ephemeral(self, pod: Obj, box: SandboxInfo, instances: dict[str, list[ContainerInfo]],
                   volumes: Mapping[str, str], now: float) -> list[ObservedContainer]:
        """`kubectl debug`'s containers: each started once in the pod's sandbox (its network,
        IPC and UTS namespaces), never restarted, and reported in ephemeralContainerStatuses;
        a failed start is tried again after the back-off's first step."""
        out: list[ObservedContainer] = []
        for spec in pods.spec(pod).get("ephemeralContainers") or []:
            name = str(spec.get("name") or "")
            history = sorted(instances.get(name, []), key=lambda c: c.attempt)
            if history:
                cur = history[-1]
                state = Running(cur.started_at or now) if cur.state == "running" else _terminated(cur)
                out.append(ObservedContainer(name, state, container_id=f"{self.runtime.name}://{cur.id}"))
                continue
            if meta.is_deleting(pod):
                continue
            services_env = envvars.service_env(self.services.list(), meta.namespace(pod))
            target = [c for c in instances.get(str(spec.get("targetContainerName") or ""), []) if c.state == "running"]
            try:
                env = envvars.container_env(spec, services_env, lookup=self._config_lookup(pod), pod=pod,
                                            allocatable=self._allocatable())
                config = container_config(spec, env, 0, services_env, self.volumes.mounts(spec, volumes))
                if target:  # its processes are the debugger's to see (a runtime without PID namespaces shows all)
                    config = dataclasses.replace(config, pid_target=target[-1].id)
                info = self.runtime.create_and_start(box, config)
            except (RuntimeError_, VolumeError, envvars.EnvError) as e:
                log.warning("pod %s: starting ephemeral container %s failed: %s", meta.name(pod), name, e)
                out.append(ObservedContainer(name, Waiting("RunContainerError", str(e))))
                self.loop.queue.add_after(f"{meta.namespace(pod)}/{meta.name(pod)}", self.opts.backoff.initial)
                continue
            log.info("pod %s: ephemeral container %s started", meta.name(pod), name)
            out.append(ObservedContainer(name, Running(info.started_at or now),
                                         container_id=f"{self.runtime.name}://{info.id}"))
        return out

    def _attach(self, uid: str, box: SandboxInfo, *, host_network: bool = False) -> str:
        """The pod's network, attached once per sandbox, as kubelet calls CNI ADD only when it
        makes a sandbox: a sync of a running pod makes no netlink round trips (attach opened two
        rtnetlink sockets, one in the pod's netns, and dumped every bridge port: ~2/3 of the
        agent's CPU at 30 pods). A hostNetwork pod has no network of its own: its IP is the
        node's, as kubelet reports it."""
        with self._lock:
            known = self._net.get(uid)
        if known is not None and known[0] == box.id:
            return known[1]
        ip = str(self.overlay.node_ip) if host_network else str(self.network.attach(uid, box.netns_path))
        with self._lock:
            self._net[uid] = (box.id, ip)
        return ip

    def _sync_hostports(self) -> None:
        """The node's hostPort rules (`orchestrator.node.hostports`) for the pods attached now.
        Not before every sandbox that was running at start is attached again: a restarted
        agent must not drop the mappings of pods it is about to adopt (or HOSTPORTS_GRACE has
        passed). A failure is logged; the relist loop tries again within a second."""
        if not self._hostports_ready:
            return
        with self._hostports_lock:  # read and written as one: an older reading never lands after a newer one
            with self._lock:
                net = dict(self._net)
            wanted = []
            for p in self.pods.by_index("node", self.node):
                got = net.get(meta.uid(p))
                if got is not None:
                    wanted += mappings_of(p, got[1])
            try:
                self.hostports.sync(wanted)
            except NetplaneError as e:
                log.warning("hostPort rules: %s", e)

    def _exec_fn(self, container_id: str) -> Any:
        def run(cmd: list[str], timeout: float) -> int:
            code, _out = self.runtime.exec(container_id, cmd, timeout=timeout)
            return code

        return run

    def _write_status(self, pod: Obj, observed: list[ObservedContainer], *, pod_ip: str, now: float,
                      terminal: bool | None = None, override: Mapping[str, str] | None = None) -> None:
        def status_of(p: Obj) -> dict[str, Any]:
            return {**lifecycle.pod_status(p, observed, now=now, pod_ip=pod_ip, host_ip=str(self.overlay.node_ip),
                                           terminal=terminal), **(override or {})}

        if not lifecycle.status_changed(pods.status(pod), status_of(pod)):
            return
        uid = meta.uid(pod)

        def mutate(p: Obj) -> Obj | None:
            if meta.uid(p) != uid or pods.node_name(p) != self.node:
                return None
            fresh = status_of(p)
            if not lifecycle.status_changed(pods.status(p), fresh):
                return None
            p["status"] = fresh
            return p

        try:
            self.objects.guaranteed_update(POD, meta.name(pod), meta.namespace(pod), mutate, retries=10)
        except Conflict:
            self.loop.queue.add(f"{meta.namespace(pod)}/{meta.name(pod)}")
        except NetplaneError as e:
            if "not found" in str(e):
                return
            raise

    # ------------------------------------------------------------------ stopping pods
    def _stop_containers(self, uid: str, grace: float) -> None:
        running = [c for c in self.runtime.list_containers(uid) if c.state == "running"]
        threads = [threading.Thread(target=self.runtime.stop_container, args=(c.id, grace), daemon=True)
                   for c in running]
        for t in threads:  # in parallel: each gets the whole grace period, as kubelet gives them
            t.start()
        for t in threads:
            t.join(timeout=grace + 30)

    def _teardown(self, uid: str, *, grace: float, keep_status: bool = False) -> None:
        """Stop the pod and give back what it holds: network, host ports, volumes. A pod whose
        object stays (`keep_status`: it finished, or was evicted) keeps its stopped sandbox and
        its exited containers, so `kubectl logs` and the exit states still read them, as kubelet
        keeps a terminated pod's dead containers; they go with the pod's object."""
        self.probes.remove_pod(uid)
        self._stop_containers(uid, grace)
        if not keep_status:
            for c in self.runtime.list_containers(uid):
                self.runtime.remove_container(c.id)
        for s in self.runtime.list_sandboxes():
            if s.pod.uid == uid and (s.state == "ready" or not keep_status):
                self.runtime.stop_sandbox(s.id)
        with self._lock:
            had = self._net.pop(uid, None)
        if had is not None:
            self._sync_hostports()
        self.network.detach(uid)
        if not keep_status:
            for s in self.runtime.list_sandboxes():
                if s.pod.uid == uid:
                    self.runtime.remove_sandbox(s.id)
        for k in [k for k in self._backoff if k[0] == uid]:
            self._backoff.pop(k, None)
        if not keep_status:  # gone; an evicted pod's entry stays until the cache sees it Failed
            with self._lock:
                self._evict.pop(uid, None)
        if self.tokens is not None:
            self.tokens.forget(uid)
        try:
            self.volumes.teardown(uid)  # no container of the pod is left to use them
        except VolumeError as e:
            log.warning("pod %s: %s (the sweep tries again)", uid, e)
        if not keep_status:
            log.info("pod %s torn down", uid)

    def _terminate(self, pod: Obj) -> None:
        """SIGTERM, the grace period (what is left of it), SIGKILL; release the network; then
        remove the object from etcd: the node confirms the pod is gone."""
        plan = lifecycle.termination_plan(pod, now=time.time())
        uid = meta.uid(pod)
        for c in self.runtime.list_containers(uid):
            if c.state == "running":
                self.events.record(pod, "Killing", f"Stopping container {c.name}")
        observed = [ObservedContainer(str(c.get("name") or ""), Waiting("Terminating", ""))
                    for c in pods.spec(pod).get("containers") or []]
        try:
            self._write_status(pod, observed, pod_ip=str((pods.status(pod) or {}).get("podIP") or ""), now=time.time(),
                               terminal=True)
        except NetplaneError as e:
            log.info("pod %s: status before termination: %s", meta.name(pod), e)
        self._teardown(uid, grace=max(0.0, plan.sigkill_at - time.time()))
        name, ns = meta.name(pod), meta.namespace(pod)
        current = self.objects.get(POD, name, ns)
        if current is not None and meta.uid(current) == uid:
            try:
                self.objects.delete(POD, name, ns, resource_version=current["metadata"]["resourceVersion"])
                log.info("pod %s/%s stopped and removed", ns, name)
            except Conflict:
                self.loop.queue.add(f"{ns}/{name}")  # changed meanwhile: look again
                return
        with self._lock:
            self._uids.pop(f"{ns}/{name}", None)


def _terminated(c: ContainerInfo) -> Terminated:
    return Terminated(exit_code=c.exit_code if c.exit_code is not None else -1,
                      reason=c.reason or lifecycle.terminated_reason(c.exit_code or 0),
                      message=c.message, started_at=c.started_at, finished_at=c.finished_at,
                      container_id=f"{c.id}")
