"""A real OpenID Provider (npm ``oidc-provider``) on loopback, and a user agent for its pages."""

from __future__ import annotations

import html
import json
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

JS = Path(__file__).parent / "js"
SECRET = "console-client-secret-of-the-test-provider"
OTHER_SECRET = "another-client-secret-of-the-test-provider"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Provider:
    issuer: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_provider(redirect_uris: list[str], post_logout: list[str]) -> Provider:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "oidc-provider").exists():
        pytest.fail("the OpenID Provider needs node and `make console-js` (npm ci)")
    port = free_port()
    clients = [
        {
            "client_id": "console",
            "client_secret": SECRET,
            "redirect_uris": redirect_uris,
            "post_logout_redirect_uris": post_logout,
        },
        {"client_id": "other-app", "client_secret": OTHER_SECRET, "redirect_uris": redirect_uris},
    ]
    process = subprocess.Popen(
        [node, str(JS / "provider.mjs"), str(port), json.dumps(clients)],
        cwd=JS,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    line = b""
    while b"listening" not in line:
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            process.wait(10)
            process.stdout.close()
            raise RuntimeError("the OpenID Provider did not start")
        line = process.stdout.readline()
    return Provider(f"http://127.0.0.1:{port}", process)


def _form(page: str, base: str) -> tuple[str, dict[str, str]]:
    action = re.search(r'<form[^>]*action="([^"]+)"', page)
    assert action is not None, page[:500]
    fields = dict(
        re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page)
    )
    return urljoin(base, html.unescape(action.group(1))), fields


def authorize(authorization_url: str, user: str) -> str:
    """Sign ``user`` in at the provider and consent; returns the redirect back to the client."""
    with requests.Session() as agent:
        return _authorize(agent, authorization_url, user)


def _authorize(agent: requests.Session, authorization_url: str, user: str) -> str:
    response = agent.get(authorization_url, allow_redirects=True, timeout=10)
    for _ in range(4):
        action, fields = _form(response.text, response.url)
        if fields.get("prompt") == "login":
            fields.update({"login": user, "password": "any"})
        response = agent.post(action, data=fields, allow_redirects=False, timeout=10)
        while response.is_redirect:
            target = urljoin(response.url, response.headers["location"])
            if "code=" in target or "error=" in target:
                return target
            response = agent.get(target, allow_redirects=False, timeout=10)
    raise AssertionError("the provider never sent the browser back")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
