"""Erasure by crypto-shredding: what it refuses, what it destroys, and what still verifies."""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from coexarchive.archive_head import write_head_after
from coexarchive.datakeys import DataKeyStore, LocalWrapper
from coexarchive.erasure import ERASURES_CHAIN, Eraser, read_erasures
from coexarchive.errors import DecryptionError, ErasureError, InvalidArgumentError
from coexarchive.export.holds import HoldRegister, HoldScope
from coexarchive.query.access_log import AccessLog
from coexarchive.query.session import AuditSession
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Record
from coexarchive.seal.personal import (
    ERASED,
    PersonalSealer,
    field_aad,
    open_envelope,
    open_sealed,
    record_key,
)
from coexarchive.segments import ChainWriter
from coexarchive.store import MemoryStore
from coexarchive.verify import verify_archive
from support.archive import (
    ARCHIVE,
    DAY_MS,
    START_MS,
    make_records,
    short_policy,
    signer,
    trust_for,
)
from support.stored_text import every_stored_text

CHAIN = "900000000000011"
OTHER_CHAIN = "900000000000012"
NOW = START_MS + 40 * DAY_MS
ERASED_CUSTOMER = "447700900000"  # make_records: customer i % 7
KEPT_CUSTOMER = "447700900001"


@dataclass
class Archive:
    store: MemoryStore
    keys_dir: Path

    def keys(self) -> DataKeyStore:
        return DataKeyStore(self.keys_dir, LocalWrapper(b"k" * 32), clock=lambda: NOW)

    def eraser(self) -> Eraser:
        return Eraser(self.store, signer=signer(), archive_name=ARCHIVE, policy=short_policy())

    def session(self, keys: DataKeyStore | None) -> AuditSession:
        log = AccessLog(self.store, signer=signer(), archive_name=ARCHIVE)
        return AuditSession(
            self.store, access_log=log, who="auditor", trust=trust_for(signer()), keys=keys
        )


def _without_raw(records: list[Record]) -> list[Record]:
    return [replace(r, raw_key=None, raw_line=None) for r in records]


def build(tmp_path: Path, *, raw: bool = False, personal: bool = True) -> Archive:
    archive = Archive(MemoryStore(), tmp_path / "data-keys")
    sealer = PersonalSealer.for_store(archive.keys()) if personal else None
    manifests = []
    for chain in (CHAIN, OTHER_CHAIN):
        writer = ChainWriter(
            archive.store,
            chain,
            signer=signer(),
            archive_name=ARCHIVE,
            policy=short_policy(),
            personal=sealer,
        )
        for day in (0, 1):
            records = make_records(chain, 21, day=day)
            results = writer.append(records if raw else _without_raw(records))
            manifests += [r.manifest for r in results]
    write_head_after(archive.store, manifests, signer=signer(), archive_name=ARCHIVE)
    return archive


def transcript(archive: Archive, customer: str, keys: DataKeyStore | None) -> list[str]:
    result = archive.session(keys).query(
        "SELECT chain_id, record_id, seq, text FROM messages WHERE customer_id = $c "
        "ORDER BY chain_id, seq",
        {"c": customer},
    )
    return result.table.column("text").to_pylist()


def test_erase_shows_erased_everywhere_and_every_proof_still_verifies(tmp_path: Path) -> None:
    archive = build(tmp_path)
    before_other = transcript(archive, KEPT_CUSTOMER, archive.keys())
    assert before_other and ERASED not in before_other
    assert all(t != ERASED for t in transcript(archive, ERASED_CUSTOMER, archive.keys()))

    outcome = archive.eraser().erase(
        "+44 7700 900000", archive.keys(), reason="DSR-2026-17", who="dpo@firm", now_ms=NOW
    )
    assert outcome.plan.customer == ERASED_CUSTOMER
    assert outcome.plan.records == {CHAIN: 6, OTHER_CHAIN: 6}
    assert len(outcome.destroyed) == 1

    keys = archive.keys()
    assert set(transcript(archive, ERASED_CUSTOMER, keys)) == {ERASED}
    assert transcript(archive, KEPT_CUSTOMER, keys) == before_other
    report = verify_archive(archive.store, trust_for(signer()), archive_name=ARCHIVE)
    assert report.failures == []
    assert ERASURES_CHAIN in {c.chain_id for c in report.chains}
    verified = archive.session(keys).query(
        "SELECT * FROM messages WHERE customer_id = $c", {"c": KEPT_CUSTOMER}, verify=True
    )
    assert verified.verification is not None and verified.table.num_rows == 12
    [erasure] = read_erasures(archive.store)
    assert erasure["customer"] == ERASED_CUSTOMER
    assert erasure["key_ids"] == list(outcome.destroyed)
    assert erasure["reason"] == "DSR-2026-17" and erasure["who"] == "dpo@firm"


def test_no_plaintext_of_the_erased_customer_is_stored_or_recoverable(tmp_path: Path) -> None:
    archive = build(tmp_path)
    plain = [r for r in make_records(CHAIN, 21) if r.customer_id == ERASED_CUSTOMER]
    archive.eraser().erase(ERASED_CUSTOMER, archive.keys(), reason="DSR-1", who="dpo", now_ms=NOW)
    stored = every_stored_text(archive.store)
    for record in plain:
        assert record.text is not None
        assert record.text not in stored
        assert record.detail not in stored
    # Not with any key left on the machine either: every remaining key fails the GCM tag.
    catalog = ArchiveCatalog(archive.store)
    catalog.refresh()
    table = catalog.dataset(catalog.segments(chains=[CHAIN])).to_table(
        columns=["chain_id", "record_id", "customer_id", "text"]
    )
    row = next(r for r in table.to_pylist() if r["customer_id"] == ERASED_CUSTOMER)
    keys = archive.keys()
    remaining = [p for p in keys.directory.glob("*.key") if p.name != "master.key"]
    assert len(remaining) == 6  # the six other customers
    for path in remaining:
        key = keys.key(path.name.removesuffix(".key"))
        assert key is not None and key.customer_id != ERASED_CUSTOMER
        with pytest.raises(DecryptionError):  # names another key id
            open_envelope(key, row["chain_id"], row["record_id"], "text", row["text"])
        rkey = record_key(key, row["chain_id"], row["record_id"])
        aad = field_aad(row["chain_id"], row["record_id"], "text")
        sealed = base64.b64decode(row["text"].rpartition(":")[2])
        with pytest.raises(DecryptionError):  # and the GCM tag refuses it anyway
            open_sealed(rkey, aad, sealed, key_id="forced")


