"""Service account tokens: kube-apiserver's TokenRequest (`POST serviceaccounts/<name>/token`,
what `kubectl create token` and the client libraries call) and the authenticator that accepts
what it issued.

A token is a JWT (PyJWT) signed ES256 with `<state-dir>/sa.key` (ECDSA P-256, made at first
start like the CA; kube's --service-account-signing-key-file), carrying kube's claims:

    iss  https://kubernetes.default.svc.cluster.local      (kubeadm's --service-account-issuer)
    sub  system:serviceaccount:<namespace>:<name>
    aud  the request's audiences, else [iss]
    iat, nbf, exp                                           exp = iat + expirationSeconds (3600)
    jti                                                     a uuid
    kubernetes.io  {namespace, serviceaccount: {name, uid}, pod|secret: {name, uid}}

A request accepts a token whose signature, issuer, audience (the issuer) and lifetime check
out, while its ServiceAccount (and the Pod or Secret it is bound to) still exists with the uid
the token names: deleting the account (or the pod) revokes its tokens. The user is the `sub`,
in the groups `system:serviceaccounts`, `system:serviceaccounts:<namespace>` and
`system:authenticated`, and in the read-only group: a service account may get, list and watch
(not Secrets), as netplane's one authorization rule allows (kube's RBAC gives it nothing by
default; netplane has no roles to grant it more).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrator.apiserver import certs
from orchestrator.apiserver.auth import AUTHENTICATED, User
from orchestrator.apiserver.status import APIError
from orchestrator.objects import meta
from orchestrator.objects.meta import POD, SECRET, SERVICE_ACCOUNT, Kind
from orchestrator.validation import InvalidObject
from orchestrator.validation.field import ROOT, FieldError, invalid, not_supported

Obj = dict[str, Any]
Lookup = Callable[[Kind, str, str], Obj | None]  # (kind, namespace, name) -> the object or None

ISSUER = "https://kubernetes.default.svc.cluster.local"
ALGORITHM = "ES256"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600  # kube: "may not specify a duration less than 10 minutes"
MAX_EXPIRATION = 2**32  # kube's validation bound
LEEWAY = 60  # seconds of clock skew allowed on nbf and exp, as kube's validator
CACHE_SECONDS = 10.0  # a verified signature is remembered this long (kube's token cache: 10 s)
CACHE_MAX = 4096
BOUND_KINDS = {"Pod": POD, "Secret": SECRET}
SA_GROUPS = "system:serviceaccounts"


def ensure_signing_key(state_dir: Path) -> bytes:
    """`<state_dir>/sa.key` (PEM, 0600), made when missing; its PEM."""
    path = state_dir / "sa.key"
    with certs.locked(state_dir):
        if path.exists():
            return path.read_bytes()
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        certs._write(path, pem, 0o600)
        return pem


def username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def _bad(path: str, value: Any, why: str) -> FieldError:
    return invalid(ROOT.child("spec").child(path), value, why)


class Tokens:
    """Issue and check this API server's service account tokens."""

    def __init__(self, key_pem: bytes, *, read_only_group: str, issuer: str = ISSUER,
                 clock: Callable[[], float] = time.time) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("the service account signing key is not an EC key")
        self._key = key
        self._public = key.public_key()
        self.issuer = issuer
        self.read_only_group = read_only_group
        self.clock = clock
        self._lock = threading.Lock()
        self._verified: dict[str, tuple[float, Obj]] = {}  # token -> (when verified, claims)

    # ------------------------------------------------------------------ TokenRequest
    def request(self, lookup: Lookup, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        """The answer to a TokenRequest `body` for ServiceAccount `namespace/name` (raises
        APIError: 404 when the account or the bound object is missing, 422 for a bad spec)."""
        sa = lookup(SERVICE_ACCOUNT, namespace, name)
        if sa is None:
            raise APIError(404, f'serviceaccounts "{name}" not found', reason="NotFound",
                           details={"name": name, "kind": "serviceaccounts"})
        raw = body.get("spec")
        spec: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        errors: list[FieldError] = []
        audiences = spec.get("audiences") or [self.issuer]
        if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
            errors.append(_bad("audiences", audiences, "must be a list of non-empty strings"))
        expiration = spec.get("expirationSeconds")
        expiration = DEFAULT_EXPIRATION if expiration is None else expiration
        if not isinstance(expiration, int) or isinstance(expiration, bool):
            errors.append(_bad("expirationSeconds", expiration, "must be an integer"))
        elif expiration < MIN_EXPIRATION:
            errors.append(_bad("expirationSeconds", expiration, "may not specify a duration less than 10 minutes"))
        elif expiration > MAX_EXPIRATION:
            errors.append(_bad("expirationSeconds", expiration, "may not specify a duration larger than 2^32 seconds"))
        claims_k8s: Obj = {"namespace": namespace, "serviceaccount": {"name": name, "uid": meta.uid(sa)}}
        ref = spec.get("boundObjectRef")
        if isinstance(ref, Mapping) and ref:
            kind = BOUND_KINDS.get(str(ref.get("kind") or ""))
            if kind is None:
                errors.append(not_supported(ROOT.child("spec").child("boundObjectRef").child("kind"),
                                            ref.get("kind"), tuple(BOUND_KINDS)))
            elif not errors:
                obj = lookup(kind, namespace, str(ref.get("name") or ""))
                if obj is None:
                    raise APIError(404, f'{kind.resource} "{ref.get("name")}" not found', reason="NotFound",
                                   details={"name": ref.get("name"), "kind": kind.resource})
                if ref.get("uid") and ref["uid"] != meta.uid(obj):
                    raise APIError(409, f"the UID in the bound object reference ({ref['uid']}) does not match "
                                        f"the UID in record. The object might have been deleted and then recreated",
                                   reason="Conflict")
                claims_k8s[kind.kind.lower()] = {"name": meta.name(obj), "uid": meta.uid(obj)}
        if errors:
            raise InvalidObject("TokenRequest", name, errors)
        now = int(self.clock())
        claims = {"iss": self.issuer, "sub": username(namespace, name), "aud": audiences, "iat": now,
                  "nbf": now, "exp": now + expiration, "jti": str(uuid.uuid4()), "kubernetes.io": claims_k8s}
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        created = dt.datetime.fromtimestamp(now, dt.UTC)
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"name": name, "namespace": namespace,
                             "creationTimestamp": meta.format_time(created)},
                "spec": {"audiences": audiences, "expirationSeconds": expiration,
                         "boundObjectRef": dict(ref) if isinstance(ref, Mapping) and ref else None},
                "status": {"token": token,
                           "expirationTimestamp": meta.format_time(created + dt.timedelta(seconds=expiration))}}

    # ------------------------------------------------------------------ authentication
    @staticmethod
    def looks_like_one(token: str) -> bool:
        return token.count(".") == 2

    def claims(self, token: str) -> Obj | None:
        """The claims of a token this server issued and that is valid now, else None."""
        now = self.clock()
        with self._lock:
            hit = self._verified.get(token)
        if hit is not None and now - hit[0] < CACHE_SECONDS and hit[1]["exp"] + LEEWAY > now:
            return hit[1]
        try:
            claims: Obj = jwt.decode(token, self._public, algorithms=[ALGORITHM], audience=self.issuer,
                                     issuer=self.issuer, options={
                                         "require": ["exp", "iat", "nbf", "sub", "iss", "aud"],
                                         # times against our clock, below
                                         "verify_exp": False, "verify_nbf": False, "verify_iat": False})
        except jwt.PyJWTError:
            return None
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or not isinstance(nbf, int | float) or \
                not nbf - LEEWAY <= now < exp + LEEWAY:
            return None
        with self._lock:
            if len(self._verified) >= CACHE_MAX:
                self._verified.clear()
            self._verified[token] = (now, claims)
        return claims

    def user(self, claims: Mapping[str, Any], lookup: Lookup) -> User | None:
        """The service account a valid token's `claims` (`claims()`) name, while it (and what
        the token is bound to) still exists with the uid in the token; None otherwise."""
        k8s = claims.get("kubernetes.io")
        if not isinstance(k8s, Mapping):
            return None
        ns, sa = str(k8s.get("namespace") or ""), k8s.get("serviceaccount")
        if not isinstance(sa, Mapping) or claims.get("sub") != username(ns, str(sa.get("name") or "")):
            return None
        current = lookup(SERVICE_ACCOUNT, ns, str(sa.get("name") or ""))
        if current is None or meta.uid(current) != sa.get("uid"):
            return None
        for kind in BOUND_KINDS.values():
            bound = k8s.get(kind.kind.lower())
            if isinstance(bound, Mapping):
                obj = lookup(kind, ns, str(bound.get("name") or ""))
                if obj is None or meta.uid(obj) != bound.get("uid") or \
                        (kind == POD and meta.is_deleting(obj)):
                    return None
        return User(str(claims["sub"]), meta.uid(current),
                    (SA_GROUPS, f"{SA_GROUPS}:{ns}", AUTHENTICATED, self.read_only_group))
