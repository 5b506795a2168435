"""Sign-in through OpenID Connect against a real provider (npm ``oidc-provider``) on loopback:
login and logout, and the attacks: a token for another audience, a replayed code or callback, a
forged or expired token, a foreign state, an account without a console role."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from console._browser import Served
from console._console import Harness, WallClock, build, copy_of, csrf_of, demo_store
from console._oidc import (
    OTHER_SECRET,
    SECRET,
    Provider,
    authorize,
    free_port,
    query_of,
    start_provider,
)
from playwright.sync_api import Page, expect

from coexarchive.console.app import OIDC_COOKIE, SESSION_COOKIE
from coexarchive.console.oidc import OidcClient, OidcConfig
from coexarchive.errors import AuthError
from coexarchive.query.views import ACCESS_LOG_CHAIN
from coexarchive.store import MemoryStore
from coexarchive.supervision.register import read_chain

pytestmark = [pytest.mark.integration]

TEST_CALLBACK = "https://testserver/login/oidc/callback"
BROWSER_PORT = free_port()
BROWSER_CALLBACK = f"http://127.0.0.1:{BROWSER_PORT}/login/oidc/callback"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    started = start_provider(
        [TEST_CALLBACK, BROWSER_CALLBACK],
        ["https://testserver/login", f"http://127.0.0.1:{BROWSER_PORT}/login"],
    )
    yield started
    started.stop()


def config(provider: Provider, **more: str) -> OidcConfig:
    values = {
        "issuer": provider.issuer,
        "client_id": "console",
        "client_secret": SECRET,
        "redirect_uri": TEST_CALLBACK,
    }
    values.update(more)
    return OidcConfig(**values)


@pytest.fixture(scope="module")
def pristine() -> MemoryStore:
    return demo_store()


@pytest.fixture
def harness(pristine: MemoryStore, tmp_path: Path, provider: Provider) -> Harness:
    return build(
        copy_of(pristine), tmp_path, with_index=False, clock=WallClock(), oidc=config(provider)
    )


def begin(harness: Harness) -> tuple[object, str]:
    client = harness.client()
    started = client.get("/login/oidc")
    assert started.status_code == 303
    return client, started.headers["location"]


def test_login_through_the_provider_records_the_identity(harness: Harness) -> None:
    client, url = begin(harness)
    assert "code_challenge_method=S256" in url
    assert "nonce=" in url
    back = authorize(url, "rita")
    done = client.get("/login/oidc/callback?" + back.split("?", 1)[1])  # type: ignore[attr-defined]
    assert done.status_code == 200
    assert SESSION_COOKIE in client.cookies  # type: ignore[attr-defined]
    page = client.get("/review")  # type: ignore[attr-defined]
    assert page.status_code == 200
    assert "rita@example.test (reviewer)" in page.text
    assert client.get("/holds").status_code == 403  # type: ignore[attr-defined]
    entry = read_chain(harness.store, ACCESS_LOG_CHAIN)[-1].detail
    assert entry["who"] == "rita@example.test"
    assert entry["params"]["sign_in"] == "oidc"


def test_logout_ends_the_session_here_and_at_the_provider(harness: Harness) -> None:
    client, url = begin(harness)
    back = authorize(url, "adam")
    client.get("/login/oidc/callback?" + back.split("?", 1)[1])  # type: ignore[attr-defined]
    cookie = client.cookies[SESSION_COOKIE]  # type: ignore[attr-defined]
    out = client.post("/logout", data={"csrf": csrf_of(client.get("/").text)})  # type: ignore[attr-defined]
    assert out.status_code == 303
    target = out.headers["location"]
    assert target.startswith(end_session_endpoint(harness))
    assert "id_token_hint=" in target
    replay = harness.client()
    replay.cookies.set(SESSION_COOKIE, cookie)
    assert replay.get("/").status_code == 303


def end_session_endpoint(harness: Harness) -> str:
    oidc = harness.app.state.console.oidc
    assert oidc is not None
    return str(oidc.metadata()["end_session_endpoint"])


def test_a_replayed_callback_is_refused(harness: Harness) -> None:
    client, url = begin(harness)
    back = authorize(url, "rita")
    first = client.get("/login/oidc/callback?" + back.split("?", 1)[1])  # type: ignore[attr-defined]
    assert first.status_code == 200
    thief = harness.client()
    thief.cookies.set(OIDC_COOKIE, query_of(back)["state"])
    second = thief.get("/login/oidc/callback?" + back.split("?", 1)[1])
    assert second.status_code == 401
    assert SESSION_COOKIE not in second.cookies


def test_a_replayed_code_is_refused_by_the_provider(harness: Harness) -> None:
    client, url = begin(harness)
    code = query_of(authorize(url, "rita"))["code"]
    client.get(f"/login/oidc/callback?code={code}&state={query_of(url)['state']}")  # type: ignore[attr-defined]
    again, second_url = begin(harness)
    state = query_of(second_url)["state"]
    refused = again.get(f"/login/oidc/callback?code={code}&state={state}")  # type: ignore[attr-defined]
    assert refused.status_code == 401
    assert "code was not accepted" in refused.text
    assert SESSION_COOKIE not in refused.cookies


def test_a_callback_with_another_browsers_state_is_refused(harness: Harness) -> None:
    _, url = begin(harness)
    back = authorize(url, "rita")
    attacker = harness.client()
    attacker.get("/login/oidc")  # a state cookie of its own
    refused = attacker.get("/login/oidc/callback?" + back.split("?", 1)[1])
    assert refused.status_code == 401
    assert SESSION_COOKIE not in refused.cookies


def _token_for(provider: Provider, client_id: str, secret: str, user: str) -> tuple[str, str]:
    """A real ID token the provider issued to ``client_id``, and the nonce it carries."""
    clock = WallClock()
    oidc = OidcClient(OidcConfig(provider.issuer, client_id, secret, TEST_CALLBACK), clock=clock)
    url, state = oidc.begin()
    back = query_of(authorize(url, user))
    nonce = oidc._pending[state].nonce
    identity = oidc.finish(state=state, browser_state=state, code=back["code"])
    return identity.id_token, nonce


def test_a_token_for_another_audience_is_refused(provider: Provider) -> None:
    token, nonce = _token_for(provider, "other-app", OTHER_SECRET, "adam")
    console = OidcClient(config(provider), clock=WallClock())
    with pytest.raises(AuthError, match="not for this sign-in"):
        console.identity(token, nonce=nonce)
    other = OidcClient(
        OidcConfig(provider.issuer, "other-app", OTHER_SECRET, TEST_CALLBACK), clock=WallClock()
    )
    assert other.identity(token, nonce=nonce).name == "adam@example.test"  # the token is genuine


def test_a_token_with_another_nonce_is_refused(provider: Provider) -> None:
    token, _ = _token_for(provider, "console", SECRET, "adam")
    console = OidcClient(config(provider), clock=WallClock())
    with pytest.raises(AuthError, match="not for this sign-in"):
        console.identity(token, nonce="a-nonce-of-another-sign-in")


@pytest.mark.parametrize("part", [1, 2], ids=["forged_claims", "forged_signature"])
def test_a_tampered_token_is_refused(provider: Provider, part: int) -> None:
    token, nonce = _token_for(provider, "console", SECRET, "rita")
    pieces = token.split(".")
    pieces[part] = pieces[part][:-4] + ("AAAA" if not pieces[part].endswith("AAAA") else "BBBB")
    console = OidcClient(config(provider), clock=WallClock())
    with pytest.raises(AuthError):
        console.identity(".".join(pieces), nonce=nonce)


def test_an_unsigned_token_is_refused(provider: Provider) -> None:
    token, nonce = _token_for(provider, "console", SECRET, "rita")
    header = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    unsigned = ".".join([header, token.split(".")[1], ""])
    with pytest.raises(AuthError, match="signature"):
        OidcClient(config(provider), clock=WallClock()).identity(unsigned, nonce=nonce)


def test_an_expired_token_is_refused(provider: Provider) -> None:
    token, nonce = _token_for(provider, "console", SECRET, "rita")
    later = WallClock()
    later.advance(2 * 3_600_000)  # the provider's ID tokens live five minutes
    with pytest.raises(AuthError, match="not for this sign-in"):
        OidcClient(config(provider), clock=later).identity(token, nonce=nonce)


def test_an_expired_session_signs_out(harness: Harness) -> None:
    client, url = begin(harness)
    back = authorize(url, "aldo")
    client.get("/login/oidc/callback?" + back.split("?", 1)[1])  # type: ignore[attr-defined]
    assert client.get("/access").status_code == 200  # type: ignore[attr-defined]
    harness.clock.advance(16 * 60_000)
    assert client.get("/access").status_code == 303  # type: ignore[attr-defined]


def test_an_account_without_a_console_role_is_refused(harness: Harness) -> None:
    client, url = begin(harness)
    back = authorize(url, "mallory")
    refused = client.get("/login/oidc/callback?" + back.split("?", 1)[1])  # type: ignore[attr-defined]
    assert refused.status_code == 401
    assert "no console role" in refused.text


def test_discovery_naming_another_issuer_is_refused(provider: Provider) -> None:
    from coexarchive.errors import ConfigError

    wrong = OidcClient(config(provider, issuer=provider.issuer + "/"), clock=WallClock())
    with pytest.raises(ConfigError, match="names issuer"):
        wrong.begin()


def test_a_reviewer_signs_in_and_out_through_the_provider_in_a_browser(
    page: Page, pristine: MemoryStore, tmp_path: Path, provider: Provider, shots: Path
) -> None:
    harness = build(
        copy_of(pristine),
        tmp_path,
        with_index=False,
        clock=WallClock(),
        oidc=config(provider, redirect_uri=BROWSER_CALLBACK),
    )
    with Served(harness, BROWSER_PORT) as served:
        page.goto(served.url + "/")
        page.get_by_role("link", name="identity provider").click()
        page.fill('input[name="login"]', "rita")
        page.fill('input[name="password"]', "any")
        page.locator('button[type="submit"]').click()
        page.locator('button[type="submit"]').click()  # consent
        expect(page).to_have_url(served.url + "/")
        expect(page.locator(".who")).to_have_text("rita@example.test (reviewer)")
        page.goto(served.url + "/review")
        expect(page.locator("li.hit").first).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(re.escape(provider.issuer) + r"/session/end.*"))
        page.locator('button[autofocus], button[type="submit"]').first.click()
        expect(page).to_have_url(re.compile(re.escape(served.url) + r"/login.*"))
        page.goto(served.url + "/review")
        expect(page).to_have_url(served.url + "/login")
