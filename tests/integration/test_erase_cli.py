"""`coexarchive erase` end to end on the embedded S3, through the CLI as an operator runs it."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from coexarchive import cli
from coexarchive.archive_head import write_head_after
from coexarchive.datakeys import enable_for_new_archive, open_store
from coexarchive.export.bundle import read_bundle
from coexarchive.seal.personal import ERASED, PersonalSealer
from coexarchive.segments import ChainWriter
from coexarchive.store import EmbeddedS3, S3Store
from support.archive import (
    ARCHIVE,
    START_MS,
    make_records,
    short_policy,
    signer,
    use_cli_environment,
)

pytestmark = pytest.mark.integration

CHAIN = "900000000000021"
ERASED_CUSTOMER = "447700900002"
KEPT_CUSTOMER = "447700900003"


@pytest.fixture
def archive(
    s3_store: S3Store, seaweed: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> S3Store:
    key = signer()
    use_cli_environment(monkeypatch, seaweed, s3_store, key, tmp_path, auditor="dpo@firm")
    monkeypatch.setenv("COEXARCHIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COEXARCHIVE_DATA_KEYS", str(tmp_path / "data-keys"))
    monkeypatch.setenv("COLUMNS", "200")
    assert enable_for_new_archive(s3_store, now=START_MS, policy=short_policy())
    keys = open_store(tmp_path / "data-keys", kms_key_id=None, create=True, clock=lambda: 0)
    writer = ChainWriter(
        s3_store,
        CHAIN,
        signer=key,
        archive_name=ARCHIVE,
        policy=short_policy(),
        personal=PersonalSealer.for_store(keys),
    )
    records = [replace(r, raw_key=None, raw_line=None) for r in make_records(CHAIN, 21)]
    results = writer.append(records)
    write_head_after(s3_store, [r.manifest for r in results], signer=key, archive_name=ARCHIVE)
    return s3_store


def erased_texts() -> list[str]:
    return sorted(
        {r.text or "" for r in make_records(CHAIN, 21) if r.customer_id == ERASED_CUSTOMER}
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def everything_stored(store: S3Store, *directories: Path) -> str:
    """Every object of the bucket (Parquet decoded, zstd decompressed) and every local file."""
    parts = []
    for key in sorted(store.list("")):
        data = store.get(key)
        if key.endswith(".parquet"):
            parts.append(str(pq.read_table(io.BytesIO(data)).to_pylist()))
        elif key.endswith(".zst"):
            parts.append(zstandard.ZstdDecompressor().decompress(data).decode("utf-8", "replace"))
        else:
            parts.append(data.decode("utf-8", "replace"))
    for directory in directories:
        for path in directory.rglob("*"):
            if path.is_file():
                parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def test_erase_end_to_end(
    archive: S3Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tmp_path / "before.zip"
    code, out = run(
        capsys, "export", "--matter", "M", "--customer", ERASED_CUSTOMER, "--out", str(before)
    )
    assert code == 0, out
    assert run(capsys, "search", "reindex")[0] == 0
    code, out = run(capsys, "search", "pedido", "customer:" + ERASED_CUSTOMER)
    assert code == 0 and "(0 rows)" not in out, out

    # A legal hold stops it, and nothing is destroyed.
    assert run(capsys, "hold", "place", "--matter", "LIT-1", "--customer", ERASED_CUSTOMER)[0] == 0
    code, out = run(capsys, "erase", "--customer", ERASED_CUSTOMER, "--reason", "DSR-9")
    assert code != 0 and "legal hold (LIT-1)" in out and "nothing was destroyed" in out
    assert ERASED not in run(capsys, "report", "transcript", "--customer", ERASED_CUSTOMER)[1]
    assert run(capsys, "hold", "release", "--matter", "LIT-1")[0] == 0

    code, out = run(capsys, "erase", "--customer", "+" + ERASED_CUSTOMER, "--reason", "DSR-9")
    assert code == 0, out
    assert "erased" in out and "chain `erasures`" in out

    code, out = run(capsys, "report", "transcript", "--customer", ERASED_CUSTOMER)
    assert code == 0 and ERASED in out
    assert not any(text in out for text in erased_texts())
    code, out = run(capsys, "search", "pedido", "customer:" + ERASED_CUSTOMER)
    assert code == 0 and "(0 rows)" in out, out
    code, out = run(capsys, "verify")
    assert code == 0 and "every check held" in out, out
    code, out = run(capsys, "report", "transcript", "--customer", KEPT_CUSTOMER, "--verify")
    assert code == 0 and "verified 3 row(s)" in out and ERASED not in out, out
    code, out = run(capsys, "verify-bundle", str(before), "--trust", str(tmp_path / "trust.txt"))
    assert code == 0 and "OK: every file, record, proof and checkpoint verified" in out, out

    after = tmp_path / "after.zip"
    code, out = run(
        capsys, "export", "--matter", "M2", "--customer", ERASED_CUSTOMER, "--out", str(after)
    )
    assert code == 0, out
    code, out = run(capsys, "verify-bundle", str(after), "--trust", str(tmp_path / "trust.txt"))
    assert code == 0, out

    # Nothing of what the customer said is left: not in the bucket, the search index, the data
    # keys, or the new bundle.
    stored = everything_stored(archive, tmp_path / "home", tmp_path / "data-keys")
    stored += "".join(data.decode("utf-8", "replace") for data in read_bundle(after).values())
    for text in erased_texts():
        assert text not in stored


POLICY = """\
format: coexarchive.policy/v1
name: orders
version: 1
rules:
  - {type: lexicon, id: orders-pt, language: pt, terms: [pedido]}
