"""`apply -f`: validate every manifest, then write them — create or three-way-merge update.

Two phases, so a bad manifest writes nothing:

1. `plan` reads what is stored for every document and works out the object each one would
   store (`orchestrator.apply.merge` against the last-applied annotation), admitting both the
   manifest and the merged result through `validation.admit`, and checking what only the
   storage layer knows (immutable fields, a requested cluster IP or nodePort already taken).
   The first problem raises a `UserError` naming the document and the field path.
2. `write` stores each planned object: create-only, or an update at the resourceVersion read
   in phase 1. A lost race (the object appeared or changed meanwhile) plans that document
   again and retries.

Services get their cluster IP (and NodePort type its node ports) on create, like
kube-apiserver: from the same create-only allocation keys `netplane svc` uses
(`netplane.proxy.api`), owned by `<namespace>/<name>`, and released when the Service goes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from netplane.errors import ConfigError, UserError
from netplane.proxy.api import ServiceAPI, clusterip_key, nodeport_key
from orchestrator import apply, namespaces, printing, saadmission
from orchestrator.apply import Outcome
from orchestrator.manifests import Manifest
from orchestrator.objects import meta, tree
from orchestrator.objects.meta import SERVICE_ACCOUNT, Kind
from orchestrator.storage import AlreadyExists, Conflict, Obj, ObjectStore, not_found
from orchestrator.validation import FieldError, InvalidObject, admit, configdata, rbac
from orchestrator.validation.field import ROOT, forbidden, invalid

WRITE_RETRIES = 5
POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)")


@dataclass(frozen=True)
class Planned:
    """What applying one document will do."""

    where: str
    kind: Kind
    config: Obj  # the manifest as given (namespace filled in)
    object: Obj  # what will be stored
    outcome: Outcome
    warnings: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """`pod/web` (`lease.coordination.k8s.io/lock`), as kubectl names it in its output."""
        return printing.kind_slash_name(self.kind.kind, meta.name(self.object))


def owner_of(obj: Mapping[str, Any]) -> str:
    """Who holds a Service's cluster IP and node ports in the allocation keys."""
    return f"{meta.namespace(obj)}/{meta.name(obj)}"


