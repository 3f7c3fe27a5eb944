"""The REST verbs over the object store: what each request does, blocking and HTTP-free.

Every write goes through the same layers as `netplane apply`/`run`/`delete`:
`orchestrator.validation.admit` (defaults, schema, semantic checks with field paths),
`orchestrator.applier.Applier` (a Service's cluster IP and node ports, immutable fields) and
`orchestrator.storage.ObjectStore` (create-only creates, updates at a resourceVersion), and
deletes through `orchestrator.deletion.Deleter` (graceful pods, RC cascades). What is
kube-apiserver's own on top of those:

* **create** resets what the server owns: a Pod starts `Pending`, an RC with no replicas
  counted, a Namespace `Active`; Events are stored on an etcd lease (`event_ttl`, like
  `--event-ttl`), one lease shared for a tenth of the TTL.
* **update** (PUT) of a kind with a status subresource keeps the stored `status`, and the
  `status` subresource changes only `status` (`ResetObjectMetaForStatus`); a pod's
  `ephemeralcontainers` subresource changes only `spec.ephemeralContainers`, adding to them
  (`kubectl debug`), and the main resource may not change them; a Service update
  keeps its allocated cluster IP and node ports when it leaves them out
  (`patchAllocatedValues`). A resourceVersion in the body is a precondition (409 Conflict).
* **patch** reads, applies the patch (`orchestrator.apiserver.patch.apply_patch`, by content
  type), and writes at the revision read, retrying a lost race like GuaranteedUpdate — unless
  the patch itself names a resourceVersion, which is then a precondition.
* **server-side apply** (`application/apply-patch+yaml`, `fieldManager` required, `force`):
  `orchestrator.apiserver.fieldmanager` merges the configuration into the live object (or
  creates it) and keeps `metadata.managedFields`; a conflict is 409 with a
  `FieldManagerConflict` cause per field. Every other update and patch of an object that has
  managedFields hands the fields it changed to its writer (`fieldManager`, else the
  User-Agent's product, as kube-apiserver names it). A create records none: an object gets
  managedFields at its first apply, its earlier fields owned by `before-first-apply`.
* `fieldValidation` — `Strict`: unknown fields are a 400; `Warn` (the default): they come
  back as warnings (the `Warning` header) and are pruned; `Ignore`: pruned silently.
* `dryRun=All`: everything but the write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from netplane.errors import NotFoundError
from orchestrator import saadmission
from orchestrator.apiserver.status import APIError, bad_request, not_found
from orchestrator.applier import Applier, keep_allocated
from orchestrator.deletion import Cascade, Deleter
from orchestrator.objects import meta, tree
from orchestrator.objects.meta import (
    EVENT,
    NAMESPACE,
    POD,
    POD_DISRUPTION_BUDGET,
    RBAC_KINDS,
    SECRET,
    SERVICE,
    SERVICE_ACCOUNT,
    Kind,
)
from orchestrator.storage import AlreadyExists, Conflict, Obj, ObjectStore
from orchestrator.validation import admit
from orchestrator.validation.configdata import (
    SA_NAME_ANNOTATION,
    SA_UID_ANNOTATION,
    SERVICE_ACCOUNT_TOKEN,
)

if TYPE_CHECKING:
    from orchestrator.apiserver.satokens import Tokens

PATCH_RETRIES = 16
WITH_STATUS = frozenset({"Pod", "ReplicationController", "Service", "Node", "Namespace", "PodDisruptionBudget"})
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
FIELD_VALIDATION = ("Ignore", "Warn", "Strict")
SYSTEM_METADATA = ("deletionTimestamp", "deletionGracePeriodSeconds")


class Cached(Protocol):
    """`WatchCaches.cached`: an object as the watch cache has it (shared, or with `owned` a
    decode of the caller's own), or None."""

    def __call__(self, kind: Kind, namespace: str | None, name: str, *, owned: bool = False) -> Obj | None: ...


class Registry:
    def __init__(self, objects: ObjectStore, *, event_ttl: int = 3600,
                 clock: Callable[[], float] = time.time, cached: Cached | None = None,
                 guard: Callable[[Obj, Obj | None], None] | None = None,
                 token_secret: Callable[[Obj], Obj | None] | None = None) -> None:
        """`cached(kind, namespace, name)`: the object as the watch cache has it, or None
        (`WatchCaches.cached`). With it, a patch and an update at a known resourceVersion
        start from the cached copy and write at its revision (one etcd round trip), re-reading
        etcd only after a Conflict; and a create's namespace check asks the cache first.
        `guard(new, current)`: called with a role or binding as admitted, before it is written
        (the RBAC escalation check; it raises to refuse). `token_secret(secret)`: a
        service-account token Secret just created, its token filled in and written (the
        stored Secret), or None when its account is missing."""
        self.objects = objects
        self._cached = cached
        self._guard = guard
        self._token_secret = token_secret
        self.applier = Applier(objects, cached_namespace=(lambda n: cached(NAMESPACE, None, n))
                               if cached is not None else None,
                               cached_account=(lambda ns, n: cached(SERVICE_ACCOUNT, ns, n))
                               if cached is not None else None)
        self.deleter = Deleter(objects, clock=clock)
        self.event_ttl = event_ttl
        self._clock = clock
        self._lease_lock = threading.Lock()
        self._lease: tuple[int, float] | None = None  # (id, until when to reuse it)

    # ------------------------------------------------------------------ reads
    def get(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        obj = self.objects.get(kind, name, namespace)
        if obj is None:
            raise not_found(kind.resource, name, group=kind.group)
        return obj

    def _cached_at(self, kind: Kind, namespace: str | None, name: str, rv: str | None = None, *,
                   owned: bool = False) -> Obj | None:
        """The watch cache's copy to start a write from (at resourceVersion `rv`, when given;
        with `owned`, a decode of the caller's own), or None: then etcd is read."""
        if self._cached is None:
            return None
        obj = self._cached(kind, namespace, name, owned=owned)
        if obj is None or (rv is not None and meta.meta(obj).get("resourceVersion") != rv):
            return None
        return obj

    # ------------------------------------------------------------------ body checks
    def prepared(self, kind: Kind, namespace: str | None, body: Any, *, name: str | None = None,
                 adopt: bool = False) -> Obj:
        """The request body as an object of `kind` in `namespace` (kind, apiVersion and
        namespace filled in from the URL when missing; 400 when they disagree with it): a copy,
        or with `adopt`, `body` itself (made for this write and shared with nothing)."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format - accepted "
                              "media types include: application/json, application/yaml")
        obj: Obj = body if adopt else tree.copy(body)
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        if obj["kind"] != kind.kind:
            raise bad_request(f'the kind in the body ("{obj["kind"]}") does not match the kind of '
                              f'the resource ("{kind.kind}" for {kind.resource})')
        if obj["apiVersion"] != kind.api_version:
            raise bad_request(f'the API version in the data ({obj["apiVersion"]}) does not match the '
                              f"expected API version ({kind.api_version})")
        md = obj.get("metadata")
        if md is None:
            md = obj["metadata"] = {}
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if kind.namespaced:
            ns = md.get("namespace") or namespace or meta.DEFAULT_NAMESPACE
            if namespace and ns != namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if name is not None:
            if not md.get("name"):
                md["name"] = name
            elif md["name"] != name:
                raise bad_request(f"the name of the object ({md['name']}) does not match the name "
                                  f"on the URL ({name})")
        return obj

    @staticmethod
    def _admitted(obj: Obj, field_validation: str | None, prior: Obj | None = None, *,
                  in_place: bool = False) -> tuple[Obj, list[str]]:
        """Admission of `obj`; `prior` is the stored state an update replaces (ratcheting:
        `orchestrator.validation`); `in_place`: `validation.admit`'s."""
        fv = field_validation or "Warn"
        if fv not in FIELD_VALIDATION:
            raise bad_request('fieldValidation must be one of "Ignore", "Warn", or "Strict"')
        got = admit(obj, prior=prior, in_place=in_place)
        warnings = list(got.warnings)
        if warnings and fv == "Strict":
            k = str(obj.get("kind"))
            raise bad_request(f'{k} in version "{str(obj.get("apiVersion")).rpartition("/")[2]}" cannot be handled as a {k}: strict decoding '
                              f"error: {', '.join(warnings)}")
        return got.object, warnings if fv == "Warn" else []

    # ------------------------------------------------------------------ create
    def create(self, kind: Kind, namespace: str | None, body: Any, *, dry_run: bool = False,
               field_validation: str | None = None) -> tuple[Obj, list[str]]:
        obj = self.prepared(kind, namespace, body)
        if kind.kind == "Pod":
            obj["status"] = {"phase": "Pending"}
        elif kind.kind == "ReplicationController":
            obj["status"] = {"replicas": 0}
        elif kind.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        elif kind.kind == "Service":
            obj["status"] = {"loadBalancer": {}}
        new, warnings = self._admitted(obj, field_validation)
        if self._guard is not None and kind in RBAC_KINDS:
            self._guard(new, None)
        if dry_run:  # as it would be stored (the applier's ServiceAccount admission of a pod)
            return (saadmission.admit_pod(new, self.applier.account) if kind == POD else new), warnings
        # `new` is admission's own tree (defaults.drop_nulls rebuilt it): the store may keep it
        if kind == EVENT:
            return self.objects.create(new, lease=self._event_lease(), adopt=True), warnings
        made = self.applier.create(new, adopt=True)
        if kind == SECRET and made.get("type") == SERVICE_ACCOUNT_TOKEN and self._token_secret is not None:
            return self._token_secret(made) or made, warnings
        return made, warnings

    def fill_token_secret(self, secret: Obj, tokens: Tokens, ca: bytes) -> Obj | None:
        """kube's tokens controller, when a service-account token Secret is created: its token,
        CA and namespace filled in (`Tokens.fill_secret`), unless it has a token, or its account
        is missing or not the uid the Secret names (kube's controller then deletes the Secret;
        here it stays without a token)."""
        ns = meta.namespace(secret)
        ann = meta.meta(secret).get("annotations") or {}
        account = self.objects.get(SERVICE_ACCOUNT, str(ann.get(SA_NAME_ANNOTATION) or ""), ns)
        if account is None or (ann.get(SA_UID_ANNOTATION) and ann[SA_UID_ANNOTATION] != meta.uid(account)):
            return None

        def fill(s: Obj) -> Obj | None:
            if (s.get("data") or {}).get("token") or meta.uid(s) != meta.uid(secret):
                return None
            return tokens.fill_secret(s, account, ca)

        return self.objects.guaranteed_update(SECRET, meta.name(secret), ns, fill)

    def _event_lease(self) -> int:
        now = self._clock()
        with self._lease_lock:
            if self._lease is not None and now < self._lease[1]:
                return self._lease[0]
            extra = max(1, self.event_ttl // 10)
            lease = self.objects.store.grant(self.event_ttl + extra)
            self._lease = (lease, now + extra)
            return lease

    # ------------------------------------------------------------------ update and patch
    def update(self, kind: Kind, namespace: str | None, name: str, body: Any, *,
               subresource: str | None = None, dry_run: bool = False,
               field_validation: str | None = None, manager: str = "") -> tuple[Obj, list[str]]:
        obj = self.prepared(kind, namespace, body, name=name)
        want = meta.meta(obj).get("resourceVersion")
        current = self._cached_at(kind, namespace, name, want) if want else None
        if current is None:
            current = self.get(kind, namespace, name)
        if want and want != meta.meta(current).get("resourceVersion"):
            raise Conflict(kind, name)
        return self._replace(kind, current, obj, subresource=subresource, dry_run=dry_run,
                             field_validation=field_validation, conditional=bool(want), manager=manager)

    def patch(self, kind: Kind, namespace: str | None, name: str, patch: bytes, content_type: str, *,
              subresource: str | None = None, dry_run: bool = False,
              field_validation: str | None = None, manager: str = "") -> tuple[Obj, list[str]]:
        from orchestrator.apiserver.patch import APPLY_PATCH, media_type

        if media_type(content_type) == APPLY_PATCH:  # (the handlers call `apply` for the main resource)
            raise APIError(415, f"server-side apply is not served on {kind.resource}/{subresource or ''}",
                           reason="UnsupportedMediaType")
        for attempt in range(PATCH_RETRIES):
            # the patch's own copy of the stored object (as an etcd read is), so that admission
            # may work on the patched tree in place, whatever it shares with that copy
            cached = self._cached_at(kind, namespace, name, owned=True) if attempt == 0 else None
            try:
                return self._patch_once(kind, namespace, name, patch, content_type,
                                        cached or self.get(kind, namespace, name),
                                        subresource=subresource, dry_run=dry_run,
                                        field_validation=field_validation, manager=manager)
            except _Pinned:
                if cached is None:
                    raise Conflict(kind, name) from None
            except Conflict:
                pass  # lost a race: read again
            except Exception:
                if cached is None:
                    raise
                # judged against a cached copy that may be stale: again, from etcd
        raise Conflict(kind, name)

    def apply(self, kind: Kind, namespace: str | None, name: str, raw: bytes, *, manager: str, force: bool,
              dry_run: bool, field_validation: str | None) -> tuple[Obj, list[str], bool]:
        """Server-side apply of configuration `raw` (YAML or JSON) by `manager`: the object
        created from it, or the live one with it merged in (`fieldmanager.apply`), written at
        the revision read (a lost race is read again); (object, warnings, created)."""
        import yaml

        from orchestrator.apiserver import fieldmanager

        if not manager:
            raise bad_request("PATCH, application/apply-patch+yaml: fieldManager is required for apply requests")
        try:
            body = yaml.safe_load(raw.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            raise bad_request(f"error decoding YAML: {str(e).splitlines()[0]}") from None
        config = self.prepared(kind, namespace, body, name=name)
        md = config["metadata"]
        if md.get("managedFields"):
            raise APIError(422, f'{kind.kind} "{name}" is invalid: metadata.managedFields: Invalid value: '
                                "must be empty when applying", reason="Invalid")
        md.pop("managedFields", None)
        want = md.pop("resourceVersion", None)
        for _ in range(PATCH_RETRIES):
            current = self.objects.get(kind, name, namespace)
            if want and (current is None or want != meta.meta(current).get("resourceVersion")):
                raise Conflict(kind, name)
            try:
                merged = fieldmanager.apply(current, config, kind.kind, manager, force=force, now=self._clock())
            except fieldmanager.ApplyConflict as e:
                raise APIError(409, str(e), reason="Conflict", details={
                    "name": name, "kind": kind.resource,
                    "causes": [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}" using {kind.api_version}',
                                "field": fieldmanager.path_text(p)} for m, p in e.conflicts]}) from None
            try:
                if current is None:
                    return (*self.create(kind, namespace, merged, dry_run=dry_run,
                                         field_validation=field_validation), True)
                merged["metadata"]["resourceVersion"] = meta.meta(current).get("resourceVersion")
                return (*self._replace(kind, current, merged, subresource=None, dry_run=dry_run,
                                       field_validation=field_validation, conditional=True), False)
            except (Conflict, AlreadyExists):
                continue  # lost a race: read again
        raise Conflict(kind, name)

    def _patch_once(self, kind: Kind, namespace: str | None, name: str, patch: bytes, content_type: str,
                    current: Obj, *, subresource: str | None, dry_run: bool,
                    field_validation: str | None, manager: str = "") -> tuple[Obj, list[str]]:
        """`patch` applied to `current` and written at its revision (Conflict when it moved)."""
        rv = meta.meta(current).get("resourceVersion")
        new = patched(kind, current, patch, content_type)
        if not isinstance(new, dict):
            raise bad_request("the patch did not produce an object")
        want = meta.meta(new).get("resourceVersion")
        if want and want != rv:  # the patch names a resourceVersion: a precondition
            raise _Pinned(kind, name)
        new = self.prepared(kind, namespace, new, name=name, adopt=True)  # apply_patch's own copy
        new["metadata"]["resourceVersion"] = rv
        return self._replace(kind, current, new, subresource=subresource, dry_run=dry_run,
                             field_validation=field_validation, conditional=True, manager=manager,
                             owned=True)

    def _replace(self, kind: Kind, current: Obj, obj: Obj, *, subresource: str | None,
                 dry_run: bool, field_validation: str | None, conditional: bool,
                 manager: str = "", owned: bool = False) -> tuple[Obj, list[str]]:
        """`obj` written over `current`. `owned`: both are this write's own (a patch's: its
        decode of the stored object and the patched copy), so the object assembled from them
        is admitted in place."""
        if subresource == "status":
            new = tree.copy(current)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
        elif subresource == "ephemeralcontainers":
            from orchestrator.validation import InvalidObject
            from orchestrator.validation.pods import ephemeral_update_errors

            new = tree.copy(current)
            given = (obj.get("spec") or {}).get("ephemeralContainers")
            if given:
                new.setdefault("spec", {})["ephemeralContainers"] = given
            else:
                new.get("spec", {}).pop("ephemeralContainers", None)
            errors = ephemeral_update_errors(current, new)
            if errors:
                raise InvalidObject(kind.kind, meta.name(current), errors)
        else:
            new = obj
            md = new.setdefault("metadata", {})
            cur_md = meta.meta(current)
            for f in SYSTEM_METADATA:
                md.pop(f, None)
                if f in cur_md:
                    md[f] = cur_md[f]  # type: ignore[literal-required]
            if kind.kind in WITH_STATUS:
                if "status" in current:
                    # shared with `current` until admission, which rebuilds the whole tree
                    # (defaults.drop_nulls) before anything can change it
                    new["status"] = current["status"]
                else:
                    new.pop("status", None)
            if kind == SERVICE:
                keep_allocated(current, new)
            if manager:
                from orchestrator.apiserver import fieldmanager

                fieldmanager.update(current, new, kind.kind, manager, now=self._clock())
        md = new.setdefault("metadata", {})
        if conditional:
            md["resourceVersion"] = meta.meta(obj).get("resourceVersion") or \
                meta.meta(current).get("resourceVersion")
        else:
            md.pop("resourceVersion", None)
        admitted, warnings = self._admitted(new, field_validation, current, in_place=owned)
        if self._guard is not None and kind in RBAC_KINDS:
            self._guard(admitted, current)
        if dry_run:
            return admitted, warnings
        # the pod's spec may change here only by the ephemeral containers checked above
        return self.applier.update(admitted, current=current, check=subresource != "ephemeralcontainers",
                                   adopt=True), warnings  # admission's own tree, as on create

    # ------------------------------------------------------------------ delete
    def delete(self, kind: Kind, namespace: str | None, name: str, options: Mapping[str, Any], *,
               dry_run: bool = False) -> tuple[Obj, bool]:
        """Delete one object as DeleteOptions say; the object (still there, being deleted, or
        its last state) and whether it is gone. DeleteOptions' own `dryRun` counts as the
        query's does (client-go puts it there: `kubectl delete --dry-run=server`)."""
        dry = options.get("dryRun") or []
        if not isinstance(dry, list) or any(v not in ("All", "") for v in dry):
            raise bad_request(f'dryRun: Unsupported value: "{dry}": supported values: "All"')
        dry_run = dry_run or "All" in dry
        current = self.get(kind, namespace, name)
        pre = options.get("preconditions") or {}
        if not isinstance(pre, dict):
            raise bad_request("preconditions must be an object")
        cur_md = meta.meta(current)
        if pre.get("uid") and pre["uid"] != cur_md.get("uid"):
            raise APIError(409, f'Operation cannot be fulfilled on {kind.resource} "{name}": '
                                f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                                f"object meta: {cur_md.get('uid')}", reason="Conflict",
                           details={"name": name, "kind": kind.resource})
        if pre.get("resourceVersion") and pre["resourceVersion"] != cur_md.get("resourceVersion"):
            raise APIError(409, f'Operation cannot be fulfilled on {kind.resource} "{name}": '
                                "Precondition failed: ResourceVersion in precondition: "
                                f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                f"{cur_md.get('resourceVersion')}", reason="Conflict",
                           details={"name": name, "kind": kind.resource})
        if kind == NAMESPACE and name in PROTECTED_NAMESPACES:
            raise APIError(403, f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                           details={"name": name, "kind": "namespaces"})
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise APIError(422, f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: '
                                f'Unsupported value: "{policy}": supported values: "Foreground", '
                                '"Background", "Orphan", "nil"', reason="Invalid")
        grace = options.get("gracePeriodSeconds")
        if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
            raise bad_request("gracePeriodSeconds must be an integer")
        if dry_run:
            return current, False
        if kind.kind == "ReplicationController" and policy == "Foreground":
            marked = self.objects.guaranteed_update(kind, name, namespace, self._foreground_mark)
            return marked, False
        cascade: Cascade = "orphan" if policy == "Orphan" else "background"
        try:
            gone = self.deleter.delete(kind, name, namespace, cascade=cascade,
                                       grace=max(grace, 0) if grace is not None else None)
        except NotFoundError:
            raise not_found(kind.resource, name, group=kind.group) from None
        if not gone:
            raise not_found(kind.resource, name, group=kind.group)
        after = self.objects.get(kind, name, namespace)
        if after is not None and meta.uid(after) == meta.uid(current):
            return after, False
        return current, True

    def _foreground_mark(self, rc: Obj) -> Obj | None:
        """Foreground: the RC is marked (deletionTimestamp, no orphaning) and stays until the
        replication manager has deleted its pods, then deletes it (kube's foregroundDeletion
        finalizer, which that manager would wait on forever, is not set)."""
        md = rc.setdefault("metadata", {})
        if md.get("deletionTimestamp"):
            return None
        md["deletionTimestamp"] = meta.from_epoch(self._clock())
        return rc

    # ------------------------------------------------------------------ subresources
    def evict(self, namespace: str, name: str, body: Any, *, dry_run: bool = False) -> None:
        """pods/eviction (a policy/v1 or v1beta1 Eviction, what `kubectl drain` sends): the
        pod's deletion with the Eviction's deleteOptions, once the PodDisruptionBudget that
        covers it (`_take_disruption`) allows it."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        if body.get("kind") not in (None, "Eviction") or \
                body.get("apiVersion") not in (None, "policy/v1", "policy/v1beta1"):
            raise bad_request(f'the body is a {body.get("apiVersion")}, Kind={body.get("kind")}, '
                              "not a policy/v1 Eviction")
        md = body.get("metadata") or {}
        if not isinstance(md, dict) or (md.get("name") and md["name"] != name):
            raise bad_request("name in URL does not match name in Eviction object")
        options = body.get("deleteOptions") or {}
        if not isinstance(options, dict):
            raise bad_request("deleteOptions must be an object")
        pod = self.get(POD, namespace, name)
        phase = (pod.get("status") or {}).get("phase")
        if phase not in ("Succeeded", "Failed", "Pending") and not meta.is_deleting(pod):  # kube's canIgnorePDB
            from orchestrator.validation.disruption import matching_pods

            budgets = [b for b in self.objects.list(POD_DISRUPTION_BUDGET, namespace)[0] if matching_pods(b, [pod])]
            if len(budgets) > 1:
                raise APIError(500, "This pod has more than one PodDisruptionBudget, which the eviction "
                                    "subresource does not support.", reason="InternalError")
            if budgets:
                self._take_disruption(budgets[0], pod, dry_run=dry_run)
        self.delete(POD, namespace, name, options, dry_run=dry_run)

    def _take_disruption(self, budget: Obj, pod: Obj, *, dry_run: bool) -> None:
        """kube's checkAndDecrement: 429 TooManyRequests while the budget's status is not for its
        spec yet or allows no disruption; else one disruption taken (the pod in its
        `disruptedPods`, so the controller does not count it healthy while it goes). A pod that
        is not Ready costs nothing while the budget has its healthy pods (IfHealthyBudget), or
        ever (AlwaysAllow)."""
        from orchestrator.objects.pod import is_ready

        name = meta.name(pod)

        def refused(cause: str) -> APIError:
            return APIError(429, "Cannot evict pod as it would violate the pod's disruption budget.",
                            reason="TooManyRequests", details={"causes": [{"reason": "DisruptionBudget",
                                                                           "message": cause}]})

        def take(b: Obj) -> Obj | None:
            st = b.get("status") or {}
            spec = b.get("spec") or {}
            if int(st.get("observedGeneration") or 0) < int(meta.meta(b).get("generation") or 1):
                raise refused(f"The disruption budget {meta.name(b)} is still being processed by the server.")
            if not is_ready(pod) and (spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow" or
                                      int(st.get("currentHealthy") or 0) >= int(st.get("desiredHealthy") or 0)):
                return None
            allowed = int(st.get("disruptionsAllowed") or 0)
            if allowed <= 0:
                raise refused(f"The disruption budget {meta.name(b)} needs {int(st.get('desiredHealthy') or 0)} "
                              f"healthy pods and has {int(st.get('currentHealthy') or 0)} currently")
            if dry_run:
                return None
            st["disruptionsAllowed"] = allowed - 1
            st["disruptedPods"] = {**(st.get("disruptedPods") or {}), name: meta.from_epoch(self._clock())}
            b["status"] = st
            return b

        self.objects.guaranteed_update(POD_DISRUPTION_BUDGET, meta.name(budget), meta.namespace(budget), take)

    def bind(self, namespace: str, name: str, body: Any) -> None:
        """pods/binding: set spec.nodeName with the scheduler's compare-and-swap; 409 when the
        pod is already bound or being deleted."""
        from orchestrator import scheduling

        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        target = body.get("target") or {}
        node = target.get("name") if isinstance(target, dict) else None
        if not node or not isinstance(node, str):
            raise APIError(422, f'Binding "{name}" is invalid: target.name: Required value',
                           reason="Invalid", details={"name": name, "kind": "Binding", "causes": [
                               {"reason": "FieldValueRequired", "message": "Required value",
                                "field": "target.name"}]})
        if target.get("kind") not in (None, "", "Node"):
            raise bad_request(f'a binding target must be a Node, not "{target.get("kind")}"')
        bname = (body.get("metadata") or {}).get("name")
        if bname and bname != name:
            raise bad_request(f"the name of the binding ({bname}) does not match the pod ({name})")

        def mutate(p: Obj) -> Obj:
            return scheduling.bound(p, node, now=datetime.fromtimestamp(self._clock(), UTC))

        try:
            self.objects.guaranteed_update(POD, name, namespace, mutate)
        except scheduling.BindingRefused as e:
            raise APIError(409, f'Operation cannot be fulfilled on pods/binding "{name}": {e}',
                           reason="Conflict", details={"name": name, "kind": "pods/binding"}) from None
        except NotFoundError:
            raise not_found("pods", name) from None


def patched(kind: Kind, current: Obj, patch: bytes, content_type: str) -> Any:
    """`patch` (of `content_type`) applied to a copy of `current` (apply_patch's own); a bad
    patch is the APIError kube answers with (400, 422, 409 ...)."""
    from orchestrator.apiserver.patch import apply_patch

    try:
        return apply_patch(kind, current, patch, content_type)
    except APIError:
        raise
    except Exception as e:
        raise _patch_error(e) from e


class _Pinned(Conflict):
    """A patch's own resourceVersion is not the object's: 409 at once, no retry."""


def _patch_error(e: Exception) -> APIError:
    code = getattr(e, "code", None)  # patch.PatchError: the Status to answer with
    if isinstance(code, int) and 400 <= code < 600:
        reason = getattr(e, "reason", None)
        return APIError(code, str(e), reason=reason if isinstance(reason, str) else None)
    if isinstance(e, ValueError | TypeError | KeyError | IndexError):
        return bad_request(f"the patch could not be applied: {e}")
    from orchestrator.apiserver.status import from_exception

    mapped = from_exception(e)
    if mapped is None:
        raise e
    return mapped
