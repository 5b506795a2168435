"""Attacks on what ingest learns from a chain's past: forged objects that would teach it what no
trusted key signed.

Enrichment reads a chain's past, and its WABA chain's templates, to set the consent state,
template category and flags of the records it seals; de-duplication reads record indexes to
drop events already sealed; the hold register tells ingest, disposition and verify which data
is under legal hold. The attacker holds the ingest role's rights on the archive bucket
(create-only puts that respect Object Lock, on the real SeaweedFS server), the archive's public
verifier key and coexarchive's own code, but no trusted signing key. Whatever they put there
must never reach a sealed record or a reassessment, make a genuine event look sealed, or lift
a legal hold.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from coexarchive.dedup import DedupIndex
from coexarchive.enrich.context import committed_manifests, load_context, read_records, waba_chain
from coexarchive.errors import FormatError, SealError, UnsignedTailError
from coexarchive.export.holds import HOLDS_CHAIN, HoldRegister, HoldScope, NewDataHolds, held_keys
from coexarchive.records import Direction, Kind, Origin, Record, stable_id
from coexarchive.retention import RetentionPolicy
from coexarchive.segments import ChainWriter, Manifest, ObjectRef, index_bytes_of_lines, index_key
from coexarchive.store import layout
from coexarchive.store.base import sha256_hex
from coexarchive.store.s3 import S3Store
from pipelines.seal_step import plan_chain
from pipelines.specs import SealSpec
from support.archive import ARCHIVE, WithoutPuts, make_records, short_policy, signer, trust_for

pytestmark = pytest.mark.integration

SIGNER = signer()
TRUST = trust_for(SIGNER)
ROGUE = signer("coexarchive.test", seed=b"rogue")  # the trusted key's name, another key
PHONE, WABA = "900000000000001", "800000000000001"
DAY_MS = 86_400_000
START_MS = 1_767_225_600_000


def template(category: str, day: int) -> Record:
    chain = waba_chain(WABA)
    time_ms = START_MS + day * DAY_MS
    return Record(
        chain_id=chain,
        record_id=stable_id(chain, "template_event", f"promo-{category}-{day}"),
        kind=Kind.TEMPLATE_EVENT.value,
        origin="meta",
        direction="system",
        event_time=time_ms,
        received_time=time_ms,
        waba_id=WABA,
        msg_type="template_status",
        template_name="promo",
        template_language="en_US",
        template_category=category,
        template_status="APPROVED",
        detail="{}",
        raw_key="raw/date=2026-01-01/templates.jsonl.zst",
        raw_line=day,
    )


def genuine(store: Any, chain_id: str) -> ChainWriter:
    return ChainWriter(store, chain_id, signer=SIGNER, archive_name=ARCHIVE, policy=short_policy())


def forge(store: S3Store, chain_id: str, records: list[Record]) -> Manifest:
    """Segment, record index and manifest continuing ``chain_id``, with no intent and no
    checkpoint (no trusted key signs them)."""
    writer = ChainWriter(
        WithoutPuts(store, "intents/"),  # type: ignore[arg-type]
        chain_id,
        signer=ROGUE,
        archive_name=ARCHIVE,
        policy=short_policy(),
        trust=TRUST,  # the archive's verifier key is public
    )
    writer._commit = lambda manifest: None  # type: ignore[method-assign]
    return writer.append(records)[0].manifest


@pytest.fixture
def archive(s3_store: S3Store) -> S3Store:
    """A phone chain with a day of messages, and its WABA's chain: "promo" is a UTILITY template."""
    genuine(s3_store, PHONE).append(make_records(PHONE, 5, day=0))
    genuine(s3_store, waba_chain(WABA)).append([template("UTILITY", 0)])
    return s3_store


def templates_known(store: S3Store) -> set[str | None]:
    context = load_context(
        store,
        PHONE,
        since_ms=START_MS + 2 * DAY_MS,
        until_ms=START_MS + 3 * DAY_MS,
        trust=TRUST,
        waba_id=WABA,
        committed_size=5,
    )
    return {event.category for event in context.template_events}


