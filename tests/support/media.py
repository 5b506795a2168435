"""Builders for the media tests: references, a fetcher on the local Graph server, receipts."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from coexarchive.media.fetch import FetchOptions, MediaFetcher
from coexarchive.media.graph import GraphClient, GraphConfig
from coexarchive.media.receipt import MediaRef
from coexarchive.raw import decode_landing
from coexarchive.retention import RetentionPolicy
from coexarchive.store.memory import MemoryStore
from coexarchive.testing.graph import GraphMediaServer

RECEIPT_SECRET = b"media-receipt-secret"
CHAIN = "900000000000001"
CUSTOMER = "447700900123"
POLICY = RetentionPolicy.parse("GOVERNANCE:1")


def ref_for(
    server: GraphMediaServer,
    media_id: str,
    *,
    created_ms: int,
    mime: str = "image/jpeg",
    msg_type: str = "image",
    size: int | None = None,
    register: bool = True,
    advertised: str | None = None,
) -> MediaRef:
    """A reference as ingest sealed it, to an attachment the server knows (webhook hash base64)."""
    if register:
        item = server.add(media_id, mime, created_ms=created_ms, size=size)
        advertised = advertised or base64.b64encode(bytes.fromhex(item.sha256)).decode()
    return MediaRef(
        chain_id=CHAIN,
        media_id=media_id,
        record_id=hashlib.sha256(media_id.encode()).hexdigest()[:32],
        wamid=f"wamid.{media_id}",
        kind="message",
        msg_type=msg_type,
        mime_type=mime,
        advertised_sha256=advertised,
        captured_time=created_ms,
    )


@pytest.fixture
def make_fetcher(graph_server: GraphMediaServer, graph_clock: Any) -> Callable[..., MediaFetcher]:
    def make(
        store: Any = None, raw_store: Any = None, *, token: str | None = None, **options: Any
    ) -> MediaFetcher:
        config = GraphConfig(
            base_url=graph_server.base_url,
            token=token or graph_server.token,
            version=graph_server.version,
        )
        sleeps: list[float] = []
        fetcher = MediaFetcher(
            store if store is not None else MemoryStore(),
            raw_store if raw_store is not None else MemoryStore(),
            GraphClient(config),
            policy=POLICY,
            receipt_secret=RECEIPT_SECRET,
            options=FetchOptions(**{"backoff_s": 0.001, "receipts_per_object": 1, **options}),
            clock=graph_clock,
            sleep=sleeps.append,
        )
        fetcher.sleeps = sleeps  # type: ignore[attr-defined]
        return fetcher

    return make


def receipts(raw_store: MemoryStore) -> list[dict[str, Any]]:
    """Every landed receipt body, parsed."""
    found = []
    for key in raw_store.list("raw/"):
        for line in decode_landing(raw_store.get(key), key=key):
            assert line.delivery is not None and line.delivery.source == "media"
            found.append(orjson.loads(line.delivery.body))
    return found


def seal(store: Any, records: list[Any], personal: Any = None) -> None:
    """Seal ``records`` into chain :data:`CHAIN` as one commit (with its archive head);
    ``personal`` (a PersonalSealer) seals personal fields encrypted (record version 2)."""
    from coexarchive.archive_head import write_head_after
    from coexarchive.segments import ChainWriter
    from support.archive import ARCHIVE, short_policy, signer

    writer = ChainWriter(
        store,
        CHAIN,
        signer=signer(),
        archive_name=ARCHIVE,
        policy=short_policy(),
        personal=personal,
    )
    results = writer.append(records)
    write_head_after(store, [r.manifest for r in results], signer=signer(), archive_name=ARCHIVE)


def media_records(raw: MemoryStore) -> list[Any]:
    """The media records ingest makes of every receipt landed in ``raw``."""
    from coexarchive.normalize import normalize_delivery

    found = []
    for key in raw.list("raw/"):
        for line in decode_landing(raw.get(key), key=key):
            assert line.delivery is not None
            result = normalize_delivery(
                line.delivery.body, raw_key=key, raw_line=line.line, received_time=1, source="media"
            )
            found += result.records
    return found


@pytest.fixture
def media_archive(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> dict[str, Any]:
    """Three messages with attachments sealed, fetched, and their media records sealed; a fourth
    whose attachment Graph no longer has (a sealed gap) and a fifth never fetched."""
    return build_media_archive(graph_server, graph_clock, make_fetcher)


@pytest.fixture
def encrypted_media_archive(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> dict[str, Any]:
    """:func:`media_archive` sealed as record version 2 (personal fields encrypted)."""
    return build_media_archive(graph_server, graph_clock, make_fetcher, personal=fixed_key_sealer())


def fixed_key_sealer() -> Any:
    """A PersonalSealer over one fixed data key per customer (no key store needed)."""
    import hashlib

    from coexarchive.seal.personal import DataKey, PersonalSealer

    def key_for(customer: str) -> DataKey:
        secret = hashlib.sha256(customer.encode()).digest()
        return DataKey(key_id=secret.hex()[:16], customer_id=customer, secret=secret)

    return PersonalSealer(key_for)


def build_media_archive(
    graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any, personal: Any = None
) -> dict[str, Any]:
    import dataclasses

    from support.archive import make_records

    store, raw = MemoryStore(), MemoryStore()
    messages = [
        dataclasses.replace(
            m, media_id=f"m{i}", msg_type="image", customer_id=CUSTOMER, customer_wa_id=CUSTOMER
        )
        for i, m in enumerate(make_records(CHAIN, 5))
    ]

    refs = []
    for i, message in enumerate(messages[:4]):
        ref = ref_for(graph_server, f"m{i}", created_ms=graph_clock(), register=i < 3)
        refs.append(
            dataclasses.replace(
                ref, record_id=message.record_id, wamid=message.wamid, customer_id=CUSTOMER
            )
        )
    seal(store, messages, personal)
    make_fetcher(store, raw).run(refs)
    media = media_records(raw)
    seal(store, media, personal)
    keys = sorted(
        {orjson.loads(r.detail)["raw"]["object_key"] for r in media if r.status == "stored"}
    )
    return {
        "store": store,
        "keys": keys,
        "messages": messages,
        "media": media,
        "personal": personal,
    }


@dataclass
class LinkHost:
    """A tiny HTTP server on 127.0.0.1 that records every request's headers."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    base_url: str = ""

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@pytest.fixture
def link_host() -> Iterator[LinkHost]:
    host = LinkHost()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            status, headers, body = host.routes.get(self.path, (404, {}, b"no such file"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # The fetcher hangs up on purpose on an answer over the limit.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()