def test_erasing_a_held_customer_is_refused_and_destroys_nothing(tmp_path: Path) -> None:
    archive = build(tmp_path)
    register = HoldRegister(
        archive.store, signer=signer(), archive_name=ARCHIVE, policy=short_policy()
    )
    register.place("M-7", HoldScope(customer=ERASED_CUSTOMER), who="legal", now_ms=NOW)
    with pytest.raises(ErasureError, match=r"legal hold \(M-7\)"):
        archive.eraser().erase(ERASED_CUSTOMER, archive.keys(), reason="DSR", who="dpo", now_ms=NOW)
    assert archive.keys().live_key(ERASED_CUSTOMER) is not None
    assert read_erasures(archive.store) == []
    assert ERASED not in transcript(archive, ERASED_CUSTOMER, archive.keys())


def test_a_hold_on_a_chain_of_the_customer_also_refuses(tmp_path: Path) -> None:
    archive = build(tmp_path)
    register = HoldRegister(
        archive.store, signer=signer(), archive_name=ARCHIVE, policy=short_policy()
    )
    register.place("M-8", HoldScope(chain=OTHER_CHAIN), who="legal", now_ms=NOW)
    with pytest.raises(ErasureError, match="M-8"):
        archive.eraser().erase(ERASED_CUSTOMER, archive.keys(), reason="DSR", who="dpo", now_ms=NOW)
    assert archive.keys().live_key(ERASED_CUSTOMER) is not None


def test_unencrypted_records_are_named_and_nothing_is_destroyed(tmp_path: Path) -> None:
    archive = build(tmp_path, personal=False)
    archive.keys().current(ERASED_CUSTOMER)  # a key exists, but the records never used it
    with pytest.raises(ErasureError) as refused:
        archive.eraser().erase(ERASED_CUSTOMER, archive.keys(), reason="DSR", who="dpo", now_ms=NOW)
    message = str(refused.value)
    assert "record version 1" in message and f"chain {CHAIN} seq" in message
    assert "12 record(s)" in message
    assert archive.keys().live_key(ERASED_CUSTOMER) is not None
    assert read_erasures(archive.store) == []


def test_raw_objects_refuse_unless_kept_and_then_are_named(tmp_path: Path) -> None:
    archive = build(tmp_path, raw=True)
    with pytest.raises(ErasureError, match="raw landing object"):
        archive.eraser().erase(ERASED_CUSTOMER, archive.keys(), reason="DSR", who="dpo", now_ms=NOW)
    assert archive.keys().live_key(ERASED_CUSTOMER) is not None
    outcome = archive.eraser().erase(
        ERASED_CUSTOMER, archive.keys(), reason="DSR", who="dpo", now_ms=NOW, keep_raw=True
    )
    [erasure] = read_erasures(archive.store)
    assert erasure["not_erased"]["raw"] == outcome.plan.raw_keys != []


def test_a_rerun_after_a_crash_seals_the_destroyed_keys(tmp_path: Path) -> None:
    archive = build(tmp_path)
    destroyed = archive.keys().destroy(ERASED_CUSTOMER, reason="DSR")  # crash before sealing
    outcome = archive.eraser().erase(
        ERASED_CUSTOMER, archive.keys(), reason="DSR", who="dpo", now_ms=NOW
    )
    assert outcome.destroyed == ()
    assert read_erasures(archive.store)[0]["key_ids"] == destroyed


def test_unknown_customer_and_empty_reason_are_refused(tmp_path: Path) -> None:
    archive = build(tmp_path)
    with pytest.raises(ErasureError, match="no records and no data key"):
        archive.eraser().erase("449999999999", archive.keys(), reason="x", who="d", now_ms=NOW)
    with pytest.raises(InvalidArgumentError):
        archive.eraser().erase(ERASED_CUSTOMER, archive.keys(), reason=" ", who="d", now_ms=NOW)


def test_supervision_reads_opened_text_and_refuses_ciphertext(tmp_path: Path) -> None:
    from coexarchive.errors import DataKeyError
    from coexarchive.supervision.scan import read_messages

    archive = build(tmp_path)
    catalog = ArchiveCatalog(archive.store)
    catalog.refresh()
    rows, _ = read_messages(catalog, CHAIN, keys=archive.keys())
    assert [r.text for r in rows] == [r.text for r in make_records(CHAIN, 21)] + [
        r.text for r in make_records(CHAIN, 21, day=1)
    ]
    with pytest.raises(DataKeyError):
        read_messages(catalog, CHAIN)
    archive.eraser().erase(ERASED_CUSTOMER, archive.keys(), reason="DSR", who="d", now_ms=NOW)
    rows, _ = read_messages(catalog, CHAIN, keys=archive.keys())
    assert {r.text for r in rows if r.customer_id == ERASED_CUSTOMER} == {ERASED}
    assert ERASED not in {r.text for r in rows if r.customer_id != ERASED_CUSTOMER}
