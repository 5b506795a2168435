from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from coexarchive.records import (
    HASH_FIELDS,
    RECORD_SCHEMA,
    SEALED_FIELDS,
    schema_document,
    stable_id,
)

SCHEMA_FILE = Path(__file__).parents[2] / "schemas" / "record.schema.json"


def test_published_schema_matches_the_code() -> None:
    # Regenerate: python -c "import json, coexarchive.records as r;
    #   print(json.dumps(r.schema_document(), indent=2))" > schemas/record.schema.json
    assert json.loads(SCHEMA_FILE.read_text()) == schema_document()


def test_every_column_is_sealed_except_the_hashes() -> None:
    assert set(RECORD_SCHEMA.names) == set(SEALED_FIELDS) | set(HASH_FIELDS)
    assert not set(SEALED_FIELDS) & set(HASH_FIELDS)


def test_no_float_columns() -> None:
    assert not [f.name for f in RECORD_SCHEMA if "float" in str(f.type) or "double" in str(f.type)]


def test_stable_id_is_deterministic_and_separates_parts() -> None:
    assert stable_id("a", "b") == stable_id("a", "b")
    assert stable_id("a", "bc") != stable_id("ab", "c")
    assert stable_id("a", None) != stable_id("a", "None")
    assert len(stable_id("x")) == 32


class _Text(str):
    """A str subclass (as NumberText is): its characters count, not its type."""


@given(
    parts=st.lists(
        st.one_of(st.none(), st.text(max_size=8), st.integers(), st.text(max_size=4).map(_Text))
    )
)
def test_stable_id_is_the_sha256_of_the_joined_parts(parts: list[str | int | None]) -> None:
    joined = "\x1f".join("" if part is None else str(part) for part in parts)
    assert stable_id(*parts) == hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]
