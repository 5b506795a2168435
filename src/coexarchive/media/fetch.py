"""The media fetch job: find attachments the archive references, fetch them, land receipts.

Where it runs (``docs/architecture.md``): beside ingest, never inside it. Ingest seals what the
webhooks say, including each attachment's media id and Meta's hash; this job reads the sealed
records, downloads each attachment once, stores it content-addressed and lands a signed receipt
in ``raw/`` (``source: "media"``). The next ingest run authenticates the receipt and seals it as
a ``media`` record in the message's chain. So fetching never stalls sealing, ingest stays the
one writer of every chain, and the sealing key signs only what ingest derived from
authenticated raw evidence.

A crash costs at most the receipts not yet landed: a re-run skips every attachment with a
receipt (landed or sealed), finds the bytes of the others already stored by their hash and does
not download them again; a receipt landed twice is one record (its identity is the media id).
"""

from __future__ import annotations

import hashlib
import io
import random
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from coexarchive._internal.clock import DAY_MS, now_ms
from coexarchive.commands import raw_retention
from coexarchive.errors import FormatError, MediaFetchError, ObjectMissingError
from coexarchive.media.graph import GraphClient, LinkClient
from coexarchive.media.objects import ensure_retention, store_media_file
from coexarchive.media.receipt import (
    FINAL_CAUSES,
    LINK_MEDIA_PREFIX,
    Cause,
    MediaRef,
    Outcome,
    Receipt,
    media_key,
    sha256_as_hex,
    size_limit,
)
from coexarchive.raw import (
    Delivery,
    RawLine,
    decode_landing,
    encode_landing,
    landing_key,
    parse_landing_key,
    signature_header,
)
from coexarchive.records import Kind
from coexarchive.retention import RetentionPolicy, add_years
from coexarchive.segments import Manifest, list_manifests
from coexarchive.store import layout
from coexarchive.store.base import ObjectStore, Retention

WINDOW_MS = 7 * DAY_MS  # Meta resolves a webhook's media id for 7 days
UPLOAD_WINDOW_MS = 30 * DAY_MS  # and media the business uploaded (an outbound send's id) for 30
RECEIVER_PREFIX = "media-"
REFERENCING_KINDS = frozenset(
    {Kind.MESSAGE, Kind.ECHO, Kind.HISTORY_MESSAGE, Kind.OUTBOUND, Kind.MESSAGE_EDIT}
)
_COLUMNS = ["chain_id", "kind", "record_id", "wamid", "media_id", "msg_type", "customer_id",
            "event_time", "received_time", "detail", "raw_key", "raw_line"]  # fmt: skip
LINK_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})


@dataclass(frozen=True)
class FetchOptions:
    concurrency: int = 4
    max_attempts: int = 5
    backoff_s: float = 0.5  # first retry's wait; doubles per attempt, with jitter
    backoff_cap_s: float = 60.0
    chunk_bytes: int = 256 * 1024
    receipts_per_object: int = 32
    spool_dir: Path | None = None


@dataclass
class FetchSummary:
    """What one run did; ``deferred`` are retried by the next run (inside the 7-day window)."""

    considered: int = 0
    stored: int = 0
    already_stored: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    receipts: int = 0
    receipt_objects: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0

    def lines(self) -> list[str]:
        lines = [
            f"attachments to fetch: {self.considered:,}",
            f"stored: {self.stored:,} new, {self.already_stored:,} already in the archive "
            f"({self.bytes_downloaded:,} bytes downloaded)",
        ]
        if self.failed:
            causes = ", ".join(f"{cause} {n}" for cause, n in sorted(self.failed.items()))
            lines.append(f"failed for good (sealed as media gaps): {causes}")
        if self.deferred:
            causes = ", ".join(f"{cause} {n}" for cause, n in sorted(self.deferred.items()))
            lines.append(f"to retry on the next run (inside the 7-day window): {causes}")
        lines.append(f"receipts landed: {self.receipts:,} in {len(self.receipt_objects)} object(s)")
        return lines


