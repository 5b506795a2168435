"""Sends by ``link``: the fetcher downloads the URL itself, never with the Graph token.

The link is untrusted input: a scheme other than http(s), credentials in the URL, a redirect to
another scheme, an answer over the size limit or a missing file each end as a named failure (a
``media_gap`` once sealed), and the link host never sees the bearer token.
"""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import pytest

from coexarchive.errors import MediaFetchError
from coexarchive.media.graph import LinkClient
from coexarchive.media.receipt import MB, Cause, MediaRef, media_key
from coexarchive.store.memory import MemoryStore
from coexarchive.testing.graph import GraphMediaServer
from support.media import CHAIN, LinkHost, receipts

pytestmark = pytest.mark.integration

PHOTO = b"\xff\xd8\xff\xe0 a menu photo " * 100


def link_ref(link: str, *, wamid: str = "wamid.L1", msg_type: str = "image", now: int) -> MediaRef:
    return MediaRef(
        chain_id=CHAIN,
        media_id=f"link:{wamid}",
        record_id=hashlib.sha256(wamid.encode()).hexdigest()[:32],
        wamid=wamid,
        kind="outbound",
        msg_type=msg_type,
        mime_type=None,
        advertised_sha256=None,
        captured_time=now,
        link=link,
    )


def only_receipt(raw: MemoryStore) -> dict[str, Any]:
    (receipt,) = receipts(raw)
    return receipt


def assert_no_credentials(host: LinkHost, graph_server: GraphMediaServer) -> None:
    for _path, headers in host.seen:
        assert "authorization" not in headers and "cookie" not in headers
        assert graph_server.token not in " ".join(headers.values())


