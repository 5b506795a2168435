"""Step 8: ``records.parquet`` and ``records.csv`` hold exactly the proven records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from coexarchive.export._rows import SEALED_ORDER, Row, records_csv
from coexarchive.export.verify_bundle.records import Parsed
from coexarchive.export.verify_bundle.renders import compare
from coexarchive.export.verify_bundle.report import CHAIN_HASH_WARNING, RECORDS, BundleReport
from coexarchive.records import RECORD_SCHEMA

__all__ = ["csv_table_step", "parquet_table_step"]


def csv_table_step(proven: Parsed, report: BundleReport) -> None:
    path = "records/records.csv"
    if path in proven.files:
        expected = records_csv(proven.shown, proven.leaves, proven.rules)
        compare(report, "tables", path, expected, proven.files[path])
    else:
        report.fail("tables", "file is missing", key=path)


def parquet_table_step(proven: Parsed, report: BundleReport) -> None:
    path, files, rows = "records/records.parquet", proven.files, proven.rows
    if path not in files:
        report.fail("tables", "file is missing", key=path)
        return
    try:
        table = pq.read_table(pa.BufferReader(files[path]))
        problem = _schema_difference(table.schema)
    except (pa.ArrowException, OSError) as exc:
        problem = f"not a readable records table ({exc})"
    if problem is not None:
        report.fail("tables", problem, key=path)
        return
    if "chain_hash" in table.column_names:
        report.warnings.append(CHAIN_HASH_WARNING)
    if table.num_rows != len(rows):
        report.fail(
            "tables", f"holds {table.num_rows} rows, the bundle {len(rows)} records", key=path
        )
        return
    differing = [
        index
        for name in _differing_columns(table, files[RECORDS], proven.leaves)
        if (index := _first_difference(table, name, rows, proven.leaves)) is not None
    ]
    if differing:
        row = rows[min(differing)]
        report.fail(
            "tables",
            f"row {min(differing) + 1} differs from the proven record",
            key=path,
            chain=row["chain_id"],
            seq=row["seq"],
        )


# records.jsonl parsed by Arrow into the record schema's types, times as integer milliseconds.
_JSONL_SCHEMA = pa.schema(
    [
        field.with_type(pa.int64()) if pa.types.is_timestamp(field.type) else field
        for field in map(RECORD_SCHEMA.field, SEALED_ORDER)
    ]
)


def _differing_columns(table: pa.Table, jsonl: bytes, leaves: Sequence[bytes]) -> list[str]:
    """Columns of the Parquet table that differ from the proven records, compared in Arrow.

    The proven ``records.jsonl`` (each line already parsed strictly and proven) is read again by
    Arrow's JSON reader into the record schema's types, so two columns are equal exactly when
    their values, and so their canonical bytes, are. Should Arrow refuse the file, every column
    is reported for the row-by-row comparison to settle.
    """
    try:
        expected = pa_json.read_json(
            pa.BufferReader(jsonl),
            read_options=pa_json.ReadOptions(block_size=4 << 20),
            parse_options=pa_json.ParseOptions(
                explicit_schema=_JSONL_SCHEMA, unexpected_field_behavior="error"
            ),
        )
    except pa.ArrowException:
        return [*SEALED_ORDER, "leaf_hash"]
    differing = []
    for name in SEALED_ORDER:
        stored = table.column(name)
        if pa.types.is_timestamp(stored.type):
            stored = stored.cast(pa.int64())
        if not stored.equals(expected.column(name)):
            differing.append(name)
    if not table.column("leaf_hash").equals(
        pa.chunked_array([pa.array(leaves, type=pa.binary(32))])
    ):
        differing.append("leaf_hash")
    return differing


def _first_difference(
    table: pa.Table, name: str, rows: Sequence[Row], leaves: Sequence[bytes]
) -> int | None:
    expected = leaves if name == "leaf_hash" else [row[name] for row in rows]
    stored = _sealed_column(table, name)
    return next((i for i, (a, b) in enumerate(zip(stored, expected, strict=True)) if a != b), None)


def _schema_difference(schema: pa.Schema) -> str | None:
    # Bundles from earlier versions also carry chain_hash (see CHAIN_HASH_WARNING).
    extra = sorted(set(schema.names) - {*SEALED_ORDER, "leaf_hash", "chain_hash"})
    if extra:
        return f"not a records table: column(s) {', '.join(extra)} hold nothing a record proves"
    for name in (*SEALED_ORDER, "leaf_hash"):
        wanted = RECORD_SCHEMA.field(name).type
        index = schema.get_field_index(name)
        if index < 0:
            return f"not a records table: column {name} is missing"
        if schema.field(index).type != wanted:
            return f"column {name} has type {schema.field(index).type}, not {wanted}"
    return None


def _sealed_column(table: pa.Table, name: str) -> list[Any]:
    column = table.column(name)
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    values: list[Any] = column.to_pylist()
    return values
