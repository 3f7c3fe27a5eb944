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
    return satokens.Tokens(satokens.ensure_signing_key(tmp_path), read_only_group="readonly", clock=clock)


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
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated", "readonly")
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

