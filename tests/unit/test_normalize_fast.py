"""The normaliser's fast paths produce exactly what the validated path produces.

Plain text messages and statuses skip pydantic validation (``normalize.fast._fast_text`` and
``normalize.fast._fast_status``). Every test here runs the same body through the normaliser
twice, with the fast paths and with the validated handlers alone, and requires identical records
(every field, value and type) and identical quarantine entries — over generated shapes that the
fast paths take, over near-misses that they must hand back, and over every webhook fixture.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coexarchive import jsonstrict, normalize
from coexarchive.normalize import NormalizeResult, message_record_id, normalize_delivery
from coexarchive.normalize import _base as base
from coexarchive.normalize import body as nbody
from coexarchive.normalize import fast as nfast
from coexarchive.normalize import messages as nmessages
from coexarchive.records import RECORD_FIELDS, Record, stable_id
from coexarchive.webhooks._base import NumberText

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
FAST_KEYS = (("messages", "messages"), ("messages", "statuses"))
SLOW_HANDLERS = {
    ("messages", "messages"): lambda change: nmessages._inbound(change, history=False),
    ("messages", "statuses"): nmessages._status,
}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def validated_only() -> Iterator[None]:
    """Swap the fast handlers for the validated ones while the block runs."""
    saved = {key: nbody._ITEM_HANDLERS[key] for key in FAST_KEYS}
    nbody._ITEM_HANDLERS.update(SLOW_HANDLERS)
    try:
        yield
    finally:
        nbody._ITEM_HANDLERS.update(saved)


def typed(record: Record) -> tuple[tuple[str, Any], ...]:
    """Every field with its exact type: a str subclass must not pass for a str."""
    return tuple(
        (type(value).__name__, value) for value in map(record.__getattribute__, RECORD_FIELDS)
    )


def run(body: bytes) -> NormalizeResult:
    return normalize_delivery(
        body, raw_key="raw/k.jsonl.zst", raw_line=3, received_time=1_767_607_205_000
    )


def assert_same(body: bytes) -> NormalizeResult:
    fast = run(body)
    with validated_only():
        slow = run(body)
    assert [typed(r) for r in fast.records] == [typed(r) for r in slow.records]
    assert fast.quarantined == slow.quarantined
    return fast


def envelope(
    key: str, items: list[Any], contacts: Any = None, phone_id: Any = "900000000000001"
) -> bytes:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_id},
        key: items,
    }
    if contacts is not None:
        value["contacts"] = contacts
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "800000000000001", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(body, ensure_ascii=False).encode()


# --- strategies ---

texts = st.text(max_size=40)
long_ids = st.text(alphabet="abc.+ 0123456789", min_size=505, max_size=520)
ids = st.one_of(st.text(alphabet="0123456789+ ", min_size=0, max_size=16), texts, long_ids)
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
timestamps = st.one_of(
    st.integers(-5, 10**13).map(str),
    st.integers(-5, 10**13),
    st.just("1767607200"),
    texts,
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
)
contacts = st.one_of(
    st.none(),
    st.lists(
        st.fixed_dictionaries(
            {"profile": st.fixed_dictionaries({"name": texts})},
            optional={"wa_id": ids, "user_id": ids},
        ),
        max_size=3,
    ),
)


def text_message(strict: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Plain text messages; with ``strict=False`` any field may be off, or an extra key added."""
    body = (
        st.fixed_dictionaries({"body": texts})
        if strict
        else st.one_of(
            st.fixed_dictionaries({"body": st.one_of(texts, odd_values)}),
            st.fixed_dictionaries({"body": texts, "preview_url": st.booleans()}),
            odd_values,
        )
    )
    fields = {
        "from": ids if strict else st.one_of(ids, odd_values),
        "id": ids if strict else st.one_of(ids, odd_values),
        "timestamp": timestamps,
        "type": st.just("text") if strict else st.sampled_from(["text", "image", "TEXT", ""]),
        "text": body,
    }
    extra = (
        {}
        if strict
        else {"context": st.fixed_dictionaries({"id": ids}), "from_user_id": ids, "x": odd_values}
    )
    return st.fixed_dictionaries(fields, optional=extra)


