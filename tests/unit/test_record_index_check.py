"""verify renders a segment's expected record index in Arrow; it must equal the writer's text."""

from __future__ import annotations

import pyarrow as pa
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from coexarchive.segments import index_text
from coexarchive.verify.segment import _index_text_of, record_index_problem

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_text, _text), min_size=1, max_size=40))  # repeats included
def test_arrow_rendering_equals_the_writers_text(pairs: list[tuple[str, str]]) -> None:
    ids, kinds = zip(*pairs, strict=True)
    table = pa.table({"record_id": list(ids), "kind": list(kinds)})
    assert _index_text_of(table) == index_text(pairs).encode()


def test_an_index_missing_one_record_is_named() -> None:
    table = pa.table({"record_id": ["a" * 32, "b" * 32], "kind": ["message", "status"]})
    whole = index_text(zip(["a" * 32, "b" * 32], ["message", "status"], strict=True))
    assert record_index_problem(zstandard.ZstdCompressor().compress(whole.encode()), table) is None
    short = index_text([("a" * 32, "message")])
    problem = record_index_problem(zstandard.ZstdCompressor().compress(short.encode()), table)
    assert problem is not None and "does not list exactly" in problem
