"""A search as an auditor runs it: index, archive read-back, access log, then the result.

1. The query is parsed (a malformed query reads nothing and logs nothing).
2. The index names the candidate records, in event-time order.
3. Each candidate is read back from the archive by segment and seq, and the query is checked
   against the record itself (:func:`~coexarchive.search.document.matches`): a stale or altered
   index can leave records out, never put one in. What is shown comes from the archive.
4. The result is digested and sealed in the access log; only then is it returned for display.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from coexarchive.query.access_log import AccessEntry, AccessLog, result_digest
from coexarchive.query.views import (
    ArchiveCatalog,
    Segment,
    Window,
    business_segments,
    utc_ms,
)
from coexarchive.seal.personal import open_if_sealed
from coexarchive.search.analysis import Token, stem
from coexarchive.search.document import SEARCH_COLUMNS, Searchable, matches
from coexarchive.search.index import Hit, SearchIndex, media_file_names
from coexarchive.search.language import And, Near, Node, Or, Phrase, parse
from coexarchive.segments import Manifest

__all__ = ["RESULT_SCHEMA", "SearchResult", "Searcher"]

_TS = pa.timestamp("ms", tz="UTC")
RESULT_SCHEMA = pa.schema(
    [
        ("event_time", _TS),
        ("chain_id", pa.string()),
        ("customer_id", pa.string()),
        ("seq", pa.int64()),
        ("record_id", pa.string()),
        ("kind", pa.string()),
        ("direction", pa.string()),
        ("text", pa.string()),  # the snippet: shown in the text column of every output
        ("open", pa.string()),
    ]
)
_SNIPPET_CONTEXT = 60
_MARK = ("«", "»")


@dataclass(frozen=True)
class SearchResult:
    table: pa.Table
    query: str
    total: int  # matches in the index (before --limit)
    not_indexed: int  # committed segments the index does not hold yet
    mismatched: int  # index hits the archive's records did not bear out
    result_sha256: str
    access: Manifest


class Searcher:
    """Searches one archive through its index; every search is sealed in the access log."""

    def __init__(
        self,
        index: SearchIndex,
        catalog: ArchiveCatalog,
        *,
        access_log: AccessLog,
        who: str,
        clock: Callable[[], int],
    ) -> None:
        self.index = index
        self.catalog = catalog
        self.access_log = access_log
        self.who = who
        self.clock = clock
        # Sealed into every entry's params (the console's channel, reason and record ids).
        self.context: dict[str, Any] = {}

    def search(
        self,
        query: str,
        *,
        window: Window | None = None,
        limit: int = 100,
        stemmed: bool = False,
        newest_first: bool = False,
    ) -> SearchResult:
        tree = parse(query)
        self.catalog.refresh()
        segments = {s.key: s for s in business_segments(self.catalog)}
        not_indexed = len(set(segments) - self.index.segments())
        found = self.index.search(
            tree, stemmed=stemmed, window=window, limit=limit, newest_first=newest_first
        )
        rows, mismatched = self._read_back(tree, found.hits, segments, stemmed, window)
        table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
        digest = result_digest(table)
        params: dict[str, Any] = {
            "query": query,
            "since": window.since if window else None,
            "until": window.until if window else None,
            "limit": limit,
            "stemmed": stemmed,
            "index_total": found.total,
            "not_indexed_segments": not_indexed,
            "index_mismatches": mismatched,
            **self.context,
        }
        entry = AccessEntry(
            who=self.who,
            sql=f"-- search: {query}",
            params=params,
            rows=table.num_rows,
            result_sha256=digest,
            report="search",
        )
        access = self.access_log.append(entry, now_ms=self.clock())
        return SearchResult(table, query, found.total, not_indexed, mismatched, digest, access)

    def _read_back(
        self,
        tree: Node,
        hits: Sequence[Hit],
        segments: Mapping[str, Segment],
        stemmed: bool,
        window: Window | None,
    ) -> tuple[list[dict[str, Any]], int]:
        by_segment: dict[str, list[int]] = {}
        for hit in hits:
            by_segment.setdefault(hit.segment, []).append(hit.seq)
        records: dict[tuple[str, int], tuple[dict[str, Any], str | None]] = {}
        for key, seqs in by_segment.items():
            segment = segments.get(key)
            if segment is None:
                continue  # the archive no longer has it: the index is stale
            dataset = self.catalog.dataset([segment])
            wanted = ds.field("seq").isin(pa.array(sorted(set(seqs)), pa.int64()))
            table = dataset.to_table(columns=list(SEARCH_COLUMNS), filter=wanted)
            table = open_if_sealed(table, self.index.keys)
            names = media_file_names(dataset.filter(wanted), self.index.keys)
            for row in table.to_pylist():
                records[(row["chain_id"], row["seq"])] = (row, names.get(row["seq"]))
        rows, mismatched = [], 0
        for hit in hits:
            found = records.get((hit.chain_id, hit.seq))
            if found is None or found[0]["record_id"] != hit.record_id:
                mismatched += 1
                continue
            row, name = found
            searchable = Searchable.of(row, name)
            in_period = window is None or _within(window, utc_ms(row["event_time"]))
            if not in_period or not matches(tree, searchable, stemmed=stemmed):
                mismatched += 1
                continue
            rows.append(_result_row(row, snippet(tree, searchable, stemmed=stemmed)))
        return rows, mismatched


def _within(window: Window, event_ms: int) -> bool:
    if window.since is not None and event_ms < window.since:
        return False
    return window.until is None or event_ms < window.until


def _result_row(row: Mapping[str, Any], text: str) -> dict[str, Any]:
    event_time = row["event_time"]
    return {
        "event_time": event_time,
        "chain_id": row["chain_id"],
        "customer_id": row["customer_id"],
        "seq": row["seq"],
        "record_id": row["record_id"],
        "kind": row["kind"],
        "direction": row["direction"],
        "text": text,
        "open": transcript_command(row["chain_id"], row["customer_id"], event_time),
    }


def transcript_command(chain_id: str, customer_id: str | None, event_time: datetime) -> str:
    """The command that shows the conversation around a hit: its customer, from that day."""
    if customer_id is None:
        return ""
    day = event_time.astimezone(UTC).date().isoformat()
    # Quoted for a shell: ids come from the archive, and a pasted command must run nothing else.
    return (
        f"coexarchive report transcript --customer {shlex.quote(customer_id)} "
        f"--chain {shlex.quote(chain_id)} --since {day}"
    )


def _positive_words(node: Node) -> set[str]:
    """Every word the query asks to find (not those it asks to exclude)."""
    if isinstance(node, Phrase):
        return set(node.words)
    if isinstance(node, Near):
        return set(node.left.words) | set(node.right.words)
    if isinstance(node, And | Or):
        return set().union(*(_positive_words(child) for child in node.operands))
    return set()  # Not and filters: nothing to mark


def snippet(tree: Node, record: Searchable, *, stemmed: bool = False) -> str:
    """The record's text around its first matched word, each matched word marked « »."""
    wanted = _positive_words(tree)
    words = record.terms
    if stemmed:
        wanted, words = {stem(word) for word in wanted}, record.stems()
    marked = [i for i, word in enumerate(words) if word in wanted]
    in_text = [record.spans[i] for i in marked if i < record.text_terms]
    in_name = [record.spans[i] for i in marked if i >= record.text_terms]
    if (in_name and not in_text) or (record.name and not record.text_terms):
        return "file: " + _window(record.name or "", in_name)
    return _window(record.columns.get("text") or "", in_text)


def _window(text: str, spans: Sequence[Token]) -> str:
    if not spans:
        cut = 2 * _SNIPPET_CONTEXT
        return text[:cut] + ("…" if len(text) > cut else "")
    start = max(0, spans[0].start - _SNIPPET_CONTEXT)
    end = min(len(text), spans[0].end + _SNIPPET_CONTEXT)
    out, cursor = [], start
    for span in spans:
        if span.start < cursor or span.end > end:
            continue  # a second term of the same word, or beyond the window
        out += [text[cursor : span.start], _MARK[0], text[span.start : span.end], _MARK[1]]
        cursor = span.end
    out.append(text[cursor:end])
    return ("…" if start > 0 else "") + "".join(out) + ("…" if end < len(text) else "")
