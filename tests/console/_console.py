"""A console over the demo's traffic on the in-memory store, with one account per role.

The archive is sealed with the test archive key, the supervision hits with an audit key, and the
console signs with its own service key; the trust file lists all three.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pyotp
from starlette.applications import Starlette

with warnings.catch_warnings():
    # Starlette's test client suggests httpx2, which is not on PyPI's stable track yet.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from supervision._demo import build_demo

from coexarchive._internal.clock import now_ms
from coexarchive.console.accounts import AccountFile
from coexarchive.console.app import create_app
from coexarchive.console.archive import ConsoleArchive
from coexarchive.console.oidc import OidcClient, OidcConfig
from coexarchive.query.views import ArchiveCatalog
from coexarchive.search.index import SearchIndex
from coexarchive.store import MemoryStore
from coexarchive.supervision.library import import_policy
from coexarchive.supervision.policy import load_policy
from coexarchive.supervision.register import Sealer
from coexarchive.supervision.scan import rescan
from support.archive import ARCHIVE, short_policy, signer, trust_for

SAMPLE = Path(__file__).parents[2] / "schemas" / "samples" / "policy-sample.yaml"
NOW = 1_768_000_000_000  # 2026-01-09T23:06:40Z, after the simulated days
ARCHIVE_KEY = signer()
AUDIT = signer("coexarchive.audit", seed=b"audit")
CONSOLE_KEY = signer("coexarchive.console", seed=b"console")
TRUST = trust_for(ARCHIVE_KEY, AUDIT, CONSOLE_KEY)
IDENTITY = f"{ARCHIVE} console test"
PASSWORD = "correct horse battery staple"
USERS = {
    "rita": ("reviewer",),
    "aldo": ("auditor",),
    "lena": ("legal",),
    "adam": ("admin",),
}


def demo_store() -> MemoryStore:
    """The demo archive with the sample policy's hits in the review queue."""
    store = MemoryStore()
    build_demo(store)
    sealer = Sealer(store, signer=AUDIT, archive_name=ARCHIVE, trust=TRUST, policy=short_policy())
    policy = import_policy(sealer, load_policy(SAMPLE), who="cco", now_ms=NOW).policy
    rescan(ArchiveCatalog(store), sealer, policy, who="cco", now_ms=NOW)
    return store


def copy_of(store: MemoryStore) -> MemoryStore:
    copy = MemoryStore()
    copy.unsafe_objects = dict(store.unsafe_objects)
    copy._retention = dict(store._retention)
    copy._legal_hold = dict(store._legal_hold)
    copy._version_ids = dict(store._version_ids)
    copy._written = dict(store._written)
    return copy


class Clock:
    """A settable clock in milliseconds."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


class WallClock(Clock):
    """The real clock, for a browser whose authenticator codes follow real time."""

    def __call__(self) -> int:
        return now_ms() + self.now - NOW


@dataclass
class Harness:
    store: MemoryStore
    app: Starlette
    archive: ConsoleArchive
    accounts: AccountFile
    clock: Clock
    tmp: Path

    def client(self) -> TestClient:
        # https: the session cookie is Secure, and a client sends it over TLS only.
        return TestClient(self.app, base_url="https://testserver", follow_redirects=False)

    def code(self, user: str, *, at_ms: int | None = None) -> str:
        account = self.accounts.load()[user]
        return pyotp.TOTP(account.totp_secret).at((at_ms or self.clock()) / 1000)

    def sign_in(self, user: str, client: TestClient | None = None) -> TestClient:
        client = client or self.client()
        response = client.post(
            "/login",
            data={
                "name": user,
                "password": PASSWORD,
                "code": self.code(user),
                "csrf": login_token(client),
            },
        )
        assert response.status_code == 303, response.text
        # A second sign-in in the same 30 s would replay the code: later ones use the next step.
        self.clock.advance(30_000)
        return client


def login_token(client: TestClient) -> str:
    page = client.get("/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


_ACCOUNTS: list[bytes] = []


def _accounts(path: Path) -> AccountFile:
    """The four accounts, hashed once per test run (argon2id is slow on purpose)."""
    if not _ACCOUNTS:
        made = AccountFile(path)
        for name, roles in USERS.items():
            made.add(name, PASSWORD, roles)
        _ACCOUNTS.append(path.read_bytes())
    path.write_bytes(_ACCOUNTS[0])
    return AccountFile(path)


def build(
    store: MemoryStore,
    tmp: Path,
    *,
    with_index: bool = True,
    clock: Clock | None = None,
    oidc: OidcConfig | None = None,
) -> Harness:
    clock = clock or Clock()
    accounts = _accounts(tmp / "accounts.json")
    index_dir = None
    if with_index:
        index_dir = tmp / "index"
        SearchIndex(index_dir, IDENTITY).update(ArchiveCatalog(store))
    archive = ConsoleArchive(
        store,
        trust=TRUST,
        signer=CONSOLE_KEY,
        archive_name=ARCHIVE,
        policy=short_policy(),
        index_dir=index_dir,
        archive_identity=IDENTITY,
        export_dir=tmp / "exports",
        clock=clock,
    )
    client = OidcClient(oidc, clock=clock) if oidc is not None else None
    app = create_app(archive, accounts, clock=clock, oidc=client)
    return Harness(store, app, archive, accounts, clock, tmp)


def with_media(store: MemoryStore) -> MemoryStore:
    """``store`` (the demo archive) with every attachment fetched from a local Graph media
    server and its ``media`` records sealed, as ``coexarchive media fetch`` and ingest do."""
    from collections import defaultdict

    from supervision._demo import CONFIG

    from coexarchive.archive_head import write_head_after
    from coexarchive.media.fetch import FetchOptions, MediaFetcher, pending_refs
    from coexarchive.media.graph import GraphClient, GraphConfig
    from coexarchive.normalize import normalize_delivery
    from coexarchive.raw import decode_landing
    from coexarchive.retention import RetentionPolicy
    from coexarchive.segments import ChainWriter
    from coexarchive.testing import simulate
    from coexarchive.testing.graph import serve_landing, simulation_end_ms

    now = simulation_end_ms(int(CONFIG.start.timestamp() * 1000), CONFIG.days)
    server = serve_landing(simulate(CONFIG).objects, clock=lambda: now)
    raw = MemoryStore()
    try:
        config = GraphConfig(base_url=server.base_url, token=server.token, version=server.version)
        MediaFetcher(
            store, raw, GraphClient(config), policy=RetentionPolicy.parse("GOVERNANCE:1"),
            receipt_secret=b"console-media", options=FetchOptions(backoff_s=0.001),
            clock=lambda: now,
        ).run(pending_refs(store, raw))  # fmt: skip
    finally:
        server.stop()
    by_chain: dict[str, list[object]] = defaultdict(list)
    for key in raw.list("raw/"):
        for line in decode_landing(raw.get(key), key=key):
            assert line.delivery is not None
            for record in normalize_delivery(
                line.delivery.body, raw_key=key, raw_line=line.line, received_time=now,
                source="media",
            ).records:  # fmt: skip
                by_chain[record.chain_id].append(record)
    manifests = []
    for chain_id, records in sorted(by_chain.items()):
        writer = ChainWriter(
            store, chain_id, signer=ARCHIVE_KEY, archive_name=ARCHIVE, policy=short_policy()
        )
        manifests += [result.manifest for result in writer.append(records)]  # type: ignore[arg-type]
    write_head_after(store, manifests, signer=ARCHIVE_KEY, archive_name=ARCHIVE, trust=TRUST)
    return store
