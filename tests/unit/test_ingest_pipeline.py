"""The ingest pipeline under Beam's TestPipeline, on moto's in-process S3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
import zstandard
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from coexarchive.commands import upload_raw
from coexarchive.errors import ConfigError
from coexarchive.raw import (
    Delivery,
    DeliveryAuth,
    encode_landing,
    landing_key,
    secret_id,
    signature_header,
)
from coexarchive.retention import RetentionPolicy
from coexarchive.store.s3 import S3Store
from pipelines.ingest import Ingest, SealSpec, StoreSpec, normalize_object
from pipelines.ingest import run as ingest_run
from support.ingest_unit import (
    AUTH,
    SECRET,
    T0,
    landing,
    moto_locked_store,
    signing_key_file,
    webhook_body,
)

BUCKET = "ingest-unit"


def body(*wamids: str, phone_number_id: str = "900000000000001") -> bytes:
    texts = [(w, f"hello {i} ✓") for i, w in enumerate(wamids)]
    return webhook_body(texts, phone_number_id=phone_number_id)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
    with moto_locked_store(monkeypatch, BUCKET) as store:
        yield store


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    return signing_key_file(tmp_path)


def run(keys: list[str], key_file: str, expected: list[tuple[str, int, int]]) -> None:
    """Run Ingest and assert its per-chain (chain, sealed, duplicates) summaries."""
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        summaries = (
            pipeline
            | beam.Create(keys)
            | Ingest(
                StoreSpec(BUCKET, region_name="us-east-1"),
                SealSpec(key_file, "coexarchive.test", "GOVERNANCE:1"),
                auth=AUTH,
            )
        )
        assert_that(
            summaries | beam.Map(lambda s: (s["chain_id"], s["sealed"], s["duplicates"])),
            equal_to(expected),
        )


def test_objects_become_one_sealed_batch_per_chain(s3: S3Store, key_file: str) -> None:
    objects = [
        landing(0, body("wamid.A1", "wamid.A2"), body("wamid.A1")),  # a duplicate delivery
        landing(2, body("wamid.B1", phone_number_id="900000000000002"), b"{not json"),
    ]
    upload_raw(s3, objects, policy=RetentionPolicy.parse("GOVERNANCE:1"))
    run([k for k, _ in objects], key_file, [("900000000000001", 2, 1), ("900000000000002", 1, 0)])
    quarantined = list(s3.list("quarantine/"))
    assert len(quarantined) == 1


def test_rerun_changes_nothing(s3: S3Store, key_file: str) -> None:
    objects = [landing(0, body("wamid.A1", "wamid.A2"))]
    upload_raw(s3, objects, policy=RetentionPolicy.parse("GOVERNANCE:1"))
    run([objects[0][0]], key_file, [("900000000000001", 2, 0)])
    before = sorted(s3.list(""))
    run([objects[0][0]], key_file, [("900000000000001", 0, 2)])
    assert sorted(s3.list("")) == before


def test_normalize_object_keeps_bad_lines_and_valid_siblings() -> None:
    key, data = landing(0, body("wamid.X"), b"\xff\xfe not utf-8")
    by_chain, bad = normalize_object(key, data, auth=AUTH)
    assert [r.wamid for r in by_chain["900000000000001"]] == ["wamid.X"]
    assert len(bad) == 1 and bad[0].raw_line == 1 and bad[0].payload == b"\xff\xfe not utf-8"


def test_a_delivery_that_fails_its_signature_is_quarantined_as_its_landing_line() -> None:
    forged_body = body("wamid.FORGED")
    genuine = Delivery(
        "unit", 0, (T0 + 5) * 1000, "webhook",
        {"x-hub-signature-256": signature_header(SECRET, body("wamid.OK"))}, body("wamid.OK"),
    )  # fmt: skip
    forged = Delivery("unit", 1, (T0 + 5) * 1000, "webhook", {}, forged_body)
    key = landing_key("unit", 0, (T0 + 5) * 1000)
    data = encode_landing([genuine, forged])
    by_chain, bad = normalize_object(key, data, auth=AUTH)
    [record] = by_chain["900000000000001"]
    assert record.wamid == "wamid.OK"
    assert json.loads(record.detail)["delivery_key_id"] == secret_id(SECRET)
    [item] = bad
    assert item.reason == "signature_invalid: the x-hub-signature-256 header is missing"
    assert (item.raw_line, item.location) == (1, "$")
    assert item.payload == zstandard.ZstdDecompressor().decompress(data).split(b"\n")[1]


def test_unauthenticated_ingest_marks_every_record_it_could_not_check() -> None:
    key, data = landing(0, body("wamid.A", "wamid.B"))
    allowed = DeliveryAuth(allow_unauthenticated=True)
    by_chain, bad = normalize_object(key, data, auth=allowed)
    assert bad == []
    details = [json.loads(r.detail) for r in by_chain["900000000000001"]]
    assert [d["delivery_auth"] for d in details] == ["unverified_no_secret"] * 2
    assert all("delivery_key_id" not in d for d in details)


def test_ingest_without_secrets_refuses_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from coexarchive import cli

    monkeypatch.delenv("COEXARCHIVE_APP_SECRETS", raising=False)
    monkeypatch.delenv("COEXARCHIVE_OUTBOUND_TOKEN", raising=False)
    assert cli.main(["ingest", "--bucket", BUCKET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set COEXARCHIVE_APP_SECRETS" in err[0]
    with pytest.raises(ConfigError, match="COEXARCHIVE_APP_SECRETS"):
        ingest_run(["--bucket", BUCKET, "--signing_key", "k", "--archive_name", "a"], env={})


def test_the_ingest_command_says_what_authentication_refused_or_left_unchecked() -> None:
    from coexarchive.commands import auth_lines

    assert auth_lines({}) == []
    refused, unchecked = auth_lines({"signature_invalid": 3, "unverified_deliveries": 1200})
    assert refused.startswith("not authenticated:") and " 3  deliveries quarantined" in refused
    assert unchecked.startswith("UNVERIFIED:") and "1,200" in unchecked
    assert '"delivery_auth": "unverified_no_secret"' in unchecked


# What each of the simulator's malformations is, as a quarantine reason (prefixes: positions vary).
MALFORMATION_REASONS = {
    "truncated JSON": "body is not valid JSON (at character ",
    "invalid UTF-8": "body is not valid UTF-8 (at byte ",
    "entry is an object, not a list": "entry is an object, not an array",
    "metadata missing": "value.metadata is missing (expected an object with phone_number_id)",
    "one item: id is a list": "id: Input should be a valid string (got an array)",
    "one item: timestamp is an object": (
        "timestamp: expected a string or an integer (got an object)"
    ),
    "one item: text is a string": (
        "text: Input should be a valid dictionary or instance of Text (got a string)"
    ),
    "one item: id is missing": "id missing",
}


def test_every_simulated_malformation_is_quarantined_saying_what_is_wrong() -> None:
    from coexarchive.testing import SimulationConfig, simulate
    from support.archive import SIM_AUTH

    sim = simulate(SimulationConfig(seed=3, customers=8, days=3, malformed_rate=0.4))
    reasons: dict[tuple[str, int], list[str]] = {}
    for key, data in sim.objects:
        _, bad = normalize_object(key, data, auth=SIM_AUTH)
        for item in bad:
            reasons.setdefault((key, item.raw_line), []).append(item.reason)
    seen = set()
    for key, line, what in sim.malformed_at:
        [reason] = reasons[key, line]
        assert reason.startswith(MALFORMATION_REASONS[what]), (what, reason)
        seen.add(what)
    assert len(seen) >= 6, seen


@pytest.mark.parametrize(("spread_above", "spreads"), [(3, False), (2, True), (0, True)])
def test_a_chain_spreads_only_above_spread_above(
    s3: S3Store, key_file: str, monkeypatch: pytest.MonkeyPatch, spread_above: int, spreads: bool
) -> None:
    import pipelines.ingest as ingest_module

    where: list[str] = []
    planned_here, spread = ingest_module.encode_and_commit, ingest_module.work_units
    monkeypatch.setattr(
        ingest_module,
        "encode_and_commit",
        lambda *a, **kw: where.append("here") or planned_here(*a, **kw),
    )
    monkeypatch.setattr(
        ingest_module, "work_units", lambda *a, **kw: where.append("spread") or spread(*a, **kw)
    )
    objects = [landing(0, body("wamid.S1", "wamid.S2", "wamid.S3"))]  # one chain, 3 records
    upload_raw(s3, objects, policy=RetentionPolicy.parse("GOVERNANCE:1"))
    seal = SealSpec(key_file, "coexarchive.test", "GOVERNANCE:1", spread_above=spread_above)
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        summaries = (
            pipeline
            | beam.Create([key for key, _ in objects])
            | Ingest(StoreSpec(BUCKET, region_name="us-east-1"), seal, auth=AUTH)
        )
        assert_that(
            summaries | beam.Map(lambda s: (s["chain_id"], s["sealed"])),
            equal_to([("900000000000001", 3)]),
        )
    assert where == (["spread"] if spreads else ["here"])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], (SealSpec.spread_above, SealSpec.unit_records)),
        (["--spread_above", "0", "--unit_records", "500"], (0, 500)),
    ],
)
def test_the_job_takes_where_a_chain_spreads_from_its_flags(
    s3: S3Store,
    key_file: str,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    expected: tuple[int, int],
) -> None:
    import pipelines.ingest as ingest_module

    given: list[SealSpec] = []
    monkeypatch.setattr(
        ingest_module, "run_pipeline", lambda keys, store, seal, *a, **kw: given.append(seal)
    )
    base = ["--bucket", BUCKET, "--region_name", "us-east-1", "--signing_key", key_file]
    ingest_run([*base, "--archive_name", "a", *flags], auth=AUTH)
    assert [(seal.spread_above, seal.unit_records) for seal in given] == [expected]


@pytest.mark.parametrize("units", ["0", "-5"])
def test_a_unit_without_records_is_refused_before_the_job_starts(
    monkeypatch: pytest.MonkeyPatch, key_file: str, units: str
) -> None:
    import pipelines.ingest as ingest_module

    started: list[object] = []
    monkeypatch.setattr(ingest_module, "run_pipeline", lambda *a, **kw: started.append(a))
    argv = ["--bucket", BUCKET, "--signing_key", key_file, "--archive_name", "a"]
    with pytest.raises(ConfigError, match=r"--unit_records .*at least one record"):
        ingest_run([*argv, "--unit_records", units], auth=AUTH)
    assert started == []


def test_the_legal_hold_register_is_read_once_per_bundle_not_per_chain(
    s3: S3Store, key_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.ingest as ingest_module

    loads: list[int] = []

    class Counted(ingest_module.NewDataHolds):
        @classmethod
        def load(cls, store: Any, trust: Any) -> Any:
            loads.append(1)
            return super().load(store, trust)

    monkeypatch.setattr(ingest_module, "NewDataHolds", Counted)
    chains = [f"90000000000001{n}" for n in range(4)]
    objects = [landing(0, *(body(f"wamid.H{c}", phone_number_id=c) for c in chains))]
    upload_raw(s3, objects, policy=RetentionPolicy.parse("GOVERNANCE:1"))
    run([key for key, _ in objects], key_file, [(c, 1, 0) for c in chains])
    assert 1 <= len(loads) < len(chains)
