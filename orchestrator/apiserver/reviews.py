"""`kubectl auth can-i` (also `--list`) and `kubectl auth whoami`: kube-apiserver's "self" reviews.

* `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: may the requesting user do
  `spec.resourceAttributes` (verb, resource, namespace, ...) or `spec.nonResourceAttributes`
  (verb, path)? Answered by the server's own authorizer (`rbac.RBACAuthorizer`), in
  `status.allowed`, with RBAC's reason when allowed.
* `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews` (`can-i --list`): everything
  the user may do in `spec.namespace`, as the rules of the roles bound to them there.
* `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who the server takes the caller
  for, in `status.userInfo` (username, uid, groups).
* `POST /apis/authorization.k8s.io/v1/subjectaccessreviews` and
  `.../namespaces/<ns>/localsubjectaccessreviews`: the same question as the first, about
  `spec.user` and `spec.groups` (cluster-admin may ask the first; kube's admin role the
  second, in its namespace).

Creating each takes the `create` verb on it, which kube's system:basic-user gives every
authenticated user.

Both groups are listed in `/apis` with these resources, as kube-apiserver lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from orchestrator.apiserver.auth import User
from orchestrator.apiserver.handlers import CURRENT_USER, json_response, read_body
from orchestrator.apiserver.rbacpolicy import Attributes
from orchestrator.apiserver.status import APIError, bad_request

if TYPE_CHECKING:
    from orchestrator.apiserver.rbac import RBACAuthorizer

Obj = dict[str, Any]
AUTHORIZATION = "authorization.k8s.io"
AUTHENTICATION = "authentication.k8s.io"
ACCESS = ("selfsubjectaccessreviews", "selfsubjectaccessreview", "SelfSubjectAccessReview")
RULES = ("selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview")
SUBJECT = ("selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview")
SUBJECT_ACCESS = ("subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview")
LOCAL_ACCESS = ("localsubjectaccessreviews", "localsubjectaccessreview", "LocalSubjectAccessReview")
RESOURCES = {  # group -> its (resource, singular, kind)s
    AUTHORIZATION: (ACCESS, RULES, SUBJECT_ACCESS, LOCAL_ACCESS),
    AUTHENTICATION: (SUBJECT,),
}
NAMESPACED = frozenset({LOCAL_ACCESS[0]})


def api_groups() -> list[Obj]:
    out = []
    for group in RESOURCES:
        gv = {"groupVersion": f"{group}/v1", "version": "v1"}
        out.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return out


def resource_list(group: str) -> Obj:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/v1",
            "resources": [{"name": name, "singularName": singular, "namespaced": name in NAMESPACED, "kind": kind,
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


def subject_access_review(body: Any, authorizer: RBACAuthorizer, namespace: str | None = None) -> Obj:
    """A SubjectAccessReview (or, with `namespace`, a LocalSubjectAccessReview) answered: may
    `spec.user` in `spec.groups` do what the spec says (what webhooks and auth proxies ask;
    kube's admin role may ask it for its namespace)."""
    kind = LOCAL_ACCESS[2] if namespace is not None else SUBJECT_ACCESS[2]
    review = _review(body, kind, AUTHORIZATION)
    spec: Obj = review["spec"] if isinstance(review.get("spec"), dict) else {}
    user, groups = spec.get("user") or "", spec.get("groups") or []
    if not isinstance(user, str) or not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise bad_request("spec.user must be a string and spec.groups a list of strings")
    if not user and not groups:
        raise APIError(422, f'{kind}.{AUTHORIZATION} "" is invalid: spec.user: Invalid value: "": at least one of '
                            "user or group must be specified", reason="Invalid")
    if namespace is not None:
        res = spec.get("resourceAttributes")
        if not isinstance(res, dict) or spec.get("nonResourceAttributes") is not None:
            raise APIError(422, f'{kind}.{AUTHORIZATION} "" is invalid: spec.resourceAttributes: Required value: '
                                "resourceAttributes must be specified, and nonResourceAttributes not",
                           reason="Invalid")
        if (res.get("namespace") or "") != namespace:
            raise bad_request(f"spec.resourceAttributes.namespace must match namespace: {namespace}")
    answer = access_review(review, User(user, str(spec.get("uid") or ""), tuple(groups)), authorizer, kind=kind)
    if namespace is not None:
        answer["metadata"] = {**answer.get("metadata", {}), "namespace": namespace}
    return answer


def access_review(body: Any, user: User, authorizer: RBACAuthorizer, *, kind: str = ACCESS[2]) -> Obj:
    """The SelfSubjectAccessReview answered for `user` (kube's 201 body): the RBAC authorizer's
    decision on `spec.resourceAttributes` (namespace, verb, group, resource, subresource, name)
    or `spec.nonResourceAttributes` (path, verb), with its reason when allowed."""
    review = _review(body, kind, AUTHORIZATION)
    spec = review.get("spec")
    res = spec.get("resourceAttributes") if isinstance(spec, dict) else None
    urls = spec.get("nonResourceAttributes") if isinstance(spec, dict) else None
    if isinstance(res, dict) == isinstance(urls, dict):
        raise APIError(422, f"{kind}.authorization.k8s.io is invalid: spec.resourceAttributes: "
                            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes "
                            "must be specified", reason="Invalid")
    if isinstance(res, dict):
        a = Attributes(user, str(res.get("verb") or ""), namespace=str(res.get("namespace") or ""),
                       api_group=str(res.get("group") or ""), resource=str(res.get("resource") or ""),
                       subresource=str(res.get("subresource") or ""), name=str(res.get("name") or ""))
    else:
        assert isinstance(urls, dict)
        a = Attributes(user, str(urls.get("verb") or ""), resource_request=False, path=str(urls.get("path") or ""))
    allowed, reason = authorizer.decide(a)
    status: Obj = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return {**review, "status": status}


def rules_review(body: Any, user: User, authorizer: RBACAuthorizer) -> Obj:
    """The SelfSubjectRulesReview for `user` in `spec.namespace` (kube's 201 body): the rules of
    every binding that applies to the user there (the cluster's and the namespace's), as kube's
    RBAC rule resolver lists them."""
    review = _review(body, RULES[2], AUTHORIZATION)
    spec = review.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("namespace"), str) or not spec["namespace"]:
        raise APIError(400, "no namespace on request", reason="BadRequest")
    resource_rules: list[Obj] = []
    url_rules: list[Obj] = []
    for rule in authorizer.policy().rules_for(user, spec["namespace"]):
        if rule.get("nonResourceURLs"):
            url_rules.append({"verbs": rule.get("verbs") or [], "nonResourceURLs": rule["nonResourceURLs"]})
        else:
            out = {"verbs": rule.get("verbs") or [], "apiGroups": rule.get("apiGroups") or [],
                   "resources": rule.get("resources") or []}
            if rule.get("resourceNames"):
                out["resourceNames"] = rule["resourceNames"]
            resource_rules.append(out)
    return {**review, "status": {"resourceRules": resource_rules, "nonResourceRules": url_rules, "incomplete": False}}


