"""A small archive with known answers for search: every operator, scripts, captions, files.

Chain A holds day 0 and day 1 as two segments; chain B holds day 2. :func:`later_day` is a
fourth segment appended afterwards (incremental reindex).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from coexarchive.query.access_log import AccessLog
from coexarchive.query.views import ArchiveCatalog
from coexarchive.records import Record
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.search.index import SearchIndex
from coexarchive.search.service import Searcher
from coexarchive.segments import ChainWriter
from coexarchive.store.base import ObjectStore
from support.archive import (
    ARCHIVE,
    DAY_MS,
    START_MS,
    scenario_record,
    short_policy,
    signer,
    trust_for,
)

CHAIN_A = "900000000000001"
CHAIN_B = "900000000000002"
ALICE = "447700900001"
BOB = "447700900002"
CAROL = "447700900003"
IDENTITY = f"{ARCHIVE} test"

# n → text, for the messages whose text the tests search.
TEXTS = {
    1: "Is this a guaranteed return on crypto?",
    2: "We offer a guaranteed return. This is a test.",
    3: "guaranteed one two three four five crypto",  # six apart
    4: "crypto one two three four guaranteed",  # five apart, other order
    5: "¿Dónde está mi PEDIDO?",
    6: "مَرْحَبًا بكم في المتجر",
    7: "नमस्ते, आपका ऑर्डर तैयार है",
    8: "Quarterly statement attached",  # the caption of a document
    9: "您的订单已发货",
    10: "The investors were investing heavily",
    11: "Crème brûlée at the café, Straße ＥＵＲＯ",
    12: "bitcoin and a guaranteed return",
}


def _message(chain: str, n: int, day: int, customer: str, outbound: bool = False) -> Record:
    fields: dict[str, object] = {
        "customer_id": customer,
        "customer_wa_id": customer,
        "text": TEXTS[n],
    }
    if outbound:
        fields.update(kind="outbound", origin="cloud_api", direction="outbound")
    return scenario_record(chain, n, day, n, **fields)


def _document(
    chain: str, n: int, day: int, customer: str, name: str, caption: str | None
) -> Record:
    detail = {"media": {"filename": name, "mime_type": "application/pdf"}, "n": n}
    return scenario_record(
        chain,
        n,
        day,
        n,
        customer_id=customer,
        customer_wa_id=customer,
        msg_type="document",
        text=caption,
        media_id=f"media-{n}",
        detail=orjson.dumps(detail).decode(),
    )


def chain_a_day0() -> list[Record]:
    return [
        _message(CHAIN_A, 1, 0, ALICE),
        _message(CHAIN_A, 2, 0, BOB, outbound=True),
        _message(CHAIN_A, 3, 0, CAROL, outbound=True),
        _message(CHAIN_A, 4, 0, ALICE),
        _message(CHAIN_A, 5, 0, BOB),
        # A status has no text: it is not indexed, and NOT never finds it.
        scenario_record(
            CHAIN_A, 20, 0, 20, kind="status", msg_type=None, status="read", customer_id=ALICE
        ),
    ]


def chain_a_day1() -> list[Record]:
    return [
        _message(CHAIN_A, 6, 1, CAROL),
        _message(CHAIN_A, 7, 1, ALICE),
        _document(CHAIN_A, 8, 1, BOB, "Invoice-2026-03.pdf", TEXTS[8]),
        _document(CHAIN_A, 13, 1, BOB, "contract_final.docx", None),
        _message(CHAIN_A, 9, 1, CAROL),
        _message(CHAIN_A, 10, 1, ALICE),
    ]


def chain_b_day2() -> list[Record]:
    return [_message(CHAIN_B, 11, 2, ALICE), _message(CHAIN_B, 12, 2, BOB, outbound=True)]


def later_day() -> list[Record]:
    return [
        scenario_record(
            CHAIN_B,
            14,
            3,
            1,
            customer_id=CAROL,
            text="a late guaranteed return on crypto",
        )
    ]


@dataclass
class Fixture:
    store: ObjectStore
    key: Ed25519Signer
    writers: dict[str, ChainWriter]

    def trust_store(self) -> TrustStore:
        return trust_for(self.key)

    def catalog(self) -> ArchiveCatalog:
        return ArchiveCatalog(self.store)

    def index(self, directory: Path) -> SearchIndex:
        return SearchIndex(directory, IDENTITY)

    def searcher(self, index: SearchIndex, who: str = "officer@example.com") -> Searcher:
        ticks = iter(range(START_MS + 9 * DAY_MS, START_MS + 10 * DAY_MS, 1_000))
        log = AccessLog(self.store, signer=self.key, archive_name=ARCHIVE, policy=short_policy())
        return Searcher(index, self.catalog(), access_log=log, who=who, clock=lambda: next(ticks))

    def append_later_day(self) -> None:
        self.writers[CHAIN_B].append(later_day())


def build_search_archive(store: ObjectStore) -> Fixture:
    key = signer()
    writers = {}
    for chain, days in ((CHAIN_A, (chain_a_day0(), chain_a_day1())), (CHAIN_B, (chain_b_day2(),))):
        writer = ChainWriter(store, chain, signer=key, archive_name=ARCHIVE, policy=short_policy())
        for records in days:
            writer.append(records)
        writers[chain] = writer
    return Fixture(store, key, writers)