def status(strict: bool) -> st.SearchStrategy[dict[str, Any]]:
    pricing = st.fixed_dictionaries(
        {},
        optional={
            "billable": st.booleans() if strict else odd_values,
            "pricing_model": st.sampled_from(["CBP", "PMP"]),
            "category": texts if strict else odd_values,
            "type": texts,
        },
    )
    conversation = st.fixed_dictionaries(
        {},
        optional={
            "id": texts if strict else odd_values,
            "expiration_timestamp": timestamps,
            "origin": st.fixed_dictionaries({}, optional={"type": texts if strict else odd_values}),
            "extra_key": odd_values,
        },
    )
    optional: dict[str, Any] = {
        "timestamp": timestamps,
        "recipient_id": ids if strict else st.one_of(ids, odd_values),
        "conversation": conversation if strict else st.one_of(conversation, odd_values),
        "pricing": pricing if strict else st.one_of(pricing, odd_values),
        "biz_opaque_callback_data": texts if strict else odd_values,
    }
    if not strict:
        optional |= {
            "errors": st.lists(st.fixed_dictionaries({"code": st.integers(0, 200000)}), max_size=2),
            "recipient_type": st.sampled_from(["individual", "group"]),
            "recipient_user_id": ids,
        }
    required = {
        "id": ids if strict else st.one_of(ids, odd_values),
        "status": st.sampled_from(["sent", "delivered", "READ", "failed", "played", "x"]),
    }
    if not strict:
        required["status"] = st.one_of(required["status"], odd_values)
    return st.fixed_dictionaries(required, optional=optional)


# --- properties ---


@SETTINGS
@given(st.lists(text_message(strict=True), min_size=1, max_size=5), contacts)
def test_plain_text_messages_take_the_fast_path_and_match(
    items: list[dict[str, Any]], book: Any
) -> None:
    result = assert_same(envelope("messages", items, book))
    assert len(result.records) + len(result.quarantined) == len(items)


@SETTINGS
@given(st.lists(text_message(strict=False), min_size=1, max_size=5), contacts)
def test_any_message_shape_matches(items: list[dict[str, Any]], book: Any) -> None:
    assert_same(envelope("messages", items, book))


@SETTINGS
@given(st.lists(status(strict=True), min_size=1, max_size=5), contacts)
def test_plain_statuses_take_the_fast_path_and_match(
    items: list[dict[str, Any]], book: Any
) -> None:
    result = assert_same(envelope("statuses", items, book))
    assert len(result.records) + len(result.quarantined) == len(items)


@SETTINGS
@given(st.lists(status(strict=False), min_size=1, max_size=5), contacts)
def test_any_status_shape_matches(items: list[dict[str, Any]], book: Any) -> None:
    assert_same(envelope("statuses", items, book))


def test_the_fast_paths_are_taken() -> None:
    """Guard against a fast path that silently always falls back."""
    text = {"from": "+447700900123", "id": "wamid.A", "timestamp": "1767607200", "type": "text",
            "text": {"body": "hi"}}  # fmt: skip
    sent = {"id": "wamid.B", "status": "sent", "timestamp": 1767607200, "recipient_id": "4477",
            "pricing": {"billable": True, "category": "service"},
            "conversation": {"id": "c", "origin": {"type": "service"}}}  # fmt: skip
    change = base._Change(base._Sink("k", 0, 0, {}), "messages", "900", None, None, None, {}, None)
    assert nfast._fast_text(change, text, "$") is not None
    assert nfast._fast_status(change, sent, "$") is not None
    assert nfast._fast_text(change, {**text, "id": NumberText("1.5")}, "$") is None
    assert nfast._fast_status(change, {**sent, "errors": []}, "$") is None


def test_every_fixture_matches() -> None:
    paths = sorted(FIXTURES.glob("*.json"))
    assert paths
    for path in paths:
        assert_same(path.read_bytes())


def test_fixture_items_one_by_one_match() -> None:
    """Each fixture message and status alone, and with every key dropped in turn."""
    for path in sorted(FIXTURES.glob("*.json")):
        tree = orjson.loads(path.read_bytes())
        for entry in tree.get("entry", []):
            for change in entry["changes"]:
                value = change["value"]
                for key in ("messages", "statuses"):
                    for item in value.get(key) or []:
                        assert_same(envelope(key, [item], value.get("contacts")))
                        for dropped in item:
                            rest = {k: v for k, v in item.items() if k != dropped}
                            assert_same(envelope(key, [rest], value.get("contacts")))