"""
NOTE = "Customer asked where her pedido is: routine, no action"


def test_erase_reaches_supervision_hits_and_review_notes(
    archive: S3Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "orders.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    assert run(capsys, "policy", "import", str(policy))[0] == 0
    code, out = run(capsys, "policy", "rescan", "--policy", "orders")
    assert code == 0 and "new sealed" in out, out
    code, out = run(capsys, "review", "list", "--json")
    assert code == 0, out
    hits = json.loads(out[out.index("[") : out.rindex("]") + 1])
    mine = [h for h in hits if h["customer"] == ERASED_CUSTOMER]
    assert len(mine) == 1 and [s["words"] for s in mine[0]["spans"]] == ["pedido"]
    kept = [h for h in hits if h["customer"] == KEPT_CUSTOMER] or [
        h for h in hits if h["customer"] != ERASED_CUSTOMER
    ]
    assert kept
    code, out = run(
        capsys, "review", "decide", mine[0]["id"], "--disposition", "no_action", "--note", NOTE
    )
    assert code == 0, out
    assert NOTE not in everything_stored(archive)  # sealed under the customer's key already

    code, out = run(capsys, "erase", "--customer", ERASED_CUSTOMER, "--reason", "DSR-10")
    assert code == 0, out
    code, out = run(capsys, "review", "list", "--state", "all", "--json")
    assert code == 0, out
    after = {h["id"]: h for h in json.loads(out[out.index("[") : out.rindex("]") + 1])}
    erased = after[mine[0]["id"]]
    assert erased["customer"] == ERASED and erased["spans"] == [] and erased["note"] == ERASED
    assert erased["policy"] == "orders@1" and erased["disposition"] == "no_action"
    assert after[kept[0]["id"]]["spans"] == kept[0]["spans"]
    code, out = run(capsys, "review", "report", "activity")
    assert code == 0, out
    code, out = run(capsys, "review", "show", mine[0]["id"])
    assert code == 0 and ERASED in out and NOTE not in out and "pedido" not in out, out
    code, out = run(capsys, "verify")
    assert code == 0 and "every check held" in out, out
    stored = everything_stored(archive, tmp_path / "home", tmp_path / "data-keys")
    assert NOTE not in stored
    assert f'"customer":"{ERASED_CUSTOMER}","flags"' not in stored
    for text in erased_texts():
        assert text not in stored
