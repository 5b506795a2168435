"""A timestamp authority on loopback, built on OpenSSL's own responder (``openssl ts -reply``).

For tests and the demo only: :class:`LocalTsa` makes a throw-away root CA and a TSA certificate
(critical ``timeStamping`` extended key usage) with the ``openssl`` command, and answers RFC 3161
requests over HTTP by handing each one to ``openssl ts -reply``. Nothing here is trusted outside
the directory it was made in; real deployments use a public or qualified TSA (``docs/anchors.md``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from coexarchive.errors import ConfigError

__all__ = ["LocalTsa"]

_EXTENSIONS = """
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[tsa_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[req]
distinguished_name = dn
[dn]
"""

_TS_CONFIG = """
[tsa]
default_tsa = tsa_config
[tsa_config]
serial = {serial}
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
_MAX_QUERY = 16 * 1024


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise ConfigError("the local TSA needs the `openssl` command on PATH")
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace')}")


class LocalTsa:
    """A loopback RFC 3161 authority; ``stop()`` it, or use it as a context manager."""

    def __init__(self, directory: Path | None = None, *, name: str = "local-tsa") -> None:
        self.name = name
        self._owned = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="coexarchive-tsa-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0
        self._make_certificates()

    @property
    def roots_file(self) -> Path:
        return self.directory / "root.pem"

    def _make_certificates(self) -> None:
        d = self.directory
        if (d / "tsa.pem").exists():
            return
        (d / "ext.cnf").write_text(_EXTENSIONS)
        (d / "ts.cnf").write_text(_TS_CONFIG.format(serial=d / "serial"))
        (d / "serial").write_text("01\n")
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
        _openssl(
            "req", "-x509", *ec, "-keyout", "root.key", "-out", "root.pem", "-days", "3650",
            "-subj", f"/CN={self.name} TEST-ONLY root", "-config", "ext.cnf",
            "-extensions", "ca_ext", cwd=d,
        )  # fmt: skip
        _openssl(
            "req", "-new", *ec, "-keyout", "tsa.key", "-out", "tsa.csr",
            "-subj", f"/CN={self.name} TEST-ONLY", "-config", "ext.cnf", cwd=d,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", "tsa.csr", "-CA", "root.pem", "-CAkey", "root.key",
            "-set_serial", "2", "-out", "tsa.pem", "-days", "3650", "-extfile", "ext.cnf",
            "-extensions", "tsa_ext", cwd=d,
        )  # fmt: skip

    def reply(self, query: bytes) -> bytes:
        """The DER response ``openssl ts -reply`` gives to a DER request."""
        with self._lock, tempfile.TemporaryDirectory(dir=self.directory) as work:
            (Path(work) / "q.tsq").write_bytes(query)
            _openssl(
                "ts", "-reply", "-config", str(self.directory / "ts.cnf"),
                "-queryfile", "q.tsq", "-inkey", str(self.directory / "tsa.key"),
                "-signer", str(self.directory / "tsa.pem"), "-out", "r.tsr", cwd=Path(work),
            )  # fmt: skip
            self.requests += 1
            return (Path(work) / "r.tsr").read_bytes()

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 (``port`` 0 picks a free one); the URL to configure."""
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                kind = self.headers.get("Content-Type", "")
                if kind != "application/timestamp-query" or not 0 < length <= _MAX_QUERY:
                    self.send_error(400)
                    return
                try:
                    body = tsa.reply(self.rfile.read(length))
                except ConfigError:
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the TSA first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def write_tsa_file(self, path: Path) -> Path:
        """A TSA file (see ``coexarchive.anchor.tsa``) naming this authority."""
        path.write_text(f"{self.name} {self.url} {self.roots_file}\n")
        return path

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.stop()
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalTsa:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
