"""``coexarchive chains``: every chain with its size and newest checkpoint, and nothing claimed."""

from __future__ import annotations

import json
from argparse import Namespace
from typing import Any

import pytest

from coexarchive.chains import cmd_chains, list_chains
from coexarchive.store import MemoryStore
from coexarchive.store.base import ObjectStore
from support.archive import build


def run(store: ObjectStore, capsys: pytest.CaptureFixture[str], *, as_json: bool = False) -> str:
    class Settings:
        def store(self) -> ObjectStore:
            return store

    def make_settings(args: Namespace, **extra: Any) -> Any:
        return Settings()

    assert cmd_chains(Namespace(json=as_json), make_settings) == 0
    return capsys.readouterr().out


def test_each_chain_is_listed_with_its_size_and_newest_checkpoint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = MemoryStore()
    build(store, chain_id="900000000000001", days=(0, 1, 2), per_day=20)
    build(store, chain_id="900000000000002", days=(0,), per_day=5)
    [first, second] = list_chains(store)
    assert (first.chain_id, first.segments, first.records) == ("900000000000001", 3, 60)
    assert (second.chain_id, second.segments, second.records) == ("900000000000002", 1, 5)
    assert first.checkpoint_key == "checkpoints/chain=900000000000001/00000000000000000060"
    assert first.checkpoint_written is not None
    assert second.newest_event is not None and first.newest_event is not None
    assert first.newest_event > second.newest_event  # day 2 against day 0
    out = run(store, capsys)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["CHAIN", "SEGMENTS", "RECORDS"]
    assert lines[1].split()[:3] == ["900000000000001", "3", "60"]
    assert lines[2].split()[:3] == ["900000000000002", "1", "5"]
    assert "not verified" in lines[-1]


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore()
    build(store, days=(0, 1), per_day=4)
    [chain] = json.loads(run(store, capsys, as_json=True))
    assert chain["chain_id"] == "900000000000001"
    assert (chain["segments"], chain["records"]) == (2, 8)
    assert chain["newest_checkpoint"].endswith("/00000000000000000008")
    assert chain["checkpoint_written"].endswith("Z")


def test_a_missing_checkpoint_is_shown_as_missing(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore()
    built = build(store, days=(0,), per_day=3)
    store.unsafe_delete(built.manifests[-1].checkpoint_key)
    [summary] = list_chains(store)
    assert summary.checkpoint_written is None
    assert run(store, capsys).splitlines()[1].split()[-1] == "missing"


def test_an_empty_archive_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(MemoryStore(), capsys)
    assert "no chains" in out and "coexarchive ingest" in out
