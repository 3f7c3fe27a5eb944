"""The tokens of a node's pods: kubelet's token manager, for projected `serviceAccountToken`
volume sources.

kubelet asks the API server for them (TokenRequest bound to the pod). A netplane node agent
talks to etcd only and has no API credential, so it signs them itself, with its own key
(`<agent state dir>/sa.key`), whose public half it publishes for the API servers under
`<prefix>/pki/service-account-keys/<kid>` with its node's name (`satokens.publish_key`). The
claims are what kube-apiserver puts in a kubelet's token: the account (name, uid), the pod and
the node it is bound to. An API server accepts such a token only while its pod exists, with
that uid, on that node (`satokens.Tokens.user`): the NodeRestriction rule that a node has tokens
for its own pods only, and the pod's deletion revokes them.

A token is kept per (pod, audience, lifetime) and replaced, as kubelet's `requiresRefresh`
does, once 80 % of its lifetime or 24 hours have passed; the volume's next sync writes the new
one (atomically, beside the other files of the projection). It is replaced sooner when its
service account is no longer the one it names: an account deleted and made again (a new uid)
revokes the tokens of the old one, so the account is looked at again every `RECHECK` seconds
(kubelet keeps such a token until its refresh; a pod would hold a refused token that long).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from netplane.errors import NetplaneError
from netplane.store import Keys
from orchestrator.apiserver import satokens
from orchestrator.objects import meta

log = logging.getLogger(__name__)

Obj = dict[str, Any]
REFRESH_FRACTION = 0.8
MAX_AGE = 24 * 3600
RECHECK = 60.0  # seconds between looks at a cached token's service account (its uid)
PUBLISHED_FILE = "sa-key.published"  # the kid we published last (withdrawn when the key is replaced)


class TokenError(NetplaneError):
    """A pod's token cannot be made (its service account is missing)."""


class PodTokens:
    """Service account tokens for the pods of `node`, signed with the node's key."""

    def __init__(self, signer: satokens.Signer, node: str, *, account: Callable[[str, str], Obj | None],
                 node_object: Callable[[], Obj | None], clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.node = node
        self.account = account  # (namespace, name) -> the ServiceAccount, or None
        self.node_object = node_object
        self.clock = clock
        self._lock = threading.Lock()
        # -> (iat, exp, token, the account's uid, when that uid was last seen current)
        self._tokens: dict[tuple[str, str, int], tuple[int, int, bytes, str, int]] = {}

    def token(self, pod: Mapping[str, Any], source: Mapping[str, Any]) -> bytes:
        """The token for `pod`'s projection `source` (its audience and expirationSeconds)."""
        uid = meta.uid(pod)
        audience = str(source.get("audience") or "") or satokens.ISSUER
        lifetime = int(source.get("expirationSeconds") or satokens.DEFAULT_EXPIRATION)
        key = (uid, audience, lifetime)
        now = int(self.clock())
        with self._lock:
            hit = self._tokens.get(key)
        ns = meta.namespace(pod)
        name = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
        sa: Obj | None = None
        if hit is not None and now < min(hit[0] + REFRESH_FRACTION * (hit[1] - hit[0]), hit[0] + MAX_AGE):
            if now - hit[4] < RECHECK:
                return hit[2]
            sa = self.account(ns, name)
            if sa is not None and meta.uid(sa) == hit[3]:
                with self._lock:
                    self._tokens[key] = (*hit[:4], now)
                return hit[2]
            log.info("pod %s/%s: service account %s changed; a new token", ns, meta.name(pod), name)
        sa = sa if sa is not None else self.account(ns, name)
        if sa is None:
            raise TokenError(f'serviceaccount "{name}" not found in namespace "{ns}"')
        node = self.node_object()
        if node is None:
            raise TokenError(f'node "{self.node}" is not registered yet')
        claims = satokens.token_claims(issuer=satokens.ISSUER, namespace=ns, account=sa, audiences=[audience],
                                       expiration=lifetime, now=now, bound={"pod": pod, "node": node})
        token = self.signer.sign(claims).encode()
        with self._lock:
            self._tokens[key] = (now, now + lifetime, token, meta.uid(sa), now)
        return token

    def forget(self, uid: str) -> None:
        """Drop the tokens of a pod that is gone from this node."""
        with self._lock:
            for k in [k for k in self._tokens if k[0] == uid]:
                del self._tokens[k]


def republish(store: Any, keys: Keys, signer: satokens.Signer, node: str) -> None:
    """The node's key published again (after its Node was deleted and registered anew, the
    key went with the Node); a failure is logged, and the next re-registration tries again."""
    try:
        satokens.publish_key(store, keys.sa_key, signer, [], node=node)
        log.info("published the node's service account key %s again", signer.kid)
    except NetplaneError as e:
        log.warning("cannot publish the node's service account key: %s", e)


def node_signer(state_dir: Path, store: Any, keys: Keys, node: str) -> satokens.Signer:
    """The node's signing key (made at first start), its public half published for the API
    servers with the node's name; the key published before from this state directory, if it
    was another, withdrawn. Failing to publish is logged: the tokens are then refused until a
    later start publishes it."""
    signer = satokens.Signer(satokens.ensure_signing_key(state_dir))
    path = state_dir / PUBLISHED_FILE
    try:
        before = [path.read_text().strip()]
    except OSError:
        before = []
    try:
        satokens.publish_key(store, keys.sa_key, signer, before, node=node)
        path.write_text(signer.kid + "\n")
        log.info("published the node's service account key %s", signer.kid)
    except NetplaneError as e:
        log.warning("cannot publish the node's service account key: %s", e)
    return signer
