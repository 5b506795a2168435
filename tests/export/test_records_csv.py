"""records.csv says what records.jsonl says: RFC 4180, UTF-8, CRLF, one row per record."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime

import orjson

from coexarchive.export._rows import CSV_COLUMNS

RECORDS = "records/records.jsonl"


def latest_assessments(rows: list[dict[str, object]]) -> dict[tuple[object, object], dict]:  # type: ignore[type-arg]
    """(chain, record id) → the highest-seq assessment naming it."""
    latest: dict[tuple[object, object], dict] = {}  # type: ignore[type-arg]
    for row in sorted(rows, key=lambda r: int(r["seq"])):  # type: ignore[call-overload]
        if row["kind"] == "assessment":
            latest[(row["chain_id"], row["ref_record_id"])] = row
    return latest


def expected_cell(
    name: str,
    row: dict[str, object],
    line: bytes,
    latest: dict[tuple[object, object], dict] | None = None,  # type: ignore[type-arg]
) -> str:
    if name in ("current_flags", "flags_seq"):
        found = (
            None
            if row["kind"] == "assessment"
            else (latest or {}).get((row["chain_id"], row["record_id"]))
        )
        if name == "flags_seq":
            return "" if found is None else str(found["seq"])
        return ";".join((found or row)["flags"])  # type: ignore[arg-type]
    if name == "leaf_hash":
        return hashlib.sha256(b"\x00" + line).hexdigest()
    if name.endswith("_utc"):
        value = row[name.removesuffix("_utc")]
        if value is None:
            return ""
        moment = datetime.fromtimestamp(int(value) / 1000, UTC)  # type: ignore[call-overload]
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(value) % 1000:03d}Z"  # type: ignore[call-overload]
    value = row[name]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(value)
    return str(value)


def test_every_cell_is_the_sealed_value(pristine) -> None:  # type: ignore[no-untyped-def]
    data = pristine["records/records.csv"]
    lines = pristine[RECORDS].split(b"\n")[:-1]
    table = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert table[0] == list(CSV_COLUMNS)
    assert len(table) == len(lines) + 1
    latest = latest_assessments([orjson.loads(line) for line in lines])
    for line, cells in zip(lines, table[1:], strict=True):
        row = orjson.loads(line)
        assert cells == [expected_cell(name, row, line, latest) for name in CSV_COLUMNS]


def test_rows_end_in_crlf_and_awkward_text_is_quoted(pristine) -> None:  # type: ignore[no-untyped-def]
    data = pristine["records/records.csv"]
    assert data.endswith(b"\r\n") and data.startswith(b"chain_id,seq,")
    texts = [orjson.loads(line)["text"] for line in pristine[RECORDS].split(b"\n")[:-1]]
    awkward = [t for t in texts if t and any(c in t for c in ',"\r\n')]
    assert awkward, "the evidence archive should hold text that needs quoting"
    for text in awkward:
        assert ('"' + text.replace('"', '""') + '"').encode("utf-8") in data


def test_multi_valued_and_empty_cells_of_sealed_rows() -> None:
    from coexarchive.export._rows import canonical_line, leaf_of, records_csv, sealed_rows
    from coexarchive.seal.chain import seal_records
    from coexarchive.segments import records_table
    from support.archive import scenario_record

    chain = "900000000000001"
    records = [
        scenario_record(chain, 1, 0, 1, flags=("capture_gap", "sent_after_opt_out"), text='a,"b"'),
        scenario_record(
            chain, 2, 0, 2, window_open=False, text="line\r\nbreak", received_time=None
        ),
        scenario_record(chain, 3, 0, 3, window_open=True, text="مرحبا ✓", error_code=131047),
    ]
    rows = sealed_rows(
        records_table(seal_records(records, first_seq=0, prev_chain_hash=b"\0" * 32))
    )
    lines = [canonical_line(row) for row in rows]
    data = records_csv(rows, [leaf_of(line) for line in lines])
    table = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert table[0] == list(CSV_COLUMNS)
    for line, cells in zip(lines, table[1:], strict=True):
        assert cells == [expected_cell(name, orjson.loads(line), line) for name in CSV_COLUMNS]
    assert "capture_gap;sent_after_opt_out" in table[1] and "false" in table[2]
    assert data.count(b"\r\n") == len(lines) + 2  # one per row, one inside the quoted text
