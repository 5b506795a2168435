"""Property tests: random Meta-shaped deliveries never crash the normaliser or lose an item."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coexarchive.normalize import normalize_delivery

META = {"display_phone_number": "15550001111", "phone_number_id": "900000000000001"}
ids = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789=_-", min_size=1, max_size=40
).map(lambda tail: f"wamid.{tail}")
phones = st.from_regex(r"\+?[1-9][0-9]{6,14}", fullmatch=True)
bsuids = st.from_regex(r"[A-Z]{2}\.[0-9]{5,30}", fullmatch=True)
timestamps = st.integers(0, 4_102_444_800).flatmap(lambda t: st.sampled_from([t, str(t)]))
texts = st.text(max_size=300)
MEDIA = ["image", "video", "audio", "document", "sticker"]


@st.composite
def contents(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", *MEDIA, "location", "reaction", "button", "poll_x"]))
    if kind == "text":
        return {"type": kind, "text": {"body": draw(texts)}}
    if kind in MEDIA:
        media = {"id": draw(st.from_regex(r"[0-9]{10,16}", fullmatch=True)), "caption": draw(texts)}
        return {"type": kind, kind: media}
    if kind == "location":
        coordinate = st.floats(-90, 90, allow_nan=False)
        return {"type": kind, kind: {"latitude": draw(coordinate), "longitude": draw(coordinate)}}
    if kind == "reaction":
        return {"type": kind, kind: {"message_id": draw(ids), "emoji": draw(st.text(max_size=2))}}
    if kind == "button":
        return {"type": kind, kind: {"payload": draw(texts), "text": draw(texts)}}
    return {"type": kind, kind: draw(st.dictionaries(st.text(max_size=5), texts, max_size=3))}


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    item = {"id": draw(ids), "timestamp": draw(timestamps), **draw(contents())}
    if draw(st.booleans()):
        item["from"] = draw(phones)
    item["from_user_id"] = draw(bsuids)
    if draw(st.booleans()):
        item["context"] = {"from": "15550001111", "id": draw(ids)}
    return item


@st.composite
def echoes(draw: st.DrawFn) -> dict[str, Any]:
    item = {"from": "15550001111", "id": draw(ids), "timestamp": draw(timestamps)}
    item.update(draw(contents()))
    if draw(st.booleans()):
        item["to"] = draw(phones)
    else:
        item["to_user_id"] = draw(bsuids)
    return item


@st.composite
def statuses(draw: st.DrawFn) -> dict[str, Any]:
    status = draw(st.sampled_from(["sent", "delivered", "read", "played", "failed", "warning"]))
    item: dict[str, Any] = {"id": draw(ids), "status": status, "timestamp": draw(timestamps)}
    item["recipient_id" if draw(st.booleans()) else "recipient_user_id"] = draw(phones)
    if status == "failed":
        item["errors"] = [{"code": draw(st.integers(0, 10**7)), "title": draw(texts)}]
    return item


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes, int]:
    """A body and the number of items in it."""
    changes = []
    count = 0
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": META}
            batch = draw(st.lists(messages(), min_size=1, max_size=8))
            value["messages"] = batch
            if draw(st.booleans()):
                value["statuses"] = draw(st.lists(statuses(), min_size=1, max_size=8))
                count += len(value["statuses"])
            changes.append({"field": "messages", "value": value})
            count += len(batch)
        else:
            batch = draw(st.lists(echoes(), min_size=1, max_size=8))
            value = {"metadata": META, "message_echoes": batch}
            changes.append({"field": "smb_message_echoes", "value": value})
            count += len(batch)
    body = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": changes}]}
    ascii_only = draw(st.booleans())
    return json.dumps(body, ensure_ascii=ascii_only).encode(), count


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(deliveries())
def test_valid_deliveries_lose_nothing(delivery: tuple[bytes, int]) -> None:
    body, count = delivery
    result = normalize_delivery(body, raw_key="k", raw_line=0, received_time=1)
    assert result.quarantined == []
    assert len(result.records) == count
    for record in result.records:
        json.loads(record.detail, parse_float=lambda text: (_ for _ in ()).throw(AssertionError))
    assert result == normalize_delivery(body, raw_key="k", raw_line=0, received_time=1)


@FAST
@given(deliveries(), st.data())
def test_a_broken_item_is_quarantined_alone(
    delivery: tuple[bytes, int], data: st.DataObject
) -> None:
    body, count = delivery
    tree = orjson.loads(body) if b"." not in body else json.loads(body)
    value = tree["entry"][0]["changes"][0]["value"]
    key = "messages" if "messages" in value else "message_echoes"
    index = data.draw(st.integers(0, len(value[key]) - 1))
    breakages: list[dict[str, Any]] = [
        {"id": None},
        {"id": 3.5},
        {"timestamp": [1]},
        {"type": None},
        {"timestamp": "not-a-time"},
        {"text": "flat"},
    ]
    breakage = data.draw(st.sampled_from(breakages))
    value[key][index] = {**value[key][index], **breakage}
    result = normalize_delivery(json.dumps(tree).encode(), raw_key="k", raw_line=0, received_time=1)
    assert len(result.quarantined) == 1
    assert len(result.records) == count - 1
    assert result.quarantined[0].location.endswith(f".value.{key}[{index}]")


@FAST
@given(deliveries(), st.data())
def test_truncated_or_corrupted_bodies_are_quarantined_whole(
    delivery: tuple[bytes, int], data: st.DataObject
) -> None:
    body, _ = delivery
    cut = data.draw(st.integers(1, len(body) - 1))
    mangled = data.draw(st.sampled_from([body[:cut], body[:cut] + b"\xff" + body[cut:]]))
    result = normalize_delivery(mangled, raw_key="k", raw_line=3, received_time=1)
    if result.quarantined and result.quarantined[0].location == "$":
        assert result.records == []
        assert result.quarantined[0].payload == mangled
        assert result.quarantined[0].reason.startswith("body ")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    result = normalize_delivery(body, raw_key="k", raw_line=0, received_time=1)
    assert len(result.records) + len(result.quarantined) >= 1


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["messages", "statuses", "message_echoes", "errors", "contacts", "x"]),
        JSON,
        max_size=4,
    ),
    st.sampled_from(["messages", "smb_message_echoes", "history", "account_update", "new_field"]),
)
def test_arbitrary_values_never_raise(value: dict[str, Any], field: str) -> None:
    value = {"metadata": META, **value}
    body = orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": field, "value": value}]}],
        }
    )
    result = normalize_delivery(body, raw_key="k", raw_line=0, received_time=1)
    for item in result.quarantined:
        assert item.location != "$"
