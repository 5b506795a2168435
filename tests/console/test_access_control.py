"""Every route against every role, and the sign-in, session, CSRF and header defences.

The expected matrix is written out here, not derived from the console's own permission table:
a permission widened in the code fails this test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console._console import (
    PASSWORD,
    USERS,
    Harness,
    build,
    copy_of,
    csrf_of,
    demo_store,
    login_token,
)

from coexarchive.console.app import ROUTES, SESSION_COOKIE
from coexarchive.store import MemoryStore
from coexarchive.supervision.register import REVIEWS_CHAIN, read_chain

ALL = {"reviewer", "auditor", "legal", "admin"}
# (method, path as requested) → roles that may use it.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/"): ALL,
    ("POST", "/verify"): {"admin"},
    ("GET", "/search"): ALL,
    ("GET", "/conversation"): ALL,
    ("GET", "/review"): {"reviewer", "auditor", "admin"},
    ("POST", "/review"): {"reviewer", "admin"},
    ("GET", "/reports"): {"auditor", "legal", "admin"},
    ("GET", "/reports/{name}"): {"auditor", "legal", "admin"},
    ("GET", "/holds"): {"legal", "admin"},
    ("POST", "/holds/place"): {"legal"},
    ("POST", "/holds/release"): {"legal"},
    ("POST", "/exports"): {"legal"},
    ("GET", "/exports/{name}"): {"legal"},
    ("GET", "/access"): {"auditor", "admin"},
    ("GET", "/media/{sha256}"): ALL,
    ("POST", "/logout"): ALL,
}
CONCRETE = {
    "/reports/{name}": "/reports/compliance",
    "/exports/{name}": "/exports/none.zip",
    "/media/{sha256}": "/media/" + "0" * 64,
}


@pytest.fixture(scope="module")
def pristine() -> MemoryStore:
    return demo_store()


@pytest.fixture
def harness(pristine: MemoryStore, tmp_path: Path) -> Harness:
    return build(copy_of(pristine), tmp_path, with_index=False)


def test_the_matrix_names_every_route() -> None:
    assert {(spec.method, spec.path) for spec in ROUTES} == set(EXPECTED)


@pytest.mark.parametrize("role", sorted(ALL))
def test_every_route_against_the_role(harness: Harness, role: str) -> None:
    user = next(name for name, roles in USERS.items() if role in roles)
    client = harness.sign_in(user)
    csrf = csrf_of(client.get("/").text)
    reviews_before = len(read_chain(harness.store, REVIEWS_CHAIN))
    # Sign-out last: it ends the session the other requests use.
    for spec in sorted(ROUTES, key=lambda s: s.path == "/logout"):
        path = CONCRETE.get(spec.path, spec.path)
        if spec.method == "GET":
            response = client.get(path)
        else:
            response = client.post(path, data={"csrf": csrf})
        allowed = role in EXPECTED[(spec.method, spec.path)]
        denied = response.status_code == 403 and "Not permitted" in response.text
        assert denied != allowed, f"{role} {spec.method} {path}: {response.status_code}"
        assert response.status_code != 500
    # Empty forms decide nothing, for any role.
    assert len(read_chain(harness.store, REVIEWS_CHAIN)) == reviews_before


def test_unauthenticated_sees_only_the_sign_in_page(harness: Harness) -> None:
    client = harness.client()
    for spec in ROUTES:
        path = CONCRETE.get(spec.path, spec.path)
        response = client.request(spec.method, path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/login"
        assert response.text == ""
    assert client.get("/login").status_code == 200
    assert client.get("/static/console.css").status_code == 200
    assert client.get("/anything-else").status_code == 404


def test_denied_pages_carry_no_archive_data(harness: Harness) -> None:
    client = harness.sign_in("rita")
    response = client.get("/access")
    assert response.status_code == 403
    assert "access-log" not in response.text
    assert "who" not in response.text.lower().split("<main", 1)[1].split("</main>")[0]


# --- sign-in ---------------------------------------------------------------------------------


def _attempt(harness: Harness, client: object, **fields: str) -> object:
    data = {"name": "rita", "password": PASSWORD, "code": harness.code("rita")}
    data.update(fields)
    data.setdefault("csrf", login_token(client))  # type: ignore[arg-type]
    return client.post("/login", data=data)  # type: ignore[attr-defined]


def _signed_in(response: object) -> bool:
    cookies = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    return any(cookie.startswith(SESSION_COOKIE + "=") for cookie in cookies)


def test_sign_in_sets_a_hardened_session_cookie(harness: Harness) -> None:
    response = _attempt(harness, harness.client())
    assert response.status_code == 303  # type: ignore[attr-defined]
    cookie = next(
        c
        for c in response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
        if c.startswith(SESSION_COOKIE + "=")
    )
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "secure" in lowered
    assert "samesite=strict" in lowered
    assert "path=/" in lowered
    assert "domain=" not in lowered


@pytest.mark.parametrize(
    "fields",
    [
        {"password": "wrong password entirely"},
        {"code": "000000"},
        {"code": ""},
        {"name": "nobody"},
        {"name": "rita ", "password": ""},
        {"csrf": "forged"},
    ],
    ids=["wrong_password", "wrong_code", "no_code", "unknown_name", "empty_password", "no_csrf"],
)
def test_sign_in_refused(harness: Harness, fields: dict[str, str]) -> None:
    response = _attempt(harness, harness.client(), **fields)
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert not _signed_in(response)


def test_refusals_do_not_say_which_part_was_wrong(harness: Harness) -> None:
    texts = {
        _attempt(harness, harness.client(), **fields)
        .text.split('role="alert">')[1]  # type: ignore[attr-defined]
        .split("<")[0]
        for fields in ({"password": "wrong password entirely"}, {"name": "nobody"})
    }
    assert len(texts) == 1


def test_a_used_code_cannot_sign_in_again(harness: Harness) -> None:
    code = harness.code("rita")
    assert _signed_in(_attempt(harness, harness.client(), code=code))
    replay = _attempt(harness, harness.client(), code=code)
    assert replay.status_code == 401  # type: ignore[attr-defined]
    assert not _signed_in(replay)


def test_sign_in_from_another_site_is_refused(harness: Harness) -> None:
    client = harness.client()
    data = {
        "name": "rita",
        "password": PASSWORD,
        "code": harness.code("rita"),
        "csrf": login_token(client),
    }
    response = client.post("/login", data=data, headers={"origin": "https://evil.example"})
    assert response.status_code == 401
    assert not _signed_in(response)


def test_failed_sign_ins_are_throttled_even_with_the_right_password(harness: Harness) -> None:
    for _ in range(5):
        assert _attempt(harness, harness.client(), password="wrong password!").status_code == 401  # type: ignore[attr-defined]
    blocked = _attempt(harness, harness.client())
    assert blocked.status_code == 401  # type: ignore[attr-defined]
    assert "too many failed sign-ins" in blocked.text  # type: ignore[attr-defined]
    harness.clock.advance(16 * 60_000)
    assert _signed_in(_attempt(harness, harness.client()))


# --- sessions --------------------------------------------------------------------------------


def test_a_tampered_session_cookie_is_refused(harness: Harness) -> None:
    client = harness.sign_in("adam")
    sid, mac = client.cookies[SESSION_COOKIE].split(".")
    assert client.get("/").status_code == 200
    for value in (f"{sid}.{mac[:-2]}AA", f"{sid[:-2]}AA.{mac}", sid, f"{sid}.{mac}.{mac}"):
        forged = harness.client()
        forged.cookies.set(SESSION_COOKIE, value)
        assert forged.get("/").status_code == 303, value


def test_idle_sessions_end(harness: Harness) -> None:
    client = harness.sign_in("adam")
    assert client.get("/reports").status_code == 200
    harness.clock.advance(16 * 60_000)
    assert client.get("/reports").status_code == 303


def test_sessions_end_after_the_absolute_limit_even_when_busy(harness: Harness) -> None:
    client = harness.sign_in("adam")
    for _ in range(8 * 6):  # every 10 minutes for 8 hours
        harness.clock.advance(10 * 60_000)
        client.get("/reports")
    harness.clock.advance(10 * 60_000)
    assert client.get("/reports").status_code == 303


def test_a_signed_out_cookie_cannot_be_replayed(harness: Harness) -> None:
    client = harness.sign_in("adam")
    cookie = client.cookies[SESSION_COOKIE]
    csrf = csrf_of(client.get("/").text)
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    replay = harness.client()
    replay.cookies.set(SESSION_COOKIE, cookie)
    assert replay.get("/").status_code == 303


# --- forms -----------------------------------------------------------------------------------


def _open_hit(harness: Harness, client: object) -> str:
    html = client.get("/review").text  # type: ignore[attr-defined]
    return html.split('name="hit" value="')[1].split('"')[0]


@pytest.mark.parametrize(
    ("csrf", "headers"),
    [
        (None, {}),
        ("forged-token", {}),
        ("<real>", {"origin": "https://evil.example"}),
        ("<real>", {"sec-fetch-site": "cross-site"}),
        ("<real>", {"sec-fetch-site": "same-site"}),
        ("<real>", {"origin": "null"}),
        ("<real>", {"origin": "https://testserver.evil.example"}),
    ],
    ids=[
        "no_token",
        "forged_token",
        "foreign_origin",
        "cross_site_fetch",
        "sibling_site_fetch",
        "null_origin",
        "lookalike_origin",
    ],
)
def test_forms_without_the_session_token_change_nothing(
    harness: Harness, csrf: str | None, headers: dict[str, str]
) -> None:
    client = harness.sign_in("rita")
    hit = _open_hit(harness, client)
    real = csrf_of(client.get("/review").text)
    before = len(read_chain(harness.store, REVIEWS_CHAIN))
    data = {"hit": hit, "action": "decide", "disposition": "closed", "note": "forged"}
    if csrf is not None:
        data["csrf"] = real if csrf == "<real>" else csrf
    response = client.post("/review", data=data, headers=headers)
    assert response.status_code == 403
    assert len(read_chain(harness.store, REVIEWS_CHAIN)) == before


def test_another_sessions_token_is_refused(harness: Harness) -> None:
    rita = harness.sign_in("rita")
    other = harness.sign_in("adam")
    hit = _open_hit(harness, rita)
    before = len(read_chain(harness.store, REVIEWS_CHAIN))
    data = {
        "hit": hit,
        "action": "decide",
        "disposition": "closed",
        "note": "x",
        "csrf": csrf_of(other.get("/").text),
    }
    assert rita.post("/review", data=data).status_code == 403
    assert len(read_chain(harness.store, REVIEWS_CHAIN)) == before


# --- headers and markup ----------------------------------------------------------------------


def _pages(harness: Harness) -> Iterator[tuple[str, object]]:
    client = harness.sign_in("adam")
    yield "/login", harness.client().get("/login")
    for path in ("/", "/review", "/reports", "/reports/volume", "/access", "/holds"):
        yield path, client.get(path)


def test_every_page_carries_a_strict_csp(harness: Harness) -> None:
    for path, response in _pages(harness):
        csp = response.headers["content-security-policy"]  # type: ignore[attr-defined]
        assert "default-src 'none'" in csp, path
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert "img-src 'self' data:;" in csp and "media-src 'self';" in csp
        assert response.headers["x-content-type-options"] == "nosniff"  # type: ignore[attr-defined]
        assert "http://" not in response.text and "https://" not in response.text, path  # type: ignore[attr-defined]


def test_templates_hold_no_inline_script_style_or_handlers() -> None:
    folder = Path(__file__).parents[2] / "src" / "coexarchive" / "console" / "templates"
    for template in folder.glob("*.html"):
        text = template.read_text()
        assert "<script>" not in text, template.name
        assert "style=" not in text and "<style" not in text, template.name
        assert " onclick=" not in text and " onload=" not in text, template.name


def test_input_echoed_on_a_page_is_escaped(harness: Harness) -> None:
    client = harness.sign_in("adam")
    response = client.get("/access", params={"who": '"><script>alert(1)</script>'})
    assert "<script>alert(1)" not in response.text
    assert "&lt;script&gt;alert(1)" in response.text


def test_hostile_archived_text_is_shown_as_text(tmp_path: Path) -> None:
    from query._archive import ALICE, CHAIN_A, build_archive, inbound

    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>\u202egnp.exe'
    store = MemoryStore()
    build_archive(
        store, extra={"900000000000009": [inbound("900000000000009", 1, 0, 5, ALICE, hostile)]}
    )
    harness = build(store, tmp_path, with_index=False)
    client = harness.sign_in("rita")
    page = client.get("/conversation", params={"chain": "900000000000009", "customer": ALICE})
    assert page.status_code == 200
    assert "<img src=x" not in page.text
    assert "<script>alert(2)" not in page.text
    assert "&lt;img src=x onerror=" in page.text
    assert CHAIN_A not in page.text.split("<main")[1]  # only the conversation asked for


@pytest.mark.parametrize(("user", "status"), [("lena", 403), ("aldo", 200), ("adam", 200)])
def test_the_access_report_is_for_auditors_and_admins_only(
    harness: Harness, user: str, status: int
) -> None:
    client = harness.sign_in(user)
    response = client.get("/reports/access")
    assert response.status_code == status
    assert ('href="/reports/access"' in client.get("/reports").text) == (status == 200)
