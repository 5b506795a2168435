"""Browser fixtures of the console tests: Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path(os.environ.get("COEXARCHIVE_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API keeps an event loop running on the main
    # thread while it is open, so any later test calling asyncio.run() would fail.
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: `apt-get install chromium fonts-noto-core fonts-noto-cjk "
            "fonts-noto-color-emoji` (as `make test` does), or set COEXARCHIVE_CHROMIUM"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # axe is injected by the test harness, which CSP would rightly refuse from a page.
    context = browser.new_context(
        bypass_csp=True, viewport={"width": 1280, "height": 900}, timezone_id="Asia/Kolkata"
    )
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$COEXARCHIVE_SCREENSHOTS`` (docs/images/console) or a temp dir."""
    wanted = os.environ.get("COEXARCHIVE_SCREENSHOTS")
    folder = (ROOT / wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
