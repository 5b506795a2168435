"""An auditor's session: the views, the access log, and verify-on-query, wired together.

Every statement runs, its result is digested, the access-log entry is sealed, and only then is
the result handed back for display. If the entry cannot be sealed, the result is not shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from coexarchive._internal.clock import now_ms
from coexarchive.errors import CoexArchiveError, ConfigError, FormatError
from coexarchive.errors import QueryError as QueryError
from coexarchive.errors import SandboxError as SandboxError
from coexarchive.query import summary, views
from coexarchive.query.access_log import AccessEntry, AccessLog, result_digest
from coexarchive.query.reports import REPORTS, Params, build_sql
from coexarchive.query.verify_rows import (
    HeadLike,
    RowVerification,
    verify_rows,
    wrong_trust_file,
)
from coexarchive.query.views import (
    ACCESS_LOG_CHAIN,
    ArchiveCatalog,
    Window,
    business_segments,
    connect,
    register_access_log,
    register_quarantine,
    register_records,
    set_window,
    utc_ms,
)
from coexarchive.seal.checkpoint import checkpoint_origin, open_checkpoint
from coexarchive.seal.keys import TrustStore
from coexarchive.seal.personal import KeyLookup, open_if_sealed
from coexarchive.segments import Manifest
from coexarchive.store.base import ObjectStore

__all__ = ["AuditSession", "QueryResult"]


@dataclass(frozen=True)
class QueryResult:
    table: pa.Table
    sql: str
    result_sha256: str
    access: Manifest  # the access-log segment that records this query
    verification: RowVerification | None = None


# ``records`` spans the segments a compliance summary scans (see AuditSession._summary).
_SCANNING = object()
# ``records`` is still empty: the first statement registers what it needs.
_UNREGISTERED = object()


class AuditSession:
    """Views over one archive plus the access log every statement goes through."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        access_log: AccessLog,
        who: str,
        trust: TrustStore | None = None,
        clock: Callable[[], int] = now_ms,
        catalog: ArchiveCatalog | None = None,
        memory_limit: str | None = None,
        keys: KeyLookup | None = None,
    ) -> None:
        self.store = store
        # Opens the personal fields sealed encrypted (record version 2) of the rows a statement
        # returns, after they are logged and verified as stored; None refuses such rows.
        self.keys = keys
        self.access_log = access_log
        self.who = who
        self.trust = trust
        self.clock = clock
        # Sealed into every entry's params beside the statement's own (the console's channel
        # and the user's stated reason); empty for the CLI, whose entries are unchanged.
        self.context: dict[str, Any] = {}
        # Also seal the ids of the records returned (the console: who saw which records).
        self.log_record_ids = False
        self.catalog = catalog or ArchiveCatalog(store)
        self.catalog.refresh()
        # The shell may run any SQL, but not read or write local files or change that.
        self.con = connect(self.catalog, records=False, memory_limit=memory_limit)
        # Whose segments ``records`` spans now (None: the whole archive; see _records_for), and
        # the catalog generation it was registered at.
        self._records_scope: object = _UNREGISTERED
        self._records_generation = self.catalog.generation

    # -- statements ---------------------------------------------------------------------------

    def query(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        report: str | None = None,
        verify: bool = False,
        window: Window | None = None,
        verify_sql: tuple[str, Mapping[str, Any]] | None = None,
        chains: list[str] | None = None,
        heads: Mapping[str, HeadLike] | None = None,
        unkeyed_note: str | None = None,
        scope: Window | None = None,
        _customer: str | None = None,
        _table: pa.Table | None = None,
    ) -> QueryResult:
        """Run ``sql``, seal its access-log entry, and only then return the result.

        ``scope`` restricts every view to records with event time in it, for this statement
        (``coexarchive query --since/--until``); ``window`` is the range ``verify`` proves.
        ``_customer`` is for reports about one customer only (see ``_records_for``); ``_table``
        is ``sql``'s result when a report computed it another way (see ``_summary``).
        """
        self._records_for(_customer)
        values = dict(params or {})
        lowered = sql.lower()
        if scope is not None:
            if "quarantine" in lowered:
                self._log(sql, values, report, rows=None, digest=None, error="ConfigError")
                raise ConfigError(
                    "--since/--until cannot restrict the quarantine table: quarantined input is "
                    "kept by day and has no event time; filter on its date column instead "
                    "(WHERE date >= '2026-01-01') and leave out --since/--until"
                )
            sql += f"\n-- {_scope_note(scope)}"
        if "access_" in lowered:
            # The access log grows with every statement; re-read it only when it is asked for.
            register_access_log(self.con, self.catalog)
        if "quarantine" in lowered:
            register_quarantine(self.con, self.catalog)
        try:
            if _table is not None:
                table = _table
            else:
                _only_reads(sql)
                set_window(self.con, scope)
                try:
                    relation = self.con.sql(sql, params=values or None)
                    table = relation.to_arrow_table() if relation is not None else pa.table({})
                finally:
                    if scope is not None:
                        set_window(self.con, None)
        except SandboxError:
            self._log(sql, values, report, rows=None, digest=None, error="SandboxError")
            raise
        except duckdb.Error as exc:
            self._log(sql, values, report, rows=None, digest=None, error=type(exc).__name__)
            hint = ""
            if _refused_by_sandbox(exc):
                raise QueryError(
                    f"statement refused by the SQL sandbox: {exc}. Queries run over the "
                    "archive's views only: no file can be read or written, no extension loaded "
                    "and no setting changed; use --format/--out to save a result"
                ) from None
            missing = _MISSING_TABLE.search(str(exc))
            if isinstance(exc, duckdb.CatalogException) and missing:
                name = missing.group(1)
                raise QueryError(
                    f"query failed: no view or table named {name!r}{views.suggest(name)} "
                    "(`coexarchive query --help` lists the views; in the shell, .tables)"
                ) from None
            if isinstance(exc, duckdb.OutOfMemoryException):
                raise QueryError(
                    "statement needs more memory than the SQL sandbox has, and the sandbox never "
                    "spills to disk: narrow it (--since/--until, a customer, fewer columns)"
                ) from None
            if "Parquet" in str(exc) and ("magic bytes" in str(exc) or "footer" in str(exc)):
                hint = (
                    " (a segment's bytes differ from what its manifest records: the archive may "
                    "have been altered; run `coexarchive verify`)"
                )
            raise QueryError(f"query failed: {exc}{hint}") from None
        digest = result_digest(table)
        # Logged before anything else happens with the result, verification included.
        access = self._log(
            sql, values, report, rows=table.num_rows, digest=digest, shown=_record_ids(table)
        )
        verification = None
        if verify:
            evidence, computed = table, ()
            if verify_sql is not None:
                # An aggregate: the rows it was computed from are proven, its columns are not.
                rows_sql, rows_params = verify_sql
                evidence = self.con.sql(rows_sql, params=dict(rows_params) or None).to_arrow_table()
                computed = tuple(table.column_names)
            verification = verify_rows(
                self.catalog,
                self._trust(),
                evidence,
                window=window,
                chains=chains,
                heads=heads,
                unkeyed_note=unkeyed_note,
                computed=computed,
            )
        # Only the rows returned are opened, and only after the access log and verification saw
        # them as sealed (the proofs commit to the ciphertext; the GCM tag proves the opening).
        table = open_if_sealed(table, self.keys)
        return QueryResult(table, sql, digest, access, verification)

    def report(
        self,
        name: str,
        params: Params,
        *,
        verify: bool = False,
        heads: Mapping[str, HeadLike] | None = None,
    ) -> QueryResult:
        definition = REPORTS.get(name)
        if definition is None:
            raise ConfigError(f"no report {name!r}; `coexarchive report --list` shows them all")
        window = None
        if params.since is not None or params.until is not None:
            window = Window(
                utc_ms(params.since) if params.since else None,
                utc_ms(params.until) if params.until else None,
            )
        if name == "verification":
            return self._verification_report(params)
        sql, values = build_sql(definition, params)
        verify_sql = (
            build_sql(definition, params, rows_only=True) if definition.aggregate_sql else None
        )
        # --verify takes nothing from the manifests' customer filters or findings on trust: the
        # rows it proves are the rows the result was computed from.
        computed = None
        if name == "compliance" and params.customer is None and not verify:
            computed = self._summary(sql, values, params.chain, window)
            if computed is not None:
                sql = computed[0]
        return self.query(
            sql,
            values,
            report=name,
            verify=verify,
            window=window,
            verify_sql=verify_sql,
            chains=[params.chain] if params.chain else None,
            heads=heads,
            unkeyed_note=definition.unkeyed_rows,
            _customer=params.customer if definition.needs_customer and not verify else None,
            _table=computed[1] if computed is not None else None,
        )

    def _summary(
        self, sql: str, values: Mapping[str, Any], chain: str | None, window: Window | None
    ) -> tuple[str, pa.Table] | None:
        """The compliance summary from the manifests' findings, scanning only cut segments.

        Returns the SQL to log (the report's, with how it was computed) and the result, or None
        when no manifest carries findings (an archive sealed before they were recorded).
        """
        segments = business_segments(self.catalog, chains=[chain] if chain else None)
        chains = sorted({segment.chain_id for segment in segments})
        manifests = [m for c in chains for m in self.catalog.manifests(c)]
        if not any(manifest.findings is not None for manifest in manifests):
            return None
        whole, cut = summary.split(segments, manifests, window)
        register_records(self.con, self.catalog, cut)
        self._records_scope = _SCANNING  # the next statement spans the whole archive again
        try:
            scanned = self.con.sql(sql, params=dict(values) or None).to_arrow_table()
        except duckdb.Error:
            # The plain report then runs over every segment, and logs and explains the failure.
            return None
        self.con.register("summary_scanned", scanned)
        self.con.register("summary_sealed", summary.from_manifests(whole))
        try:
            table = self.con.sql(summary.MERGE_SQL).to_arrow_table()
        finally:
            self.con.unregister("summary_scanned")
            self.con.unregister("summary_sealed")
        note = (
            f"\n-- computed from the findings of {len(whole)} whole segment(s) recorded in their "
            f"manifests (checked by coexarchive verify), {len(cut)} segment(s) scanned"
        )
        return sql + note, table

    def _records_for(self, customer: str | None) -> None:
        """Make ``records`` span the segments that may hold ``customer`` (None: all of them).

        A report about one customer selects only that customer's rows, so a segment whose
        manifests' customer filter rules the customer out cannot contribute a row; leaving it
        out saves opening its Parquet footer. Every other statement sees the whole archive: the
        next one switches back before it runs.
        """
        if customer == self._records_scope and self.catalog.generation == self._records_generation:
            return
        everything = business_segments(self.catalog)
        if customer is None:
            register_records(self.con, self.catalog, everything)
        else:
            # A few row groups of a few files: one request per row group beats one per column.
            segments = self.catalog.customer_segments(customer, everything)
            register_records(self.con, self.catalog, segments, whole_row_groups=True)
        self._records_scope = customer
        self._records_generation = self.catalog.generation

    def _verification_report(self, params: Params) -> QueryResult:
        table = self.verification_table(params.chain)
        digest = result_digest(table)
        sql = "-- verification report: checkpoints of every chain checked against the trust file"
        access = self._log(
            sql, params.to_json(), "verification", rows=table.num_rows, digest=digest
        )
        return QueryResult(table, sql, digest, access)

    def verification_table(self, chain: str | None = None) -> pa.Table:
        """Per chain: coverage of seq by manifests and the signed checkpoint of each segment."""
        self.catalog.refresh()
        self.catalog.refresh(ACCESS_LOG_CHAIN)
        rows: list[dict[str, Any]] = []
        for chain_id in [chain] if chain else self.catalog.chains():
            rows.append(self._chain_status(chain_id))
        schema = pa.schema(
            [
                ("chain_id", pa.string()),
                ("segments", pa.int64()),
                ("records", pa.int64()),
                ("tree_size", pa.int64()),
                ("checkpoints_verified", pa.int64()),
                ("status", pa.string()),
                ("problems", pa.string()),
            ]
        )
        return pa.Table.from_pylist(rows, schema=schema)

    def _chain_status(self, chain_id: str) -> dict[str, Any]:
        manifests = self.catalog.manifests(chain_id)
        problems: list[str] = []
        expected = 0
        for manifest in manifests:
            if manifest.first_seq != expected:
                problems.append(f"seq {expected}..{manifest.first_seq - 1} is in no manifest")
            expected = manifest.last_seq + 1
        verified = 0
        trust = self._trust()
        wrong_trust: str | None = None
        for manifest in manifests:
            note = b""
            try:
                note = self.store.get(manifest.checkpoint_key)
                checkpoint = open_checkpoint(
                    note, trust, origin=checkpoint_origin(manifest.archive, chain_id)
                )
            except CoexArchiveError as exc:
                wrong_trust = wrong_trust or wrong_trust_file(note, trust)
                problems.append(f"checkpoint {manifest.tree_size}: {exc}")
                continue
            if checkpoint.size != manifest.tree_size or checkpoint.root_hash != manifest.root_hash:
                problems.append(f"checkpoint {manifest.tree_size}: differs from its manifest")
                continue
            verified += 1
        if wrong_trust is not None:
            problems.insert(0, wrong_trust)  # explains the rest: said first
        return {
            "chain_id": chain_id,
            "segments": len(manifests),
            "records": sum(m.record_count for m in manifests),
            "tree_size": manifests[-1].tree_size if manifests else 0,
            "checkpoints_verified": verified,
            "status": "ok" if not problems else "FAILED",
            "problems": "; ".join(problems[:10]) or None,
        }

    # -- helpers ------------------------------------------------------------------------------

    def _trust(self) -> TrustStore:
        if self.trust is None:
            raise ConfigError("verification needs the trust file (--trust or COEXARCHIVE_TRUST)")
        return self.trust

    def _log(
        self,
        sql: str,
        params: Mapping[str, Any],
        report: str | None,
        *,
        rows: int | None,
        digest: str | None,
        error: str | None = None,
        shown: list[str] | None = None,
    ) -> Manifest:
        logged = {**params, **self.context}
        if self.log_record_ids and shown is not None:
            logged["record_ids"] = shown
        entry = AccessEntry(
            who=self.who,
            sql=sql,
            params=logged,
            rows=rows,
            result_sha256=digest,
            report=report,
            error=error,
        )
        return self.access_log.append(entry, now_ms=self.clock())

    def access_chain(self) -> str:
        return ACCESS_LOG_CHAIN


