"""The traffic generator: deterministic, signed, complete, and honest about what it broke."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from coexarchive.errors import ConfigError
from coexarchive.raw import Delivery, decode_landing, parse_landing_key, verify_signature
from coexarchive.records import Kind
from coexarchive.testing import (
    Simulation,
    SimulationConfig,
    bulk_objects,
    redelivery,
    simulate,
)
from coexarchive.testing.cli import main

CONFIG = SimulationConfig()
PHONE_FIELDS = (
    "messages",
    "smb_message_echoes",
    "history",
    "smb_app_state_sync",
    "user_preferences",
)
ITEM_ARRAYS = ("messages", "statuses", "message_echoes")


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(CONFIG)


def deliveries(objects: list[tuple[str, bytes]]) -> Iterator[tuple[str, int, Delivery]]:
    for key, data in objects:
        for line in decode_landing(data, key=key):
            assert line.error is None, line.error
            assert line.delivery is not None
            yield key, line.line, line.delivery


def well_formed(sim: Simulation) -> Iterator[dict[str, Any]]:
    bad = {(key, line) for key, line, _ in sim.malformed_at}
    for key, line, delivery in deliveries(sim.objects):
        if (key, line) not in bad:
            yield json.loads(delivery.body)


def webhook_items(sim: Simulation) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(field, array, element) of every array element in every well-formed webhook body."""
    for body in well_formed(sim):
        for entry in body.get("entry", ()):
            for change in entry["changes"]:
                value = change["value"]
                for array in ("messages", "statuses", "message_echoes", "history", "state_sync"):
                    for element in value.get(array, ()):
                        yield change["field"], array, element


