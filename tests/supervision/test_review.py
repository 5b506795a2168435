"""Rescans over the demo's traffic and the review queue, on the in-memory store: hits sealed once,
deterministic samples, decisions sealed once with who and when, and the reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from coexarchive.errors import ConfigError, FormatError
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Kind
from coexarchive.segments import Manifest, list_manifests, parquet_bytes, read_segment
from coexarchive.store import MemoryStore
from coexarchive.supervision import queue as review_queue
from coexarchive.supervision.library import SealedPolicy, import_policy
from coexarchive.supervision.policy import load_policy
from coexarchive.supervision.register import REVIEWS_CHAIN, Sealer, read_chain
from coexarchive.supervision.scan import read_messages, rescan
from supervision._demo import build_demo
from support.archive import ARCHIVE, signer, trust_for

SAMPLE = Path(__file__).parents[2] / "schemas" / "samples" / "policy-sample.yaml"
NOW = 1_768_000_000_000  # 2026-01-09T23:06:40Z, after the simulated days
DAY = 86_400_000
CHAIN = "900000000000001"
AUDIT = signer(seed=b"audit")


@pytest.fixture(scope="module")
def demo_store() -> MemoryStore:
    store = MemoryStore()
    build_demo(store)
    return store


@pytest.fixture
def store(demo_store: MemoryStore) -> MemoryStore:
    copy = MemoryStore()
    copy.unsafe_objects = dict(demo_store.unsafe_objects)
    copy._retention = dict(demo_store._retention)
    return copy


def sealer(store: MemoryStore) -> Sealer:
    return Sealer(store, signer=AUDIT, archive_name=ARCHIVE, trust=trust_for(AUDIT, signer()))


def imported(store: MemoryStore) -> SealedPolicy:
    return import_policy(sealer(store), load_policy(SAMPLE), who="cco", now_ms=NOW).policy


def scan(store: MemoryStore, now: int = NOW, **window: object):  # type: ignore[no-untyped-def]
    return rescan(
        ArchiveCatalog(store), sealer(store), imported(store), who="cco", now_ms=now, **window
    )


def queue_of(store: MemoryStore) -> review_queue.Queue:
    return review_queue.fold(read_chain(store, REVIEWS_CHAIN))


def test_rescan_finds_every_language_flags_and_a_sample(store: MemoryStore) -> None:
    outcome = scan(store)
    rules = Counter(orjson.loads(hit.detail)["rule"] for hit in outcome.found)
    assert {
        "replacement-promise-en",
        "exchanges-pt",
        "cancellations-ar",
        "refunds-hi",
        "marketing-consent",
        "random-5pc",
    } <= set(rules)
    assert outcome.sealed == outcome.found
    details = [orjson.loads(hit.detail) for hit in outcome.found]
    # Document names are read: the invoice PDF's name hits the Portuguese rule.
    assert any(
        s["field"] == "filename" and s["words"] == "fatura" for d in details for s in d["spans"]
    )
    # Echoes, Cloud API sends and history are scanned, not only inbound messages.
    assert {"message", "echo", "outbound", "history_message"} <= {
        d["message_kind"] for d in details
    }


def test_each_hit_names_the_sealed_message_it_came_from(store: MemoryStore) -> None:
    outcome = scan(store)
    catalog = ArchiveCatalog(store)
    catalog.refresh()
    messages, _ = read_messages(catalog, CHAIN)
    by_seq = {m.seq: m for m in messages}
    for hit in outcome.found:
        detail = orjson.loads(hit.detail)
        message = by_seq[detail["seq"]]
        assert hit.ref_record_id == message.record_id == detail["record_id"]
        assert detail["leaf_hash"] == message.leaf_hash.hex()
        assert (detail["policy"], detail["version"]) == ("conduct-sample", 1)


def test_rescan_is_idempotent_and_samples_the_same_messages(store: MemoryStore) -> None:
    first = scan(store)
    second = scan(store, now=NOW + DAY)
    assert {h.record_id for h in first.found} == {h.record_id for h in second.found}
    assert second.sealed == []
    rows = read_chain(store, REVIEWS_CHAIN)
    hits = [row for row in rows if row.kind == Kind.HIT]
    assert len(hits) == len({row.record_id for row in hits}) == len(first.found)
    # Each scan leaves its counts, even one that found nothing new.
    scans = [row for row in rows if row.kind == Kind.REVIEW and row.detail["action"] == "scan"]
    assert [s.detail["new_hits"] for s in scans] == [len(first.found), 0]


def test_window_and_chain_limit_the_scan(store: MemoryStore) -> None:
    catalog = ArchiveCatalog(store)
    catalog.refresh()
    messages, _ = read_messages(catalog, CHAIN)
    middle = sorted(m.event_time for m in messages)[len(messages) // 2]
    early = scan(store, until=middle)
    assert 0 < early.scanned < len(messages)
    assert all(orjson.loads(h.detail)["message_time"] < _iso(middle) for h in early.found)
    everything = scan(store, now=NOW + 1)
    assert {h.record_id for h in early.found} < {h.record_id for h in everything.found}
    assert everything.sealed and not {h.record_id for h in early.sealed} & {
        h.record_id for h in everything.sealed
    }
    nothing = scan(store, now=NOW + 2, chains=["no-such-chain"])
    assert nothing.scanned == 0 and nothing.found == []


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def test_a_scan_refuses_a_message_segment_that_differs_from_its_manifest(
    store: MemoryStore,
) -> None:
    key = list_manifests(store, CHAIN)[0]
    manifest = Manifest.from_bytes(store.get(key), key=key)
    table = read_segment(store.get(manifest.segment.key))
    texts = table.column("text").to_pylist()
    forged = table.set_column(
        table.schema.get_field_index("text"), "text", pa.array(["clean"] * len(texts))
    )
    store.unsafe_objects[manifest.segment.key] = parquet_bytes(forged)
    with pytest.raises(FormatError, match="differs from its manifest"):
        scan(store)


def test_a_scan_refuses_rows_that_do_not_match_their_seal(store: MemoryStore) -> None:
    key = list_manifests(store, CHAIN)[0]
    manifest = Manifest.from_bytes(store.get(key), key=key)
    table = read_segment(store.get(manifest.segment.key))
    forged_texts = ["nothing to see" for _ in range(table.num_rows)]
    forged = table.set_column(
        table.schema.get_field_index("text"), "text", pa.array(forged_texts, pa.string())
    )
    data = parquet_bytes(forged)
    store.unsafe_objects[manifest.segment.key] = data
    from coexarchive.segments import ObjectRef
    from coexarchive.store.base import sha256_hex

    fixed = replace(manifest, segment=ObjectRef(manifest.segment.key, sha256_hex(data), len(data)))
    store.unsafe_objects[key] = fixed.to_bytes()
    with pytest.raises(FormatError, match="does not match its seal"):
        scan(store)


def test_decide_once_reopen_and_decide_again(store: MemoryStore) -> None:
    scan(store)
    hit = review_queue.select(queue_of(store), now_ms=NOW)[0]
    s = sealer(store)
    review_queue.act(s, hit.id[:8], "assign", who="lead", now_ms=NOW + 1, to="ana")
    review_queue.act(
        s, hit.id, "decide", who="ana", now_ms=NOW + 2, disposition="no_action", note="fine"
    )
    with pytest.raises(ConfigError, match=r"already decided .* by ana; `review reopen` it first"):
        review_queue.act(
            s, hit.id, "decide", who="bo", now_ms=NOW + 3, disposition="escalate", note="x"
        )
    review_queue.act(s, hit.id, "reopen", who="lead", now_ms=NOW + 4, note="second look")
    review_queue.act(
        s, hit.id, "decide", who="bo", now_ms=NOW + 5, disposition="escalate", note="refund risk"
    )
    state = queue_of(store).find(hit.id)
    assert (state.assignee, state.disposition, state.decided_by) == ("ana", "escalate", "bo")
    assert state.first_decision_at == NOW + 2
    assert [(e["action"], e["who"]) for e in state.history] == [
        ("assign", "lead"),
        ("decide", "ana"),
        ("reopen", "lead"),
        ("decide", "bo"),
    ]
    decisions = [
        row for row in read_chain(store, REVIEWS_CHAIN) if row.detail.get("action") == "decide"
    ]
    assert [(r.detail["who"], r.event_time, r.ref_record_id) for r in decisions] == [
        ("ana", NOW + 2, hit.id),
        ("bo", NOW + 5, hit.id),
    ]


@pytest.mark.parametrize(
    ("action", "kwargs", "message"),
    [
        ("decide", {"disposition": "ignore", "note": "n"}, "--disposition must be one of"),
        ("decide", {"disposition": "closed", "note": " "}, "needs --note"),
        ("assign", {"to": ""}, "needs --to"),
        ("reopen", {"note": "n"}, "is open: nothing to reopen"),
    ],
)
def test_actions_that_make_no_sense_are_refused_and_seal_nothing(
    store: MemoryStore, action: str, kwargs: dict[str, str], message: str
) -> None:
    scan(store)
    hit = review_queue.select(queue_of(store), now_ms=NOW)[0]
    before = len(read_chain(store, REVIEWS_CHAIN))
    with pytest.raises(ConfigError, match=message):
        review_queue.act(sealer(store), hit.id, action, who="x", now_ms=NOW, **kwargs)
    assert len(read_chain(store, REVIEWS_CHAIN)) == before


def test_hit_ids_must_be_unambiguous(store: MemoryStore) -> None:
    scan(store)
    queue = queue_of(store)
    with pytest.raises(ConfigError, match="too short"):
        queue.find("ab")
    with pytest.raises(ConfigError, match="no hit 'ffffffffffff'"):
        queue.find("f" * 12)


def test_a_decision_checks_the_chain_it_extends(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reviewers deciding one hit at once: the one whose append loses the race re-reads the
    chain, finds the other's decision and is refused."""
    scan(store)
    hit = review_queue.select(queue_of(store), now_ms=NOW)[0]
    from coexarchive.supervision import register

    real_read = register.read_chain
    raced = []

    def read_then_lose_the_race(store_: MemoryStore, chain_id: str):  # type: ignore[no-untyped-def]
        rows = real_read(store_, chain_id)
        if not raced:  # the other reviewer commits after our read, before our append
            raced.append(True)
            monkeypatch.setattr(register, "read_chain", real_read)
            review_queue.act(
                sealer(store),
                hit.id,
                "decide",
                who="other",
                now_ms=NOW,
                disposition="closed",
                note="mine",
            )
            monkeypatch.setattr(register, "read_chain", read_then_lose_the_race)
        return rows

    monkeypatch.setattr(register, "read_chain", read_then_lose_the_race)
    with pytest.raises(ConfigError, match=r"already decided .* by other"):
        review_queue.act(
            sealer(store),
            hit.id,
            "decide",
            who="me",
            now_ms=NOW,
            disposition="escalate",
            note="n",
        )
    monkeypatch.setattr(register, "read_chain", real_read)
    decisions = [
        r.detail["who"] for r in read_chain(store, REVIEWS_CHAIN) if r.ref_record_id == hit.id
    ]
    assert raced and decisions == ["other"]


