"""normalize_delivery: every webhook kind to concrete records, and hostile input quarantined."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from coexarchive.normalize import (
    MAX_BODY_BYTES,
    NormalizeResult,
    message_record_id,
    normalize_delivery,
)
from coexarchive.records import Record, stable_id

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
CHAIN = "900000000000001"
WABA = "800000000000001"
CUSTOMER = "447700900123"
BSUID = "GB.8427591036652210947"
RECEIVED = 1_767_999_999_000


def run(body: bytes, *, raw_key: str = "raw/date=2026-01-05/r1-1.jsonl.zst") -> NormalizeResult:
    return normalize_delivery(body, raw_key=raw_key, raw_line=7, received_time=RECEIVED)


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def records(name: str) -> list[Record]:
    result = run(fixture(name))
    assert result.quarantined == []
    return result.records


def detail(record: Record) -> Any:
    return json.loads(record.detail)


def envelope(field: str, value: Any, **entry: Any) -> bytes:
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": WABA, **entry, "changes": [{"field": field, "value": value}]}],
        }
    )


META = {"display_phone_number": "15550001111", "phone_number_id": CHAIN}


def text_message(n: int, body: str = "hello") -> dict[str, Any]:
    return {
        "from": CUSTOMER,
        "id": f"wamid.T{n}",
        "timestamp": "1767607200",
        "type": "text",
        "text": {"body": body},
    }


# --- every fixture -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_every_fixture_normalises_without_quarantine(path: Path) -> None:
    result = run(path.read_bytes())
    assert result.quarantined == []
    assert result.records
    for record in result.records:
        assert record.raw_key == "raw/date=2026-01-05/r1-1.jsonl.zst"
        assert record.raw_line == 7
        assert record.received_time == RECEIVED
        assert len(record.record_id) == 32
        assert record.flags == ()
        assert record.consent_state is None
        assert record.window_open is None
        assert "raw" in detail(record)


# --- messages ------------------------------------------------------------------------------------


def test_text_message() -> None:
    [record] = records("messages_text")
    assert record.chain_id == CHAIN
    assert record.record_id == stable_id("message", CHAIN, "wamid.IN0001")
    assert (record.kind, record.origin, record.direction) == ("message", "customer", "inbound")
    assert (record.customer_id, record.customer_wa_id, record.customer_user_id) == (
        CUSTOMER,
        CUSTOMER,
        BSUID,
    )
    assert (record.wamid, record.msg_type, record.text) == (
        "wamid.IN0001",
        "text",
        "Hi, is my order ready?",
    )
    assert record.event_time == 1_767_607_201_000
    assert record.waba_id == WABA
    assert record.business_phone == "15550001111"
    data = detail(record)
    assert data["time_source"] == "item"
    assert data["path"] == "entry[0].changes[0].value.messages[0]"
    assert data["contact"]["profile"]["name"] == "Amelia Hart"
    assert data["raw"]["text"]["body"] == "Hi, is my order ready?"


def test_image_reply_from_an_ad() -> None:
    [record] = records("messages_image_reply_referral")
    assert (record.msg_type, record.text, record.media_id) == (
        "image",
        "Is this the one?",
        "1900000000000001",
    )
    assert record.context_wamid == "wamid.OUT0001"
    assert record.ref_record_id is None
    data = detail(record)
    assert data["media"] == {
        "mime_type": "image/jpeg",
        "sha256": "q8Kx3m9Vn0b5S8l1jJcYc1o0bVvZ0r2l3m4n5o6p7q8=",
    }
    assert data["referral"]["ctwa_clid"] == "ARAkLmNoPqRsTuVwXyZ0123456789abcdef"


def test_media_types_keep_mime_sha_and_filename() -> None:
    video, audio, document, sticker, image = records("messages_media")
    assert (video.msg_type, video.media_id, video.text) == ("video", "1900000000000003", "Unboxing")
    assert detail(audio)["media"]["voice"] is True
    assert detail(document)["media"]["filename"] == "invoice-118.pdf"
    assert detail(document)["media"]["mime_type"] == "application/pdf"
    assert detail(sticker)["media"]["animated"] is False
    assert detail(image)["media"]["url"].startswith("https://")


def test_location_numbers_are_exact_source_text() -> None:
    [record] = records("messages_location")
    data = detail(record)
    # The fixture writes 51.5074 (json.dumps of 51.50740); the text is kept, not a float.
    assert data["location"]["latitude"] == "51.5074"
    assert data["location"]["longitude"] == "-0.1278"
    assert data["raw"]["location"]["latitude"] == "51.5074"


def test_location_keeps_trailing_zeros_as_sent() -> None:
    message = {**text_message(1), "type": "location", "location": {"latitude": 0}}
    body = envelope("messages", {"metadata": META, "messages": [message]})
    body = body.replace(b'"latitude":0', b'"latitude":51.50740,"longitude":-1E-2')
    [record] = run(body).records
    assert detail(record)["location"] == {"latitude": "51.50740", "longitude": "-1E-2"}


def test_interactive_and_button_replies() -> None:
    button, listed, flow, quick = records("messages_interactive")
    assert (button.text, detail(button)["reply_id"]) == ("Tuesday 10:00", "confirm_slot_2")
    assert (listed.text, detail(listed)["interactive_type"]) == ("Medium", "list_reply")
    assert (flow.text, detail(flow)["flow_name"]) == ("Sent", "flow")
    assert (quick.msg_type, quick.text) == ("button", "Stop promotions")
    assert detail(quick)["button_payload"] == "STOP_PROMOS"
    assert quick.context_wamid == "wamid.OUT0013"


def test_reactions_point_at_their_message_and_removal_is_marked() -> None:
    added, removed_empty, removed_missing = records("messages_reaction")
    target = message_record_id(CHAIN, "wamid.OUT0014")
    assert (added.text, added.context_wamid, added.ref_record_id) == ("👍", "wamid.OUT0014", target)
    assert removed_empty.text is None
    assert detail(removed_empty)["reaction_removed"] is True
    assert detail(removed_missing)["reaction_removed"] is True


def test_contacts_order_system() -> None:
    [contacts] = records("messages_contacts")
    assert (contacts.msg_type, detail(contacts)["contact_cards"]) == ("contacts", 1)
    [order] = records("messages_order")
    assert (order.text, detail(order)["order_items"]) == ("Please deliver Saturday", 2)
    prices = [item["item_price"] for item in detail(order)["raw"]["order"]["product_items"]]
    assert prices == ["12.5", 40]
    changed, user_id = records("messages_system")
    assert (changed.origin, changed.msg_type) == ("system", "system")
    assert detail(changed)["system_type"] == "user_changed_number"
    assert detail(user_id)["system_type"] == "user_changed_user_id"


def test_inbound_edit_and_revoke_are_events_about_the_original() -> None:
    edit, revoke = records("messages_edit_revoke")
    assert (edit.kind, edit.text, edit.context_wamid) == (
        "message_edit",
        "Hi, is order 118 ready?",
        "wamid.IN0001",
    )
    assert edit.record_id == message_record_id(CHAIN, "wamid.IN0020")
    assert edit.ref_record_id == message_record_id(CHAIN, "wamid.IN0001")
    assert (revoke.kind, revoke.text, revoke.ref_record_id) == (
        "message_revoke",
        None,
        message_record_id(CHAIN, "wamid.IN0002"),
    )


def test_unsupported_131060_is_a_customer_message() -> None:
    [record] = records("messages_unsupported_131060")
    assert (record.kind, record.msg_type, record.error_code) == ("message", "unsupported", 131060)
    assert record.text is None
    assert detail(record)["unsupported_type"] == "unknown"


def test_unknown_message_type_is_archived_whole_with_message_identity() -> None:
    poll, welcome = records("messages_unknown_type")
    assert (poll.kind, poll.msg_type, poll.origin) == ("unsupported", "poll_vote", "customer")
    assert poll.record_id == message_record_id(CHAIN, "wamid.IN0023")
    assert detail(poll)["raw"]["poll_vote"] == {"poll_id": "p-1", "options": [1, 3]}
    assert (welcome.kind, welcome.msg_type) == ("message", "request_welcome")


def test_value_level_errors_become_account_events() -> None:
    [record] = records("messages_value_errors")
    assert (record.kind, record.msg_type, record.error_code) == (
        "account_event",
        "webhook_error",
        131000,
    )
    assert detail(record)["time_source"] == "received"
    assert record.event_time == RECEIVED


def test_bsuid_only_user() -> None:
    [record] = records("messages_bsuid_only")
    assert record.customer_wa_id is None
    assert record.customer_user_id == "US.13491208655302741918"
    assert record.customer_id == "US.13491208655302741918"
    assert detail(record)["contact"]["profile"]["username"] == "nia.shop"


def test_messages_and_statuses_in_one_value() -> None:
    message, status = records("messages_and_statuses")
    assert (message.kind, status.kind) == ("message", "status")
    assert status.status == "read"


def test_integer_timestamp() -> None:
    [record] = records("messages_int_timestamp")
    assert record.event_time == 1_767_607_227_000


def test_escaped_and_raw_unicode_bodies_give_the_same_text() -> None:
    [escaped] = records("messages_non_ascii_escaped")
    [raw] = records("messages_non_ascii_utf8")
    assert escaped.text == raw.text == "مرحبا שלום 😀 äöå"


def test_forwarded_and_product_context() -> None:
    forwarded, product = records("messages_forwarded_product")
    assert forwarded.context_wamid is None
    assert detail(forwarded)["context"] == {"forwarded": True}
    assert detail(product)["context"]["referred_product"]["product_retailer_id"] == "SKU-1"


# --- statuses ------------------------------------------------------------------------------------


def test_sent_status_with_pricing() -> None:
    [record] = records("statuses_sent_pricing")
    assert (record.kind, record.origin, record.direction) == ("status", "cloud_api", "outbound")
    assert record.record_id == stable_id("status", CHAIN, "wamid.OUT0100", "sent", None)
    assert record.ref_record_id == message_record_id(CHAIN, "wamid.OUT0100")
    assert (record.wamid, record.status, record.customer_id) == ("wamid.OUT0100", "sent", CUSTOMER)
    assert detail(record)["raw"]["pricing"]["pricing_model"] == "PMP"


def test_failed_status_carries_its_error_code() -> None:
    [record] = records("statuses_failed")
    assert (record.status, record.error_code) == ("failed", 131050)
    assert record.record_id == stable_id("status", CHAIN, "wamid.OUT0101", "failed", 131050)


def test_out_of_order_and_duplicate_statuses() -> None:
    read, sent, delivered, delivered_again, played = records("statuses_out_of_order")
    assert [read.status, sent.status, played.status] == ["read", "sent", "played"]
    assert read.event_time > sent.event_time
    assert delivered.record_id == delivered_again.record_id
    assert read.record_id != sent.record_id


def test_status_to_a_bsuid() -> None:
    [record] = records("statuses_bsuid")
    assert (record.customer_wa_id, record.customer_id) == (None, "US.13491208655302741918")


# --- echoes --------------------------------------------------------------------------------------


def test_echo_text_edit_and_revoke() -> None:
    echo, edit, revoke = records("echoes_text_edit_revoke")
    assert (echo.kind, echo.origin, echo.direction) == ("echo", "business_app", "outbound")
    assert echo.text == "Yes, it's ready - pick up any time after 2pm."
    assert (echo.customer_wa_id, echo.customer_user_id) == (CUSTOMER, BSUID)
    assert edit.kind == "message_edit"
    assert edit.text == "Yes, it's ready - pick up any time after 3pm."
    assert edit.record_id == message_record_id(CHAIN, "wamid.ECHO0002")
    assert edit.ref_record_id == echo.record_id
    assert (revoke.kind, revoke.context_wamid, revoke.ref_record_id) == (
        "message_revoke",
        "wamid.ECHO0001",
        echo.record_id,
    )


def test_echo_plus_to_media_and_edit_without_own_id() -> None:
    plus, bsuid, edit = records("echoes_plus_to_and_media")
    assert plus.customer_wa_id == CUSTOMER
    assert detail(plus)["to_as_sent"] == "+447700900123"
    assert (plus.media_id, plus.text) == (None, "Here you go")
    # Only to_user_id is sent; the value's contacts[] names the same user with a wa_id.
    assert (bsuid.customer_user_id, bsuid.customer_wa_id) == (BSUID, CUSTOMER)
    assert bsuid.media_id == "1900000000000099"
    assert edit.wamid is None
    assert edit.record_id == stable_id("message_edit", CHAIN, "wamid.ECHO0004", 1767608220)
    assert edit.text == "Here you go (updated)"


# --- history -------------------------------------------------------------------------------------


def test_history_chunk() -> None:
    inbound, outbound, placeholder = records("history_chunk")
    assert (inbound.kind, inbound.origin, inbound.direction) == (
        "history_message",
        "history_import",
        "inbound",
    )
    assert (inbound.status, outbound.status) == ("read", "delivered")
    assert outbound.direction == "outbound"
    assert outbound.customer_wa_id == CUSTOMER
    assert (placeholder.msg_type, placeholder.text) == ("media_placeholder", None)
    history = detail(inbound)["history"]
    assert (history["phase"], history["chunk_order"], history["progress"]) == (1, 3, 62)
    assert history["thread_id"] == CUSTOMER


def test_history_lower_case_status_from_me_and_bsuid_thread() -> None:
    inbound, from_me, pending, bsuid = records("history_lowercase_from_me")
    assert (inbound.direction, inbound.status) == ("inbound", "read")
    assert (from_me.direction, from_me.status) == ("outbound", "delivered")
    assert pending.status == "pending"
    assert (bsuid.customer_wa_id, bsuid.customer_id) == (None, "US.13491208655302741918")


def test_history_media_follow_up_is_not_a_live_message() -> None:
    echo, message = records("history_media_followup")
    assert (echo.kind, echo.origin, echo.direction) == (
        "history_message",
        "history_import",
        "outbound",
    )
    assert echo.media_id == "1900000000000777"
    # Same wamid as the placeholder of history_chunk: a record of its own, bound to the
    # placeholder's, so that dedup keeps both and the placeholder is never rewritten.
    placeholder = records("history_chunk")[2]
    assert echo.wamid == placeholder.wamid and echo.record_id != placeholder.record_id
    assert echo.ref_record_id == placeholder.record_id
    assert echo.record_id == stable_id("history_media_followup", echo.chain_id, echo.wamid)
    assert (message.kind, message.direction) == ("history_message", "inbound")
    assert detail(message)["history_media_followup"] is True
    assert message.ref_record_id == stable_id("message", message.chain_id, message.wamid)


def test_history_follow_up_and_its_placeholder_are_both_sealed() -> None:
    from coexarchive.dedup import DedupIndex
    from coexarchive.store.memory import MemoryStore

    placeholder = records("history_chunk")[2]
    follow_up = records("history_media_followup")[0]
    index = DedupIndex(MemoryStore(), placeholder.chain_id, committed_size=0)
    result = index.classify([placeholder, follow_up])
    assert {r.record_id for r in result.new} == {placeholder.record_id, follow_up.record_id}
    assert result.duplicates == 0


@pytest.mark.parametrize("name", ["history_declined", "history_declined_bare_value"])
def test_history_declined(name: str) -> None:
    [record] = records(name)
    assert (record.kind, record.msg_type, record.status, record.error_code) == (
        "account_event",
        "history_declined",
        "declined",
        2593109,
    )
    assert record.chain_id == CHAIN


def test_both_history_decline_forms_get_one_record_id() -> None:
    [enveloped] = records("history_declined")
    [bare] = records("history_declined_bare_value")
    assert enveloped.record_id == bare.record_id
    assert bare.waba_id is None


def test_history_chunk_without_messages_records_progress() -> None:
    [record] = records("history_progress_only")
    assert (record.msg_type, record.status) == ("history_progress", "100")


# --- contact book, consent, management -----------------------------------------------------------


def test_state_sync() -> None:
    added, removed, bsuid = records("state_sync")
    assert (added.kind, added.origin, added.status, added.customer_id) == (
        "contact_change",
        "business_app",
        "add",
        CUSTOMER,
    )
    assert removed.status == "remove"
    assert removed.event_time == 1_767_600_060_000
    assert bsuid.customer_id == "US.13491208655302741918"
    assert added.record_id == stable_id(
        "contact", CHAIN, "contact", CUSTOMER, BSUID, "add", 1767600000, None
    )


@pytest.mark.parametrize(("name", "status"), [("stop", "stop"), ("resume", "resume")])
def test_user_preferences(name: str, status: str) -> None:
    [record] = records(f"user_preferences_{name}")
    assert (record.kind, record.origin, record.status, record.msg_type) == (
        "consent_event",
        "customer",
        status,
        "marketing_messages",
    )
    assert (record.customer_wa_id, record.customer_user_id) == (CUSTOMER, BSUID)


def test_template_status_update() -> None:
    [record] = records("template_status_update")
    assert record.chain_id == f"waba-{WABA}"
    assert (record.kind, record.msg_type, record.status) == (
        "template_event",
        "template_status",
        "PAUSED",
    )
    assert (record.template_name, record.template_language) == ("spring_sale_reminder", "en_GB")
    assert (record.template_status, record.template_category) == ("PAUSED", "MARKETING")
    assert record.event_time == 1_767_500_000_000
    assert detail(record)["template_id"] == "1700000000000042"
    assert detail(record)["time_source"] == "entry"


def test_template_quality_and_category_updates() -> None:
    [quality] = records("template_quality_update")
    assert (quality.msg_type, quality.status) == ("template_quality", "YELLOW")
    [upcoming] = records("template_category_update_upcoming")
    [done] = records("template_category_update_done")
    assert (upcoming.status, upcoming.template_category) == ("category_change_upcoming", "UTILITY")
    assert (done.status, done.template_category) == ("category_changed", "MARKETING")
    assert upcoming.record_id != done.record_id


def test_account_updates() -> None:
    [removed] = records("account_update_partner_removed")
    assert (removed.chain_id, removed.kind, removed.status) == (
        f"waba-{WABA}",
        "account_event",
        "PARTNER_REMOVED",
    )
    assert removed.business_phone == "15550001111"
    assert detail(removed)["disconnection_reason"] == "PRIMARY_INACTIVITY"
    offboarded, reconnected = records("account_update_offboarded_reconnected")
    assert (offboarded.status, reconnected.status) == ("ACCOUNT_OFFBOARDED", "ACCOUNT_RECONNECTED")
    assert detail(reconnected)["path"] == "entry[1].changes[0].value"


def test_phone_number_quality_update() -> None:
    [record] = records("phone_number_quality_update")
    assert (record.msg_type, record.status, record.business_phone) == (
        "phone_number_quality_update",
        "THROUGHPUT_UPGRADE",
        "15550001111",
    )
    assert detail(record)["tier"] == "TIER_10K"


def test_unknown_field_is_archived_whole() -> None:
    [record] = records("unknown_field")
    assert (record.kind, record.msg_type, record.chain_id) == (
        "unsupported",
        "business_capability_update",
        f"waba-{WABA}",
    )
    assert detail(record)["raw"]["max_phone_numbers_per_business"] == 2


def test_unknown_array_next_to_known_ones_is_archived() -> None:
    body = envelope(
        "messages", {"metadata": META, "messages": [text_message(1)], "calls": [{"id": "c1"}]}
    )
    message, extra = run(body).records
    assert message.kind == "message"
    assert (extra.kind, extra.msg_type) == ("unsupported", "messages.calls")


def test_empty_value_is_not_silently_dropped() -> None:
    [record] = run(envelope("messages", {"metadata": META})).records
    assert record.kind == "unsupported"


# --- identity and determinism --------------------------------------------------------------------


def test_same_body_twice_gives_identical_records() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        assert run(path.read_bytes()) == run(path.read_bytes())


def test_same_event_in_two_raw_objects_gets_one_record_id() -> None:
    first = normalize_delivery(fixture("statuses_failed"), raw_key="a", raw_line=1, received_time=1)
    second = normalize_delivery(
        fixture("statuses_failed"), raw_key="b", raw_line=9, received_time=99
    )
    assert first.records[0].record_id == second.records[0].record_id
    assert first.records[0].raw_key != second.records[0].raw_key


def test_live_and_history_copies_share_an_id_but_not_a_kind() -> None:
    live = {**text_message(1), "id": "wamid.SAME"}
    history_copy = {**live, "history_context": {"status": "READ"}}
    [live_record] = run(envelope("messages", {"metadata": META, "messages": [live]})).records
    history_value = {
        "metadata": META,
        "history": [{"metadata": {"phase": 0}, "threads": [{"messages": [history_copy]}]}],
    }
    [history_record] = run(envelope("history", history_value)).records
    assert live_record.record_id == history_record.record_id
    assert (live_record.kind, history_record.kind) == ("message", "history_message")
    assert (live_record.origin, history_record.origin) == ("customer", "history_import")


def test_key_order_does_not_change_management_identity() -> None:
    value = {"event": "APPROVED", "message_template_id": 1, "message_template_name": "t"}
    reordered = dict(reversed(list(value.items())))
    [first] = run(envelope("message_template_status_update", value, time=5)).records
    [second] = run(envelope("message_template_status_update", reordered, time=5)).records
    assert first.record_id == second.record_id


def test_thousand_updates_in_one_post() -> None:
    messages = [text_message(n) for n in range(1000)]
    result = run(envelope("messages", {"metadata": META, "messages": messages}))
    assert len(result.records) == 1000
    assert len({record.record_id for record in result.records}) == 1000


def test_event_time_falls_back_to_entry_time_then_received_time() -> None:
    message = text_message(1)
    del message["timestamp"]
    [from_entry] = run(
        envelope("messages", {"metadata": META, "messages": [message]}, time=9)
    ).records
    assert (from_entry.event_time, detail(from_entry)["time_source"]) == (9000, "entry")
    [received] = run(envelope("messages", {"metadata": META, "messages": [message]})).records
    assert (received.event_time, detail(received)["time_source"]) == (RECEIVED, "received")
    assert from_entry.record_id == received.record_id


def test_detail_is_canonical_and_float_free() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        for record in run(path.read_bytes()).records:
            parsed = json.loads(record.detail, parse_float=lambda text: pytest.fail(text))
            canonical = orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS).decode()
            assert record.detail == canonical


# --- hostile bodies ------------------------------------------------------------------------------

AMBIGUOUS = "JSON parsers disagree on which value counts, so the body is ambiguous"
DUPLICATE_BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",'
    b'"value":{"metadata":{"phone_number_id":"1"},"messages":[{"id":"w","from":"1",'
    b'"timestamp":"1","type":"text","text":{"body":"a","body":"b"}}]}}]}]}'
)
# Each reason says exactly what is wrong with the body, and nothing of its content.
WHOLE_BODY_CASES = {
    "invalid_utf8": (
        b'{"object":"whatsapp_business_account","entry":["\xff"]}',
        "body is not valid UTF-8 (at byte 48)",
    ),
    "truncated": (fixture("messages_text")[:-40], "body is not valid JSON (at character"),
    "empty": (b"", "body is not valid JSON (at character 0)"),
    "array": (b"[]", "body is an array, not an object"),
    "string": (b'"whatsapp_business_account"', "body is a string, not an object"),
    "wrong_object": (
        b'{"object":"page","entry":[]}',
        "object is not 'whatsapp_business_account' (got another name)",
    ),
    "object_number": (
        b'{"object":7,"entry":[]}',
        "object is an integer, not the string 'whatsapp_business_account'",
    ),
    "no_object": (b'{"entry":[]}', "object is missing (expected 'whatsapp_business_account')"),
    "no_entry": (b'{"object":"whatsapp_business_account"}', "entry is missing (expected an array)"),
    "null_entry": (
        b'{"object":"whatsapp_business_account","entry":null}',
        "entry is null, not an array",
    ),
    "entry_object": (
        b'{"object":"whatsapp_business_account","entry":{}}',
        "entry is an object, not an array",
    ),
    "deep_nesting": (
        b'{"object":"whatsapp_business_account","entry":[],"x":' + b"[" * 70 + b"]" * 70 + b"}",
        "body nests deeper than 64 levels",
    ),
    "very_deep_nesting": (b"[" * 5000 + b"]" * 5000, "body nests deeper than 64 levels"),
    "huge": (
        b'{"a":"' + b"x" * (MAX_BODY_BYTES + 1) + b'"}',
        f"body is {MAX_BODY_BYTES + 9} bytes, over the {MAX_BODY_BYTES}-byte limit",
    ),
    "nan": (
        b'{"object":"whatsapp_business_account","entry":[],"x":NaN}',
        "body is not valid JSON (at character 53)",
    ),
    "lone_surrogate": (
        b'{"object":"whatsapp_business_account","x":"\\ud800"}',
        "body is not valid JSON (at character 43)",
    ),
    "infinite_number": (
        b'{"object":"whatsapp_business_account","x":1e999}',
        "body is not valid JSON (at character 42)",
    ),
    "duplicate_top_level_key": (
        b'{"object":"whatsapp_business_account","entry":[],"entry":[{"id":"1","changes":[]}]}',
        f'duplicate key "entry": {AMBIGUOUS}',
    ),
    "duplicate_escaped_key": (
        b'{"object":"whatsapp_business_account","entry":[],"\\u0065ntry":[]}',
        f'duplicate key "entry": {AMBIGUOUS}',
    ),
    "duplicate_deep_key": (
        DUPLICATE_BODY,
        f'duplicate key "entry[0].changes[0].value.messages[0].text.body": {AMBIGUOUS}',
    ),
    "duplicate_odd_key": (
        b'{"object":"whatsapp_business_account","entry":[],"x":{"a b":1,"a b":1}}',
        f'duplicate key "x["a b"]": {AMBIGUOUS}',
    ),
}


@pytest.mark.parametrize(
    ("body", "reason"), list(WHOLE_BODY_CASES.values()), ids=list(WHOLE_BODY_CASES)
)
def test_whole_body_failures_are_quarantined_with_the_exact_bytes(body: bytes, reason: str) -> None:
    result = run(body)
    assert result.records == []
    [item] = result.quarantined
    assert item.reason.startswith(reason)
    assert (item.location, item.payload) == ("$", body)
    assert (item.raw_key, item.raw_line) == ("raw/date=2026-01-05/r1-1.jsonl.zst", 7)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    body = envelope("messages", {"metadata": META, "messages": [text_message(1, "[" * 200)]})
    assert len(run(body).records) == 1


SECRET = "TOP-SECRET-CONTENT"


def bad_items() -> list[tuple[str, Any, str]]:
    return [
        ("missing_id", {**text_message(1, SECRET), "id": None}, "id missing"),
        (
            "id_list",
            {**text_message(1, SECRET), "id": [SECRET]},
            "id: Input should be a valid string (got an array)",
        ),
        (
            "body_number",
            {**text_message(1), "text": {"body": 5}},
            "text.body: Input should be a valid string (got an integer)",
        ),
        (
            "timestamp_word",
            {**text_message(1, SECRET), "timestamp": "soon"},
            "timestamp is not unix seconds (got a string that is not decimal digits)",
        ),
        (
            "timestamp_ms",
            {**text_message(1, SECRET), "timestamp": "1767607200000"},
            "timestamp is not unix seconds "
            "(got 13 digits, more than unix seconds up to the year 9999 have)",
        ),
        (
            "timestamp_float",
            {**text_message(1, SECRET), "timestamp": 1.5},
            "timestamp is not unix seconds "
            "(got a negative number, or one with a fraction or exponent)",
        ),
        (
            "timestamp_object",
            {**text_message(1, SECRET), "timestamp": {"s": 1}},
            "timestamp: expected a string or an integer (got an object)",
        ),
        ("not_object", SECRET, "item is a string, not an object"),
        ("type_missing", {"id": "wamid.X", "text": {"body": SECRET}}, "type: Field required"),
        ("huge_item", text_message(1, SECRET * 70_000), "item is larger than 1048576 characters"),
        (
            "edit_without_ids",
            {**text_message(1), "id": None, "type": "edit", "edit": {}},
            "id missing",
        ),
    ]


@pytest.mark.parametrize(
    ("item", "reason"),
    [(item, reason) for _, item, reason in bad_items()],
    ids=[name for name, _, _ in bad_items()],
)
def test_bad_item_is_quarantined_and_its_siblings_survive(item: Any, reason: str) -> None:
    value = {"metadata": META, "messages": [text_message(1), item, text_message(3)]}
    result = run(envelope("messages", value))
    assert [record.wamid for record in result.records] == ["wamid.T1", "wamid.T3"]
    [quarantined] = result.quarantined
    assert reason in quarantined.reason
    assert SECRET not in quarantined.reason
    assert quarantined.location == "entry[0].changes[0].value.messages[1]"
    # Fractional numbers travel as their source text (see normalize's module docstring).
    expected = (
        {**item, "timestamp": "1.5"}
        if item is not SECRET and item.get("timestamp") == 1.5
        else item
    )
    assert orjson.loads(quarantined.payload) == expected


def bad_statuses() -> list[tuple[str, Any]]:
    return [
        ("no_id", {"status": "sent", "timestamp": "1"}),
        ("no_status", {"id": "wamid.S"}),
        ("status_number", {"id": "wamid.S", "status": 3}),
        ("errors_not_list", {"id": "wamid.S", "status": "failed", "errors": "x"}),
        ("error_code_text", {"id": "wamid.S", "status": "failed", "errors": [{"code": "abc"}]}),
    ]


@pytest.mark.parametrize(
    "status", [s for _, s in bad_statuses()], ids=[n for n, _ in bad_statuses()]
)
def test_bad_status_is_quarantined_alone(status: Any) -> None:
    good = {"id": "wamid.OK", "status": "delivered", "timestamp": "1767610000"}
    result = run(envelope("messages", {"metadata": META, "statuses": [status, good]}))
    assert [record.wamid for record in result.records] == ["wamid.OK"]
    assert result.quarantined[0].location == "entry[0].changes[0].value.statuses[0]"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"messages": [text_message(1)]}, "value.metadata"),
        ({"metadata": {"display_phone_number": "1"}, "messages": []}, "phone_number_id"),
        ({"metadata": "x", "messages": []}, "value.metadata"),
        ({"metadata": {"phone_number_id": "../../etc"}, "messages": []}, "chain id"),
        ({"metadata": {"phone_number_id": "a" * 200}, "messages": []}, "chain id"),
    ],
    ids=["missing", "no_phone_number_id", "not_object", "path_traversal", "too_long"],
)
def test_missing_or_bad_metadata_quarantines_the_change(value: Any, reason: str) -> None:
    body = orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": WABA,
                    "changes": [
                        {"field": "messages", "value": value},
                        {
                            "field": "messages",
                            "value": {"metadata": META, "messages": [text_message(2)]},
                        },
                    ],
                }
            ],
        }
    )
    result = run(body)
    assert [record.wamid for record in result.records] == ["wamid.T2"]
    [quarantined] = result.quarantined
    assert reason in quarantined.reason
    assert quarantined.location == "entry[0].changes[0]"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"changes": []}, "entry.id missing"),
        ({"id": WABA, "changes": {}}, "entry.changes"),
        ({"id": WABA, "time": "yesterday", "changes": []}, "entry.time"),
        ({"id": ["x"], "changes": []}, "entry.id"),
        ("entry", "not an object"),
    ],
    ids=["no_id", "changes_object", "time_word", "id_list", "string"],
)
def test_bad_entry_is_quarantined_and_other_entries_survive(entry: Any, reason: str) -> None:
    good = {
        "id": WABA,
        "changes": [
            {"field": "messages", "value": {"metadata": META, "messages": [text_message(1)]}}
        ],
    }
    body = orjson.dumps({"object": "whatsapp_business_account", "entry": [entry, good]})
    result = run(body)
    assert len(result.records) == 1
    [quarantined] = result.quarantined
    assert reason in quarantined.reason
    assert quarantined.location == "entry[0]"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"field": "messages"}, "change.value"),
        ({"field": "messages", "value": [1]}, "change.value"),
        ({"value": {}}, "change.field"),
        ({"field": 7, "value": {}}, "change.field"),
        (["messages"], "not an object"),
    ],
    ids=["no_value", "value_list", "no_field", "field_number", "list"],
)
def test_bad_change_is_quarantined(change: Any, reason: str) -> None:
    body = orjson.dumps(
        {"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [change]}]}
    )
    [quarantined] = run(body).quarantined
    assert reason in quarantined.reason
    assert quarantined.location == "entry[0].changes[0]"


def test_items_array_of_wrong_type_is_quarantined() -> None:
    result = run(envelope("messages", {"metadata": META, "messages": {"0": text_message(1)}}))
    [quarantined] = result.quarantined
    assert quarantined.location == "entry[0].changes[0].value.messages"
    assert "not an array" in quarantined.reason


def test_bad_history_message_leaves_its_thread_mates() -> None:
    value = {
        "metadata": META,
        "history": [
            {
                "metadata": {"phase": 0},
                "threads": [
                    {"id": CUSTOMER, "messages": [{**text_message(1)}, {"type": "text"}]},
                    "not a thread",
                ],
            }
        ],
    }
    result = run(envelope("history", value))
    assert len(result.records) == 1
    locations = sorted(q.location for q in result.quarantined)
    assert locations == [
        "entry[0].changes[0].value.history[0].threads[0].messages[1]",
        "entry[0].changes[0].value.history[0].threads[1]",
    ]


def test_management_event_without_event_is_quarantined() -> None:
    result = run(envelope("account_update", {"phone_number": "1"}, time=1))
    [quarantined] = result.quarantined
    assert quarantined.location == "entry[0].changes[0].value"
    assert "event" in quarantined.reason


def test_big_integers_do_not_become_floats() -> None:
    message = {**text_message(1), "extra": 0}
    body = envelope("messages", {"metadata": META, "messages": [message]})
    body = body.replace(b'"extra":0', b'"extra":123456789012345678901234567890')
    [record] = run(body).records
    assert detail(record)["raw"]["extra"] == "123456789012345678901234567890"


def test_non_bytes_body_is_quarantined() -> None:
    result = normalize_delivery("{}", raw_key="k", raw_line=0, received_time=0)  # type: ignore[arg-type]
    assert "not bytes" in result.quarantined[0].reason


# --- outbound capture ------------------------------------------------------------------------


def _capture(**overrides: object) -> bytes:
    import orjson

    doc: dict[str, object] = {
        "phone_number_id": "900000000000001",
        "request": {
            "messaging_product": "whatsapp",
            "to": "+447700900123",
            "type": "template",
            "template": {"name": "order_update", "language": {"code": "en_GB"}},
        },
        "response": {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+447700900123", "wa_id": "447700900123"}],
            "messages": [{"id": "wamid.OUT1"}],
        },
        "sent_at": 1_767_607_200_000,
    }
    doc.update(overrides)
    return orjson.dumps(doc)


def _outbound(body: bytes) -> NormalizeResult:
    return normalize_delivery(
        body, raw_key="raw/k", raw_line=3, received_time=1_767_607_201_000, source="outbound"
    )


def test_outbound_capture_becomes_one_outbound_record() -> None:
    from coexarchive.normalize import message_record_id

    result = _outbound(_capture())
    assert result.quarantined == []
    [record] = result.records
    assert (record.kind, record.origin, record.direction) == ("outbound", "cloud_api", "outbound")
    assert record.wamid == "wamid.OUT1"
    assert record.record_id == message_record_id("900000000000001", "wamid.OUT1")
    assert (record.template_name, record.template_language) == ("order_update", "en_GB")
    assert record.customer_wa_id == "447700900123"
    assert record.event_time == 1_767_607_200_000


def test_outbound_text_keeps_its_body_and_falls_back_to_receive_time() -> None:
    request = {
        "messaging_product": "whatsapp",
        "to": "447700900123",
        "type": "text",
        "text": {"body": "Your order shipped ✓"},
    }
    [record] = _outbound(_capture(request=request, sent_at=None)).records
    assert record.text == "Your order shipped ✓"
    assert record.event_time == 1_767_607_201_000


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_capture(response={"messages": []}), "no wamid"),
        (_capture(phone_number_id="../etc"), "phone_number_id"),
        (_capture(request="text"), "request object"),
        (b"[1, 2]", "not an object"),
        (b"{truncated", "not valid JSON"),
    ],
)
def test_bad_captures_are_quarantined_whole(body: bytes, reason: str) -> None:
    result = _outbound(body)
    assert result.records == []
    [bad] = result.quarantined
    assert reason in bad.reason and bad.payload == body and bad.location == "$"


def test_unknown_landing_source_is_quarantined() -> None:
    result = normalize_delivery(_capture(), raw_key="k", raw_line=0, received_time=1, source="fax")
    assert result.records == [] and "unknown landing source" in result.quarantined[0].reason
