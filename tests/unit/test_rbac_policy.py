"""RBAC (`orchestrator.apiserver.rbacpolicy`): kube's rule matching, bindings, aggregation,
escalation checks and bootstrap roles, over plain dicts as the API server stores them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

from orchestrator.apiserver.auth import User
from orchestrator.apiserver.rbacpolicy import (
    Attributes,
    Policy,
    applies_to,
    bootstrap_cluster_role_bindings,
    bootstrap_cluster_roles,
    compact_string,
    escalation_message,
    groups_of,
    rule_allows,
)

ALICE = User("alice", "u1", ("dev",))
BOB = User("bob")
ANON = User("system:anonymous")
SA = User("system:serviceaccount:a:bot", "sa-1", ("system:serviceaccounts", "system:serviceaccounts:a"))


def res(user: User, verb: str, resource: str, namespace: str = "", *, group: str = "", sub: str = "",
        name: str = "") -> Attributes:
    return Attributes(user, verb, True, namespace, group, resource, sub, name)


def url(user: User, verb: str, path: str) -> Attributes:
    return Attributes(user, verb, resource_request=False, path=path)


def rule(verbs: list[str], resources: list[str] | None = None, groups: list[str] | None = None,
         names: list[str] | None = None, urls: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"verbs": verbs}
    if resources is not None:
        out["resources"] = resources
        out["apiGroups"] = [""] if groups is None else groups
    if names is not None:
        out["resourceNames"] = names
    if urls is not None:
        out["nonResourceURLs"] = urls
    return out


def meta(name: str, namespace: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name}
    if namespace:
        m["namespace"] = namespace
    if labels:
        m["labels"] = labels
    return m


def cluster_role(name: str, *rules: dict[str, Any], labels: dict[str, str] | None = None,
                 aggregate: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                           "metadata": meta(name, labels=labels), "rules": list(rules)}
    if aggregate is not None:
        obj["aggregationRule"] = {"clusterRoleSelectors": aggregate}
    return obj


def role(namespace: str, name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Role", "metadata": meta(name, namespace), "rules": list(rules)}


def user_subject(name: str) -> dict[str, Any]:
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def binding(name: str, ref_kind: str, ref_name: str, *subjects: dict[str, Any], namespace: str = "") -> dict[str, Any]:
    return {"kind": "RoleBinding" if namespace else "ClusterRoleBinding", "metadata": meta(name, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref_name},
            "subjects": list(subjects)}


def policy(cluster_roles: Sequence[Any] = (), crbs: Sequence[Any] = (), roles: Sequence[Any] = (),
           rbs: Sequence[Any] = ()) -> Policy:
    return Policy(cluster_roles, crbs, roles, rbs)


# --------------------------------------------------------------------------- groups and subjects
def test_groups_of_adds_authenticated_once_and_anonymous_is_unauthenticated() -> None:
    assert groups_of(ALICE) == ("dev", "system:authenticated")
    assert groups_of(User("x", "", ("a", "system:authenticated", "a"))) == ("a", "system:authenticated")
    assert groups_of(ANON) == ("system:unauthenticated",)
    assert "system:authenticated" not in groups_of(User("system:anonymous", "", ("system:unauthenticated",)))


def test_applies_to_users_groups_and_service_accounts() -> None:
    assert applies_to(user_subject("alice"), ALICE, "")
    assert not applies_to(user_subject("alic"), ALICE, "")
    assert applies_to({"kind": "Group", "name": "dev"}, ALICE, "")
    assert applies_to({"kind": "Group", "name": "system:authenticated"}, BOB, "")  # added, not carried
    assert not applies_to({"kind": "Group", "name": "system:authenticated"}, ANON, "")
    assert applies_to({"kind": "Group", "name": "system:unauthenticated"}, ANON, "")
    # a User subject named like the service account's user is that user too
    assert applies_to(user_subject("system:serviceaccount:a:bot"), SA, "")
    assert applies_to({"kind": "ServiceAccount", "name": "bot", "namespace": "a"}, SA, "b")
    assert not applies_to({"kind": "ServiceAccount", "name": "bot", "namespace": "b"}, SA, "a")
    # the namespace defaults to the binding's; a ClusterRoleBinding has none to lend
    assert applies_to({"kind": "ServiceAccount", "name": "bot"}, SA, "a")
    assert not applies_to({"kind": "ServiceAccount", "name": "bot"}, SA, "b")
    assert not applies_to({"kind": "ServiceAccount", "name": "bot"}, SA, "")
    assert not applies_to({"kind": "ServiceAccount", "name": "bot", "namespace": "a"}, User("bot"), "a")
    assert not applies_to({"kind": "Robot", "name": "alice"}, ALICE, "")
    assert not applies_to("alice", ALICE, "")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- one rule
def test_rule_verbs_groups_and_resources_with_wildcards() -> None:
    r = rule(["get", "list"], ["pods"])
    assert rule_allows(r, res(BOB, "get", "pods", "a"))
    assert not rule_allows(r, res(BOB, "delete", "pods", "a"))
    assert not rule_allows(r, res(BOB, "get", "pods", "a", group="apps"))
    assert not rule_allows(r, res(BOB, "get", "services", "a"))
    assert rule_allows(rule(["*"], ["pods"]), res(BOB, "deletecollection", "pods"))
    anything = rule(["get"], ["*"], ["*"])
    assert rule_allows(anything, res(BOB, "get", "deployments", group="apps"))
    assert rule_allows(anything, res(BOB, "get", "pods", sub="log"))  # "*" covers subresources
    assert not rule_allows(rule(["get"], ["pods"], []), res(BOB, "get", "pods"))  # no groups: nothing


def test_rule_subresources_exact_and_star_slash_form() -> None:
    log_rule = rule(["get"], ["pods/log"])
    assert rule_allows(log_rule, res(BOB, "get", "pods", "a", sub="log"))
    assert not rule_allows(log_rule, res(BOB, "get", "pods", "a"))
    assert not rule_allows(rule(["get"], ["pods"]), res(BOB, "get", "pods", "a", sub="log"))
    scale = rule(["update"], ["*/scale"], ["*"])
    assert rule_allows(scale, res(BOB, "update", "deployments", "a", group="apps", sub="scale"))
    assert rule_allows(scale, res(BOB, "update", "replicationcontrollers", "a", sub="scale"))
    assert not rule_allows(scale, res(BOB, "update", "deployments", "a", group="apps"))
    assert not rule_allows(scale, res(BOB, "update", "deployments", "a", group="apps", sub="status"))
    # kube has no "resource/*" wildcard: "pods/*" only matches a literal "pods/*"
    assert not rule_allows(rule(["get"], ["pods/*"]), res(BOB, "get", "pods", "a", sub="log"))
    assert not rule_allows(rule(["get"], ["pods/*"]), res(BOB, "get", "pods", "a"))


def test_rule_resource_names_limit_and_exclude_nameless_requests() -> None:
    r = rule(["get", "update", "list"], ["configmaps"], names=["app-config"])
    assert rule_allows(r, res(BOB, "get", "configmaps", "a", name="app-config"))
    assert not rule_allows(r, res(BOB, "get", "configmaps", "a", name="other"))
    assert not rule_allows(r, res(BOB, "list", "configmaps", "a"))  # a list names nothing
    assert rule_allows(rule(["get"], ["configmaps"]), res(BOB, "get", "configmaps", "a", name="any"))


def test_rule_non_resource_urls_exact_prefix_and_all() -> None:
    r = rule(["get"], urls=["/healthz", "/apis/*"])
    assert rule_allows(r, url(BOB, "get", "/healthz"))
    assert not rule_allows(r, url(BOB, "get", "/healthz/etcd"))  # no star: exact only
    assert rule_allows(r, url(BOB, "get", "/apis/apps/v1"))
    assert rule_allows(r, url(BOB, "get", "/apis/"))
    assert not rule_allows(r, url(BOB, "get", "/apis"))  # the prefix is "/apis/"
    assert not rule_allows(r, url(BOB, "post", "/healthz"))
    assert rule_allows(rule(["*"], urls=["*"]), url(BOB, "put", "/anything"))
    # URL rules and resource rules never answer for each other
    assert not rule_allows(r, res(BOB, "get", "pods"))
    assert not rule_allows(rule(["*"], ["*"], ["*"]), url(BOB, "get", "/healthz"))


def test_malformed_rule_allows_nothing() -> None:
    assert not rule_allows({"verbs": "get", "apiGroups": [""], "resources": ["pods"]}, res(BOB, "get", "pods"))
    assert not rule_allows({"verbs": ["get"], "apiGroups": [""], "resources": [1]}, res(BOB, "get", "pods"))
    assert not rule_allows("everything", res(BOB, "get", "pods"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bindings and scope
def test_rolebinding_to_a_clusterrole_grants_only_in_its_namespace() -> None:
    p = policy([cluster_role("pod-reader", rule(["get"], ["pods"]))],
               rbs=[binding("read", "ClusterRole", "pod-reader", user_subject("bob"), namespace="a")])
    assert p.allows(res(BOB, "get", "pods", "a")) == (
        True, 'RBAC: allowed by RoleBinding "read/a" of ClusterRole "pod-reader" to User "bob"')
    assert p.allows(res(BOB, "get", "pods", "b")) == (False, "")
    assert p.allows(res(BOB, "get", "pods")) == (False, "")  # cluster-wide: only ClusterRoleBindings count
    assert p.allows(res(ALICE, "get", "pods", "a")) == (False, "")


def test_clusterrolebinding_grants_everywhere_with_kubes_reason() -> None:
    p = policy([cluster_role("node-reader", rule(["get"], ["nodes"]))],
               [binding("devs-read-nodes", "ClusterRole", "node-reader", {"kind": "Group", "name": "dev"})])
    ok, reason = p.allows(res(ALICE, "get", "nodes"))
    assert ok
    assert reason == 'RBAC: allowed by ClusterRoleBinding "devs-read-nodes" of ClusterRole "node-reader" to Group "dev"'
    assert p.allows(res(ALICE, "get", "nodes", "anywhere"))[0]
    assert not p.allows(res(BOB, "get", "nodes"))[0]


def test_role_is_looked_up_in_the_bindings_namespace_only() -> None:
    p = policy(roles=[role("a", "cm-editor", rule(["update"], ["configmaps"]))],
               rbs=[binding("in-a", "Role", "cm-editor", user_subject("bob"), namespace="a"),
                    binding("in-b", "Role", "cm-editor", user_subject("alice"), namespace="b")])
    assert p.allows(res(BOB, "update", "configmaps", "a"))[0]
    assert not p.allows(res(BOB, "update", "configmaps", "b"))[0]
    # alice's binding in b names a Role that only exists in a: nothing
    assert not p.allows(res(ALICE, "update", "configmaps", "b"))[0]
    assert not p.allows(res(ALICE, "update", "configmaps", "a"))[0]
    assert p.role_rules({"kind": "Role", "name": "cm-editor"}, "a") == [rule(["update"], ["configmaps"])]
    assert p.role_rules({"kind": "Role", "name": "cm-editor"}, "b") is None
    assert p.role_rules({"kind": "Role", "name": "cm-editor"}, "") is None
    # a ClusterRoleBinding to a Role resolves to nothing (kube looks in no namespace)
    p2 = policy(crbs=[binding("weird", "Role", "cm-editor", user_subject("bob"))],
                roles=[role("a", "cm-editor", rule(["update"], ["configmaps"]))])
    assert not p2.allows(res(BOB, "update", "configmaps", "a"))[0]


def test_non_resource_rules_count_only_from_clusterrolebindings() -> None:
    metrics = cluster_role("metrics", rule(["get"], urls=["/metrics"]))
    p = policy([metrics], rbs=[binding("m", "ClusterRole", "metrics", user_subject("bob"), namespace="a")])
    assert not p.allows(url(BOB, "get", "/metrics"))[0]
    # even if the request carries a namespace, a URL is not in one
    assert not p.allows(Attributes(BOB, "get", False, "a", path="/metrics"))[0]
    p = policy([metrics], [binding("m", "ClusterRole", "metrics", user_subject("bob"))])
    assert p.allows(url(BOB, "get", "/metrics"))[0]


def test_service_account_subject_defaults_to_the_binding_namespace() -> None:
    p = policy([cluster_role("reader", rule(["list"], ["pods"]))],
               rbs=[binding("bots", "ClusterRole", "reader", {"kind": "ServiceAccount", "name": "bot"}, namespace="a"),
                    binding("x", "ClusterRole", "reader", {"kind": "ServiceAccount", "name": "bot"}, namespace="b")])
    assert p.allows(res(SA, "list", "pods", "a")) == (
        True, 'RBAC: allowed by RoleBinding "bots/a" of ClusterRole "reader" to ServiceAccount "bot/a"')
    # in b the subject means b's bot, not a's
    assert not p.allows(res(SA, "list", "pods", "b"))[0]
    # in a ClusterRoleBinding a namespace-less ServiceAccount subject matches no one
    p = policy([cluster_role("reader", rule(["list"], ["pods"]))],
               [binding("bots", "ClusterRole", "reader", {"kind": "ServiceAccount", "name": "bot"})])
    assert not p.allows(res(SA, "list", "pods", "a"))[0]
    p = policy([cluster_role("reader", rule(["list"], ["pods"]))],
               [binding("bots", "ClusterRole", "reader", {"kind": "ServiceAccount", "name": "bot", "namespace": "a"})])
    assert p.allows(res(SA, "list", "pods", "z"))[1].endswith('to ServiceAccount "bot/a"')


def test_system_masters_may_do_anything_even_without_a_binding() -> None:
    root = User("root", "", ("system:masters",))
    # the stored cluster-admin binding replaces the bootstrap one and binds no one
    p = policy(crbs=[binding("cluster-admin", "ClusterRole", "cluster-admin")])
    assert p.allows(res(root, "delete", "secrets", "kube-system")) == (True, "")
    assert p.allows(url(root, "post", "/whatever"))[0]
    assert p.covers(root, "a", [rule(["*"], ["*"], ["*"]), rule(["*"], urls=["*"])]) == []
    assert not p.allows(res(BOB, "delete", "secrets", "kube-system"))[0]


def test_rules_for_lists_cluster_and_that_namespaces_rules() -> None:
    p = policy([cluster_role("a-reader", rule(["get"], ["pods"])), cluster_role("c", rule(["list"], ["nodes"]))],
               [binding("c", "ClusterRole", "c", user_subject("bob"))],
               [role("a", "cm", rule(["get"], ["configmaps"], names=["x"]))],
               [binding("r1", "ClusterRole", "a-reader", user_subject("bob"), namespace="a"),
                binding("r2", "Role", "cm", user_subject("bob"), namespace="a"),
                binding("r3", "ClusterRole", "a-reader", user_subject("alice"), namespace="a")])
    basic = policy().rules_for(BOB, "")  # what every authenticated user holds (bootstrap)
    assert basic and all("verbs" in r for r in basic)
    # cluster bindings in name order: c, then the system: ones
    assert p.rules_for(BOB, "") == [rule(["list"], ["nodes"]), *basic]
    in_a = p.rules_for(BOB, "a")
    assert rule(["get"], ["pods"]) in in_a and rule(["get"], ["configmaps"], names=["x"]) in in_a
    assert rule(["get"], ["pods"]) not in p.rules_for(BOB, "b")
    assert rule(["get"], ["pods"]) not in p.rules_for(BOB, "")
    assert len(p.rules_for(BOB, "a")) == len(p.rules_for(BOB, "")) + 2


# --------------------------------------------------------------------------- aggregation
def test_aggregation_unions_labelled_roles_transitively() -> None:
    crd_view = cluster_role("widgets-view", rule(["get", "list"], ["widgets"], ["example.com"]),
                            labels={"rbac.authorization.k8s.io/aggregate-to-view": "true"})
    p = policy([crd_view], rbs=[binding("v", "ClusterRole", "view", user_subject("bob"), namespace="a"),
                                binding("e", "ClusterRole", "edit", user_subject("alice"), namespace="a"),
                                binding("ad", "ClusterRole", "admin", user_subject("carol"), namespace="a")])
    widgets = res(BOB, "list", "widgets", "a", group="example.com")
    assert p.allows(widgets)[0]
    # view aggregates into edit (its label), edit into admin
    assert p.allows(Attributes(ALICE, "list", True, "a", "example.com", "widgets"))[0]
    assert p.allows(Attributes(User("carol"), "list", True, "a", "example.com", "widgets"))[0]
    view = p.role_rules({"kind": "ClusterRole", "name": "view"}, "")
    edit = p.role_rules({"kind": "ClusterRole", "name": "edit"}, "")
    admin = p.role_rules({"kind": "ClusterRole", "name": "admin"}, "")
    assert view is not None and edit is not None and admin is not None
    assert all(r in edit for r in view) and all(r in admin for r in edit)
    assert len(admin) == len(edit) + 2 and rule(["get", "list"], ["widgets"], ["example.com"]) in view
    assert policy().role_rules({"kind": "ClusterRole", "name": "view"}, "") == [
        r for r in view if r != rule(["get", "list"], ["widgets"], ["example.com"])]


def test_aggregation_ignores_own_rules_and_supports_match_expressions() -> None:
    agg = cluster_role("team", rule(["*"], ["*"], ["*"]),  # controller-managed: ignored
                       aggregate=[{"matchExpressions": [{"key": "team", "operator": "In", "values": ["x", "y"]},
                                                        {"key": "retired", "operator": "DoesNotExist"}]},
                                  {"matchLabels": {"extra": "yes"}}])
    roles = [agg,
             cluster_role("x1", rule(["get"], ["pods"]), labels={"team": "x"}),
             cluster_role("y-old", rule(["get"], ["secrets"]), labels={"team": "y", "retired": "1"}),
             cluster_role("z", rule(["get"], ["nodes"]), labels={"team": "z"}),
             cluster_role("e", rule(["get"], ["pods"]), rule(["get"], ["events"]), labels={"extra": "yes"})]
    p = policy(roles)
    # selector order, by name within one, duplicates dropped
    assert p.role_rules({"kind": "ClusterRole", "name": "team"}, "") == [rule(["get"], ["pods"]),
                                                                         rule(["get"], ["events"])]
    p = policy([cluster_role("bad", aggregate=[{"matchExpressions": [{"key": "k", "operator": "Near"}]}]),
                cluster_role("k", rule(["get"], ["pods"]), labels={"k": "v"}),
                cluster_role("cycle-a", labels={"c": "b"}, aggregate=[{"matchLabels": {"c": "a"}}]),
                cluster_role("cycle-b", rule(["get"], ["pods"]), labels={"c": "a"},
                             aggregate=[{"matchLabels": {"c": "b"}}])])
    assert p.role_rules({"kind": "ClusterRole", "name": "bad"}, "") == []
    # a cycle settles (and cannot hang): b's own rules are ignored, so the pair grants nothing
    assert p.role_rules({"kind": "ClusterRole", "name": "cycle-a"}, "") == []
    assert p.role_rules({"kind": "ClusterRole", "name": "cycle-b"}, "") == []


# --------------------------------------------------------------------------- escalation
def edit_in_a() -> Policy:
    return policy(rbs=[binding("bob-edit", "ClusterRole", "edit", user_subject("bob"), namespace="a")])


def test_an_editor_may_grant_what_they_hold_and_nothing_more() -> None:
    p = edit_in_a()
    assert p.covers(BOB, "a", [rule(["get"], ["pods"])]) == []
    assert p.covers(BOB, "a", [rule(["delete"], ["secrets"])]) == []
    assert p.covers(BOB, "b", [rule(["delete"], ["secrets"])]) == [
        {"verbs": ["delete"], "apiGroups": [""], "resources": ["secrets"]}]
    # broken down: only the pieces not held come back
    missing = p.covers(BOB, "a", [rule(["get", "escalate"], ["pods", "roles"], ["", "rbac.authorization.k8s.io"])])
    assert {"verbs": ["escalate"], "apiGroups": [""], "resources": ["pods"]} in missing
    assert {"verbs": ["get"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"]} in missing
    assert {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]} not in missing
    assert len(missing) == 7  # 2 verbs x 2 resources x 2 groups, less get pods in ""
    # edit holds no wildcard, so a "*" rule is never covered, nor rbac roles (that is admin)
    assert p.covers(BOB, "a", [rule(["get"], ["*"])]) == [{"verbs": ["get"], "apiGroups": [""], "resources": ["*"]}]
    assert p.covers(BOB, "a", [rule(["create"], ["roles"], ["rbac.authorization.k8s.io"])]) != []


def test_covers_names_subresources_and_urls_as_kube() -> None:
    p = policy([cluster_role("c", rule(["get"], ["configmaps"], names=["a", "b"]),
                             rule(["update"], ["*/scale"], ["apps"]),
                             rule(["update"], ["deployments/status"], ["apps"]),
                             rule(["get"], urls=["/api/*"]))],
               [binding("c", "ClusterRole", "c", user_subject("bob"))])
    assert p.covers(BOB, "", [rule(["get"], ["configmaps"], names=["a"])]) == []
    assert p.covers(BOB, "", [rule(["get"], ["configmaps"], names=["c"])]) != []
    # holding some names does not cover all names
    assert p.covers(BOB, "", [rule(["get"], ["configmaps"])]) == [
        {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]
    assert p.covers(BOB, "", [rule(["update"], ["deployments/scale", "*/scale"], ["apps"])]) == []
    assert p.covers(BOB, "", [rule(["update"], ["deployments/status", "statefulsets/status"], ["apps"])]) == [
        {"verbs": ["update"], "apiGroups": ["apps"], "resources": ["statefulsets/status"]}]
    assert p.covers(BOB, "", [rule(["get"], urls=["/api/v1", "/api/*", "/metrics"])]) == [
        {"verbs": ["get"], "nonResourceURLs": ["/metrics"]}]
    # a role granted in a namespace: the cluster bindings still count there
    assert p.covers(BOB, "ns", [rule(["get"], ["configmaps"], names=["b"])]) == []
    # malformed requested rules grant nothing and are not reported
    assert p.covers(BOB, "", [{"verbs": "all"}, "junk"]) == []  # type: ignore[list-item]


def test_escalation_message_is_kubes() -> None:
    missing = edit_in_a().covers(BOB, "b", [rule(["get", "delete"], ["secrets"]), rule(["get"], urls=["/x"])])
    assert escalation_message(BOB, missing) == (
        'user "bob" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete"]}\n'
        '{NonResourceURLs:["/x"], Verbs:["get"]}')
    assert compact_string(rule(["get"], ["cm"], names=["n"])) == (
        '{APIGroups:[""], Resources:["cm"], ResourceNames:["n"], Verbs:["get"]}')


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_view_reads_pods_but_not_secrets() -> None:
    p = policy()
    reader = User("rita", "", ("readonly",))
    assert p.allows(res(reader, "get", "pods", "a")) == (
        True, 'RBAC: allowed by ClusterRoleBinding "netplane:read-only" of ClusterRole "view" to Group "readonly"')
    assert p.allows(res(reader, "list", "pods", "a", sub="log"))[0]
    assert p.allows(res(reader, "get", "deployments", "a", group="apps", sub="scale"))[0]
    assert not p.allows(res(reader, "get", "secrets", "a"))[0]
    assert not p.allows(res(reader, "delete", "pods", "a"))[0]
    assert not p.allows(res(reader, "create", "pods", "a", sub="exec"))[0]
    # the nodes, which view leaves out: netplane:cluster-reader's (read, not write)
    assert p.allows(res(reader, "get", "nodes")) == (True, ('RBAC: allowed by ClusterRoleBinding '
                                                     '"netplane:cluster-reader" of ClusterRole "netplane:cluster-reader" '
                                                     'to Group "readonly"'))
    assert not p.allows(res(reader, "patch", "nodes"))[0]
    assert not p.allows(res(BOB, "get", "pods", "a"))[0]  # not in the group
    other = Policy([], [], [], [], read_only_group="auditors")
    assert other.allows(res(User("a", "", ("auditors",)), "get", "pods", "a"))[0]
    assert not other.allows(res(reader, "get", "pods", "a"))[0]


def test_bootstrap_edit_and_admin() -> None:
    p = policy(rbs=[binding("e", "ClusterRole", "edit", user_subject("bob"), namespace="a"),
                    binding("ad", "ClusterRole", "admin", user_subject("alice"), namespace="a")])
    assert p.allows(res(BOB, "get", "secrets", "a"))[0] and p.allows(res(BOB, "create", "pods", "a", sub="exec"))[0]
    assert p.allows(res(BOB, "update", "leases", "a", group="coordination.k8s.io"))[0]
    assert not p.allows(res(BOB, "create", "roles", "a", group="rbac.authorization.k8s.io"))[0]
    assert not p.allows(res(BOB, "update", "resourcequotas", "a"))[0]
    assert p.allows(res(ALICE, "create", "rolebindings", "a", group="rbac.authorization.k8s.io"))[0]
    assert p.allows(res(ALICE, "create", "localsubjectaccessreviews", "a", group="authorization.k8s.io"))[0]


def test_every_authenticated_user_has_basic_user_discovery_and_public_info() -> None:
    p = policy()
    ssar = res(BOB, "create", "selfsubjectaccessreviews", group="authorization.k8s.io")
    assert p.allows(ssar) == (True, ('RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole '
                                     '"system:basic-user" to Group "system:authenticated"'))
    assert p.allows(res(BOB, "create", "selfsubjectrulesreviews", "a", group="authorization.k8s.io"))[0]
    assert not p.allows(res(BOB, "create", "subjectaccessreviews", group="authorization.k8s.io"))[0]
    assert p.allows(url(BOB, "get", "/apis/apps/v1"))[0] and p.allows(url(BOB, "get", "/version"))[0]
    assert not p.allows(url(BOB, "get", "/metrics"))[0]
    assert not p.allows(url(BOB, "post", "/api/v1"))[0]
    # the anonymous user: health and version, no discovery, no reviews
    assert p.allows(url(ANON, "get", "/healthz"))[0] and p.allows(url(ANON, "get", "/readyz"))[0]
    assert not p.allows(url(ANON, "get", "/api"))[0]
    assert not p.allows(Attributes(ANON, "create", True, "", "authorization.k8s.io", "selfsubjectaccessreviews"))[0]


def test_bootstrap_objects_are_complete_and_fresh() -> None:
    roles = {r["metadata"]["name"]: r for r in bootstrap_cluster_roles()}
    assert {"cluster-admin", "admin", "edit", "view", "system:aggregate-to-admin", "system:aggregate-to-edit",
            "system:aggregate-to-view", "system:discovery", "system:basic-user",
            "system:public-info-viewer"} <= set(roles)
    for obj in [*roles.values(), *bootstrap_cluster_role_bindings()]:
        assert obj["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert obj["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert obj["metadata"]["annotations"] == {"rbac.authorization.kubernetes.io/autoupdate": "true"}
    assert all(r["kind"] == "ClusterRole" for r in roles.values())
    assert roles["edit"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert roles["view"]["aggregationRule"] == {
        "clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]}
    assert "aggregationRule" not in roles["cluster-admin"]
    bindings = {b["metadata"]["name"]: b for b in bootstrap_cluster_role_bindings("ops")}
    assert bindings["cluster-admin"]["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]
    assert [s["name"] for s in bindings["system:public-info-viewer"]["subjects"]] == [
        "system:authenticated", "system:unauthenticated"]
    assert [s["name"] for s in bindings["system:discovery"]["subjects"]] == ["system:authenticated"]
    assert bindings["netplane:read-only"]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
    assert bindings["netplane:read-only"]["subjects"][0]["name"] == "ops"
    # fresh each call: mutating one changes nothing later
    roles["system:aggregate-to-view"]["rules"][0]["resources"].append("secrets")
    bootstrap_cluster_role_bindings()[0]["metadata"]["labels"].clear()
    again = {r["metadata"]["name"]: r for r in bootstrap_cluster_roles()}
    assert "secrets" not in again["system:aggregate-to-view"]["rules"][0]["resources"]
    assert bootstrap_cluster_role_bindings()[0]["metadata"]["labels"]


def test_stored_objects_replace_bootstrap_ones_by_name() -> None:
    reader = User("rita", "", ("readonly",))
    # an edited view without an aggregationRule: its own rules stand
    p = policy([cluster_role("view", rule(["get"], ["secrets"]))])
    assert p.allows(res(reader, "get", "secrets", "a"))[0]
    assert not p.allows(res(reader, "get", "pods", "a"))[0]
    # the read-only binding replaced: no longer for the group
    p = policy(crbs=[binding("netplane:read-only", "ClusterRole", "view", user_subject("bob"))])
    assert not p.allows(res(reader, "get", "pods", "a"))[0] and p.allows(res(BOB, "get", "pods", "a"))[0]


# --------------------------------------------------------------------------- malformed objects
def test_malformed_objects_are_skipped_without_raising(caplog: pytest.LogCaptureFixture) -> None:
    good_role = role("a", "ok", rule(["get"], ["pods"]))
    junk: list[Any] = [None, "x", 3, [], {}, {"metadata": "m"}, {"metadata": {"name": 5}}, {"metadata": {}}]
    with caplog.at_level(logging.DEBUG, logger="orchestrator.apiserver.rbacpolicy"):
        p = Policy(
            [*junk, {"metadata": {"name": "r1"}, "rules": {"verbs": ["*"]}},  # rules not a list
             {"metadata": {"name": "r2"}, "rules": [None, rule(["get"], ["nodes"]), {"verbs": "*", "resources": "*"}]},
             {"metadata": {"name": "r3"}, "aggregationRule": "all"},
             {"metadata": {"name": "r4", "labels": ["x"]}, "rules": [rule(["get"], ["services"])]}],
            [*junk, {"metadata": {"name": "b0"}, "roleRef": "r2", "subjects": [user_subject("bob")]},
             {"metadata": {"name": "b1"}, "roleRef": {"kind": "ClusterRole", "name": "r2"}, "subjects": "bob"},
             {"metadata": {"name": "b2"}, "roleRef": {"kind": "ClusterRole", "name": "r2"},
              "subjects": [None, 7, user_subject("bob")]},
             {"metadata": {"name": "b3"}, "roleRef": {"kind": "ClusterRole", "name": "r1"},
              "subjects": [user_subject("bob")]},
             {"metadata": {"name": "b4"}, "roleRef": {"kind": "ClusterRole", "name": "r3"},
              "subjects": [user_subject("bob")]},
             {"metadata": {"name": "b5"}, "roleRef": {"kind": "ClusterRole", "name": "r4"}},
             {"metadata": {"name": "b6"}, "roleRef": {"kind": "ClusterRole", "name": "missing"},
              "subjects": [user_subject("bob")]}],
            [*junk, {"metadata": {"name": "no-namespace"}, "rules": [rule(["*"], ["*"], ["*"])]}, good_role],
            [*junk, {"metadata": {"name": "rb", "namespace": "a"}, "roleRef": {"kind": "Role", "name": "ok"},
                     "subjects": [user_subject("bob")]},
             {"metadata": {"name": "rb-no-ns"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
              "subjects": [user_subject("bob")]}])
    assert caplog.records  # said so in the log
    assert p.allows(res(BOB, "get", "nodes")) == (
        True, 'RBAC: allowed by ClusterRoleBinding "b2" of ClusterRole "r2" to User "bob"')
    assert p.allows(res(BOB, "get", "pods", "a"))[0]
    assert not p.allows(res(BOB, "delete", "pods", "a"))[0]
    assert not p.allows(res(BOB, "get", "services", "a"))[0]  # b5 has no subjects
    assert p.role_rules({"kind": "ClusterRole", "name": "r2"}, "") == [rule(["get"], ["nodes"])]
    assert p.role_rules({"kind": "ClusterRole", "name": "r1"}, "") == []
    assert p.role_rules({"kind": "ClusterRole", "name": "r3"}, "") == []
    assert p.role_rules({"kind": "ClusterRole", "name": "missing"}, "") is None
    assert p.role_rules("junk", "") is None  # type: ignore[arg-type]
    # the bootstrap policy is still there
    assert p.allows(url(BOB, "get", "/healthz"))[0]
