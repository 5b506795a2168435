# SQL here is assembled from module constants only; values travel as bound parameters.
# ruff: noqa: S608
"""Named reports: the questions auditors ask, as SQL over the views.

Each report has a row-level query (always with ``chain_id`` and ``seq``, so ``--verify`` can prove
the rows) and, for summaries, an aggregate over those rows. Filters (customer, chain, period) are
added only when given, so DuckDB pushes them down to the Parquet scan as plain comparisons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coexarchive.errors import ConfigError
from coexarchive.query.viewdefs import MESSAGE_KINDS_SQL

REFERENCING_KINDS_SQL = "('message', 'echo', 'outbound', 'history_message', 'message_edit')"

__all__ = ["REPORTS", "Params", "Report", "build_sql"]


@dataclass(frozen=True)
class Params:
    """What a report can be narrowed by; ``until`` is exclusive."""

    customer: str | None = None
    chain: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Report:
    name: str
    summary: str
    rows_sql: str  # has {where}: " AND ..." filters on the report's base relation
    aggregate_sql: str | None = None  # wraps the rows as {rows}
    needs_customer: bool = False
    uses_customer: bool = True
    extra_sql: Callable[[Params], tuple[str, dict[str, Any]]] | None = field(default=None)
    # Why some rows carry no chain_id/seq (and --verify lists them as not verified).
    unkeyed_rows: str | None = None


_MESSAGE_COLUMNS = (
    "event_time, chain_id, seq, record_id, kind, origin, direction, customer_id, wamid, "
    "msg_type, text, template_name, template_category, template_status, consent_state, "
    "window_open, flags, flags_seq, sealed_flags"
)


_ORDER = " ORDER BY event_time, chain_id, seq"


def _flagged(flag: str) -> str:
    return (
        f"SELECT {_MESSAGE_COLUMNS} FROM messages "
        f"WHERE direction = 'outbound' AND list_contains(flags, '{flag}'){{where}} "
        "ORDER BY event_time, chain_id, seq"
    )


_CAPTURE_GAPS = """
WITH found AS (
  SELECT event_time, chain_id, seq, record_id, kind, msg_type, status, customer_id, wamid,
    CASE WHEN list_contains(flags, 'capture_gap') THEN 'capture_gap'
         WHEN list_contains(flags, 'history_declined') THEN 'history_declined'
         WHEN list_contains(flags, 'status_without_message') THEN 'status_without_message'
         WHEN kind = 'account_event' AND msg_type = 'history_declined' THEN 'history_declined'
         WHEN kind = 'account_event' AND msg_type = 'account_update'
              AND upper(status) IN ('PARTNER_REMOVED', 'PRIMARY_INACTIVITY', 'ACCOUNT_DELETED')
              THEN 'capture_gap'
    END AS finding
  FROM records WHERE (len(flags) > 0 OR kind = 'account_event') AND kind <> 'assessment'{where}
)
SELECT finding, event_time, chain_id, seq, record_id, kind, coalesce(status, msg_type) AS event,
       customer_id, wamid, NULL::VARCHAR AS raw_key, NULL::BIGINT AS raw_line,
       NULL::VARCHAR AS reason
FROM found WHERE finding IS NOT NULL
UNION ALL
SELECT 'quarantined', NULL, NULL, NULL, NULL, NULL, location, NULL, NULL, raw_key, raw_line, reason
FROM quarantine WHERE true{qwhere}
ORDER BY finding, event_time NULLS LAST, chain_id, seq, raw_key, raw_line
"""

# Attachments lost for good (a sealed media_gap) and attachments no fetch ever answered for.
_MEDIA_GAPS = f"""
SELECT 'media_gap' AS gap, chain_id, seq, event_time, media_id, wamid, customer_id, msg_type,
       cause
FROM media WHERE list_contains(flags, 'media_gap'){{where}}
UNION ALL
SELECT 'not_fetched', r.chain_id, r.seq, r.event_time, r.media_id, r.wamid, r.customer_id,
       r.msg_type, NULL
FROM sealed_records r
WHERE (r.media_id IS NOT NULL
       OR (r.kind = 'outbound'
           AND r.msg_type IN ('image', 'audio', 'video', 'document', 'sticker')))
  AND r.kind IN {REFERENCING_KINDS_SQL}
  AND NOT EXISTS (SELECT 1 FROM sealed_records f
                  WHERE f.kind = 'media' AND f.chain_id = r.chain_id
                    AND f.ref_record_id = r.record_id){{where}}