def malformation(body: bytes) -> str | None:
    """What makes a body unacceptable to a strict parser, or None if nothing does."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not JSON"
    if not isinstance(document.get("entry"), list):
        return "entry not a list"
    for entry in document["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            if change["field"] in PHONE_FIELDS and "metadata" not in value:
                return "no metadata"
            for array in ITEM_ARRAYS:
                for item in value.get(array, ()):
                    if not isinstance(item.get("id"), str):
                        return "id"
                    if not isinstance(item.get("timestamp"), str):
                        return "timestamp"
                    if "text" in item and not isinstance(item["text"], dict):
                        return "text"
    return None


# -- determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(sim: Simulation) -> None:
    again = simulate(CONFIG)
    assert again.objects == sim.objects
    assert again.expected == sim.expected


def test_other_seed_gives_other_traffic(sim: Simulation) -> None:
    assert simulate(SimulationConfig(seed=8)).objects != sim.objects


def test_start_moves_every_key_and_time() -> None:
    later = simulate(SimulationConfig(start=datetime.fromisoformat("2026-06-01T00:00:00+00:00")))
    dates = {parse_landing_key(key)[0] for key, _ in later.objects}  # type: ignore[index]
    assert all(date.startswith("2026-0") and date >= "2026-05-31" for date in dates)


# -- signatures and landing ----------------------------------------------------------------------


def test_every_delivery_is_signed_over_its_exact_bytes(sim: Simulation) -> None:
    for _, _, delivery in deliveries(sim.objects):
        header = delivery.headers["x-hub-signature-256"]
        assert verify_signature(delivery.body, header, [CONFIG.app_secret])
        assert not verify_signature(delivery.body, header, [b"wrong-secret"])
        assert not verify_signature(delivery.body + b" ", header, [CONFIG.app_secret])


def test_seqs_are_contiguous_and_keys_name_the_first(sim: Simulation) -> None:
    seqs = [delivery.seq for _, _, delivery in deliveries(sim.objects)]
    assert seqs == list(range(len(seqs)))
    for key, data in sim.objects:
        first = decode_landing(data, key=key)[0].delivery
        assert first is not None
        assert parse_landing_key(key) is not None
        assert parse_landing_key(key)[2] == first.seq  # type: ignore[index]


def test_deliveries_arrive_in_received_at_order(sim: Simulation) -> None:
    times = [delivery.received_at for _, _, delivery in deliveries(sim.objects)]
    assert times == sorted(times)


def test_objects_hold_at_most_deliveries_per_object() -> None:
    small = simulate(SimulationConfig(deliveries_per_object=50))
    sizes = [len(decode_landing(data, key=key)) for key, data in small.objects]
    assert max(sizes) == 50
    assert all(size == 50 for size in sizes[:-1])


def test_app_secret_never_lands(sim: Simulation) -> None:
    for _, _, delivery in deliveries(sim.objects):
        assert CONFIG.app_secret not in delivery.body
        assert all(CONFIG.app_secret.decode() not in v for v in delivery.headers.values())


# -- completeness --------------------------------------------------------------------------------


def test_every_kind_is_present(sim: Simulation) -> None:
    kinds = {event.kind for event in sim.expected}
    wanted = {
        Kind.MESSAGE,
        Kind.ECHO,
        Kind.OUTBOUND,
        Kind.HISTORY_MESSAGE,
        Kind.MESSAGE_EDIT,
        Kind.MESSAGE_REVOKE,
        Kind.STATUS,
        Kind.CONTACT_CHANGE,
        Kind.TEMPLATE_EVENT,
        Kind.CONSENT_EVENT,
        Kind.ACCOUNT_EVENT,
    }
    assert wanted <= kinds


def test_every_inbound_type_of_the_catalogue_is_present(sim: Simulation) -> None:
    types = {item["type"] for field, array, item in webhook_items(sim) if array == "messages"}
    catalogue = {
        "text", "image", "video", "audio", "document", "sticker", "location", "contacts",
        "interactive", "button", "reaction", "order", "system", "unsupported", "edit", "revoke",
    }  # fmt: skip
    assert catalogue <= types


def test_expected_has_no_duplicates(sim: Simulation) -> None:
    identities = Counter((e.kind, e.chain_id, e.key) for e in sim.expected)
    assert [identity for identity, n in identities.items() if n > 1] == []


def test_expected_wamids_all_appear_in_well_formed_bodies(sim: Simulation) -> None:
    text = "\n".join(json.dumps(body) for body in well_formed(sim))
    for event in sim.expected:
        if event.key.startswith("wamid."):
            assert event.key.split(":")[0] in text, event


def test_management_events_go_to_the_waba_chain(sim: Simulation) -> None:
    waba_kinds = {e.kind for e in sim.expected if e.chain_id == f"waba-{CONFIG.waba_id}"}
    assert waba_kinds == {Kind.TEMPLATE_EVENT, Kind.ACCOUNT_EVENT}


def test_history_declined_on_a_second_number(sim: Simulation) -> None:
    declined = [e for e in sim.expected if e.key == "history_declined:2593109"]
    assert len(declined) == 1
    assert declined[0].chain_id != CONFIG.phone_number_id


def test_live_and_history_overlap_is_expected_once_as_live(sim: Simulation) -> None:
    live = {e.key for e in sim.expected if e.kind in (Kind.MESSAGE, Kind.ECHO)}
    history_ids = {
        message["id"]
        for field, array, chunk in webhook_items(sim)
        if array == "history" and "threads" in chunk
        for thread in chunk["threads"]
        for message in thread["messages"]
    }
    overlap = live & history_ids
    assert len(overlap) >= 2
    history_expected = {e.key for e in sim.expected if e.kind == Kind.HISTORY_MESSAGE}
    assert not overlap & history_expected


# -- Meta's quirks -------------------------------------------------------------------------------


def test_bsuid_only_users_have_no_phone_number(sim: Simulation) -> None:
    inbound = [item for _, array, item in webhook_items(sim) if array == "messages"]
    bsuid_only = [item for item in inbound if "from" not in item]
    assert bsuid_only
    assert all(item["from_user_id"] for item in bsuid_only)


def test_batches_carry_several_items(sim: Simulation) -> None:
    largest = 0
    for body in well_formed(sim):
        for entry in body.get("entry", ()):
            for change in entry["changes"]:
                for array in ITEM_ARRAYS:
                    largest = max(largest, len(change["value"].get(array, ())))
    assert 2 < largest <= CONFIG.batch_max


def test_history_metadata_types_and_status_case_vary(sim: Simulation) -> None:
    chunks = [c for _, array, c in webhook_items(sim) if array == "history" and "metadata" in c]
    phase_types = {type(chunk["metadata"]["phase"]) for chunk in chunks}
    assert phase_types == {int, str}
    statuses = {
        m["history_context"]["status"] for c in chunks for t in c["threads"] for m in t["messages"]
    }
    assert any(s.islower() for s in statuses)
    assert any(s.isupper() for s in statuses)


def test_history_chunks_arrive_out_of_order(sim: Simulation) -> None:
    orders = [
        int(c["metadata"]["chunk_order"])
        for _, array, c in webhook_items(sim)
        if array == "history" and "metadata" in c
    ]
    assert len(orders) >= 3
    assert orders != sorted(orders)


def test_some_status_lands_before_its_outbound_capture(sim: Simulation) -> None:
    first_status: dict[str, int] = {}
    captured: dict[str, int] = {}
    for _, _, delivery in deliveries(sim.objects):
        try:
            body = json.loads(delivery.body)
        except ValueError:
            continue
        if delivery.source == "outbound":
            captured[body["response"]["messages"][0]["id"]] = delivery.seq
            continue
        for entry in body.get("entry", ()) if isinstance(body.get("entry"), list) else ():
            for change in entry["changes"]:
                for status in change["value"].get("statuses", ()):
                    first_status.setdefault(status["id"], delivery.seq)
    assert any(first_status.get(wamid, 10**9) < seq for wamid, seq in captured.items())
    assert set(first_status) - set(captured)  # statuses for sends that were never captured


def test_bodies_come_both_escaped_and_raw_utf8(sim: Simulation) -> None:
    bodies = [d.body for _, _, d in deliveries(sim.objects) if d.source == "webhook"]
    assert any(body.isascii() and b"\\u" in body for body in bodies)
    assert any(not body.isascii() for body in bodies)


def test_outbound_capture_shape(sim: Simulation) -> None:
    captures = [json.loads(d.body) for _, _, d in deliveries(sim.objects) if d.source == "outbound"]
    assert captures
    for capture in captures:
        assert capture["phone_number_id"] == CONFIG.phone_number_id
        assert capture["request"]["messaging_product"] == "whatsapp"
        assert capture["response"]["messages"][0]["id"].startswith("wamid.")


# -- malformed input -----------------------------------------------------------------------------


def test_malformed_count_matches_the_rate(sim: Simulation) -> None:
    total = sum(1 for _ in deliveries(sim.objects))
    assert sim.malformed == len(sim.malformed_at)
    assert 0.3 * CONFIG.malformed_rate * total <= sim.malformed <= 2 * CONFIG.malformed_rate * total


def test_malformed_deliveries_really_are_malformed(sim: Simulation) -> None:
    bodies = {(key, line): d.body for key, line, d in deliveries(sim.objects)}
    for key, line, reason in sim.malformed_at:
        assert malformation(bodies[(key, line)]) is not None, reason


def test_well_formed_deliveries_are_not_malformed(sim: Simulation) -> None:
    bad = {(key, line) for key, line, _ in sim.malformed_at}
    for key, line, delivery in deliveries(sim.objects):
        if (key, line) not in bad and delivery.source == "webhook":
            assert malformation(delivery.body) is None, (key, line)


def test_both_whole_body_and_single_item_damage_occur() -> None:
    heavy = simulate(SimulationConfig(malformed_rate=0.2))
    reasons = {reason for _, _, reason in heavy.malformed_at}
    assert any(reason.startswith("one item") for reason in reasons)
    assert {"truncated JSON", "invalid UTF-8"} <= reasons


def test_no_malformed_input_when_the_rate_is_zero() -> None:
    clean = simulate(SimulationConfig(malformed_rate=0.0, duplicate_rate=0.0))
    assert clean.malformed == 0
    assert clean.duplicates == 0
    bodies = [d.body for _, _, d in deliveries(clean.objects)]
    assert len(bodies) == len(set(bodies))


# -- duplicates and redelivery -------------------------------------------------------------------


def test_duplicates_are_byte_identical_resends(sim: Simulation) -> None:
    counts = Counter(d.body for _, _, d in deliveries(sim.objects))
    assert sim.duplicates > 0
    assert sum(n - 1 for n in counts.values()) == sim.duplicates


def test_redelivery_resends_existing_bodies_under_new_keys(sim: Simulation) -> None:
    retried = redelivery(sim, CONFIG, days_later=3, count=40)
    originals = {d.body: d for _, _, d in deliveries(sim.objects)}
    last_seq = max(d.seq for d in originals.values())
    resent = list(deliveries(retried))
    assert len(resent) == 40
    assert not {key for key, _ in retried} & {key for key, _ in sim.objects}
    for _, _, delivery in resent:
        original = originals[delivery.body]
        assert delivery.headers == original.headers
        assert delivery.source == "webhook"
        assert delivery.received_at >= original.received_at + 3 * 86_400_000
        assert delivery.seq > last_seq
    assert redelivery(sim, CONFIG, days_later=3, count=40) == retried


def test_redelivery_never_resends_malformed_bodies(sim: Simulation) -> None:
    bad_bodies = {
        d.body
        for key, line, d in deliveries(sim.objects)
        if (key, line) in {(k, n) for k, n, _ in sim.malformed_at}
    }
    everything = redelivery(sim, CONFIG, days_later=1, count=10**6)
    assert not {d.body for _, _, d in deliveries(everything)} & bad_bodies


@pytest.mark.parametrize(("days_later", "count"), [(-1, 1), (1, -1)])
def test_redelivery_rejects_negative_arguments(
    sim: Simulation, days_later: int, count: int
) -> None:
    with pytest.raises(ConfigError):
        redelivery(sim, CONFIG, days_later=days_later, count=count)


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"start": datetime(2026, 1, 5)},
        {"customers": 0},
        {"days": 0},
        {"batch_max": 0},
        {"deliveries_per_object": 0},
        {"duplicate_rate": 1.5},
        {"malformed_rate": -0.1},
        {"bsuid_only_rate": 2.0},
        {"messages_per_customer_per_day": -1.0},
    ],
)
def test_bad_config_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        simulate(SimulationConfig(**fields))


def test_bad_receiver_id_is_refused() -> None:
    with pytest.raises(ValueError, match="receiver"):
        simulate(SimulationConfig(receiver_id="Not Valid"))


# -- bulk mode -----------------------------------------------------------------------------------


def test_bulk_objects_hold_exactly_the_events_asked_for() -> None:
    objects = bulk_objects(2_345, seed=3, events_per_object=500)
    events = 0
    for _, _, delivery in deliveries(objects):
        assert verify_signature(
            delivery.body, delivery.headers["x-hub-signature-256"], [CONFIG.app_secret]
        )
        value = json.loads(delivery.body)["entry"][0]["changes"][0]["value"]
        events += len(value.get("messages", ())) + len(value.get("statuses", ()))
    assert events == 2_345
    assert bulk_objects(2_345, seed=3, events_per_object=500) == objects


@pytest.mark.parametrize(("n_events", "per_object"), [(-1, 10), (10, 0)])
def test_bulk_rejects_bad_sizes(n_events: int, per_object: int) -> None:
    with pytest.raises(ConfigError):
        bulk_objects(n_events, seed=1, events_per_object=per_object)


def test_bulk_with_no_events_is_empty() -> None:
    assert bulk_objects(0, seed=1, events_per_object=10) == []


# -- command line --------------------------------------------------------------------------------


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--out" in out and "examples" in out and "same bytes" in out
    assert "test-only demo app secret" in out
    assert "random seed (default: 7)" in out and "(default: sim-SEED)" in out


def written(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.zst"))


def test_main_writes_objects_at_their_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--customers", "3", "--days", "2", "--out", str(tmp_path)]) == 0
    sim = simulate(SimulationConfig(customers=3, days=2, receiver_id="sim-7"))
    assert written(tmp_path) == sorted(key for key, _ in sim.objects)
    out = capsys.readouterr().out
    assert "deliveries" in out and "receiver     sim-7" in out
    assert CONFIG.app_secret.decode() not in out
    # Writing the same objects again is harmless; different bytes at a key are refused.
    assert main(["--customers", "3", "--days", "2", "--out", str(tmp_path)]) == 0
    assert main(["--customers", "4", "--days", "2", "--out", str(tmp_path)]) == 2
    assert "exists with different content" in capsys.readouterr().err


def test_another_seed_lands_beside_earlier_traffic(tmp_path: Path) -> None:
    assert main(["--customers", "3", "--days", "2", "--out", str(tmp_path)]) == 0
    first = written(tmp_path)
    assert main(["--customers", "3", "--days", "2", "--seed", "1", "--out", str(tmp_path)]) == 0
    both = written(tmp_path)
    second = sorted(set(both) - set(first))
    assert set(first) < set(both) and second
    assert all("/sim-1-" in key for key in second) and all("/sim-7-" in key for key in first)
    # Negative seeds get a receiver id of their own too, valid in a landing key.
    assert main(["--customers", "3", "--days", "2", "--seed", "-1", "--out", str(tmp_path)]) == 0
    assert any("/sim-m1-" in key for key in written(tmp_path))


def test_main_refuses_a_bad_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--start", "next tuesday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_main_refuses_a_missing_secret_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--app-secret-file", str(tmp_path / "absent")]) == 2
    assert "app secret" in capsys.readouterr().err


def test_main_signs_with_the_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(b"rotated-secret\n")
    out = tmp_path / "out"
    assert main(["--bulk", "100", "--app-secret-file", str(secret_file), "--out", str(out)]) == 0
    objects = [(p.relative_to(out).as_posix(), p.read_bytes()) for p in out.rglob("*.zst")]
    for _, _, delivery in deliveries(objects):
        header = delivery.headers["x-hub-signature-256"]
        assert verify_signature(delivery.body, header, [b"rotated-secret"])
