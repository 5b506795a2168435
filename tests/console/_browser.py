"""The console served by uvicorn on loopback, for the browser tests."""

from __future__ import annotations

import threading
import time

import uvicorn
from console._console import Harness
from console._oidc import free_port


class Served:
    def __init__(self, harness: Harness, port: int | None = None) -> None:
        self.harness = harness
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(harness.app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the console did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
