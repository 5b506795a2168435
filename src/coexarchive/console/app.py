"""The review console's web application (Starlette, server-rendered Jinja2 templates).

Every route names the permission it needs (:mod:`coexarchive.console.roles`); the check runs on
the server before the handler, and a request without a live session is sent to the sign-in page
and sees nothing else. Every form post carries the session's CSRF token and, when the browser
sends one, an ``Origin`` of the console itself. Responses carry a strict Content-Security-Policy:
scripts and styles only from the console's own ``/static``, no inline script, no framing.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import orjson
import pyarrow as pa
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coexarchive.console import charts
from coexarchive.console.accounts import AccountFile, TotpChecker
from coexarchive.console.archive import INLINE_TYPES, ConsoleArchive, Viewer
from coexarchive.console.oidc import OidcClient
from coexarchive.console.roles import allowed
from coexarchive.console.sessions import Session, SessionStore, Throttle
from coexarchive.errors import AuthError, CoexArchiveError, ConfigError
from coexarchive.export.holds import HoldScope
from coexarchive.media.thumbs import thumbnail
from coexarchive.query.cli import iso_utc, to_csv
from coexarchive.query.reports import REPORTS, Params
from coexarchive.query.views import Window, utc_ms
from coexarchive.supervision import queue as review_queue

__all__ = ["ROUTES", "Console", "create_app"]

HERE: Final = Path(__file__).parent
SESSION_COOKIE: Final = "__Host-coexarchive-session"
LOGIN_COOKIE: Final = "__Host-coexarchive-login"
# Lax, not Strict: the provider sends the browser back with a cross-site navigation.
OIDC_COOKIE: Final = "__Host-coexarchive-oidc"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
NAV: Final = (
    ("/", "Overview", "overview"),
    ("/search", "Search", "search"),
    ("/review", "Review queue", "review.view"),
    ("/reports", "Reports", "reports"),
    ("/holds", "Holds and exports", "holds.view"),
    ("/access", "Access log", "access"),
)


@dataclass
class Console:
    """What the routes share: the archive, the accounts, the sessions and the throttle."""

    archive: ConsoleArchive
    accounts: AccountFile
    sessions: SessionStore
    throttle: Throttle
    totp: TotpChecker
    clock: Callable[[], int]
    templates: Environment
    oidc: OidcClient | None = None


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.globals["svg_bars"] = charts.bars
    env.filters["iso"] = _iso
    env.filters["media_filename"] = _media_filename
    return env


def _iso(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, datetime):
        return iso_utc(value)
    return str(value)


# --- rendering --------------------------------------------------------------------------------


def _render(
    console: Console,
    request: Request,
    name: str,
    context: Mapping[str, Any],
    *,
    session: Session | None = None,
    status: int = 200,
) -> HTMLResponse:
    nav = []
    if session is not None:
        nav = [(href, label) for href, label, perm in NAV if allowed(perm, session.roles)]
    page = console.templates.get_template(name).render(
        session=session,
        nav=nav,
        path=request.url.path,
        can=lambda perm: session is not None and allowed(perm, session.roles),
        **context,
    )
    return HTMLResponse(page, status_code=status, headers={"cache-control": "no-store"})


def _to_login() -> Response:
    return RedirectResponse("/login", status_code=303)


Handler = Callable[[Console, Request, Session], Awaitable[Response]]


def _guarded(permission: str, handler: Handler, *, form: bool = False) -> Callable[..., Any]:
    """The endpoint: session, then role, then (for posts) CSRF and origin, then the handler."""

    async def endpoint(request: Request) -> Response:
        console: Console = request.app.state.console
        session = console.sessions.open(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return _to_login()
        if not allowed(permission, session.roles):
            return _render(console, request, "denied.html", {}, session=session, status=403)
        if form:
            fields = await request.form()
            token = fields.get("csrf")
            try:
                _same_origin(request)
                SessionStore.check_csrf(session, token if isinstance(token, str) else None)
            except AuthError as exc:
                return _render(
                    console,
                    request,
                    "error.html",
                    {"message": str(exc)},
                    session=session,
                    status=403,
                )
        try:
            return await handler(console, request, session)
        except AuthError as exc:
            return _render(
                console, request, "error.html", {"message": str(exc)}, session=session, status=403
            )
        except CoexArchiveError as exc:
            return _render(
                console, request, "error.html", {"message": str(exc)}, session=session, status=400
            )

    endpoint.__name__ = handler.__name__
    return endpoint


def _same_origin(request: Request) -> None:
    """A browser's ``Origin`` (or ``Sec-Fetch-Site``) must name the console itself."""
    origin = request.headers.get("origin")
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site not in (None, "same-origin", "none"):
        raise AuthError("the form was refused: it was sent from another site")
    if origin == "null":
        # Sent by sandboxed frames and privacy settings: only the browser's own word will do.
        if fetch_site != "same-origin":
            raise AuthError("the form was refused: it was sent from another site")
    elif origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise AuthError("the form was refused: it was sent from another site")


