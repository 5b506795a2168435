"""The local Graph media server behaves as Meta's media endpoints do, faults included."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from coexarchive.testing.graph import DEMO_GRAPH_TOKEN, Fault, GraphMediaServer, media_content

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {DEMO_GRAPH_TOKEN}"}
MINUTE = 60_000
DAY = 86_400_000


def resolve(
    server: GraphMediaServer, media_id: str, headers: dict[str, str] = AUTH
) -> httpx.Response:
    return httpx.get(f"{server.base_url}/{server.version}/{media_id}", headers=headers)


def test_resolve_then_download_gives_the_advertised_bytes(
    graph_server: GraphMediaServer, graph_clock
) -> None:
    item = graph_server.add("111", "image/jpeg", created_ms=graph_clock())
    answer = resolve(graph_server, "111").json()
    assert answer["sha256"] == item.sha256 and answer["file_size"] == item.size
    body = httpx.get(answer["url"], headers=AUTH).content
    assert hashlib.sha256(body).hexdigest() == item.sha256
    assert body == media_content("111", "image/jpeg")


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": DEMO_GRAPH_TOKEN}]
)
def test_bearer_token_is_required_for_both_calls(
    graph_server: GraphMediaServer, graph_clock, headers
) -> None:
    graph_server.add("111", "image/jpeg", created_ms=graph_clock())
    refused = resolve(graph_server, "111", headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == 190
    url = resolve(graph_server, "111").json()["url"]
    assert httpx.get(url, headers=headers).status_code == 401


def test_download_url_expires_after_five_minutes(
    graph_server: GraphMediaServer, graph_clock
) -> None:
    graph_server.add("111", "image/jpeg", created_ms=graph_clock())
    url = resolve(graph_server, "111").json()["url"]
    graph_clock.advance(5 * MINUTE - 1)
    assert httpx.get(url, headers=AUTH).status_code == 200
    graph_clock.advance(1)
    assert httpx.get(url, headers=AUTH).status_code == 404


def test_forged_download_url_is_refused(graph_server: GraphMediaServer, graph_clock) -> None:
    graph_server.add("111", "image/jpeg", created_ms=graph_clock())
    url = resolve(graph_server, "111").json()["url"]
    later = url.replace("exp=", "exp=9")
    assert httpx.get(later, headers=AUTH).status_code == 404


def test_media_id_answers_404_after_seven_days(graph_server: GraphMediaServer, graph_clock) -> None:
    graph_server.add("111", "image/jpeg", created_ms=graph_clock())
    graph_clock.advance(7 * DAY - 1)
    assert resolve(graph_server, "111").status_code == 200
    graph_clock.advance(1)
    gone = resolve(graph_server, "111")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == 100
    assert resolve(graph_server, "never-existed").status_code == 404


def test_queued_faults_answer_in_order_then_the_server_recovers(
    graph_server: GraphMediaServer, graph_clock
) -> None:
    item = graph_server.add("111", "image/jpeg", created_ms=graph_clock())
    graph_server.fail(
        "111",
        Fault("429", call="resolve", retry_after=7),
        Fault("rate_code", call="resolve"),
        Fault("5xx", call="resolve", status=502),
        Fault("truncated"),
        Fault("bad_hash"),
    )
    limited = resolve(graph_server, "111")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    coded = resolve(graph_server, "111")
    assert coded.status_code == 400 and json.loads(coded.content)["error"]["code"] == 80007
    assert resolve(graph_server, "111").status_code == 502
    url = resolve(graph_server, "111").json()["url"]
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url, headers=AUTH)
    tampered = httpx.get(url, headers=AUTH).content
    assert len(tampered) == item.size and hashlib.sha256(tampered).hexdigest() != item.sha256
    assert hashlib.sha256(httpx.get(url, headers=AUTH).content).hexdigest() == item.sha256
    assert graph_server.calls("111", "resolve") == 4 and graph_server.calls("111") == 3
