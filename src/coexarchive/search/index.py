"""The search index: a local tantivy index of the archive's searchable records.

Derived data, never evidence: it is rebuilt from the archive at any time, and a search reads
every hit back from the archive before showing it. It lives in a directory of its own (see
:func:`default_index_dir`) with a sidecar, ``coexarchive-search.json``, naming the archive it
belongs to, the analyzer version it was built with and every segment key it holds; ``update``
indexes the committed segments the sidecar does not name and drops those the archive no longer
has. The index holds the words of every message: keep it on storage as protected as the
archive's own credentials (it is created readable by its owner only).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import tantivy

from coexarchive._internal.progress import Progress
from coexarchive.errors import SearchIndexError
from coexarchive.query.views import ArchiveCatalog, Segment, Window, business_segments
from coexarchive.seal.personal import ERASED, KeyLookup, open_if_sealed
from coexarchive.search.analysis import ANALYZER_VERSION
from coexarchive.search.document import MEDIA_TYPES, SEARCH_COLUMNS, Searchable, file_name
from coexarchive.search.language import And, Filter, Near, Node, Not, Or, Phrase
from coexarchive.settings import Settings, config_home

__all__ = ["Hit", "Hits", "SearchIndex", "SearchIndexError", "Update", "default_index_dir"]

SIDECAR = "coexarchive-search.json"
SIDECAR_VERSION = 1
INDEX_DIR_ENV = "COEXARCHIVE_SEARCH_INDEX"
_TEXT_FIELDS = {False: "body", True: "stem"}
_FILTER_FIELDS = ("chain_id", "customer_id", "direction", "kind", "msg_type")
# Segments read and indexed between two commits: an interrupted update resumes from the last.
_COMMIT_EVERY = 64
_HEAP = 64_000_000


def default_index_dir(settings: Settings, env: Mapping[str, str] | None = None) -> Path:
    """``$COEXARCHIVE_SEARCH_INDEX``, else ``<config home>/search/<bucket>``."""
    env = os.environ if env is None else env
    if env.get(INDEX_DIR_ENV):
        return Path(env[INDEX_DIR_ENV]).expanduser().absolute()
    return config_home(env) / "search" / settings.bucket


def archive_identity(settings: Settings) -> str:
    """What names the archive an index was built from (compared, never trusted)."""
    return f"{settings.archive_name} s3://{settings.bucket} {settings.endpoint_url or 'aws'}"


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    for name in _TEXT_FIELDS.values():
        builder.add_text_field(name, tokenizer_name="raw", index_option="position")
    for name in (*_FILTER_FIELDS, "record_id", "segment"):
        builder.add_text_field(name, stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_integer_field("seq", stored=True)
    builder.add_integer_field("event_ms", stored=True, indexed=True, fast=True)
    return builder.build()


@dataclass(frozen=True)
class Hit:
    """Where a matching record is: enough to read it back from the archive."""

    chain_id: str
    seq: int
    record_id: str
    event_ms: int
    customer_id: str | None
    segment: str


@dataclass(frozen=True)
class Hits:
    hits: list[Hit]
    total: int  # every match in the index, not only those returned


@dataclass
class Update:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    records: int = 0


class SearchIndex:
    """One archive's search index in ``directory``."""

    def __init__(self, directory: Path, identity: str, *, keys: KeyLookup | None = None) -> None:
        self.directory = directory
        self.identity = identity
        # Opens personal fields sealed encrypted (record version 2) before they are indexed
        # or read back; an erased customer's fields open as ``[erased]`` and are not indexed.
        self.keys = keys
        self.schema = _schema()
        self._index: tantivy.Index | None = None

    # -- state ---------------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.directory / SIDECAR).is_file()

    def segments(self) -> set[str]:
        """The segment keys the index holds, from its sidecar (empty when there is no index)."""
        if not self.exists():
            return set()
        state = self._sidecar()
        return set(state["segments"])

    def _sidecar(self) -> dict[str, Any]:
        path = self.directory / SIDECAR
        try:
            state = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise SearchIndexError(
                f"search index sidecar {path} is unreadable ({exc}): rebuild the index with "
                "`coexarchive search reindex --rebuild`"
            ) from None
        if not isinstance(state, dict) or state.get("v") != SIDECAR_VERSION:
            raise SearchIndexError(
                f"search index {self.directory} has an unknown format: rebuild it with "
                "`coexarchive search reindex --rebuild`"
            )
        if state.get("archive") != self.identity:
            raise SearchIndexError(
                f"search index {self.directory} was built from another archive "
                f"({state.get('archive')!r}, this is {self.identity!r}): pass --index DIR "
                "for this archive's index, or rebuild it with `search reindex --rebuild`"
            )
        if state.get("analyzer") != ANALYZER_VERSION:
            raise SearchIndexError(
                f"search index {self.directory} was built with analyzer version "
                f"{state.get('analyzer')}, this coexarchive uses {ANALYZER_VERSION}: rebuild it "
                "with `coexarchive search reindex --rebuild`"
            )
        return state

    def _write_sidecar(self, segments: Iterable[str]) -> None:
        state = {
            "v": SIDECAR_VERSION,
            "archive": self.identity,
            "analyzer": ANALYZER_VERSION,
            "segments": sorted(segments),
        }
        path = self.directory / SIDECAR
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
        os.replace(temporary, path)

    def _open(self, *, create: bool) -> tantivy.Index:
        if self._index is not None:
            return self._index
        if not create and not self.exists():
            raise SearchIndexError(
                f"no search index in {self.directory}: build it with "
                "`coexarchive search reindex` (or pass --index DIR)"
            )
        self._check_directory()
        if self.exists() and not (self.directory / "meta.json").is_file():
            # Without tantivy's own files an empty index would be created and answer nothing.
            raise SearchIndexError(
                f"search index {self.directory} has its sidecar but no index files: rebuild it "
                "with `coexarchive search reindex --rebuild`"
            )
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self._index = tantivy.Index(self.schema, path=str(self.directory), reuse=True)
        except ValueError as exc:
            raise SearchIndexError(
                f"cannot open search index {self.directory}: {exc}; rebuild it with "
                "`coexarchive search reindex --rebuild`"
            ) from None
        return self._index

    # -- building ------------------------------------------------------------------------------

    def update(
        self,
        catalog: ArchiveCatalog,
        *,
        rebuild: bool = False,
        progress: Progress | None = None,
    ) -> Update:
        """Index the committed segments not yet indexed; drop those the archive lost.

        ``rebuild`` empties the index first (in the same commit as the first segments, so an
        interrupted rebuild leaves the old index or a consistent part of the new one).
        """
        if rebuild:
            held: set[str] = set()
            try:
                index = self._open(create=True)
            except SearchIndexError:
                # Unreadable as an index of ours (an older schema, damaged files): start afresh.
                self._clear()
                index = self._open(create=True)
        else:
            held = self.segments()
            index = self._open(create=True)
        catalog.refresh()
        wanted = {segment.key: segment for segment in business_segments(catalog)}
        update = Update(added=sorted(set(wanted) - held), removed=sorted(held - set(wanted)))
        if progress is not None:
            progress.total = len(update.added)
        try:
            writer = index.writer(heap_size=_HEAP, num_threads=1)
        except ValueError as exc:
            raise SearchIndexError(
                f"cannot write search index {self.directory}: {exc} (is another reindex running?)"
            ) from None
        try:
            if rebuild:
                writer.delete_all_documents()
            for key in update.removed:
                writer.delete_documents_by_term("segment", key)
                held.discard(key)
            done: list[str] = []
            for key in update.added:
                # Idempotent: a segment half-indexed by an interrupted run is replaced whole.
                writer.delete_documents_by_term("segment", key)
                update.records += self._add_segment(writer, catalog, wanted[key])
                done.append(key)
                if progress is not None:
                    progress.advance()
                if len(done) % _COMMIT_EVERY == 0:
                    writer.commit()
                    self._write_sidecar(held | set(done))
            writer.commit()
            writer.wait_merging_threads()
        except BaseException:
            with contextlib.suppress(ValueError):
                writer.rollback()
            raise
        self._write_sidecar(held | set(done))
        index.reload()
        return update

    def _clear(self) -> None:
        """Remove the index's files; refuses a directory that holds anything else."""
        self._check_directory()
        for child in self.directory.iterdir():
            if child.is_file():
                child.unlink()
        self._index = None

    def _check_directory(self) -> None:
        """Refuse to put an index into (or clear) a directory that is not one."""
        if not self.directory.exists():
            return
        children = list(self.directory.iterdir())
        ours = any(c.name in (SIDECAR, "meta.json") for c in children)
        if children and (not ours or any(not c.is_file() for c in children)):
            raise SearchIndexError(
                f"{self.directory} is not empty and is not a search index: pass --index with "
                "an empty or new directory"
            )

    def _add_segment(
        self, writer: tantivy.IndexWriter, catalog: ArchiveCatalog, segment: Segment
    ) -> int:
        dataset = catalog.dataset([segment])
        table = open_if_sealed(dataset.to_table(columns=list(SEARCH_COLUMNS)), self.keys)
        names = media_file_names(dataset, self.keys)
        count = 0
        for row in table.to_pylist():
            if row["text"] == ERASED:
                continue  # an erased customer's record: nothing of it may be indexed
            searchable = Searchable.of(row, names.get(row["seq"]))
            if searchable.empty:
                continue
            writer.add_document(_document(searchable, row, segment.key))
            count += 1
        return count

    def purge_customer(self, customer: str, catalog: ArchiveCatalog) -> int:
        """Remove every trace of ``customer`` after an erasure; returns the documents removed.

        A deleted document's words stay in the index files until their segment is merged
        away, so the index is rebuilt (the erased records open as ``[erased]`` and are left
        out) and the old files are collected: nothing of the customer's text remains.
        """
        index = self._open(create=False)
        self._sidecar()
        index.reload()
        term = tantivy.Query.term_query(self.schema, "customer_id", customer)
        found = index.searcher().search(term, limit=1, count=True)
        count = int(getattr(found, "count", 0) or 0)
        self.update(catalog, rebuild=True)
        writer = index.writer(heap_size=_HEAP, num_threads=1)
        try:
            writer.garbage_collect_files()
        finally:
            writer.wait_merging_threads()
        return count

    # -- searching -----------------------------------------------------------------------------

    def search(
        self,
        node: Node,
        *,
        stemmed: bool = False,
        window: Window | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> Hits:
        index = self._open(create=False)
        self._sidecar()  # refuses an index of another archive or analyzer
        index.reload()
        query = _query(self.schema, node, _TEXT_FIELDS[stemmed])
        if window is not None and (window.since is not None or window.until is not None):
            period = tantivy.Query.range_query(
                self.schema,
                "event_ms",
                tantivy.FieldType.Integer,
                window.since,
                None if window.until is None else window.until - 1,
                True,
                True,
            )
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query), (tantivy.Occur.Must, period)]
            )
        searcher = index.searcher()
        result = searcher.search(
            query,
            limit,
            count=True,
            order_by_field="event_ms",
            order=tantivy.Order.Desc if newest_first else tantivy.Order.Asc,
        )
        hits = []
        for _score, address in result.hits:
            doc = searcher.doc(address)
            hits.append(
                Hit(
                    chain_id=doc["chain_id"][0],
                    seq=int(doc["seq"][0]),
                    record_id=doc["record_id"][0],
                    event_ms=int(doc["event_ms"][0]),
                    customer_id=doc.get_first("customer_id"),
                    segment=doc["segment"][0],
                )
            )
        # ``count`` is missing from the bindings' stubs, though every result has it.
        total: int | None = getattr(result, "count", None)
        return Hits(hits, total if total is not None else len(hits))


