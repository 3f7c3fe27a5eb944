"""Service account tokens (`orchestrator.apiserver.satokens`): what a token claims, and when it
stops being accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest

from orchestrator.apiserver import satokens
from orchestrator.apiserver.status import APIError
from orchestrator.validation import InvalidObject


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world() -> dict[tuple[str, str, str], dict[str, Any]]:
    return {("ServiceAccount", "ns", "bot"): {"metadata": {"name": "bot", "namespace": "ns", "uid": "sa-1"}},
            ("Pod", "ns", "web"): {"metadata": {"name": "web", "namespace": "ns", "uid": "pod-1"}}}


def lookup_in(world: dict[tuple[str, str, str], dict[str, Any]]) -> satokens.Lookup:
    return lambda kind, ns, name: world.get((kind.kind, ns, name))


def tokens(tmp_path: Path, clock: Clock) -> satokens.Tokens:
    return satokens.Tokens(satokens.ensure_signing_key(tmp_path), clock=clock)


def accepted(t: satokens.Tokens, token: str, lookup: satokens.Lookup) -> Any:
    """The user a request with `token` is, as the API server asks: claims, then the account."""
    claims = t.claims(token)
    return None if claims is None else t.user(claims, lookup)


def test_a_token_names_its_account_and_ends_at_its_expiry(tmp_path: Path, world: Any) -> None:
    clock = Clock()
    t = tokens(tmp_path, clock)
    answer = t.request(lookup_in(world), "ns", "bot", {"spec": {"expirationSeconds": 600}})
    token = answer["status"]["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:ns:bot" and claims["aud"] == [satokens.ISSUER]
    assert claims["exp"] - claims["iat"] == 600
    assert claims["kubernetes.io"] == {"namespace": "ns", "serviceaccount": {"name": "bot", "uid": "sa-1"}}
    user = accepted(t, token, lookup_in(world))
    assert user is not None and user.name == "system:serviceaccount:ns:bot" and user.uid == "sa-1"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated")
    clock.now += 600 + satokens.LEEWAY + 1  # past exp and the skew allowed
    assert accepted(t, token, lookup_in(world)) is None
    # the key is kept: another server on the same state dir accepts what this one issued
    clock.now -= 600
    assert accepted(tokens(tmp_path, clock), token, lookup_in(world)) is not None
    assert (tmp_path / "sa.key").stat().st_mode & 0o777 == 0o600


def test_a_token_goes_with_its_account_or_the_pod_it_is_bound_to(tmp_path: Path, world: Any) -> None:
    t = tokens(tmp_path, Clock())
    lookup = lookup_in(world)
    bound = t.request(lookup, "ns", "bot", {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                                         "name": "web"}}})["status"]["token"]
    assert accepted(t, bound, lookup) is not None
    world[("Pod", "ns", "web")]["metadata"]["uid"] = "pod-2"  # deleted and made again
    assert accepted(t, bound, lookup) is None
    plain = t.request(lookup, "ns", "bot", {})["status"]["token"]
    world[("ServiceAccount", "ns", "bot")]["metadata"]["uid"] = "sa-2"
    assert accepted(t, plain, lookup) is None
    del world[("ServiceAccount", "ns", "bot")]
    assert accepted(t, plain, lookup) is None


def test_foreign_and_malformed_tokens_are_refused(tmp_path: Path, world: Any) -> None:
    t = tokens(tmp_path / "a", Clock())
    other = tokens(tmp_path / "b", Clock())
    token = other.request(lookup_in(world), "ns", "bot", {})["status"]["token"]
    assert accepted(t, token, lookup_in(world)) is None  # signed by another server's key
    for junk in ("a.b.c", "not-a-token", ""):
        assert accepted(t, junk, lookup_in(world)) is None


@pytest.mark.parametrize(("spec", "code"), [
    ({"expirationSeconds": 599}, 422), ({"expirationSeconds": "1h"}, 422), ({"audiences": [""]}, 422),
    ({"boundObjectRef": {"kind": "Node", "name": "n"}}, 422), ({"boundObjectRef": {"kind": "Pod", "name": "nope"}}, 404),
    ({"boundObjectRef": {"kind": "Pod", "name": "web", "uid": "other"}}, 409)])
def test_bad_token_requests_are_refused(tmp_path: Path, world: Any, spec: dict[str, Any], code: int) -> None:
    t = tokens(tmp_path, Clock())
    with pytest.raises((APIError, InvalidObject)) as e:
        t.request(lookup_in(world), "ns", "bot", {"spec": spec})
    assert (e.value.code if isinstance(e.value, APIError) else 422) == code
    with pytest.raises(APIError) as missing:
        t.request(lookup_in(world), "ns", "nobody", {})
    assert missing.value.code == 404



def test_published_keys_are_read_by_kid_re_read_after_their_ttl_and_bad_ones_skipped(
        tmp_path: Path, world: Any, caplog: pytest.LogCaptureFixture) -> None:
    """What another server publishes verifies its tokens here; a withdrawn key stops doing so
    within the ttl; a record that is not one is logged and treated as missing."""
    import asyncio

    a, b = tokens(tmp_path / "a", Clock()), tokens(tmp_path / "b", Clock())
    etcd: dict[str, bytes] = {b.signer.kid: satokens.key_record(b.signer.public)}
    reads: list[str] = []

    async def fetch(kid: str) -> bytes | None:
        reads.append(kid)
        return etcd.get(kid)

    now = [0.0]
    keys = satokens.PublishedKeys(fetch, a.signer, ttl=10.0, miss_ttl=1.0, clock=lambda: now[0])
    get = lambda kid: asyncio.run(keys.get(kid))
    token = b.request(lookup_in(world), "ns", "bot", {})["status"]["token"]
    kid = satokens.token_kid(token)
    assert kid == b.signer.kid != a.signer.kid
    key = get(kid)
    assert key is not None and key.node == ""
    assert a.user(a.claims(token, key), lookup_in(world)) is not None  # b's token, checked by a
    assert get(a.signer.kid) is keys.own and get(None) is keys.own  # our own: never read
    del etcd[kid]  # withdrawn
    now[0] = 9.0
    assert get(kid) is not None and reads == [kid]  # remembered for the ttl
    now[0] = 10.5
    assert get(kid) is None and reads == [kid, kid]
    assert get(kid) is None and reads == [kid, kid]  # a miss is remembered too, for miss_ttl
    now[0] = 12.0
    get(kid)
    assert reads == [kid, kid, kid]
    etcd[kid] = b"{not json"
    now[0] = 20.0
    assert get(kid) is None and "skipping the service account key" in caplog.text
    etcd[kid] = satokens.key_record(a.signer.public)  # a's key stored under b's kid
    now[0] = 30.0
    assert get(kid) is None
    assert satokens.token_kid("a.b.c") is None and satokens.token_kid("nope") is None


def test_a_nodes_token_is_good_only_for_a_live_pod_on_that_node(tmp_path: Path, world: Any) -> None:
    from orchestrator.node.podtokens import PodTokens, TokenError

    clock = Clock()
    server = tokens(tmp_path / "api", clock)
    signer = satokens.Signer(satokens.ensure_signing_key(tmp_path / "n1"))
    node_obj = {"metadata": {"name": "n1", "uid": "node-1"}}
    pod = world[("Pod", "ns", "web")]
    pod["spec"] = {"nodeName": "n1", "serviceAccountName": "bot"}
    pt = PodTokens(signer, "n1", account=lambda ns, name: world.get(("ServiceAccount", ns, name)),
                   node_object=lambda: node_obj, clock=clock)
    token = pt.token(pod, {"expirationSeconds": 1000}).decode()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["kubernetes.io"] == {"namespace": "ns", "serviceaccount": {"name": "bot", "uid": "sa-1"},
                                       "pod": {"name": "web", "uid": "pod-1"},
                                       "node": {"name": "n1", "uid": "node-1"}}
    assert claims["exp"] - claims["iat"] == 1000 and claims["aud"] == [satokens.ISSUER]
    n1 = satokens.PublicKey(signer.public, node="n1")
    lookup = lookup_in(world)
    assert server.claims(token) is None  # not the server's own key
    assert server.user(server.claims(token, n1), lookup, node="n1") is not None
    # another node's key may not vouch for it, and it stops with the pod
    assert server.user(server.claims(token, n1), lookup, node="n2") is None
    pod["spec"]["nodeName"] = "n2"
    assert server.user(server.claims(token, n1), lookup, node="n1") is None
    pod["spec"]["nodeName"] = "n1"
    pod["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    assert server.user(server.claims(token, n1), lookup, node="n1") is None
    del pod["metadata"]["deletionTimestamp"]
    # kept until 80 % of its lifetime, then a new one
    clock.now += 799
    assert pt.token(pod, {"expirationSeconds": 1000}).decode() == token
    clock.now += 2
    fresh = pt.token(pod, {"expirationSeconds": 1000}).decode()
    assert fresh != token and server.user(server.claims(fresh, n1), lookup, node="n1") is not None
    assert pt.token(pod, {"expirationSeconds": 1000, "audience": "vault"}).decode() != fresh  # per audience
    # the account deleted and made again (a new uid): the old token is refused, and within a
    # minute the pod has one of the new account
    world[("ServiceAccount", "ns", "bot")] = {**world[("ServiceAccount", "ns", "bot")],
                                              "metadata": {"name": "bot", "namespace": "ns", "uid": "sa-2"}}
    assert server.user(server.claims(fresh, n1), lookup, node="n1") is None
    clock.now += 30
    assert pt.token(pod, {"expirationSeconds": 1000}).decode() == fresh  # not looked at yet
    clock.now += 31
    renewed = pt.token(pod, {"expirationSeconds": 1000}).decode()
    assert renewed != fresh and server.user(server.claims(renewed, n1), lookup, node="n1") is not None
    clock.now += 61
    assert pt.token(pod, {"expirationSeconds": 1000}).decode() == renewed  # the same account: kept
    ghost = {"metadata": {"name": "g", "namespace": "ns", "uid": "pod-9"},
             "spec": {"nodeName": "n1", "serviceAccountName": "ghost"}}
    with pytest.raises(TokenError, match='serviceaccount "ghost" not found in namespace "ns"'):
        pt.token(ghost, {"expirationSeconds": 1000})
    pt.forget("pod-1")  # the pod gone from the node: its tokens with it
    assert pt.token(pod, {"expirationSeconds": 1000}).decode() != fresh
