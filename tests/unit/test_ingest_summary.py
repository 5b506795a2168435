"""What ingest says it did: a summary that adds up, honest under races, and one-line failures."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from coexarchive._internal.beam_failures import expected_failure
from coexarchive.cli import main
from coexarchive.commands import upload_raw
from coexarchive.errors import (
    ObjectExistsError,
    ObjectMissingError,
    PipelineError,
    SealError,
)
from coexarchive.records import Record
from coexarchive.retention import RetentionPolicy
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore
from coexarchive.store.memory import MemoryStore
from coexarchive.store.s3 import S3Store
from pipelines.ingest import (
    IngestSummary,
    SealSpec,
    StoreSpec,
    normalize_object,
    run_pipeline,
    seal_chain,
)
from support.archive import signer
from support.ingest_unit import (
    AUTH,
    SECRET,
    landing,
    moto_locked_store,
    signing_key_file,
    webhook_body,
)

BUCKET = "ingest-summary"
CHAIN = "900000000000001"
POLICY = RetentionPolicy.parse("GOVERNANCE:1")


def body(*messages: tuple[str, str]) -> bytes:
    """A messages webhook from one customer: (wamid, text) pairs."""
    return webhook_body(messages)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
    with moto_locked_store(monkeypatch, BUCKET) as store:
        yield store


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    return signing_key_file(tmp_path)


def ingest(keys: Sequence[str], key_file: str) -> IngestSummary:
    return run_pipeline(
        keys,
        StoreSpec(BUCKET, region_name="us-east-1"),
        SealSpec(key_file, "coexarchive.test", "GOVERNANCE:1"),
        PipelineOptions(["--runner=FnApiRunner"]),
        auth=AUTH,
    )


OBJECTS = [
    landing(0, body(("wamid.A1", "hello"), ("wamid.A2", "STOP")), body(("wamid.A1", "hello"))),
    landing(2, body(("wamid.A3", "thanks")), b"{not json"),
]


def test_every_input_event_is_accounted_for_and_derived_records_are_named(
    s3: S3Store, key_file: str
) -> None:
    upload_raw(s3, OBJECTS, policy=POLICY)
    summary = ingest([key for key, _ in OBJECTS], key_file)
    assert (summary.events, summary.sealed, summary.duplicates) == (4, 3, 1)
    assert summary.quarantined == 1 and summary.concurrent == 0
    assert summary.unaccounted() == 0
    # The opt-out keyword derives a consent event: sealed, but not counted as input.
    assert summary.derived == {"consent_event": 1}
    text = "\n".join(summary.lines())
    assert "input events:                 5" in text
    assert "consent_event 1" in text
    assert "unaccounted" not in text

    again = ingest([key for key, _ in OBJECTS], key_file)
    assert (again.events, again.sealed, again.duplicates, again.derived) == (4, 0, 4, {})
    assert again.unaccounted() == 0


def test_a_summary_that_does_not_add_up_says_so() -> None:
    broken = IngestSummary(events=10, sealed=7, duplicates=2)
    assert broken.unaccounted() == 1
    assert any("unaccounted events" in line for line in broken.lines())


class StaleView:
    """A store whose listings hide what another run committed after this run looked.

    It stands for the window in which two runs of the same input both read the chain head
    before either committed: the late one then writes byte-identical objects.
    """

    def __init__(self, shared: MemoryStore) -> None:
        self.shared = shared
        self.hidden = set(shared.unsafe_objects)

    def list(self, prefix: str) -> Iterator[str]:
        return (key for key in self.shared.list(prefix) if key not in self.hidden)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shared, name)


def records_of(*objects: tuple[str, bytes]) -> list[Record]:
    records: list[Record] = []
    for key, data in objects:
        by_chain, _ = normalize_object(key, data, auth=AUTH)
        records += by_chain[CHAIN]
    return records


def seal(store: ObjectStore, records: list[Record]) -> dict[str, object]:
    return seal_chain(
        store,
        CHAIN,
        records,
        signer=signer(),
        spec=SealSpec("unused", "coexarchive.test", "GOVERNANCE:1"),
        policy=POLICY,
    )


def test_two_racing_runs_do_not_both_claim_the_same_records() -> None:
    shared = MemoryStore()
    records = records_of(*OBJECTS)
    first = seal(shared, records)
    # The late run read the (empty) chain head before the first one committed.
    second = seal(cast(ObjectStore, StaleView(shared)), records)
    assert first["sealed"] == 3 and first["derived"] == {"consent_event": 1}
    assert first["segments"] == 1
    # The late run wrote nothing new: every record it sealed was already committed, identically.
    assert second["sealed"] == 0 and second["derived"] == {} and second["segments"] == 0
    assert second["concurrent"] == 3
    assert first["tree_size"] == second["tree_size"]


def test_a_run_that_sealed_nothing_new_claims_nothing() -> None:
    store = MemoryStore()
    records = records_of(*OBJECTS)
    seal(store, records)
    again = seal(store, records)
    assert (again["sealed"], again["concurrent"], again["segments"]) == (0, 0, 0)
    assert again["duplicates"] == len(records)


def corrupt_the_chain_head(s3: S3Store) -> None:
    """A manifest that does not parse, where the ingest job must read the chain's head."""
    s3.put(layout.manifest_key(CHAIN, 0), b"{not a manifest", content_type="application/json")


