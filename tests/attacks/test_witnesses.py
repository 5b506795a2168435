"""With a quorum of C2SP witnesses, rollback, truncation and re-signed histories are caught.

No head is pinned by hand here (no ``--expect-head``): two witnesses, run as separate parties
(``WitnessServer`` on loopback, each with its own key and state), cosign the heads log after every
commit. The attacker holds the archive's signing key *and* storage admin rights, the strongest
insider: they can delete locked objects and sign anything the archive key can.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coexarchive.anchor.witness import (
    Witness,
    WitnessPolicy,
    cosign_head,
    cosignature_key,
    heads_origin,
)
from coexarchive.anchor.witness_server import WitnessServer, WitnessState
from coexarchive.archive_head import write_head_after
from coexarchive.seal.cosignature import CosignerKey, cosign
from coexarchive.seal.head import head_key
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.segments import ChainWriter
from coexarchive.store.s3 import S3Store
from coexarchive.verify import ArchiveVerificationError, Report, verify_archive
from support.archive import ARCHIVE, make_records, short_policy, signer, trust_for

pytestmark = pytest.mark.integration

CHAIN = "900000000000001"
KEY = signer()
TRUST = trust_for(KEY)


@pytest.fixture
def witnesses(tmp_path: Path) -> Iterator[list[WitnessServer]]:
    servers = []
    for n in (1, 2):
        key = Ed25519Signer.from_seed(f"auditor{n}.example/w", bytes([n]) * 32)
        logs = {heads_origin(ARCHIVE): TrustStore([KEY.verifier()])}
        server = WitnessServer(key, logs, WitnessState(tmp_path / f"w{n}"))
        server.start()
        servers.append(server)
    yield servers
    for server in servers:
        server.stop()


def policy_of(servers: list[WitnessServer], quorum: int = 2) -> WitnessPolicy:
    return WitnessPolicy(tuple(Witness(s.key, s.url) for s in servers), quorum)


class Archive:
    def __init__(self, store: S3Store, policy: WitnessPolicy, *, seed: int = 0) -> None:
        self.store = store
        self.policy = policy
        self.writer = ChainWriter(
            store, CHAIN, signer=KEY, archive_name=ARCHIVE, policy=short_policy()
        )
        self.day = seed

    def commit(self, witnesses: tuple[Witness, ...] | None = None, per_day: int = 3) -> None:
        results = self.writer.append(make_records(CHAIN, per_day, day=self.day))
        self.day += 1
        write_head_after(
            self.store,
            [r.manifest for r in results],
            signer=KEY,
            archive_name=ARCHIVE,
            witnesses=self.policy.witnesses if witnesses is None else witnesses,
        )

    def verify(self, **kw: Any) -> Report:
        return verify_archive(self.store, TRUST, archive_name=ARCHIVE, witnesses=self.policy, **kw)

    def failures(self, **kw: Any) -> list[str]:
        with pytest.raises(ArchiveVerificationError) as caught:
            self.verify(**kw)
        return [f.message for f in caught.value.report.failures]


def delete(seaweed: Any, store: S3Store, *keys: str) -> None:
    """The storage admin removes locked objects through the filer port."""
    base = f"http://127.0.0.1:{seaweed.ports['filer.port']}/buckets/{store.bucket}/"
    for key in keys:
        response = httpx.delete(base + f"{key}.versions", params={"recursive": "true"})
        assert response.is_success or response.status_code == 404


def test_every_head_is_cosigned_by_every_witness(
    s3_store: S3Store, witnesses: list[WitnessServer]
) -> None:
    archive = Archive(s3_store, policy_of(witnesses))
    archive.commit()
    archive.commit()
    for server in witnesses:
        assert s3_store.exists(cosignature_key(1, server.key))
    report = archive.verify()
    assert report.witnesses is not None
    assert report.witnesses.cosigned == {"auditor1.example/w": 2, "auditor2.example/w": 2}
    assert all(said.startswith("agrees") for said in report.witnesses.asked.values())


def test_a_rollback_of_the_newest_head_is_caught_without_a_pinned_head(
    s3_store: S3Store, witnesses: list[WitnessServer], seaweed: Any
) -> None:
    archive = Archive(s3_store, policy_of(witnesses))
    for _ in range(3):
        archive.commit()
    # Remove head 2 and everything that shows it: what remains is a consistent, cosigned archive
    # of two heads (the chain's newest records merely look like a commit that stopped early).
    delete(seaweed, s3_store, head_key(2), *(cosignature_key(2, s.key) for s in witnesses))
    failures = archive.failures()
    for name in ("auditor1.example/w", "auditor2.example/w"):
        assert (
            f"witness {name} has seen 3 archive heads; the archive holds 2: the newest heads "
            "were removed (rollback)"
        ) in failures
    # Offline, only stored cosignatures can be read: a rollback cannot be seen that way.
    assert archive.verify(ask_witnesses=False).ok


def test_a_re_signed_history_is_rejected_against_the_witnesses_view(
    s3_store: S3Store, witnesses: list[WitnessServer], seaweed: Any
) -> None:
    policy = policy_of(witnesses)
    honest = Archive(s3_store, policy)
    honest.commit()
    honest.commit()
    # The insider rewrites the archive wholesale into a new bucket, same name, same key,
    # different records, and tries to get the witnesses to cosign it.
    forged_store = _fresh_bucket(seaweed)
    forged = Archive(forged_store, policy, seed=5)
    forged.commit(witnesses=())
    forged.commit(witnesses=())
    run = cosign_head(forged_store, policy.witnesses, signer=KEY, trust=TRUST, archive_name=ARCHIVE)
    assert run.stored == []
    assert len(run.failed) == 2
    assert all("fork" in failure for failure in run.failed), run.failed
    failures = forged.failures()
    assert "archive head 1 is cosigned by 0 of the policy's witnesses" in failures[0]
    # Copying the honest archive's cosignatures across does not help: they are of another history.
    for server in witnesses:
        key = cosignature_key(1, server.key)
        forged_store.put(key, s3_store.get(key))
    assert any(
        "cosigned another history of the first 2 archive heads than the archive holds" in f
        for f in forged.failures()
    )


def test_a_witness_down_at_commit_leaves_the_newest_head_short_until_a_later_run(
    s3_store: S3Store, witnesses: list[WitnessServer]
) -> None:
    policy = policy_of(witnesses)
    archive = Archive(s3_store, policy)
    archive.commit()
    down = Witness(witnesses[1].key, "http://127.0.0.1:9")
    archive.commit(witnesses=(policy.witnesses[0], down))  # the commit goes on regardless
    assert any(
        "archive head 1 is cosigned by 1 of the policy's witnesses; the policy asks for 2" in f
        for f in archive.failures()
    )
    run = cosign_head(s3_store, policy.witnesses, signer=KEY, trust=TRUST, archive_name=ARCHIVE)
    assert run.stored == [cosignature_key(1, witnesses[1].key)]
    assert archive.verify().ok


def test_a_forged_cosignature_is_refused(s3_store: S3Store, witnesses: list[WitnessServer]) -> None:
    archive = Archive(s3_store, policy_of(witnesses, quorum=1))
    archive.commit(witnesses=(policy_of(witnesses).witnesses[0],))
    # A witness key the attacker made under the second witness's name.
    fake = Ed25519Signer.from_seed("auditor2.example/w", bytes([9]) * 32)
    body = s3_store.get(cosignature_key(0, witnesses[0].key))
    text = body[: body.rfind(b"\n\n") + 1]
    s3_store.put(cosignature_key(0, witnesses[1].key), body + cosign(text, fake, 1))
    assert CosignerKey.of(fake).key_id != witnesses[1].key.key_id
    assert any("holds no cosignature by auditor2.example/w" in f for f in archive.failures())


def _fresh_bucket(seaweed: Any) -> S3Store:
    from conftest import fresh_bucket_name

    store: S3Store = seaweed.store(fresh_bucket_name("forged"))
    return store
