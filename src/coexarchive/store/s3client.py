"""S3 client settings, error classification and bucket setup, shared by the store and the server.

:class:`S3Timeouts` bounds every request; :func:`connection_problem` and :func:`describe`
turn botocore failures into one line without credentials; :func:`create_locked_bucket` and
:func:`require_object_lock` refuse a bucket that cannot keep a lock.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from coexarchive.errors import ConfigError, RetentionError, StorageError

MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
NO_LOCK_CONFIG = frozenset(
    {"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"}
)
NO_LEGAL_HOLD = NO_LOCK_CONFIG | {"NoSuchObjectLegalHold"}
REFUSED = frozenset({"AccessDenied", "InvalidRequest", "InvalidArgument"})
INVALID = frozenset({"InvalidRequest", "InvalidArgument"})
BAD_CREDENTIALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})
PRECONDITION_FAILED = frozenset({"PreconditionFailed", "412"})
CONDITIONAL_CONFLICT = frozenset({"ConditionalRequestConflict", "409"})


def new_session(**options: Any) -> boto3.session.Session:
    """A new boto3 session (its own credential resolution) reading botocore's data files through
    one loader per process and data path.

    Building a client parses the S3 service model and the endpoint rules, 60–170 ms of CPU each
    time with a fresh loader and about 13 ms with a warm one; every pipeline step that opens a
    store pays it in every worker. The loader caches only those packaged files (and any under
    ``AWS_DATA_PATH``, which keys the cache), never credentials or configuration, which each
    session still resolves itself.
    """
    core = botocore.session.Session()
    core.register_component("data_loader", _shared_loader(core.get_config_variable("data_path")))
    return boto3.session.Session(botocore_session=core, **options)


_LOADERS: dict[str | None, botocore.loaders.Loader] = {}
_LOADERS_LOCK = threading.Lock()


def _shared_loader(data_path: str | None) -> botocore.loaders.Loader:
    with _LOADERS_LOCK:
        loader = _LOADERS.get(data_path)
        if loader is None:
            loader = _LOADERS[data_path] = botocore.loaders.create_loader(data_path)
        return loader


@dataclass(frozen=True)
class S3Timeouts:
    """How long one S3 request may take, and how often a failed one is retried.

    ``connect`` bounds opening a connection, ``read`` each wait for the server's answer (per
    socket read, so large objects stream without limit), ``max_attempts`` counts the first try.
    Retries use botocore's ``standard`` mode: exponential back-off with jitter, on throttling,
    5xx answers and connection errors. A server that accepts connections but never answers fails
    after about ``max_attempts * read`` seconds; a closed port within a second or two.
    """

    connect: float = 5.0
    read: float = 10.0
    max_attempts: int = 3

    ENV: ClassVar[Mapping[str, str]] = {
        "connect": "COEXARCHIVE_S3_CONNECT_TIMEOUT",
        "read": "COEXARCHIVE_S3_READ_TIMEOUT",
        "max_attempts": "COEXARCHIVE_S3_MAX_ATTEMPTS",
    }

    def __post_init__(self) -> None:
        for name, value in (("connect", self.connect), ("read", self.read)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"S3 {name} timeout must be a positive number of seconds, got {value!r} "
                    f"(option --s3-{name}-timeout or {self.ENV[name]})"
                )
        if not 1 <= self.max_attempts <= 20:
            raise ConfigError(
                f"S3 max attempts must be within 1..20, got {self.max_attempts!r} "
                f"(option --s3-max-attempts or {self.ENV['max_attempts']})"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Timeouts:
        """Defaults, overridden by ``COEXARCHIVE_S3_*`` variables that are set and non-empty."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, variable in cls.ENV.items():
            text = env.get(variable, "").strip()
            if not text:
                continue
            try:
                values[name] = int(text) if name == "max_attempts" else float(text)
            except ValueError:
                raise ConfigError(f"{variable}={text!r} is not a number") from None
        return cls(**values)

    def botocore_config(self) -> Config:
        return Config(
            connect_timeout=self.connect,
            read_timeout=self.read,
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
        )


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def describe(error: ClientError | BotoCoreError) -> str:
    """Code and message from the server; never request headers, so never credentials."""
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message", "")
        return f"{error_code(error)}: {message}" if message else error_code(error)
    return type(error).__name__ + ": " + str(error)


