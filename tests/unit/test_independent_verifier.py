"""SEALING.md is enough: a verifier written from it alone accepts our archives, rejects tampering.

The verifier under schemas/independent/ imports nothing from coexarchive (checked below); it
canonicalises with the `rfc8785` package rather than our orjson fast path.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pytest

from coexarchive.segments import parquet_bytes, read_segment
from coexarchive.store.base import sha256_hex
from coexarchive.store.memory import MemoryStore
from support.archive import build

SCRIPT = Path(__file__).parents[2] / "schemas" / "independent" / "verify_archive.py"


def independent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("independent_verifier", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dump(store: MemoryStore, root: Path) -> None:
    for key, data in store.unsafe_objects.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def archive(tmp_path: Path) -> tuple[MemoryStore, Path, Path]:
    store = MemoryStore()
    built = build(store, days=(0, 1, 2), per_day=15)
    trust = tmp_path / "trust.txt"
    trust.write_text(built.signer.verifier_key() + "\n")
    return store, tmp_path / "bucket", trust


def test_it_imports_nothing_from_coexarchive() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported = {
        alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names
    } | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not [name for name in imported if name.startswith("coexarchive")]


def test_it_accepts_an_archive_our_code_sealed(
    archive: tuple[MemoryStore, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store, root, trust = archive
    dump(store, root)
    assert independent().main([str(root), str(trust)]) == 0
    assert "45 records in 1 chains; 0 failures" in capsys.readouterr().out


def test_it_names_an_edited_row(
    archive: tuple[MemoryStore, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store, root, trust = archive
    manifest_key = sorted(k for k in store.unsafe_objects if k.startswith("manifests/"))[1]
    from coexarchive.segments import Manifest

    manifest = Manifest.from_bytes(store.unsafe_objects[manifest_key])
    table = read_segment(store.unsafe_objects[manifest.segment.key]).sort_by("seq")
    texts = table.column("text").to_pylist()
    texts[4] = "edited"
    table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts))
    data = parquet_bytes(table)
    store.unsafe_objects[manifest.segment.key] = data
    forged = dataclasses.replace(
        manifest,
        segment=dataclasses.replace(manifest.segment, sha256=sha256_hex(data), size=len(data)),
    )
    store.unsafe_objects[manifest_key] = forged.to_bytes()
    dump(store, root)
    assert independent().main([str(root), str(trust)]) == 1
    assert "seq 19 does not match its leaf hash" in capsys.readouterr().out


def test_it_rejects_an_untrusted_key(
    archive: tuple[MemoryStore, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from support.archive import signer

    store, root, _ = archive
    dump(store, root)
    other = tmp_path / "other.txt"
    other.write_text(signer("coexarchive.test", b"someone else").verifier_key() + "\n")
    assert independent().main([str(root), str(other)]) == 1
    assert capsys.readouterr().out.count("checkpoint does not verify") == 3


def test_it_catches_a_truncated_tail_against_a_pinned_checkpoint(
    archive: tuple[MemoryStore, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, root, trust = archive
    last = sorted(k for k in store.unsafe_objects if k.startswith("checkpoints/"))[-1]
    pinned = tmp_path / "head.note"
    pinned.write_bytes(store.unsafe_objects[last])
    from coexarchive.segments import Manifest

    manifest_key = sorted(k for k in store.unsafe_objects if k.startswith("manifests/"))[-1]
    manifest = Manifest.from_bytes(store.unsafe_objects[manifest_key])
    for key in (manifest.segment.key, manifest.record_index.key, manifest_key, last):
        store.unsafe_delete(key)
    dump(store, root)
    assert independent().main([str(root), str(trust)]) == 0
    assert independent().main([str(root), str(trust), str(pinned)]) == 1
    assert "tail truncated" in capsys.readouterr().out
