"""Verify-on-query, steps 5 (``values``) and 5b (``latest``): what the rows show is what was sealed.

Split from :mod:`coexarchive.query.verify_rows`, which proves the rows themselves; where each
shown column comes from is :mod:`coexarchive.query.provenance`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow.dataset as ds

from coexarchive.query.provenance import DERIVED, JOINS, MEMBER_OF, NOT_DERIVED, Join, Row
from coexarchive.records import RECORD_SCHEMA

if TYPE_CHECKING:
    from coexarchive.query.verify_rows import RowVerification, _ChainProof
    from coexarchive.query.views import ArchiveCatalog

__all__ = ["KEY_COLUMNS", "check_latest", "compare"]

KEY_COLUMNS = ("chain_id", "seq")
_SEALED = frozenset(RECORD_SCHEMA.names)


def _same(shown: Any, sealed: Any) -> bool:
    if isinstance(shown, bytes | bytearray) and isinstance(sealed, bytes | bytearray):
        return bytes(shown) == bytes(sealed)
    if type(shown) is bool or type(sealed) is bool:
        return type(shown) is type(sealed) and shown == sealed
    if isinstance(shown, str) and not isinstance(sealed, str) and sealed is not None:
        # JSON a view extracted (access_log.params) is shown as text.
        try:
            return bool(orjson.loads(shown) == sealed)
        except orjson.JSONDecodeError:
            return False
    return bool(shown == sealed)


def compare(
    names: Sequence[str],
    columns: Sequence[list[Any]],
    keys: tuple[int, int],
    joins: Sequence[Join],
    proofs: Mapping[str, _ChainProof],
    outcome: RowVerification,
) -> None:
    """Step 5: each shown value equals the proven record's (or the joined record's) value."""
    joined_columns = {column: join for join in joins for column in join.shown}
    compared: set[str] = set()
    not_verified: set[str] = set()
    not_derived: set[str] = set()
    joined_seen: set[tuple[str, int]] = set()
    for at, name in enumerate(names):
        if at in keys:
            continue
        if name in joined_columns or name in _SEALED or name in DERIVED or name in MEMBER_OF:
            continue
        if any(name in join.shown for join in JOINS) or name in {j.seq_column for j in JOINS}:
            continue
        not_verified.add(name)
    for name in names:
        for join in JOINS:
            if name in join.shown and join not in joins:
                # Joined from a record the result does not name (for current flags: without
                # flags_seq, which record's flags these are is unknown).
                not_verified.add(name)
    rows = len(columns[0]) if columns else 0
    for index in range(rows):
        chain_id, seq = columns[keys[0]][index], columns[keys[1]][index]
        if chain_id is None or seq is None:
            continue
        proof = proofs.get(str(chain_id))
        if proof is None or int(seq) not in proof.sealed:
            continue  # not proven: already a failure
        sealed = proof.sealed[int(seq)]
        for at, name in enumerate(names):
            if at in keys or name in not_verified or name in joined_columns:
                continue
            shown = columns[at][index]
            if name in _SEALED:
                expected, ok = sealed[name], _same(shown, sealed[name])
            elif name in DERIVED:
                expected = DERIVED[name](sealed)
                if expected is NOT_DERIVED:
                    not_derived.add(name)  # e.g. an alias `rows` over a message: unproven
                    continue
                ok = _same(shown, expected)
            elif name in MEMBER_OF:
                expected = sealed[MEMBER_OF[name]]
                ok = shown in expected
            else:
                continue
            compared.add(name)
            if not ok:
                proof.fail(
                    "values",
                    f"record {sealed['record_id']}: column {name} shows a value the sealed record "
                    "does not hold (computed, substituted or altered after reading)",
                    int(seq),
                )
        for join in joins:
            _compare_join(names, columns, index, join, sealed, proof, compared, joined_seen)
    not_verified |= not_derived
    shown = dict.fromkeys(names)
    outcome.compared = [
        n for n in shown if n in compared and n not in not_verified and n not in KEY_COLUMNS
    ]
    outcome.not_verified = [n for n in shown if n in not_verified]
    outcome.joined = len(joined_seen)


def _compare_join(
    names: Sequence[str],
    columns: Sequence[list[Any]],
    index: int,
    join: Join,
    row: Row,
    proof: _ChainProof,
    compared: set[str],
    joined_seen: set[tuple[str, int]],
) -> None:
    seq = int(row["seq"])
    joined_seq = columns[names.index(join.seq_column)][index]
    shown = {name: columns[at][index] for at, name in enumerate(names) if name in join.shown}
    if joined_seq is None and join.own_when_absent:
        _compare_source(join, shown, row, row, proof, compared, seq)
        return
    if joined_seq is None:
        present = sorted(name for name, value in shown.items() if value is not None)
        if present:
            proof.fail(
                "values",
                f"record {row['record_id']}: {', '.join(present)} shown without a joined record "
                f"({join.seq_column} is empty)",
                seq,
            )
        compared.update(shown)
        return
    joined = proof.sealed.get(int(joined_seq))
    if joined is None:
        return  # not proven: already a failure
    joined_seen.add((proof.chain_id, int(joined_seq)))
    compared.add(join.seq_column)
    if not join.belongs(row, joined):
        proof.fail(
            "values",
            f"record {row['record_id']}: {join.seq_column} {joined_seq} names a record that "
            "does not belong to this row",
            seq,
        )
    _compare_source(join, shown, row, joined, proof, compared, seq)


def _compare_source(
    join: Join,
    shown: Mapping[str, Any],
    row: Row,
    source: Row,
    proof: _ChainProof,
    compared: set[str],
    seq: int,
) -> None:
    """Each of ``shown`` equals (or is a member of) its field of ``source``, the joined record
    or, for a join that falls back to the row's own values, the row itself."""
    where = (
        "the sealed record"
        if source is row
        else f"the joined record {source['record_id']} (seq {source['seq']})"
    )
    for name, value in shown.items():
        compared.add(name)
        if name in join.fields:
            ok = _same(value, source[join.fields[name]])
        else:
            ok = value in source[join.members[name]]
        if not ok:
            proof.fail(
                "values",
                f"record {row['record_id']}: column {name} differs from {where}",
                seq,
            )


