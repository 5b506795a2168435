"""``verify`` step 12: stored attachments match their sealed media records; tampering is named."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from coexarchive.store.memory import MemoryStore
from coexarchive.testing.graph import GraphMediaServer
from coexarchive.verify import ArchiveVerificationError, verify_archive
from coexarchive.verify.media import MediaCheck
from support.archive import make_records, signer, trust_for
from support.media import CHAIN, fixed_key_sealer, media_records, ref_for, seal

pytestmark = pytest.mark.integration


@pytest.fixture
def archive(media_archive: dict[str, Any]) -> dict[str, Any]:
    return media_archive


def test_untouched_archive_verifies_every_attachment(archive: dict[str, Any]) -> None:
    report = verify_archive(archive["store"], trust_for(signer()))
    assert report.chains[0].media_checked == 3


def test_altered_attachment_is_named(archive: dict[str, Any]) -> None:
    store, key = archive["store"], archive["keys"][1]
    data = store.unsafe_objects[key]
    store.unsafe_objects[key] = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, trust_for(signer()))
    (failure,) = caught.value.report.failures
    assert failure.step == "media" and failure.key == key and "altered" in failure.message


def test_truncated_attachment_is_named(archive: dict[str, Any]) -> None:
    store, key = archive["store"], archive["keys"][0]
    store.unsafe_objects[key] = store.unsafe_objects[key][:100]
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, trust_for(signer()))
    assert [(f.step, f.key) for f in caught.value.report.failures] == [("media", key)]


def test_missing_attachment_is_named(archive: dict[str, Any]) -> None:
    store, key = archive["store"], archive["keys"][2]
    store.unsafe_delete(key)
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, trust_for(signer()))
    (failure,) = caught.value.report.failures
    assert failure.key == key and "missing" in failure.message


# --- archives sealing personal content encrypted (record version 2) --------------------------


def test_encrypted_archive_keeps_media_facts_readable_without_keys(
    encrypted_media_archive: dict[str, Any],
) -> None:
    media = [r for r in encrypted_media_archive["media"] if r.customer_id]
    assert media
    # A document's file name is the customer's: it rides in ``text``, sealed like a caption.
    media[0] = dataclasses.replace(media[0], text="passport of the customer.pdf")
    sealed = encrypted_media_archive["personal"].seal(media)
    assert sealed[0].text.startswith("enc1:")
    for record in sealed:
        assert not record.detail.startswith("enc1:")
        assert "filename" not in orjson.loads(record.detail)["raw"]["completes"]
    messages = encrypted_media_archive["personal"].seal(encrypted_media_archive["messages"])
    assert all(m.detail.startswith("enc1:") for m in messages)  # the messages stay sealed


def test_encrypted_archive_rehashes_every_attachment(
    encrypted_media_archive: dict[str, Any],
) -> None:
    report = verify_archive(encrypted_media_archive["store"], trust_for(signer()))
    assert report.chains[0].media_checked == 3
    assert not any("re-hash" in str(w) for w in report.chains[0].warnings)


def test_encrypted_archive_names_the_altered_attachment(
    encrypted_media_archive: dict[str, Any],
) -> None:
    store, key = encrypted_media_archive["store"], encrypted_media_archive["keys"][1]
    data = store.unsafe_objects[key]
    store.unsafe_objects[key] = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, trust_for(signer()))
    (failure,) = caught.value.report.failures
    assert failure.step == "media" and failure.key == key and "altered" in failure.message


def test_encrypted_archive_names_the_missing_attachment(
    encrypted_media_archive: dict[str, Any],
) -> None:
    store, key = encrypted_media_archive["store"], encrypted_media_archive["keys"][0]
    store.unsafe_delete(key)
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, trust_for(signer()))
    (failure,) = caught.value.report.failures
    assert failure.key == key and "missing" in failure.message


def test_media_record_with_encrypted_detail_fails_verify(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    """A media record whose facts were sealed encrypted cannot be checked: verify fails, it
    does not skip the attachment with a warning."""
    store, raw = MemoryStore(), MemoryStore()
    (message,) = make_records(CHAIN, 1)
    seal(store, [message])
    ref = ref_for(graph_server, "m0", created_ms=graph_clock())
    ref = dataclasses.replace(ref, record_id=message.record_id, customer_id="15550001111")
    make_fetcher(store, raw).run([ref])
    (media,) = media_records(raw)
    hidden = fixed_key_sealer().seal([dataclasses.replace(media, kind="message")])[0]
    seal(store, [dataclasses.replace(hidden, kind="media")])
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, trust_for(signer()))
    (failure,) = caught.value.report.failures
    assert failure.step == "media" and "sealed encrypted" in failure.message


def test_sample_checks_that_many_and_none_checks_nothing(archive: dict[str, Any]) -> None:
    store = archive["store"]
    store.unsafe_delete(archive["keys"][0])
    with pytest.raises(ArchiveVerificationError):
        verify_archive(store, trust_for(signer()), media=MediaCheck(sample=3))
    skipped = verify_archive(store, trust_for(signer()), media=None)
    assert skipped.chains[0].media_checked == 0


def test_media_record_for_a_message_the_chain_does_not_hold_is_refused(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    store, raw = MemoryStore(), MemoryStore()
    seal(store, make_records(CHAIN, 1))
    orphan = ref_for(graph_server, "m9", created_ms=graph_clock())  # names no sealed record
    make_fetcher(store, raw).run([orphan])
    seal(store, media_records(raw))
    with pytest.raises(ArchiveVerificationError) as caught:
        verify_archive(store, trust_for(signer()))
    (failure,) = caught.value.report.failures
    assert "does not hold" in failure.message and orphan.record_id in failure.message


@pytest.mark.parametrize("text", ["some", "sample=0", "sample=x", "sample=-1", ""])
def test_bad_media_option_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--media takes"):
        MediaCheck.parse(text)


def test_media_option_values() -> None:
    assert MediaCheck.parse("all") == MediaCheck()
    assert MediaCheck.parse("none") is None
    assert MediaCheck.parse("sample=5") == MediaCheck(sample=5)


def test_a_legal_hold_reaches_the_attachments(archive: dict[str, Any]) -> None:
    from coexarchive.export.holds import HoldRegister, HoldScope, held_keys
    from support.archive import ARCHIVE, START_MS, short_policy
    from support.media import CUSTOMER

    store = archive["store"]
    register = HoldRegister(store, signer=signer(), archive_name=ARCHIVE, policy=short_policy())
    outcome = register.place("M-9", HoldScope(customer=CUSTOMER), who="dana", now_ms=START_MS)
    assert set(archive["keys"]) <= set(outcome.keys)
    assert all(store.info(key).legal_hold for key in archive["keys"])
    verify_archive(
        store, trust_for(signer()), held_keys=held_keys(store, trust=trust_for(signer()))
    )
