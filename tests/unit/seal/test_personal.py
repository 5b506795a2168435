"""Record version 2: the envelope format from its spec alone, its vectors, and attacks on it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import rfc8785
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coexarchive.archive_head import write_head_after
from coexarchive.datakeys import DataKeyStore, KmsWrapper, LocalWrapper, enable_personal_sealing
from coexarchive.errors import ConfigError, DataKeyError, DecryptionError, FormatError
from coexarchive.records import RECORD_FIELDS, Record
from coexarchive.seal.chain import recompute_leaf_hashes
from coexarchive.seal.personal import (
    ERASED,
    PERSONAL_FIELDS,
    PersonalSealer,
    open_envelope,
    open_if_sealed,
    open_sealed,
    open_table,
)
from coexarchive.segments import ChainWriter, Manifest, list_manifests, read_segment
from coexarchive.store.memory import MemoryStore
from coexarchive.verify import verify_archive
from support.archive import ARCHIVE, make_records, short_policy, signer, trust_for

VECTORS = Path(__file__).resolve().parents[3] / "schemas" / "vectors" / "personal.json"
CHAIN = "900000000000001"


def _vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def _spec_envelope(
    secret: bytes, key_id: str, chain: str, record: str, field: str, value: str
) -> str:
    """An envelope computed from SEALING.md "Record version 2" alone (no coexarchive code)."""
    rkey = hashlib.sha256(b"coexarchive/record-key/v1\n" + secret + f"{chain}\n{record}".encode())
    key = rkey.digest()
    aad = b"coexarchive/field/v1\n" + f"{chain}\n{record}\n{field}".encode()
    plaintext = value.encode("utf-8")
    nonce = hashlib.sha256(key + aad + b"\n" + plaintext).digest()[:12]
    sealed = nonce + AESGCM(key).encrypt(nonce, plaintext, aad)
    return f"enc1:{key_id}:{base64.b64encode(sealed).decode()}"


def test_vectors_follow_the_spec_and_hash_as_stored() -> None:
    data = _vectors()
    assert data["records"], "no version-2 vectors"
    for entry in data["records"]:
        fields = entry["sealed_fields"]
        assert fields["record_version"] == 2
        secret = bytes.fromhex(data["data_keys"][fields["customer_id"]]["secret_hex"])
        for name, value in entry["plaintext"].items():
            if value is None:
                assert fields[name] is None
                continue
            expected = _spec_envelope(
                secret, entry["data_key_id"], fields["chain_id"], fields["record_id"], name, value
            )
            assert fields[name] == expected
            assert value not in fields[name]
        canonical = rfc8785.dumps(fields)
        assert canonical.hex() == entry["canonical_hex"]
        assert hashlib.sha256(b"\x00" + canonical).hexdigest() == entry["leaf_hash_hex"]


@pytest.mark.parametrize("case", _vectors()["negative"], ids=lambda c: c["attack"])
def test_negative_vectors(case: dict[str, Any]) -> None:
    data = _vectors()
    entry = next(e for e in data["records"] if e["seq"] == case["seq"])
    chain, record = entry["sealed_fields"]["chain_id"], entry["sealed_fields"]["record_id"]
    aad = b"coexarchive/field/v1\n" + f"{chain}\n{record}\n{case['field']}".encode()
    sealed = base64.b64decode(case["envelope"].rpartition(":")[2])
    if case["record_key_hex"] is None:
        # Erased: the key is gone, and what is stored still hashes to the sealed leaf.
        canonical = bytes.fromhex(entry["canonical_hex"])
        assert hashlib.sha256(b"\x00" + canonical).hexdigest() == entry["leaf_hash_hex"]
        assert case["expected_value"] == ERASED
        return
    with pytest.raises(DecryptionError):
        open_sealed(bytes.fromhex(case["record_key_hex"]), aad, sealed, key_id="test")


def test_every_negative_vector_names_an_attack() -> None:
    attacks = {case["attack"] for case in _vectors()["negative"]}
    assert attacks == {"tag_bitflip", "wrong_key", "envelope_moved", "key_destroyed"}


# --- the key store --------------------------------------------------------------------------------


def _store(directory: Path, master: bytes = b"m" * 32) -> DataKeyStore:
    return DataKeyStore(directory, LocalWrapper(master), clock=lambda: 1_767_571_200_000)


def _sealed_segment(tmp_path: Path) -> tuple[MemoryStore, pa.Table, DataKeyStore]:
    keys = _store(tmp_path / "keys")
    store = MemoryStore()
    writer = ChainWriter(
        store,
        CHAIN,
        signer=signer(),
        archive_name=ARCHIVE,
        policy=short_policy(),
        personal=PersonalSealer.for_store(keys),
    )
    manifest = writer.append(make_records(CHAIN, 14))[0].manifest
    return store, read_segment(store.get(manifest.segment.key)), keys


def test_sealed_segment_holds_no_plaintext_and_verifies_without_keys(tmp_path: Path) -> None:
    store, table, keys = _sealed_segment(tmp_path)
    plain = make_records(CHAIN, 14)
    stored = json.dumps(table.drop_columns(["leaf_hash", "chain_hash"]).to_pylist(), default=str)
    for record in plain:
        assert record.text is not None and record.text not in stored
    assert set(table.column("record_version").to_pylist()) == {2}
    assert recompute_leaf_hashes(table) == [bytes(h) for h in table.column("leaf_hash").to_pylist()]

    manifests = [Manifest.from_bytes(store.get(k)) for k in list_manifests(store, CHAIN)]
    write_head_after(store, manifests, signer=signer(), archive_name=ARCHIVE)
    assert verify_archive(store, trust_for(signer()), archive_name=ARCHIVE).failures == []
    opened = open_table(table.sort_by("seq"), keys)
    assert opened.column("text").to_pylist() == [r.text for r in plain]
    assert opened.column("detail").to_pylist() == [r.detail for r in plain]


def test_customer_id_stays_plaintext_and_other_fields_are_untouched(tmp_path: Path) -> None:
    _, table, _ = _sealed_segment(tmp_path)
    plain = {r.record_id: r for r in make_records(CHAIN, 14)}
    for row in table.to_pylist():
        record = plain[row["record_id"]]
        assert row["customer_id"] == record.customer_id
        assert row["wamid"] == record.wamid and row["msg_type"] == record.msg_type
        assert row["text"].startswith("enc1:") and row["customer_wa_id"].startswith("enc1:")


def test_key_store_without_the_key_refuses_instead_of_showing_erased(tmp_path: Path) -> None:
    _, table, _ = _sealed_segment(tmp_path)
    empty = _store(tmp_path / "another-store")
    with pytest.raises(DataKeyError, match="holds no data key"):
        open_table(table, empty)


def test_key_file_removed_without_an_erasure_refuses(tmp_path: Path) -> None:
    _, table, _ = _sealed_segment(tmp_path)
    for path in (tmp_path / "keys").glob("*.key"):
        path.unlink()
    with pytest.raises(DataKeyError):
        open_table(table, _store(tmp_path / "keys"))


def test_wrong_master_key_refuses(tmp_path: Path) -> None:
    _, table, _ = _sealed_segment(tmp_path)
    with pytest.raises(DataKeyError, match="does not unwrap"):
        open_table(table, _store(tmp_path / "keys", master=b"x" * 32))


def test_tampered_ciphertext_fails_the_gcm_tag(tmp_path: Path) -> None:
    _, table, keys = _sealed_segment(tmp_path)
    texts = table.column("text").to_pylist()
    head, _, body = texts[0].rpartition(":")
    raw = bytearray(base64.b64decode(body))
    raw[-1] ^= 0x80  # the tag
    texts[0] = f"{head}:{base64.b64encode(bytes(raw)).decode()}"
    tampered = table.set_column(
        table.column_names.index("text"), "text", pa.array(texts, pa.string())
    )
    with pytest.raises(DecryptionError):
        open_table(tampered, keys)


def test_envelope_swapped_between_records_does_not_open(tmp_path: Path) -> None:
    _, table, keys = _sealed_segment(tmp_path)
    texts = table.column("text").to_pylist()
    texts[0], texts[1] = texts[1], texts[0]
    swapped = table.set_column(
        table.column_names.index("text"), "text", pa.array(texts, pa.string())
    )
    with pytest.raises(DecryptionError):
        open_table(swapped, keys)


def test_envelope_names_a_key_that_is_not_the_one_given(tmp_path: Path) -> None:
    _, table, _ = _sealed_segment(tmp_path)
    row = table.to_pylist()[0]
    other = _store(tmp_path / "other").current("someone-else")
    with pytest.raises(DecryptionError):
        open_envelope(other, row["chain_id"], row["record_id"], "text", row["text"])


def test_malformed_envelope_is_a_format_error(tmp_path: Path) -> None:
    _, table, keys = _sealed_segment(tmp_path)
    texts = table.column("text").to_pylist()
    texts[0] = texts[0][:-8] + "!!!!!!!!"
    bad = table.set_column(table.column_names.index("text"), "text", pa.array(texts, pa.string()))
    with pytest.raises(FormatError):
        open_table(bad, keys)


def test_destroyed_key_reads_erased_and_only_that_customer(tmp_path: Path) -> None:
    _, table, keys = _sealed_segment(tmp_path)
    erased_customer = table.column("customer_id")[0].as_py()
    destroyed = keys.destroy(erased_customer, reason="DSR-1")
    assert len(destroyed) == 1
    assert not (tmp_path / "keys" / f"{destroyed[0]}.key").exists()
    reopened = open_table(table, _store(tmp_path / "keys"))
    for row in reopened.to_pylist():
        erased = row["customer_id"] == erased_customer
        for name in ("text", "detail", "customer_wa_id"):
            assert (row[name] == ERASED) == erased, (name, row["customer_id"])


def test_no_keys_at_all_refuses_sealed_rows_but_passes_counts(tmp_path: Path) -> None:
    _, table, _ = _sealed_segment(tmp_path)
    with pytest.raises(DataKeyError, match="COEXARCHIVE_DATA_KEYS"):
        open_if_sealed(table, None)
    counts = table.group_by("customer_id").aggregate([("seq", "count")])
    assert open_if_sealed(counts, None) is counts


def test_archive_setting_makes_a_writer_without_keys_refuse() -> None:
    store = MemoryStore()
    assert enable_personal_sealing(store, since=0, retention=None)
    assert not enable_personal_sealing(store, since=0, retention=None)
    writer = ChainWriter(store, CHAIN, signer=signer(), archive_name=ARCHIVE)
    with pytest.raises(ConfigError, match="seals personal content encrypted"):
        writer.append(make_records(CHAIN, 2))
    # The oversight chains stay version 1: they must stay readable after an erasure.
    ChainWriter(store, "holds", signer=signer(), archive_name=ARCHIVE).state()


def test_sealing_is_deterministic_for_idempotent_reruns(tmp_path: Path) -> None:
    keys = _store(tmp_path / "keys")
    records = make_records(CHAIN, 5)
    once = PersonalSealer(keys.current).seal(records)
    again = PersonalSealer(_store(tmp_path / "keys").current).seal(records)
    assert once == again
    assert [r.text for r in once] != [r.text for r in records]
    assert all(name in RECORD_FIELDS for name in ("text", "detail"))


def test_batch_sealer_seals_every_field_exactly_as_the_spec_says(tmp_path: Path) -> None:
    # The sealer's loop is hand-inlined for speed; it must still produce, field by field, the
    # envelope SEALING.md defines, and touch nothing else.
    keys = _store(tmp_path / "keys")
    records = make_records(CHAIN, 40)
    sealed = PersonalSealer(keys.current).seal(records)
    checked = 0
    for plain, record in zip(records, sealed, strict=True):
        assert plain.customer_id, "the fixture records all name a customer"
        key = keys.current(plain.customer_id)
        for name in RECORD_FIELDS:
            value = getattr(plain, name)
            if name not in PERSONAL_FIELDS or value is None:
                assert getattr(record, name) == value
                continue
            expected = _spec_envelope(
                key.secret, key.key_id, plain.chain_id, plain.record_id, name, value
            )
            assert getattr(record, name) == expected
            checked += 1
    assert checked >= 2 * len(records)


def test_record_has_nothing_the_sealers_slot_by_slot_copy_would_skip() -> None:
    # PersonalSealer builds its sealed copies slot by slot, bypassing Record.__init__: that is
    # sound only while the dataclass's fields are RECORD_FIELDS in order and nothing runs after
    # __init__ (a validation added there would be skipped for version-2 records).
    assert tuple(f.name for f in dataclasses.fields(Record)) == RECORD_FIELDS
    assert not hasattr(Record, "__post_init__")
    assert Record.__slots__ == RECORD_FIELDS


# --- data keys wrapped by AWS KMS (moto) ----------------------------------------------------------


@pytest.fixture
def kms_client() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client(
            "kms", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
        )
        yield client


def test_kms_wrapped_keys_open_and_a_wrong_context_is_refused(
    tmp_path: Path, kms_client: Any
) -> None:
    key_id = kms_client.create_key(Description="coexarchive data keys")["KeyMetadata"]["KeyId"]
    wrapper = KmsWrapper(kms_client, key_id)
    keys = DataKeyStore(tmp_path / "keys", wrapper, clock=lambda: 0)
    created = keys.current("447700900000")
    stored = json.loads(next((tmp_path / "keys").glob("*.key")).read_text())
    assert stored["wrap"] == "kms" and created.secret.hex() not in json.dumps(stored)
    reopened = DataKeyStore(tmp_path / "keys", KmsWrapper(kms_client, key_id), clock=lambda: 0)
    assert reopened.key(created.key_id) == created
    # A wrapped key presented under another key id does not unwrap (encryption context).
    wrapped = base64.b64decode(stored["wrapped"])
    with pytest.raises(DataKeyError, match="KMS refused"):
        wrapper.unwrap("0" * 16, wrapped)
