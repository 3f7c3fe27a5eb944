"""ConfigMap and Secret: kube-apiserver's validation of their data (`ValidateConfigMap`,
`ValidateSecret` in pkg/apis/core/validation) and a Secret's write-time conversion of
`stringData` into `data`.

* Keys of `data`, `binaryData` (ConfigMap) and `data`, `stringData` (Secret) are config keys:
  `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`, not starting with `..`.
* A ConfigMap key is in `data` or `binaryData`, not both; a Secret's `data` values are
  base64 (the wire form of Go's []byte). Either object holds at most 1 MiB (kube's
  MaxSecretSize and the ConfigMap limit, counted over the decoded bytes and the keys).
* A Secret's `type` (default `Opaque`) cannot change; the well-known types require their keys
  (`kubernetes.io/tls`: tls.crt and tls.key; `kubernetes.io/dockerconfigjson`:
  .dockerconfigjson; `kubernetes.io/ssh-auth`: ssh-privatekey; `kubernetes.io/dockercfg`:
  .dockercfg). A service-account token Secret (`kubernetes.io/service-account-token`) names
  its account in the annotation `kubernetes.io/service-account.name`; the API server fills in
  its token (`apiserver.satokens`, kube's tokens controller).
* `immutable: true` freezes the data (and itself) from then on.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from orchestrator.validation.field import (
    ROOT,
    FieldError,
    forbidden,
    invalid,
    required,
)

MAX_BYTES = 1024 * 1024
KEY_MAX = 253
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
KEY_MESSAGE = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
               "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
OPAQUE = "Opaque"
SECRET_TYPES: dict[str, tuple[str, ...]] = {  # type -> keys it needs
    OPAQUE: (),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/basic-auth": (),
    "bootstrap.kubernetes.io/token": (),
}
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"
SECRET_TYPES[SERVICE_ACCOUNT_TOKEN] = ()
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"
IMMUTABLE = "field is immutable when `immutable` is set"


def key_errors(key: str) -> list[str]:
    """kube's IsConfigMapKey: what is wrong with `key` as a config key (empty when fine)."""
    out = []
    if len(key) > KEY_MAX:
        out.append(f"must be no more than {KEY_MAX} characters")
    if not _KEY.match(key):
        out.append(KEY_MESSAGE)
    if key in (".", ".."):
        out.append(f"must not be '{key}'")
    elif key.startswith(".."):
        out.append("must not start with '..'")
    return out


def _map(obj: Mapping[str, Any], field: str) -> dict[str, Any]:
    v = obj.get(field)
    return v if isinstance(v, dict) else {}


def _keys(obj: Mapping[str, Any], field: str, out: list[FieldError]) -> None:
    for k in _map(obj, field):
        for msg in key_errors(k):
            out.append(invalid(ROOT.child(field), k, msg))


def decoded(value: Any) -> bytes | None:
    """A base64 []byte value as Go reads it (standard alphabet, padded); None when it is not."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def config_map(cm: Mapping[str, Any], out: list[FieldError]) -> None:
    _keys(cm, "data", out)
    _keys(cm, "binaryData", out)
    data, binary = _map(cm, "data"), _map(cm, "binaryData")
    size = 0
    for k, v in data.items():
        size += len(k) + len(str(v).encode())
    for k, v in binary.items():
        if k in data:
            out.append(invalid(ROOT.child("binaryData"), k, "duplicate of key present in data"))
        raw = decoded(v)
        if raw is None:
            out.append(invalid(ROOT.child("binaryData").key(k), "<binary>", "must be base64-encoded"))
            continue
        size += len(k) + len(raw)
    if size > MAX_BYTES:
        out.append(FieldError("", "Too long", f"must have at most {MAX_BYTES} bytes"))


def secret(s: Mapping[str, Any], out: list[FieldError]) -> None:
    _keys(s, "data", out)
    kind = str(s.get("type") or OPAQUE)
    if kind == SERVICE_ACCOUNT_TOKEN and not ((s.get("metadata") or {}).get("annotations") or {}).get(SA_NAME_ANNOTATION):
        out.append(required(ROOT.child("metadata").child("annotations").key(SA_NAME_ANNOTATION)))
    size = 0
    values: dict[str, bytes] = {}
    for k, v in _map(s, "data").items():
        raw = decoded(v)
        if raw is None:
            out.append(invalid(ROOT.child("data").key(k), "<secret contents redacted>", "must be base64-encoded"))
            continue
        values[k] = raw
        size += len(k) + len(raw)
    if size > MAX_BYTES:
        out.append(FieldError("data", "Too long", f"must have at most {MAX_BYTES} bytes"))
    for need in SECRET_TYPES.get(kind, ()):
        if need not in values:
            out.append(required(ROOT.child("data").key(need)))
    if kind == "kubernetes.io/basic-auth" and values and not ({"username", "password"} & set(values)):
        out.append(required(ROOT.child("data").key("username")))


def update_errors(kind: str, current: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """What an update of a ConfigMap or Secret may not change."""
    out: list[FieldError] = []
    if kind == "Secret" and str(current.get("type") or OPAQUE) != str(new.get("type") or OPAQUE):
        out.append(invalid(ROOT.child("type"), new.get("type"), "field is immutable"))
    if current.get("immutable") is True:
        for field in ("data", "binaryData"):
            if (current.get(field) or {}) != (new.get(field) or {}):
                out.append(forbidden(ROOT.child(field), IMMUTABLE))
        if new.get("immutable") is not True:
            out.append(forbidden(ROOT.child("immutable"), IMMUTABLE))
    return out


def secret_defaults(s: dict[str, Any]) -> None:
    """`type` Opaque when unset; `stringData` written into `data` (UTF-8, base64; it wins over
    a `data` key of the same name) and dropped, as kube's secret strategy does on every write."""
    if not s.get("type"):
        s["type"] = OPAQUE
    string_data = s.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        current = s.get("data")
        data: dict[str, Any] = current if isinstance(current, dict) else {}
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        s["data"] = data
