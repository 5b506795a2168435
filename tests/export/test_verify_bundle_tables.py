"""verify-bundle's tables and its two-process mode: the Parquet file is compared column by column
with the proven records, and the forked render worker reports exactly what one process would."""

from __future__ import annotations

import io
import os
import time

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from export._evidence import ALICE, CHAIN_A, reseal

import coexarchive.export.verify_bundle as verify_module
from coexarchive.export.verify_bundle import STEPS, BundleVerificationError, verify_bundle

Files = dict[str, bytes]
PARQUET = "records/records.parquet"
TRANSCRIPT = f"transcripts/chain={CHAIN_A}/{ALICE}.html"


def failures(
    files: Files, trust: object, workers: int = 1
) -> list[tuple[str, str | None, int | None]]:
    with pytest.raises(BundleVerificationError) as caught:
        verify_bundle(files, trust=trust, workers=workers)  # type: ignore[arg-type]
    return [(f.step, f.key, f.seq) for f in caught.value.report.failures]


def with_parquet(files: Files, change) -> Files:  # type: ignore[no-untyped-def]
    table = pq.read_table(pa.BufferReader(files[PARQUET]))
    sink = io.BytesIO()
    pq.write_table(change(table), sink)
    files = dict(files)
    files[PARQUET] = sink.getvalue()
    return reseal(files)


def replace_cell(table: pa.Table, name: str, row: int, value: object) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    index = table.schema.get_field_index(name)
    return table.set_column(
        index, table.schema.field(index), pa.array(values, table.column(name).type)
    )


