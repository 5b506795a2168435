"""RFC 3161 timestamps over archive heads: sealed, checked, and every forgery or gap named.

A real responder (``openssl ts -reply`` behind a loopback HTTP wrapper, with a root CA and TSA
certificate made for the run) signs the tokens; the archive lives on the embedded SeaweedFS. The
attacker is the storage admin, who deletes locked objects through the filer port and writes
whatever bytes they like, but holds neither the archive key nor the TSA key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from coexarchive.anchor.timestamps import TIMESTAMP_PREFIX, check_timestamps, token_key
from coexarchive.anchor.tsa import Tsa, load_tsa_file, request_timestamp
from coexarchive.archive_head import write_head_after
from coexarchive.errors import Failure
from coexarchive.seal.head import AnchorLine, ArchiveHead, head_key
from coexarchive.segments import ChainWriter
from coexarchive.store.s3 import S3Store
from coexarchive.testing.tsa import LocalTsa
from coexarchive.verify import ArchiveVerificationError, Report, verify_archive
from support.archive import ARCHIVE, make_records, short_policy, signer, trust_for

pytestmark = pytest.mark.integration

CHAIN = "900000000000001"
KEY = signer()
TRUST = trust_for(KEY)


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tsa]:
    local = LocalTsa(tmp_path_factory.mktemp("tsa"), name="local-tsa")
    local.start()
    [configured] = load_tsa_file(local.write_tsa_file(local.directory / "tsa.txt"))
    yield configured
    local.close()


@pytest.fixture(scope="module")
def other_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    """Another authority: valid tokens, but chaining to a root nobody configured."""
    local = LocalTsa(tmp_path_factory.mktemp("other-tsa"), name="local-tsa")
    local.start()
    yield local
    local.close()


def down(tsa: Tsa) -> Tsa:
    """The same authority, unreachable (nothing listens on port 9 of loopback)."""
    return Tsa(tsa.name, "http://127.0.0.1:9/", tsa.roots, tsa.roots_pem)


class Archive:
    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.writer = ChainWriter(
            store, CHAIN, signer=KEY, archive_name=ARCHIVE, policy=short_policy()
        )
        self.day = 0

    def commit(self, *tsas: Tsa) -> ArchiveHead:
        results = self.writer.append(make_records(CHAIN, 3, day=self.day))
        self.day += 1
        head = write_head_after(
            self.store, [r.manifest for r in results], signer=KEY, archive_name=ARCHIVE, tsas=tsas
        )
        assert head is not None
        return head

    def head(self, seq: int) -> ArchiveHead:
        note = self.store.get(head_key(seq))
        return ArchiveHead.parse(note[: note.rfind(b"\n\n") + 1])

    def verify(self, *tsas: Tsa, at: datetime | None = None) -> Report:
        return verify_archive(self.store, TRUST, archive_name=ARCHIVE, tsas=tsas, at=at)

    def failures(self, *tsas: Tsa) -> list[str]:
        with pytest.raises(ArchiveVerificationError) as caught:
            self.verify(*tsas)
        return [f.message for f in caught.value.report.failures]


class Admin:
    """Deletes locked objects through the filer port, as a storage administrator can."""

    def __init__(self, seaweed: Any, store: S3Store) -> None:
        self.base = f"http://127.0.0.1:{seaweed.ports['filer.port']}/buckets/{store.bucket}/"

    def delete(self, key: str) -> None:
        response = httpx.delete(
            self.base + f"{key}.versions", params={"recursive": "true"}, timeout=10
        )
        assert response.is_success or response.status_code == 404


@pytest.fixture
def archive(s3_store: S3Store) -> Archive:
    return Archive(s3_store)


@pytest.fixture
def admin(seaweed: Any, s3_store: S3Store) -> Admin:
    return Admin(seaweed, s3_store)


def test_each_head_is_timestamped_and_the_next_head_seals_its_token(
    archive: Archive, tsa: Tsa
) -> None:
    archive.commit(tsa)
    second = archive.commit(tsa)
    token = archive.store.get(token_key(0, "local-tsa"))
    # The token is stored create-only and under the head's own lock, and head 1 seals its digest.
    assert archive.store.info(token_key(0, "local-tsa")).retention is not None
    assert second.anchors == (
        AnchorLine("timestamp", 0, "local-tsa", hashlib.sha256(token).digest()),
    )
    assert archive.store.exists(token_key(1, "local-tsa"))
    report = archive.verify(tsa)
    assert report.timestamps is not None
    assert (report.timestamps.tokens, report.timestamps.sealed) == (2, 1)
    assert report.timestamps.gaps == {}
    assert report.timestamps.newest_proven is not None
    assert report.timestamps.newest_proven["seq"] == 1


def test_a_token_over_a_different_note_is_named(archive: Archive, tsa: Tsa, admin: Admin) -> None:
    archive.commit(tsa)
    archive.commit(tsa)
    # Head 1's token replaced by a genuine token of the same authority over head 0's text.
    admin.delete(token_key(1, "local-tsa"))
    archive.store.put(token_key(1, "local-tsa"), archive.store.get(token_key(0, "local-tsa")))
    failures = archive.failures(tsa)
    assert any(
        f.startswith("timestamp of archive head 1: timestamp from local-tsa is over another note")
        for f in failures
    ), failures


def test_a_token_request_answered_over_another_note_is_never_stored(tsa: Tsa) -> None:
    # The client checks the imprint itself: the TSA's answer to another request does not pass.
    from coexarchive.anchor.tsa import check_token

    token = request_timestamp(tsa, b"head text A\n")
    with pytest.raises(Exception, match="over another note"):
        check_token(token, b"head text B\n", tsa.roots, name=tsa.name)


def test_a_tsa_down_during_ingest_leaves_a_named_gap_that_a_later_run_fills(
    archive: Archive, tsa: Tsa
) -> None:
    archive.commit(tsa)
    archive.commit(down(tsa))  # head 1: the authority is unreachable, the commit goes on
    assert not archive.store.exists(token_key(1, "local-tsa"))
    report = archive.verify(tsa)
    assert report.timestamps is not None
    assert report.timestamps.gaps == {"local-tsa": ["1"]}
    assert "timestamp gap: no token from local-tsa for head(s) 1" in report.timestamps.lines()

    third = archive.commit(tsa)  # the authority is back
    # Head 2 records what head 1 lacks, and the run asked again for it.
    assert AnchorLine("timestamp-missing", 1, "local-tsa") in third.anchors
    assert archive.store.exists(token_key(1, "local-tsa"))
    assert archive.store.exists(token_key(2, "local-tsa"))
    report = archive.verify(tsa)
    assert report.timestamps is not None
    assert report.timestamps.gaps == {}

    fourth = archive.commit(tsa)  # and the head after seals the late token
    assert {(a.kind, a.seq) for a in fourth.anchors} == {("timestamp", 1), ("timestamp", 2)}
    report = archive.verify(tsa)
    assert report.timestamps is not None
    assert report.timestamps.sealed == 3


def test_a_replaced_sealed_token_is_caught(archive: Archive, tsa: Tsa, admin: Admin) -> None:
    archive.commit(tsa)
    archive.commit(tsa)
    # A fresh, genuine token over the same head: it verifies, but head 1 sealed another.
    admin.delete(token_key(0, "local-tsa"))
    archive.store.put(token_key(0, "local-tsa"), request_timestamp(tsa, archive.head(0).body()))
    assert (
        "the timestamp of head 0 from local-tsa differs from the one archive head 1 sealed "
        "(replaced?)"
    ) in archive.failures(tsa)


def test_a_deleted_sealed_token_is_caught(archive: Archive, tsa: Tsa, admin: Admin) -> None:
    archive.commit(tsa)
    archive.commit(tsa)
    admin.delete(token_key(0, "local-tsa"))
    assert (
        "archive head 1 sealed a timestamp of head 0 from local-tsa that is not in the archive "
        "(deleted?)"
    ) in archive.failures(tsa)


def test_a_token_from_an_authority_outside_the_roots_is_caught(
    archive: Archive, tsa: Tsa, other_tsa: LocalTsa
) -> None:
    archive.commit(down(tsa))
    # Same name, a real RFC 3161 token over the right note, but signed under another root.
    archive.store.put(token_key(0, "local-tsa"), other_tsa.reply(_query(archive.head(0).body())))
    failures = archive.failures(tsa)
    assert any("does not verify against its configured roots" in f for f in failures), failures


def test_a_token_from_an_authority_nobody_configured_fails_closed(
    archive: Archive, tsa: Tsa
) -> None:
    archive.commit(tsa)
    renamed = Tsa("another-tsa", tsa.url, tsa.roots, tsa.roots_pem)
    failures = archive.failures(renamed)
    assert any("which the TSA file does not name" in f for f in failures), failures


def test_verify_at_names_the_newest_head_a_timestamp_proves(archive: Archive, tsa: Tsa) -> None:
    archive.commit(tsa)
    archive.commit(tsa)
    later = datetime.now(UTC) + timedelta(minutes=5)
    report = archive.verify(tsa, at=later)
    assert report.timestamps is not None
    assert report.timestamps.proven_at is not None
    assert report.timestamps.proven_at["seq"] == 1
    before = archive.verify(tsa, at=datetime(2000, 1, 1, tzinfo=UTC))
    assert before.timestamps is not None
    assert before.timestamps.proven_at is None
    assert any("no timestamp proves" in line for line in before.timestamps.lines())


def test_a_sealed_token_later_than_the_head_that_sealed_it_is_caught(
    archive: Archive, tsa: Tsa, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Head 1 seals head 0's token, so that token existed before head 1 was timestamped. Times
    # out of that order mean a TSA clock or a token is wrong; openssl's clock cannot be moved, so
    # the checked times are shifted here, as a lying authority would shift them.
    import coexarchive.anchor.timestamps as timestamps

    archive.commit(tsa)
    archive.commit(tsa)
    real = timestamps.check_token

    def shifted(token: bytes, message: bytes, roots: Any, *, name: str) -> Any:
        checked = real(token, message, roots, name=name)
        if message == archive.head(0).body():
            return type(checked)(
                **{
                    **checked.__dict__,
                    "gen_time": checked.gen_time.replace(year=checked.gen_time.year + 1),
                }
            )
        return checked

    monkeypatch.setattr(timestamps, "check_token", shifted)
    failures: list[Failure] = []
    check_timestamps(archive.store, TRUST, [tsa], failures, archive_name=ARCHIVE)
    assert any("times are not monotonic with the heads" in f.message for f in failures)


def test_tokens_live_beside_the_heads_not_among_them(archive: Archive, tsa: Tsa) -> None:
    archive.commit(tsa)
    assert list(archive.store.list(TIMESTAMP_PREFIX)) == [token_key(0, "local-tsa")]
    assert list(archive.store.list("heads/")) == [head_key(0)]


def _query(message: bytes) -> bytes:
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

    request = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256).build()
    return request.as_bytes()
