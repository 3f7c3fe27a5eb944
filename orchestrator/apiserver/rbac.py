"""`rbac.authorization.k8s.io/v1`: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings.

They are objects like any other here: stored in etcd under `<prefix>/registry/<resource>/...`,
validated and defaulted by `orchestrator.validation.rbac`, with every verb, selectors, paging,
watch and Tables (kube's columns: NAME, CREATED AT for roles; NAME, ROLE, AGE and, wide,
USERS, GROUPS, SERVICEACCOUNTS for bindings). So `kubectl create role|rolebinding|
clusterrole|clusterrolebinding`, `kubectl apply -f` of a manifest carrying them (every Helm
chart does), and the official client's `RbacAuthorizationV1Api` work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy

from orchestrator.apiserver import rbacpolicy
from orchestrator.apiserver.auth import User
from orchestrator.apiserver.handlers import add_group_routes, not_found_path, parse_path, serve
from orchestrator.apiserver.rbacpolicy import Attributes
from orchestrator.apiserver.satokens import SA_GROUPS, SA_USER_PREFIX
from orchestrator.apiserver.status import APIError
from orchestrator.apiserver.watchcache import KindCache
from orchestrator.objects import meta
from orchestrator.objects.meta import (
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    RBAC_KINDS,
    RBAC_VERSION,
    ROLE,
    ROLE_BINDING,
    Kind,
)
from orchestrator.storage import AlreadyExists, ObjectStore
from orchestrator.validation import admit

Obj = dict[str, Any]
GROUP, _, VERSION = RBAC_VERSION.rpartition("/")
RESOURCES = {k.resource: k for k in RBAC_KINDS}


def api_group() -> Obj:
    gv = {"groupVersion": RBAC_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [gv], "preferredVersion": gv}


def resource_list() -> Obj:
    from orchestrator.apiserver.discovery import ALL_VERBS, singular

    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": RBAC_VERSION, "resources": [
        {"name": k.resource, "singularName": singular(k), "namespaced": k.namespaced, "kind": k.kind,
         "verbs": ALL_VERBS} for k in sorted(RBAC_KINDS, key=lambda k: k.resource)]}


async def rbac_api(request: web.Request) -> web.StreamResponse:
    t = parse_path(request.match_info.get("tail", ""), RESOURCES)
    if t.subresource is not None:  # these kinds have none
        raise not_found_path()
    return await serve(request, t)


def add_routes(app: web.Application) -> None:
    add_group_routes(app, RBAC_VERSION, resource_list, rbac_api)


# --------------------------------------------------------------------------- the authorizer
class RBACAuthorizer:
    """kube-apiserver's `--authorization-mode=RBAC` (after its system:masters short cut): each
    request's attributes judged against the stored roles and bindings, as the watch caches
    have them, plus the bootstrap policy (`rbacpolicy`; stored at first start, `ensure_bootstrap`).

    The policy is rebuilt when any of the four caches has changed since it was built, and its
    answers are kept until then (a request's attributes are few: a user, a verb, a resource and
    a namespace), so a request pays a dict lookup. Before the caches have listed (the first
    moments after a start), only the bootstrap policy counts."""

    def __init__(self, caches: Callable[[Kind], KindCache], read_only_group: str) -> None:
        self._caches = caches
        self.read_only_group = read_only_group
        self._lock = threading.Lock()
        # (the caches' change counts it was built at, the policy, its answers so far): replaced
        # whole, so an answer is never kept beside a policy it was not computed from
        self._state: tuple[tuple[int, ...] | None, rbacpolicy.Policy, dict[Attributes, tuple[bool, str]]] = (
            None, rbacpolicy.Policy([], [], [], [], read_only_group=read_only_group), {})

    def _current(self) -> tuple[rbacpolicy.Policy, dict[Attributes, tuple[bool, str]]]:
        state = self._state
        caches = [self._caches(k) for k in (CLUSTER_ROLE, CLUSTER_ROLE_BINDING, ROLE, ROLE_BINDING)]
        key = tuple(c.changes if c.ready() else -1 for c in caches)
        if key != state[0]:
            with self._lock:
                state = self._state
                if key != state[0]:
                    policy = rbacpolicy.Policy(*(c.current_objects() for c in caches),
                                               read_only_group=self.read_only_group)
                    state = self._state = (key, policy, {})
        return state[1], state[2]

    def policy(self) -> rbacpolicy.Policy:
        return self._current()[0]

    def decide(self, a: Attributes) -> tuple[bool, str]:
        """(allowed, kube's reason)."""
        if rbacpolicy.MASTERS in a.user.groups:
            return True, ""
        policy, answers = self._current()
        got = answers.get(a)
        if got is None:
            got = policy.allows(a)
            if len(answers) > MAX_ANSWERS:
                answers.clear()
            answers[a] = got
        return got

    def allows(self, a: Attributes) -> bool:
        return self.decide(a)[0]

    # ------------------------------------------------------------------ escalation
    def check_write(self, user: User, obj: Obj, current: Obj | None) -> None:
        """kube's policy-based storage of the four kinds: a user may write a role only with rules
        they hold themselves (or the `escalate` verb on it), and a binding only to a role whose
        rules they hold (or the `bind` verb on it). APIError 403 otherwise. A write that leaves
        the rules (the roleRef and subjects) as they were is not checked."""
        kind = str(obj.get("kind"))
        md = obj.get("metadata") or {}
        name = str(md.get("name") or "")
        namespace = str(md.get("namespace") or "") if kind in ("Role", "RoleBinding") else ""
        resource = RESOURCE_OF[kind]
        if rbacpolicy.MASTERS in user.groups:
            return
        policy = self.policy()
        if kind in ("Role", "ClusterRole"):
            fields = ("rules", "aggregationRule")
            if current is not None and all(current.get(f) == obj.get(f) for f in fields):
                return
            if self.allows(Attributes(user, "escalate", namespace=namespace, api_group=GROUP, resource=resource,
                                      name=name)):
                return
            wanted = list(obj.get("rules") or [])
            if obj.get("aggregationRule"):  # kube: aggregating takes full authority
                wanted += [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                           {"nonResourceURLs": ["*"], "verbs": ["*"]}]
        else:
            if current is not None and all(current.get(f) == obj.get(f) for f in ("roleRef", "subjects")):
                return
            ref = obj.get("roleRef") or {}
            if self.allows(Attributes(user, "bind", namespace=namespace, api_group=GROUP, resource=RESOURCE_OF.get(str(ref.get("kind")), ""),
                                      name=str(ref.get("name") or ""))):
                return
            rules = policy.role_rules(ref, namespace)
            if rules is None:
                raise _forbidden(resource, name, f'{str(ref.get("kind")).lower()}.{GROUP} "{ref.get("name")}" not found')
            wanted = rules
        missing = policy.covers(user, namespace, wanted)
        if missing:
            raise _forbidden(resource, name, rbacpolicy.escalation_message(user, missing))


MAX_ANSWERS = 10_000
RESOURCE_OF = {k.kind: k.resource for k in RBAC_KINDS}


def _forbidden(resource: str, name: str, why: str) -> APIError:
    return APIError(403, f'{resource}.{GROUP} "{name}" is forbidden: {why}', reason="Forbidden",
                    details={"name": name, "group": GROUP, "kind": resource})


def ensure_bootstrap(objects: ObjectStore, read_only_group: str) -> list[str]:
    """Store the bootstrap ClusterRoles and ClusterRoleBindings that are not stored yet (kube's
    RBAC post-start hook; one that was edited or deleted since is left as it is only while it
    exists: a deleted one comes back at the next start, as in kube). The names created."""
    made = []
    stored = {(kind.kind, meta.name(o)) for kind in (CLUSTER_ROLE, CLUSTER_ROLE_BINDING) for o in objects.list(kind)[0]}
    for obj in [*rbacpolicy.bootstrap_cluster_roles(), *rbacpolicy.bootstrap_cluster_role_bindings(read_only_group)]:
        kind = CLUSTER_ROLE if obj["kind"] == "ClusterRole" else CLUSTER_ROLE_BINDING
        if (kind.kind, obj["metadata"]["name"]) in stored:
            continue
        try:
            objects.create(admit(obj).object)
        except AlreadyExists:
            continue  # another API server's, a moment ago
        made.append(f'{kind.resource}/{obj["metadata"]["name"]}')
    return made


# --------------------------------------------------------------------------- impersonation
IMPERSONATE_USER = "Impersonate-User"
IMPERSONATE_GROUP = "Impersonate-Group"
IMPERSONATE_UID = "Impersonate-Uid"


def impersonated(authorizer: RBACAuthorizer, user: User, headers: CIMultiDictProxy[str]) -> User:
    """The user a request acts as (kube's impersonation filter: `kubectl --as NAME --as-group
    G`, `kubectl auth can-i --as`): the `Impersonate-User`, `-Group` and `-Uid` headers, each
    allowed only with the `impersonate` verb on users (or the service account named),
    groups and uids (authentication.k8s.io) by name. `user` itself when there are none."""
    name = headers.get(IMPERSONATE_USER)
    groups = list(headers.getall(IMPERSONATE_GROUP, []))
    uid = headers.get(IMPERSONATE_UID)
    if name is None and not groups and uid is None:
        return user
    if not name:
        raise APIError(400, "requested impersonation of groups or a uid without impersonating a user",
                       reason="BadRequest")

    def may(resource: str, target: str, *, namespace: str = "", group: str = "") -> None:
        a = Attributes(user, "impersonate", namespace=namespace, api_group=group, resource=resource, name=target)
        if not authorizer.allows(a):
            where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            raise APIError(403, f'{resource} "{target}" is forbidden: User "{user.name}" cannot impersonate '
                                f'resource "{resource}" in API group "{group}" {where}',
                           details={"name": target, "kind": resource, **({"group": group} if group else {})})

    extra: list[str] = []
    if name.startswith(SA_USER_PREFIX) and name.count(":") == 3:
        _, _, ns, account = name.split(":")
        may("serviceaccounts", account, namespace=ns)
        if not groups:
            extra = [SA_GROUPS, f"{SA_GROUPS}:{ns}"]
    else:
        may("users", name)
    for g in groups:
        may("groups", g)
    if uid is not None:
        may("uids", uid, group="authentication.k8s.io")
    return User(name, uid or "", tuple(dict.fromkeys([*groups, *extra])))
