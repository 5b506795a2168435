"""retention, dispose, hold and verify through the command line, on the embedded S3."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from export.test_disposition import HELD, KEY, build

from coexarchive import cli
from coexarchive.store import EmbeddedS3, S3Store
from support.archive import DAY_MS, use_cli_environment

pytestmark = pytest.mark.integration


def test_retention_report_then_dry_run_then_disposition_then_verify(
    s3_store: S3Store,
    seaweed: EmbeddedS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_cli_environment(monkeypatch, seaweed, s3_store, KEY, tmp_path, auditor="rm@firm")
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    expired_ms = int(expires.replace(year=expires.year - 1).timestamp() * 1000)
    free, held, _ = build(s3_store, expired_ms, int(time.time() * 1000) - DAY_MS)

    assert cli.main(["hold", "place", "--matter", "M-1", "--customer", "+" + HELD]) == 0
    assert cli.main(["hold", "place", "--matter", "M-2", "--customer", "+1 555 0100 999"]) == 0
    out = capsys.readouterr().out
    assert "matter M-2: prospective hold recorded" in out and out.count("\n") == 2
    assert cli.main(["hold", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "PROSPECTIVE" in listed[1] and "M-2" in listed[1]
    assert f"holding {held.record_count + 1} record(s)" in listed[0]  # + one in the live segment

    assert cli.main(["retention", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    month = expires.strftime("%Y-%m")
    assert sum(r["records"] for r in rows if r["month"] == month) == (
        free.record_count + held.record_count
    )
    assert {m for r in rows for m in r["matters"]} == {"M-1"}

    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1.5)
    until = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cli.main(["dispose", "--until", until]) == 0
    out = capsys.readouterr().out
    assert f"dry run: 1 segment(s), {free.record_count} record(s)" in out
    assert "kept for matter(s) M-1" in out
    assert s3_store.exists(free.segment.key)

    assert cli.main(["dispose", "--until", until, "--execute", "--reason", "R-4"]) == 0
    out = capsys.readouterr().out
    assert f"disposed of 1 segment(s), {free.record_count} record(s)" in out
    assert not s3_store.exists(free.segment.key) and s3_store.exists(held.segment.key)
    assert cli.main(["verify"]) == 0
    local = capsys.readouterr().out
    assert f"; {free.record_count} records disposed of under a signed disposition" in local
    # The verify job on a Beam runner accepts the disposition too, and reports its records.
    assert cli.main(["verify", "--runner", "FnApiRunner", "--workers", "2"]) == 0
    job = capsys.readouterr().out
    disposed_line = next(line for line in local.splitlines() if "records disposed of" in line)
    assert disposed_line in job.splitlines()
    assert cli.main(["dispose", "--until", until, "--execute"]) == 0  # nothing left: no-op
    assert "disposed of 0 segment(s)" in capsys.readouterr().out
