# SQL here is assembled from module constants and integers only; values travel as bound parameters.
# ruff: noqa: S608
"""What an auditor queries: the views over the sealed records, and the session's time window.

Two Arrow datasets are registered per connection (see :mod:`coexarchive.query.views`):
``_sealed_dataset`` (the business chains' segments) and ``_access_dataset`` (the access log).
Auditors never name them: ``sealed_records`` and ``access_records`` read them through the
session's time window (``--since``/``--until`` of ``coexarchive query``), and every other view
reads those.

**Current flags.** Sealed records never change; re-assessment (``coexarchive reassess``) seals an
``assessment`` record whose ``ref_record_id`` names the record it re-assesses and whose ``flags``
are that record's flags from then on (``schemas/ENRICHMENT.md``). A record's current flags are
those of its latest assessment (highest ``seq`` in the chain), else its own. ``records`` and every
view built on it show current flags in ``flags``, with ``sealed_flags`` (the record's own) and
``flags_seq`` (the assessment they come from; NULL when the record's own), so ``--verify`` proves
the flags shown against the assessment record that holds them.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Protocol

__all__ = [
    "MESSAGE_KINDS_SQL",
    "TABLE_DESCRIPTIONS",
    "VIEWS",
    "WINDOW_VIEWS",
    "describe",
    "suggest",
    "window_sql",
]

SEALED_DATASET = "_sealed_dataset"
ACCESS_DATASET = "_access_dataset"

# Message kinds, plus message types the catalogue does not know (a poll): those keep the origin
# and direction of the message they came in as, where unknown webhook fields have none.
MESSAGE_KINDS_SQL = (
    "(kind IN ('message', 'echo', 'outbound', 'history_message', 'message_edit', "
    "'message_revoke') OR (kind = 'unsupported' AND direction <> 'none'))"
)


# What a media record's receipt (``detail.raw``) says, as columns (RAW_LANDING.md §4a).
# A detail sealed encrypted (record version 2) is no JSON: its columns are NULL, never an error.
MEDIA_DETAIL_SQL = ", ".join(
    f"CASE WHEN json_valid(m.detail) THEN {expression} END AS {name}"
    for expression, name in (
        ("json_extract_string(m.detail, '$.raw.cause')", "cause"),
        ("json_extract_string(m.detail, '$.raw.mime_type')", "mime_type"),
        ("CAST(json_extract(m.detail, '$.raw.size') AS BIGINT)", "size"),
        ("json_extract_string(m.detail, '$.raw.sha256')", "sha256"),
        ("json_extract_string(m.detail, '$.raw.object_key')", "object_key"),
    )
)


class _WindowLike(Protocol):
    @property
    def since(self) -> int | None: ...

    @property
    def until(self) -> int | None: ...


def window_sql(window: _WindowLike | None) -> str:
    """The WHERE clause of the window views (integers only, so nothing can be injected)."""
    if window is None:
        return "true"
    parts = []
    if window.since is not None:
        parts.append(f"event_time >= epoch_ms({int(window.since)})::TIMESTAMPTZ")
    if window.until is not None:
        parts.append(f"event_time < epoch_ms({int(window.until)})::TIMESTAMPTZ")
    return " AND ".join(parts) or "true"


# View name → SQL with {where}: the windowed views, re-created when the session's window changes.
WINDOW_VIEWS: dict[str, str] = {
    "sealed_records": f"SELECT * FROM {SEALED_DATASET} WHERE {{where}}",
    "access_records": f"SELECT * FROM {ACCESS_DATASET} WHERE {{where}}",
}

# View name → (one-line description, SQL), created in this order.
VIEWS: dict[str, tuple[str, str]] = {
    "records": (
        "every sealed record of every business chain, flags current (see sealed_flags, flags_seq)",
        """
        SELECT r.* REPLACE (coalesce(a.flags, r.flags) AS flags),
               r.flags AS sealed_flags, a.seq AS flags_seq
        FROM sealed_records r
        LEFT JOIN (SELECT chain_id, ref_record_id, max(seq) AS seq,
                          arg_max(flags, seq) AS flags
                   FROM sealed_records
                   WHERE kind = 'assessment' AND ref_record_id IS NOT NULL
                   GROUP BY chain_id, ref_record_id) a
          ON r.chain_id = a.chain_id AND r.record_id = a.ref_record_id
        """,
    ),
    "messages": (
        "every message event: inbound, app echoes, Cloud API sends, history, edits, revokes, and "
        "message types the catalogue does not know (polls), with current flags",
        f"SELECT * FROM records WHERE {MESSAGE_KINDS_SQL}",
    ),
    "statuses": (
        "delivery statuses joined to the message they report on (NULL msg_* when never captured)",
        """
        SELECT s.*, m.seq AS msg_seq, m.record_id AS msg_record_id, m.kind AS msg_kind,
               m.event_time AS msg_time, m.msg_type AS msg_msg_type, m.text AS msg_text,
               m.template_name AS msg_template_name, m.customer_id AS msg_customer_id
        FROM (SELECT * FROM records WHERE kind = 'status') s
        LEFT JOIN (SELECT chain_id, wamid, min(seq) AS seq, arg_min(record_id, seq) AS record_id,
                          arg_min(kind, seq) AS kind, min(event_time) AS event_time,
                          arg_min(msg_type, seq) AS msg_type, arg_min(text, seq) AS text,
                          arg_min(template_name, seq) AS template_name,
                          arg_min(customer_id, seq) AS customer_id
                   FROM sealed_records
                   WHERE kind IN ('message', 'echo', 'outbound', 'history_message')
                   GROUP BY chain_id, wamid) m
          ON s.chain_id = m.chain_id AND s.wamid = m.wamid
        """,
    ),
    "conversations": (
        "one row per chain and customer: first and last message, counts in and out",
        f"""
        SELECT chain_id, customer_id, min(event_time) AS first_time, max(event_time) AS last_time,
               count(*) AS messages,
               count(*) FILTER (WHERE direction = 'inbound') AS inbound,
               count(*) FILTER (WHERE direction = 'outbound') AS outbound
        FROM sealed_records WHERE {MESSAGE_KINDS_SQL} AND customer_id IS NOT NULL
        GROUP BY chain_id, customer_id
        """,
    ),
    "consent_events": (
        "opt-in / opt-out events (webhook, keyword, CRM import) with the state they set",
        """
        SELECT *, coalesce(consent_state,
                           CASE lower(status) WHEN 'stop' THEN 'opted_out'
                                              WHEN 'resume' THEN 'opted_in'
                                              WHEN 'signup' THEN 'opted_in' END) AS new_state
        FROM sealed_records WHERE kind = 'consent_event'
        """,
    ),
    "consent_state": (
        "each customer's latest consent state per chain and purpose",
        """
        SELECT chain_id, customer_id, msg_type AS purpose,
               arg_max(new_state, (event_time, seq)) AS state,
               max(event_time) AS since, arg_max(seq, (event_time, seq)) AS seq
        FROM consent_events GROUP BY chain_id, customer_id, msg_type
        """,
    ),
    "templates": (
        "template lifecycle events: status, quality and category updates",
        "SELECT * FROM sealed_records WHERE kind = 'template_event'",
    ),
    "flags": (
        "one row per current compliance flag on a record (DESIGN §5 flag names); a record "
        "re-assessed shows its latest assessment's flags, flags_seq naming that assessment",
        """
        SELECT chain_id, seq, record_id, kind, origin, direction, event_time, customer_id, wamid,
               msg_type, template_name, template_category, template_status, consent_state,
               window_open, flags_seq, unnest(flags) AS flag
        FROM records WHERE len(flags) > 0 AND kind <> 'assessment'
        """,
    ),
    "account_events": (
        "account updates, phone quality, history declined or failed, webhook errors",
        "SELECT * FROM sealed_records WHERE kind = 'account_event'",
    ),
    "media": (
        "one row per attachment fetch (media record): status stored or failed, cause, MIME "
        "type, size, sha256 and object key, with the message it completes (message_seq)",
        f"""
        SELECT m.chain_id, m.seq, m.record_id, m.event_time, m.media_id, m.wamid,
               m.customer_id, m.msg_type, m.status, m.flags, m.flags_seq, m.ref_record_id,
               {MEDIA_DETAIL_SQL},
               g.seq AS message_seq, g.kind AS message_kind, g.event_time AS message_time,
               g.text AS caption
        FROM records m
        LEFT JOIN (SELECT chain_id, record_id, min(seq) AS seq, arg_min(kind, seq) AS kind,
                          arg_min(event_time, seq) AS event_time, arg_min(text, seq) AS text
                   FROM sealed_records
                   WHERE kind <> 'media' AND (media_id IS NOT NULL OR kind = 'outbound')
                   GROUP BY chain_id, record_id) g
          ON m.chain_id = g.chain_id AND m.ref_record_id = g.record_id
        WHERE m.kind = 'media'
        """,
    ),
    "access_log": (
        "every auditor query and report: who, when, SQL, parameters, rows, result SHA-256",
        """
        SELECT chain_id, seq, record_id, event_time,
               json_extract_string(detail, '$.who') AS who,
               json_extract_string(detail, '$.report') AS report,
               json_extract_string(detail, '$.sql') AS sql,
               json_extract(detail, '$.params') AS params,
               CAST(json_extract(detail, '$.rows') AS BIGINT) AS rows,
               json_extract_string(detail, '$.result_sha256') AS result_sha256
        FROM access_records WHERE kind = 'access'
        """,
    ),
}

TABLE_DESCRIPTIONS: dict[str, str] = {
    "sealed_records": "every sealed record of every business chain, exactly as sealed",
    "access_records": "the access log's sealed records",
    "quarantine": "input that did not parse: object, raw pointer, JSON path and reason",
}


def suggest(name: str) -> str:
    """``"; did you mean X?"`` from the archive's views and tables, or nothing."""
    close = difflib.get_close_matches(name.lower(), list(describe()), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def describe() -> Mapping[str, str]:
    """Every table and view an auditor can query, with one line each."""
    return {**TABLE_DESCRIPTIONS, **{name: text for name, (text, _) in VIEWS.items()}}
