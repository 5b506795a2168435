"""The console in a real browser: Debian's chromium driven by Playwright, the console served by
uvicorn on loopback, axe-core checking every page.

Set ``COEXARCHIVE_SCREENSHOTS=docs/images/console`` to write the screenshots docs/console.md
shows (the same tests make them; without it they go to a temporary folder).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from console._browser import Served
from console._console import (
    PASSWORD,
    TRUST,
    WallClock,
    build,
    copy_of,
    demo_store,
    with_media,
)
from playwright.sync_api import Page, expect

from coexarchive.export.bundle import read_bundle
from coexarchive.export.holds import active_holds, read_register
from coexarchive.export.verify_bundle import verify_bundle
from coexarchive.store import MemoryStore
from coexarchive.supervision import queue as review_queue
from coexarchive.supervision.register import REVIEWS_CHAIN, read_chain

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AXE = Path(__file__).parent / "js" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def pristine() -> MemoryStore:
    return demo_store()


@pytest.fixture
def served(pristine: MemoryStore, tmp_path: Path) -> Iterator[Served]:
    harness = build(copy_of(pristine), tmp_path, clock=WallClock())
    with Served(harness) as served:
        yield served


def sign_in(page: Page, served: Served, user: str) -> None:
    page.goto(served.url + "/")
    expect(page).to_have_url(served.url + "/login")
    page.fill("#name", user)
    page.fill("#password", PASSWORD)
    page.fill("#code", served.harness.code(user))
    page.click("form.login button[type=submit]")
    expect(page).to_have_url(served.url + "/")
    served.harness.clock.advance(30_000)  # the next sign-in needs a fresh code


def accessible(page: Page) -> None:
    """No serious or critical axe-core violation on the page as it is."""
    if not AXE.exists():
        pytest.fail(f"{AXE} missing: run `make console-js` (npm ci in tests/console/js)")
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '))"
    )
    assert not found, f"{page.url}: {found}"


def shot(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=False)


def test_sign_in_works_with_the_keyboard_alone(page: Page, served: Served, shots: Path) -> None:
    page.goto(served.url + "/")
    accessible(page)
    shot(page, shots, "sign-in")
    page.keyboard.type("rita")  # the name field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type(served.harness.code("rita"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(served.url + "/")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Review queue")
    expect(page.get_by_role("navigation", name="Main")).not_to_contain_text("Holds")


def test_a_reviewer_works_the_queue_with_shortcuts_and_reads_the_conversation(
    page: Page, served: Served, shots: Path
) -> None:
    sign_in(page, served, "rita")
    accessible(page)
    page.goto(served.url + "/review")
    accessible(page)
    shot(page, shots, "review-queue")
    hits = page.locator("li.hit")
    second = hits.nth(1).get_attribute("id")
    assert second is not None
    page.keyboard.press("j")
    expect(hits.nth(1)).to_have_class("hit current")
    page.keyboard.press("e")
    note = hits.nth(1).locator('form.decide input[name="note"]')
    expect(note).to_be_focused()
    page.keyboard.type("promises a return: escalated to compliance")
    page.keyboard.press("Enter")
    expect(page.locator("p.ok")).to_contain_text("Sealed")
    queue = review_queue.fold(read_chain(served.harness.store, REVIEWS_CHAIN))
    decided = [hit for hit in queue.hits.values() if hit.id.startswith(second.removeprefix("hit-"))]
    assert [(h.disposition, h.decided_by) for h in decided] == [("escalate", "rita")]

    page.keyboard.press("o")  # the first open hit's conversation
    expect(page).to_have_url(re.compile(r".*/conversation\?.*"))
    expect(page.locator("ol.transcript li").first).to_be_visible()
    accessible(page)
    shot(page, shots, "conversation")
    # Times in the viewer's zone (the browser is in Asia/Kolkata), UTC on hover.
    first_time = page.locator("ol.transcript time").first
    assert first_time.get_attribute("title", timeout=5_000).endswith("Z (UTC)")  # type: ignore[union-attr]
    assert "GMT+5:30" in first_time.inner_text() or "IST" in first_time.inner_text()
    page.get_by_role("button", name="Prove these messages").click()
    expect(page.locator("p.proof")).to_contain_text("verified")


@pytest.fixture(scope="module")
def with_attachments() -> MemoryStore:
    return with_media(demo_store())


def test_a_reviewer_opens_a_conversation_with_media_and_sees_the_image(
    page: Page, with_attachments: MemoryStore, tmp_path: Path, shots: Path
) -> None:
    from urllib.parse import urlencode

    from coexarchive.query.views import ArchiveCatalog, connect

    catalog = ArchiveCatalog(with_attachments)
    catalog.refresh()
    found = (
        connect(catalog)
        .execute(
            "SELECT chain_id, customer_id, sha256 FROM media "
            "WHERE status = 'stored' AND mime_type LIKE 'image/%' ORDER BY chain_id, seq LIMIT 1"
        )
        .fetchone()
    )
    assert found is not None
    chain, customer, sha = found
    harness = build(copy_of(with_attachments), tmp_path, clock=WallClock())
    with Served(harness) as served:
        sign_in(page, served, "rita")
        query = urlencode({"chain": chain, "customer": customer})
        page.goto(f"{served.url}/conversation?{query}")
        image = page.locator(f'img[src^="/media/{sha}"]').first
        expect(image).to_be_visible()
        assert (image.get_attribute("src") or "").endswith("&size=thumb")  # the thumbnail
        # Loaded under the strict CSP (img-src 'self'), not a broken-image box.
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
        accessible(page)
        shot(page, shots, "conversation-media")


def test_right_to_left_text_is_shown_right_to_left(page: Page, served: Served) -> None:
    sign_in(page, served, "adam")
    page.goto(served.url + "/search?q=" + "مرحبا")
    link = page.locator("table.data a", has_text="open").first
    link.click()
    arabic = page.locator("p.text", has_text="مرحبا").first
    assert arabic.evaluate("e => getComputedStyle(e).direction") == "rtl"
    latin = page.locator("p.text", has_text="Gracias").first
    if latin.count():
        assert latin.evaluate("e => getComputedStyle(e).direction") == "ltr"


def test_legal_places_a_hold_and_downloads_a_bundle_verify_bundle_accepts(
    page: Page, served: Served, shots: Path, tmp_path: Path
) -> None:
    queue = review_queue.fold(read_chain(served.harness.store, REVIEWS_CHAIN))
    customer = next(str(h.detail["customer"]) for h in queue.hits.values() if h.detail["customer"])
    sign_in(page, served, "lena")
    page.goto(served.url + "/holds")
    accessible(page)
    page.fill("#p-matter", "SEC-2026-014")
    page.fill("#p-customer", customer)
    page.fill("#p-reason", "subpoena of 2026-01-12")
    page.get_by_role("button", name="Place hold").click()
    expect(page.locator("p.ok")).to_contain_text("placed")
    assert (
        active_holds(read_register(served.harness.store, TRUST))["SEC-2026-014"].placed_by == "lena"
    )
    page.fill("#e-matter", "SEC-2026-014")
    page.fill("#e-customer", customer)
    page.fill("#e-reason", "production to the SEC")
    page.get_by_role("button", name="Build bundle").click()
    expect(page.locator("p.ok")).to_contain_text("bundle")
    shot(page, shots, "holds-and-exports")
    with page.expect_download() as download:
        page.locator("ul.bundles a").first.click()
    saved = tmp_path / "bundle.zip"
    download.value.save_as(saved)
    report = verify_bundle(read_bundle(saved), trust=TRUST)
    assert report.result == "OK"


def test_admin_pages_overview_verify_search_reports_access(
    page: Page, served: Served, shots: Path
) -> None:
    sign_in(page, served, "adam")
    page.get_by_role("button", name="Verify now").click()
    expect(page.locator("dl.facts")).to_contain_text("OK")
    accessible(page)
    shot(page, shots, "overview")
    page.goto(served.url + "/search?q=replacement+OR+talla&reason=weekly+sweep")
    expect(page.locator("mark").first).to_be_visible()
    accessible(page)
    shot(page, shots, "search")
    page.goto(served.url + "/reports")
    accessible(page)
    page.goto(served.url + "/reports/volume")
    page.locator("th a", has_text="records").click()
    expect(page.locator("th[aria-sort]")).to_have_count(1)
    accessible(page)
    shot(page, shots, "report")
    page.goto(served.url + "/access?who=adam")
    expect(page.locator("table.data tbody tr").first).to_contain_text("adam")
    accessible(page)
    shot(page, shots, "access-log")
