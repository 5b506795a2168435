"""Single-record appends to the archive's own chains: retried after a lost race, always headed."""

from __future__ import annotations

from typing import Any

import pytest

from coexarchive.archive_head import HeadWriter
from coexarchive.audit_chain import APPEND_ATTEMPTS, AuditChainWriter
from coexarchive.errors import SealError
from coexarchive.records import Direction, Kind, Origin, Record, stable_id
from coexarchive.segments import ChainWriter
from coexarchive.store import MemoryStore
from support.archive import signer

CHAIN = "access-log"


def entry(n: int) -> Record:
    return Record(
        chain_id=CHAIN,
        record_id=stable_id("access", n),
        kind=Kind.ACCESS.value,
        origin=Origin.AUDITOR.value,
        direction=Direction.NONE.value,
        event_time=1_767_607_200_000 + n,
        received_time=1_767_607_200_000 + n,
        detail='{"n":' + str(n) + "}",
    )


def writer(store: MemoryStore) -> AuditChainWriter:
    return AuditChainWriter(
        store, CHAIN, signer=signer(), archive_name="coexarchive.test", what="access log"
    )


def head_size(store: MemoryStore) -> int:
    head = HeadWriter(store, signer=signer(), archive_name="coexarchive.test").newest()
    assert head is not None
    (chain,) = [chain for chain in head.chains if chain.chain_id == CHAIN]
    return chain.size


def test_each_append_is_sealed_and_stated_in_the_archive_head() -> None:
    store = MemoryStore()
    log = writer(store)
    assert log.append(entry(0)).last_seq == 0
    assert head_size(store) == 1
    assert log.append(entry(1)).last_seq == 1
    assert head_size(store) == 2


def test_a_writer_that_lost_the_race_for_a_seq_rebuilds_and_appends_after_the_winner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lost: list[str] = []
    real = ChainWriter.append

    def spy(self: ChainWriter, records: Any) -> Any:
        try:
            return real(self, records)
        except SealError as exc:
            lost.append(str(exc))
            raise

    monkeypatch.setattr(ChainWriter, "append", spy)
    store = MemoryStore()
    first, second = writer(store), writer(store)
    first.append(entry(0))  # first now believes the next seq is 1
    second.append(entry(1))  # ... which second takes
    manifest = first.append(entry(2))
    assert len(lost) == 1 and "seq 1" in lost[0]  # the race happened, and was recovered from
    assert manifest.last_seq == 2
    assert head_size(store) == 3


def test_every_attempt_lost_is_a_seal_error_naming_the_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def always_lose(self: ChainWriter, records: object) -> object:
        calls.append(1)
        raise SealError("another writer committed seq 0 first")

    monkeypatch.setattr(ChainWriter, "append", always_lose)
    with pytest.raises(SealError, match="could not append to the access log: another writer"):
        writer(MemoryStore()).append(entry(0))
    assert len(calls) == APPEND_ATTEMPTS
