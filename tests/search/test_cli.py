"""`coexarchive search` end to end on the embedded S3: output, access log, README examples."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from search._archive import ALICE, CHAIN_A, TEXTS, Fixture, build_search_archive

from coexarchive import cli
from coexarchive.errors import StorageError
from coexarchive.query.access_log import AccessLog
from coexarchive.query.views import ACCESS_LOG_CHAIN
from coexarchive.segments import Manifest, list_manifests, read_segment
from coexarchive.store import EmbeddedS3, S3Store
from coexarchive.verify import verify_archive
from support.archive import use_cli_environment

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def archive(
    s3_store: S3Store, seaweed: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Fixture:
    fixture = build_search_archive(s3_store)
    use_cli_environment(
        monkeypatch, seaweed, s3_store, fixture.key, tmp_path, auditor="olive@compliance"
    )
    monkeypatch.setenv("COEXARCHIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return fixture


def access_entries(store: S3Store) -> list[dict[str, object]]:
    entries = []
    for key in list_manifests(store, ACCESS_LOG_CHAIN):
        manifest = Manifest.from_bytes(store.get(key), key=key)
        table = read_segment(store.get(manifest.segment.key))
        entries += [json.loads(d) for d in table.column("detail").to_pylist()]
    return entries


def test_reindex_then_search_prints_hits_with_their_conversation(
    archive: Fixture, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["search", "reindex"]) == 0
    out = capsys.readouterr().out
    assert "3 segment(s) indexed (13 record(s))" in out
    assert str(tmp_path / "home" / "search") in out  # the default place, beside the keys
    assert cli.main(["search", "crypto", "customer:" + ALICE, "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [row["seq"] for row in rows] == [0, 3]
    assert rows[0]["text"] == "Is this a guaranteed return on «crypto»?"
    assert rows[0]["open"] == (
        f"coexarchive report transcript --customer {ALICE} --chain {CHAIN_A} --since 2026-01-05"
    )
    assert "2 match(es)" in captured.err and "logged as access-log seq 1" in captured.err
    reindexed, searched = access_entries(archive.store)  # type: ignore[arg-type]
    assert reindexed["report"] == "search-reindex" and reindexed["rows"] == 13
    assert searched["report"] == "search" and searched["who"] == "olive@compliance"
    assert searched["params"]["query"] == f"crypto customer:{ALICE}"  # type: ignore[index]
    # The access log of searches is sealed like any chain.
    report = verify_archive(archive.store, archive.trust_store())
    assert report.ok


def test_the_access_log_entry_is_sealed_before_results_are_shown(
    archive: Fixture, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["search", "reindex"]) == 0
    seen: list[int] = []
    from coexarchive.query import cli as query_cli

    real = query_cli.write_result

    def spy(*args: object, **kwargs: object) -> None:
        seen.append(len(access_entries(archive.store)))  # type: ignore[arg-type]
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(query_cli, "write_result", spy)
    assert cli.main(["search", "crypto"]) == 0
    assert seen == [2]  # the reindex entry and this search's, before anything was written


def test_no_result_is_shown_when_the_access_log_cannot_be_written(
    archive: Fixture, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["search", "reindex"]) == 0
    capsys.readouterr()

    def refuse(*args: object, **kwargs: object) -> Manifest:
        raise StorageError("the bucket refused the write")

    monkeypatch.setattr(AccessLog, "append", refuse)
    assert cli.main(["search", "crypto"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "refused" in captured.err
    assert TEXTS[1] not in captured.err


def test_a_key_the_trust_file_does_not_list_searches_nothing(
    archive: Fixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    assert cli.main(["search", "reindex"]) == 0
    capsys.readouterr()
    from support.archive import signer

    stranger = tmp_path / "stranger.key"
    signer(seed=b"stranger").to_file(stranger)
    monkeypatch.setenv("COEXARCHIVE_AUDIT_KEY", str(stranger))
    assert cli.main(["search", "crypto"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "not in trust file" in captured.err


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('"unclosed', "unclosed quote"),
        ("crypto NEAR/0 return", "distance must be 1 to 50"),
        ("(crypto", "never closed"),
        ("OR crypto", "needs a word or phrase before it"),
    ],
)
def test_a_malformed_query_is_one_line_and_logs_nothing(
    archive: Fixture, capsys: pytest.CaptureFixture[str], query: str, message: str
) -> None:
    assert cli.main(["search", "--", query]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert access_entries(archive.store) == []  # type: ignore[arg-type]


def test_searching_before_any_reindex_says_how_to_build_the_index(
    archive: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["search", "crypto"]) == 2
    assert "coexarchive search reindex" in capsys.readouterr().err


def test_new_segments_are_named_until_reindexed(
    archive: Fixture, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    index = ["--index", str(tmp_path / "elsewhere")]
    assert cli.main(["search", "reindex", *index]) == 0
    archive.append_later_day()
    assert cli.main(["search", "late", *index]) == 0
    err = capsys.readouterr().err
    assert "1 committed segment(s) are not in the search index" in err
    assert cli.main(["search", "reindex", *index]) == 0
    assert "1 segment(s) indexed (1 record(s))" in capsys.readouterr().out
    assert cli.main(["search", "late", *index]) == 0
    captured = capsys.readouterr()
    assert "a «late» guaranteed return" in captured.out and "not in the search" not in captured.err


# -- the README's examples run as printed ---------------------------------------------------

# Each example of the README's Search section → what its output must show.
README_EXPECTS = {
    "coexarchive search reindex": ["3 segment(s) indexed (13 record(s))"],
    "coexarchive search 'guaranteed NEAR/5 crypto AND NOT test'": [
        "Is this a «guaranteed» return on «crypto»?",
        "«crypto» one two three four «guaranteed»",
        "(2 rows)",
    ],
    "coexarchive search '\"guaranteed return\" direction:outbound' --since 2026-01-05": [
        "We offer a «guaranteed» «return». This is a test.",
        "bitcoin and a «guaranteed» «return»",
        "(2 rows)",
    ],
    "coexarchive search 'invoice type:document'": ["file: «Invoice»-2026-03.pdf", "(1 row)"],
    "coexarchive search 'مرحبا OR नमस्ते OR donde'": [
        "«Dónde» está mi PEDIDO?",
        "«مَرْحَبًا» بكم في المتجر",
        "«नमस्ते», आपका ऑर्डर तैयार है",
        "(3 rows)",
    ],
}


def readme_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Search\n", 1)[1].split("\n### ", 1)[0]
    (block,) = re.findall(r"```\n(.*?)```", section, re.DOTALL)
    return [line for line in block.splitlines() if line.strip()]


def test_every_readme_example_is_checked_here() -> None:
    assert readme_examples() == list(README_EXPECTS)


def test_the_readme_examples_answer_as_documented(
    archive: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    for line in readme_examples():
        argv = shlex.split(line)
        assert argv[0] == "coexarchive"
        assert cli.main(argv[1:]) == 0, line
        out = capsys.readouterr().out
        for expected in README_EXPECTS[line]:
            assert expected in out, (line, expected, out)


def test_limit_order_stemming_and_rebuild_options(
    archive: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["search", "reindex"]) == 0
    assert cli.main(["search", "reindex", "--rebuild"]) == 0
    assert "3 segment(s) indexed (13 record(s)), 0 removed, 3 held" in capsys.readouterr().out
    argv = ["search", "guaranteed", "--limit", "2", "--newest-first", "--format", "json"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert [row["seq"] for row in json.loads(captured.out)] == [1, 3]  # chain B's, then A's
    assert "2 match(es) of 5 (raise --limit for more)" in captured.err
    assert cli.main(["search", "invest", "--stem", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["text"] == "The investors were «investing» heavily"
    # A query starting with "-" goes after "--", as the help says.
    assert cli.main(["search", "--format", "json", "--", "-test crypto"]) == 0
    assert [row["seq"] for row in json.loads(capsys.readouterr().out)] == [0, 2, 3]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "crypto", "--limit", "0"], "--limit must be at least 1"),
        (["search", "crypto", "--rebuild"], "--rebuild is for `coexarchive search reindex`"),
        (["search", "crypto", "--format", "parquet"], "--format parquet needs --out FILE"),
        (
            ["search", "crypto", "--since", "2026-01-07", "--until", "2026-01-06"],
            "--since must be before --until",
        ),
    ],
)
def test_option_mistakes_are_one_line_before_anything_is_read(
    archive: Fixture, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert access_entries(archive.store) == []  # type: ignore[arg-type]