# --- the body checks and the spelled-out record id ---

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INEXACT = re.compile(rb"[0-9][.eE]|[0-9]{19}")


def reference_parse(body: bytes) -> Any:
    """The body checks as first written: always on the body without its strings."""
    tree = orjson.loads(body)
    skeleton = _JSON_STRING.sub(b"", body)
    if nbody._depth_exceeds(skeleton, normalize.MAX_DEPTH):
        return "too deep"
    if _INEXACT.search(skeleton):
        tree = json.loads(body.decode("utf-8"), parse_float=NumberText, parse_int=nbody._exact_int)
    return tree


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(alphabet='ab1.e9{}[]"\\ ', max_size=12),
        st.text(max_size=8),
    ),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet="ab{[1.5e", max_size=4), children, max_size=3)
    ),
    max_leaves=80,
)


def nested(depth: int) -> Any:
    return {"a": nested(depth - 1)} if depth else 1


@SETTINGS
@given(st.dictionaries(st.text(max_size=3), json_values, max_size=4), st.integers(0, 70))
def test_body_checks_match_the_skeleton_reference(tree: dict[str, Any], depth: int) -> None:
    tree["deep"] = nested(depth)
    body = json.dumps(tree).encode()
    expected = reference_parse(body)
    if expected == "too deep":
        with pytest.raises(base._Rejected, match="nests deeper"):
            nbody._parse_body(body)
        return
    found = nbody._parse_body(body)
    assert deep_typed(found) == deep_typed(expected)


