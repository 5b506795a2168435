"""Where the values a view shows come from, for verify-on-query (:mod:`verify_rows`).

A column a view shows is either a sealed field of the row's own record, a value derived from the
row's own sealed fields (``DERIVED``), a member of one of its sealed lists (``MEMBER_OF``), or a
field of another record of the same chain that the view joined in (``JOINS``), found by a ``seq``
column the view shows next to it. Current flags are such a join: ``flags`` comes from the
``assessment`` record named by ``flags_seq``, or from the row itself when ``flags_seq`` is NULL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["DERIVED", "JOINS", "MEMBER_OF", "NOT_DERIVED", "Join", "Row"]

Row = Mapping[str, Any]

# A derived column's value for a record it does not apply to (not the view's kind of record).
NOT_DERIVED = object()


def _of_kind(kind: str, derive: Callable[[Row], Any]) -> Callable[[Row], Any]:
    return lambda row: derive(row) if row["kind"] == kind else NOT_DERIVED


def _new_state(row: Row) -> Any:
    if row["consent_state"] is not None:
        return row["consent_state"]
    return {"stop": "opted_out", "resume": "opted_in", "signup": "opted_in"}.get(
        (row["status"] or "").lower()
    )


def _detail(name: str) -> Callable[[Row], Any]:
    def get(row: Row) -> Any:
        try:
            return orjson.loads(row["detail"]).get(name)
        except (orjson.JSONDecodeError, AttributeError):
            return None

    return get


# Columns the views compute from one record's sealed fields, recomputed here from the proven row.
DERIVED: dict[str, Callable[[Row], Any]] = {
    "new_state": _of_kind("consent_event", _new_state),  # consent_events
    "state": _of_kind("consent_event", _new_state),  # consent_state
    "purpose": _of_kind("consent_event", lambda row: row["msg_type"]),  # consent_state
    "since": _of_kind("consent_event", lambda row: row["event_time"]),  # consent_state
    "sealed_flags": lambda row: row["flags"],  # records and the views over it
    **{
        name: _of_kind("access", _detail(name))  # access_log
        for name in ("who", "report", "sql", "params", "rows", "result_sha256")
    },
}


def _receipt(name: str) -> Callable[[Row], Any]:
    def get(row: Row) -> Any:
        try:
            return orjson.loads(row["detail"]).get("raw", {}).get(name)
        except (orjson.JSONDecodeError, AttributeError):
            return None

    return get


# The media view's receipt columns (``detail.raw`` of a media record).
DERIVED.update(
    {
        name: _of_kind("media", _receipt(name))
        for name in ("cause", "mime_type", "size", "sha256", "object_key")
    }
)
# ``flags`` unnests a record's flags: each row's ``flag`` must be one of the sealed flags.
MEMBER_OF = {"flag": "flags"}


@dataclass(frozen=True)
class Join:
    """Columns a view takes from another record of the same chain, found by its ``seq`` column."""

    seq_column: str
    fields: Mapping[str, str]  # shown column → sealed field of the joined record
    # Must hold between the row and the joined record, or the join took the wrong record.
    belongs: Callable[[Row, Row], bool]
    # A NULL seq column means the values are the row's own (compared with its sealed fields);
    # otherwise values shown without a joined record are a failure.
    own_when_absent: bool = False
    # shown column → sealed list field of the joined record (or the row) it must be a member of
    members: Mapping[str, str] = field(default_factory=dict)

    @property
    def shown(self) -> frozenset[str]:
        return frozenset(self.fields) | frozenset(self.members)


_MESSAGE_KINDS = frozenset({"message", "echo", "outbound", "history_message"})

JOINS: tuple[Join, ...] = (
    Join(
        "msg_seq",
        {
            "msg_record_id": "record_id",
            "msg_kind": "kind",
            "msg_time": "event_time",
            "msg_msg_type": "msg_type",
            "msg_text": "text",
            "msg_template_name": "template_name",
            "msg_customer_id": "customer_id",
        },
        lambda row, joined: joined["wamid"] == row["wamid"] and joined["kind"] in _MESSAGE_KINDS,
    ),
    Join(
        "opt_out_seq",
        {"opted_out_at": "event_time"},
        lambda row, joined: (
            joined["kind"] == "consent_event" and joined["customer_id"] == row["customer_id"]
        ),
    ),
    # The media view: the message a media record completes (its ref_record_id).
    Join(
        "message_seq",
        {
            "message_kind": "kind",
            "message_time": "event_time",
            "caption": "text",
        },
        lambda row, joined: joined["record_id"] == row["ref_record_id"],
    ),
    # Current flags: those of the row's latest assessment (which names the row), else its own.
    Join(
        "flags_seq",
        {"flags": "flags"},
        lambda row, joined: (
            joined["kind"] == "assessment" and joined["ref_record_id"] == row["record_id"]
        ),
        own_when_absent=True,
        members={"flag": "flags"},
    ),
)