def subject_review(body: Any, user: User) -> Obj:
    review = _review(body if body is not None else {}, SUBJECT[2], AUTHENTICATION)
    info: Obj = {"username": user.name, "groups": [*user.groups, "system:authenticated"]}
    if user.uid:
        info["uid"] = user.uid
    return {**review, "status": {"userInfo": info}}


def add_routes(app: web.Application, authorizer: RBACAuthorizer) -> None:
    async def authorization_v1(request: web.Request) -> web.Response:
        return json_response(resource_list(AUTHORIZATION))

    async def authentication_v1(request: web.Request) -> web.Response:
        return json_response(resource_list(AUTHENTICATION))

    def may(resource: str, group: str = AUTHORIZATION, namespace: str = "") -> User:
        """The user, when they may create `resource` (kube's system:basic-user lets everyone
        create the self reviews; cluster-admin a SubjectAccessReview, admin a local one)."""
        user = CURRENT_USER.get()
        if not authorizer.allows(Attributes(user, "create", namespace=namespace, api_group=group, resource=resource)):
            where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            raise APIError(403, f'{resource}.{group} is forbidden: User "{user.name}" cannot create resource '
                                f'"{resource}" in API group "{group}" {where}',
                           details={"group": group, "kind": resource})
        return user

    async def subject_access(request: web.Request) -> web.Response:
        may(SUBJECT_ACCESS[0])
        return json_response(subject_access_review(await read_body(request), authorizer), status=201)

    async def local_access(request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        may(LOCAL_ACCESS[0], namespace=namespace)
        return json_response(subject_access_review(await read_body(request), authorizer, namespace), status=201)

    async def access(request: web.Request) -> web.Response:
        return json_response(access_review(await read_body(request), may(ACCESS[0]), authorizer), status=201)

    async def rules(request: web.Request) -> web.Response:
        return json_response(rules_review(await read_body(request), may(RULES[0]), authorizer), status=201)

    async def subject(request: web.Request) -> web.Response:
        return json_response(subject_review(await read_body(request), may(SUBJECT[0], AUTHENTICATION)), status=201)

    r = app.router
    for group, handler in ((AUTHORIZATION, authorization_v1), (AUTHENTICATION, authentication_v1)):
        r.add_get(f"/apis/{group}/v1", handler)
        r.add_get(f"/apis/{group}/v1/", handler)
    r.add_post(f"/apis/{AUTHORIZATION}/v1/{ACCESS[0]}", access)
    r.add_post(f"/apis/{AUTHORIZATION}/v1/{RULES[0]}", rules)
    r.add_post(f"/apis/{AUTHORIZATION}/v1/{SUBJECT_ACCESS[0]}", subject_access)
    r.add_post(f"/apis/{AUTHORIZATION}/v1/namespaces/{{namespace}}/{LOCAL_ACCESS[0]}", local_access)
    r.add_post(f"/apis/{AUTHENTICATION}/v1/{SUBJECT[0]}", subject)
