"""Step 7: each record's leaf is in its chain's signed tree at its index."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from coexarchive.errors import FormatError, ProofError
from coexarchive.export._rows import Row
from coexarchive.export.proofs import TLOG_PROOF_HEADER, decode_proof_hash, parse_tlog_proof
from coexarchive.export.verify_bundle.report import (
    RECORDS,
    BundleReport,
    record_failure,
)
from coexarchive.export.verify_bundle.trust import Chain
from coexarchive.seal.merkle import inclusion_fold

__all__ = ["ProofChecker", "proofs_step"]

_HEADER = TLOG_PROOF_HEADER.encode()


def proofs_step(
    files: Mapping[str, bytes],
    chains: Mapping[str, Chain],
    rows: Sequence[Row | None],
    leaves: Sequence[bytes],
    report: BundleReport,
) -> None:
    proofs: dict[tuple[str, int], tuple[str, int, dict[str, Any]]] = {}
    for chain in chains.values():
        data = files.get(chain.proofs_path)
        if data is None:
            report.fail(
                "proofs", "proof file is missing", key=chain.proofs_path, chain=chain.chain_id
            )
            continue
        for number, line in enumerate(data.splitlines(), start=1):
            try:
                entry = orjson.loads(line)
                slot = (str(entry["chain_id"]), int(entry["seq"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                report.fail("proofs", f"line {number} is not a proof entry", key=chain.proofs_path)
                continue
            if slot[0] != chain.chain_id or slot in proofs:
                report.fail(
                    "proofs",
                    f"line {number}: misplaced or repeated proof",
                    key=chain.proofs_path,
                    chain=slot[0],
                    seq=slot[1],
                )
                continue
            proofs[slot] = (chain.proofs_path, number, entry)
    checker = ProofChecker()
    for row, leaf, result in zip(rows, leaves, report.records, strict=True):
        if row is None:
            continue
        slot = (row["chain_id"], row["seq"])
        found = proofs.pop(slot, None)
        chain_entry = chains.get(row["chain_id"])
        if found is None or chain_entry is None:
            record_failure(report, result, "proofs", "no inclusion proof for this record", RECORDS)
            continue
        path, number, entry = found
        if entry.get("leaf_hash") != leaf.hex():
            record_failure(
                report,
                result,
                "records",
                f"line {result.line}: the record's bytes do not hash to the leaf hash its proof "
                f"names ({path} line {number}): the record was altered",
                RECORDS,
            )
            continue
        problem = checker.check(str(entry.get("tlog_proof", "")), leaf, row["seq"], chain_entry)
        if problem is not None:
            record_failure(report, result, "proofs", f"line {number}: {problem}", path)
    for (chain_id, seq), (path, number, _entry) in sorted(proofs.items()):
        report.fail(
            "proofs",
            f"line {number}: proof for a record the bundle does not hold",
            key=path,
            chain=chain_id,
            seq=seq,
        )


class ProofChecker:
    """Folds tlog-proof heads to their chain's signed root, sharing the work between neighbours.

    The fold is :func:`coexarchive.seal.merkle.inclusion_fold`, the archive's own. Its state
    ``(fn, sn, hash)`` and the audit-path lines still to come determine where it ends. ``sn``
    strictly falls along a fold, so per chain and ``sn`` the checker remembers the last state it
    saw on a path that reached the signed root, with that path's remaining lines. A proof
    arriving at the same state with byte-identical remaining lines would fold to the same root,
    so it stops there. Every line of every proof is thus either folded or compared byte for
    byte with lines that were folded, and every proof still ends at the root; neighbouring
    leaves cost about two hashes each instead of ``log2(size)``.
    """

    def __init__(self) -> None:
        self.verified: dict[tuple[str, int], tuple[int, bytes, list[bytes], int]] = {}

    def check(self, text: str, leaf: bytes, seq: int, chain: Chain) -> str | None:
        """Why the tlog-proof head ``text`` does not prove ``leaf`` at ``seq``, or None."""
        raw = text.encode("utf-8")
        head, blank, rest = raw.partition(b"\n\n")
        lines = head.split(b"\n")
        if rest:
            return (
                "tlog-proof has text after its blank line: a bundle's proofs leave the "
                "checkpoint out (it is in checkpoints/)"
            )
        if not blank or len(lines) < 2 or lines[0] != _HEADER:
            try:
                parse_tlog_proof(raw)
            except FormatError as exc:
                return f"malformed tlog-proof ({exc})"
            return "tlog-proof with extra data is not produced by coexarchive"
        if lines[1] != b"index %d" % seq:
            return f"tlog-proof names {lines[1].decode(errors='replace')!r}, the record is {seq}"
        if chain.checkpoint is None:
            return "the chain's checkpoint did not verify"
        checkpoint = chain.checkpoint
        return self.fold(chain.chain_id, leaf, seq, checkpoint.size, lines, checkpoint.root_hash)

    def fold(
        self, chain_id: str, leaf: bytes, index: int, size: int, lines: list[bytes], root: bytes
    ) -> str | None:
        """Why the audit path ``lines[2:]`` (base64 lines) does not lead to ``root``, or None."""
        if not 0 <= index < size:
            return f"leaf index {index} is outside a tree of size {size}"
        verified = self.verified
        visited: list[tuple[int, int, bytes, int]] = []
        line = 2
        sn, result = size - 1, leaf
        try:
            for fn, sn, result in inclusion_fold(
                leaf, index, size, map(decode_proof_hash, lines[2:])
            ):
                seen = verified.get((chain_id, sn))
                if (
                    seen is not None
                    and seen[0] == fn
                    and seen[1] == result
                    and seen[2][seen[3] :] == lines[line:]
                ):
                    break
                visited.append((sn, fn, result, line))
                line += 1
            else:
                if sn != 0:
                    return "inclusion proof is too short"
                if result != root:
                    return "inclusion proof does not reach the signed root"
        except ProofError:
            return "inclusion proof is too long"
        except FormatError as exc:
            return f"malformed tlog-proof hash line ({exc})"
        for state_sn, state_fn, state_result, state_line in visited:
            verified[(chain_id, state_sn)] = (state_fn, state_result, lines, state_line)
        return None