def test_an_expected_failure_inside_the_job_is_raised_as_itself(
    s3: S3Store, key_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    upload_raw(s3, OBJECTS, policy=POLICY)
    gone = landing(9, body(("wamid.Z", "gone")))[0]  # listed, then deleted before it was read
    with caplog.at_level(logging.ERROR), pytest.raises(ObjectMissingError) as info:
        ingest([*(key for key, _ in OBJECTS), gone], key_file)
    assert info.value.key == gone and "[while running" not in str(info.value)
    # Beam's traceback log of it is held back: the caller reports the error in one line.
    assert not [r for r in caplog.records if r.name.startswith("apache_beam") and r.exc_info]


def test_a_chain_held_back_for_an_unsigned_tail_is_accounted_for() -> None:
    store = MemoryStore()
    store.put(layout.manifest_key(CHAIN, 0), b"{not a manifest")
    records = records_of(*OBJECTS)
    outcome = seal(store, records)
    assert outcome["held_back"] == len(records) and outcome["sealed"] == 0
    summary = IngestSummary(events=len(records), held_back=len(records))
    assert summary.unaccounted() == 0
    assert any("held back:" in line for line in summary.lines())


def test_the_cli_reports_a_failed_ingest_in_one_line(
    s3: S3Store,
    key_file: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upload_raw(s3, OBJECTS, policy=POLICY)
    corrupt_the_chain_head(s3)
    monkeypatch.setenv("COEXARCHIVE_BUCKET", BUCKET)
    monkeypatch.setenv("COEXARCHIVE_APP_SECRETS", SECRET.decode())
    monkeypatch.delenv("COEXARCHIVE_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    code = main(["ingest", "--key", key_file, "--retention", "GOVERNANCE:1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and "apache_beam" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("coexarchive: error: ")


def beam_remote_text(error: str) -> str:
    """What Beam raises from a worker process: the remote traceback, as text."""
    return (
        "Traceback (most recent call last):\n"
        '  File "apache_beam/runners/common.py", line 1512, in process\n'
        '  File "pipelines/ingest.py", line 301, in process\n'
        f"{error} [while running 'Ingest/SealChain']\n"
    )


def test_an_expected_failure_from_a_worker_process_is_recovered_from_its_text() -> None:
    text = beam_remote_text(
        "coexarchive.errors.SealError: chain 9: another writer committed seq 0 first; "
        "re-run the job"
    )
    found = expected_failure(RuntimeError(text))
    assert isinstance(found, PipelineError) and found.error_type == "SealError"
    assert str(found) == "chain 9: another writer committed seq 0 first; re-run the job"


@pytest.mark.parametrize(
    "error",
    [
        "ValueError: coexarchive.errors.SealError: not the error line",
        "KeyError: 'x'",
        "evil.module.SealError: a lookalike from outside the project",
    ],
)
def test_other_failures_from_a_worker_process_stay_unexpected(error: str) -> None:
    assert expected_failure(RuntimeError(beam_remote_text(error))) is None


def test_the_original_error_is_found_behind_beams_annotated_copy() -> None:
    original = ObjectExistsError("segments/x", "a racing writer")
    # Beam re-raises a copy with the step appended, the original chained as its context.
    annotated = ObjectExistsError(str(original) + " [while running 'SealChain']")
    annotated.__context__ = original
    assert expected_failure(annotated) is original
    wrapped = RuntimeError("step failed")
    wrapped.__cause__ = annotated
    assert expected_failure(wrapped) is original
    assert expected_failure(RuntimeError("boom")) is None
    assert isinstance(expected_failure(SealError("lost")), SealError)


def test_a_lost_race_on_a_chain_is_reported_as_the_seal_error_it_is(
    s3: S3Store,
    key_file: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pipelines.ingest as ingest_module
    import pipelines.seal_step as seal_step_module

    def lose_the_race(*args: object, **kwargs: object) -> dict[str, object]:
        raise SealError(
            f"chain {CHAIN}: another writer committed seq 0 first; re-run the job to continue "
            "after its segment"
        )

    upload_raw(s3, OBJECTS, policy=POLICY)
    # A small chain commits where it was planned (seal_step), a large one in CommitChain.
    monkeypatch.setattr(ingest_module, "commit_chain", lose_the_race)
    monkeypatch.setattr(seal_step_module, "commit_chain", lose_the_race)
    with pytest.raises(SealError) as info:
        ingest([key for key, _ in OBJECTS], key_file)
    assert str(info.value).endswith("re-run the job to continue after its segment")
    monkeypatch.setenv("COEXARCHIVE_BUCKET", BUCKET)
    monkeypatch.setenv("COEXARCHIVE_APP_SECRETS", SECRET.decode())
    monkeypatch.delenv("COEXARCHIVE_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    capsys.readouterr()
    assert main(["ingest", "--key", key_file, "--retention", "GOVERNANCE:1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"coexarchive: error: chain {CHAIN}: another writer committed seq 0 first; re-run the "
        "job to continue after its segment\n"
    )


def test_ingest_shows_live_progress_when_asked(
    s3: S3Store,
    key_file: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upload_raw(s3, OBJECTS, policy=POLICY)
    monkeypatch.setenv("COEXARCHIVE_BUCKET", BUCKET)
    monkeypatch.setenv("COEXARCHIVE_APP_SECRETS", SECRET.decode())
    monkeypatch.delenv("COEXARCHIVE_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    args = ["ingest", "--key", key_file, "--retention", "GOVERNANCE:1"]
    assert main([*args, "--progress"]) == 0
    captured = capsys.readouterr()
    assert "\ringesting: 2/2 raw objects, 4 events, 1 quarantined, 1 chain(s) sealed" in (
        captured.err
    )
    assert "input events:" in captured.out and "ingesting" not in captured.out
    # Not a terminal and not asked: nothing on stderr.
    assert main(args) == 0
    assert capsys.readouterr().err == ""


def test_records_that_enrichment_replaced_still_count_as_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses

    import pipelines.seal_step as seal_step

    real = seal_step.enrich_for_seal

    def flagging(*args: Any, **kwargs: Any) -> list[Record]:
        # Enrichment hands back new objects for the records it flags, as apply() does.
        return [dataclasses.replace(record) for record in real(*args, **kwargs)]

    monkeypatch.setattr(seal_step, "enrich_for_seal", flagging)
    outcome = seal(MemoryStore(), records_of(*OBJECTS))
    assert outcome["sealed"] == 3 and outcome["derived"] == {"consent_event": 1}


def test_beams_relay_of_a_worker_processes_expected_failure_is_held_back() -> None:
    from coexarchive._internal.beam_failures import HoldBackExpected

    def record(level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord("apache_beam", level, __file__, 1, message, None, None)

    relayed = (
        'Worker: severity: ERROR message: "Traceback (most recent call last):\\n  File '
        '\\"pipelines/ingest.py\\", line 321, in process\\ncoexarchive.errors.SealError: '
        'chain 9: lost [while running \'Ingest/SealChain\']\\n" instruction_id: "bundle_5"'
    )
    hold_back = HoldBackExpected()
    assert not hold_back.filter(record(logging.ERROR, relayed))
    assert hold_back.filter(record(logging.ERROR, relayed.replace("coexarchive.", "other.")))
    assert hold_back.filter(record(logging.INFO, relayed))
