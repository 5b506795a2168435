"""Hits and review notes quote a customer: in an archive that seals personal content, what they
quote is sealed under the customer's data key, opens with the key, reads ``[erased]`` after an
erasure, and leaves no plaintext of the erased customer in any stored object; verification still
needs no key, and archives that do not seal personal content keep their hits as before."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from coexarchive.archive_head import write_head_after
from coexarchive.datakeys import DataKeyStore, LocalWrapper
from coexarchive.erasure import Eraser
from coexarchive.errors import DecryptionError, FormatError
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Kind
from coexarchive.seal.personal import ERASED, DataKey, KeyLookup, PersonalSealer
from coexarchive.store import MemoryStore
from coexarchive.supervision import queue as review_queue
from coexarchive.supervision.at_ingest import load_active_policies
from coexarchive.supervision.hit_sealing import (
    SEALED,
    open_hit_detail,
    open_note,
    seal_hit_detail,
    seal_note,
)
from coexarchive.supervision.library import import_policy
from coexarchive.supervision.policy import parse_policy
from coexarchive.supervision.register import REVIEWS_CHAIN, Sealer, read_chain
from coexarchive.supervision.scan import ingest_rows, rescan
from coexarchive.verify import verify_archive
from pipelines.seal_step import seal_chain
from pipelines.specs import SealSpec
from support.archive import ARCHIVE, DAY_MS, START_MS, make_records, short_policy, signer, trust_for
from support.stored_text import every_stored_text

CHAIN = "900000000000011"
NOW = START_MS + 40 * DAY_MS
ERASED_CUSTOMER = "447700900000"  # make_records: customer i % 7; i = 0, 7, 14
KEPT_CUSTOMER = "447700900005"  # i = 5: the same text as the erased customer's i = 0
AUDIT = signer("coexarchive.audit", seed=b"audit")
TRUST = trust_for(signer(), AUDIT)
POLICY = parse_policy(
    {
        "format": "coexarchive.policy/v1",
        "name": "orders",
        "version": 1,
        "rules": [{"type": "lexicon", "id": "orders-en", "language": "en", "terms": ["order"]}],
    }
)
NOTE = "Customer wrote: Hi, is my order ready? Routine, no action"


@dataclass
class Built:
    store: MemoryStore
    keys_dir: Path
    personal: bool

    def keys(self) -> DataKeyStore | None:
        if not self.personal:
            return None
        return DataKeyStore(self.keys_dir, LocalWrapper(b"k" * 32), clock=lambda: NOW)

    def sealer(self) -> Sealer:
        return Sealer(self.store, signer=AUDIT, archive_name=ARCHIVE, trust=TRUST)

    def queue(self, *, keys: bool = True) -> review_queue.Queue:
        return review_queue.fold(
            read_chain(self.store, REVIEWS_CHAIN),
            ingest_rows(ArchiveCatalog(self.store)),
            keys=self.keys() if keys else None,
        )


def _ingest(built: Built, day: int) -> None:
    keys = built.keys()
    records = [replace(r, raw_key=None, raw_line=None) for r in make_records(CHAIN, 21, day=day)]
    summary = seal_chain(
        built.store,
        CHAIN,
        records,
        signer=signer(),
        spec=SealSpec("unused", ARCHIVE),
        policy=short_policy(),
        trust=TRUST,
        personal=PersonalSealer.for_store(keys) if keys is not None else None,
        supervision=load_active_policies(built.store, TRUST, archive_name=ARCHIVE),
    )
    write_head_after(
        built.store, [summary["manifest"]], signer=signer(), archive_name=ARCHIVE, trust=TRUST
    )


def build(tmp_path: Path, *, personal: bool = True) -> Built:
    """Day 0 sealed before the policy (a rescan finds its hits, sealed in ``reviews``), day 1
    after it (ingest finds them, sealed in the chain), and a decision whose note quotes."""
    built = Built(MemoryStore(), tmp_path / "data-keys", personal)
    _ingest(built, 0)
    sealed = import_policy(built.sealer(), POLICY, who="cco", now_ms=NOW).policy
    _ingest(built, 1)
    keys = built.keys()
    outcome = rescan(
        ArchiveCatalog(built.store),
        built.sealer(),
        sealed,
        who="cco",
        now_ms=NOW,
        keys=keys,
        hit_keys=keys.live_key if keys is not None else None,
    )
    assert outcome.sealed, "the rescan found day 0's hits"
    for hit in _hits_of(built.queue(), ERASED_CUSTOMER):
        review_queue.act(
            built.sealer(),
            hit.id,
            "decide",
            who="reviewer",
            now_ms=NOW,
            disposition="no_action",
            note=NOTE,
            at_ingest=ingest_rows(ArchiveCatalog(built.store)),
            keys=keys,
            note_key=keys.live_key if keys is not None else None,
        )
    return built


def _hits_of(queue: review_queue.Queue, customer: str) -> list[review_queue.HitState]:
    return [hit for hit in queue.hits.values() if hit.detail.get("customer") == customer]


def _stored_hit_details(store: MemoryStore) -> list[dict[str, Any]]:
    rows = [found.row for found in ingest_rows(ArchiveCatalog(store))]
    rows += read_chain(store, REVIEWS_CHAIN)
    return [dict(row.detail) for row in rows if row.kind == Kind.HIT]


def test_hits_at_ingest_and_by_rescan_are_sealed_and_open_with_the_key(tmp_path: Path) -> None:
    built = build(tmp_path)
    details = _stored_hit_details(built.store)
    assert details and all("customer" not in d and "spans" not in d for d in details)
    assert all(str(d["personal"]).startswith("enc1:") for d in details)
    # What reports count stays plaintext.
    assert all(d["policy"] == "orders" and d["rule"] == "orders-en" for d in details)
    queue = built.queue()
    mine = _hits_of(queue, ERASED_CUSTOMER)
    assert {hit.sealed_in for hit in mine} == {CHAIN, REVIEWS_CHAIN}  # ingest and rescan
    for hit in mine:
        assert [s["words"] for s in hit.detail["spans"]] == ["order"]
        assert hit.note == NOTE and hit.disposition == "no_action"
    assert _hits_of(queue, KEPT_CUSTOMER)
    assert verify_archive(built.store, TRUST, archive_name=ARCHIVE).failures == []


def test_without_keys_a_reader_sees_sealed_never_ciphertext_or_words(tmp_path: Path) -> None:
    built = build(tmp_path)
    queue = built.queue(keys=False)
    assert queue.hits
    for hit in queue.hits.values():
        assert hit.detail["customer"] == SEALED and hit.detail["spans"] == []
        assert hit.policy == "orders@1"  # the facts reports count need no key
    noted = [hit for hit in queue.hits.values() if hit.note is not None]
    assert noted and {hit.note for hit in noted} == {SEALED}


def test_after_erasure_hits_and_notes_read_erased_and_no_plaintext_is_stored(
    tmp_path: Path,
) -> None:
    built = build(tmp_path)
    keys = built.keys()
    assert keys is not None
    before = built.queue()
    erased_ids = {hit.id for hit in _hits_of(before, ERASED_CUSTOMER)}
    kept = {hit.id: hit.detail for hit in _hits_of(before, KEPT_CUSTOMER)}
    assert len(erased_ids) == 2 and kept
    eraser = Eraser(
        built.store, signer=signer(), archive_name=ARCHIVE, policy=short_policy(), trust=TRUST
    )
    eraser.erase(ERASED_CUSTOMER, keys, reason="DSR-9", who="dpo", now_ms=NOW)
    after = built.queue()
    for hit_id in erased_ids:
        hit = after.hits[hit_id]
        assert hit.detail["customer"] == ERASED and hit.detail["spans"] == []
        assert hit.note == ERASED and hit.disposition == "no_action"
        assert hit.policy == "orders@1"
    for hit_id, detail in kept.items():
        assert after.hits[hit_id].detail == detail  # other customers' hits still open
    assert verify_archive(built.store, TRUST, archive_name=ARCHIVE).failures == []
    stored = every_stored_text(built.store)
    assert NOTE not in stored
    assert '"words":"order"' not in stored
    assert f'"customer":"{ERASED_CUSTOMER}","flags"' not in stored
    assert "Hi, is my order ready?" not in stored


def test_the_same_archive_without_personal_sealing_keeps_plaintext_hits(tmp_path: Path) -> None:
    """The control: the checks above do find the quotes when nothing seals them."""
    built = build(tmp_path, personal=False)
    details = _stored_hit_details(built.store)
    assert details and all("personal" not in d and d["customer"] for d in details)
    stored = every_stored_text(built.store)
    assert NOTE in stored and '"words":"order"' in stored
    assert f'"customer":"{ERASED_CUSTOMER}","flags"' in stored
    assert verify_archive(built.store, TRUST, archive_name=ARCHIVE).failures == []


# --- attacks on the sealed part -------------------------------------------------------------------


def _sealed_hit(tmp_path: Path) -> tuple[DataKeyStore, dict[str, Any]]:
    keys = DataKeyStore(tmp_path / "k", LocalWrapper(b"k" * 32), clock=lambda: NOW)
    key = keys.current(ERASED_CUSTOMER)
    detail = {"policy": "p", "rule": "r", "customer": ERASED_CUSTOMER, "spans": [{"words": "x"}]}
    return keys, seal_hit_detail(detail, key, CHAIN, "a" * 32)


def test_a_sealed_part_moved_to_another_hit_does_not_open(tmp_path: Path) -> None:
    keys, detail = _sealed_hit(tmp_path)
    assert open_hit_detail(detail, CHAIN, "a" * 32, keys)["customer"] == ERASED_CUSTOMER
    with pytest.raises(DecryptionError):
        open_hit_detail(detail, CHAIN, "b" * 32, keys)
    with pytest.raises(DecryptionError):
        open_hit_detail(detail, REVIEWS_CHAIN, "a" * 32, keys)


def test_a_flipped_bit_in_a_sealed_part_does_not_open(tmp_path: Path) -> None:
    keys, detail = _sealed_hit(tmp_path)
    head, _, body = str(detail["personal"]).rpartition(":")
    raw = bytearray(base64.b64decode(body))
    raw[-1] ^= 1
    tampered = {**detail, "personal": f"{head}:{base64.b64encode(bytes(raw)).decode()}"}
    with pytest.raises(DecryptionError):
        open_hit_detail(tampered, CHAIN, "a" * 32, keys)


def test_a_sealed_part_that_is_no_envelope_is_refused(tmp_path: Path) -> None:
    keys, detail = _sealed_hit(tmp_path)
    for bad in ("customer 447700900000", 7, "enc1:zz:AAAA"):
        with pytest.raises(FormatError):
            open_hit_detail({**detail, "personal": bad}, CHAIN, "a" * 32, keys)
        with pytest.raises(FormatError):
            open_hit_detail({**detail, "personal": bad}, CHAIN, "a" * 32, None)


def test_a_note_sealed_for_one_decision_does_not_open_in_another(tmp_path: Path) -> None:
    keys, _ = _sealed_hit(tmp_path)
    key = keys.current(ERASED_CUSTOMER)
    note = seal_note("quoted words", key, REVIEWS_CHAIN, "c" * 32)
    assert open_note(note, REVIEWS_CHAIN, "c" * 32, keys) == "quoted words"
    with pytest.raises(DecryptionError):
        open_note(note, REVIEWS_CHAIN, "d" * 32, keys)
    assert open_note("plain note", REVIEWS_CHAIN, "c" * 32, None) == "plain note"


VECTORS = Path(__file__).resolve().parents[2] / "schemas" / "vectors" / "personal.json"


def test_the_published_hit_vector_seals_and_opens_as_documented() -> None:
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    vector = vectors["hit_detail"]
    customer = vector["plaintext"]["customer"]
    spec = vectors["data_keys"][customer]
    key = DataKey(spec["key_id"], customer, bytes.fromhex(spec["secret_hex"]))
    chain, record_id = vector["chain_id"], vector["record_id"]
    assert seal_hit_detail(vector["plaintext"], key, chain, record_id) == vector["sealed"]
    assert "customer" not in vector["sealed"] and "spans" not in vector["sealed"]

    class _Keys(KeyLookup):
        def key(self, key_id: str) -> DataKey | None:
            assert key_id == key.key_id
            return key

    class _Erased(KeyLookup):
        def key(self, key_id: str) -> DataKey | None:
            return None

    assert open_hit_detail(vector["sealed"], chain, record_id, _Keys()) == vector["plaintext"]
    erased = open_hit_detail(vector["sealed"], chain, record_id, _Erased())
    assert erased["customer"] == ERASED and erased["spans"] == []
