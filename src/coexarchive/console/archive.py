"""What the console asks of the archive, through the code the CLI uses.

Every read goes through :class:`~coexarchive.query.session.AuditSession`,
:class:`~coexarchive.search.service.Searcher` or an explicit access-log entry, and each of them
seals the entry (who, what, the record ids returned, why) *before* the result is returned, so a
page is rendered only from results whose viewing is already in the log. Every change goes
through the supervision queue, the hold register or the exporter, signed with the console's
service key. No rule is implemented twice: this module only wires them to a signed-in user.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import pyarrow as pa

from coexarchive.archive_head import HeadWriter
from coexarchive.errors import ConfigError, StorageError, VerificationError
from coexarchive.export.bundle import ExportRequest, Selection, export_bundle
from coexarchive.export.holds import HoldRegister, HoldScope, active_holds, read_register
from coexarchive.query.access_log import AccessEntry, AccessLog
from coexarchive.query.reports import REPORTS, Params
from coexarchive.query.session import AuditSession, QueryResult
from coexarchive.query.views import ArchiveCatalog, Window
from coexarchive.retention import RetentionPolicy
from coexarchive.seal.keys import Signer, TrustStore
from coexarchive.seal.personal import KeyLookup
from coexarchive.search.index import SearchIndex
from coexarchive.search.service import Searcher, SearchResult
from coexarchive.segments import Manifest
from coexarchive.store.base import ObjectStore
from coexarchive.supervision import queue as review_queue
from coexarchive.supervision.register import Sealer
from coexarchive.verify import verify_archive

__all__ = ["ConsoleArchive", "Viewer"]

# A conversation page shows at most 500 messages and the access log page the newest 200 entries.
_BUNDLE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,120}\.zip$")

FLAGS_BY_WEEK_SQL: Final = """
SELECT CAST(date_trunc('week', event_time) AS DATE) AS week, flag, count(*) AS records
FROM flags GROUP BY ALL ORDER BY week, flag
"""
INGEST_SQL: Final = """
SELECT count(*) AS records, max(received_time) AS last_received, max(event_time) AS last_event,
       count(*) FILTER (WHERE list_contains(flags, 'capture_gap')) AS capture_gaps,
       count(*) FILTER (WHERE list_contains(flags, 'status_without_message')) AS status_gaps
FROM records WHERE kind <> 'assessment'
"""
# The transcript report's rows, with each message's latest delivery status beside it.
CONVERSATION_SQL: Final = """
SELECT m.event_time, m.chain_id, m.seq, m.record_id, m.kind, m.origin, m.direction,
       m.customer_id, m.wamid, m.msg_type, m.text, m.template_name, m.template_status,
       m.flags, m.context_wamid, m.ref_record_id, m.media_id,
       m.detail, s.status AS delivery_status,
       a.status AS media_status, a.sha256 AS media_sha256, a.mime_type AS media_mime,
       a.size AS media_size
FROM messages m
LEFT JOIN (SELECT chain_id, wamid, arg_max(status, (event_time, seq)) AS status
           FROM records
           WHERE kind = 'status' AND chain_id = $chain
             AND (customer_id = $customer OR customer_id IS NULL)
           GROUP BY chain_id, wamid) s
  ON m.chain_id = s.chain_id AND m.wamid = s.wamid
LEFT JOIN (SELECT chain_id, ref_record_id, arg_max(status, seq) AS status,
                  arg_max(sha256, seq) AS sha256, arg_max(mime_type, seq) AS mime_type,
                  arg_max(size, seq) AS size
           FROM media WHERE chain_id = $chain
           GROUP BY chain_id, ref_record_id) a
  ON m.chain_id = a.chain_id AND m.record_id = a.ref_record_id
WHERE m.customer_id = $customer AND m.chain_id = $chain
ORDER BY m.event_time, m.seq
LIMIT 500
"""
# One stored attachment of the customer's conversation, by its sealed SHA-256.
ATTACHMENT_SQL: Final = """
SELECT chain_id, seq, record_id, mime_type, size, sha256, object_key
FROM media
WHERE chain_id = $chain AND customer_id = $customer AND sha256 = $sha256 AND status = 'stored'
ORDER BY seq
LIMIT 1
"""
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
# Types a browser may show inline; anything else is sent as a download.
INLINE_TYPES: Final = re.compile(
    r"image/(jpeg|png|gif|webp)|audio/(ogg|mpeg|mp4|aac|amr)|video/(mp4|3gpp)"
)
ACCESS_SQL: Final = """
SELECT event_time, seq, who, report, sql, params, rows
FROM access_log
WHERE ($who = '' OR who = $who) AND ($text = '' OR contains(lower(sql || ' ' || CAST(params AS
      VARCHAR)), lower($text)))