def test_forged_template_event_on_the_waba_chain_is_not_learnt(archive: S3Store) -> None:
    assert templates_known(archive) == {"UTILITY"}
    forged = forge(archive, waba_chain(WABA), [template("MARKETING", 1)])
    assert archive.exists(forged.segment.key) and not archive.exists(forged.checkpoint_key)
    assert templates_known(archive) == {"UTILITY"}


def test_forged_template_event_far_past_the_waba_chains_head_is_not_learnt(
    archive: S3Store,
) -> None:
    forged = forge(archive, waba_chain(WABA), [template("MARKETING", 1)])
    # The same objects again, a million seqs on: no writer will reach them for years.
    far = dataclasses.replace(forged, first_seq=1_000_000, last_seq=1_000_000)
    archive.put(far.key, far.to_bytes())
    assert templates_known(archive) == {"UTILITY"}


def test_forged_checkpoint_on_the_waba_chain_holds_its_phone_chains_back(
    archive: S3Store,
) -> None:
    forged = forge(archive, waba_chain(WABA), [template("MARKETING", 1)])
    # The attacker signs a checkpoint for it too, with a key of the trusted key's name.
    ChainWriter(
        archive, waba_chain(WABA), signer=ROGUE, archive_name=ARCHIVE, policy=short_policy()
    )._commit(forged)
    assert archive.exists(forged.checkpoint_key)
    with pytest.raises(UnsignedTailError, match=forged.key):
        templates_known(archive)
    # Statuses of the day's messages arrive: their enrichment reads the WABA's templates.
    later = [
        dataclasses.replace(
            r,
            kind=Kind.STATUS.value,
            status="delivered",
            record_id=stable_id(PHONE, "status", f"{r.wamid}:delivered"),
            event_time=r.event_time + 2 * DAY_MS,
        )
        for r in make_records(PHONE, 3, day=0)
    ]
    plan, stored = plan_chain(
        archive,
        PHONE,
        [dataclasses.replace(r, waba_id=WABA) for r in later],
        signer=SIGNER,
        spec=SealSpec("unused", ARCHIVE, "GOVERNANCE:1"),
        policy=RetentionPolicy.parse("GOVERNANCE:1"),
        trust=TRUST,
    )
    assert plan.summary is not None and not stored
    assert plan.summary["held_back"] == 3 and plan.summary["sealed"] == 0
    assert forged.key in plan.summary["unsigned_tail"]


def test_forged_manifest_between_committed_segments_is_refused(archive: S3Store) -> None:
    genuine(archive, PHONE).append(make_records(PHONE, 5, day=1))  # seqs 5-9
    committed = committed_manifests(archive, PHONE, trust=TRUST)
    assert [m.first_seq for m in committed] == [0, 5]
    # A manifest named for seq 3, inside the signed range, copying the first segment's claims.
    planted = dataclasses.replace(committed[0], first_seq=3, last_seq=4)
    archive.put(planted.key, planted.to_bytes())
    with pytest.raises(FormatError, match="is not the committed manifest of seq 5"):
        committed_manifests(archive, PHONE, trust=TRUST)
    with pytest.raises(FormatError, match=planted.key):
        templates_known(archive)


def test_forged_records_past_the_checkpoint_are_never_reassessed(archive: S3Store) -> None:
    forged_records = [dataclasses.replace(r, text="forged") for r in make_records(PHONE, 2, day=3)]
    forged_records = [
        dataclasses.replace(
            r, wamid=f"{r.wamid}.f", record_id=stable_id(PHONE, "message", f"{r.wamid}.f")
        )
        for r in forged_records
    ]
    forge(archive, PHONE, forged_records)
    rows = read_records(
        archive, PHONE, kinds={Kind.MESSAGE.value}, since_ms=0, until_ms=2**62, trust=TRUST
    )
    assert len(rows) == 5
    assert all(record.text != "forged" for _, record in rows)