def update_errors(kind: Kind, current: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """Changes an update may not make: a Service's cluster IP, a pod's spec beyond images."""
    if kind.kind == "Service":
        old_ip = (current.get("spec") or {}).get("clusterIP")
        new_ip = (new.get("spec") or {}).get("clusterIP")
        if old_ip and new_ip != old_ip:
            return [invalid(ROOT.child("spec").child("clusterIP"), new_ip or "", "field is immutable")]
        old_ips = (current.get("spec") or {}).get("clusterIPs")
        new_ips = (new.get("spec") or {}).get("clusterIPs")
        if old_ips and new_ips and new_ips != old_ips:
            return [invalid(ROOT.child("spec").child("clusterIPs").index(0), str(new_ips[0]),
                            "may not change once set")]
    elif kind.kind == "Pod":
        def without_images(spec: Any) -> Any:  # to compare: shallow copies, nothing changed in place
            s = dict(spec or {})
            if isinstance(s.get("containers"), list):
                s["containers"] = [{k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                                   for c in s["containers"]]
            s.pop("activeDeadlineSeconds", None)
            if s.get("securityContext") == {}:  # defaulted since: pods stored before lack it
                s.pop("securityContext")
            return s

        old_spec, new_spec = current.get("spec"), new.get("spec")
        if old_spec != new_spec and without_images(old_spec) != without_images(new_spec):  # (most: equal)
            return [forbidden(ROOT.child("spec"), POD_UPDATE_FORBIDDEN)]
    elif kind.kind in ("ConfigMap", "Secret"):
        return configdata.update_errors(kind.kind, current, new)
    elif kind.kind in ("RoleBinding", "ClusterRoleBinding"):
        return rbac.update_errors(current, new)
    return []


def normalize_cluster_ips(current: Mapping[str, Any], new: Obj) -> None:
    """kube's normalizeClusterIPs: an update that changes clusterIP and leaves the stored
    clusterIPs as they were (a 3-way merge keeps them) is judged as that change, so its error
    is "clusterIP: field is immutable" rather than a mismatch of the two."""
    if new.get("kind") != "Service":
        return
    spec, cur = new.get("spec") or {}, current.get("spec") or {}
    ips = spec.get("clusterIPs")
    if spec.get("clusterIP") and ips and ips == cur.get("clusterIPs") and ips[0] != spec["clusterIP"]:
        spec["clusterIPs"] = [spec["clusterIP"], *ips[1:]]


def keep_allocated(current: Mapping[str, Any], new: Obj) -> Obj:
    """A Service update that leaves out what was allocated keeps it (kube's
    patchAllocatedValues): the cluster IP, and the node port of a port that is still there."""
    if new.get("kind") != "Service":
        return new
    cur_spec = current.get("spec") or {}
    spec = new.setdefault("spec", {})
    if cur_spec.get("clusterIP") and not spec.get("clusterIP"):
        spec["clusterIP"] = cur_spec["clusterIP"]
    if cur_spec.get("clusterIPs") and not spec.get("clusterIPs") and spec.get("clusterIP") == cur_spec.get("clusterIP"):
        spec["clusterIPs"] = list(cur_spec["clusterIPs"])  # only while the primary is the same (kube's rule)
    if spec.get("type") == "NodePort":
        had = {(q.get("port"), q.get("protocol", "TCP")): q.get("nodePort")
               for q in cur_spec.get("ports") or [] if q.get("nodePort")}
        for q in spec.get("ports") or []:
            np = had.get((q.get("port"), q.get("protocol", "TCP")))
            if np and not q.get("nodePort"):
                q["nodePort"] = np
    normalize_cluster_ips(current, new)
    return new


class Applier:
    def __init__(self, objects: ObjectStore, *, cached_namespace: namespaces.Lookup | None = None,
                 cached_account: saadmission.AccountLookup | None = None) -> None:
        """`cached_namespace`: a watch cache's namespaces, for the NamespaceLifecycle check
        (`namespaces.check_can_create`); without it every create looks its namespace up.
        `cached_account` (namespace, name): a watch cache's ServiceAccounts, for a pod's
        ServiceAccount admission (`saadmission`), etcd asked when it has none."""
        self.objects = objects
        self._cached_namespace = cached_namespace
        self._cached_account = cached_account
        self._services = ServiceAPI(objects.store, objects.keys)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ phase 1
    def plan(self, manifests: Sequence[Manifest], *, namespace: str | None = None) -> list[Planned]:
        """Every document's plan, or the first problem as a UserError (nothing written)."""
        if not manifests:
            raise UserError("no objects passed to apply")
        out: list[Planned] = []
        coming: set[str] = set()  # namespaces this apply creates first (kubectl applies in order)
        for m in manifests:
            p = self.plan_one(m.object, m.where, namespace=namespace, coming=frozenset(coming))
            if p.kind.kind == "Namespace" and p.outcome == "created":
                coming.add(meta.name(p.object))
            out.append(p)
        return out

    def plan_one(self, obj: Mapping[str, Any], where: str, *, namespace: str | None,
                 coming: frozenset[str] = frozenset()) -> Planned:
        config = tree.copy(dict(obj))
        try:
            admitted = admit(config)
        except InvalidObject as e:
            raise UserError(f"{where}: {e}") from None
        kind = meta.kind_named(str(config.get("kind")))
        assert kind is not None  # admit checked it
        md = config.setdefault("metadata", {})
        if not md.get("name"):
            raise UserError(f"{where}: {kind.kind}: metadata.name: Required value: apply needs "
                            "a name, not generateName")
        if kind.namespaced:
            given = md.get("namespace")
            if namespace and given and given != namespace:
                raise UserError(f'{where}: the namespace from the provided object "{given}" does '
                                f'not match the namespace "{namespace}". You must pass '
                                f"'--namespace={given}' to perform this operation.")
            md["namespace"] = given or namespace or meta.DEFAULT_NAMESPACE
        else:
            md.pop("namespace", None)
        current = self.objects.get(kind, md["name"], md.get("namespace"))
        modified = apply.with_last_applied(config)
        if current is None:
            new = self._admitted(modified, where)
            if meta.namespace(new) not in coming or not (kind and kind.namespaced):
                try:
                    namespaces.check_can_create(self.objects, new)  # refused before anything is written
                except UserError as e:
                    raise UserError(f"{where}: {e}") from None
            outcome: Outcome = "created"
        else:
            merged = apply.merge(apply.last_applied(current), modified, current)
            normalize_cluster_ips(current, merged)
            new = self._admitted(merged, where)
            self._check_update(kind, current, new, where)
            outcome = ("unchanged" if apply.comparable(new) == apply.comparable(current)
                       else "configured")
        if kind.kind == "Service":
            self._check_allocations(new, current, where)
        return Planned(where, kind, config, new, outcome, list(admitted.warnings))

    @staticmethod
    def _admitted(obj: Obj, where: str) -> Obj:
        try:
            return admit(obj).object
        except InvalidObject as e:
            raise UserError(f"{where}: {e}") from None

    @staticmethod
    def _check_update(kind: Kind, current: Obj, new: Obj, where: str) -> None:
        errors = update_errors(kind, current, new)
        if errors:
            raise UserError(f"{where}: {InvalidObject(kind.kind, meta.name(new), errors)}")

    def _check_allocations(self, svc: Obj, current: Obj | None, where: str) -> None:
        errors = self.allocation_errors(svc, current)
        if errors:
            raise UserError(f"{where}: {InvalidObject('Service', meta.name(svc), errors)}")

    def allocation_errors(self, svc: Mapping[str, Any], current: Mapping[str, Any] | None) -> list[FieldError]:
        """What a Service asks for that storage refuses: a cluster IP outside the range or
        owned by another Service (on create), node ports likewise (new ones)."""
        owner = owner_of(svc)
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        errors: list[FieldError] = []
        if ip and current is None:
            addr = IPv4Address(ip)
            path = ROOT.child("spec").child("clusterIP")
            if addr not in self._services.range:
                errors.append(invalid(path, ip, "provided IP is not in the valid range. The range of "
                                                f"valid IPs is {self._services.range}"))
            elif self._taken(clusterip_key(self.objects.keys, addr), owner):
                errors.append(invalid(path, ip, "provided IP is already allocated"))
        had = {p.get("nodePort") for p in ((current or {}).get("spec") or {}).get("ports") or []}
        for i, p in enumerate(spec.get("ports") or []):
            np = p.get("nodePort")
            if np and np not in had:
                lo, hi = self._services.node_ports
                path = ROOT.child("spec").child("ports").index(i).child("nodePort")
                if not lo <= np <= hi:
                    errors.append(invalid(path, np, "provided port is not in the valid range. The "
                                                    f"range of valid ports is {lo}-{hi}"))
                elif self._taken(nodeport_key(self.objects.keys, np), owner):
                    errors.append(invalid(path, np, "provided port is already allocated"))
        return errors

    def _taken(self, key: str, owner: str) -> bool:
        kv = self.objects.store.get(key)
        return kv is not None and kv.value.decode(errors="replace") != owner

    # ------------------------------------------------------------------ phase 2
    def write(self, planned: Planned) -> Outcome:
        """Store one planned object; a lost race re-plans it (UserError if it no longer
        validates against what is stored now)."""
        p = planned
        for _ in range(WRITE_RETRIES):
            try:
                if p.outcome == "unchanged":
                    return "unchanged"
                if p.outcome == "created":
                    self._create(p)
                    return "created"
                self._update(p)
                return "configured"
            except (AlreadyExists, Conflict):
                p = self.plan_one(p.config, p.where, namespace=None)
        raise Conflict(p.kind, meta.name(p.object))

    def _create(self, p: Planned) -> None:
        self.create(p.object, check=False)

    def _update(self, p: Planned) -> None:
        self.update(p.object, check=False)

    def create(self, obj: Mapping[str, Any], *, check: bool = True, adopt: bool = False) -> Obj:
        """Store a new, admitted object as kube-apiserver does: a Service gets its cluster IP
        (and node ports, for type NodePort) first. InvalidObject for an address or port that
        cannot be had (`check`), AlreadyExists when the name is taken (nothing stays claimed).
        `obj` is copied (a Service, to take its addresses) or left to the store, which copies
        it too; with `adopt` (made for this write, shared with nothing) neither copies."""
        kind = meta.kind_named(str(obj.get("kind")))
        is_service = kind is not None and kind.kind == "Service"
        new = tree.own(obj, adopt) if adopt or is_service else dict(obj)
        # NamespaceLifecycle: exists, not terminating
        namespaces.check_can_create(self.objects, new, cached=self._cached_namespace)
        if kind is not None and kind.kind == "Pod":  # ServiceAccount: its account, its token volume
            new = saadmission.admit_pod(new, self.account)
        if is_service and check:
            errors = self.allocation_errors(new, None)
            if errors:
                raise InvalidObject("Service", meta.name(new), errors)
        claimed: list[str] = []
        try:
            if is_service:
                self._allocate(new, None, claimed)
            return self.objects.create(new, adopt=adopt or is_service)
        except BaseException:
            for key in claimed:
                self._release(key, owner_of(new))
            raise

    def account(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A ServiceAccount, from the cache when there is one (etcd on a miss: one made a
        moment ago), else from etcd."""
        if self._cached_account is not None:
            found = self._cached_account(namespace, name)
            if found is not None:
                return found
        return self.objects.get(SERVICE_ACCOUNT, name, namespace)

    def update(self, obj: Mapping[str, Any], *, check: bool = True,
               current: Mapping[str, Any] | None = None, adopt: bool = False) -> Obj:
        """Replace a stored, admitted object (at its resourceVersion when it carries one, else
        Conflict): immutable fields are checked (`check`: InvalidObject), a Service's new node
        ports claimed and the ones it dropped released. `current`: the stored object as the
        caller just read it (else it is read here); the write is at `obj`'s resourceVersion
        either way. `obj` is not changed: a Service is copied to take its node ports, anything
        else is only read here, and the store writes a copy of its own; with `adopt` (made for
        this write, shared with nothing) neither copies."""
        kind = meta.kind_named(str(obj.get("kind")))
        if kind is None:
            raise UserError(f"cannot store an object of kind {obj.get('kind')!r}")
        svc = tree.own(obj, adopt) if kind.kind == "Service" else None
        new: Mapping[str, Any] = obj if svc is None else svc
        cur = current if current is not None else self.objects.get(kind, meta.name(new), meta.namespace(new))
        if cur is None:
            raise not_found(kind, meta.name(new))
        if check:
            errors = update_errors(kind, cur, new)
            if kind.kind == "Service":
                errors += self.allocation_errors(new, cur)
            if errors:
                raise InvalidObject(kind.kind, meta.name(new), errors)
        claimed: list[str] = []
        old_ports: set[int] = set()
        if kind.kind == "Service":
            old_ports = {q["nodePort"] for q in (cur.get("spec") or {}).get("ports") or []
                         if q.get("nodePort")}
        try:
            if svc is not None:
                self._allocate(svc, old_ports, claimed)
            stored = self.objects.update(new, current=cur, adopt=adopt or svc is not None)
        except BaseException:
            for key in claimed:
                self._release(key, owner_of(new))
            raise
        if old_ports:
            new_ports = {q.get("nodePort") for q in (new.get("spec") or {}).get("ports") or []}
            for np in old_ports - new_ports:
                self._release(nodeport_key(self.objects.keys, np), owner_of(new))
        return stored

    def _allocate(self, svc: Obj, had_ports: set[int] | None, claimed: list[str]) -> None:
        """Cluster IP (on create) and node ports (NodePort type), recording each claimed key."""
        owner = owner_of(svc)
        spec = svc.setdefault("spec", {})
        keys = self.objects.keys
        if had_ports is None:
            want = IPv4Address(spec["clusterIP"]) if spec.get("clusterIP") else None
            if want is not None and self._owned(clusterip_key(keys, want), owner):
                ip = want
            else:
                ip = self._services.allocate_ip(owner, want)
                claimed.append(clusterip_key(keys, ip))
            spec["clusterIP"] = str(ip)
            spec["clusterIPs"] = [str(ip)]
        if spec.get("type") != "NodePort":
            for q in spec.get("ports") or []:
                q.pop("nodePort", None)
            return
        for q in spec.get("ports") or []:
            np = q.get("nodePort")
            if np and (np in (had_ports or set()) or self._owned(nodeport_key(keys, np), owner)):
                continue
            try:
                got = self._services.allocate_node_port(owner, np or None)
            except ConfigError as e:
                raise UserError(f'Service "{meta.name(svc)}" is invalid: {e}') from None
            claimed.append(nodeport_key(keys, got))
            q["nodePort"] = got

    def _owned(self, key: str, owner: str) -> bool:
        kv = self.objects.store.get(key)
        return kv is not None and kv.value.decode(errors="replace") == owner

    def _release(self, key: str, owner: str) -> None:
        kv = self.objects.store.get(key)
        if kv is not None and kv.value.decode(errors="replace") == owner:
            self.objects.store.delete(key, mod_revision=kv.mod_revision)

    def release_service(self, svc: Mapping[str, Any]) -> None:
        """Give back a deleted Service's cluster IP and node ports."""
        owner = owner_of(svc)
        spec = svc.get("spec") or {}
        if spec.get("clusterIP"):
            try:
                self._release(clusterip_key(self.objects.keys, IPv4Address(spec["clusterIP"])), owner)
            except ValueError:
                pass
        for q in spec.get("ports") or []:
            if q.get("nodePort"):
                self._release(nodeport_key(self.objects.keys, q["nodePort"]), owner)