def test_a_link_send_is_downloaded_stored_by_hash_without_the_graph_token(
    link_host: LinkHost, graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    link_host.routes["/menu.jpg?sig=abc"] = (200, {"Content-Type": "image/jpeg"}, PHOTO)
    store, raw = MemoryStore(), MemoryStore()
    ref = link_ref(link_host.url("/menu.jpg?sig=abc"), now=graph_clock())
    summary = make_fetcher(store, raw).run([ref])
    assert summary.stored == 1 and summary.receipts == 1
    receipt = only_receipt(raw)
    digest = hashlib.sha256(PHOTO).hexdigest()
    assert receipt["outcome"] == "stored" and receipt["media_id"] == "link:wamid.L1"
    assert receipt["sha256"] == digest and receipt["size"] == len(PHOTO)
    assert receipt["object_key"] == media_key(digest) and store.get(media_key(digest)) == PHOTO
    assert store.info(media_key(digest)).retention is not None
    # The URL (its signed query string) is not in the receipt, which is sealed in the clear.
    assert "sig=abc" not in str(receipt) and "127.0.0.1" not in str(receipt)
    assert [path for path, _ in link_host.seen] == ["/menu.jpg?sig=abc"]
    assert_no_credentials(link_host, graph_server)


def test_the_same_bytes_by_link_and_again_are_stored_once(
    link_host: LinkHost, graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    link_host.routes["/a.jpg"] = (200, {}, PHOTO)
    link_host.routes["/b.jpg"] = (200, {}, PHOTO)
    store, raw = MemoryStore(), MemoryStore()
    refs = [
        link_ref(link_host.url("/a.jpg"), wamid="wamid.A", now=graph_clock()),
        link_ref(link_host.url("/b.jpg"), wamid="wamid.B", now=graph_clock()),
    ]
    summary = make_fetcher(store, raw, concurrency=1).run(refs)
    assert summary.stored == 1 and summary.already_stored == 1
    assert list(store.list("media/")) == [media_key(hashlib.sha256(PHOTO).hexdigest())]
    assert {r["media_id"] for r in receipts(raw)} == {"link:wamid.A", "link:wamid.B"}


@pytest.mark.parametrize(
    ("link", "cause"),
    [
        ("file:///etc/passwd", "forbidden"),
        ("ftp://127.0.0.1/menu.jpg", "forbidden"),
        ("gopher://127.0.0.1:70/_x", "forbidden"),
        ("data:image/jpeg;base64,AAAA", "forbidden"),
        ("//127.0.0.1/no-scheme.jpg", "forbidden"),
        ("http://[::1", "forbidden"),
    ],
    ids=["file", "ftp", "gopher", "data", "no-scheme", "malformed"],
)
def test_a_link_that_is_not_http_is_refused_without_any_request(
    link: str,
    cause: str,
    link_host: LinkHost,
    graph_server: GraphMediaServer,
    graph_clock: Any,
    make_fetcher: Any,
) -> None:
    store, raw = MemoryStore(), MemoryStore()
    summary = make_fetcher(store, raw).run([link_ref(link, now=graph_clock())])
    receipt = only_receipt(raw)
    assert (receipt["outcome"], receipt["cause"]) == ("failed", cause)
    assert summary.failed == {cause: 1} and list(store.list("media/")) == []
    assert link_host.seen == []


def test_credentials_in_the_link_are_refused(
    link_host: LinkHost, graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    link_host.routes["/menu.jpg"] = (200, {}, PHOTO)
    raw = MemoryStore()
    at = link_host.base_url.replace("http://", "http://user:pw@")
    make_fetcher(MemoryStore(), raw).run([link_ref(f"{at}/menu.jpg", now=graph_clock())])
    assert only_receipt(raw)["cause"] == "forbidden" and link_host.seen == []


def test_a_redirect_to_another_scheme_is_refused(
    link_host: LinkHost, graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    link_host.routes["/r"] = (302, {"Location": "file:///etc/passwd"}, b"")
    store, raw = MemoryStore(), MemoryStore()
    make_fetcher(store, raw).run([link_ref(link_host.url("/r"), now=graph_clock())])
    assert (only_receipt(raw)["outcome"], only_receipt(raw)["cause"]) == ("failed", "forbidden")
    assert list(store.list("media/")) == []


def test_an_http_redirect_is_followed_without_credentials_and_a_loop_is_refused(
    link_host: LinkHost, graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    link_host.routes["/old.jpg"] = (301, {"Location": "/new.jpg"}, b"")
    link_host.routes["/new.jpg"] = (200, {}, PHOTO)
    link_host.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    store, raw = MemoryStore(), MemoryStore()
    refs = [
        link_ref(link_host.url("/old.jpg"), wamid="wamid.R", now=graph_clock()),
        link_ref(link_host.url("/loop"), wamid="wamid.LOOP", now=graph_clock()),
    ]
    make_fetcher(store, raw, concurrency=1).run(refs)
    by_id = {r["media_id"]: r for r in receipts(raw)}
    assert by_id["link:wamid.R"]["sha256"] == hashlib.sha256(PHOTO).hexdigest()
    assert (by_id["link:wamid.LOOP"]["outcome"], by_id["link:wamid.LOOP"]["cause"]) == (
        "failed",
        "forbidden",
    )
    assert [p for p, _ in link_host.seen].count("/loop") == 4  # the first hop and 3 redirects
    assert_no_credentials(link_host, graph_server)


def test_a_link_that_404s_is_a_named_failure_and_the_others_are_kept(
    link_host: LinkHost, graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    link_host.routes["/ok.jpg"] = (200, {}, PHOTO)
    store, raw = MemoryStore(), MemoryStore()
    refs = [
        link_ref(link_host.url("/gone.jpg"), wamid="wamid.GONE", now=graph_clock()),
        link_ref(link_host.url("/ok.jpg"), wamid="wamid.OK", now=graph_clock()),
    ]
    summary = make_fetcher(store, raw).run(refs)
    by_id = {r["media_id"]: r for r in receipts(raw)}
    assert (by_id["link:wamid.GONE"]["outcome"], by_id["link:wamid.GONE"]["cause"]) == (
        "failed",
        "not_found",
    )
    assert by_id["link:wamid.OK"]["outcome"] == "stored"
    assert summary.failed == {"not_found": 1} and summary.stored == 1


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "streamed"])
def test_a_link_over_the_type_limit_is_too_large_and_nothing_is_stored(
    announced: bool,
    link_host: LinkHost,
    graph_server: GraphMediaServer,
    graph_clock: Any,
    make_fetcher: Any,
) -> None:
    big = b"\0" * (5 * MB + 1)  # an image may be 5 MB
    headers = {} if announced else {"Content-Length": "", "Connection": "close"}
    link_host.routes["/big.jpg"] = (200, headers, big)
    store, raw = MemoryStore(), MemoryStore()
    make_fetcher(store, raw).run([link_ref(link_host.url("/big.jpg"), now=graph_clock())])
    assert (only_receipt(raw)["outcome"], only_receipt(raw)["cause"]) == ("failed", "too_large")
    assert list(store.list("media/")) == []


def test_a_link_host_cannot_stop_the_job_or_pause_the_workers(
    link_host: LinkHost, graph_server: GraphMediaServer, graph_clock: Any, make_fetcher: Any
) -> None:
    # What Graph would mean as "token refused" (fatal) or "wait ten minutes" (every worker).
    refused = b'{"error":{"code":190,"message":"Invalid OAuth access token"}}'
    link_host.routes["/401"] = (401, {}, refused)
    link_host.routes["/500"] = (500, {}, refused)
    link_host.routes["/429"] = (429, {"Retry-After": "600"}, b"")
    store, raw = MemoryStore(), MemoryStore()
    fetcher = make_fetcher(store, raw, concurrency=1, max_attempts=2)
    refs = [
        link_ref(link_host.url(p), wamid=f"wamid{p}", now=graph_clock())
        for p in ("/401", "/500", "/429")
    ]
    summary = fetcher.run(refs)
    assert summary.failed == {"forbidden": 1}
    assert summary.deferred == {"server_error": 2}  # retried next run, inside the window
    assert all(s < 60 for s in fetcher.sleeps)


# --- links that point inside the network ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.jpg",
        "http://localhost/a.jpg",
        "http://[::1]/a.jpg",
        "http://10.1.2.3/a.jpg",
        "http://192.168.0.10/a.jpg",
        "http://172.16.5.5/a.jpg",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://0.0.0.0/a.jpg",
        "https://[fd00::1]/a.jpg",
    ],
)
def test_a_link_to_a_non_public_address_is_refused_before_any_connection(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_connection(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a connection was opened")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    with pytest.raises(MediaFetchError, match="non-public address") as caught:
        LinkClient().download(url, lambda _data: None, limit=MB, chunk=1024)
    assert caught.value.cause == Cause.FORBIDDEN


def test_a_name_that_resolves_inside_the_network_is_refused(
    link_host: LinkHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    link_host.routes["/a.jpg"] = (200, {}, b"internal")
    real = socket.getaddrinfo

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "media.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = link_host.base_url.rsplit(":", 1)[1]
    with pytest.raises(MediaFetchError, match="non-public address"):
        LinkClient().download(
            f"http://media.example:{port}/a.jpg", lambda _d: None, limit=MB, chunk=64
        )
    assert link_host.seen == []


def test_the_connection_goes_to_the_address_that_was_checked(
    link_host: LinkHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One lookup: the socket opens to the checked address, ``Host`` names the link's host."""
    link_host.routes["/a.jpg"] = (200, {}, b"bytes")
    real = socket.getaddrinfo
    lookups: list[str] = []

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real("127.0.0.1" if host == "media.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = link_host.base_url.rsplit(":", 1)[1]
    got: list[bytes] = []
    size = LinkClient(allow_private=True).download(
        f"http://media.example:{port}/a.jpg", got.append, limit=MB, chunk=64
    )
    assert (size, b"".join(got)) == (5, b"bytes")
    # The name is looked up once; the socket is opened to the literal address it gave.
    assert [host for host in lookups if host != "127.0.0.1"] == ["media.example"]
    assert link_host.seen[0][1]["host"] == f"media.example:{port}"