def test_two_processes_report_what_one_does(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    one = verify_bundle(pristine, trust=evidence.trust, workers=1)
    two = verify_bundle(pristine, trust=evidence.trust, workers=2)
    assert one.to_json() == two.to_json()
    assert [r.to_json() for r in one.records] == [r.to_json() for r in two.records]


@pytest.mark.parametrize("workers", [1, 2])
def test_parquet_text_changed_is_named_by_row_and_seq(evidence, pristine, workers: int) -> None:  # type: ignore[no-untyped-def]
    table = pq.read_table(pa.BufferReader(pristine[PARQUET]))
    row = (
        table.column("text")
        .to_pylist()
        .index(next(t for t in table.column("text").to_pylist() if t and "ready for pickup" in t))
    )
    seq = table.column("seq")[row].as_py()
    files = with_parquet(pristine, lambda t: replace_cell(t, "text", row, "never ordered"))
    assert failures(files, evidence.trust, workers) == [("tables", PARQUET, seq)]


@pytest.mark.parametrize(
    ("name", "value"),
    [("event_time", 0), ("flags", ["forged"]), ("error_code", 999), ("leaf_hash", b"\x00" * 32)],
)
def test_parquet_other_columns_changed_are_caught(
    evidence, pristine, name: str, value: object
) -> None:  # type: ignore[no-untyped-def]
    files = with_parquet(pristine, lambda t: replace_cell(t, name, 2, value))
    table = pq.read_table(pa.BufferReader(pristine[PARQUET]))
    assert failures(files, evidence.trust) == [("tables", PARQUET, table.column("seq")[2].as_py())]


def test_parquet_rows_swapped_are_caught(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    def swap(table: pa.Table) -> pa.Table:
        order = list(range(table.num_rows))
        order[0], order[1] = order[1], order[0]
        return table.take(order)

    found = failures(with_parquet(pristine, swap), evidence.trust)
    assert [(step, key) for step, key, _ in found] == [("tables", PARQUET)]


def test_parquet_row_dropped_is_caught(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    found = failures(with_parquet(pristine, lambda t: t.slice(1)), evidence.trust)
    assert [(step, key) for step, key, _ in found] == [("tables", PARQUET)]


def test_parquet_column_missing_is_caught(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    found = failures(with_parquet(pristine, lambda t: t.drop_columns(["detail"])), evidence.trust)
    assert [(step, key) for step, key, _ in found] == [("tables", PARQUET)]


def test_row_by_row_comparison_settles_when_arrow_refuses_the_records(  # type: ignore[no-untyped-def]
    evidence, pristine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise pa.ArrowInvalid("refused")

    monkeypatch.setattr(verify_module.tables.pa_json, "read_json", refuse)
    # No false alarm: every column is compared row by row and found equal ...
    assert verify_bundle(pristine, trust=evidence.trust).ok
    # ... and a real difference is still named.
    files = with_parquet(pristine, lambda t: replace_cell(t, "status", 3, "forged"))
    table = pq.read_table(pa.BufferReader(pristine[PARQUET]))
    assert table.column("status")[3].as_py() != "forged"
    assert failures(files, evidence.trust) == [("tables", PARQUET, table.column("seq")[3].as_py())]


def test_a_worker_that_dies_is_replaced_by_rendering_here(  # type: ignore[no-untyped-def]
    evidence, pristine, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = os.getpid()
    real_run = verify_module.worker.Worker._run
    ran_here = []

    def dying_run(self, parsed, *, rendered: bool):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            os._exit(3)
        ran_here.append(rendered)
        return real_run(self, parsed, rendered=rendered)

    monkeypatch.setattr(verify_module.worker.Worker, "_run", dying_run)
    files = dict(pristine)
    files[TRANSCRIPT] = files[TRANSCRIPT].replace(b"Yes, ready for pickup", b"No, not ready")
    assert failures(reseal(files), evidence.trust, workers=2) == [("transcripts", TRANSCRIPT, None)]
    assert ran_here == [True]


def test_failures_are_reported_in_step_order(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    files["extra.txt"] = b"not listed"  # step files
    lines = files["records/records.jsonl"].split(b"\n")
    lines[0] = lines[0].replace(b'"seq":', b'"seq" :')  # step records: not canonical
    files["records/records.jsonl"] = b"\n".join(lines)
    for workers in (1, 2):
        steps = [step for step, _, _ in failures(files, evidence.trust, workers)]
        assert "files" in steps and "records" in steps
        assert steps == sorted(steps, key=STEPS.index)


def test_the_bundle_table_has_no_unprovable_column(pristine) -> None:  # type: ignore[no-untyped-def]
    table = pq.read_table(pa.BufferReader(pristine[PARQUET]))
    assert "chain_hash" not in table.column_names and "leaf_hash" in table.column_names


def test_an_added_column_is_caught(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    def add(table: pa.Table) -> pa.Table:
        return table.append_column("note", pa.array(["made up"] * table.num_rows))

    found = failures(with_parquet(pristine, add), evidence.trust)
    assert found == [("tables", PARQUET, None)]


def test_an_older_bundles_chain_hash_is_ignored_and_said_so(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    def older(table: pa.Table) -> pa.Table:
        return table.append_column(
            pa.field("chain_hash", pa.binary(32)),
            pa.array([b"\x00" * 32] * table.num_rows, pa.binary(32)),
        )

    report = verify_bundle(with_parquet(pristine, older), trust=evidence.trust)
    assert report.ok and verify_module.CHAIN_HASH_WARNING in report.warnings


def test_a_record_with_an_integer_beyond_2_53_is_named_not_a_crash(evidence, pristine) -> None:  # type: ignore[no-untyped-def]
    files = dict(pristine)
    lines = files["records/records.jsonl"].split(b"\n")
    row = orjson.loads(lines[0])
    row["raw_line"] = 2**60
    lines[0] = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    files["records/records.jsonl"] = b"\n".join(lines)
    for workers in (1, 2):
        found = failures(reseal(files), evidence.trust, workers)
        assert ("records", "records/records.jsonl", row["seq"]) in found


def test_a_stuck_worker_is_replaced_by_rendering_here(  # type: ignore[no-untyped-def]
    evidence, pristine, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = os.getpid()
    real_run = verify_module.worker.Worker._run

    def stuck_run(self, parsed, *, rendered: bool):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            time.sleep(60)
        return real_run(self, parsed, rendered=rendered)

    monkeypatch.setattr(verify_module.worker.Worker, "_run", stuck_run)
    monkeypatch.setattr(verify_module.worker, "WORKER_PATIENCE_S", 0.5)
    files = dict(pristine)
    files[TRANSCRIPT] = files[TRANSCRIPT].replace(b"Yes, ready for pickup", b"No, not ready")
    started = time.monotonic()
    assert failures(reseal(files), evidence.trust, workers=2) == [("transcripts", TRANSCRIPT, None)]
    assert time.monotonic() - started < 30