class ReceiptLanding:
    """Lands receipts as ``source: "media"`` raw objects, signed with the receipt secret."""

    def __init__(
        self,
        raw_store: ObjectStore,
        secret: bytes,
        *,
        per_object: int,
        clock: Callable[[], int],
        policy: RetentionPolicy,
    ) -> None:
        self.raw_store = raw_store
        self.policy = policy
        self.secret = secret
        self.per_object = per_object
        self.clock = clock
        # A fresh receiver id per run: its seq starts at 0 and stays contiguous (RAW_LANDING §6).
        self.receiver_id = f"{RECEIVER_PREFIX}{secrets.token_hex(8)}"
        self.next_seq = 0
        self.pending: list[Delivery] = []
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def add(self, receipt: Receipt) -> None:
        body = receipt.body()
        with self._lock:
            self.pending.append(
                Delivery(
                    self.receiver_id,
                    self.next_seq,
                    self.clock(),
                    "media",
                    {
                        "x-hub-signature-256": signature_header(self.secret, body),
                        "content-type": "application/json",
                        "user-agent": "coexarchive-media/1",
                    },
                    body,
                )
            )
            self.next_seq += 1
            if len(self.pending) >= self.per_object:
                self._flush()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        first = self.pending[0]
        key = landing_key(self.receiver_id, first.seq, first.received_at)
        # Receipts are raw evidence: locked like every raw object, from their landing date.
        retention = raw_retention(key, self.policy)
        self.raw_store.put(
            key, encode_landing(self.pending), retention=retention, content_type="application/zstd"
        )
        self.keys.append(key)
        self.pending = []


