"""Enrichment's shortcuts decide exactly what the plain rules decide.

``normalize_phrase`` strips its edges with ``unicodedata.category`` inlined, and ``enrich_chain``
calls ``assess`` only for ``ENRICHED_KINDS``; both are held here to the plain definitions.
"""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from coexarchive.enrich.chain import knowledge_of
from coexarchive.enrich.consent import _OPT_IN, _OPT_OUT, _edge, normalize_phrase
from coexarchive.enrich.context import ChainContext
from coexarchive.enrich.flags import ENRICHED_KINDS, EnrichConfig, assess
from coexarchive.records import Direction, Kind, Origin, Record


def reference_phrase(text: str) -> str:
    """``normalize_phrase`` as its docstring says it: NFKC, casefold, one space, no edges."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(folded)
    while start < end and _edge(folded[start]):
        start += 1
    while end > start and _edge(folded[end - 1]):
        end -= 1
    return folded[start:end]


KEYWORDS = sorted(
    {phrase for table in (_OPT_OUT, _OPT_IN) for found in table.values() for phrase in found}
)
edges = st.text(alphabet=" \t\u00a0!?.,¡¿…🙏😀👍\u200b\u0301-()「」", max_size=4)
texts = st.one_of(
    st.text(max_size=30),
    st.tuples(edges, st.sampled_from(KEYWORDS), edges).map("".join),
    st.tuples(edges, st.sampled_from(KEYWORDS).map(str.lower), st.text(max_size=3)).map("".join),
)


@settings(max_examples=1000, deadline=None)
@given(text=texts)
def test_normalize_phrase_is_the_reference(text: str) -> None:
    assert normalize_phrase(text) == reference_phrase(text)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(Kind)),
    origin=st.sampled_from(list(Origin)),
    direction=st.sampled_from(list(Direction)),
    msg_type=st.sampled_from([None, "text", "template", "history_declined", "account_update"]),
    status=st.sampled_from([None, "PARTNER_REMOVED", "opted_out", "stop", "failed"]),
)
def test_assess_has_nothing_to_say_about_kinds_enrichment_skips(
    kind: Kind, origin: Origin, direction: Direction, msg_type: str | None, status: str | None
) -> None:
    record = Record(
        "chain", "id", kind.value, origin.value, direction.value, 1_000, customer_wa_id="4477",
        msg_type=msg_type, status=status, ref_record_id="other",
    )  # fmt: skip
    knowledge = knowledge_of(ChainContext("chain"), horizon_ms=10**12)
    if kind.value not in ENRICHED_KINDS:
        assert assess(record, knowledge, EnrichConfig()) is None