def media_file_names(dataset: ds.Dataset, keys: KeyLookup | None = None) -> dict[int, str]:
    """seq → the media file name recorded in ``detail``, for the segment's media records."""
    media = dataset.to_table(
        columns=["seq", "chain_id", "record_id", "record_version", "msg_type", "detail"],
        filter=ds.field("msg_type").isin(pa.array(sorted(MEDIA_TYPES))),
    )
    media = open_if_sealed(media, keys)
    names = {}
    for row in media.to_pylist():
        if row["detail"] == ERASED:
            continue
        name = file_name(row["msg_type"], row["detail"])
        if name is not None:
            names[row["seq"]] = name
    return names


def _document(searchable: Searchable, row: Mapping[str, Any], segment: str) -> tantivy.Document:
    doc = tantivy.Document()
    for name, words in (("body", searchable.terms), ("stem", searchable.stems())):
        tokens = [
            tantivy.Token(word, position, span.start, span.end)
            for word, position, span in zip(
                words, searchable.positions, searchable.spans, strict=True
            )
        ]
        doc.add_pre_tokenized_text(name, tantivy.PreTokenizedString("", tokens))
    for name in _FILTER_FIELDS:
        if row.get(name) is not None:
            doc.add_text(name, str(row[name]))
    doc.add_text("record_id", row["record_id"])
    doc.add_text("segment", segment)
    doc.add_integer("seq", int(row["seq"]))
    doc.add_integer("event_ms", _ms(row["event_time"]))
    return doc


