"""Label selectors: string syntax, set and LabelSelector forms, Kubernetes' matching rules."""

from __future__ import annotations

import pytest

from orchestrator.objects.selector import (
    Requirement,
    Selector,
    SelectorError,
    from_label_selector,
    from_set,
    parse,
)

WEB = {"app": "web", "env": "prod", "tier": "fe"}
DB = {"app": "db", "env": "qa"}
BARE: dict[str, str] = {}


def test_parse_every_operator() -> None:
    s = parse("a=b,c!=d,e in (x,y),!f")
    assert s.requirements == (
        Requirement("a", "=", ("b",)),
        Requirement("c", "!=", ("d",)),
        Requirement("e", "in", ("x", "y")),
        Requirement("f", "!"),
    )
    assert parse("a==b").requirements == (Requirement("a", "==", ("b",)),)
    assert parse("k notin (z)").requirements == (Requirement("k", "notin", ("z",)),)
    assert parse("k").requirements == (Requirement("k", "exists"),)
    assert parse("n>3,m<9").requirements == (Requirement("m", "lt", ("9",)), Requirement("n", "gt", ("3",)))


def test_parse_whitespace_and_empty_value() -> None:
    assert parse("  a = b , e in ( x , y ) ") == parse("a=b,e in (x,y)")
    assert parse("a=").requirements == (Requirement("a", "=", ("",)),)
    assert parse("").empty and parse("   ").empty


def test_canonical_string_sorted_by_key() -> None:
    assert str(parse("z=1,a in (q,b),!m")) == "a in (b,q),!m,z=1"


@pytest.mark.parametrize(
    ("text", "web", "db", "bare"),
    [
        ("app=web", True, False, False),
        ("app!=web", False, True, True),  # != matches objects without the key
        ("env in (prod,qa)", True, True, False),
        ("env notin (prod)", False, True, True),
        ("tier", True, False, False),
        ("!tier", False, True, True),
        ("app=web,env=qa", False, False, False),
        ("", True, True, True),
    ],
)
def test_matching(text: str, web: bool, db: bool, bare: bool) -> None:
    s = parse(text)
    assert (s.matches(WEB), s.matches(DB), s.matches(BARE)) == (web, db, bare)


def test_gt_lt_compare_integers() -> None:
    assert parse("gen>3").matches({"gen": "4"})
    assert not parse("gen>3").matches({"gen": "3"})
    assert not parse("gen>3").matches({"gen": "x"})
    assert not parse("gen<3").matches({})
    assert parse("gen<3").matches({"gen": "-1"})


@pytest.mark.parametrize(
    "text",
    ["a=b=c", "a in x", "a in (x", "a in ()", "=b", "a=b,", ",a", "a b", "a!b", "a>x",
     "-bad=1", "a=-bad-", "a/b/c=1", "x=" + "v" * 64, "a in (x,(y))", "!", "a<"],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(SelectorError):
        parse(text)


def test_from_set() -> None:
    s = from_set({"tier": "fe", "app": "web"})
    assert str(s) == "app=web,tier=fe"
    assert s.matches(WEB) and not s.matches(DB)
    assert from_set({}).matches(DB) and from_set(None).matches(BARE)


def test_label_selector_object() -> None:
    s = from_label_selector({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    })
    assert s.matches(WEB)
    assert not s.matches({**WEB, "canary": "1"})
    assert not s.matches({**WEB, "env": "qa"})
    assert from_label_selector({}).matches(DB)  # empty matches everything
    assert not from_label_selector(None).matches(DB)  # null matches nothing
    assert not Selector.nothing().matches({})


@pytest.mark.parametrize(
    ("expr", "msg"),
    [
        ({"key": "a", "operator": "In", "values": []}, "values set can't be empty"),
        ({"key": "a", "operator": "Exists", "values": ["x"]}, "must be empty"),
        ({"key": "a", "operator": "Like", "values": ["x"]}, "not a valid label selector operator"),
        ({"key": "bad key", "operator": "Exists"}, "invalid label key"),
    ],
)
def test_label_selector_errors(expr: dict[str, object], msg: str) -> None:
    with pytest.raises(SelectorError, match=msg):
        from_label_selector({"matchExpressions": [expr]})


def test_prefixed_keys() -> None:
    s = parse("app.kubernetes.io/name=web")
    assert s.matches({"app.kubernetes.io/name": "web"})
    with pytest.raises(SelectorError, match="prefix part"):
        parse("Bad_Prefix/name=web")


def test_from_set_compiles_stored_selectors_without_judging_them() -> None:
    s = from_set({"app": ":"})  # invalid as a label value; validation rejects it on writes
    assert s.matches({"app": ":"}) and not s.matches({"app": "web"})