ORDER BY seq DESC LIMIT 200
"""


class _SerialAccessLog(AccessLog):
    """The access log, appended to by one thread at a time.

    The writer keeps the chain head between appends; the console's request threads share it
    and take turns, instead of racing for the same seq and retrying (a loser of five races in
    a row would have its page refused). Other processes appending at once still race safely.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turn = threading.Lock()

    def append(self, entry: AccessEntry, *, now_ms: int) -> Manifest:
        with self._turn:
            return super().append(entry, now_ms=now_ms)


@dataclass(frozen=True)
class Viewer:
    """Who is looking, as the console authenticated them, and why (optional)."""

    user: str
    method: str  # "local" or "oidc"
    reason: str | None = None

    def context(self) -> dict[str, Any]:
        context: dict[str, Any] = {"via": "console", "sign_in": self.method}
        if self.reason:
            context["reason"] = self.reason
        return context


@dataclass
class Verification:
    """The outcome of the last "verify now", kept while the console runs."""

    at_ms: int
    by: str
    ok: bool
    summary: str


@dataclass
class Conversation:
    chain: str
    customer: str
    rows: list[dict[str, Any]]
    hits: dict[int, list[review_queue.HitState]]
    access_seq: int
    proof: str | None = None
    proven: bool = False


@dataclass
class Overview:
    head: dict[str, Any] | None
    chains: list[dict[str, Any]]
    ingest: dict[str, Any]
    flags_by_week: list[dict[str, Any]]
    backlog: list[dict[str, Any]]
    open_hits: int
    verification: Verification | None
    access_seqs: list[int] = field(default_factory=list)


