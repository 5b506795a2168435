"""Enrichment's shortcuts decide exactly what the plain rules decide.

``normalize_phrase`` strips its edges with ``unicodedata.category`` inlined, ``enrich_chain``
calls ``assess`` only for ``ENRICHED_KINDS``, and ``Assessment`` and ``InboundEvent`` replace
their dataclass ``__init__``; each is held here to the plain definition.
"""

from __future__ import annotations

import dataclasses
import inspect
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coexarchive.enrich import flags as flags_module
from coexarchive.enrich import window
from coexarchive.enrich.chain import knowledge_of
from coexarchive.enrich.consent import _OPT_IN, _OPT_OUT, _edge, normalize_phrase
from coexarchive.enrich.context import ChainContext
from coexarchive.enrich.flags import ENRICHED_KINDS, Assessment, EnrichConfig, assess
from coexarchive.enrich.window import InboundEvent
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


# --- the frozen value types' constructors ---------------------------------------------------------

optional_text = st.none() | st.text(max_size=5)
assessment_fields = st.fixed_dictionaries(
    {},
    optional={
        "flags": st.lists(st.text(max_size=5), max_size=3).map(tuple),
        "consent_state": optional_text,
        "window_open": st.none() | st.booleans(),
        "template_category": optional_text,
        "template_status": optional_text,
        "evidence": st.dictionaries(st.text(max_size=3), optional_text, max_size=2),
        "reasons": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    },
)


@settings(max_examples=300, deadline=None)
@given(fields=assessment_fields, positional=st.booleans())
def test_assessment_is_the_generated_one(fields: dict[str, Any], positional: bool) -> None:
    slow = object.__new__(Assessment)
    flags_module._generated_assessment_init(slow, **fields)
    if positional:
        names = [f.name for f in dataclasses.fields(Assessment)]
        given_names = names[: max((names.index(n) + 1 for n in fields), default=0)]
        values = [fields.get(n, getattr(slow, n)) for n in given_names]
        fast = Assessment(*values)
    else:
        fast = Assessment(**fields)
    assert type(fast) is Assessment
    assert fast == slow
    assert vars(fast) == vars(slow)
    assert list(vars(fast)) == list(vars(slow))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.flags = ()  # type: ignore[misc]


def test_assessment_defaults_are_fresh_dicts_each_time() -> None:
    first, second = Assessment(), Assessment()
    assert first.evidence == {} and first.reasons == {}
    assert first.evidence is not second.evidence
    assert first.reasons is not second.reasons
    assert list(inspect.signature(Assessment).parameters) == [
        f.name for f in dataclasses.fields(Assessment)
    ]
    with pytest.raises(TypeError):
        Assessment(nothing=1)  # type: ignore[call-arg]


@settings(max_examples=100, deadline=None)
@given(
    record_id=st.text(max_size=5),
    keys=st.lists(st.text(max_size=5), max_size=3).map(tuple),
    event_time=st.integers(),
)
def test_inbound_event_is_the_generated_one(
    record_id: str, keys: tuple[str, ...], event_time: int
) -> None:
    fast = InboundEvent(record_id, keys, event_time)
    slow = object.__new__(InboundEvent)
    window._generated_inbound_init(slow, record_id, keys, event_time)
    assert type(fast) is InboundEvent
    assert (fast.record_id, fast.keys, fast.event_time) == (record_id, keys, event_time)
    assert fast == slow and hash(fast) == hash(slow)
    assert InboundEvent(record_id=record_id, keys=keys, event_time=event_time) == fast
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.event_time = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        InboundEvent(record_id, keys)  # type: ignore[call-arg]


@pytest.mark.parametrize("origin", list(Origin))
@pytest.mark.parametrize("direction", list(Direction))
@pytest.mark.parametrize("kind", [Kind.ECHO, Kind.MESSAGE_EDIT, Kind.MESSAGE, Kind.OUTBOUND])
def test_context_counts_echoes_as_is_echo_says(
    origin: Origin, direction: Direction, kind: Kind
) -> None:
    # ChainContext.add tests origin and direction inline; it must agree with window.is_echo.
    record = Record("chain", "id", kind.value, origin.value, direction.value, 5, customer_wa_id="1")
    context = ChainContext("chain")
    context.add([record])
    assert context.echo_times == ([5] if window.is_echo(record) else [])