class MediaFetcher:
    """Fetches attachments with bounded concurrency and lands one receipt per final outcome."""

    def __init__(
        self,
        store: ObjectStore,
        raw_store: ObjectStore,
        client: GraphClient,
        *,
        policy: RetentionPolicy,
        receipt_secret: bytes,
        options: FetchOptions = FetchOptions(),
        clock: Callable[[], int] = now_ms,
        sleep: Callable[[float], None] = time.sleep,
        links: LinkClient | None = None,
    ) -> None:
        self.store = store
        self.raw_store = raw_store
        self.client = client
        # Sends by link are downloaded without any credential (never the Graph token).
        self.links = (
            links
            if links is not None
            else LinkClient(
                timeout_s=client.config.timeout_s, allow_private=client.config.on_loopback
            )
        )
        self.policy = policy
        self.options = options
        self.clock = clock
        self.sleep = sleep
        self.landing = ReceiptLanding(
            raw_store,
            receipt_secret,
            per_object=options.receipts_per_object,
            clock=clock,
            policy=policy,
        )
        self.summary = FetchSummary()
        self._pause_until = 0.0
        self._lock = threading.Lock()
        self._rng = random.Random()  # noqa: S311 (backoff jitter, not crypto)

    def run(self, refs: Sequence[MediaRef]) -> FetchSummary:
        """Fetch ``refs`` (see :func:`pending_refs`); stops at a fatal Graph error, keeping the
        receipts of what finished before it."""
        self.summary.considered = len(refs)
        try:
            return self._run(refs)
        finally:
            self.client.close()
            self.links.close()

    def _run(self, refs: Sequence[MediaRef]) -> FetchSummary:
        with ThreadPoolExecutor(max(1, self.options.concurrency), "media-fetch") as pool:
            futures: list[Future[None]] = [pool.submit(self._fetch_and_land, ref) for ref in refs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                pool.shutdown(wait=True, cancel_futures=True)
                self._finish()
                raise failed[0].exception()  # type: ignore[misc]
        self._finish()
        return self.summary

    def _finish(self) -> None:
        self.landing.flush()
        self.summary.receipt_objects = list(self.landing.keys)

    def _fetch_and_land(self, ref: MediaRef) -> None:
        receipt = self.fetch_one(ref)
        if receipt is not None:
            self.landing.add(receipt)
            with self._lock:
                self.summary.receipts += 1

    # -- one attachment -------------------------------------------------------------------------

    def fetch_one(self, ref: MediaRef) -> Receipt | None:
        """The final outcome for ``ref``, or None when it is to be retried on a later run."""
        last: MediaFetchError | None = None
        for attempt in range(1, self.options.max_attempts + 1):
            self._wait_for_pause()
            try:
                return self._attempt(ref, attempt)
            except MediaFetchError as error:
                if error.fatal:
                    raise
                cause = Cause(error.cause)
                if cause == Cause.NOT_FOUND and self._window_closed(ref):
                    cause = Cause.EXPIRED
                if cause in FINAL_CAUSES:
                    return self._failed(ref, cause, attempt)
                last = error
                if attempt < self.options.max_attempts:
                    self._back_off(error, cause, attempt)
        assert last is not None
        cause = Cause(last.cause)
        if self._window_closed(ref):
            return self._failed(ref, cause, self.options.max_attempts)
        with self._lock:
            self.summary.deferred[cause.value] += 1
        return None

    def _attempt(self, ref: MediaRef, attempt: int) -> Receipt:
        if ref.link is not None:
            return self._attempt_link(ref, attempt)
        info = self.client.resolve(ref.media_id)
        graph_hex = sha256_as_hex(info.unverified_sha256)
        advertised_hex = sha256_as_hex(ref.advertised_sha256)
        mime = info.mime_type or ref.mime_type or "application/octet-stream"
        limit = size_limit(ref.msg_type, mime, animated=ref.animated)
        if info.file_size is not None and info.file_size > limit:
            raise MediaFetchError(
                f"Graph reports {info.file_size} bytes, over the {limit}-byte limit",
                cause=Cause.TOO_LARGE,
            )
        retention = self._retention(ref)
        known = graph_hex or advertised_hex
        if known is not None and (graph_hex is None or advertised_hex in (None, graph_hex)):
            existing = self._existing(known, info.file_size, retention)
            if existing is not None:
                return self._stored(ref, attempt, known, existing, mime, info, "existing")
        with tempfile.NamedTemporaryFile(dir=self.options.spool_dir, prefix="media-") as spool:
            digest = hashlib.sha256()

            def write(piece: bytes) -> None:
                digest.update(piece)
                spool.write(piece)

            size = self.client.download(
                info.url, write, limit=limit, chunk=self.options.chunk_bytes
            )
            spool.flush()
            with self._lock:
                self.summary.bytes_downloaded += size
            actual = digest.hexdigest()
            for claimed, who in (
                (graph_hex, "Graph's sha256"),
                (advertised_hex, "the webhook's sha256"),
            ):
                if claimed is not None and claimed != actual:
                    raise MediaFetchError(f"bytes do not match {who}", cause=Cause.HASH_MISMATCH)
            if info.file_size is not None and size != info.file_size:
                raise MediaFetchError(
                    f"{size} bytes, Graph said {info.file_size}", cause=Cause.SIZE_MISMATCH
                )
            how = store_media_file(
                self.store,
                Path(spool.name),
                sha256_hex=actual,
                size=size,
                retention=retention,
                content_type=mime,
            )
        return self._stored(ref, attempt, actual, size, mime, info, how)

    def _attempt_link(self, ref: MediaRef, attempt: int) -> Receipt:
        """A send by link: download the URL itself (no Graph id, no Graph hash to check)."""
        assert ref.link is not None
        mime = ref.mime_type or "application/octet-stream"
        limit = size_limit(ref.msg_type, mime, animated=ref.animated)
        with tempfile.NamedTemporaryFile(dir=self.options.spool_dir, prefix="media-") as spool:
            digest = hashlib.sha256()

            def write(piece: bytes) -> None:
                digest.update(piece)
                spool.write(piece)

            size = self.links.download(ref.link, write, limit=limit, chunk=self.options.chunk_bytes)
            spool.flush()
            with self._lock:
                self.summary.bytes_downloaded += size
            actual = digest.hexdigest()
            how = store_media_file(
                self.store,
                Path(spool.name),
                sha256_hex=actual,
                size=size,
                retention=self._retention(ref),
                content_type=mime,
            )
        return self._stored(ref, attempt, actual, size, mime, None, how)

    def _existing(self, sha256_hex: str, file_size: int | None, retention: Retention) -> int | None:
        """The stored size when these bytes are already in the archive (then no download)."""
        key = media_key(sha256_hex)
        try:
            size = self.store.info(key).size
        except ObjectMissingError:
            return None
        if file_size is not None and size != file_size:
            return None
        ensure_retention(self.store, key, retention)
        return size

    def _stored(self, ref: MediaRef, attempt: int, sha256_hex: str, size: int, mime: str,
                info: object, how: str) -> Receipt:  # fmt: skip
        with self._lock:
            if how == "created":
                self.summary.stored += 1
            else:
                self.summary.already_stored += 1
        return Receipt(
            ref=ref,
            outcome=Outcome.STORED,
            fetched_at=self.clock(),
            attempts=attempt,
            sha256=sha256_hex,
            size=size,
            mime_type=mime,
            object_key=media_key(sha256_hex),
            graph_sha256=getattr(info, "unverified_sha256", None),
            graph_file_size=getattr(info, "file_size", None),
            stored=how,
        )

    def _failed(self, ref: MediaRef, cause: Cause, attempts: int) -> Receipt:
        with self._lock:
            self.summary.failed[cause.value] += 1
        return Receipt(
            ref=ref, outcome=Outcome.FAILED, fetched_at=self.clock(), attempts=attempts, cause=cause
        )

    def _retention(self, ref: MediaRef) -> Retention:
        """The lock of the referencing record's class, from when the archive captured it."""
        rule = self.policy.for_kind(ref.kind)
        captured = datetime.fromtimestamp(ref.captured_time // 1000, tz=UTC)
        return Retention(mode=rule.mode, retain_until=add_years(captured, rule.years))

    def _window_closed(self, ref: MediaRef) -> bool:
        window = UPLOAD_WINDOW_MS if ref.kind == Kind.OUTBOUND else WINDOW_MS
        return self.clock() - ref.captured_time >= window

    def _back_off(self, error: MediaFetchError, cause: Cause, attempt: int) -> None:
        if cause == Cause.URL_EXPIRED:
            return  # resolve again at once: a fresh URL is what is missing
        if error.retry_after is not None:
            delay = error.retry_after
        else:
            base = min(self.options.backoff_cap_s, self.options.backoff_s * 2 ** (attempt - 1))
            delay = base * (0.5 + self._rng.random() / 2)
        if cause == Cause.RATE_LIMITED:
            # Graph limits the whole app: every worker waits, not only the one that was told.
            with self._lock:
                self._pause_until = max(self._pause_until, time.monotonic() + delay)
            return
        self.sleep(delay)

    def _wait_for_pause(self) -> None:
        with self._lock:
            remaining = self._pause_until - time.monotonic()
        if remaining > 0:
            self.sleep(remaining)


# -- what to fetch ------------------------------------------------------------------------------


def pending_refs(store: ObjectStore, raw_store: ObjectStore) -> list[MediaRef]:
    """Every attachment the sealed records reference that has no receipt (landed or sealed).

    The records are read as hints of what to fetch: nothing here is signed from them. What a
    receipt says is checked again by ingest, and the bytes against Meta's hash.
    """
    refs: dict[tuple[str, str], MediaRef] = {}
    raw_cache: dict[str, list[RawLine]] = {}
    done: set[tuple[str, str]] = set(landed_receipts(raw_store))
    for chain_id in _chains(store):
        for key in list_manifests(store, chain_id):
            manifest = Manifest.from_bytes(store.get(key), key=key)
            if not (set(manifest.kinds) & (REFERENCING_KINDS | {Kind.MEDIA})):
                continue
            table = pq.read_table(io.BytesIO(store.get(manifest.segment.key)), columns=_COLUMNS)
            for row in table.to_pylist():
                media_id = row["media_id"]
                if not media_id and row["kind"] == Kind.OUTBOUND and row["wamid"]:
                    link_ref = _link_ref(raw_store, row, raw_cache)
                    if link_ref is not None:
                        refs.setdefault((link_ref.chain_id, link_ref.media_id), link_ref)
                    continue
                if not media_id:
                    continue
                if row["kind"] == Kind.MEDIA:
                    done.add((row["chain_id"], media_id))
                elif row["kind"] in REFERENCING_KINDS:
                    refs.setdefault((row["chain_id"], media_id), _ref(row))
    return [ref for key, ref in sorted(refs.items()) if key not in done]


def landed_receipts(raw_store: ObjectStore) -> Iterable[tuple[str, str]]:
    """(chain, media id) of every receipt landed in ``raw/`` (sealed or not yet)."""
    for key in raw_store.list(layout.RAW_PREFIX):
        parsed = parse_landing_key(key)
        if parsed is None or not parsed[1].startswith(RECEIVER_PREFIX):
            continue
        for line in decode_landing(raw_store.get(key), key=key):
            if line.delivery is None or line.delivery.source != "media":
                continue
            try:
                tree = orjson.loads(line.delivery.body)
                yield str(tree["phone_number_id"]), str(tree["media_id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue


def _chains(store: ObjectStore) -> list[str]:
    from coexarchive.verify.archive import chains_in

    return chains_in(store)


def _ref(row: dict[str, object]) -> MediaRef:
    media: dict[str, object] = {}
    try:
        detail = orjson.loads(str(row["detail"]))
        found = detail.get("media") if isinstance(detail, dict) else None
        media = found if isinstance(found, dict) else {}
    except orjson.JSONDecodeError:
        pass
    event_time = _ms(row["event_time"])
    received = row["received_time"]
    return MediaRef(
        chain_id=str(row["chain_id"]),
        media_id=str(row["media_id"]),
        record_id=str(row["record_id"]),
        wamid=_text(row["wamid"]),
        kind=str(row["kind"]),
        msg_type=_text(row["msg_type"]),
        mime_type=_text(media.get("mime_type")),
        advertised_sha256=_text(media.get("sha256")),
        captured_time=_ms(received) if received is not None else event_time,
        customer_id=_text(row["customer_id"]),
        filename=_text(media.get("filename")),
        animated=media.get("animated") is True,
    )


def _link_ref(
    raw_store: ObjectStore, row: dict[str, object], cache: dict[str, list[RawLine]]
) -> MediaRef | None:
    """The ref of an outbound send by ``link``, read from its capture in ``raw/``.

    The sealed record's detail may be encrypted (record version 2); the landed capture is the
    same evidence in the clear, and the record names it (``raw_key``, ``raw_line``).
    """
    msg_type, key, line = row["msg_type"], row["raw_key"], row["raw_line"]
    if msg_type not in LINK_TYPES or not isinstance(key, str) or not isinstance(line, int):
        return None
    if key not in cache:
        try:
            cache[key] = decode_landing(raw_store.get(key), key=key)
        except (ObjectMissingError, FormatError):
            cache[key] = []
    lines = cache[key]
    if not 0 <= line < len(lines) or lines[line].delivery is None:
        return None
    delivery = lines[line].delivery
    assert delivery is not None
    try:
        tree = orjson.loads(delivery.body)
        media = tree["request"][msg_type]
        link = media["link"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(link, str) or not link or "id" in media:
        return None
    received = row["received_time"]
    return MediaRef(
        chain_id=str(row["chain_id"]),
        media_id=f"{LINK_MEDIA_PREFIX}{row['wamid']}",
        record_id=str(row["record_id"]),
        wamid=_text(row["wamid"]),
        kind=str(row["kind"]),
        msg_type=str(msg_type),
        mime_type=None,
        advertised_sha256=None,
        captured_time=_ms(received) if received is not None else _ms(row["event_time"]),
        customer_id=_text(row["customer_id"]),
        filename=_text(media.get("filename")),
        link=link,
    )


def _ms(value: object) -> int:
    if isinstance(value, datetime):
        return (value - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, int):
        return value
    raise TypeError(f"not a time: {type(value).__name__}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
