"""SEALING.md is enough: a verifier written from it alone accepts our archives, rejects tampering.

The verifier under schemas/independent/ imports nothing from coexarchive (checked below); it
canonicalises with the `rfc8785` package rather than our orjson fast path. Every check is a FAIL
line, never a traceback, and none is an `assert` (one test runs it under `python -O`).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pytest
import zstandard

from coexarchive.archive_head import write_head_after
from coexarchive.seal.checkpoint import Checkpoint, checkpoint_origin, sign_note
from coexarchive.seal.head import ArchiveHead, ChainHead, head_key, sign_head
from coexarchive.seal.keys import Ed25519Signer
from coexarchive.segments import ChainWriter, Manifest, parquet_bytes, read_segment
from coexarchive.store.base import sha256_hex
from coexarchive.store.memory import MemoryStore
from support.archive import (
    ARCHIVE,
    Built,
    build,
    make_records,
    short_policy,
    signer,
    trust_for,
)

SCRIPT = Path(__file__).parents[2] / "schemas" / "independent" / "verify_archive.py"
VECTORS = Path(__file__).parents[2] / "schemas" / "vectors"
OTHER_CHAIN = "900000000000002"
ROGUE = signer("coexarchive.test", seed=b"rogue")  # the trusted key's name, another key


def independent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("independent_verifier", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def dump(store: MemoryStore, root: Path) -> None:
    for key, data in store.unsafe_objects.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@dataclasses.dataclass
class Archive:
    store: MemoryStore
    built: Built
    root: Path
    trust: Path

    def run(self, *pinned: Path, archive: str = ARCHIVE) -> int:
        dump(self.store, self.root)
        code: int = independent().main(
            [str(self.root), str(self.trust), archive, *map(str, pinned)]
        )
        return code

    def manifest(self, index: int, chain: str | None = None) -> tuple[str, Manifest]:
        prefix = f"manifests/chain={chain or self.built.chain_id}/"
        key = sorted(k for k in self.store.unsafe_objects if k.startswith(prefix))[index]
        return key, Manifest.from_bytes(self.store.unsafe_objects[key])

    def pin(self, name: str, note: bytes) -> Path:
        path = self.root.parent / name
        path.write_bytes(note)
        return path


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    store = MemoryStore()
    built = build(store, days=(0, 1, 2), per_day=15)
    trust = tmp_path / "trust.txt"
    trust.write_text(built.signer.verifier_key() + "\n")
    return Archive(store, built, tmp_path / "bucket", trust)


def test_it_imports_nothing_from_coexarchive() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported = {
        alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names
    } | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not [name for name in imported if name.startswith("coexarchive")]


def test_it_makes_no_check_with_assert() -> None:
    tree = ast.parse(SCRIPT.read_text())
    assert not [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]


def test_it_accepts_an_archive_our_code_sealed(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    assert archive.run() == 0
    assert (
        "45 records in 1 chains; archive head 2 (1 chains); 0 failures" in capsys.readouterr().out
    )


def test_it_names_an_edited_row(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    store = archive.store
    manifest_key, manifest = archive.manifest(1)
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
    assert archive.run() == 1
    assert "seq 19 does not match its leaf hash" in capsys.readouterr().out


def test_it_rejects_an_untrusted_key(
    archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive.trust.write_text(signer("coexarchive.test", b"someone else").verifier_key() + "\n")
    assert archive.run() == 1
    out = capsys.readouterr().out
    assert out.count("checkpoint does not verify") == 3
    assert "archive head 00000000000000000000: does not verify" in out


def test_it_rejects_another_archives_name(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    assert archive.run(archive="other.example") == 1
    out = capsys.readouterr().out
    assert "names archive 'coexarchive.test', not 'other.example'" in out
    assert "is not this archive's head" in out


def test_it_catches_a_truncated_tail_against_a_pinned_checkpoint(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    store = archive.store
    manifest_key, manifest = archive.manifest(-1)
    pinned = archive.pin("head.note", store.unsafe_objects[manifest.checkpoint_key])
    for key in (
        manifest.segment.key,
        manifest.record_index.key,
        manifest_key,
        manifest.intent_key,  # else the intent is an unsigned tail (step 12)
        manifest.checkpoint_key,
        head_key(2),  # the attacker removes the archive head that stated the tail, too
    ):
        store.unsafe_delete(key)
    assert archive.run() == 0
    assert archive.run(pinned) == 1
    assert "tail truncated" in capsys.readouterr().out


def _forged_checkpoint(archive: Archive, size: int, root: bytes) -> bytes:
    origin = checkpoint_origin(ARCHIVE, archive.built.chain_id)
    return sign_note(Checkpoint(origin, size, root).body(), [archive.built.signer])


@pytest.mark.parametrize("size", [30, 22], ids=["at a segment boundary", "inside a segment"])
def test_it_catches_a_same_size_fork_of_a_pinned_checkpoint(
    archive: Archive, size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # The trusted key signed another tree of the same size: sizes agree, roots do not.
    pinned = archive.pin("fork.note", _forged_checkpoint(archive, size, bytes(range(32))))
    assert archive.run(pinned) == 1
    assert f"the tree at size {size} differs from the pinned checkpoint (fork)" in (
        capsys.readouterr().out
    )


def test_it_accepts_a_pinned_checkpoint_inside_a_segment(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    from coexarchive.seal.merkle import MerkleTree

    leaves = []
    for index in range(2):
        _, manifest = archive.manifest(index)
        table = read_segment(archive.store.unsafe_objects[manifest.segment.key]).sort_by("seq")
        leaves += [bytes(v) for v in table.column("leaf_hash").to_pylist()]
    pinned = archive.pin("mid.note", _forged_checkpoint(archive, 22, MerkleTree(leaves).root(22)))
    assert archive.run(pinned) == 0, capsys.readouterr().out


def test_a_missing_segment_is_a_fail_line_not_a_traceback(archive: Archive) -> None:
    _, manifest = archive.manifest(1)
    archive.store.unsafe_delete(manifest.segment.key)
    dump(archive.store, archive.root)
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(archive.root), str(archive.trust), ARCHIVE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr + run.stdout
    assert f"FAIL chain {archive.built.chain_id} {manifest.first_seq:020d}.json: " in run.stdout
    assert f"{manifest.segment.key} is missing" in run.stdout


def test_it_checks_under_python_O_too(archive: Archive) -> None:
    _, manifest = archive.manifest(0)
    forged = sign_note(
        Checkpoint(
            checkpoint_origin(ARCHIVE, archive.built.chain_id), manifest.tree_size, bytes(32)
        ).body(),
        [signer("coexarchive.test", b"rogue")],
    )
    archive.store.unsafe_objects[manifest.checkpoint_key] = forged
    dump(archive.store, archive.root)
    run = subprocess.run(
        [sys.executable, "-O", str(SCRIPT), str(archive.root), str(archive.trust), ARCHIVE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1, run.stdout
    assert "00000000000000000000.json: checkpoint does not verify" in run.stdout
    assert "Traceback" not in run.stderr


def test_a_wrong_segment_size_is_caught(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    key, manifest = archive.manifest(0)
    forged = dataclasses.replace(
        manifest, segment=dataclasses.replace(manifest.segment, size=manifest.segment.size + 1)
    )
    archive.store.unsafe_objects[key] = forged.to_bytes()
    assert archive.run() == 1
    assert "size differs from the manifest" in capsys.readouterr().out


def test_a_forged_frontier_is_caught(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    key, manifest = archive.manifest(1)
    frontier = (bytes(32), *manifest.frontier[1:])
    archive.store.unsafe_objects[key] = dataclasses.replace(manifest, frontier=frontier).to_bytes()
    assert archive.run() == 1
    assert "frontier differs from the manifest" in capsys.readouterr().out


def test_a_manifest_not_in_canonical_form_is_caught(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    key, _ = archive.manifest(0)
    document = json.loads(archive.store.unsafe_objects[key])
    archive.store.unsafe_objects[key] = (json.dumps(document, indent=1) + "\n").encode()
    assert archive.run() == 1
    assert "manifest is not in canonical form" in capsys.readouterr().out


def test_a_record_index_without_its_content_size_is_caught(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    key, manifest = archive.manifest(0)
    text = zstandard.ZstdDecompressor().decompress(
        archive.store.unsafe_objects[manifest.record_index.key]
    )
    index = zstandard.ZstdCompressor(write_content_size=False).compress(text)
    archive.store.unsafe_objects[manifest.record_index.key] = index
    ref = dataclasses.replace(manifest.record_index, sha256=sha256_hex(index), size=len(index))
    archive.store.unsafe_objects[key] = dataclasses.replace(manifest, record_index=ref).to_bytes()
    assert archive.run() == 1
    assert "zstd frame does not state its content size" in capsys.readouterr().out


def test_deleting_a_whole_chain_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MemoryStore()
    built = build(store, days=(0,), per_day=5)
    build(store, chain_id=OTHER_CHAIN, days=(0,), per_day=5)
    trust = tmp_path / "trust.txt"
    trust.write_text(built.signer.verifier_key() + "\n")
    for key in [k for k in store.unsafe_objects if f"chain={OTHER_CHAIN}/" in k]:
        store.unsafe_delete(key)
    root = tmp_path / "bucket"
    dump(store, root)
    assert independent().main([str(root), str(trust), ARCHIVE]) == 1
    assert f"chain {OTHER_CHAIN} vanished" in capsys.readouterr().out


def test_a_relinked_head_is_caught(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    # A storage admin replaces head 1 with a validly signed one (a compromised writer) that does
    # not link to head 0.
    old = ArchiveHead.parse(archive.store.unsafe_objects[head_key(1)].split(b"\n\n")[0] + b"\n")
    forged = dataclasses.replace(old, prev=bytes(32))
    archive.store.unsafe_objects[head_key(1)] = sign_head(forged, [archive.built.signer])
    assert archive.run() == 1
    out = capsys.readouterr().out
    assert "archive head 00000000000000000001: does not link to the previous head" in out


def test_a_deleted_middle_head_is_caught(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    archive.store.unsafe_delete(head_key(1))
    assert archive.run() == 1
    assert "archive heads 1..1 are missing" in capsys.readouterr().out


def test_a_deleted_newest_head_is_caught_against_a_kept_copy(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = archive.pin("archive-head.note", archive.store.unsafe_objects[head_key(2)])
    archive.store.unsafe_delete(head_key(2))
    assert archive.run(kept) == 1
    assert "pinned archive head 2 is not in the archive" in capsys.readouterr().out


def test_a_same_size_fork_of_a_pinned_archive_head_is_caught(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    newest = ArchiveHead.parse(archive.store.unsafe_objects[head_key(2)].split(b"\n\n")[0] + b"\n")
    chain = newest.chains[0]
    fork = dataclasses.replace(
        newest, chains=(ChainHead(chain.chain_id, chain.size, bytes(range(32))),)
    )
    pinned = archive.pin("fork.note", sign_head(fork, [archive.built.signer]))
    assert archive.run(pinned) == 1
    out = capsys.readouterr().out
    assert "archive head 2 differs from the pinned one (fork)" in out
    assert "differs from the pinned head (fork)" in out


def test_it_opens_the_archive_head_vectors() -> None:
    module = independent()
    vectors = json.loads((VECTORS / "archive_head.json").read_text(encoding="utf-8"))
    trust = module.load_trust(VECTORS / "TEST-ONLY.trust")
    previous = None
    for vector in vectors["heads"]:
        body, _ = module.open_note(vector["note"].encode(), trust)
        head = module.parse_head(body)
        assert body.decode() == vector["text"] and head.seq == vector["seq"]
        assert head.prev == (module.sha256(previous) if previous else bytes(32))
        previous = body
    for vector in vectors["negative"]:
        if vector["attack"] == "untrusted_key":
            with pytest.raises(module.Failed, match="no signature from a trusted key"):
                module.open_note(vector["note"].encode(), trust)


# --- step 12: nothing of a chain lies past its last signed checkpoint; fail closed ---------------


class _CrashAt:
    """A store whose writer crashes just before its first put under ``prefix``."""

    def __init__(self, store: MemoryStore, prefix: str) -> None:
        self._store, self._prefix = store, prefix

    def put(self, key: str, data: bytes, **options: Any) -> bool:
        if key.startswith(self._prefix):
            raise RuntimeError(f"crash before writing {key}")
        return self._store.put(key, data, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _uncommitted(
    store: Any, chain_id: str, key: Ed25519Signer, *, day: int = 5, count: int = 1
) -> Manifest:
    """Segment, record index, intent (signed by ``key``) and manifest continuing the chain, and
    no checkpoint: a forgery (an untrusted key) or a writer that crashed before its commit."""
    writer = ChainWriter(
        store,
        chain_id,
        signer=key,
        archive_name=ARCHIVE,
        policy=short_policy(),
        trust=trust_for(signer()),  # the archive's verifier key is public
    )
    writer._commit = lambda manifest: None  # type: ignore[method-assign]  # no checkpoint
    records = [
        dataclasses.replace(r, text="forged") for r in make_records(chain_id, count, day=day)
    ]
    return writer.append(records)[0].manifest


def _genuine_writer(archive: Archive, store: Any = None) -> ChainWriter:
    return ChainWriter(
        store or archive.store,
        archive.built.chain_id,
        signer=archive.built.signer,
        archive_name=ARCHIVE,
        policy=short_policy(),
    )


def test_a_forged_segment_continuing_the_chain_is_an_unsigned_tail(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    # Segment, record index, manifest (and an intent signed by an untrusted key) that extend the
    # chain validly: every hash recomputes, only no trusted key signed a checkpoint.
    forged = _uncommitted(archive.store, archive.built.chain_id, ROGUE)
    assert archive.run() == 1
    out = capsys.readouterr().out
    assert (
        f"FAIL chain {archive.built.chain_id} {forged.key}: unsigned tail: manifest past the last "
        "signed checkpoint (size 45) is not signed and may be forged (its intent does not verify"
    ) in out
    for key in (forged.segment.key, forged.record_index.key, forged.intent_key):
        assert f"{key}: unsigned tail: " in out


def test_a_crashed_writers_manifest_is_an_unsigned_tail_its_intent_explains(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    pending = _uncommitted(archive.store, archive.built.chain_id, archive.built.signer, count=3)
    assert archive.run() == 1
    out = capsys.readouterr().out
    assert f"{pending.key}: unsigned tail: manifest past the last signed checkpoint" in out
    assert "a trusted intent names it: a writer crashed before its checkpoint" in out


def test_a_forged_chain_with_no_checkpoint_at_all_fails(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = _uncommitted(archive.store, OTHER_CHAIN, ROGUE)
    assert archive.run() == 1
    out = capsys.readouterr().out
    assert f"FAIL chain {OTHER_CHAIN}: none of its checkpoints verifies" in out
    assert f"{forged.key}: unsigned tail: manifest past the last signed checkpoint (size 0)" in out


@pytest.mark.parametrize(
    "name",
    [
        "date=2026-01-10/00000000000000000045-00000000000000000046-0123456789abcdef.parquet",
        "date=2026-01-05/00000000000000000040-00000000000000000046-0123456789abcdef.parquet",
        "notes.txt",
    ],
    ids=["past the signed size", "reaching past it", "not a segment key"],
)
def test_a_stray_object_among_a_chains_segments_fails(
    archive: Archive, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = f"archive/v1/chain={archive.built.chain_id}/{name}"
    archive.store.unsafe_objects[key] = b"not referenced by any manifest"
    assert archive.run() == 1
    out = capsys.readouterr().out
    assert f"FAIL chain {archive.built.chain_id} {key}: unsigned tail: " in out
    assert "WARN" not in out


def test_a_stray_manifest_below_the_signed_size_still_fails(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    key = f"manifests/chain={archive.built.chain_id}/00000000000000000003.json.bak"
    archive.store.unsafe_objects[key] = archive.store.unsafe_objects[archive.manifest(0)[0]]
    assert archive.run() == 1
    assert f"{key}: unsigned tail: manifest that no signed checkpoint covers" in (
        capsys.readouterr().out
    )


def test_a_leftover_of_a_run_interrupted_before_its_manifest_is_a_warning_once_sealed_past(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    crashing = _genuine_writer(archive, _CrashAt(archive.store, "manifests/"))
    with pytest.raises(RuntimeError, match="crash"):
        crashing.append(make_records(archive.built.chain_id, 4, day=5))
    # Until a later run seals past it, the leftover reaches past the signed size: unsigned tail.
    assert archive.run() == 1
    assert capsys.readouterr().out.count(": unsigned tail: ") == 3  # segment, index, intent
    results = _genuine_writer(archive).append(make_records(archive.built.chain_id, 6, day=6))
    write_head_after(
        archive.store,
        [r.manifest for r in results],
        signer=archive.built.signer,
        archive_name=ARCHIVE,
    )
    assert archive.run() == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    warnings = [line for line in out.splitlines() if line.startswith("WARN ")]
    assert len(warnings) == 3
    assert all("unreferenced, never signed" in line for line in warnings)
    assert "51 records in 1 chains; archive head 3 (1 chains); 0 failures, 3 warnings" in out


def test_an_empty_directory_verifies_nothing_and_fails(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    root.mkdir()
    trust = tmp_path / "trust.txt"
    trust.write_text(signer().verifier_key() + "\n")
    run = subprocess.run(
        [sys.executable, "-O", str(SCRIPT), str(root), str(trust), ARCHIVE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "FAIL archive: no checkpoint verified: nothing was verified" in run.stdout
    assert "Traceback" not in run.stderr


def test_a_bucket_of_raw_objects_only_verifies_nothing_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "bucket"
    raw = root / "raw" / "date=2026-01-05" / f"sim-{0:020d}.jsonl.zst"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(zstandard.ZstdCompressor().compress(b"{}\n"))
    trust = tmp_path / "trust.txt"
    trust.write_text(signer().verifier_key() + "\n")
    assert independent().main([str(root), str(trust), ARCHIVE]) == 1
    assert "no checkpoint verified: nothing was verified" in capsys.readouterr().out


def test_it_accepts_heads_that_seal_timestamps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from coexarchive.anchor.tsa import load_tsa_file
    from coexarchive.testing.tsa import LocalTsa

    store = MemoryStore()
    with LocalTsa(tmp_path / "tsa") as local:
        local.start()
        tsas = load_tsa_file(local.write_tsa_file(tmp_path / "tsa.txt"))
        key = signer()
        writer = ChainWriter(
            store, "900000000000001", signer=key, archive_name=ARCHIVE, policy=short_policy()
        )
        for day in (0, 1):
            results = writer.append(make_records("900000000000001", 4, day=day))
            manifests = [r.manifest for r in results]
            write_head_after(store, manifests, signer=key, archive_name=ARCHIVE, tsas=tsas)
    assert b"\nanchor/timestamp 0 local-tsa " in store.unsafe_objects["heads/" + "1".zfill(20)]
    trust = tmp_path / "trust.txt"
    trust.write_text(key.verifier_key() + "\n")
    archive = Archive(store, Built(store, key, trust_for(key), "", []), tmp_path / "b", trust)
    assert archive.run() == 0
    assert "archive head 1 (1 chains); 0 failures" in capsys.readouterr().out
