"""RBAC authorization: kube's rules, bindings and bootstrap roles, evaluated over a snapshot.

A pure module: the API server hands `Policy` the stored ClusterRoles, ClusterRoleBindings, Roles
and RoleBindings (rbac.authorization.k8s.io/v1 objects as JSON decodes them) and asks it

* `allows(attributes)` — kube's RBAC authorizer (plugin/pkg/auth/authorizer/rbac/rbac.go), with
  the privileged-group authorizer kube-apiserver puts in front of it: `system:masters` may do
  anything;
* `rules_for(user, namespace)` — every rule that applies, what SelfSubjectRulesReview lists;
* `covers(user, namespace, rules)` — kube's escalation check (ConfirmNoEscalation / Covers): the
  pieces of `rules` the user does not hold, so that creating a Role cannot grant more than one has;
* `role_rules(roleRef, namespace)` — the rules a binding's roleRef resolves to.

What applies to a user in a namespace, as kube's DefaultRuleResolver visits it: every
ClusterRoleBinding naming the user, then (for a namespaced request) every RoleBinding of that
namespace naming them. A RoleBinding's roleRef to a Role finds the Role in the binding's own
namespace; one to a ClusterRole grants its rules in the binding's namespace only. So
cluster-scoped requests, and non-resource requests (/healthz, /api, ...: no namespace), are
only matched through ClusterRoleBindings.

Where we differ from kube:

* ClusterRole aggregation (`aggregationRule`) is resolved here when the snapshot is built, where
  kube's authorizer reads the union its clusterrole-aggregation controller wrote into the stored
  role's `.rules` (ours writes it too, `controllers.clusterrole_aggregation`, for readers); the
  effect on authorization is the same, without the controller's delay. An aggregated role's
  own `.rules` are ignored (the controller overwrites them).
* The bootstrap roles and bindings (a subset of kube's: cluster-admin, admin/edit/view and their
  aggregate-to-* parts, system:discovery, system:basic-user, system:public-info-viewer, plus
  netplane's `netplane:read-only` and `netplane:cluster-reader`) are merged in at read time, so
  they hold before the API server has stored them (`rbac.ensure_bootstrap`, at each start, makes
  the missing ones) and after one is deleted; a stored object of the same name replaces its
  bootstrap one whole (kube reconciles instead, unless autoupdate is off).
* Objects that would fail validation (wrong types, rules that are not lists, ...) are skipped
  with a warning rather than being impossible; a skipped rule grants nothing (deny by default).
* A denial's reason is always "" (kube's names rule-resolution errors, e.g. a missing role).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.apiserver.auth import AUTHENTICATED, DEFAULT_READ_ONLY_GROUP, User
from orchestrator.apiserver.satokens import username
from orchestrator.objects.selector import SelectorError, from_label_selector

log = logging.getLogger(__name__)

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_API_VERSION = f"{RBAC_GROUP}/v1"
ALL = "*"
MASTERS = "system:masters"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
BOOTSTRAP_LABEL = ("kubernetes.io/bootstrapping", "rbac-defaults")
AUTOUPDATE_ANNOTATION = "rbac.authorization.kubernetes.io/autoupdate"
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"
READ_ONLY_BINDING = "netplane:read-only"
CLUSTER_READER = "netplane:cluster-reader"


@dataclass(frozen=True)
class Attributes:
    """One request as the authorizer sees it (kube's authorizer.Attributes)."""

    user: User
    verb: str
    resource_request: bool = True
    namespace: str = ""
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""


# --------------------------------------------------------------------------- users and subjects
def groups_of(user: User) -> tuple[str, ...]:
    """The user's groups as kube's authenticators leave them: system:authenticated added
    (AuthenticatedGroupAdder) unless the user is system:anonymous, who is in
    system:unauthenticated instead, or already carries one of the two. No duplicates."""
    groups = list(dict.fromkeys(user.groups))
    if user.name == ANONYMOUS:
        if UNAUTHENTICATED not in groups:
            groups.append(UNAUTHENTICATED)
    elif AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return tuple(groups)


def _subject_applies(subject: Any, name: str, groups: Sequence[str], binding_namespace: str) -> bool:
    if not isinstance(subject, Mapping):
        return False
    kind, sname = subject.get("kind"), subject.get("name")
    if not isinstance(sname, str):
        return False
    if kind == "User":
        return name == sname
    if kind == "Group":
        return sname in groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace")
        sa_ns = ns if isinstance(ns, str) and ns else binding_namespace
        return bool(sa_ns) and name == username(sa_ns, sname)
    return False


def applies_to(subject: Mapping[str, Any], user: User, binding_namespace: str) -> bool:
    """kube's appliesToUser: a User subject by name, a Group by membership (system:authenticated
    included, see `groups_of`), a ServiceAccount as the user system:serviceaccount:<ns>:<name>,
    its namespace defaulting to the binding's (none for a ClusterRoleBinding: no match)."""
    return _subject_applies(subject, user.name, groups_of(user), binding_namespace)


def _describe_subject(subject: Mapping[str, Any], binding_namespace: str) -> str:
    """kube's describeSubject; a ServiceAccount reads "name/namespace"."""
    kind, name = str(subject.get("kind", "")), str(subject.get("name", ""))
    if kind == "ServiceAccount":
        ns = subject.get("namespace")
        return f"{kind} {_q(name + '/' + (ns if isinstance(ns, str) and ns else binding_namespace))}"
    return f"{kind} {_q(name)}"


def _q(s: str) -> str:
    """Go's %q, near enough for names."""
    return json.dumps(s, ensure_ascii=False)


def _q_list(items: Iterable[str]) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(_q(s) for s in items) + "]"


# --------------------------------------------------------------------------- rules
_RULE_FIELDS = (("verbs", "verbs"), ("api_groups", "apiGroups"), ("resources", "resources"),
                ("resource_names", "resourceNames"), ("urls", "nonResourceURLs"))


@dataclass(frozen=True)
class _Rule:
    """A PolicyRule with its lists as tuples (order kept: aggregation de-duplicates as kube's
    DeepEqual does)."""

    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, empty lists left out (verbs always there, as kube's)."""
        out: dict[str, Any] = {"verbs": list(self.verbs)}
        for attr, key in _RULE_FIELDS[1:]:
            value = getattr(self, attr)
            if value:
                out[key] = list(value)
        return out


def _strings(value: Any) -> tuple[str, ...] | None:
    """A list of strings as a tuple; None (or absent) is empty; anything else is malformed."""
    if value is None:
        return ()
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _parse_rule(raw: Any) -> _Rule | None:
    if not isinstance(raw, Mapping):
        return None
    fields: dict[str, tuple[str, ...]] = {}
    for attr, key in _RULE_FIELDS:
        value = _strings(raw.get(key))
        if value is None:
            return None
        fields[attr] = value
    return _Rule(**fields)


def _parse_rules(raw: Any, where: str) -> tuple[_Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        log.warning("RBAC: %s: rules is not a list; it grants nothing", where)
        return ()
    out: list[_Rule] = []
    for i, item in enumerate(raw):
        rule = _parse_rule(item)
        if rule is None:
            log.warning("RBAC: %s: rule %d is malformed; skipped", where, i)
        else:
            out.append(rule)
    return tuple(out)


def _verb_matches(rule: _Rule, verb: str) -> bool:
    return ALL in rule.verbs or verb in rule.verbs


def _group_matches(rule: _Rule, group: str) -> bool:
    return ALL in rule.api_groups or group in rule.api_groups


def _resource_matches(rule: _Rule, combined: str, subresource: str) -> bool:
    """kube's ResourceMatches: "*", the exact "resource[/subresource]", or "*/subresource" for
    any resource's subresource. "pods/*" is no wildcard: it matches only itself."""
    for r in rule.resources:
        if r == ALL or r == combined or (subresource and r == "*/" + subresource):
            return True
    return False


def _name_matches(rule: _Rule, name: str) -> bool:
    """Any name when the rule lists none; else only those (so never a list or a create, which
    have no name)."""
    return not rule.resource_names or name in rule.resource_names


def _url_matches(rule: _Rule, path: str) -> bool:
    """kube's NonResourceURLMatches: "*", the exact path, or a prefix ending in "*"."""
    for u in rule.urls:
        if u == ALL or u == path or (u.endswith("*") and path.startswith(u.rstrip("*"))):
            return True
    return False


def _allows(rule: _Rule, a: Attributes) -> bool:
    if not _verb_matches(rule, a.verb):
        return False
    if not a.resource_request:
        return _url_matches(rule, a.path)
    combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    return (_group_matches(rule, a.api_group) and _resource_matches(rule, combined, a.subresource)
            and _name_matches(rule, a.name))


def rule_allows(rule: Mapping[str, Any], a: Attributes) -> bool:
    """kube's RuleAllows for one PolicyRule (a malformed rule allows nothing)."""
    parsed = _parse_rule(rule)
    return parsed is not None and _allows(parsed, a)


# --------------------------------------------------------------------------- covers (escalation)
def _breakdown(rule: _Rule) -> list[_Rule]:
    """kube's BreakdownRule: one rule per (group, resource, verb[, name]) and per (url, verb)."""
    out: list[_Rule] = []
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    out.extend(_Rule((verb,), (group,), (resource,), (name,)) for name in rule.resource_names)
                else:
                    out.append(_Rule((verb,), (group,), (resource,)))
    out.extend(_Rule((verb,), urls=(url,)) for url in rule.urls for verb in rule.verbs)
    return out


def _resources_cover(owner: Sequence[str], wanted: Sequence[str]) -> bool:
    """kube's resourceCoversAll: "*", the same names, or "*/sub" for each "resource/sub"."""
    if ALL in owner:
        return True
    for r in wanted:
        if r in owner:
            continue
        if "/" not in r or "*/" + r.split("/", 1)[1] not in owner:
            return False
    return True


def _url_covers(owner: str, path: str) -> bool:
    return owner == path or (owner.endswith("*") and path.startswith(owner.rstrip("*")))


def _rule_covers(owner: _Rule, sub: _Rule) -> bool:
    """kube's ruleCovers, `sub` being atomic (from `_breakdown`)."""
    verbs = ALL in owner.verbs or all(v in owner.verbs for v in sub.verbs)
    groups = ALL in owner.api_groups or all(g in owner.api_groups for g in sub.api_groups)
    urls = all(any(_url_covers(o, u) for o in owner.urls) for u in sub.urls)
    if sub.resource_names:
        names = not owner.resource_names or all(n in owner.resource_names for n in sub.resource_names)
    else:
        names = not owner.resource_names
    return verbs and groups and _resources_cover(owner.resources, sub.resources) and names and urls


def _compact(rules: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """kube's CompactRules: rules of one group and one resource, nothing else, merge their verbs."""
    simple: dict[tuple[str, str], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for rule in rules:
        groups, resources = rule.get("apiGroups") or [], rule.get("resources") or []
        if (len(groups) == 1 and len(resources) == 1 and not rule.get("resourceNames")
                and not rule.get("nonResourceURLs")):
            key = (groups[0], resources[0])
            if key in simple:
                simple[key]["verbs"].extend(rule.get("verbs") or [])
            else:
                simple[key] = {"apiGroups": list(groups), "resources": list(resources),
                               "verbs": list(rule.get("verbs") or [])}
        else:
            out.append(dict(rule))
    return out + list(simple.values())


def compact_string(rule: Mapping[str, Any]) -> str:
    """kube's CompactString: `{APIGroups:[""], Resources:["secrets"], Verbs:["delete"]}`."""
    parts = [f"{label}:{_q_list(rule[key])}" for label, key in
             (("APIGroups", "apiGroups"), ("Resources", "resources"), ("NonResourceURLs", "nonResourceURLs"),
              ("ResourceNames", "resourceNames"), ("Verbs", "verbs")) if rule.get(key)]
    return "{" + ", ".join(parts) + "}"


def escalation_message(user: User, missing: Iterable[Mapping[str, Any]]) -> str:
    """The Forbidden message kube gives when `covers` found `missing` (ConfirmNoEscalation's)."""
    lines = sorted({compact_string(r) for r in _compact(missing)})
    return (f"user {_q(user.name)} (groups={_q_list(groups_of(user))}) is attempting to grant RBAC "
            "permissions not currently held:\n" + "\n".join(lines))


# --------------------------------------------------------------------------- stored objects
@dataclass(frozen=True)
class _ClusterRole:
    name: str
    labels: Mapping[str, str]
    rules: tuple[_Rule, ...]
    selectors: tuple[Mapping[str, Any], ...] | None  # None: not aggregated


@dataclass(frozen=True)
class _Binding:
    name: str
    namespace: str  # "" for a ClusterRoleBinding
    ref_kind: str
    ref_name: str
    subjects: tuple[Mapping[str, Any], ...]

    def describe(self, subject: Mapping[str, Any]) -> str:
        """kube's clusterRoleBindingDescriber / roleBindingDescriber."""
        if self.namespace:
            head = f"RoleBinding {_q(self.name + '/' + self.namespace)}"
        else:
            head = f"ClusterRoleBinding {_q(self.name)}"
        return f"{head} of {self.ref_kind} {_q(self.ref_name)} to {_describe_subject(subject, self.namespace)}"


def _meta(obj: Any, kind: str, *, namespaced: bool) -> tuple[str, str, Mapping[str, Any]] | None:
    """(name, namespace, metadata) of a well-formed object, else None (and a warning)."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    ns = meta.get("namespace", "") if isinstance(meta, Mapping) else ""
    if not isinstance(meta, Mapping) or not isinstance(name, str) or not name:
        log.warning("RBAC: skipped a %s without a name: %.200r", kind, obj)
        return None
    if namespaced and (not isinstance(ns, str) or not ns):
        log.warning("RBAC: skipped %s %r without a namespace", kind, name)
        return None
    return name, ns if namespaced else "", meta


def _labels(meta: Mapping[str, Any]) -> dict[str, str]:
    raw = meta.get("labels")
    if not isinstance(raw, Mapping):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def _parse_cluster_role(obj: Any) -> _ClusterRole | None:
    got = _meta(obj, "ClusterRole", namespaced=False)
    if got is None:
        return None
    name, _, meta = got
    agg = obj.get("aggregationRule")
    selectors: tuple[Mapping[str, Any], ...] | None = None
    if agg is not None:
        raw = agg.get("clusterRoleSelectors") if isinstance(agg, Mapping) else None
        if not isinstance(raw, list | tuple):
            # an aggregated role whose selectors we cannot read: its rules are the controller's,
            # which it could not compute either; grant nothing
            log.warning("RBAC: ClusterRole %r has a malformed aggregationRule; it grants nothing", name)
            raw = ()
        selectors = tuple(s for s in raw if isinstance(s, Mapping))
    return _ClusterRole(name, _labels(meta), _parse_rules(obj.get("rules"), f"ClusterRole {name!r}"), selectors)


def _parse_binding(obj: Any, kind: str, *, namespaced: bool) -> _Binding | None:
    got = _meta(obj, kind, namespaced=namespaced)
    if got is None:
        return None
    name, ns, _ = got
    ref = obj.get("roleRef")
    ref_kind = ref.get("kind") if isinstance(ref, Mapping) else None
    ref_name = ref.get("name") if isinstance(ref, Mapping) else None
    if not isinstance(ref_kind, str) or not isinstance(ref_name, str) or not ref_name:
        log.warning("RBAC: skipped %s %r: malformed roleRef", kind, name)
        return None
    subjects = obj.get("subjects")
    if subjects is None:
        subjects = ()
    if not isinstance(subjects, list | tuple):
        log.warning("RBAC: skipped %s %r: subjects is not a list", kind, name)
        return None
    return _Binding(name, ns, ref_kind, ref_name, tuple(s for s in subjects if isinstance(s, Mapping)))


def _selects(selector: Mapping[str, Any], role: _ClusterRole, owner: str) -> bool:
    try:
        return from_label_selector(selector).matches(role.labels)
    except (SelectorError, AttributeError, TypeError, ValueError) as e:
        log.warning("RBAC: ClusterRole %r: an aggregation selector is invalid (%s); it selects nothing", owner, e)
        return False


def _aggregate(roles: Mapping[str, _ClusterRole]) -> dict[str, tuple[_Rule, ...]]:
    """Effective rules by ClusterRole name, aggregation resolved as the clusterrole aggregation
    controller converges: an aggregated role gets, selector by selector and within one by role
    name, the rules of every other role selected (aggregated ones with their own aggregated
    rules, so view -> edit -> admin chains), duplicates dropped. A cycle is harmless."""
    rules = {n: (() if r.selectors is not None else r.rules) for n, r in roles.items()}
    members: dict[str, list[str]] = {}
    for n, role in sorted(roles.items()):
        if role.selectors is not None:
            members[n] = [m for sel in role.selectors for m in sorted(roles)
                          if m != n and _selects(sel, roles[m], n)]
    for _ in range(len(members) + 1):  # each pass settles one more level of nesting
        changed = False
        for n, ms in members.items():
            new = tuple(dict.fromkeys(rule for m in ms for rule in rules[m]))
            if new != rules[n]:
                rules[n], changed = new, True
        if not changed:
            break
    return rules


def aggregated_rules(cluster_roles: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rules of each aggregated ClusterRole of `cluster_roles` (by name), as kube's
    clusterrole-aggregation controller writes them into its `.rules`."""
    crs = {cr.name: cr for cr in (_parse_cluster_role(obj) for obj in cluster_roles) if cr is not None}
    rules = _aggregate(crs)
    return {n: [r.as_dict() for r in rules[n]] for n, cr in crs.items() if cr.selectors is not None}


class Policy:
    """A snapshot of the stored RBAC objects plus the bootstrap ones."""

    def __init__(self, cluster_roles: Iterable[Mapping[str, Any]], cluster_role_bindings: Iterable[Mapping[str, Any]],
                 roles: Iterable[Mapping[str, Any]], role_bindings: Iterable[Mapping[str, Any]], *,
                 read_only_group: str = DEFAULT_READ_ONLY_GROUP) -> None:
        crs: dict[str, _ClusterRole] = {}
        for obj in [*bootstrap_cluster_roles(), *(cluster_roles or ())]:
            cr = _parse_cluster_role(obj)
            if cr is not None:
                crs[cr.name] = cr  # stored after bootstrap: a stored role replaces its default
        self._cluster_rules = _aggregate(crs)

        crbs: dict[str, _Binding] = {}
        for obj in [*bootstrap_cluster_role_bindings(read_only_group), *(cluster_role_bindings or ())]:
            b = _parse_binding(obj, "ClusterRoleBinding", namespaced=False)
            if b is not None:
                crbs[b.name] = b
        self._cluster_bindings = [crbs[n] for n in sorted(crbs)]

        self._roles: dict[tuple[str, str], tuple[_Rule, ...]] = {}
        for obj in roles or ():
            got = _meta(obj, "Role", namespaced=True)
            if got is not None:
                name, ns, _ = got
                self._roles[(ns, name)] = _parse_rules(obj.get("rules"), f"Role {ns}/{name}")

        rbs: dict[tuple[str, str], _Binding] = {}
        for obj in role_bindings or ():
            b = _parse_binding(obj, "RoleBinding", namespaced=True)
            if b is not None:
                rbs[(b.namespace, b.name)] = b
        self._bindings: dict[str, list[_Binding]] = {}
        for key in sorted(rbs):
            self._bindings.setdefault(key[0], []).append(rbs[key])

    # ------------------------------------------------------------------ resolution
    def _ref_rules(self, kind: str, name: str, namespace: str) -> tuple[_Rule, ...] | None:
        if kind == "ClusterRole":
            return self._cluster_rules.get(name)
        if kind == "Role" and namespace:
            return self._roles.get((namespace, name))
        return None

    def _visit(self, user: User, namespace: str) -> Iterator[tuple[_Binding, Mapping[str, Any], _Rule]]:
        """kube's VisitRulesFor: (binding, the subject that matched, rule), cluster bindings first."""
        groups = groups_of(user)
        bindings: list[_Binding] = list(self._cluster_bindings)
        if namespace:
            bindings += self._bindings.get(namespace, [])
        for b in bindings:
            subject = next((s for s in b.subjects if _subject_applies(s, user.name, groups, b.namespace)), None)
            if subject is None:
                continue
            rules = self._ref_rules(b.ref_kind, b.ref_name, b.namespace)
            if rules is None:
                log.debug("RBAC: %s: %s %r not found", b.describe(subject), b.ref_kind, b.ref_name)
                continue
            for rule in rules:
                yield b, subject, rule

    # ------------------------------------------------------------------ the questions
    def allows(self, a: Attributes) -> tuple[bool, str]:
        """(allowed, reason). system:masters first, as kube-apiserver's privileged-group
        authorizer (its reason is ""), then RBAC: 'RBAC: allowed by ClusterRoleBinding "x" of
        ClusterRole "y" to Group "z"'. Denied: (False, "")."""
        if MASTERS in a.user.groups:
            return True, ""
        namespace = a.namespace if a.resource_request else ""
        for binding, subject, rule in self._visit(a.user, namespace):
            if _allows(rule, a):
                return True, "RBAC: allowed by " + binding.describe(subject)
        return False, ""

    def rules_for(self, user: User, namespace: str) -> list[dict[str, Any]]:
        """Every PolicyRule that applies to `user` in `namespace` ("" = cluster bindings only):
        what SelfSubjectRulesReview lists. Like kube, a namespace's RoleBindings contribute
        non-resource rules here although they never authorize a non-resource request."""
        return [rule.as_dict() for _, _, rule in self._visit(user, namespace)]

    def covers(self, user: User, namespace: str, rules: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The atomic pieces of `rules` (one verb and one group/resource/name, or one verb and
        one URL, as kube's BreakdownRule cuts them) that what `user` holds in `namespace` does not
        cover; [] = no escalation. system:masters holds everything (kube's EscalationAllowed).
        Malformed rules grant nothing and are left out. The caller decides whether an `escalate`
        or `bind` permission lets the user past a non-empty answer, as kube's registry does."""
        wanted = [r for r in (_parse_rule(raw) for raw in rules) if r is not None]
        if MASTERS in user.groups or not wanted:
            return []
        owner = [rule for _, _, rule in self._visit(user, namespace)]
        return [sub.as_dict() for rule in wanted for sub in _breakdown(rule)
                if not any(_rule_covers(o, sub) for o in owner)]

    def role_rules(self, role_ref: Mapping[str, Any], namespace: str) -> list[dict[str, Any]] | None:
        """The rules of the Role (looked up in `namespace`, the binding's) or ClusterRole
        (aggregation resolved) that `role_ref` names; None when there is no such role."""
        if not isinstance(role_ref, Mapping):
            return None
        kind, name = role_ref.get("kind"), role_ref.get("name")
        if not isinstance(kind, str) or not isinstance(name, str):
            return None
        rules = self._ref_rules(kind, name, namespace)
        return None if rules is None else [r.as_dict() for r in rules]


# --------------------------------------------------------------------------- bootstrap policy
# kube's bootstrappolicy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go, as rendered in
# its testdata/cluster-roles.yaml), the roles that matter to a user of the API. Lists are kube's.
_READ = ("get", "list", "watch")
_WRITE = ("create", "delete", "deletecollection", "patch", "update")
_READ_WRITE = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def _r(verbs: Sequence[str], groups: Sequence[str], resources: Sequence[str]) -> dict[str, Any]:
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}


def _urls(verbs: Sequence[str], urls: Sequence[str]) -> dict[str, Any]:
    return {"nonResourceURLs": list(urls), "verbs": list(verbs)}


_AGGREGATE_TO_ADMIN_RULES = (
    _r(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
    _r(_READ_WRITE, ["rbac.authorization.k8s.io"], ["rolebindings", "roles"]),
)

_AGGREGATE_TO_EDIT_RULES = (
    _r(_READ, [""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"]),
    _r(["impersonate"], [""], ["serviceaccounts"]),
    _r(_WRITE, [""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
    _r(["create"], [""], ["pods/eviction"]),
    _r(_WRITE, [""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                      "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"]),
    _r(["create"], [""], ["serviceaccounts/token"]),
    _r(_WRITE, ["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                          "replicasets/scale", "statefulsets", "statefulsets/scale"]),
    _r(_WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
    _r(_WRITE, ["batch"], ["cronjobs", "jobs"]),
    _r(_WRITE, ["extensions"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses",
                                "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"]),
    _r(_WRITE, ["policy"], ["poddisruptionbudgets"]),
    _r(_WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
    _r(_READ_WRITE, ["coordination.k8s.io"], ["leases"]),
)

_AGGREGATE_TO_VIEW_RULES = (
    _r(_READ, [""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                     "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                     "services/status"]),
    _r(_READ, [""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                     "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"]),
    _r(_READ, [""], ["namespaces"]),
    _r(_READ, ["discovery.k8s.io"], ["endpointslices"]),
    _r(_READ, ["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                         "deployments/status", "replicasets", "replicasets/scale", "replicasets/status",
                         "statefulsets", "statefulsets/scale", "statefulsets/status"]),
    _r(_READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    _r(_READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    _r(_READ, ["extensions"], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                               "deployments/status", "ingresses", "ingresses/status", "networkpolicies", "replicasets",
                               "replicasets/scale", "replicasets/status", "replicationcontrollers/scale"]),
    _r(_READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    _r(_READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
)

# name -> (extra labels, aggregated from the label (aggregate-to-<x>) or None, rules)
_BOOTSTRAP_CLUSTER_ROLES: tuple[tuple[str, Mapping[str, str], str | None, tuple[dict[str, Any], ...]], ...] = (
    ("cluster-admin", {}, None, (_r(["*"], ["*"], ["*"]), _urls(["*"], ["*"]))),
    ("admin", {}, "admin", ()),
    ("edit", {AGGREGATE_TO + "admin": "true"}, "edit", ()),
    ("view", {AGGREGATE_TO + "edit": "true"}, "view", ()),
    ("system:aggregate-to-admin", {AGGREGATE_TO + "admin": "true"}, None, _AGGREGATE_TO_ADMIN_RULES),
    ("system:aggregate-to-edit", {AGGREGATE_TO + "edit": "true"}, None, _AGGREGATE_TO_EDIT_RULES),
    ("system:aggregate-to-view", {AGGREGATE_TO + "view": "true"}, None, _AGGREGATE_TO_VIEW_RULES),
    ("system:discovery", {}, None, (_urls(["get"], ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                                    "/openapi", "/openapi/*", "/readyz", "/version", "/version/"]),)),
    ("system:basic-user", {}, None, (
        _r(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
        _r(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
    )),
    ("system:public-info-viewer", {}, None, (_urls(["get"], ["/healthz", "/livez", "/readyz", "/version",
                                                             "/version/"]),)),
    # netplane's: what kube's view leaves out and a network engineer's look needs (the nodes,
    # their heartbeat Leases, kubectl top); bound with view to the read-only group
    (CLUSTER_READER, {}, None, (
        _r(_READ, [""], ["nodes", "nodes/status"]),
        _r(_READ, ["coordination.k8s.io"], ["leases"]),
        _r(["get", "list"], ["metrics.k8s.io"], ["nodes", "pods"]),
    )),
)

_BOOTSTRAP_CLUSTER_ROLE_BINDINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cluster-admin", (MASTERS,)),
    ("system:basic-user", (AUTHENTICATED,)),
    ("system:discovery", (AUTHENTICATED,)),
    ("system:public-info-viewer", (AUTHENTICATED, UNAUTHENTICATED)),
)


def _bootstrap_meta(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "labels": {BOOTSTRAP_LABEL[0]: BOOTSTRAP_LABEL[1], **(labels or {})},
            "annotations": {AUTOUPDATE_ANNOTATION: "true"}}


def bootstrap_cluster_roles() -> list[dict[str, Any]]:
    """kube's default ClusterRoles we serve (fresh objects each call): cluster-admin; admin, edit
    and view, aggregated from the system:aggregate-to-* roles (edit aggregates into admin and
    view into edit, by their labels); system:discovery, system:basic-user and
    system:public-info-viewer; and netplane:cluster-reader (below)."""
    out: list[dict[str, Any]] = []
    for name, labels, aggregate, rules in _BOOTSTRAP_CLUSTER_ROLES:
        obj: dict[str, Any] = {"apiVersion": RBAC_API_VERSION, "kind": "ClusterRole",
                               "metadata": _bootstrap_meta(name, labels)}
        if aggregate is not None:
            obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {AGGREGATE_TO + aggregate: "true"}}]}
        obj["rules"] = copy.deepcopy(list(rules))
        out.append(obj)
    return out


def _group_binding(name: str, role: str, groups: Iterable[str]) -> dict[str, Any]:
    return {"apiVersion": RBAC_API_VERSION, "kind": "ClusterRoleBinding", "metadata": _bootstrap_meta(name),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups]}


def bootstrap_cluster_role_bindings(read_only_group: str = DEFAULT_READ_ONLY_GROUP) -> list[dict[str, Any]]:
    """kube's default ClusterRoleBindings for those roles (cluster-admin to system:masters;
    system:discovery and system:basic-user to system:authenticated; system:public-info-viewer to
    system:authenticated and system:unauthenticated), and netplane's own `netplane:read-only`
    (ClusterRole view to `read_only_group` in every namespace) and `netplane:cluster-reader`
    (that role, to the same group). Fresh objects each call."""
    out = [_group_binding(name, name, groups) for name, groups in _BOOTSTRAP_CLUSTER_ROLE_BINDINGS]
    out.append(_group_binding(READ_ONLY_BINDING, "view", [read_only_group]))
    out.append(_group_binding(CLUSTER_READER, CLUSTER_READER, [read_only_group]))
    return out