def test_queue_filters(store: MemoryStore) -> None:
    scan(store)
    queue = queue_of(store)
    everything = review_queue.select(queue, now_ms=NOW)
    sampled = [h for h in everything if h.rule == "random-5pc"]
    assert review_queue.select(queue, policy="conduct-sample@1", now_ms=NOW) == everything
    assert review_queue.select(queue, policy="conduct-sample@2", now_ms=NOW) == []
    assert review_queue.select(queue, chain="other", now_ms=NOW) == []
    assert review_queue.select(queue, older_than_ms=DAY, now_ms=NOW) == []
    assert review_queue.select(queue, older_than_ms=DAY, now_ms=NOW + 2 * DAY) == everything
    review_queue.act(sealer(store), sampled[0].id, "assign", who="l", now_ms=NOW, to="ana")
    queue = queue_of(store)
    assert [h.id for h in review_queue.select(queue, assignee="ana", now_ms=NOW)] == [sampled[0].id]


def test_reports(store: MemoryStore) -> None:
    outcome = scan(store)
    queue = queue_of(store)
    hits = review_queue.select(queue, now_ms=NOW)
    s = sealer(store)
    review_queue.act(
        s,
        hits[0].id,
        "decide",
        who="ana",
        now_ms=NOW + 2 * 3_600_000,
        disposition="escalate",
        note="n",
    )
    review_queue.act(
        s,
        hits[1].id,
        "decide",
        who="bo",
        now_ms=NOW + 4 * 3_600_000,
        disposition="closed",
        note="n",
    )
    sampled = [h for h in hits if h.rule == "random-5pc"]
    review_queue.act(
        s,
        sampled[0].id,
        "decide",
        who="bo",
        now_ms=NOW + 6 * 3_600_000,
        disposition="no_action",
        note="n",
    )
    queue = queue_of(store)
    total = len(outcome.found)

    backlog = review_queue.report("backlog", queue, now_ms=NOW + 10 * DAY)
    assert sum(row["open"] for row in backlog) == total - 3
    assert sum(row["7d_30d"] for row in backlog) == total - 3

    waits = review_queue.report("time-to-review", queue, now_ms=NOW)
    assert waits == [
        {
            "policy": "conduct-sample@1",
            "reviewed": 3,
            "never_reviewed": total - 3,
            "median_hours": "4.0",
            "max_hours": "6.0",
        }
    ]
    escalations = review_queue.report("escalations", queue, now_ms=NOW)
    assert [(e["id"], e["decided_by"]) for e in escalations] == [(hits[0].id, "ana")]

    activity = {r["reviewer"]: r for r in review_queue.report("activity", queue, now_ms=NOW)}
    assert activity[""]["hits"] == total
    assert (activity["ana"]["decisions"], activity["ana"]["escalate"]) == (1, 1)
    assert (activity["bo"]["decisions"], activity["bo"]["closed"]) == (2, 1)

    coverage = review_queue.report("sample-coverage", queue, now_ms=NOW)
    assert coverage == [
        {
            "policy": "conduct-sample@1",
            "chain": CHAIN,
            "sampled": len(sampled),
            "reviewed": 1,
            "scanned_last": outcome.counts[CHAIN].scanned,
            "scanned_at_ingest": 0,
            "reviewed_share": f"{1 / len(sampled):.2f}",
        }
    ]
    with pytest.raises(ConfigError, match="no review report 'nope'"):
        review_queue.report("nope", queue, now_ms=NOW)


