"""Evidence bundles: selected records with their proofs, renderings, manifest and custody entry.

The normative layout is ``schemas/BUNDLE.md``. In short::

    BUNDLE.json                         what the bundle holds (format marker, selection, chains)
    MANIFEST                            "<sha256>  <path>" per file but itself and CUSTODY.json
    CUSTODY.json                        who, when, the query, counts, SHA-256 of MANIFEST
    README.txt                          how to verify, for whoever receives the bundle
    records/records.jsonl               one record per line: its RFC 8785 canonical bytes
    records/records.parquet, .csv       the same records as a table
    proofs/chain=<id>.jsonl             per record: leaf index, leaf hash, C2SP tlog-proof (head)
    checkpoints/chain=<id>/<size>.note  the signed checkpoint each chain's proofs lead to
    keys/trust.txt                      verifier keys that signed those checkpoints
    transcripts/...html                 one readable page per conversation, plus an index
    rsmf/...rsmf                        RSMF 2.0 per conversation and day, <= 10,000 events each
    media/<sha256>                      the attachments' bytes, each proven by its media record
    thumbs/<sha256>.jpg|png             derived thumbnails of the images (not evidence)

Everything under MANIFEST is a pure function of the archive's records up to the chosen
checkpoints, the selection, the matter and the time zone: the same inputs give the same bytes
(the thumbnails' pixels also depend on the Pillow release that drew them: derived, not evidence).
Who exported and when live only in ``CUSTODY.json``, which names MANIFEST's hash and is itself
sealed into the access log before anything is written.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from coexarchive import __version__
from coexarchive._internal.gcpause import cyclic_gc_paused
from coexarchive.customers import normalize_customer
from coexarchive.enrich.templates import CATALOGUE_TYPE
from coexarchive.errors import ConfigError, ProofError
from coexarchive.export._rows import (
    Row,
    canonical_line,
    conversations,
    iso_utc,
    leaf_of,
    records_csv,
    safe_name,
    sealed_rows,
)
from coexarchive.export.anchors import anchor_files
from coexarchive.export.disclosure import (
    RECORD_KEYS,
    disclosure_lines,
    open_rows,
    read_disclosures,
)
from coexarchive.export.formats import CURRENT
from coexarchive.export.holds import INTERNAL_CHAINS
from coexarchive.export.media import bundle_media, bundle_thumbs, thumb_paths
from coexarchive.export.proofs import ChainTree, chain_tree
from coexarchive.export.rsmf import render_rsmf
from coexarchive.export.transcript import load_zone, render_transcripts
from coexarchive.export.zipfiles import (
    DEFAULT_LIMITS,
    ReadLimits,
    read_bundle_files,
    zip_bytes,
)
from coexarchive.query.access_log import AccessEntry, AccessLog
from coexarchive.query.views import ACCESS_LOG_CHAIN, ArchiveCatalog
from coexarchive.records import RECORD_SCHEMA
from coexarchive.seal.checkpoint import open_note
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.personal import KeyLookup
from coexarchive.segments import Manifest, b64
from coexarchive.store.base import ObjectStore

__all__ = [
    "BUNDLE_FORMAT",
    "CUSTODY_FORMAT",
    "Bundle",
    "ExportRequest",
    "ExportResult",
    "Selection",
    "build_bundle",
    "export_bundle",
    "manifest_text",
    "read_bundle",
    "zip_bytes",
]

BUNDLE_FORMAT = CURRENT.format
CUSTODY_FORMAT = "coexarchive.custody/v1"
NOT_IN_MANIFEST = frozenset({"MANIFEST", "CUSTODY.json"})
_TS = pa.timestamp("ms", tz="UTC")
_WRITERS = 4

README = """\
coexarchive evidence bundle ({format})

This bundle proves itself. For every record in records/records.jsonl it carries the record's
leaf index and an RFC 6962 inclusion proof (C2SP tlog-proof) to a checkpoint of the archive's
Merkle log that the archive signed with Ed25519 (C2SP signed-note).

To verify with coexarchive (offline, from the bundle alone):

    coexarchive verify-bundle <this directory or zip> --trust <the archive's trust file>

