"""What the console's users do, and what it seals: every view in the access log first, under the
signed-in identity and the console's own key, covered by ``verify``."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import orjson
import pytest
from console._console import (
    CONSOLE_KEY,
    TRUST,
    Harness,
    build,
    copy_of,
    csrf_of,
    demo_store,
)

from coexarchive.errors import ArchiveVerificationError, StorageError
from coexarchive.export.bundle import read_bundle
from coexarchive.export.holds import HOLDS_CHAIN, active_holds, read_register
from coexarchive.export.verify_bundle import verify_bundle
from coexarchive.query.views import ACCESS_LOG_CHAIN
from coexarchive.store import MemoryStore
from coexarchive.supervision import queue as review_queue
from coexarchive.supervision.register import REVIEWS_CHAIN, read_chain
from coexarchive.verify import verify_archive
from support.archive import ARCHIVE, signer, trust_for

CHAIN = "900000000000001"


@pytest.fixture(scope="module")
def pristine() -> MemoryStore:
    return demo_store()


@pytest.fixture
def harness(pristine: MemoryStore, tmp_path: Path) -> Harness:
    return build(copy_of(pristine), tmp_path)


def access_entries(store: MemoryStore) -> list[dict[str, object]]:
    return [{"seq": row.seq, **row.detail} for row in read_chain(store, ACCESS_LOG_CHAIN)]


def a_conversation(harness: Harness) -> tuple[str, str]:
    queue = review_queue.fold(read_chain(harness.store, REVIEWS_CHAIN))
    hit = next(h for h in queue.hits.values() if h.detail.get("customer"))
    return str(hit.detail["chain"]), str(hit.detail["customer"])


# --- the access log --------------------------------------------------------------------------


def test_a_conversation_view_is_sealed_with_who_what_and_why(harness: Harness) -> None:
    chain, customer = a_conversation(harness)
    client = harness.sign_in("rita")
    response = client.get(
        "/conversation", params={"chain": chain, "customer": customer, "reason": "FINRA sweep"}
    )
    assert response.status_code == 200
    entry = access_entries(harness.store)[-1]
    assert entry["who"] == "rita"
    assert entry["report"] == "conversation"
    params = entry["params"]
    assert isinstance(params, dict)
    assert params["via"] == "console"
    assert params["sign_in"] == "local"
    assert params["reason"] == "FINRA sweep"
    assert params["chain"] == chain
    assert params["customer"] == customer
    shown = [f"seq-{seq}" for seq in range(0, 10_000) if f'id="seq-{seq}"' in response.text]
    assert len(params["record_ids"]) == len(shown) > 0
    assert f"access-log seq {entry['seq']}" in response.text


def test_the_console_signs_the_access_log_with_its_own_key(harness: Harness) -> None:
    harness.sign_in("adam").get("/")
    notes = [
        harness.store.get(key).decode()
        for key in harness.store.list(f"checkpoints/chain={ACCESS_LOG_CHAIN}/")
    ]
    assert notes
    assert all(f"— {CONSOLE_KEY.name} " in note for note in notes)


class RefusingAccessLog(MemoryStore):
    """A store that refuses every write to the access log (a full or unreachable bucket)."""

    def put(self, key: str, data: bytes, **kwargs: object) -> bool:  # type: ignore[override]
        if ACCESS_LOG_CHAIN in key:
            raise StorageError("the access log cannot be written")
        return super().put(key, data, **kwargs)  # type: ignore[arg-type]


def test_nothing_is_shown_when_the_view_cannot_be_sealed(
    pristine: MemoryStore, tmp_path: Path
) -> None:
    store = RefusingAccessLog()
    store.unsafe_objects = dict(pristine.unsafe_objects)
    store._retention = dict(pristine._retention)
    harness = build(store, tmp_path, with_index=False)
    chain, customer = a_conversation(harness)
    client = harness.sign_in("rita")
    response = client.get("/conversation", params={"chain": chain, "customer": customer})
    assert response.status_code == 400
    assert 'class="msg' not in response.text
    assert "access log cannot be written" in response.text
    for path in ("/", "/review", "/access"):
        assert 'class="msg' not in client.get(path).text


def test_verify_covers_the_consoles_entries_and_fails_without_its_key(harness: Harness) -> None:
    chain, customer = a_conversation(harness)
    client = harness.sign_in("rita")
    client.get("/conversation", params={"chain": chain, "customer": customer})
    client.get("/")
    report = verify_archive(harness.store, TRUST, archive_name=ARCHIVE)
    assert ACCESS_LOG_CHAIN in {c.chain_id for c in report.chains}
    without_console = trust_for(signer(), signer("coexarchive.audit", seed=b"audit"))
    with pytest.raises(ArchiveVerificationError):
        verify_archive(harness.store, without_console, archive_name=ARCHIVE)


def test_the_access_log_page_shows_identities_and_is_itself_logged(harness: Harness) -> None:
    harness.sign_in("rita").get("/review")
    aldo = harness.sign_in("aldo")
    page = aldo.get("/access", params={"who": "rita"})
    assert page.status_code == 200
    assert "review list" in page.text
    assert access_entries(harness.store)[-1]["who"] == "aldo"


def test_a_report_downloads_as_the_clis_csv_and_is_logged(harness: Harness) -> None:
    client = harness.sign_in("aldo")
    before = len(access_entries(harness.store))
    response = client.get("/reports/volume", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines()[0] == '"day","origin","records","messages"'
    assert "attachment" in response.headers["content-disposition"]
    assert len(access_entries(harness.store)) == before + 1


# --- review ----------------------------------------------------------------------------------


def _first_open_hit(client: object) -> str:
    html = client.get("/review").text  # type: ignore[attr-defined]
    return html.split('name="hit" value="')[1].split('"')[0]


def test_a_reviewer_decides_a_hit_with_a_note(harness: Harness) -> None:
    client = harness.sign_in("rita")
    hit = _first_open_hit(client)
    csrf = csrf_of(client.get("/review").text)
    response = client.post(
        "/review",
        data={
            "csrf": csrf,
            "hit": hit,
            "action": "decide",
            "disposition": "escalate",
            "note": "promised returns",
        },
    )
    assert response.status_code == 303
    decided = review_queue.fold(read_chain(harness.store, REVIEWS_CHAIN)).hits[hit]
    assert decided.disposition == "escalate"
    assert decided.decided_by == "rita"
    assert decided.note == "promised returns"
    again = client.post(
        "/review",
        data={"csrf": csrf, "hit": hit, "action": "decide", "disposition": "closed", "note": "x"},
    )
    assert again.status_code == 400  # decided once; reopen first
    assert "already decided" in again.text


def test_an_auditor_cannot_decide_or_assign(harness: Harness) -> None:
    client = harness.sign_in("aldo")
    queue = review_queue.fold(read_chain(harness.store, REVIEWS_CHAIN))
    hit = next(h.id for h in queue.hits.values() if h.open)
    csrf = csrf_of(client.get("/review").text)
    assert 'action" value="decide"' not in client.get("/review").text
    before = len(read_chain(harness.store, REVIEWS_CHAIN))
    for action in ("decide", "assign", "reopen"):
        data = {"csrf": csrf, "hit": hit, "action": action, "disposition": "closed", "note": "n"}
        data["to"] = "aldo"
        assert client.post("/review", data=data).status_code == 403
    assert len(read_chain(harness.store, REVIEWS_CHAIN)) == before


def test_assignment_is_sealed(harness: Harness) -> None:
    client = harness.sign_in("adam")
    hit = _first_open_hit(client)
    csrf = csrf_of(client.get("/review").text)
    data = {"csrf": csrf, "hit": hit, "action": "assign", "to": "rita"}
    assert client.post("/review", data=data).status_code == 303
    assert review_queue.fold(read_chain(harness.store, REVIEWS_CHAIN)).hits[hit].assignee == "rita"
    assert hit[:12] in client.get("/review", params={"assignee": "rita"}).text


# --- search ----------------------------------------------------------------------------------


def test_search_uses_the_cli_syntax_and_links_to_the_conversation(harness: Harness) -> None:
    client = harness.sign_in("rita")
    page = client.get("/search", params={"q": "replacement OR talla", "reason": "sweep"})
    assert page.status_code == 200
    assert "<mark>" in page.text
    assert "/conversation?chain=" in page.text
    entry = access_entries(harness.store)[-1]
    assert entry["report"] == "search"
    assert entry["who"] == "rita"
    assert entry["params"]["reason"] == "sweep"  # type: ignore[index]
    bad = client.get("/search", params={"q": 'unclosed "quote'})
    assert bad.status_code == 400


# --- holds and exports -----------------------------------------------------------------------


def test_legal_places_and_releases_a_hold(harness: Harness) -> None:
    _, customer = a_conversation(harness)
    client = harness.sign_in("lena")
    csrf = csrf_of(client.get("/holds").text)
    placed = client.post(
        "/holds/place",
        data={"csrf": csrf, "matter": "SEC-2026-01", "customer": customer, "reason": "subpoena"},
    )
    assert placed.status_code == 303
    holds = active_holds(read_register(harness.store, TRUST))
    hold = holds["SEC-2026-01"]
    assert hold.active
    assert hold.placed_by == "lena"
    assert all(harness.store.info(key).legal_hold for key in hold.keys)
    assert "SEC-2026-01" in client.get("/holds").text
    released = client.post(
        "/holds/release", data={"csrf": csrf, "matter": "SEC-2026-01", "reason": "closed"}
    )
    assert released.status_code == 303
    assert not active_holds(read_register(harness.store, TRUST))["SEC-2026-01"].active
    assert read_chain(harness.store, HOLDS_CHAIN)[-1].detail["who"] == "lena"


def test_a_reviewer_cannot_reach_holds_or_exports(harness: Harness) -> None:
    _, customer = a_conversation(harness)
    client = harness.sign_in("rita")
    csrf = csrf_of(client.get("/").text)
    assert client.get("/holds").status_code == 403
    data = {"csrf": csrf, "matter": "M", "customer": customer, "reason": "r"}
    assert client.post("/holds/place", data=data).status_code == 403
    assert client.post("/exports", data=data).status_code == 403
    assert not read_register(harness.store, TRUST)
    assert not harness.archive.bundles()


def test_legal_exports_a_bundle_that_verify_bundle_accepts(harness: Harness) -> None:
    _, customer = a_conversation(harness)
    client = harness.sign_in("lena")
    csrf = csrf_of(client.get("/holds").text)
    response = client.post(
        "/exports", data={"csrf": csrf, "matter": "SEC-2026-01", "customer": customer}
    )
    assert response.status_code == 303
    [bundle] = harness.archive.bundles()
    download = client.get(f"/exports/{bundle['name']}")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    path = harness.tmp / "downloaded.zip"
    path.write_bytes(download.content)
    report = verify_bundle(read_bundle(path), trust=TRUST)
    assert report.result == "OK"
    assert report.records
    custody = orjson.loads(zipfile.ZipFile(io.BytesIO(download.content)).read("CUSTODY.json"))
    assert custody["who"] == "lena"
    entries = access_entries(harness.store)
    assert entries[-1]["report"] == "bundle download"
    assert entries[-2]["report"] == "export"
    assert entries[-2]["who"] == "lena"


@pytest.mark.parametrize("name", ["../accounts.json", "..%2Faccounts.json", "x.txt", "a b.zip"])
def test_bundle_downloads_stay_in_the_export_folder(harness: Harness, name: str) -> None:
    (harness.tmp / "secret.zip").write_bytes(b"not yours")
    client = harness.sign_in("lena")
    response = client.get(f"/exports/{name}")
    assert response.status_code in (400, 404)
    assert b"not yours" not in response.content


def test_an_untrusted_console_key_is_refused_at_start(tmp_path: Path) -> None:
    from coexarchive.errors import ConfigError
    from coexarchive.settings import Settings

    key = tmp_path / "console.key"
    CONSOLE_KEY.to_file(key)
    trust = tmp_path / "trust.txt"
    trust.write_text(signer().verifier_key() + "\n")
    settings = Settings(trust_file=trust, console_key_file=key)
    with pytest.raises(ConfigError, match="not in trust file"):
        settings.console_signer()
    with pytest.raises(ConfigError, match="its own service key"):
        Settings(trust_file=trust, console_key_file=None).console_signer()
    trust.write_text(CONSOLE_KEY.verifier_key() + "\n")
    assert settings.console_signer().key_id == CONSOLE_KEY.key_id


def test_concurrent_views_are_each_sealed_once_and_verify(harness: Harness) -> None:
    from concurrent.futures import ThreadPoolExecutor

    chain, customer = a_conversation(harness)
    clients = [harness.sign_in(user) for user in ("rita", "aldo", "adam", "lena")]
    before = len(access_entries(harness.store))

    def view(index: int) -> int:
        client = clients[index % len(clients)]
        path = "/conversation" if index % 2 else "/"
        return int(client.get(path, params={"chain": chain, "customer": customer}).status_code)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(view, range(16)))
    assert statuses == [200] * 16
    entries = access_entries(harness.store)
    # An overview seals four entries (chains, ingest, flags, backlog); a conversation one.
    assert len(entries) - before == 8 * 4 + 8
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    verify_archive(harness.store, TRUST, archive_name=ARCHIVE)


def test_the_conversation_shows_ticks_revokes_and_right_to_left_text(harness: Harness) -> None:
    from coexarchive.query.views import ArchiveCatalog, connect

    catalog = ArchiveCatalog(harness.store)
    catalog.refresh()
    con = connect(catalog)
    revoked = con.sql(
        "SELECT chain_id, customer_id FROM messages WHERE kind = 'message_revoke' LIMIT 1"
    ).fetchall()[0]
    read = con.sql(
        "SELECT m.chain_id, m.customer_id FROM messages m JOIN statuses s "
        "ON m.chain_id = s.chain_id AND m.wamid = s.wamid "
        "WHERE s.status = 'read' AND m.direction = 'outbound' LIMIT 1"
    ).fetchall()[0]
    client = harness.sign_in("rita")
    page = client.get("/conversation", params={"chain": revoked[0], "customer": revoked[1]})
    assert "deleted for everyone" in page.text
    page = client.get("/conversation", params={"chain": read[0], "customer": read[1]})
    assert 'class="ticks read"' in page.text
    assert '<p class="text" dir="auto">' in page.text