def endpoint_of(client: Any) -> str:
    """Where ``client`` sends requests, for messages (no credentials in it)."""
    return str(getattr(client.meta, "endpoint_url", None) or "AWS S3")


def connection_problem(error: BaseException, endpoint: str, during: str = "") -> str | None:
    """One line for an S3 server that cannot be reached or did not answer; None for others."""
    at = f"{endpoint} ({during})" if during else endpoint
    local = (urlsplit(endpoint).hostname or "") in ("127.0.0.1", "localhost", "::1")
    start = (
        "start it with `coexarchive s3 --background` or point COEXARCHIVE_ENDPOINT_URL at yours"
        if local
        else "check the endpoint (COEXARCHIVE_ENDPOINT_URL, --endpoint-url) and the network"
    )
    if isinstance(error, ReadTimeoutError):
        return (
            f"S3 at {at} accepted the connection but did not answer in time "
            "(read timeout on every attempt); the server is stuck or overloaded: check it (the "
            "embedded server logs to weed.log in its data directory) or raise "
            f"{S3Timeouts.ENV['read']}"
        )
    if isinstance(error, ConnectTimeoutError):
        return f"cannot reach S3 at {at}: connecting timed out; {start}"
    if isinstance(error, EndpointConnectionError | ConnectionClosedError):
        return f"cannot reach S3 at {at}: nothing answers there; {start}"
    if isinstance(error, NoCredentialsError):
        return (
            f"no S3 credentials for {at}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            'or AWS_PROFILE (for the embedded server: eval "$(coexarchive s3 --env)")'
        )
    return None


def missing_bucket(bucket: str, endpoint: str) -> str:
    return (
        f"bucket {bucket!r} does not exist at {endpoint}: create it with Object Lock "
        f"(`coexarchive s3 --bucket {bucket}` for the embedded server; infra/README.md on AWS) "
        "or set COEXARCHIVE_BUCKET to the archive's bucket"
    )


def create_locked_bucket(client: Any, bucket: str) -> None:
    """Create ``bucket`` with Object Lock (and so versioning) enabled; a no-op if it exists.

    An existing bucket without Object Lock is refused with :class:`RetentionError`: S3 cannot add
    the lock to a bucket that has objects on every server this project supports, and an archive in
    an unlocked bucket would promise what it cannot keep.
    """
    args: dict[str, Any] = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}
    region = client.meta.region_name
    if region and region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**args)
    except ClientError as error:
        # SeaweedFS answers BucketAlreadyExists for a bucket of ours created with other settings.
        if error_code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise StorageError(f"cannot create bucket {bucket!r}: {describe(error)}") from None
    except BotoCoreError as error:
        problem = connection_problem(error, endpoint_of(client))
        raise StorageError(
            problem or f"cannot create bucket {bucket!r}: {describe(error)}"
        ) from None
    require_object_lock(client, bucket)


def require_object_lock(client: Any, bucket: str) -> None:
    """RetentionError unless ``bucket`` exists with Object Lock enabled."""
    unlocked = (
        f"bucket {bucket!r} at {endpoint_of(client)} exists without Object Lock, so nothing in it "
        "could be locked; use another bucket name (`--bucket NAME` and COEXARCHIVE_BUCKET=NAME), "
        "or on the embedded server start over with an empty --data-dir if the bucket holds "
        "nothing you need"
    )
    try:
        config = client.get_object_lock_configuration(Bucket=bucket)
    except BotoCoreError as error:
        problem = connection_problem(error, endpoint_of(client))
        detail = f"cannot read bucket {bucket!r}: {describe(error)}"
        raise StorageError(problem or detail) from None
    except ClientError as error:
        if error_code(error) == "NoSuchBucket":
            raise StorageError(missing_bucket(bucket, endpoint_of(client))) from None
        if error_code(error) not in NO_LOCK_CONFIG:
            raise StorageError(
                f"bucket {bucket!r} exists but cannot be used: {describe(error)}"
            ) from None
        raise RetentionError(unlocked) from None
    if config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
        raise RetentionError(unlocked)
