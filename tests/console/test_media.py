"""The console shows attachments: images inline, players, documents as links; each one is sent
only to a signed-in role, after its view is sealed, and only if it still hashes as sealed."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from console._console import USERS, Harness, build, copy_of, demo_store, with_media

from coexarchive.query.views import ACCESS_LOG_CHAIN
from coexarchive.store import MemoryStore
from coexarchive.supervision.register import read_chain

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pristine() -> MemoryStore:
    return with_media(demo_store())


@pytest.fixture
def harness(pristine: MemoryStore, tmp_path: Path) -> Harness:
    return build(copy_of(pristine), tmp_path, with_index=False)


def an_image(harness: Harness) -> tuple[str, str, str]:
    """(chain, customer, sha256) of a conversation holding a stored image."""
    from coexarchive.query.views import ArchiveCatalog, connect

    catalog = ArchiveCatalog(harness.store)
    catalog.refresh()
    row = (
        connect(catalog)
        .execute(
            "SELECT chain_id, customer_id, sha256 FROM media "
            "WHERE status = 'stored' AND mime_type LIKE 'image/%' ORDER BY chain_id, seq LIMIT 1"
        )
        .fetchone()
    )
    assert row is not None, "the demo archive holds no stored image"
    return str(row[0]), str(row[1]), str(row[2])


def test_conversation_shows_the_image_inline_and_serves_its_bytes(harness: Harness) -> None:
    chain, customer, sha = an_image(harness)
    client = harness.sign_in("rita")
    page = client.get("/conversation", params={"chain": chain, "customer": customer})
    assert page.status_code == 200
    srcs = re.findall(r'<img src="(/media/[0-9a-f]{64}\?[^"]+)"', page.text)
    assert any(sha in src for src in srcs)
    assert "media-src 'self'" in page.headers["content-security-policy"]
    before = len(read_chain(harness.store, ACCESS_LOG_CHAIN))
    got = client.get(f"/media/{sha}", params={"chain": chain, "customer": customer})
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == sha
    assert got.headers["content-type"].startswith("image/")
    assert got.headers["x-content-type-options"] == "nosniff"
    entries = read_chain(harness.store, ACCESS_LOG_CHAIN)[before:]
    assert [e.detail["report"] for e in entries] == ["attachment"]
    assert entries[0].detail["who"] == "rita" and entries[0].detail["params"]["sha256"] == sha


@pytest.mark.parametrize("user", sorted(USERS))
def test_every_role_may_see_an_attachment_it_may_see_the_conversation_of(
    harness: Harness, user: str
) -> None:
    chain, customer, sha = an_image(harness)
    got = harness.sign_in(user).get(f"/media/{sha}", params={"chain": chain, "customer": customer})
    assert got.status_code == 200


def test_nobody_signed_out_gets_an_attachment(harness: Harness) -> None:
    chain, customer, sha = an_image(harness)
    got = harness.client().get(
        f"/media/{sha}", params={"chain": chain, "customer": customer}, follow_redirects=False
    )
    assert got.status_code in (302, 303, 401, 403)
    assert hashlib.sha256(got.content).hexdigest() != sha


def test_an_attachment_of_another_customer_is_not_sent(harness: Harness) -> None:
    chain, customer, sha = an_image(harness)
    got = harness.sign_in("rita").get(
        f"/media/{sha}", params={"chain": chain, "customer": customer + "0"}
    )
    assert got.status_code == 400 and hashlib.sha256(got.content).hexdigest() != sha


@pytest.mark.parametrize("name", ["0" * 64, "../../etc/passwd", "A" * 64, "media/v1/sha256=x"])
def test_unknown_or_malformed_names_send_nothing(harness: Harness, name: str) -> None:
    chain, customer, _sha = an_image(harness)
    got = harness.sign_in("rita").get(
        f"/media/{name}", params={"chain": chain, "customer": customer}
    )
    assert got.status_code in (400, 404)


def test_an_altered_attachment_is_refused_not_sent(harness: Harness) -> None:
    chain, customer, sha = an_image(harness)
    key = f"media/v1/sha256={sha}"
    data = harness.store.unsafe_objects[key]
    harness.store.unsafe_objects[key] = data[:-1] + bytes([data[-1] ^ 1])
    got = harness.sign_in("rita").get(
        f"/media/{sha}", params={"chain": chain, "customer": customer}
    )
    assert got.status_code == 400
    assert data[:-1] not in got.content


def test_the_page_shows_a_thumbnail_linked_to_the_original(harness: Harness) -> None:
    chain, customer, sha = an_image(harness)
    client = harness.sign_in("rita")
    page = client.get("/conversation", params={"chain": chain, "customer": customer})
    links = re.findall(r'<a href="(/media/[0-9a-f]{64}\?[^"]+)"><img src="([^"]+)"', page.text)
    assert links
    for original, thumb in links:
        assert thumb == original + "&amp;size=thumb"
    params = {"chain": chain, "customer": customer}
    full = client.get(f"/media/{sha}", params=params)
    before = len(read_chain(harness.store, ACCESS_LOG_CHAIN))
    small = client.get(f"/media/{sha}", params={**params, "size": "thumb"})
    assert small.status_code == 200
    assert small.headers["content-type"] in ("image/jpeg", "image/png")
    assert 0 < len(small.content) < len(full.content)
    assert hashlib.sha256(small.content).hexdigest() != sha  # derived, not the evidence
    # Showing a thumbnail shows the attachment: its view is sealed like the original's.
    entries = read_chain(harness.store, ACCESS_LOG_CHAIN)[before:]
    assert [e.detail["report"] for e in entries] == ["attachment"]


def test_an_altered_attachment_gets_no_thumbnail_either(harness: Harness) -> None:
    chain, customer, sha = an_image(harness)
    key = f"media/v1/sha256={sha}"
    data = harness.store.unsafe_objects[key]
    harness.store.unsafe_objects[key] = data[:-1] + bytes([data[-1] ^ 1])
    got = harness.sign_in("rita").get(
        f"/media/{sha}", params={"chain": chain, "customer": customer, "size": "thumb"}
    )
    assert got.status_code == 400
    assert data[:-1] not in got.content


def test_a_non_image_attachment_gets_no_thumbnail(harness: Harness) -> None:
    from coexarchive.query.views import ArchiveCatalog, connect

    catalog = ArchiveCatalog(harness.store)
    catalog.refresh()
    row = (
        connect(catalog)
        .execute(
            "SELECT chain_id, customer_id, sha256 FROM media WHERE status = 'stored' "
            "AND mime_type NOT LIKE 'image/%' ORDER BY chain_id, seq LIMIT 1"
        )
        .fetchone()
    )
    assert row is not None, "the demo archive holds no stored non-image"
    chain, customer, sha = str(row[0]), str(row[1]), str(row[2])
    got = harness.sign_in("rita").get(
        f"/media/{sha}", params={"chain": chain, "customer": customer, "size": "thumb"}
    )
    assert got.status_code == 404
    assert got.headers["content-type"].startswith("text/plain")
