"""Canonical bytes: the orjson fast path is byte-identical to the rfc8785 reference."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from coexarchive.errors import CanonicalizationError
from coexarchive.seal.canonical import (
    MAX_SAFE_INTEGER,
    canonical_bytes,
    reference_canonical_bytes,
)

# Text drawn from every plane, surrogates included, so lone surrogates are exercised.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
key_text = st.one_of(
    any_text,
    st.sampled_from(["\uff01", "\U0001f600", "\ue000", "\U00010000", "a", "\ud800", "é"]),
)
safe_ints = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
edge_ints = st.sampled_from(
    [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 2**63, 0]
)
scalars = st.one_of(st.none(), st.booleans(), safe_ints, edge_ints, any_text)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(key_text, children, max_size=4)
    ),
    max_leaves=20,
)
objects = st.dictionaries(key_text, json_values, max_size=8)


def _outcome(function: Any, obj: Any) -> bytes | type[Exception]:
    try:
        return bytes(function(obj))
    except CanonicalizationError:
        return CanonicalizationError


@settings(max_examples=600)
@given(objects)
def test_fast_path_is_byte_identical_to_rfc8785(obj: dict[str, Any]) -> None:
    assert _outcome(canonical_bytes, obj) == _outcome(reference_canonical_bytes, obj)


@settings(max_examples=300)
@given(objects)
def test_accepted_objects_match_the_rfc8785_package_directly(obj: dict[str, Any]) -> None:
    try:
        fast = canonical_bytes(obj)
    except CanonicalizationError:
        return
    assert fast == rfc8785.dumps(obj)


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    # U+1F600 is D83D DE00 in UTF-16, which sorts before U+FF01 (code point order says after).
    obj = {"\uff01": 1, "\U0001f600": 2, "a": {"\ue000": 0, "\U00010000": 1}}
    expected = rfc8785.dumps(obj)
    assert canonical_bytes(obj) == expected
    assert expected.index("\U0001f600".encode()) < expected.index("\uff01".encode())


def test_escapes_follow_jcs() -> None:
    obj = {"s": '\u2028\u2029\x7f\x1f\x00\b\t\n\f\r"\\/é🙏'}
    assert canonical_bytes(obj) == rfc8785.dumps(obj)
    assert canonical_bytes(obj) == (
        '{"s":"\u2028\u2029\x7f\\u001f\\u0000\\b\\t\\n\\f\\r\\"\\\\/é🙏"}'.encode()
    )


@pytest.mark.parametrize(
    "obj",
    [
        {"amount": 1.0},
        {"amount": float("nan")},
        {"amount": float("inf")},
        {"nested": {"deep": [1, 2.5]}},
        {"list": ["a", 0.0]},
        {"big": MAX_SAFE_INTEGER + 1},
        {"small": -MAX_SAFE_INTEGER - 1},
        {"huge": 2**64},
        {1: "non-string key"},
        {"nested": {2: "non-string key"}},
        {"lone": "\ud800"},
        {"\udfff": "lone surrogate key"},
        {"bytes": b"raw"},
        {"set": {"a"}},
        {"object": object()},
    ],
    ids=repr,
)
def test_values_without_a_canonical_form_are_refused(obj: dict[Any, Any]) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_bytes(obj)
    with pytest.raises(CanonicalizationError):
        reference_canonical_bytes(obj)


def test_limits_are_inclusive() -> None:
    obj = {"max": MAX_SAFE_INTEGER, "min": -MAX_SAFE_INTEGER}
    assert canonical_bytes(obj) == b'{"max":9007199254740991,"min":-9007199254740991}'


def test_str_and_int_enums_serialise_as_their_values() -> None:
    class Kind(enum.StrEnum):
        MESSAGE = "message"

    class Code(enum.IntEnum):
        FAILED = 131047

    assert canonical_bytes({"k": Kind.MESSAGE, "c": Code.FAILED}) == b'{"c":131047,"k":"message"}'


def test_mappings_other_than_dict_are_accepted() -> None:
    from types import MappingProxyType

    assert canonical_bytes(MappingProxyType({"b": 1, "a": [True, None]})) == (
        b'{"a":[true,null],"b":1}'
    )


def test_tuples_are_arrays() -> None:
    assert canonical_bytes({"flags": ("a", "b")}) == canonical_bytes({"flags": ["a", "b"]})
