"""`coexarchive anchor`, `verify --tsa-file/--at/--witnesses` as an operator runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coexarchive.anchor.witness import heads_origin
from coexarchive.anchor.witness_server import WitnessServer, WitnessState
from coexarchive.cli import main
from coexarchive.seal.cosignature import CosignerKey
from coexarchive.seal.keys import Ed25519Signer, TrustStore
from coexarchive.store.s3 import S3Store
from coexarchive.testing.tsa import LocalTsa
from support.archive import ARCHIVE, build

pytestmark = pytest.mark.integration


@pytest.fixture
def anchored_env(
    s3_store: S3Store, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LocalTsa, WitnessServer]]:
    for name, value in seaweed.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COEXARCHIVE_BUCKET", s3_store.bucket)
    monkeypatch.setenv("COEXARCHIVE_ENDPOINT_URL", seaweed.endpoint_url)
    monkeypatch.setenv("COEXARCHIVE_NAME", ARCHIVE)
    built = build(s3_store, days=(0, 1), per_day=4)  # heads 0 and 1, no anchors yet
    key = tmp_path / "signing.key"
    built.signer.to_file(key)
    trust = tmp_path / "trust.txt"
    trust.write_text(built.signer.verifier_key() + "\n")
    monkeypatch.setenv("COEXARCHIVE_SIGNING_KEY", str(key))
    monkeypatch.setenv("COEXARCHIVE_TRUST", str(trust))
    tsa = LocalTsa(tmp_path / "tsa")
    tsa.start()
    monkeypatch.setenv("COEXARCHIVE_TSA", str(tsa.write_tsa_file(tmp_path / "tsa.txt")))
    signer = Ed25519Signer.from_seed("auditor.example/w1", bytes([3]) * 32)
    logs = {heads_origin(ARCHIVE): TrustStore([built.signer.verifier()])}
    witness = WitnessServer(signer, logs, WitnessState(tmp_path / "witness"))
    url = witness.start()
    witnesses = tmp_path / "witnesses.txt"
    witnesses.write_text(f"witness {CosignerKey.of(signer).vkey()} {url}\nquorum 1\n")
    monkeypatch.setenv("COEXARCHIVE_WITNESSES", str(witnesses))
    yield tsa, witness
    witness.stop()
    tsa.close()


def test_anchor_then_verify_names_what_the_anchors_prove(
    anchored_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["anchor"]) == 0
    out = capsys.readouterr().out
    assert "archive head 1: 1 token(s) stored, 0 request(s) failed" in out
    assert "archive head 1: 1 new cosignature(s), 0 witness(es) failed" in out
    assert main(["verify", "--at", "2999-01-01T00:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "timestamp gap: no token from local-tsa for head(s) 0" in out
    assert "at 2999-01-01T00:00:00+00:00: archive head 1 is the newest a timestamp proves" in out
    assert "witnesses: 1 of 1 cosigned the newest head (2 heads; quorum 1)" in out
    assert "witness auditor.example/w1: agrees" in out
    assert "13. timestamp, 14. witness" in out


def test_verify_json_carries_the_anchor_reports(
    anchored_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["anchor"]) == 0
    capsys.readouterr()
    assert main(["verify", "--json", "--offline"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"][-2:] == ["timestamp", "witness"]
    assert report["timestamps"]["gaps"] == {"local-tsa": ["0"]}
    assert report["witnesses"]["cosigned"] == {"auditor.example/w1": 2}
    assert report["witnesses"]["asked"] == {}


def test_anchor_with_everything_down_exits_one_and_the_head_stays(
    anchored_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tsa, witness = anchored_env
    tsa.stop()
    witness.stop()
    assert main(["anchor"]) == 1
    out = capsys.readouterr().out
    assert "not timestamped: head 1 from local-tsa" in out
    assert "not cosigned: head 1 not cosigned by auditor.example/w1" in out
    # Verify fails closed on the quorum and names the gap; nothing else broke.
    assert main(["verify", "--offline"]) == 1
    out = capsys.readouterr().out
    assert "archive head 1 is cosigned by 0 of the policy's witnesses" in out
