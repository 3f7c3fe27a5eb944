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
`system:authenticated`. As in kube, RBAC gives it nothing more than every authenticated user
(discovery and the self reviews) until a binding names it (`kubectl create rolebinding
--clusterrole=view --serviceaccount=<ns>:<name>`).

**Keys across servers.** Each API server signs with its own key and names it in the token's
`kid` header (kube's key id: the base64url SHA-256 of the public key's DER). It publishes the
public key under `<prefix>/pki/service-account-keys/<kid>` at start (withdrawing one it
published before and no longer has), and accepts a token signed by any published key: so a
token issued by one master is good at every other, as kube-apiserver's shared
--service-account-key-file makes it. A node agent publishes its own key the same way, with its
node's name in the record: the kubelet mints the tokens of its pods' projected
`serviceAccountToken` volumes with it, and such a token is accepted only while it is bound to
a pod on that node (kube's NodeRestriction: a node may have tokens for its own pods only).
A token with no `kid` (issued before keys were published) is checked against the server's own.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from netplane.store.txn import Absent, Delete, Guard, ModRevisionIs
from orchestrator.apiserver import certs
from orchestrator.apiserver.auth import AUTHENTICATED, User
from orchestrator.apiserver.status import APIError
from orchestrator.objects import meta
from orchestrator.objects.meta import POD, SECRET, SERVICE_ACCOUNT, Kind
from orchestrator.validation import InvalidObject
from orchestrator.validation.configdata import SA_UID_ANNOTATION
from orchestrator.validation.field import ROOT, FieldError, invalid, not_supported

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Lookup = Callable[[Kind, str, str], Obj | None]  # (kind, namespace, name) -> the object or None

ISSUER = "https://kubernetes.default.svc.cluster.local"
ALGORITHM = "ES256"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600  # kube: "may not specify a duration less than 10 minutes"
MAX_EXPIRATION = 2**32  # kube's validation bound
SECRET_TOKEN_LIFETIME = 100 * 365 * 24 * 3600  # a token Secret's: until the Secret goes (kube's have no exp)
LEEWAY = 60  # seconds of clock skew allowed on nbf and exp, as kube's validator
CACHE_SECONDS = 10.0  # a verified signature is remembered this long (kube's token cache: 10 s)
CACHE_MAX = 4096
BOUND_KINDS = {"Pod": POD, "Secret": SECRET}
SA_GROUPS = "system:serviceaccounts"
SA_USER_PREFIX = "system:serviceaccount:"  # <namespace>:<name>


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


def key_id(public: ec.EllipticCurvePublicKey) -> str:
    """kube's key id of a public key: base64url (unpadded) SHA-256 of its DER."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


KID_RE = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class PublicKey:
    """A published verification key: an API server's (`node` empty) or a node's kubelet's."""

    key: ec.EllipticCurvePublicKey
    node: str = ""


def key_record(public: ec.EllipticCurvePublicKey, node: str = "") -> bytes:
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    body: Obj = {"publicKey": pem.decode()}
    if node:
        body["node"] = node
    return json.dumps(body, sort_keys=True).encode()


def parse_key_record(kid: str, raw: bytes) -> PublicKey:
    """A record `key_record` wrote, checked against its `kid` (ValueError if it is not one)."""
    try:
        body = json.loads(raw)
        key = serialization.load_pem_public_key(str(body["publicKey"]).encode())
        node = body.get("node") or ""
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a service account key record: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(node, str):
        raise ValueError("not a service account key record: not an EC public key")  # noqa: TRY004 - bad data, one error type
    if key_id(key) != kid:
        raise ValueError("the record's key does not have the key id it is stored under")
    return PublicKey(key, node)


def token_kid(token: str) -> str | None:
    """The `kid` header of a token (unverified), None when it has none or is not a JWT."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    return kid if isinstance(kid, str) and KID_RE.fullmatch(kid) else None


class Signer:
    """A signing key (`ensure_signing_key`'s PEM) and its key id."""

    def __init__(self, key_pem: bytes) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("the service account signing key is not an EC key")
        self._key = key
        self.public = key.public_key()
        self.kid = key_id(self.public)

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(dict(claims), self._key, algorithm=ALGORITHM, headers={"kid": self.kid})


def token_claims(*, issuer: str, namespace: str, account: Mapping[str, Any], audiences: list[str],
                 expiration: int, now: int, bound: Mapping[str, Mapping[str, Any]] | None = None) -> Obj:
    """kube's claims for a token of ServiceAccount `account`, bound to the objects in `bound`
    (claim name -> object: "pod", "secret"; "node" beside a pod, as kubelet's tokens carry)."""
    k8s: Obj = {"namespace": namespace, "serviceaccount": {"name": meta.name(account), "uid": meta.uid(account)}}
    for claim, obj in (bound or {}).items():
        k8s[claim] = {"name": meta.name(obj), "uid": meta.uid(obj)}
    return {"iss": issuer, "sub": username(namespace, meta.name(account)), "aud": audiences, "iat": now,
            "nbf": now, "exp": now + expiration, "jti": str(uuid.uuid4()), "kubernetes.io": k8s}


def publish_key(store: Any, key_of: Callable[[str], str], signer: Signer, before: list[str], *,
                node: str = "") -> list[str]:
    """Our public key into etcd at `key_of(kid)`, and the keys we published `before` (kids)
    and no longer have withdrawn (only those: nobody else's). The kids published now."""
    store.put(key_of(signer.kid), key_record(signer.public, node))
    for kid in before:
        if kid != signer.kid and KID_RE.fullmatch(kid):
            store.delete(key_of(kid))
    return [signer.kid]


def withdraw_node_keys(store: Any, prefix: str, node_key: Callable[[str], str], *,
                       only: Collection[str] | None = None, guards: Sequence[Guard] = ()) -> list[str]:
    """Withdraw the published keys of nodes that are gone: each record under `prefix` that
    names a node (`only` those nodes, when given) is deleted in a transaction that holds
    only while that Node's key (`node_key(name)`) is absent, the record is as read, and
    `guards` (a leader's fence) hold. A node agent registers its Node before it publishes its
    key, so the key of a Node that exists, or has come back meanwhile, stays. An API
    server's key (no node) is never touched; a malformed record is logged and left. The kids
    withdrawn."""
    kvs, _ = store.list(prefix)
    withdrawn: list[str] = []
    for kv in kvs:
        kid = kv.key[len(prefix):]
        try:
            node = parse_key_record(kid, kv.value).node
        except ValueError as e:
            log.warning("skipping the service account key %s: %s", kid, e)
            continue
        if not node or (only is not None and node not in only):
            continue
        if store.txn([Absent(node_key(node)), ModRevisionIs(kv.key, kv.mod_revision), *guards],
                     [Delete(kv.key)]).succeeded:
            log.info("withdrew the service account key %s of node %s: the Node is gone", kid, node)
            withdrawn.append(kid)
    return withdrawn


class PublishedKeys:
    """The verification keys by kid, read from etcd on first use and re-read after `ttl`
    seconds (a withdrawn key stops being accepted within that), a kid found missing after
    `miss_ttl`. A malformed record is logged and treated as missing."""

    def __init__(self, fetch: Callable[[str], Awaitable[bytes | None]], own: Signer, *,
                 ttl: float = 10.0, miss_ttl: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1024) -> None:
        self.fetch = fetch
        self.own = PublicKey(own.public)
        self.own_kid = own.kid
        self.ttl, self.miss_ttl, self.clock, self.max_keys = ttl, miss_ttl, clock, max_keys
        self._known: dict[str, tuple[float, PublicKey | None]] = {}

    async def get(self, kid: str | None) -> PublicKey | None:
        if kid is None or kid == self.own_kid:
            return self.own
        now = self.clock()
        hit = self._known.get(kid)
        if hit is not None and now - hit[0] < (self.ttl if hit[1] is not None else self.miss_ttl):
            return hit[1]
        raw = await self.fetch(kid)
        found = None
        if raw is not None:
            try:
                found = parse_key_record(kid, raw)
            except ValueError as e:
                log.warning("skipping the service account key %s: %s", kid, e)
        if len(self._known) >= self.max_keys:
            self._known.clear()
        self._known[kid] = (now, found)
        return found


def needed(claims: Mapping[str, Any]) -> list[tuple[Kind, str, str]]:
    """The objects `Tokens.user` looks up for `claims`: the account, and what it is bound to."""
    k8s = claims.get("kubernetes.io")
    if not isinstance(k8s, Mapping):
        return []
    ns = str(k8s.get("namespace") or "")
    out = []
    for claim, kind in (("serviceaccount", SERVICE_ACCOUNT), ("pod", POD), ("secret", SECRET)):
        ref = k8s.get(claim)
        if isinstance(ref, Mapping) and ref.get("name"):
            out.append((kind, ns, str(ref["name"])))
    return out


def username(namespace: str, name: str) -> str:
    return f"{SA_USER_PREFIX}{namespace}:{name}"


def _bad(path: str, value: Any, why: str) -> FieldError:
    return invalid(ROOT.child("spec").child(path), value, why)


class Tokens:
    """Issue and check this API server's service account tokens."""

    def __init__(self, key_pem: bytes, *, issuer: str = ISSUER,
                 clock: Callable[[], float] = time.time) -> None:
        self.signer = Signer(key_pem)
        self.issuer = issuer
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
        bound: dict[str, Obj] = {}
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
                bound[kind.kind.lower()] = obj
        if errors:
            raise InvalidObject("TokenRequest", name, errors)
        now = int(self.clock())
        token = self.signer.sign(token_claims(issuer=self.issuer, namespace=namespace, account=sa,
                                              audiences=audiences, expiration=expiration, now=now, bound=bound))
        created = dt.datetime.fromtimestamp(now, dt.UTC)
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"name": name, "namespace": namespace,
                             "creationTimestamp": meta.format_time(created)},
                "spec": {"audiences": audiences, "expirationSeconds": expiration,
                         "boundObjectRef": dict(ref) if isinstance(ref, Mapping) and ref else None},
                "status": {"token": token,
                           "expirationTimestamp": meta.format_time(created + dt.timedelta(seconds=expiration))}}

    # ------------------------------------------------------------------ token Secrets
    def fill_secret(self, secret: Obj, account: Obj, ca: bytes) -> Obj:
        """A `kubernetes.io/service-account-token` Secret with kube's tokens controller's data:
        `token`, `ca.crt` and `namespace`, and the account's uid in its annotation. The token is
        bound to the Secret (revoked with it, or with the account) and good for 100 years where
        kube's legacy token has no expiry."""
        ns = meta.namespace(secret)
        token = self.signer.sign(token_claims(issuer=self.issuer, namespace=ns, account=account,
                                              audiences=[self.issuer], expiration=SECRET_TOKEN_LIFETIME,
                                              now=int(self.clock()), bound={"secret": secret}))
        data = dict(secret.get("data") or {})
        for k, v in (("token", token.encode()), ("ca.crt", ca), ("namespace", ns.encode())):
            if v:
                data[k] = base64.b64encode(v).decode()
        md = dict(secret.get("metadata") or {})
        md["annotations"] = {**(md.get("annotations") or {}), SA_UID_ANNOTATION: meta.uid(account)}
        return {**secret, "metadata": md, "data": data}

    # ------------------------------------------------------------------ authentication
    @staticmethod
    def looks_like_one(token: str) -> bool:
        return token.count(".") == 2

    def claims(self, token: str, key: PublicKey | None = None) -> Obj | None:
        """The claims of a token signed with `key` (default: this server's own) that is valid
        now, else None."""
        now = self.clock()
        with self._lock:
            hit = self._verified.get(token)
        if hit is not None and now - hit[0] < CACHE_SECONDS and hit[1]["exp"] + LEEWAY > now:
            return hit[1]
        try:
            claims: Obj = jwt.decode(token, (key.key if key is not None else self.signer.public), algorithms=[ALGORITHM], audience=self.issuer,
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

    def user(self, claims: Mapping[str, Any], lookup: Lookup, *, node: str = "") -> User | None:
        """The service account a valid token's `claims` (`claims()`) name, while it (and what
        the token is bound to) still exists with the uid in the token; None otherwise. A token
        signed by `node`'s key must be bound to a pod of that node, and name the node."""
        k8s = claims.get("kubernetes.io")
        if not isinstance(k8s, Mapping):
            return None
        ns, sa = str(k8s.get("namespace") or ""), k8s.get("serviceaccount")
        if not isinstance(sa, Mapping) or claims.get("sub") != username(ns, str(sa.get("name") or "")):
            return None
        current = lookup(SERVICE_ACCOUNT, ns, str(sa.get("name") or ""))
        if current is None or meta.uid(current) != sa.get("uid"):
            return None
        if node:
            pod_claim, node_claim = k8s.get("pod"), k8s.get("node")
            if not isinstance(pod_claim, Mapping) or not isinstance(node_claim, Mapping) or \
                    node_claim.get("name") != node:
                return None
            pod = lookup(POD, ns, str(pod_claim.get("name") or ""))
            if pod is None or (pod.get("spec") or {}).get("nodeName") != node:
                return None
        for kind in BOUND_KINDS.values():
            bound = k8s.get(kind.kind.lower())
            if isinstance(bound, Mapping):
                obj = lookup(kind, ns, str(bound.get("name") or ""))
                if obj is None or meta.uid(obj) != bound.get("uid") or \
                        (kind == POD and meta.is_deleting(obj)):
                    return None
        return User(str(claims["sub"]), meta.uid(current),
                    (SA_GROUPS, f"{SA_GROUPS}:{ns}", AUTHENTICATED))
