"""Native label selectors against the plain-Python reference, and upstream's examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperkube import _native
from tests.reference import selector as ref

KEYS = ["app", "tier", "env", "x.io/role", "n", "in", "notin"]
VALUES = ["", "web", "db", "a-1", "in", "5", "3", "12"]

label_sets = st.one_of(st.none(), st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=5))


@st.composite
def requirement_strings(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from(KEYS))
    op = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!", ">", "<"]))
    if op == "exists":
        return key
    if op == "!":
        return "!" + key
    if op in (">", "<"):
        return f"{key}{op}{draw(st.sampled_from(['5', '3', '0', '17']))}"
    if op in ("in", "notin"):
        vals = draw(st.lists(st.sampled_from(VALUES[1:]), min_size=1, max_size=3))
        return f"{key} {op} ({','.join(vals)})"
    return f"{key}{op}{draw(st.sampled_from(VALUES))}"


selector_strings = st.lists(requirement_strings(), max_size=4).map(",".join)
# random soup of the lexer's alphabet: checks both parsers accept and reject the same strings
soup = st.lists(
    st.sampled_from(list("ab=!(),<> \t-5") + ["in", "notin", "x/y", " in ", "é"]), max_size=12
).map("".join)


@settings(max_examples=400, deadline=None)
@given(selector_strings, st.lists(label_sets, max_size=20))
def test_native_matches_reference(sel: str, sets: list[dict[str, str] | None]) -> None:
    reqs = ref.parse(sel)
    native = _native.Selector(sel)
    assert str(native) == ref.to_string(reqs)
    expected = [ref.matches(reqs, ls) for ls in sets]
    assert native.match_many(sets).tolist() == expected
    assert native.match_table(_native.LabelTable(sets)).tolist() == expected
    assert [native.matches(ls) for ls in sets] == expected


@settings(max_examples=1500, deadline=None)
@given(soup)
def test_parsers_agree_on_arbitrary_text(text: str) -> None:
    try:
        expected = ref.to_string(ref.parse(text))
    except ref.SelectorError:
        with pytest.raises(ValueError):
            _native.Selector(text)
        return
    assert str(_native.Selector(text)) == expected


@st.composite
def label_selectors(draw: st.DrawFn) -> dict:
    ml = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2))
    exprs = []
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        vals = (
            draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=3)) if op in ("In", "NotIn") else []
        )
        exprs.append({"key": draw(st.sampled_from(KEYS)), "operator": op, "values": vals})
    return {"matchLabels": ml, "matchExpressions": exprs}


@settings(max_examples=300, deadline=None)
@given(label_selectors(), st.lists(label_sets, max_size=20))
def test_structured_matches_reference(obj: dict, sets: list) -> None:
    reqs = ref.from_label_selector(obj)
    assert reqs is not None
    native = _native.Selector.from_label_selector(obj)
    assert native.match_many(sets).tolist() == [ref.matches(reqs, ls) for ls in sets]


def test_null_and_empty_selectors() -> None:
    assert _native.Selector.from_label_selector(None).match_many([{}, {"a": "b"}]).tolist() == [False, False]
    assert _native.Selector.from_label_selector({}).match_many([{}, {"a": "b"}]).tolist() == [True, True]
    assert _native.Selector("").empty
    assert _native.Selector.from_label_selector(None).matches_nothing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x in", "unable to parse requirement: found '' expected: '('"),
        ("x,", "found '', expected: identifier after ','"),
        ("a b", "found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("-a=b", 'key: Invalid value: "-a": name part must consist of alphanumeric characters'),
        ("a=b%", 'values[0][a]: Invalid value: "b%": a valid label must be an empty string'),
        ("a>x", "for 'Gt', 'Lt' operators, the value must be an integer"),
    ],
)
def test_errors_name_the_offending_part(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        _native.Selector(text)
    assert message in str(err.value)


def test_structured_errors() -> None:
    with pytest.raises(ValueError, match='"Foo" is not a valid label selector operator'):
        _native.Selector.from_label_selector({"matchExpressions": [{"key": "a", "operator": "Foo"}]})
    with pytest.raises(ValueError, match="values set can't be empty"):
        _native.Selector.from_label_selector(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}
        )
    with pytest.raises(ValueError, match="matchLabels"):
        _native.Selector.from_label_selector({"matchLabels": ["a"]})


def test_bad_label_sets_are_type_errors() -> None:
    sel = _native.Selector("a=b")
    with pytest.raises(TypeError):
        sel.match_many([["a", "b"]])
    with pytest.raises(TypeError):
        sel.matches({"a": 1})


def test_requirements_and_result_dtype() -> None:
    sel = _native.Selector("tier in (b,a),!x,app=web")
    assert sel.requirements == [("app", "=", ["web"]), ("tier", "In", ["a", "b"]), ("x", "DoesNotExist", [])]
    out = sel.match_many([{"app": "web", "tier": "a"}])
    assert out.dtype == np.bool_ and out.tolist() == [True]


def test_field_selector() -> None:
    assert _native.parse_field_selector("spec.nodeName=n1,status.phase!=Running") == [
        ("spec.nodeName", False, "n1"),
        ("status.phase", True, "Running"),
    ]
    assert _native.parse_field_selector("metadata.name==a\\,b") == [("metadata.name", False, "a,b")]
    with pytest.raises(ValueError, match="can't understand 'nonsense'"):
        _native.parse_field_selector("nonsense")


def test_validators() -> None:
    assert _native.validate_qualified_name("kubernetes.io/hostname") == []
    assert _native.validate_qualified_name("a/b/c")[0].startswith("a qualified name must consist")
    assert _native.validate_label_value("x" * 64) == ["must be no more than 63 characters"]
    assert _native.validate_dns1123_subdomain("my.app") == []
    assert _native.validate_dns1123_label("My") != []