_ASSESSMENT = "assessment"


def check_latest(
    catalog: ArchiveCatalog,
    names: Sequence[str],
    columns: Sequence[list[Any]],
    keys: tuple[int, int],
    proofs: Mapping[str, _ChainProof],
) -> None:
    """Step 5 for current flags: ``flags_seq`` names each row's *latest* assessment (or none).

    Assessments are found in the segments whose manifests count any (``coexarchive verify``
    checks those counts against the records), each is proven like a row, and the highest-seq
    one that names the row must be the one shown: showing an earlier assessment's flags, or the
    row's own flags beside a NULL ``flags_seq``, hides the current ones and fails.
    """
    at = names.index("flags_seq")
    for chain_id, proof in sorted(proofs.items()):
        shown: dict[int, Any] = {}
        for chain, seq, flags_seq in zip(
            columns[keys[0]], columns[keys[1]], columns[at], strict=True
        ):
            if str(chain) == chain_id and seq is not None and int(seq) in proof.sealed:
                shown[int(seq)] = flags_seq
        if not shown:
            continue
        by_record = {str(proof.sealed[seq]["record_id"]): seq for seq in shown}
        latest = _latest_assessments(proof, set(by_record))
        proof.prove_more(set(latest.values()))
        for record_id, seq in sorted(by_record.items(), key=lambda item: item[1]):
            current = latest.get(record_id)
            sealed = proof.sealed.get(current) if current is not None else None
            if current is not None and (
                sealed is None
                or sealed["kind"] != _ASSESSMENT
                or sealed["ref_record_id"] != record_id
            ):
                continue  # not proven, or not what it seemed: already a failure, or not one
            if shown[seq] != current:
                what = f"assessment seq {current}" if current is not None else "its own"
                proof.fail(
                    "latest",
                    f"record {record_id}: flags shown are not its current flags ({what}; "
                    f"flags_seq shows {shown[seq]})",
                    seq,
                )


def _latest_assessments(proof: _ChainProof, record_ids: set[str]) -> dict[str, int]:
    """record id → seq of the latest assessment naming it, from the segments holding any.

    Each segment must hold as many assessments as its manifest counts: a row whose ``kind`` was
    rewritten would otherwise drop out unseen (its leaf is checked only if it is proven).
    """
    holding = [
        m
        for m in proof.catalog.manifests(proof.chain_id)
        if m.kinds.get(_ASSESSMENT, 0) > 0 or (not m.kinds and m.record_count > 0)
    ]
    if not holding or not record_ids:
        return {}
    table = proof.catalog.dataset(holding).to_table(
        columns=["seq", "ref_record_id"], filter=ds.field("kind") == _ASSESSMENT
    )
    seqs = table.column("seq").to_pylist()
    for manifest in holding:
        found = sum(1 for seq in seqs if manifest.first_seq <= seq <= manifest.last_seq)
        if manifest.kinds and found != manifest.kinds.get(_ASSESSMENT, 0):
            proof.fail(
                "latest",
                f"segment holds {found} assessment(s) where its manifest counts "
                f"{manifest.kinds.get(_ASSESSMENT, 0)}: records were altered (run "
                "`coexarchive verify`)",
                key=manifest.segment.key,
            )
    latest: dict[str, int] = {}
    for seq, ref in zip(seqs, table.column("ref_record_id").to_pylist(), strict=True):
        if ref in record_ids and seq > latest.get(ref, -1):
            latest[ref] = seq
    return latest