def _field(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    return value.strip() if isinstance(value, str) else ""


def _moment(text: str) -> int | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"not a date or time: {text[:40]!r} (use YYYY-MM-DD)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return utc_ms(moment)


def _viewer(session: Session, reason: str | None = None) -> Viewer:
    return Viewer(session.user, session.method, (reason or "").strip()[:500] or None)


# --- sign-in ----------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    console: Console = request.app.state.console
    token = secrets.token_urlsafe(32)
    response = _render(
        console,
        request,
        "login.html",
        {"csrf": token, "message": None, "oidc": console.oidc is not None},
    )
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=600, path="/", secure=True, httponly=True, samesite="strict"
    )
    return response


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    fields = await request.form()
    name, password, code = (
        _field(fields, "name"),
        _field(fields, "password"),
        _field(fields, "code"),
    )
    address = request.client.host if request.client else "unknown"
    keys = (f"user:{name.lower()}", f"addr:{address}")
    try:
        _same_origin(request)
        cookie, token = request.cookies.get(LOGIN_COOKIE, ""), _field(fields, "csrf")
        if not cookie or not secrets.compare_digest(cookie.encode(), token.encode()):
            raise AuthError("the sign-in form was stale: load the page again")
        console.throttle.check(*keys)
        try:
            account = await run_in_threadpool(console.accounts.authenticate, name, password)
            console.totp.check(account, code, now_s=console.clock() / 1000)
        except AuthError:
            console.throttle.failed(*keys)
            raise
    except AuthError as exc:
        retry = secrets.token_urlsafe(32)
        response = _render(
            console,
            request,
            "login.html",
            {"csrf": retry, "message": str(exc), "oidc": console.oidc is not None},
            status=401,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            retry,
            max_age=600,
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response
    console.throttle.succeeded(keys[0])
    _, value = console.sessions.create(account.name, account.roles, "local")
    signed_in = RedirectResponse("/", status_code=303)
    signed_in.set_cookie(
        SESSION_COOKIE, value, path="/", secure=True, httponly=True, samesite="strict"
    )
    signed_in.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return signed_in


async def oidc_begin(request: Request) -> Response:
    console: Console = request.app.state.console
    if console.oidc is None:
        return Response("OpenID Connect is not configured", status_code=404)
    oidc = console.oidc
    url, state = await run_in_threadpool(oidc.begin)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        OIDC_COOKIE, state, max_age=600, path="/", secure=True, httponly=True, samesite="lax"
    )
    return response


