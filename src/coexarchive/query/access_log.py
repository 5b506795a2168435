"""The access log: every auditor query and report, sealed before its result is shown.

Each entry is one record of kind ``access`` on the chain ``access-log``, sealed and signed like
any other chain (so ``coexarchive verify`` covers it). Its ``detail`` is the canonical JSON of
``{who, sql, params, rows, result_sha256, report}``; ``event_time`` is the moment the query ran.

``result_sha256`` is the SHA-256 of the result in a stable text form (see :func:`result_digest`):
a filed export can be checked against the log entry made when it was produced.
"""

from __future__ import annotations

import getpass
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from functools import cached_property
from typing import Any

import orjson
import pyarrow as pa

from coexarchive.audit_chain import AuditChainClient, AuditChainWriter
from coexarchive.errors import ConfigError
from coexarchive.query.views import ACCESS_LOG_CHAIN
from coexarchive.records import Direction, Kind, Origin, Record, stable_id
from coexarchive.segments import Manifest

__all__ = ["AUDITOR_ENV", "AccessEntry", "AccessLog", "auditor_identity", "result_digest"]

AUDITOR_ENV = "COEXARCHIVE_AUDITOR"
DETAIL_VERSION = 1


def auditor_identity(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    """Who is asking: ``--as``, else ``$COEXARCHIVE_AUDITOR``, else the OS user."""
    env = os.environ if env is None else env
    who = explicit or env.get(AUDITOR_ENV) or _os_user()
    if not who or not who.strip():
        raise ConfigError(f"cannot tell who is querying: pass --as NAME or set {AUDITOR_ENV}")
    return who.strip()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return ""


@dataclass(frozen=True)
class AccessEntry:
    """What was asked and what came back, as it is sealed."""

    who: str
    sql: str
    params: Mapping[str, Any]
    rows: int | None  # None when the statement failed
    result_sha256: str | None
    report: str | None = None
    error: str | None = None

    def detail(self) -> str:
        document = {
            "v": DETAIL_VERSION,
            "who": self.who,
            "sql": self.sql,
            "params": {k: _plain(v) for k, v in self.params.items()},
            "rows": self.rows,
            "result_sha256": self.result_sha256,
            "report": self.report,
        }
        if self.error is not None:
            document["error"] = self.error
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode()


class AccessLog(AuditChainClient):
    """Appends access entries to the ``access-log`` chain with the archive's signing key."""

    @cached_property
    def _writer(self) -> AuditChainWriter:
        # Keeps the chain head between appends: a session's later entries cost four PUTs and no
        # listing; two auditors appending at once race for a seq, and the loser retries.
        return AuditChainWriter(
            self.store,
            ACCESS_LOG_CHAIN,
            signer=self.signer,
            archive_name=self.archive_name,
            what="access log",
            policy=self.policy,
            trust=self.trust,
        )

    def append(self, entry: AccessEntry, *, now_ms: int) -> Manifest:
        """Seal ``entry`` at ``now_ms``; returns the manifest that commits it."""
        detail = entry.detail()
        record = Record(
            chain_id=ACCESS_LOG_CHAIN,
            record_id=stable_id(
                "access", entry.who, now_ms, hashlib.sha256(detail.encode()).hexdigest()
            ),
            kind=Kind.ACCESS.value,
            origin=Origin.AUDITOR.value,
            direction=Direction.NONE.value,
            event_time=now_ms,
            received_time=now_ms,
            detail=detail,
        )
        return self._writer.append(record)


def result_digest(table: pa.Table) -> str:
    """SHA-256 of the result as JSON lines: the column names, then one array per row.

    Values are written as JSON with times in ISO 8601 (UTC), binary as lower-case hex and
    decimals as strings, so anyone holding the result can recompute the digest.
    """
    digest = hashlib.sha256()
    digest.update(orjson.dumps(table.column_names) + b"\n")
    for batch in table.to_batches(max_chunksize=10_000):
        columns = [column.to_pylist() for column in batch.columns]
        for row in zip(*columns, strict=True):
            digest.update(orjson.dumps([_plain(value) for value in row]) + b"\n")
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return repr(value)
    return value