def deep_typed(value: Any) -> Any:
    if isinstance(value, dict):
        return ("dict", tuple((key, deep_typed(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("list", tuple(deep_typed(item) for item in value))
    return (type(value).__name__, repr(value))


@SETTINGS
@given(json_values, st.booleans())
def test_skeleton_is_the_body_with_every_string_emptied(value: Any, ascii_only: bool) -> None:
    body = json.dumps({"v": value, "s": ["\\", '\\"', '"', '\\\\"']}, ensure_ascii=ascii_only)
    encoded = body.encode("utf-8", "surrogatepass")
    assert jsonstrict.skeleton(encoded) == _JSON_STRING.sub(b'""', encoded)


def _first_duplicate(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise KeyError(key)
        seen[key] = value
    return seen


# Keys from a small alphabet, so that generated objects often repeat one, at any depth; strings
# that look like JSON structure, to trip a count that does not skip them.
_pair_lists = st.recursive(
    st.one_of(st.none(), st.integers(-5, 5), st.text(alphabet='a"\\:{}[], ', max_size=3)),
    lambda children: (
        st.lists(children, max_size=3)
        | st.lists(
            st.tuples(st.sampled_from(["a", "b", 'a"', "a:", "\\", "{}", "[]"]), children),
            max_size=3,
        )
    ),
    max_leaves=30,
)


def _render(node: Any, space: str) -> str:
    """JSON text for a tree in which a list of (key, value) tuples is an object, keys repeated."""
    if isinstance(node, list) and node and all(isinstance(item, tuple) for item in node):
        members = f",{space}".join(
            f"{json.dumps(k)}{space}:{space}{_render(v, space)}" for k, v in node
        )
        return "{" + space + members + space + "}"
    if isinstance(node, list):
        return "[" + space + f",{space}".join(_render(item, space) for item in node) + space + "]"
    return json.dumps(node)


@SETTINGS
@given(_pair_lists, st.sampled_from(["", " ", "\n  "]))
def test_duplicate_check_agrees_with_a_pairwise_parse(node: Any, space: str) -> None:
    text = ("{" + '"top":' + _render(node, space) + "}").encode()
    try:
        json.loads(text, object_pairs_hook=_first_duplicate)
        has_duplicate = False
    except KeyError:
        has_duplicate = True
    found = jsonstrict.duplicate_key(text, orjson.loads(text))
    assert (found is not None) == has_duplicate


@given(texts, st.one_of(texts, long_ids))
def test_message_record_id_is_stable_id(chain_id: str, wamid: str) -> None:
    assert message_record_id(chain_id, wamid) == stable_id("message", chain_id, wamid)


# --- records between the pipeline's steps ---


def test_packed_batches_come_back_equal_field_by_field() -> None:
    from pipelines.ingest import pack_records, unpack_records

    items = [
        {"from": "447700900123", "id": f"wamid.{i}", "timestamp": "1767607200", "type": "text",
         "text": {"body": f"hi {i} ✓"}}
        for i in range(3)
    ]  # fmt: skip
    records = run(envelope("messages", items)).records
    records.append(replace(records[0], flags=("b", "a"), window_open=False, error_code=2**63))
    packed = pack_records(records)
    assert packed[:1] == b"M"
    assert [typed(r) for r in unpack_records(packed)] == [typed(r) for r in records]
    # A str subclass cannot be marshalled: that batch travels as a pickle, types intact.
    odd = [replace(records[0], text=NumberText("1.5"))]
    packed = pack_records(odd)
    assert packed[:1] == b"P"
    assert [typed(r) for r in unpack_records(packed)] == [typed(r) for r in odd]


# --- the body's number check --------------------------------------------------------------------

skeleton_bytes = st.one_of(
    st.binary(max_size=80),
    st.text(alphabet='0123456789.eE,:[]{}"-+ tx', max_size=80).map(str.encode),
    st.lists(st.integers(0, 10**25), max_size=5).map(lambda n: json.dumps(n).encode()),
)


@SETTINGS
@given(skeleton=skeleton_bytes)
def test_inexact_number_check_finds_what_the_regex_finds(skeleton: bytes) -> None:
    # The body walks the exact-number parser only when this is true: it must never differ.
    expected = nbody._INEXACT_NUMBER.search(skeleton) is not None
    assert nbody._has_inexact_number(skeleton) is expected


@pytest.mark.parametrize(
    ("skeleton", "expected"),
    [
        (b'{"a":1.5}', True),
        (b'{"a":1e5}', True),
        (b'{"a":1E5}', True),
        (b'{"a":' + b"9" * 19 + b"}", True),
        (b'{"a":' + b"9" * 18 + b"}", False),
        (b'{"a":true,"b":false,"c":"","d":-12}', False),
        (b'{"a":[1,2],"e":0}', False),
    ],
)
def test_inexact_number_check_on_named_shapes(skeleton: bytes, expected: bool) -> None:
    assert nbody._has_inexact_number(skeleton) is expected


# --- the change's route (value.metadata) --------------------------------------------------------

metadata_values = st.one_of(
    odd_values, ids, st.just(NumberText("1.5")), st.lists(texts, max_size=1)
)
metadata = st.dictionaries(
    st.sampled_from(["phone_number_id", "display_phone_number", "other"]), metadata_values
)


def route(found: dict[str, Any], how: Any) -> tuple[str, str | None] | str:
    try:
        return how(found)  # type: ignore[no-any-return]
    except base._Rejected as rejected:
        return rejected.reason


@SETTINGS
@given(found=metadata)
def test_metadata_route_is_what_validation_gives(found: dict[str, Any]) -> None:
    fast = route(found, nbody._route_of)
    assert fast == route(found, nbody._validated_route)
    if not isinstance(fast, str):
        assert [type(part) for part in fast] == [
            type(part) for part in route(found, nbody._validated_route)
        ]


# --- _each runs _one's body inline ----------------------------------------------------------------


def odd_handle(item: dict[str, Any], path: str) -> Any:
    """Every outcome an item handler has: a record, none, a rejection, a validation error, a bug."""
    what = item.get("x")
    if what == 1:
        raise base._Rejected(f"rejected at {path}")
    if what == 2:
        raise ValueError("a bug")
    if what == 3:
        nmessages.Message.model_validate({"type": 5})
    if what == 4:
        return None
    return ("record", path, what)


@SETTINGS
@given(items=st.lists(st.one_of(st.fixed_dictionaries({"x": st.integers(0, 5)}), odd_values)))
def test_each_is_one_per_item(items: list[Any]) -> None:
    inline = base._Sink("k", 0, 0, {})
    base._each(inline, items, "v.messages", odd_handle)  # type: ignore[arg-type]
    one_by_one = base._Sink("k", 0, 0, {})
    for index, item in enumerate(items):
        base._one(one_by_one, item, f"v.messages[{index}]", odd_handle)  # type: ignore[arg-type]
    assert inline.records == one_by_one.records
    assert inline.quarantined == one_by_one.quarantined