def test_a_chain_signed_only_by_an_untrusted_key_teaches_nothing(s3_store: S3Store) -> None:
    # A whole WABA chain, checkpoints and all, written by a key the trust store does not hold.
    genuine(s3_store, PHONE).append(make_records(PHONE, 5, day=0))
    rogue = ChainWriter(
        s3_store, waba_chain(WABA), signer=ROGUE, archive_name=ARCHIVE, policy=short_policy()
    )
    rogue.append([template("MARKETING", 0)])
    with pytest.raises(UnsignedTailError):
        templates_known(s3_store)


def test_planted_record_index_inside_the_committed_range_never_drops_an_event(
    archive: S3Store,
) -> None:
    genuine(archive, PHONE).append(make_records(PHONE, 5, day=1))  # seqs 5-9
    first = committed_manifests(archive, PHONE, trust=TRUST)[0]
    # Tomorrow's genuine event, its record id known in advance (wamids are not secret).
    coming = make_records(PHONE, 1, day=2)[0]
    # An index naming it, and a manifest for seq 3 (inside the signed range) naming the index.
    index = index_bytes_of_lines([f"{coming.record_id} {coming.kind}"])
    ikey = index_key(PHONE, layout.utc_date(coming.event_time), 3, first.root_hash)
    archive.put(ikey, index)
    planted = dataclasses.replace(
        first,
        first_seq=3,
        last_seq=4,
        record_index=ObjectRef(ikey, sha256_hex(index), len(index)),
    )
    archive.put(planted.key, planted.to_bytes())
    dedup = DedupIndex(archive, PHONE, committed_size=10, trust=TRUST)
    classified = dedup.classify([coming])
    assert classified.duplicates == 0
    assert [r.record_id for r in classified.to_seal] == [coming.record_id]


def forged_release(matter: str, now_ms: int) -> Record:
    """A release of ``matter`` as the hold register would seal it (the code is public)."""
    detail = {
        "v": 1,
        "action": "release",
        "matter": matter,
        "scope": None,
        "who": "mallory",
        "keys": [],
        "kept": [],
        "reason": None,
    }
    text = orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode()
    return Record(
        chain_id=HOLDS_CHAIN,
        record_id=stable_id("hold", "release", matter, now_ms, "forged"),
        kind=Kind.HOLD.value,
        origin=Origin.AUDITOR.value,
        direction=Direction.NONE.value,
        event_time=now_ms,
        received_time=now_ms,
        status="release",
        detail=text,
    )


def test_forged_release_on_the_hold_register_keeps_new_data_held(archive: S3Store) -> None:
    register = HoldRegister(archive, signer=SIGNER, archive_name=ARCHIVE, policy=short_policy())
    register.place("M-1", HoldScope(chain=PHONE), who="dana@legal", now_ms=START_MS + DAY_MS)
    forged = forge(archive, HOLDS_CHAIN, [forged_release("M-1", START_MS + 2 * DAY_MS)])
    assert not archive.exists(forged.checkpoint_key)
    # Ingest still holds what arrives on the held chain, and every reader still sees the hold.
    assert NewDataHolds.load(archive, TRUST)(PHONE, make_records(PHONE, 1, day=4))
    assert [hold.matter for hold in register.holds() if hold.active] == ["M-1"]
    assert held_keys(archive, trust=TRUST)


def test_forged_checkpoint_on_the_hold_register_stops_what_depends_on_holds(
    archive: S3Store,
) -> None:
    register = HoldRegister(archive, signer=SIGNER, archive_name=ARCHIVE, policy=short_policy())
    register.place("M-1", HoldScope(chain=PHONE), who="dana@legal", now_ms=START_MS + DAY_MS)
    forged = forge(archive, HOLDS_CHAIN, [forged_release("M-1", START_MS + 2 * DAY_MS)])
    ChainWriter(
        archive, HOLDS_CHAIN, signer=ROGUE, archive_name=ARCHIVE, policy=short_policy()
    )._commit(forged)
    with pytest.raises(SealError, match="legal hold register cannot be read as signed"):
        NewDataHolds.load(archive, TRUST)
    with pytest.raises(SealError, match=forged.key):
        held_keys(archive, trust=TRUST)