class ConsoleArchive:
    """One archive as the console sees it; thread-safe (Starlette runs handlers in threads)."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        trust: TrustStore,
        signer: Signer,
        archive_name: str,
        policy: RetentionPolicy | None = None,
        index_dir: Path | None = None,
        archive_identity: str | None = None,
        export_dir: Path,
        clock: Callable[[], int],
        keys: KeyLookup | None = None,
    ) -> None:
        self.store = store
        # Opens personal content sealed encrypted (record version 2) in what a page shows.
        self.keys = keys
        self.trust = trust
        self.signer = signer
        self.archive_name = archive_name
        self.policy = policy
        self.index_dir = index_dir
        self.archive_identity = archive_identity
        self.export_dir = export_dir
        self.clock = clock
        self.access_log = _SerialAccessLog(
            store, signer=signer, archive_name=archive_name, policy=policy, trust=trust
        )
        self.sealer = Sealer(
            store, signer=signer, archive_name=archive_name, policy=policy, trust=trust
        )
        self.holds = HoldRegister(
            store, signer=signer, archive_name=archive_name, policy=policy, trust=trust
        )
        self.last_verification: Verification | None = None
        self._sessions: dict[str, tuple[threading.Lock, AuditSession]] = {}
        self._lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _session(self, viewer: Viewer) -> Iterator[AuditSession]:
        """The viewer's own audit session (one DuckDB connection, used by one thread at once)."""
        with self._lock:
            found = self._sessions.get(viewer.user)
            if found is None:
                session = AuditSession(
                    self.store,
                    access_log=self.access_log,
                    who=viewer.user,
                    trust=self.trust,
                    clock=self.clock,
                    keys=self.keys,
                )
                session.log_record_ids = True
                found = (threading.Lock(), session)
                self._sessions[viewer.user] = found
        lock, session = found
        with lock:
            session.context = viewer.context()
            session.catalog.refresh()
            yield session

    def _logged(self, viewer: Viewer, what: str, params: Mapping[str, Any], result: Any) -> int:
        """Seal an access-log entry for a read that is not a SQL statement; returns its seq."""
        rows = len(result) if isinstance(result, list) else 1
        digest = hashlib.sha256(orjson.dumps(result, option=orjson.OPT_SORT_KEYS)).hexdigest()
        entry = AccessEntry(
            who=viewer.user,
            sql=f"-- console: {what}",
            params={**params, **viewer.context()},
            rows=rows,
            result_sha256=digest,
            report=what,
        )
        return self.access_log.append(entry, now_ms=self.clock()).last_seq

    def queue(self) -> review_queue.Queue:
        reviews, at_ingest = review_queue.sources(self.store)
        return review_queue.fold(reviews, at_ingest, keys=self.keys)

    # -- pages --------------------------------------------------------------------------------

    def overview(self, viewer: Viewer) -> Overview:
        newest = HeadWriter(
            self.store, signer=self.signer, archive_name=self.archive_name, trust=self.trust
        ).newest()
        head = None
        if newest is not None:
            head = {
                "seq": newest.seq,
                "chains": {c.chain_id: c.size for c in newest.chains},
            }
        with self._session(viewer) as session:
            chains = session.report("verification", Params())
            ingest = session.query(INGEST_SQL)
            flags = session.query(FLAGS_BY_WEEK_SQL)
        queue = self.queue()
        backlog = review_queue.report("backlog", queue, now_ms=self.clock())
        open_hits = sum(1 for hit in queue.hits.values() if hit.open)
        seq = self._logged(viewer, "overview backlog", {}, backlog)
        return Overview(
            head=head,
            chains=chains.table.to_pylist(),
            ingest=ingest.table.to_pylist()[0],
            flags_by_week=flags.table.to_pylist(),
            backlog=backlog,
            open_hits=open_hits,
            verification=self.last_verification,
            access_seqs=[
                chains.access.last_seq,
                ingest.access.last_seq,
                flags.access.last_seq,
                seq,
            ],
        )

    def verify_now(self, viewer: Viewer) -> Verification:
        try:
            report = verify_archive(self.store, self.trust, archive_name=self.archive_name)
        except VerificationError as exc:
            ok, summary = False, str(exc).splitlines()[0][:500]
        else:
            ok, summary = True, f"{len(report.chains)} chain(s) verified against the trust file"
        outcome = Verification(self.clock(), viewer.user, ok, summary)
        self._logged(viewer, "verify", {"ok": outcome.ok}, summary)
        self.last_verification = outcome
        return outcome

    def search(
        self,
        viewer: Viewer,
        query: str,
        *,
        window: Window | None = None,
        limit: int = 100,
    ) -> SearchResult:
        if self.index_dir is None or self.archive_identity is None:
            raise ConfigError("the console was started without a search index (--index)")
        searcher = Searcher(
            SearchIndex(self.index_dir, self.archive_identity, keys=self.keys),
            ArchiveCatalog(self.store),
            access_log=self.access_log,
            who=viewer.user,
            clock=self.clock,
        )
        searcher.context = viewer.context()
        return searcher.search(query, window=window, limit=limit)

    def conversation(
        self, viewer: Viewer, chain: str, customer: str, *, prove: bool = False
    ) -> Conversation:
        with self._session(viewer) as session:
            result: QueryResult = session.query(
                CONVERSATION_SQL,
                {"chain": chain, "customer": customer},
                report="conversation",
                verify=prove,
                chains=[chain],
                # Only the segments whose customer filter may hold the customer, as the
                # transcript report reads them (a proof reads what it proves, unfiltered).
                _customer=None if prove else customer,
            )
        rows = result.table.to_pylist()
        hits: dict[int, list[review_queue.HitState]] = {}
        for hit in self.queue().hits.values():
            if hit.chain == chain and hit.detail.get("customer") == customer:
                hits.setdefault(int(hit.detail["seq"]), []).append(hit)
        verification = result.verification
        return Conversation(
            chain,
            customer,
            rows,
            hits,
            result.access.last_seq,
            proof=verification.summary() if verification is not None else None,
            proven=verification is not None,
        )

    def attachment(
        self, viewer: Viewer, chain: str, customer: str, sha256: str
    ) -> tuple[bytes, str | None]:
        """An attachment's bytes and sealed mime type; its view is sealed in the access log
        (with the media record's id) before the bytes are read, and they must hash to the
        sealed SHA-256 or nothing is sent."""
        if not _SHA256_HEX.fullmatch(sha256):
            raise ConfigError("no such attachment")
        with self._session(viewer) as session:
            result: QueryResult = session.query(
                ATTACHMENT_SQL,
                {"chain": chain, "customer": customer, "sha256": sha256},
                report="attachment",
                chains=[chain],
            )
        rows = result.table.to_pylist()
        if not rows:
            raise ConfigError("no such attachment")
        row = rows[0]
        data = self.store.get(str(row["object_key"]))
        if len(data) != row["size"] or hashlib.sha256(data).hexdigest() != sha256:
            raise StorageError("this attachment does not match its sealed record: not sent")
        return data, row["mime_type"]

    def review_list(
        self, viewer: Viewer, *, state: str, assignee: str | None
    ) -> list[review_queue.HitState]:
        hits = review_queue.select(
            self.queue(),
            state=state,
            assignee=assignee or None,
            now_ms=self.clock(),
        )
        self._logged(
            viewer,
            "review list",
            {"state": state, "assignee": assignee},
            [hit.id for hit in hits],
        )
        return hits

    def review_act(
        self,
        viewer: Viewer,
        hit_id: str,
        action: str,
        *,
        disposition: str | None = None,
        note: str | None = None,
        to: str | None = None,
    ) -> tuple[review_queue.HitState, int]:
        return review_queue.act(
            self.sealer,
            hit_id,
            action,
            who=viewer.user,
            now_ms=self.clock(),
            disposition=disposition,
            note=note,
            to=to,
            at_ingest=review_queue.sources(self.store)[1],
            keys=self.keys,
            note_key=getattr(self.keys, "live_key", None),
        )

    def report(self, viewer: Viewer, name: str, params: Params) -> QueryResult:
        if name not in REPORTS:
            raise ConfigError(f"no report {name!r}")
        with self._session(viewer) as session:
            return session.report(name, params)

    def review_report(self, viewer: Viewer, name: str) -> list[dict[str, Any]]:
        rows = review_queue.report(name, self.queue(), now_ms=self.clock())
        self._logged(viewer, f"review report {name}", {}, rows)
        return rows

    def access(self, viewer: Viewer, *, who: str, text: str) -> QueryResult:
        with self._session(viewer) as session:
            return session.query(ACCESS_SQL, {"who": who, "text": text}, report="access")

    # -- holds and exports --------------------------------------------------------------------

    def hold_list(self, viewer: Viewer) -> list[dict[str, Any]]:
        found = active_holds(read_register(self.store, self.trust))
        holds = [found[matter].to_json() for matter in sorted(found)]
        self._logged(viewer, "hold list", {}, holds)
        return holds

    def hold_place(
        self, viewer: Viewer, matter: str, scope: HoldScope, reason: str
    ) -> dict[str, Any]:
        outcome = self.holds.place(
            matter, scope, who=viewer.user, now_ms=self.clock(), reason=reason
        )
        return {
            "objects": len(outcome.keys),
            "segments": outcome.segments,
            "seq": outcome.sealed.last_seq if outcome.sealed else None,
        }

    def hold_release(self, viewer: Viewer, matter: str, reason: str) -> dict[str, Any]:
        outcome = self.holds.release(matter, who=viewer.user, now_ms=self.clock(), reason=reason)
        return {"released": len(outcome.keys), "kept": len(outcome.kept)}

    def export(
        self,
        viewer: Viewer,
        matter: str,
        customer: str,
        *,
        since: int | None = None,
        until: int | None = None,
        zone: str = "UTC",
    ) -> str:
        """Build an evidence bundle; its custody entry is sealed before it is written."""
        now = self.clock()
        request = ExportRequest(
            matter=matter,
            selection=Selection(customer=customer, since=since, until=until),
            who=viewer.user,
            as_of=now,
            zone=zone,
        )
        stamp = datetime.fromtimestamp(now / 1000, tz=UTC).strftime("%Y%m%dT%H%M%S")
        safe_matter = re.sub(r"[^A-Za-z0-9._-]", "_", matter)[:60]
        name = f"{safe_matter}-{stamp}-{hashlib.sha256(customer.encode()).hexdigest()[:8]}.zip"
        self.export_dir.mkdir(parents=True, exist_ok=True)
        export_bundle(
            ArchiveCatalog(self.store),
            self.trust,
            request,
            access_log=self.access_log,
            sealed_at_ms=now,
            out=self.export_dir / name,
            keys=self.keys,
        )
        return name

    def bundles(self) -> list[dict[str, Any]]:
        if not self.export_dir.exists():
            return []
        return [
            {"name": path.name, "bytes": path.stat().st_size}
            for path in sorted(self.export_dir.glob("*.zip"))
        ]

    def bundle_path(self, viewer: Viewer, name: str) -> Path:
        """The bundle file to send; its download is sealed in the access log first."""
        if not _BUNDLE_NAME.match(name):
            raise ConfigError("no such bundle")
        path = self.export_dir / name
        if not path.is_file():
            raise ConfigError("no such bundle")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self._logged(viewer, "bundle download", {"bundle": name}, digest)
        return path


def table_rows(table: pa.Table) -> tuple[list[str], list[list[Any]]]:
    return table.column_names, [list(row.values()) for row in table.to_pylist()]


def reports_available() -> Sequence[tuple[str, str]]:
    return [(name, report.summary) for name, report in REPORTS.items()]