Obtain the archive's public key from its owner by another channel and pass it with --trust;
only then does verify-bundle print OK. The keys in keys/trust.txt can be trusted explicitly
(--trust-bundle-keys): that proves the bundle was not altered after signing, not who signed it,
so the result is UNTRUSTED and the exit status non-zero.

To verify without coexarchive: `sha256sum -c MANIFEST` checks every file; then, for each line L
of records/records.jsonl, SHA-256(0x00 || L) is the leaf hash; the matching line of
proofs/chain=<id>.jsonl holds the tlog-proof without its checkpoint (append the bytes of the
chain's checkpoints/ file to get the complete C2SP tlog-proof); fold its audit path as RFC 9162
section 2.1.3.2 says and compare with the root in the checkpoint, whose Ed25519 signature
verifies with keys/trust.txt (formats: schemas/SEALING.md and schemas/BUNDLE.md of coexarchive).

CUSTODY.json says who produced the bundle, when, from which query, and the SHA-256 of MANIFEST;
the same entry is sealed in the archive's access log.
"""


@dataclass(frozen=True)
class Selection:
    """Which records: one customer's (in every business chain) or a query's rows."""

    customer: str | None = None
    query: str | None = None
    since: int | None = None  # ms, inclusive
    until: int | None = None  # ms, exclusive

    def __post_init__(self) -> None:
        if (self.customer is None) == (self.query is None):
            raise ConfigError("an export names exactly one of --customer or --query")
        if self.customer is not None:
            # One spelling everywhere (the console's form, the CLI, the library).
            object.__setattr__(self, "customer", normalize_customer(self.customer))
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigError("--since must be before --until")

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "query": self.query,
            "since": iso_utc(self.since) or None,
            "until": iso_utc(self.until) or None,
        }

    def overlaps(self, manifest: Manifest) -> bool:
        if self.since is not None and manifest.max_event_time < self.since:
            return False
        return not (self.until is not None and manifest.min_event_time >= self.until)


@dataclass(frozen=True)
class ExportRequest:
    """The inputs of an export; with the archive's state they determine the bundle's bytes."""

    matter: str
    selection: Selection
    who: str
    as_of: int  # ms: the custody entry's "when"
    zone: str = "UTC"
    tree_sizes: Mapping[str, int] = field(default_factory=dict)  # pin a chain's checkpoint

    def __post_init__(self) -> None:
        if not self.matter.strip() or any(ord(c) < 0x20 for c in self.matter):
            raise ConfigError("a matter is a non-empty name without control characters")
        load_zone(self.zone)


@dataclass
class Bundle:
    """A built bundle, held in memory until it is written."""

    files: dict[str, bytes]
    manifest_sha256: str
    custody_sha256: str
    custody: dict[str, Any]
    record_count: int
    trees: list[ChainTree]

    def write(self, out: Path) -> None:
        """Write to a directory (new or empty) or, for a ``.zip`` path, to a deterministic zip."""
        if out.suffix.lower() == ".zip":
            if out.exists():
                raise ConfigError(f"{out} exists; choose a new file name")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(zip_bytes(self.files))
            return
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"{out} exists and is not an empty directory")
        targets = {out / path: data for path, data in sorted(self.files.items())}
        for parent in sorted({target.parent for target in targets}):
            parent.mkdir(parents=True, exist_ok=True)
        # Creating thousands of files is kernel time, which threads overlap (the GIL is released).
        with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
            list(pool.map(lambda item: item[0].write_bytes(item[1]), targets.items()))


@dataclass(frozen=True)
class ExportResult:
    bundle: Bundle
    access: Manifest  # the access-log segment sealing the custody entry


def records_parquet(table: pa.Table) -> bytes:
    """The bundle's Parquet file: rows in the records' order, with fixed writer options.

    Written here rather than with the archive's segment writer, whose row order and options
    follow the storage layout; the bundle's bytes must depend only on the records.
    """
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        row_group_size=8_192,
        write_statistics=True,
        use_dictionary=["chain_id", "kind", "origin", "direction", "msg_type", "status"],
    )
    return sink.getvalue()


def manifest_text(files: Mapping[str, bytes]) -> bytes:
    """``sha256sum`` lines for every file but MANIFEST and CUSTODY.json, sorted by path."""
    lines = [
        f"{hashlib.sha256(files[path]).hexdigest()}  {path}\n"
        for path in sorted(files)
        if path not in NOT_IN_MANIFEST
    ]
    return "".join(lines).encode("utf-8")


# --- selecting records ---------------------------------------------------------------------------


def _customer_filter(selection: Selection) -> ds.Expression:
    customer = selection.customer
    wanted = (
        (ds.field("customer_id") == customer)
        | (ds.field("customer_wa_id") == customer)
        | (ds.field("customer_user_id") == customer)
    )
    return wanted


def _window_filter(selection: Selection) -> ds.Expression | None:
    parts = []
    if selection.since is not None:
        parts.append(ds.field("event_time") >= pa.scalar(selection.since, _TS))
    if selection.until is not None:
        parts.append(ds.field("event_time") < pa.scalar(selection.until, _TS))
    if not parts:
        return None
    expression = parts[0]
    for part in parts[1:]:
        expression &= part
    return expression


def _query_seqs(result: pa.Table) -> dict[str, list[int]]:
    names = set(result.column_names)
    if not {"chain_id", "seq"} <= names:
        raise ConfigError(
            "an export query must return the columns chain_id and seq of the records to export "
            "(e.g. SELECT chain_id, seq FROM messages WHERE ...)"
        )
    by_chain: dict[str, set[int]] = {}
    for chain_id, seq in zip(
        result.column("chain_id").to_pylist(), result.column("seq").to_pylist(), strict=True
    ):
        if chain_id is not None and seq is not None:
            by_chain.setdefault(str(chain_id), set()).add(int(seq))
    return {chain: sorted(seqs) for chain, seqs in sorted(by_chain.items())}


def _chain_rows(
    catalog: ArchiveCatalog,
    chain_id: str,
    request: ExportRequest,
    seqs: Sequence[int] | None,
) -> tuple[pa.Table, Manifest] | None:
    """The chain's selected rows up to its chosen checkpoint, or None when none match."""
    manifests = catalog.manifests(chain_id)
    if not manifests:
        if seqs is not None:
            raise ConfigError(f"the query returned chain {chain_id!r}, which has no segments")
        return None
    pinned = request.tree_sizes.get(chain_id)
    head = manifests[-1]
    if pinned is not None:
        head = next((m for m in manifests if m.tree_size == pinned), None)  # type: ignore[assignment]
        if head is None:
            raise ConfigError(f"chain {chain_id!r} has no checkpoint at tree size {pinned}")
    selection = request.selection
    covered = [m for m in manifests if m.last_seq < head.tree_size and selection.overlaps(m)]
    expression = _window_filter(selection)
    if seqs is not None:
        in_tree = [s for s in seqs if s < head.tree_size]
        if len(in_tree) != len(seqs):
            raise ConfigError(
                f"the query returned seq beyond the chosen checkpoint of {chain_id!r}"
            )
        wanted = set(seqs)
        covered = [m for m in covered if any(m.first_seq <= s <= m.last_seq for s in wanted)]
        by_seq = ds.field("seq").isin(pa.array(seqs, pa.int64()))
        expression = by_seq if expression is None else expression & by_seq
    else:
        customer = _customer_filter(selection)
        expression = customer if expression is None else expression & customer
    if not covered:
        return None
    table = catalog.dataset(covered).to_table(filter=expression).sort_by("seq")
    if table.num_rows == 0:
        return None
    if seqs is not None:
        table = _with_assessments(catalog, manifests, head, table)
    return table.select(RECORD_SCHEMA.names), head


def _with_assessments(
    catalog: ArchiveCatalog, manifests: Sequence[Manifest], head: Manifest, table: pa.Table
) -> pa.Table:
    """The selected rows plus every assessment of them up to ``head``, so the bundle's renderings
    show their current flags (a customer's or a period's selection holds them already: an
    assessment carries its record's customer and event time)."""
    holding = [
        m
        for m in manifests
        if m.last_seq < head.tree_size
        and (m.kinds.get("assessment", 0) > 0 or (not m.kinds and m.record_count > 0))
    ]
    if not holding:
        return table
    ids = pa.array(sorted(set(table.column("record_id").to_pylist())), pa.string())
    found = catalog.dataset(holding).to_table(
        filter=(ds.field("kind") == "assessment") & ds.field("ref_record_id").isin(ids)
    )
    have = set(table.column("seq").to_pylist())
    extra = found.filter(pc.invert(pc.is_in(found.column("seq"), pa.array(have, pa.int64()))))
    if extra.num_rows == 0:
        return table
    merged = pa.concat_tables(
        [table.select(RECORD_SCHEMA.names), extra.select(RECORD_SCHEMA.names)]
    )
    return merged.sort_by("seq")


def _with_template_texts(
    catalog: ArchiveCatalog,
    trust: TrustStore,
    request: ExportRequest,
    tables: list[pa.Table],
    trees: list[ChainTree],
) -> None:
    """Add the catalogue entries of every template sent in ``tables`` (up to the last send), from
    the WABA chains, so the renderings can show each send's text as of the send with its proof."""
    names: set[str] = set()
    latest = None
    for table in tables:
        sent = table.filter(pc.is_valid(table.column("template_name")))
        if sent.num_rows:
            names.update(sent.column("template_name").to_pylist())
            last = pc.max(sent.column("event_time")).as_py()
            latest = last if latest is None or last > latest else latest
    if not names or latest is None:
        return
    chains = [tree.chain_id for tree in trees]
    for chain_id in catalog.chains():
        if not chain_id.startswith("waba-"):
            continue
        manifests = catalog.manifests(chain_id)
        pinned = request.tree_sizes.get(chain_id)
        size = pinned if pinned is not None else (manifests[-1].tree_size if manifests else 0)
        holding = [
            m
            for m in manifests
            if m.last_seq < size and (m.kinds.get("template_event", 0) > 0 or not m.kinds)
        ]
        if not holding:
            continue
        found = catalog.dataset(holding).to_table(
            filter=(ds.field("kind") == "template_event")
            & (ds.field("msg_type") == CATALOGUE_TYPE)
            & ds.field("template_name").isin(pa.array(sorted(names), pa.string()))
            & (ds.field("event_time") <= pa.scalar(latest, _TS))
        )
        if found.num_rows == 0:
            continue
        found = found.select(RECORD_SCHEMA.names)
        if chain_id in chains:
            at = chains.index(chain_id)
            have = pa.array(tables[at].column("seq").to_pylist(), pa.int64())
            extra = found.filter(pc.invert(pc.is_in(found.column("seq"), have)))
            tables[at] = pa.concat_tables([tables[at], extra]).sort_by("seq")
        else:
            tables.append(found.sort_by("seq"))
            trees.append(chain_tree(catalog, chain_id, trust, size=size))
            chains.append(chain_id)


# --- building ------------------------------------------------------------------------------------


def build_bundle(
    catalog: ArchiveCatalog,
    trust: TrustStore,
    request: ExportRequest,
    *,
    query_result: pa.Table | None = None,
    keys: KeyLookup | None = None,
) -> Bundle:
    """Select, prove and render; raises if the archive does not prove what it would export.

    ``keys`` opens records sealed with their personal content encrypted (record version 2):
    the bundle discloses each one's record key, or null when an erasure destroyed it.
    """
    selection = request.selection
    catalog.refresh()
    if selection.query is not None:
        if query_result is None:
            raise ConfigError("an export by query needs the query's result")
        wanted = _query_seqs(query_result)
        if ACCESS_LOG_CHAIN in wanted:
            catalog.refresh(ACCESS_LOG_CHAIN)
        plan: list[tuple[str, list[int] | None]] = list(wanted.items())
    else:
        plan = [(c, None) for c in catalog.chains() if c not in INTERNAL_CHAINS]
    tables: list[pa.Table] = []
    trees: list[ChainTree] = []
    for chain_id, seqs in plan:
        found = _chain_rows(catalog, chain_id, request, seqs)
        if found is None:
            continue
        table, head = found
        trees.append(chain_tree(catalog, chain_id, trust, size=head.tree_size))
        tables.append(table)
    if not tables:
        raise ConfigError("no sealed record matches the selection; nothing to export")
    _with_template_texts(catalog, trust, request, tables, trees)
    table = pa.concat_tables(tables)
    rows = sealed_rows(table)
    lines = [canonical_line(row) for row in rows]
    leaves = [leaf_of(line) for line in lines]
    stored = table.column("leaf_hash").to_pylist()
    for row, leaf, sealed in zip(rows, leaves, stored, strict=True):
        if leaf != sealed:
            raise ProofError(
                f"chain {row['chain_id']} seq {row['seq']}: the stored record does not hash to "
                "its sealed leaf; the archive was altered (run `coexarchive verify`)"
            )
    anchors = anchor_files(catalog.store, trust, trees[0].manifest.archive)
    return _assemble(
        request, table, rows, lines, leaves, trees, trust, anchors, keys, store=catalog.store
    )


def _assemble(
    request: ExportRequest,
    table: pa.Table,
    rows: list[Row],
    lines: list[bytes],
    leaves: list[bytes],
    trees: list[ChainTree],
    trust: TrustStore,
    anchors: tuple[dict[str, bytes], dict[str, Any] | None] = ({}, None),
    keys: KeyLookup | None = None,
    *,
    store: ObjectStore | None = None,
) -> Bundle:
    disclosure = disclosure_lines(rows, keys)
    shown = rows
    if disclosure is not None:
        shown, problems = open_rows(rows, read_disclosures(disclosure))
        if problems:
            raise ProofError(f"cannot render the bundle: {problems[0]}")
    # The attachments the (opened) media records name, checked against them.
    media = bundle_media(store, shown) if store is not None else {}
    files: dict[str, bytes] = {
        "README.txt": README.format(format=BUNDLE_FORMAT).encode("utf-8"),
        "records/records.jsonl": b"".join(line + b"\n" for line in lines),
        # chain_hash stays in the archive: a bundle holding some of a chain cannot prove it.
        "records/records.parquet": records_parquet(table.drop_columns(["chain_hash"])),
        "records/records.csv": records_csv(shown, leaves),
    }
    if disclosure is not None:
        files[RECORD_KEYS] = disclosure
    chains = []
    position = 0
    for tree in trees:
        chain = tree.chain_id
        end = position
        while end < len(rows) and rows[end]["chain_id"] == chain:
            end += 1
        members = range(position, end)
        heads = tree.proof_heads(rows[p]["seq"] for p in members)
        proof_lines = [
            orjson.dumps(
                {
                    "chain_id": chain,
                    "leaf_hash": leaves[p].hex(),
                    "record_id": rows[p]["record_id"],
                    "seq": rows[p]["seq"],
                    "tlog_proof": head.decode("ascii"),
                }
            )
            + b"\n"
            for p, head in zip(members, heads, strict=True)
        ]
        count = end - position
        position = end
        proofs_path = f"proofs/chain={safe_name(chain)}.jsonl"
        checkpoint_path = f"checkpoints/chain={safe_name(chain)}/{tree.size:020d}.note"
        files[proofs_path] = b"".join(proof_lines)
        files[checkpoint_path] = tree.note
        chains.append(
            {
                "chain_id": chain,
                "origin": tree.checkpoint.origin,
                "tree_size": tree.size,
                "root_hash": b64(tree.checkpoint.root_hash),
                "checkpoint": checkpoint_path,
                "proofs": proofs_path,
                "records": count,
            }
        )
    files["keys/trust.txt"] = _signing_keys(trees, trust)
    groups = conversations(shown)
    # Derived thumbnails of the checked images: shown by the transcripts, never evidence.
    thumbs = bundle_thumbs(shown, media)
    transcripts = render_transcripts(
        shown,
        leaves,
        zone_name=request.zone,
        matter=request.matter,
        groups=groups,
        thumbs=thumb_paths(thumbs),
    )
    rsmf = render_rsmf(shown, leaves, groups=groups, media=media)
    files.update(transcripts)
    files.update(rsmf)
    files.update(media or {})
    files.update(thumbs)
    description = {
        "format": BUNDLE_FORMAT,
        "generator": f"coexarchive {__version__}",
        "archive": trees[0].manifest.archive,
        "matter": request.matter,
        "selection": request.selection.to_json(),
        "time_zone": request.zone,
        "records": len(rows),
        "chains": chains,
        "files": {
            "records_jsonl": "records/records.jsonl",
            "records_parquet": "records/records.parquet",
            "records_csv": "records/records.csv",
            "keys": "keys/trust.txt",
            "transcripts": sorted(transcripts),
            "rsmf": sorted(rsmf),
            **({"record_keys": RECORD_KEYS} if disclosure is not None else {}),
        },
    }
    anchor_bytes, anchor_description = anchors
    if anchor_description is not None:
        # Only archives with outside anchors add them: other bundles stay byte for byte as before.
        files.update(anchor_bytes)
        description["anchors"] = anchor_description
    if media:
        description["files"]["media"] = sorted(media)  # type: ignore[index]
    if thumbs:
        description["files"]["thumbs"] = sorted(thumbs)  # type: ignore[index]
    files["BUNDLE.json"] = _json(description)
    files["MANIFEST"] = manifest_text(files)
    manifest_sha256 = hashlib.sha256(files["MANIFEST"]).hexdigest()
    custody = {
        "format": CUSTODY_FORMAT,
        "bundle_format": BUNDLE_FORMAT,
        "matter": request.matter,
        "who": request.who,
        "when": iso_utc(request.as_of),
        "query": request.selection.to_json(),
        "time_zone": request.zone,
        "checkpoints": [{"chain_id": c["chain_id"], "tree_size": c["tree_size"]} for c in chains],
        "counts": {
            "records": len(rows),
            "chains": len(chains),
            "conversations": len(groups),
            "transcripts": len(transcripts),
            "rsmf_files": len(rsmf),
            "files": len(files) - 1,
        },
        "manifest_sha256": manifest_sha256,
    }
    files["CUSTODY.json"] = _json(custody)
    return Bundle(
        files=files,
        manifest_sha256=manifest_sha256,
        custody_sha256=hashlib.sha256(files["CUSTODY.json"]).hexdigest(),
        custody=custody,
        record_count=len(rows),
        trees=trees,
    )


def _json(document: Mapping[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def _signing_keys(trees: Sequence[ChainTree], trust: TrustStore) -> bytes:
    """The verifier keys of ``trust`` that signed at least one of the checkpoints."""
    lines = ["# Verifier keys that signed this bundle's checkpoints (C2SP note format).\n"]
    for verifier in sorted(trust.verifiers, key=lambda v: (v.name, v.key_id)):
        single = TrustStore([verifier])
        for tree in trees:
            try:
                open_note(tree.note, single)
            except Exception:  # noqa: S112 (not this key: try the next)
                continue
            lines.append(verifier.to_text() + "\n")
            break
    return "".join(lines).encode("utf-8")


# --- export with custody -------------------------------------------------------------------------


def export_bundle(
    catalog: ArchiveCatalog,
    trust: TrustStore,
    request: ExportRequest,
    *,
    access_log: AccessLog,
    sealed_at_ms: int,
    out: Path | None = None,
    query_result: pa.Table | None = None,
    keys: KeyLookup | None = None,
) -> ExportResult:
    """Build the bundle, seal its custody entry in the access log, and only then write it."""
    with cyclic_gc_paused():
        bundle = build_bundle(catalog, trust, request, query_result=query_result, keys=keys)
    selection = request.selection
    entry = AccessEntry(
        who=request.who,
        sql=selection.query or f"-- export: records of customer {selection.customer!r}",
        params={
            "matter": request.matter,
            "customer": selection.customer,
            "since": selection.to_json()["since"],
            "until": selection.to_json()["until"],
            "when": bundle.custody["when"],
            "time_zone": request.zone,
            "checkpoints": bundle.custody["checkpoints"],
            "counts": bundle.custody["counts"],
            "manifest_sha256": bundle.manifest_sha256,
        },
        rows=bundle.record_count,
        result_sha256=bundle.custody_sha256,
        report="export",
    )
    access = access_log.append(entry, now_ms=sealed_at_ms)
    if out is not None:
        bundle.write(out)
    return ExportResult(bundle, access)


def read_bundle(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """Every file of a bundle directory or zip, by its path inside the bundle.

    Refuses, naming the member, what would make the reader allocate more than ``limits`` or
    write outside the bundle (see :mod:`coexarchive.export.zipfiles`).
    """
    return read_bundle_files(path, limits)
