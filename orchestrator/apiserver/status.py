"""Errors as Kubernetes `Status` objects: the one shape every failed request answers with.

`APIError` carries the HTTP code, the `reason` (kube's `metav1.StatusReason`) and the message;
`from_exception` maps netplane's own errors onto it the way kube-apiserver maps its registry
errors, so a handler only raises:

    NotFoundError          404 NotFound        `pods "web" not found`
    storage.AlreadyExists  409 AlreadyExists   `pods "web" already exists`
    storage.Conflict       409 Conflict        `Operation cannot be fulfilled on pods "web": ...`
    InvalidObject          422 Invalid         details.causes: one per field error, with its path
    other UserError        400 BadRequest
    StoreError             503 ServiceUnavailable (etcd away; logged as a warning, not a bug)
    Compacted              410 Expired

Anything else is a bug: the server logs it with its traceback and answers 500 InternalError.
"""

from __future__ import annotations

from typing import Any

from netplane.errors import NotFoundError, StoreError, UserError
from netplane.store.etcd import Compacted
from orchestrator.objects.meta import kind_named
from orchestrator.storage import AlreadyExists, Conflict
from orchestrator.validation import FieldError, InvalidObject

Obj = dict[str, Any]

# field.ErrorType -> metav1.CauseType
CAUSE_TYPES = {
    "Required value": "FieldValueRequired",
    "Invalid value": "FieldValueInvalid",
    "Unsupported value": "FieldValueNotSupported",
    "Duplicate value": "FieldValueDuplicate",
    "Forbidden": "FieldValueForbidden",
    "Too long": "FieldValueTooLong",
    "Not found": "FieldValueNotFound",
}

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class APIError(Exception):
    """A request refused with a Kubernetes Status."""

    def __init__(self, code: int, message: str, *, reason: str | None = None,
                 details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "")
        self.details = details

    def status(self) -> Obj:
        return status_object(self.code, self.message, reason=self.reason, details=self.details)


def status_object(code: int, message: str, *, reason: str = "", details: Obj | None = None) -> Obj:
    out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}
    if details:
        out["details"] = details
    return out


def success(*, code: int = 200, name: str = "", kind: str = "", uid: str = "") -> Obj:
    details: Obj = {}
    if name:
        details["name"] = name
    if kind:
        details["kind"] = kind
    if uid:
        details["uid"] = uid
    out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": code}
    if details:
        out["details"] = details
    return out


def not_found(resource: str, name: str, *, group: str = "") -> APIError:
    details: Obj = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return APIError(404, f'{resource}.{group} "{name}" not found' if group else f'{resource} "{name}" not found',
                    details=details)


def bad_request(message: str) -> APIError:
    return APIError(400, message)


def method_not_allowed(method: str, what: str) -> APIError:
    return APIError(405, f"the server does not allow this method on the requested resource "
                         f"({method} {what})")


def expired(message: str) -> APIError:
    return APIError(410, message, reason="Expired")


def too_old(revision: int | str) -> APIError:
    return expired(f"too old resource version: {revision}")


def cause(e: FieldError) -> Obj:
    body = str(e)
    prefix = f"{e.path}: "
    return {"reason": CAUSE_TYPES.get(e.type, "FieldValueInvalid"),
            "message": body.removeprefix(prefix),
            "field": e.path}


def invalid(kind: str, name: str, errors: list[FieldError], *, group: str = "") -> APIError:
    """422 Invalid, as kube-apiserver words it: `Pod "web" is invalid: <errors>`."""
    e = InvalidObject(kind, name, errors)
    details: Obj = {"name": name, "kind": kind, "causes": [cause(x) for x in errors]}
    if group:
        details["group"] = group
    return APIError(422, str(e), reason="Invalid", details=details)


def from_exception(e: BaseException, *, resource: str = "", name: str = "") -> APIError | None:
    """The Status for one of netplane's own errors; None for anything else (a bug)."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, InvalidObject):
        k = kind_named(e.kind)
        return invalid(e.kind, e.name or name, e.errors, group=k.group if k is not None else "")
    if isinstance(e, AlreadyExists):
        return APIError(409, str(e), reason="AlreadyExists", details={"name": name, "kind": resource})
    if isinstance(e, Conflict):
        return APIError(409, str(e), reason="Conflict", details={"name": name, "kind": resource})
    if isinstance(e, NotFoundError):
        return APIError(404, str(e), reason="NotFound", details={"name": name, "kind": resource})
    if isinstance(e, Compacted):
        return too_old(e.compact_revision)
    if isinstance(e, UserError) and getattr(e, "http_status", 400) == 403:
        return APIError(403, str(e), reason="Forbidden", details={"name": name, "kind": resource})
    if isinstance(e, UserError):
        return APIError(400, str(e))
    if isinstance(e, StoreError):
        return APIError(503, f"the storage is unavailable: {e}")
    return None