def test_flag_rules_use_current_flags_after_reassessment() -> None:
    """A flag an assessment removed no longer hits; one an assessment added does."""
    from coexarchive.segments import ChainWriter
    from support.archive import scenario_record, short_policy

    chain = "900000000000009"
    flagged = scenario_record(
        chain, 1, 0, 1, kind="outbound", text="promo", flags=("marketing_without_consent",)
    )
    clean = scenario_record(chain, 2, 0, 2, kind="outbound", text="promo")
    still = scenario_record(
        chain, 3, 0, 3, kind="outbound", text="promo", flags=("marketing_without_consent",)
    )

    def assessment(n: int, of: object, flags: tuple[str, ...]) -> object:
        return scenario_record(
            chain,
            n,
            1,
            n,
            kind="assessment",
            origin="system",
            direction="none",
            wamid=None,
            ref_record_id=of.record_id,
            flags=flags,  # type: ignore[attr-defined]
        )

    store = MemoryStore()
    writer = ChainWriter(store, chain, signer=signer(), archive_name=ARCHIVE, policy=short_policy())
    writer.append([flagged, clean, still])
    writer.append(
        [assessment(4, flagged, ()), assessment(5, clean, ("marketing_without_consent",))]
    )
    policy = import_policy(sealer(store), load_policy(SAMPLE), who="cco", now_ms=NOW).policy
    outcome = rescan(ArchiveCatalog(store), sealer(store), policy, who="cco", now_ms=NOW)
    flagged_hits = {
        h.ref_record_id for h in outcome.found if orjson.loads(h.detail)["rule_type"] == "flag"
    }
    assert flagged_hits == {clean.record_id, still.record_id}
