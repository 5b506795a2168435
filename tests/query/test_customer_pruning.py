"""One customer's report reads only the segments their chains' customer filters allow, and
returns exactly what a scan of every segment returns."""

from __future__ import annotations

import pytest

from coexarchive import customer_filter
from coexarchive.query.access_log import AccessLog
from coexarchive.query.reports import Params
from coexarchive.query.session import AuditSession
from coexarchive.query.views import ArchiveCatalog, business_segments
from coexarchive.records import Record
from coexarchive.segments import ChainWriter
from coexarchive.store import MemoryStore
from coexarchive.verify import verify_archive
from support.archive import ARCHIVE, scenario_record, short_policy, signer, trust_for

CHAINS = ("900000000000011", "900000000000012", "900000000000013")
SHARED = "447700999999"  # writes to the first and the last number
DAYS = 4


def customer(chain_index: int, n: int) -> str:
    return f"4477{chain_index:02d}{n:06d}"


def day_records(chain_index: int, day: int) -> list[Record]:
    chain = CHAINS[chain_index]
    records = []
    for n in range(12):
        who = customer(chain_index, (n + day) % 9)
        records.append(
            scenario_record(
                chain, day * 100 + n, day, n, customer_id=who, customer_wa_id=who, text=f"m{n}"
            )
        )
    if chain_index != 1 and day in (0, DAYS - 1):
        records.append(
            scenario_record(chain, day * 100 + 99, day, 50, customer_id=SHARED, text="shared")
        )
    return records


def build(store: MemoryStore) -> None:
    key = signer()
    for index, chain in enumerate(CHAINS):
        writer = ChainWriter(store, chain, signer=key, archive_name=ARCHIVE, policy=short_policy())
        for day in range(DAYS):
            writer.append(day_records(index, day))


def open_session(store: MemoryStore) -> AuditSession:
    key = signer()
    log = AccessLog(store, signer=key, archive_name=ARCHIVE)
    return AuditSession(store, access_log=log, who="auditor", trust=trust_for(key))


def everything(session: AuditSession, who: str) -> list[tuple[str, int]]:
    """The customer's messages by a scan of every segment, without any filter."""
    catalog = ArchiveCatalog(session.store)
    catalog.refresh()
    table = catalog.dataset(business_segments(catalog)).to_table(
        columns=["chain_id", "seq", "customer_id"]
    )
    return sorted(
        (row["chain_id"], row["seq"]) for row in table.to_pylist() if row["customer_id"] == who
    )


def transcript(session: AuditSession, who: str) -> list[tuple[str, int]]:
    result = session.report("transcript", Params(customer=who))
    return sorted((row["chain_id"], row["seq"]) for row in result.table.to_pylist())


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    build(store)
    return store


def test_only_the_customers_chain_is_read(store: MemoryStore) -> None:
    session = open_session(store)
    all_segments = business_segments(session.catalog)
    kept = session.catalog.customer_segments(customer(1, 3), all_segments)
    assert {segment.chain_id for segment in kept} == {CHAINS[1]}
    assert len(kept) == DAYS and len(all_segments) == DAYS * len(CHAINS)
    shared = session.catalog.customer_segments(SHARED, all_segments)
    assert {segment.chain_id for segment in shared} == {CHAINS[0], CHAINS[2]}


@pytest.mark.parametrize(
    "who", [customer(0, 0), customer(1, 8), customer(2, 4), SHARED, "447700000000"]
)
def test_transcript_equals_a_scan_of_every_segment(store: MemoryStore, who: str) -> None:
    session = open_session(store)
    assert transcript(session, who) == everything(session, who)


def test_records_spans_the_whole_archive_again_after_a_transcript(store: MemoryStore) -> None:
    session = open_session(store)
    before = session.query("SELECT count(*) AS n FROM records").table.to_pylist()
    transcript(session, customer(1, 3))
    after = session.query("SELECT count(*) AS n FROM records").table.to_pylist()
    assert before == after == [{"n": DAYS * len(CHAINS) * 12 + 4}]


def test_generations_are_followed_back_to_the_first_segment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Filters of 64 bits fill at once: every segment starts a new generation.
    monkeypatch.setattr(customer_filter, "MIN_BITS", 64)
    monkeypatch.setattr(customer_filter, "MAX_BITS", 64)
    store = MemoryStore()
    build(store)
    session = open_session(store)
    firsts = [
        m.customers.first_seq if m.customers else None for m in session.catalog.manifests(CHAINS[0])
    ]
    assert firsts == [m.first_seq for m in session.catalog.manifests(CHAINS[0])]
    for who in (SHARED, customer(0, 0), customer(2, 8), "447700000000"):
        assert transcript(session, who) == everything(session, who)
    assert verify_archive(store, trust_for(signer())).ok


def test_segments_without_filters_are_always_read(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    key = signer()
    writers = [
        ChainWriter(store, chain, signer=key, archive_name=ARCHIVE, policy=short_policy())
        for chain in CHAINS
    ]
    with monkeypatch.context() as legacy:  # written before filters existed
        legacy.setattr(customer_filter.CustomerFilter, "next", classmethod(lambda *a, **k: None))
        for index, writer in enumerate(writers):
            writer.append(day_records(index, 0))
    for index, writer in enumerate(writers):
        for day in range(1, DAYS):
            writer.append(day_records(index, day))
    session = open_session(store)
    manifests = session.catalog.manifests(CHAINS[2])
    assert manifests[0].customers is None
    assert manifests[1].customers is not None
    assert manifests[1].customers.first_seq == manifests[1].first_seq
    kept = session.catalog.customer_segments(customer(1, 3), business_segments(session.catalog))
    # The first day of every chain is unknown, so kept; later days only on the customer's chain.
    assert sorted((s.chain_id, s.first_seq) for s in kept) == sorted(
        [(chain, 0) for chain in CHAINS]
        + [(CHAINS[1], m.first_seq) for m in session.catalog.manifests(CHAINS[1])[1:]]
    )
    for who in (SHARED, customer(1, 3), customer(2, 0)):
        assert transcript(session, who) == everything(session, who)
    assert verify_archive(store, trust_for(key)).ok


def test_verify_reads_every_segment(store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    session = open_session(store)
    asked = []
    real = ArchiveCatalog.customer_segments

    def spy(self, customer, segments):  # type: ignore[no-untyped-def]
        asked.append(customer)
        return real(self, customer, segments)

    monkeypatch.setattr(ArchiveCatalog, "customer_segments", spy)
    result = session.report("transcript", Params(customer=customer(1, 3)), verify=True)
    assert asked == [] and result.verification is not None
    assert sorted((r["chain_id"], r["seq"]) for r in result.table.to_pylist()) == everything(
        session, customer(1, 3)
    )
    session.report("transcript", Params(customer=customer(1, 3)))
    assert asked == [customer(1, 3)]


def test_a_repeated_transcript_sees_segments_committed_meanwhile(store: MemoryStore) -> None:
    session = open_session(store)
    who = customer(1, 3)
    before = transcript(session, who)
    key = signer()
    writer = ChainWriter(store, CHAINS[1], signer=key, archive_name=ARCHIVE, policy=short_policy())
    writer.append(
        [scenario_record(CHAINS[1], 999, DAYS, 1, customer_id=who, customer_wa_id=who, text="new")]
    )
    session.report("verification", Params())  # refreshes the catalog
    after = transcript(session, who)
    assert len(after) == len(before) + 1 and after == everything(session, who)