def _ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)


# -- the language as tantivy queries ---------------------------------------------------------


def _query(schema: tantivy.Schema, node: Node, field_name: str) -> tantivy.Query:
    Q, Occur = tantivy.Query, tantivy.Occur
    if isinstance(node, Phrase):
        return _phrase(schema, field_name, node.words)
    if isinstance(node, Near):
        return _near(schema, field_name, node)
    if isinstance(node, Filter):
        return Q.term_query(schema, node.column, node.value, index_option="basic")
    if isinstance(node, Not):
        return Q.boolean_query(
            [(Occur.Must, Q.all_query()), (Occur.MustNot, _query(schema, node.operand, field_name))]
        )
    if isinstance(node, And):
        clauses = []
        for child in node.operands:
            if isinstance(child, Not):
                clauses.append((Occur.MustNot, _query(schema, child.operand, field_name)))
            else:
                clauses.append((Occur.Must, _query(schema, child, field_name)))
        if all(occur == Occur.MustNot for occur, _ in clauses):
            clauses.append((Occur.Must, Q.all_query()))
        return Q.boolean_query(clauses)
    assert isinstance(node, Or)
    return Q.boolean_query([(Occur.Should, _query(schema, c, field_name)) for c in node.operands])


def _phrase(schema: tantivy.Schema, field_name: str, words: Sequence[str]) -> tantivy.Query:
    if len(words) == 1:
        return tantivy.Query.term_query(schema, field_name, words[0])
    return tantivy.Query.phrase_query(schema, field_name, list(words))


def _near(schema: tantivy.Schema, field_name: str, node: Near) -> tantivy.Query:
    Q, Occur = tantivy.Query, tantivy.Occur
    left, right, distance = node.left.words, node.right.words, node.distance
    if len(left) == 1 and len(right) == 1 and left != right:
        # tantivy's slop n-1 matches b 1..n words after a, or before it by fewer: both orders
        # of the pair together are exactly "n or fewer apart".
        pairs = [[left[0], right[0]], [right[0], left[0]]]
        options = [Q.phrase_query(schema, field_name, list(p), distance - 1) for p in pairs]
    else:
        options = []
        for first, second in ((left, right), (right, left)):
            for gap in range(1, distance + 1):
                words: list[str | tuple[int, str]] = [(i, w) for i, w in enumerate(first)]
                start = len(first) - 1 + gap
                words += [(start + i, w) for i, w in enumerate(second)]
                options.append(Q.phrase_query(schema, field_name, words))
    return Q.boolean_query([(Occur.Should, option) for option in options])