async def oidc_callback(request: Request) -> Response:
    console: Console = request.app.state.console
    if console.oidc is None:
        return Response("OpenID Connect is not configured", status_code=404)
    oidc = console.oidc
    query = request.query_params
    address = request.client.host if request.client else "unknown"
    try:
        console.throttle.check(f"addr:{address}")
        if query.get("error"):
            raise AuthError("sign-in through the identity provider was refused by it")
        identity = await run_in_threadpool(
            lambda: oidc.finish(
                state=query.get("state", ""),
                browser_state=request.cookies.get(OIDC_COOKIE, ""),
                code=query.get("code", ""),
            )
        )
    except AuthError as exc:
        console.throttle.failed(f"addr:{address}")
        refused = _render(
            console,
            request,
            "login.html",
            {"csrf": "", "message": str(exc), "oidc": True, "retry": True},
            status=401,
        )
        refused.delete_cookie(OIDC_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
        return refused
    _, value = console.sessions.create(
        identity.name, identity.roles, "oidc", id_token=identity.id_token
    )
    # A page of our own, not a redirect: a Strict cookie set in a chain that began on the
    # provider's site would not be sent on the redirect; this page's own navigation sends it.
    page = _render(console, request, "continue.html", {})
    page.set_cookie(SESSION_COOKIE, value, path="/", secure=True, httponly=True, samesite="strict")
    page.delete_cookie(OIDC_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return page


async def logout(console: Console, request: Request, session: Session) -> Response:
    console.sessions.end(session)
    target = "/login"
    if session.method == "oidc" and console.oidc is not None:
        back = f"{request.url.scheme}://{request.url.netloc}/login"
        target = console.oidc.logout_url(session.id_token, back) or target
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


# --- pages ------------------------------------------------------------------------------------


async def overview(console: Console, request: Request, session: Session) -> Response:
    found = await run_in_threadpool(console.archive.overview, _viewer(session))
    weeks: dict[str, int] = {}
    for row in found.flags_by_week:
        weeks[str(row["week"])] = weeks.get(str(row["week"]), 0) + int(row["records"])
    ages = {"under_1d": 0, "1d_7d": 0, "7d_30d": 0, "over_30d": 0}
    for row in found.backlog:
        for age in ages:
            ages[age] += int(row[age])
    return _render(
        console,
        request,
        "overview.html",
        {"o": found, "weeks": weeks, "ages": ages},
        session=session,
    )


async def verify_now(console: Console, request: Request, session: Session) -> Response:
    await run_in_threadpool(console.archive.verify_now, _viewer(session))
    return RedirectResponse("/", status_code=303)


async def search(console: Console, request: Request, session: Session) -> Response:
    query = request.query_params.get("q", "").strip()
    since = request.query_params.get("since", "")
    until = request.query_params.get("until", "")
    reason = request.query_params.get("reason", "")
    result = None
    if query:
        window = None
        if since or until:
            window = Window(_moment(since), _moment(until))
        result = await run_in_threadpool(
            lambda: console.archive.search(_viewer(session, reason), query, window=window)
        )
    rows = result.table.to_pylist() if result is not None else []
    for row in rows:
        row["marked"] = _marks(str(row["text"] or ""))
    return _render(
        console,
        request,
        "search.html",
        {
            "q": query,
            "since": since,
            "until": until,
            "reason": reason,
            "result": result,
            "rows": rows,
        },
        session=session,
    )


def _marks(snippet: str) -> list[tuple[str, bool]]:
    """The snippet as (text, highlighted) parts: the search marks words with « »."""
    parts: list[tuple[str, bool]] = []
    rest = snippet
    while "«" in rest and "»" in rest.split("«", 1)[1]:
        before, after = rest.split("«", 1)
        word, rest = after.split("»", 1)
        parts += [(before, False), (word, True)]
    parts.append((rest, False))
    return [part for part in parts if part[0]]


async def conversation(console: Console, request: Request, session: Session) -> Response:
    chain = request.query_params.get("chain", "").strip()
    customer = request.query_params.get("customer", "").strip()
    reason = request.query_params.get("reason", "")
    prove = request.query_params.get("prove") == "1"
    if not chain or not customer:
        raise ConfigError("a conversation is named by its chain and customer")
    found = await run_in_threadpool(
        lambda: console.archive.conversation(_viewer(session, reason), chain, customer, prove=prove)
    )
    return _render(
        console,
        request,
        "conversation.html",
        {"c": found, "reason": reason},
        session=session,
    )


async def review(console: Console, request: Request, session: Session) -> Response:
    state = request.query_params.get("state", "open")
    if state not in ("open", "decided", "all"):
        state = "open"
    assignee = request.query_params.get("assignee", "")
    hits = await run_in_threadpool(
        lambda: console.archive.review_list(_viewer(session), state=state, assignee=assignee)
    )
    return _render(
        console,
        request,
        "review.html",
        {
            "hits": hits,
            "state": state,
            "assignee": assignee,
            "dispositions": review_queue.DISPOSITIONS,
            "done": request.query_params.get("done", ""),
        },
        session=session,
    )


async def review_act(console: Console, request: Request, session: Session) -> Response:
    fields = await request.form()
    action = _field(fields, "action")
    if action not in ("decide", "assign", "reopen"):
        raise ConfigError("unknown review action")
    hit, seq = await run_in_threadpool(
        lambda: console.archive.review_act(
            _viewer(session),
            _field(fields, "hit"),
            action,
            disposition=_field(fields, "disposition") or None,
            note=_field(fields, "note") or None,
            to=_field(fields, "to") or None,
        )
    )
    return RedirectResponse(f"/review?done={hit.id[:12]}-{seq}", status_code=303)


async def reports(console: Console, request: Request, session: Session) -> Response:
    return _render(
        console,
        request,
        "reports.html",
        {
            "reports": [
                (name, r.summary, r.needs_customer)
                for name, r in REPORTS.items()
                if name not in _ACCESS_REPORTS or allowed("access", session.roles)
            ],
            "review_reports": [(name, text) for name, (text, _) in review_queue.REPORTS.items()],
        },
        session=session,
    )


_ACCESS_REPORTS: Final = frozenset({"access"})


def _sorted(columns: list[str], rows: list[list[Any]], sort: str) -> tuple[list[list[Any]], str]:
    name, _, order = sort.partition(":")
    if name not in columns:
        return rows, ""
    index = columns.index(name)
    ordered = sorted(
        rows, key=lambda row: (row[index] is None, str(row[index])), reverse=order == "desc"
    )
    return ordered, sort


async def report(console: Console, request: Request, session: Session) -> Response:
    name = request.path_params["name"]
    query = request.query_params
    params = Params(
        customer=query.get("customer") or None,
        chain=query.get("chain") or None,
        since=_datetime(query.get("since", "")),
        until=_datetime(query.get("until", "")),
    )
    viewer = _viewer(session, query.get("reason"))
    if name in _ACCESS_REPORTS and not allowed("access", session.roles):
        # The access log is the auditors' and admins' page, whichever way it is asked for.
        return _render(console, request, "denied.html", {}, session=session, status=403)
    if name.startswith("review-"):
        review_name = name.removeprefix("review-")
        if review_name not in review_queue.REPORTS:
            raise ConfigError("no such report")
        rows_json = await run_in_threadpool(console.archive.review_report, viewer, review_name)
        table = pa.Table.from_pylist(rows_json) if rows_json else pa.table({})
    else:
        if name not in REPORTS:
            raise ConfigError("no such report")
        if REPORTS[name].needs_customer and not params.customer:
            return _render(
                console,
                request,
                "report.html",
                {
                    "name": name,
                    "need_customer": True,
                    "columns": [],
                    "rows": [],
                    "sort": "",
                    "query": dict(query),
                },
                session=session,
            )
        result = await run_in_threadpool(console.archive.report, viewer, name, params)
        table = result.table
    if query.get("format") == "csv":
        return Response(
            to_csv(table),
            media_type="text/csv; charset=utf-8",
            headers={
                "content-disposition": f'attachment; filename="{name}.csv"',
                "cache-control": "no-store",
            },
        )
    columns = table.column_names
    rows = [[_cell(v) for v in row.values()] for row in table.to_pylist()]
    rows, sort = _sorted(columns, rows, query.get("sort", ""))
    kept = {k: v for k, v in query.items() if k in ("customer", "chain", "since", "until") and v}
    links = {
        col: "?" + urlencode({**kept, "sort": f"{col}:{'desc' if sort == col + ':asc' else 'asc'}"})
        for col in columns
    }
    return _render(
        console,
        request,
        "report.html",
        {
            "name": name,
            "need_customer": False,
            "columns": columns,
            "rows": rows,
            "sort": sort,
            "query": dict(query),
            "sort_links": links,
            "csv_link": "?" + urlencode({**kept, "format": "csv"}),
        },
        session=session,
    )


def _datetime(text: str) -> datetime | None:
    ms = _moment(text)
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return value


async def holds(console: Console, request: Request, session: Session) -> Response:
    viewer = _viewer(session)
    found = await run_in_threadpool(console.archive.hold_list, viewer)
    return _render(
        console,
        request,
        "holds.html",
        {
            "holds": found,
            "bundles": console.archive.bundles(),
            "done": request.query_params.get("done", ""),
        },
        session=session,
    )


async def hold_place(console: Console, request: Request, session: Session) -> Response:
    fields = await request.form()
    matter, reason = _field(fields, "matter"), _field(fields, "reason")
    if not matter or not reason:
        raise ConfigError("a hold needs a matter and a reason")
    scope = HoldScope(
        customer=_field(fields, "customer") or None,
        chain=_field(fields, "chain") or None,
        since=_moment(_field(fields, "since")),
        until=_moment(_field(fields, "until")),
    )
    outcome = await run_in_threadpool(
        console.archive.hold_place, _viewer(session), matter, scope, reason
    )
    return RedirectResponse(f"/holds?done=placed-{outcome['objects']}-objects", status_code=303)


async def hold_release(console: Console, request: Request, session: Session) -> Response:
    fields = await request.form()
    matter, reason = _field(fields, "matter"), _field(fields, "reason")
    if not matter or not reason:
        raise ConfigError("a release needs the matter and a reason")
    outcome = await run_in_threadpool(
        console.archive.hold_release, _viewer(session), matter, reason
    )
    return RedirectResponse(f"/holds?done=released-{outcome['released']}-objects", 303)


async def export(console: Console, request: Request, session: Session) -> Response:
    fields = await request.form()
    matter, customer = _field(fields, "matter"), _field(fields, "customer")
    if not matter or not customer:
        raise ConfigError("an export needs a matter and a customer")
    viewer = _viewer(session, _field(fields, "reason"))
    since, until = _moment(_field(fields, "since")), _moment(_field(fields, "until"))
    name = await run_in_threadpool(
        lambda: console.archive.export(viewer, matter, customer, since=since, until=until)
    )
    return RedirectResponse(f"/holds?done=bundle-{name}", status_code=303)


async def bundle(console: Console, request: Request, session: Session) -> Response:
    path = await run_in_threadpool(
        console.archive.bundle_path, _viewer(session), request.path_params["name"]
    )
    return FileResponse(
        path,
        media_type="application/zip",
        filename=path.name,
        headers={"cache-control": "no-store"},
    )


def _media_filename(detail: object) -> str | None:
    """A document's file name from its message's (opened) detail, if it states one."""
    try:
        tree = orjson.loads(str(detail))
    except orjson.JSONDecodeError:
        return None
    media = tree.get("media") if isinstance(tree, dict) else None
    name = media.get("filename") if isinstance(media, dict) else None
    return name if isinstance(name, str) else None


async def attachment(console: Console, request: Request, session: Session) -> Response:
    chain = request.query_params.get("chain", "").strip()
    customer = request.query_params.get("customer", "").strip()
    sha256 = request.path_params["sha256"]
    data, mime = await run_in_threadpool(
        lambda: console.archive.attachment(_viewer(session), chain, customer, sha256)
    )
    if request.query_params.get("size") == "thumb":
        # Derived from the bytes just re-hashed, never stored; a refused image (not an image, a
        # decompression bomb, unreadable) is a 404 and the page's link to the original remains.
        thumb = await run_in_threadpool(lambda: thumbnail(data, mime))
        if thumb is None:
            return Response(
                "no thumbnail for this attachment; open the original",
                status_code=404,
                media_type="text/plain; charset=utf-8",
                headers={"cache-control": "no-store"},
            )
        return Response(
            thumb.data,
            media_type=thumb.mime_type,
            headers={"cache-control": "no-store", "content-disposition": "inline"},
        )
    # The sealed type, inline only for what a browser plays safely; the rest downloads.
    inline = mime is not None and INLINE_TYPES.fullmatch(mime) is not None
    return Response(
        data,
        media_type=mime if inline else "application/octet-stream",
        headers={
            "cache-control": "no-store",
            "content-disposition": "inline" if inline else f'attachment; filename="{sha256}"',
        },
    )


async def access(console: Console, request: Request, session: Session) -> Response:
    who = request.query_params.get("who", "").strip()
    text = request.query_params.get("text", "").strip()
    result = await run_in_threadpool(
        lambda: console.archive.access(_viewer(session), who=who, text=text)
    )
    return _render(
        console,
        request,
        "access.html",
        {"rows": result.table.to_pylist(), "who": who, "text": text},
        session=session,
    )


# --- the application --------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    permission: str | None  # None: open to everyone (sign-in)
    handler: Handler | None = None


ROUTES: Final = (
    RouteSpec("GET", "/", "overview", overview),
    RouteSpec("POST", "/verify", "verify", verify_now),
    RouteSpec("GET", "/search", "search", search),
    RouteSpec("GET", "/conversation", "conversation", conversation),
    RouteSpec("GET", "/review", "review.view", review),
    RouteSpec("POST", "/review", "review.act", review_act),
    RouteSpec("GET", "/reports", "reports", reports),
    RouteSpec("GET", "/reports/{name}", "reports", report),
    RouteSpec("GET", "/holds", "holds.view", holds),
    RouteSpec("POST", "/holds/place", "holds.act", hold_place),
    RouteSpec("POST", "/holds/release", "holds.act", hold_release),
    RouteSpec("POST", "/exports", "exports", export),
    RouteSpec("GET", "/exports/{name}", "exports", bundle),
    RouteSpec("GET", "/access", "access", access),
    RouteSpec("GET", "/media/{sha256}", "conversation", attachment),
    RouteSpec("POST", "/logout", "overview", logout),
)


class SecurityHeaders:
    """Adds the CSP and the other hardening headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + list(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    archive: ConsoleArchive,
    accounts: AccountFile,
    *,
    clock: Callable[[], int],
    sessions: SessionStore | None = None,
    throttle: Throttle | None = None,
    oidc: OidcClient | None = None,
) -> Starlette:
    console = Console(
        archive=archive,
        accounts=accounts,
        sessions=sessions or SessionStore(clock),
        throttle=throttle or Throttle(clock),
        totp=TotpChecker(),
        clock=clock,
        templates=_environment(),
        oidc=oidc,
    )
    routes: list[Route | Mount] = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/login/oidc", oidc_begin, methods=["GET"]),
        Route("/login/oidc/callback", oidc_callback, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    for spec in ROUTES:
        assert spec.handler is not None
        assert spec.permission is not None
        routes.append(
            Route(
                spec.path,
                _guarded(spec.permission, spec.handler, form=spec.method == "POST"),
                methods=[spec.method],
            )
        )
    app = Starlette(routes=routes)
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    return app
