"""``coexarchive witness serve``: a C2SP ``tlog-witness`` another party runs.

It knows a set of logs (``<origin> <verifier key>`` lines: the archive heads origin and the
archive's key), keeps the latest checkpoint it cosigned per origin in a state directory (one JSON
file per origin, replaced atomically under a lock, fsync'd before it answers), and answers
``POST /add-checkpoint`` exactly as the protocol says:

- 400 malformed body, or old size larger than the checkpoint's;
- 404 unknown origin; 403 no signature from a key it trusts for that origin;
- 409 ``text/x.tlog.size`` with its latest size when ``old`` is not that size, or when the sizes
  are equal and the roots are not;
- 422 when the consistency proof from ``old`` does not verify;
- 200 with its ``cosignature/v1`` line, after persisting the new state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from coexarchive._internal.clock import now_ms
from coexarchive.anchor.witness import SIZE_CONTENT_TYPE, parse_request
from coexarchive.errors import ConfigError, FormatError, ProofError, SignatureError
from coexarchive.seal.checkpoint import Checkpoint, open_note
from coexarchive.seal.cosignature import CosignerKey, cosign
from coexarchive.seal.keys import Signer, TrustStore, Verifier
from coexarchive.seal.merkle import verify_consistency

__all__ = ["WitnessServer", "WitnessState", "load_logs"]

_MAX_REQUEST = 64 * 1024


def load_logs(path: Path) -> dict[str, TrustStore]:
    """``<origin> <verifier key>`` lines (an origin may have several keys)."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"witness logs file {path}: {exc.strerror or exc}") from None
    keys: dict[str, list[Verifier]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ConfigError(f"{path} line {number}: expected '<origin> <verifier key>'")
        keys.setdefault(parts[0], []).append(Verifier.parse(parts[1]))
    if not keys:
        raise ConfigError(f"witness logs file {path} names no log")
    return {origin: TrustStore(verifiers) for origin, verifiers in keys.items()}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class WitnessState:
    """The latest cosigned (size, root) per origin, on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, origin: str) -> Path:
        return self.directory / (hashlib.sha256(origin.encode()).hexdigest()[:32] + ".json")

    def get(self, origin: str) -> tuple[int, bytes] | None:
        path = self._path(origin)
        if not path.exists():
            return None
        data = json.loads(path.read_text("utf-8"))
        if data["origin"] != origin:
            raise ConfigError(f"witness state {path} belongs to another origin")
        return int(data["size"]), base64.b64decode(data["root"])

    def put(self, origin: str, size: int, root: bytes, note: bytes) -> None:
        path = self._path(origin)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        record = {
            "origin": origin,
            "size": size,
            "root": base64.b64encode(root).decode(),
            "checkpoint": note.decode("utf-8"),
        }
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(record, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class WitnessServer:
    """The witness's logic, independent of HTTP (``handle``), plus a loopback HTTP server."""

    def __init__(self, signer: Signer, logs: dict[str, TrustStore], state: WitnessState) -> None:
        self.signer = signer
        self.logs = logs
        self.state = state
        # Checking the old size and persisting the new state happen under one lock (the spec's
        # race: two requests must never roll the witness back).
        self._lock = threading.Lock()
        self._http: ThreadingHTTPServer | None = None

    @property
    def key(self) -> CosignerKey:
        return CosignerKey.of(self.signer)

    def handle(self, body: bytes) -> Answer:
        try:
            old, proof, note = parse_request(body)
            text, _ = _split_text(note)
            checkpoint = Checkpoint.parse(text)
        except (FormatError, SignatureError) as exc:
            return Answer(400, f"malformed request: {exc}\n".encode())
        trust = self.logs.get(checkpoint.origin)
        if trust is None:
            return Answer(404, b"unknown log origin\n")
        try:
            open_note(note, trust)
        except (SignatureError, FormatError):
            return Answer(403, b"no valid signature from a key trusted for this origin\n")
        if old > checkpoint.size:
            return Answer(400, b"old size is larger than the checkpoint size\n")
        with self._lock:
            latest = self.state.get(checkpoint.origin)
            latest_size, latest_root = latest if latest else (0, b"")
            if old != latest_size:
                return Answer(409, f"{latest_size}\n".encode(), SIZE_CONTENT_TYPE)
            if old == checkpoint.size and old and latest_root != checkpoint.root_hash:
                return Answer(409, f"{latest_size}\n".encode(), SIZE_CONTENT_TYPE)
            if old == 0 and proof:
                return Answer(422, b"the proof from size 0 must be empty\n")
            if 0 < old < checkpoint.size:
                try:
                    verify_consistency(
                        old, checkpoint.size, latest_root, checkpoint.root_hash, proof
                    )
                except (ProofError, ValueError):
                    return Answer(422, b"the consistency proof does not verify\n")
            elif old == checkpoint.size and proof:
                return Answer(422, b"no proof is needed between equal sizes\n")
            self.state.put(checkpoint.origin, checkpoint.size, checkpoint.root_hash, note)
        return Answer(200, cosign(text, self.signer, now_ms() // 1000))

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        witness = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.path.rstrip("/") != "/add-checkpoint":
                    answer = Answer(404, b"not found\n")
                elif not 0 < length <= _MAX_REQUEST:
                    answer = Answer(400, b"missing or oversized body\n")
                else:
                    answer = witness.handle(self.rfile.read(length))
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._http = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._http is not None, "start() the witness first"
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self, host: str, port: int) -> None:
        self.start(host, port)
        assert self._http is not None
        threading.Event().wait()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def _split_text(note: bytes) -> tuple[bytes, bytes]:
    split = note.rfind(b"\n\n")
    if split < 0:
        raise FormatError("checkpoint has no signature block")
    return note[: split + 1], note[split + 2 :]