def _record_ids(table: pa.Table) -> list[str] | None:
    if "record_id" not in table.column_names:
        return None
    return [str(value) for value in table.column("record_id").to_pylist() if value is not None]


_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist")

# What an auditor's statement may be: reads of the views, and plans of reads. Everything else
# (COPY, ATTACH, EXPORT, INSTALL/LOAD, SET/RESET, PRAGMA, CALL, CREATE/DROP, secrets) is refused
# before it runs; the connection's own settings refuse file access again if this list is wrong.
_READ_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


def _only_reads(sql: str) -> None:
    for statement in duckdb.extract_statements(sql):
        if statement.type not in _READ_STATEMENTS:
            raise SandboxError(
                f"statement refused by the SQL sandbox: {statement.type.name} is not allowed. "
                "Only SELECT (with DESCRIBE, SUMMARIZE, EXPLAIN) runs over the archive's views; "
                "use --format and --out to save a result"
            )


def _refused_by_sandbox(exc: duckdb.Error) -> bool:
    text = str(exc)
    return isinstance(exc, duckdb.PermissionException) or (
        "configuration has been locked" in text
        or "disabled by configuration" in text
        or "disabled through configuration" in text
    )


def _scope_note(scope: Window) -> str:
    """How a statement's views were restricted, for its access-log entry."""
    since = _iso(scope.since) if scope.since is not None else "the first record"
    until = _iso(scope.until) if scope.until is not None else "the last record"
    return f"views restricted to event_time from {since} (inclusive) until {until} (exclusive)"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def check_params(params: Params) -> None:
    if params.since and params.until and params.since >= params.until:
        raise FormatError("--since must be before --until")
