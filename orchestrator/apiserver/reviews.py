"""`kubectl auth can-i` (also `--list`) and `kubectl auth whoami`: kube-apiserver's "self" reviews.

* `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: may the requesting user do
  `spec.resourceAttributes` (verb, resource, namespace, ...) or `spec.nonResourceAttributes`
  (verb, path)? Answered by the server's own authorizer (`auth.Authorizer`: the read-only
  group may get, list and watch; everyone else everything), in `status.allowed`.
* `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews` (`can-i --list`): everything
  the user may do in `spec.namespace`, as rules: for the read-only group get, list and watch
  of every resource and the non-resource URLs; for everyone else `*` on `*`, as RBAC lists
  cluster-admin's.
* `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who the server takes the caller
  for, in `status.userInfo` (username, uid, groups).

Both groups are listed in `/apis` with these resources, as kube-apiserver lists them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.apiserver.auth import HIDDEN_FROM_READERS, Authorizer, User
from orchestrator.apiserver.handlers import CURRENT_USER, json_response, read_body
from orchestrator.apiserver.status import APIError, bad_request

Obj = dict[str, Any]
AUTHORIZATION = "authorization.k8s.io"
AUTHENTICATION = "authentication.k8s.io"
ACCESS = ("selfsubjectaccessreviews", "selfsubjectaccessreview", "SelfSubjectAccessReview")
RULES = ("selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview")
SUBJECT = ("selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview")
RESOURCES = {  # group -> its (resource, singular, kind)s
    AUTHORIZATION: (ACCESS, RULES),
    AUTHENTICATION: (SUBJECT,),
}
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*")


def api_groups() -> list[Obj]:
    out = []
    for group in RESOURCES:
        gv = {"groupVersion": f"{group}/v1", "version": "v1"}
        out.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return out


def resource_list(group: str) -> Obj:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/v1",
            "resources": [{"name": name, "singularName": singular, "namespaced": False, "kind": kind,
                           "verbs": ["create"]} for name, singular, kind in RESOURCES[group]]}


def _review(body: Any, kind: str, group: str) -> Obj:
    if not isinstance(body, dict):
        raise bad_request("the body of the request was in an unknown format - accepted media types "
                          "include: application/json, application/yaml, application/vnd.kubernetes.protobuf")
    if body.get("kind") not in (None, kind) or body.get("apiVersion") not in (None, f"{group}/v1"):
        raise bad_request(f'the body is a {body.get("apiVersion")}, Kind={body.get("kind")}, not a {group}/v1 {kind}')
    out: Obj = dict(body)
    out["apiVersion"], out["kind"] = f"{group}/v1", kind
    out["metadata"] = {k: v for k, v in (body.get("metadata") or {}).items() if k == "name"} \
        if isinstance(body.get("metadata"), dict) else {}
    return out


def access_review(body: Any, user: User, authorizer: Authorizer) -> Obj:
    """The SelfSubjectAccessReview answered for `user` (kube's 201 body)."""
    review = _review(body, ACCESS[2], AUTHORIZATION)
    spec = review.get("spec")
    attrs = (spec.get("resourceAttributes") or spec.get("nonResourceAttributes")) if isinstance(spec, dict) else None
    if not isinstance(attrs, dict):
        raise APIError(422, "SelfSubjectAccessReview.authorization.k8s.io is invalid: spec.resourceAttributes: "
                            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes "
                            "must be specified", reason="Invalid")
    verb = str(attrs.get("verb") or "")
    if verb not in VERBS:  # a verb no rule names: what kube's RBAC answers for it
        return {**review, "status": {"allowed": False}}
    resource = str(attrs.get("resource") or "")
    allowed = authorizer.allowed(user, verb if verb != "*" else "create", resource)
    status: Obj = {"allowed": allowed}
    if allowed:
        status["reason"] = ("netplane: the read-only group may get, list and watch (but not Secrets); "
                            "every other user anything")
    return {**review, "status": status}


def rules_review(body: Any, user: User, authorizer: Authorizer) -> Obj:
    """The SelfSubjectRulesReview for `user` in `spec.namespace` (kube's 201 body)."""
    review = _review(body, RULES[2], AUTHORIZATION)
    spec = review.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("namespace"), str) or not spec["namespace"]:
        raise APIError(400, "no namespace on request", reason="BadRequest")
    if authorizer.allowed(user, "create"):
        rules = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
        urls = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
    else:  # kube's view role: every resource but Secrets, by name
        from orchestrator.apiserver.discovery import SUBRESOURCES
        from orchestrator.objects.meta import CORE_KINDS

        core = sorted({k.resource for k in CORE_KINDS} - HIDDEN_FROM_READERS)
        subs = sorted(f"{p}/{sub}" for sub, (parents, verbs, _) in SUBRESOURCES.items() if "get" in verbs
                      for p in parents)
        rules = [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": [*core, *subs]},
                 {"verbs": ["get", "list", "watch"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"]},
                 {"verbs": ["get", "list"], "apiGroups": ["metrics.k8s.io"], "resources": ["nodes", "pods"]}]
        urls = [{"verbs": ["get"], "nonResourceURLs": ["*"]}]
    # the self reviews every authenticated user may create (kube's system:basic-user)
    rules.append({"verbs": ["create"], "apiGroups": [AUTHORIZATION],
                  "resources": [ACCESS[0], RULES[0]]})
    rules.append({"verbs": ["create"], "apiGroups": [AUTHENTICATION], "resources": [SUBJECT[0]]})
    return {**review, "status": {"resourceRules": rules, "nonResourceRules": urls, "incomplete": False}}


def subject_review(body: Any, user: User) -> Obj:
    review = _review(body if body is not None else {}, SUBJECT[2], AUTHENTICATION)
    info: Obj = {"username": user.name, "groups": [*user.groups, "system:authenticated"]}
    if user.uid:
        info["uid"] = user.uid
    return {**review, "status": {"userInfo": info}}


def add_routes(app: web.Application, authorizer: Authorizer) -> None:
    async def authorization_v1(request: web.Request) -> web.Response:
        return json_response(resource_list(AUTHORIZATION))

    async def authentication_v1(request: web.Request) -> web.Response:
        return json_response(resource_list(AUTHENTICATION))

    async def access(request: web.Request) -> web.Response:
        return json_response(access_review(await read_body(request), CURRENT_USER.get(), authorizer), status=201)

    async def rules(request: web.Request) -> web.Response:
        return json_response(rules_review(await read_body(request), CURRENT_USER.get(), authorizer), status=201)

    async def subject(request: web.Request) -> web.Response:
        return json_response(subject_review(await read_body(request), CURRENT_USER.get()), status=201)

    r = app.router
    for group, handler in ((AUTHORIZATION, authorization_v1), (AUTHENTICATION, authentication_v1)):
        r.add_get(f"/apis/{group}/v1", handler)
        r.add_get(f"/apis/{group}/v1/", handler)
    r.add_post(f"/apis/{AUTHORIZATION}/v1/{ACCESS[0]}", access)
    r.add_post(f"/apis/{AUTHORIZATION}/v1/{RULES[0]}", rules)
    r.add_post(f"/apis/{AUTHENTICATION}/v1/{SUBJECT[0]}", subject)