ORDER BY event_time, chain_id, seq
"""

REPORTS: dict[str, Report] = {
    report.name: report
    for report in (
        Report(
            "transcript",
            "every message to and from one customer (--customer), in time order, all origins",
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE customer_id = $customer{{where}} "
            "ORDER BY event_time, chain_id, seq",
            needs_customer=True,
        ),
        Report(
            "outbound-without-consent",
            "outbound marketing sent without marketing consent (flag marketing_without_consent)",
            _flagged("marketing_without_consent"),
        ),
        Report(
            "after-opt-out",
            "messages sent after the customer opted out, with the opt-out they ignored",
            f"""
            SELECT m.*, c.event_time AS opted_out_at, c.seq AS opt_out_seq
            FROM ({_flagged("sent_after_opt_out").replace(_ORDER, "")}) m
            ASOF LEFT JOIN (SELECT chain_id, customer_id, event_time, seq FROM consent_events
                            WHERE new_state = 'opted_out') c
              ON m.chain_id = c.chain_id AND m.customer_id = c.customer_id
             AND m.event_time >= c.event_time
            ORDER BY m.event_time, m.chain_id, m.seq
            """,
        ),
        Report(
            "template-usage",
            "template sends by name, language, category and approval status at send time",
            "SELECT chain_id, seq, event_time, template_name, template_language, "
            "template_category, template_status, flags, flags_seq FROM messages "
            "WHERE direction = 'outbound' AND template_name IS NOT NULL{where}",
            aggregate_sql="""
            SELECT template_name, template_language, template_category,
                   coalesce(template_status, 'unknown') AS status_at_send, count(*) AS sends,
                   count(*) FILTER (WHERE list_contains(flags, 'template_not_approved'))
                     AS not_approved, min(event_time) AS first_sent, max(event_time) AS last_sent
            FROM ({rows}) GROUP BY ALL ORDER BY template_name, template_language, status_at_send
            """,
        ),
        Report(
            "freeform-outside-window",
            "free-form (non-template) sends outside the 24-hour customer-service window",
            _flagged("freeform_outside_window"),
        ),
        Report(
            "failed-deliveries",
            "failed delivery statuses with their error code and the message they concern",
            "SELECT event_time, chain_id, seq, record_id, wamid, error_code, customer_id, "
            "msg_customer_id, msg_kind, msg_seq, msg_text, msg_template_name "
            "FROM statuses WHERE status = 'failed'"
            "{where} ORDER BY event_time, chain_id, seq",
        ),
        Report(
            "capture-gaps",
            "capture gaps (coexistence disconnected, history declined, statuses without a "
            "message) and quarantined input",
            _CAPTURE_GAPS,
            unkeyed_rows="quarantined input, which is kept but never sealed",
        ),
        Report(
            "media-gaps",
            "attachments lost (sealed media_gap, with the cause) or never fetched, per chain "
            "and day",
            _MEDIA_GAPS,
            aggregate_sql="""
            SELECT chain_id, CAST(event_time AS DATE) AS day, gap, coalesce(cause, '') AS cause,
                   count(*) AS attachments
            FROM ({rows}) GROUP BY ALL ORDER BY chain_id, day, gap, cause
            """,
        ),
        Report(
            "volume",
            "records and messages per day and origin",
            "SELECT chain_id, seq, event_time, origin, kind, direction FROM sealed_records "
            "WHERE true{where}",
            aggregate_sql=f"""
            SELECT CAST(event_time AS DATE) AS day, origin, count(*) AS records,
                   count(*) FILTER (WHERE {MESSAGE_KINDS_SQL}) AS messages
            FROM ({{rows}}) GROUP BY ALL ORDER BY day, origin
            """,
        ),
        Report(
            "compliance",
            "the full compliance summary: each current flag, failed deliveries and capture gaps, "
            "per chain",
            "SELECT chain_id, seq, event_time, flags, flags_seq, kind, status FROM records "
            "WHERE (len(flags) > 0 OR (kind = 'status' AND status = 'failed')) "
            "AND kind <> 'assessment'{where}",
            # One pass over the few columns it needs; the row query above is for --verify.
            aggregate_sql="""
            SELECT finding, chain_id, count(*) AS records, min(event_time) AS first_time,
                   max(event_time) AS last_time
            FROM (SELECT chain_id, event_time,
                         unnest(CASE WHEN kind = 'status' AND status = 'failed'
                                     THEN list_append(flags, 'failed_delivery')
                                     ELSE flags END) AS finding
                  FROM records WHERE kind <> 'assessment'{where})
            GROUP BY ALL ORDER BY finding, chain_id
            """,
        ),
        Report(
            "verification",
            "per chain: segments, records, signed tree size and whether the checkpoints verify",
            "",
            uses_customer=False,
        ),
        Report(
            "access",
            "who ran which query or report, when, with how many rows and the result's SHA-256",
            "SELECT event_time, who, report, sql, params, rows, result_sha256, chain_id, seq "
            "FROM access_log WHERE true{where} ORDER BY event_time, seq",
            uses_customer=False,
        ),
    )
}


def build_sql(
    report: Report, params: Params, *, rows_only: bool = False
) -> tuple[str, dict[str, Any]]:
    """The report's SQL with only the given filters, and its named parameters."""
    if report.needs_customer and not params.customer:
        raise ConfigError(f"report {report.name} needs --customer")
    if params.customer and not report.uses_customer:
        raise ConfigError(f"report {report.name} does not take --customer")
    where, qwhere, values = _filters(report, params)
    rows = report.rows_sql.replace("{where}", where).replace("{qwhere}", qwhere)
    if report.aggregate_sql is None or rows_only:
        return rows, values
    aggregate = report.aggregate_sql.replace("{rows}", rows).replace("{where}", where)
    return aggregate, values


def _filters(report: Report, params: Params) -> tuple[str, str, dict[str, Any]]:
    where: list[str] = []
    qwhere: list[str] = []
    values: dict[str, Any] = {}
    if params.customer is not None:
        values["customer"] = params.customer
        if not report.needs_customer:
            where.append("customer_id = $customer")
    if params.chain is not None:
        where.append("chain_id = $chain")
        values["chain"] = params.chain
    if params.since is not None:
        where.append("event_time >= $since")
        qwhere.append("date >= strftime($since, '%Y-%m-%d')")
        values["since"] = params.since
    if params.until is not None:
        where.append("event_time < $until")
        qwhere.append("date < strftime($until, '%Y-%m-%d')")
        values["until"] = params.until
    if "{qwhere}" not in report.rows_sql:
        qwhere = []
    if "{qwhere}" in report.rows_sql and params.chain is not None:
        qwhere.append("false")  # quarantined input belongs to no chain
    return "".join(f" AND {c}" for c in where), "".join(f" AND {c}" for c in qwhere), values


def describe() -> Mapping[str, str]:
    return {name: report.summary for name, report in REPORTS.items()}
