"""Search over a small archive: every operator, scripts, captions and file names, the index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tantivy
from search._archive import (
    ALICE,
    BOB,
    CHAIN_A,
    CHAIN_B,
    IDENTITY,
    TEXTS,
    Fixture,
    build_search_archive,
    chain_a_day0,
)

from coexarchive.query.views import ACCESS_LOG_CHAIN, Window
from coexarchive.search import SearchIndex, SearchIndexError
from coexarchive.search.document import SEARCH_COLUMNS, Searchable, matches
from coexarchive.search.index import SIDECAR
from coexarchive.search.language import parse
from coexarchive.segments import ChainWriter, Manifest, list_manifests, read_segment
from coexarchive.store import MemoryStore
from support.archive import ARCHIVE, DAY_MS, START_MS, short_policy


@pytest.fixture
def archive() -> Fixture:
    return build_search_archive(MemoryStore())


@pytest.fixture
def index(archive: Fixture, tmp_path: Path) -> SearchIndex:
    built = archive.index(tmp_path / "index")
    built.update(archive.catalog())
    return built


def found(archive: Fixture, index: SearchIndex, query: str, **options: object) -> list[str]:
    """The texts of the hits, in the order shown (the text of n is TEXTS[n])."""
    result = archive.searcher(index).search(query, **options)  # type: ignore[arg-type]
    assert result.mismatched == 0
    return [_plain(text) for text in result.table.column("text").to_pylist()]


def _plain(snippet: str) -> str:
    return snippet.replace("«", "").replace("»", "")


def n(*numbers: int) -> list[str]:
    return [TEXTS[number] for number in numbers]


# -- words, phrases, Boolean operators ---------------------------------------------------------


def test_a_word_matches_whatever_its_case(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "CRYPTO") == n(1, 3, 4)
    assert found(archive, index, "Crypto") == found(archive, index, "crypto")


def test_a_phrase_matches_only_the_words_in_that_order(
    archive: Fixture, index: SearchIndex
) -> None:
    assert found(archive, index, '"guaranteed return"') == n(1, 2, 12)
    assert found(archive, index, '"return guaranteed"') == []
    assert found(archive, index, '"guaranteed crypto"') == []  # both there, not side by side


def test_and_explicit_or_implicit(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "guaranteed AND test") == n(2)
    assert found(archive, index, "guaranteed test") == n(2)


def test_or(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "bitcoin OR test") == n(2, 12)


def test_not_and_minus_exclude(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "guaranteed NOT crypto") == n(2, 12)
    assert found(archive, index, "guaranteed -crypto") == n(2, 12)


def test_not_alone_means_every_searchable_record_but(archive: Fixture, index: SearchIndex) -> None:
    hits = found(archive, index, "NOT guaranteed")
    assert len(hits) == 13 - 5  # 13 records have text or a file name; 5 say guaranteed
    assert TEXTS[5] in hits and TEXTS[1] not in hits


def test_parentheses_group(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "(bitcoin OR test) AND return") == n(2, 12)
    assert found(archive, index, "bitcoin OR (test AND crypto)") == n(12)
    assert found(archive, index, "NOT (crypto OR guaranteed) AND statement") == n(8)


# -- proximity ---------------------------------------------------------------------------------


def test_near_matches_within_the_distance_in_either_order(
    archive: Fixture, index: SearchIndex
) -> None:
    # 1: three apart; 4: five apart, crypto first; 3: six apart.
    assert found(archive, index, "guaranteed NEAR/5 crypto") == n(1, 4)
    assert found(archive, index, "crypto NEAR/5 guaranteed") == n(1, 4)


def test_words_six_apart_do_not_match_near_5(archive: Fixture, index: SearchIndex) -> None:
    assert TEXTS[3] not in found(archive, index, "guaranteed NEAR/5 crypto")
    assert TEXTS[3] in found(archive, index, "guaranteed NEAR/6 crypto")
    assert found(archive, index, "guaranteed NEAR/2 crypto") == []


def test_near_with_a_phrase_counts_from_the_phrase_end(
    archive: Fixture, index: SearchIndex
) -> None:
    # "bitcoin and a guaranteed return": bitcoin, then 3 words on to the phrase.
    assert found(archive, index, '"guaranteed return" NEAR/3 bitcoin') == n(12)
    assert found(archive, index, '"guaranteed return" NEAR/2 bitcoin') == []
    assert found(archive, index, '"guaranteed return" NEAR/2 crypto') == n(1)


def test_the_issue_example(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "guaranteed NEAR/5 crypto AND NOT test") == n(1, 4)


# -- filters and period ------------------------------------------------------------------------


def test_field_filters(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, f"guaranteed chain:{CHAIN_B}") == n(12)
    assert found(archive, index, f"guaranteed customer:{BOB}") == n(2, 12)
    assert found(archive, index, "guaranteed direction:outbound") == n(2, 3, 12)
    assert found(archive, index, "guaranteed kind:message") == n(1, 4)
    assert found(archive, index, f"type:document customer:{BOB}") == [
        TEXTS[8],
        "file: contract_final.docx",
    ]
    assert found(archive, index, f"customer:{ALICE} -chain:{CHAIN_A}") == n(11)


def test_period(archive: Fixture, index: SearchIndex) -> None:
    day1, day2 = START_MS + DAY_MS, START_MS + 2 * DAY_MS
    assert found(archive, index, "guaranteed", window=Window(since=day1)) == n(12)
    assert found(archive, index, "guaranteed", window=Window(until=day1)) == n(1, 2, 3, 4)
    assert found(archive, index, "crypto OR bitcoin", window=Window(day1, day2)) == []


def test_newest_first_and_limit(archive: Fixture, index: SearchIndex) -> None:
    result = archive.searcher(index).search("guaranteed", limit=2, newest_first=True)
    assert [_plain(t) for t in result.table.column("text").to_pylist()] == n(12, 4)
    assert result.total == 5


# -- scripts and folding -----------------------------------------------------------------------


def test_accents_case_and_width_fold(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "donde pedido") == n(5)
    assert found(archive, index, "DÓNDE") == n(5)
    assert found(archive, index, "creme brulee cafe") == n(11)
    assert found(archive, index, "strasse euro") == n(11)  # ß, full-width letters


def test_arabic_with_and_without_short_vowels(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "مرحبا") == n(6)
    assert found(archive, index, "مَرْحَبًا") == n(6)
    assert found(archive, index, '"في المتجر"') == n(6)


def test_hindi_words_keep_their_vowel_signs(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "नमस्ते") == n(7)
    assert found(archive, index, '"ऑर्डर तैयार"') == n(7)
    assert found(archive, index, "नमस") == []  # a part of a word is not the word


def test_chinese_is_found_by_its_characters(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "订单") == n(9)
    assert found(archive, index, "单订") == []
    (hit,) = archive.searcher(index).search("订单").table.column("text").to_pylist()
    assert hit == "您的«订»«单»已发货"


def test_captions_and_document_names(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "quarterly statement") == n(8)
    assert found(archive, index, "invoice") == ["file: Invoice-2026-03.pdf"]
    assert found(archive, index, '"invoice 2026 03 pdf"') == ["file: Invoice-2026-03.pdf"]
    assert found(archive, index, "contract") == ["file: contract_final.docx"]
    # The caption and the file name are not one run of words.
    assert found(archive, index, '"attached invoice"') == []
    assert found(archive, index, "attached NEAR/5 invoice") == []


def test_stemming_is_optional(archive: Fixture, index: SearchIndex) -> None:
    assert found(archive, index, "invest") == []
    assert found(archive, index, "invest", stemmed=True) == n(10)
    assert found(archive, index, '"were invest"', stemmed=True) == n(10)


def test_snippets_mark_the_matched_words(archive: Fixture, index: SearchIndex) -> None:
    (text,) = (
        archive.searcher(index).search("crypto NEAR/3 return").table.column("text").to_pylist()
    )
    assert text == "Is this a guaranteed «return» on «crypto»?"


def test_each_hit_names_its_conversation(archive: Fixture, index: SearchIndex) -> None:
    (row,) = archive.searcher(index).search('"guaranteed return" AND test').table.to_pylist()
    assert (row["chain_id"], row["customer_id"], row["seq"]) == (CHAIN_A, BOB, 1)
    assert row["open"] == (
        f"coexarchive report transcript --customer {BOB} --chain {CHAIN_A} --since 2026-01-05"
    )
    assert row["record_id"] and row["direction"] == "outbound" and row["kind"] == "outbound"


# -- the access log --------------------------------------------------------------------------


def access_entries(store: MemoryStore) -> list[dict[str, object]]:
    entries = []
    for key in list_manifests(store, ACCESS_LOG_CHAIN):
        manifest = Manifest.from_bytes(store.get(key), key=key)
        table = read_segment(store.get(manifest.segment.key))
        entries += [json.loads(d) for d in table.column("detail").to_pylist()]
    return entries


def test_every_search_is_sealed_with_its_result_digest(
    archive: Fixture, index: SearchIndex
) -> None:
    result = archive.searcher(index, who="officer@example.com").search("crypto", limit=2)
    (entry,) = access_entries(archive.store)  # type: ignore[arg-type]
    assert entry["who"] == "officer@example.com" and entry["report"] == "search"
    assert entry["rows"] == 2 and entry["result_sha256"] == result.result_sha256
    assert entry["params"]["query"] == "crypto"  # type: ignore[index]
    assert entry["params"]["index_total"] == 3  # type: ignore[index]


def test_a_malformed_query_reads_and_logs_nothing(archive: Fixture, index: SearchIndex) -> None:
    from coexarchive.search import SearchSyntaxError

    with pytest.raises(SearchSyntaxError):
        archive.searcher(index).search('"unclosed')
    assert access_entries(archive.store) == []  # type: ignore[arg-type]


# -- the index is derived data --------------------------------------------------------------


QUERIES = [
    "crypto",
    '"guaranteed return"',
    "guaranteed NEAR/5 crypto AND NOT test",
    "guaranteed NEAR/6 crypto",
    '"guaranteed return" NEAR/3 bitcoin',
    "bitcoin OR (test AND crypto)",
    "NOT guaranteed",
    f"customer:{ALICE} -chain:{CHAIN_A}",
    "type:document",
    "مرحبا OR नमस्ते OR 订单 OR donde",
    "guaranteed NEAR/1 return",
    "return NEAR/1 return",
]


def every_record(archive: Fixture) -> list[Searchable]:
    catalog = archive.catalog()
    catalog.refresh()
    from coexarchive.query.views import business_segments
    from coexarchive.search.index import media_file_names

    out = []
    for segment in business_segments(catalog):
        dataset = catalog.dataset([segment])
        names = media_file_names(dataset)
        for row in dataset.to_table(columns=list(SEARCH_COLUMNS)).to_pylist():
            record = Searchable.of(row, names.get(row["seq"]))
            if not record.empty:
                out.append(record)
    return out


@pytest.mark.parametrize("query", QUERIES)
def test_the_index_answers_what_reading_every_record_answers(
    archive: Fixture, index: SearchIndex, query: str
) -> None:
    tree = parse(query)
    expected = sorted(
        (r.columns["chain_id"], r.columns["seq"]) for r in every_record(archive) if matches(tree, r)
    )
    hits = index.search(tree, limit=1_000).hits
    assert sorted((hit.chain_id, hit.seq) for hit in hits) == expected


def test_rebuilding_from_scratch_gives_the_same_answers(
    archive: Fixture, index: SearchIndex, tmp_path: Path
) -> None:
    before = {q: index.search(parse(q), limit=1_000).hits for q in QUERIES}
    index.update(archive.catalog(), rebuild=True)
    fresh = archive.index(tmp_path / "fresh")
    fresh.update(archive.catalog())
    for query, hits in before.items():
        assert index.search(parse(query), limit=1_000).hits == hits, query
        assert fresh.search(parse(query), limit=1_000).hits == hits, query


def test_reindex_adds_only_new_segments(archive: Fixture, index: SearchIndex) -> None:
    assert len(index.segments()) == 3
    assert found(archive, index, "late") == []
    archive.append_later_day()
    # Before the update the search says what it has not searched.
    stale = archive.searcher(index).search("late")
    assert stale.not_indexed == 1
    update = index.update(archive.catalog())
    assert len(update.added) == 1 and update.removed == [] and update.records == 1
    assert found(archive, index, "late") == ["a late guaranteed return on crypto"]
    assert archive.searcher(index).search("late").not_indexed == 0
    again = index.update(archive.catalog())
    assert again.added == [] and again.records == 0
    # No record is indexed twice.
    assert index.search(parse("guaranteed"), limit=100).total == 6


def test_an_interrupted_segment_is_replaced_not_doubled(
    archive: Fixture, index: SearchIndex, tmp_path: Path
) -> None:
    sidecar = tmp_path / "index" / SIDECAR
    state = json.loads(sidecar.read_text())
    state["segments"] = state["segments"][:1]  # as if the run stopped before its last commit
    sidecar.write_text(json.dumps(state))
    index.update(archive.catalog())
    assert index.search(parse("guaranteed"), limit=100).total == 5


def test_segments_the_archive_no_longer_has_leave_the_index(
    archive: Fixture, index: SearchIndex
) -> None:
    # The same archive with only chain A's first day (as after disposal): the rest is dropped.
    store = MemoryStore()
    writer = ChainWriter(
        store, CHAIN_A, signer=archive.key, archive_name=ARCHIVE, policy=short_policy()
    )
    writer.append(chain_a_day0())
    smaller = Fixture(store, archive.key, {CHAIN_A: writer})
    update = index.update(smaller.catalog())
    assert len(update.removed) == 2 and update.added == []
    assert found(smaller, index, "guaranteed") == n(1, 2, 3, 4)
    assert found(smaller, index, "bitcoin OR invoice") == []


def forge(
    directory: Path, term: str, *, words: list[str] | None = None, ms: int | None = None
) -> None:
    """Rewrite the index document of the record saying ``term``: other words or time."""
    raw = tantivy.Index.open(str(directory))
    searcher = raw.searcher()
    query = tantivy.Query.term_query(raw.schema, "body", term)
    ((_score, address),) = searcher.search(query, 1).hits
    doc = searcher.doc(address).to_dict()
    forged = tantivy.Document()
    tokens = [tantivy.Token(w, i, 0, len(w)) for i, w in enumerate(words or [term])]
    forged.add_pre_tokenized_text("body", tantivy.PreTokenizedString("", tokens))
    for name in ("chain_id", "customer_id", "direction", "kind", "msg_type", "record_id"):
        forged.add_text(name, doc[name][0])
    forged.add_text("segment", doc["segment"][0])
    forged.add_integer("seq", doc["seq"][0])
    forged.add_integer("event_ms", doc["event_ms"][0] if ms is None else ms)
    writer = raw.writer(heap_size=20_000_000, num_threads=1)
    writer.delete_documents_by_term("record_id", doc["record_id"][0])
    writer.add_document(forged)
    writer.commit()
    writer.wait_merging_threads()


def test_a_hit_the_archive_does_not_bear_out_is_not_shown(
    archive: Fixture, index: SearchIndex
) -> None:
    # Someone rewrites the index so that a record saying "statement" is found for "crypto".
    forge(index.directory, "statement", words=["crypto"])
    result = archive.searcher(archive.index(index.directory)).search("crypto")
    assert result.total == 4 and result.mismatched == 1
    assert [_plain(t) for t in result.table.column("text").to_pylist()] == n(1, 3, 4)
    (entry,) = access_entries(archive.store)  # type: ignore[arg-type]
    assert entry["params"]["index_mismatches"] == 1  # type: ignore[index]


def test_a_hit_outside_the_period_is_not_shown_whatever_the_index_says(
    archive: Fixture, index: SearchIndex
) -> None:
    # The record saying "statement" is of day 1; its index entry is moved into day 0.
    forge(index.directory, "statement", ms=START_MS + 60_000)
    result = archive.searcher(archive.index(index.directory)).search(
        "statement", window=Window(until=START_MS + DAY_MS)
    )
    assert result.total == 1 and result.mismatched == 1 and result.table.num_rows == 0


def test_an_index_of_another_archive_is_refused(archive: Fixture, index: SearchIndex) -> None:
    other = SearchIndex(index.directory, IDENTITY + " elsewhere")
    with pytest.raises(SearchIndexError, match="built from another archive"):
        other.search(parse("crypto"))
    with pytest.raises(SearchIndexError, match="built from another archive"):
        other.update(archive.catalog())


def test_an_index_of_another_analyzer_is_refused(archive: Fixture, index: SearchIndex) -> None:
    sidecar = index.directory / SIDECAR
    state = json.loads(sidecar.read_text())
    state["analyzer"] = 0
    sidecar.write_text(json.dumps(state))
    with pytest.raises(SearchIndexError, match=r"analyzer version 0.*--rebuild"):
        archive.searcher(index).search("crypto")
    index.update(archive.catalog(), rebuild=True)
    assert found(archive, index, "crypto") == n(1, 3, 4)


def test_no_index_yet_says_how_to_build_one(archive: Fixture, tmp_path: Path) -> None:
    with pytest.raises(SearchIndexError, match="search reindex"):
        archive.searcher(archive.index(tmp_path / "none")).search("crypto")


def test_a_directory_that_is_not_an_index_is_never_written_or_cleared(
    archive: Fixture, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    for rebuild in (False, True):
        with pytest.raises(SearchIndexError, match="not a search index"):
            archive.index(tmp_path).update(archive.catalog(), rebuild=rebuild)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_index_is_readable_by_its_owner_only(index: SearchIndex) -> None:
    assert index.directory.stat().st_mode & 0o077 == 0


# -- output must not attack its reader --------------------------------------------------------


def hostile_archive() -> Fixture:
    from coexarchive.segments import ChainWriter as Writer
    from support.archive import scenario_record, signer

    store = MemoryStore()
    key = signer()
    writer = Writer(store, CHAIN_A, signer=key, archive_name=ARCHIVE, policy=short_policy())
    writer.append(
        [
            scenario_record(
                CHAIN_A,
                1,
                0,
                1,
                customer_id="4477; rm -rf ~",
                text='=HYPERLINK("http://evil") crypto \x1b[2J\u202egnp.exe',
            )
        ]
    )
    return Fixture(store, key, {CHAIN_A: writer})


def test_a_customer_id_cannot_smuggle_a_shell_command_into_open(tmp_path: Path) -> None:
    archive = hostile_archive()
    index = archive.index(tmp_path / "index")
    index.update(archive.catalog())
    (row,) = archive.searcher(index).search("crypto").table.to_pylist()
    assert row["open"].startswith("coexarchive report transcript --customer '4477; rm -rf ~' ")


def test_snippets_are_escaped_in_every_output(tmp_path: Path) -> None:
    import io

    from coexarchive.query.cli import write_result

    archive = hostile_archive()
    index = archive.index(tmp_path / "index")
    index.update(archive.catalog())
    table = archive.searcher(index).search("hyperlink").table
    assert table.column("text").to_pylist()[0].startswith("=«HYPERLINK»")
    csv_out, table_out = io.StringIO(), io.StringIO()
    write_result(table, "csv", None, csv_out)
    assert "\"'=«HYPERLINK»" in csv_out.getvalue()  # shown as text by a spreadsheet
    write_result(table, "table", None, table_out)
    shown = table_out.getvalue()
    assert "\x1b" not in shown and "\u202e" not in shown
    assert "\\x1b" in shown and "\\u202e" in shown


def test_a_second_writer_is_refused_and_the_index_kept(
    archive: Fixture, index: SearchIndex
) -> None:
    busy = tantivy.Index.open(str(index.directory)).writer(heap_size=20_000_000, num_threads=1)
    try:
        for rebuild in (False, True):
            with pytest.raises(SearchIndexError, match="another reindex running"):
                archive.index(index.directory).update(archive.catalog(), rebuild=rebuild)
    finally:
        del busy
    assert found(archive, index, "crypto") == n(1, 3, 4)


def test_an_index_whose_files_are_gone_is_refused_not_read_as_empty(
    archive: Fixture, index: SearchIndex
) -> None:
    (index.directory / "meta.json").unlink()
    fresh = archive.index(index.directory)
    with pytest.raises(SearchIndexError, match=r"no index files.*--rebuild"):
        archive.searcher(fresh).search("crypto")
    with pytest.raises(SearchIndexError, match="no index files"):
        fresh.update(archive.catalog())
    fresh.update(archive.catalog(), rebuild=True)
    assert found(archive, fresh, "crypto") == n(1, 3, 4)
