"""RFC 3161 timestamps over archive heads: requesting, storing, sealing and checking them.

After a head is signed, each configured authority is asked for a token over the head's *note
text* (its body: the bytes the archive key signed, whose SHA-256 the next head's ``prev`` line
holds). Tokens are stored create-only under ``anchors/timestamps/<seq, 20 digits>/<tsa>.tsr``
with the head's own Object Lock. The next head seals each new token's SHA-256 in an
``anchor/timestamp`` line, and names each authority that gave none in an
``anchor/timestamp-missing`` line; a later run asks again for every head so named, and the head
after it seals what it got. An authority that is down never stops a commit.

Checking (``verify``): every sealed digest names a stored token with exactly those bytes; every
stored token verifies (signature, chain to the configured roots, imprint = SHA-256 of its head's
note text); a token sealed in head ``H`` is no later than any token over ``H`` or a later head
(it existed when ``H`` was signed); heads without a token from a configured authority are
reported as gaps. A token over head ``t`` at time ``T`` proves every head up to ``t`` (heads link
back) existed at ``T``: ``verify --at TIME`` names the newest head so proven.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coexarchive.anchor.tsa import CheckedToken, Tsa, check_token, request_timestamp
from coexarchive.errors import (
    AnchorError,
    Failure,
    FormatError,
    ObjectMissingError,
    SignatureError,
)
from coexarchive.seal.head import (
    HEAD_PREFIX,
    AnchorLine,
    ArchiveHead,
    head_key,
    head_seq,
    open_head,
)
from coexarchive.seal.keys import TrustStore
from coexarchive.store.base import ObjectStore

__all__ = [
    "STEP",
    "TIMESTAMP_PREFIX",
    "TimestampSummary",
    "anchor_lines",
    "check_timestamps",
    "timestamp_heads",
    "token_key",
]

log = logging.getLogger(__name__)

STEP = "timestamp"
TIMESTAMP_PREFIX = "anchors/timestamps/"
_TOKEN_SUFFIX = ".tsr"  # noqa: S105 - a file suffix, not a secret


def token_key(seq: int, tsa_name: str) -> str:
    return f"{TIMESTAMP_PREFIX}{seq:020d}/{tsa_name}{_TOKEN_SUFFIX}"


def parse_token_key(key: str) -> tuple[int, str] | None:
    rest = key[len(TIMESTAMP_PREFIX) :] if key.startswith(TIMESTAMP_PREFIX) else ""
    seq_text, _, name = rest.partition("/")
    if len(seq_text) != 20 or not seq_text.isdigit() or not name.endswith(_TOKEN_SUFFIX):
        return None
    return int(seq_text), name[: -len(_TOKEN_SUFFIX)]


def _wanted(head: ArchiveHead, tsa_name: str) -> list[int]:
    """Heads ``head``'s successor must account for: ``head`` itself and the gaps it names."""
    gaps = {a.seq for a in head.anchored("timestamp-missing") if a.name == tsa_name}
    return sorted({head.seq} | gaps)


def _head_text(store: ObjectStore, seq: int, trust: TrustStore, archive_name: str) -> bytes:
    head, _ = open_head(store.get(head_key(seq)), trust, archive_name=archive_name)
    return head.body()


def anchor_lines(
    store: ObjectStore,
    newest: ArchiveHead | None,
    tsas: Sequence[Tsa],
    *,
    trust: TrustStore,
    archive_name: str,
) -> list[AnchorLine]:
    """The anchor lines the head after ``newest`` carries.

    The writer seals only a token it has checked itself (signature, chain, imprint); a stored
    token that does not check is left unsealed and the gap stays named.
    """
    if newest is None:
        return []
    lines: list[AnchorLine] = []
    for tsa in tsas:
        for seq in _wanted(newest, tsa.name):
            key = token_key(seq, tsa.name)
            try:
                token = store.get(key)
                text = (
                    newest.body()
                    if seq == newest.seq
                    else _head_text(store, seq, trust, archive_name)
                )
                check_token(token, text, tsa.roots, name=tsa.name)
            except ObjectMissingError:
                lines.append(AnchorLine("timestamp-missing", seq, tsa.name))
                continue
            except (SignatureError, FormatError) as exc:
                log.warning("not sealing timestamp %s: %s", key, exc)
                lines.append(AnchorLine("timestamp-missing", seq, tsa.name))
                continue
            lines.append(AnchorLine("timestamp", seq, tsa.name, hashlib.sha256(token).digest()))
    return lines


@dataclass
class TimestampRun:
    """What one round of timestamp requests did."""

    stored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def timestamp_heads(
    store: ObjectStore,
    newest: ArchiveHead,
    tsas: Sequence[Tsa],
    *,
    trust: TrustStore,
    archive_name: str,
    timeout: float = 10.0,
) -> TimestampRun:
    """Ask every authority for the newest head and each gap it names; never raises AnchorError.

    A failure is logged and listed; the next head names it as missing and the run after asks
    again.
    """
    run = TimestampRun()
    try:
        retention = store.info(head_key(newest.seq)).retention
    except ObjectMissingError:
        retention = None
    for tsa in tsas:
        for seq in _wanted(newest, tsa.name):
            key = token_key(seq, tsa.name)
            if store.exists(key):
                continue
            try:
                text = (
                    newest.body()
                    if seq == newest.seq
                    else _head_text(store, seq, trust, archive_name)
                )
                token = request_timestamp(tsa, text, timeout=timeout)
                store.put(
                    key, token, retention=retention, content_type="application/timestamp-reply"
                )
            except (AnchorError, SignatureError, FormatError, ObjectMissingError) as exc:
                log.warning("timestamp of archive head %d from %s failed: %s", seq, tsa.name, exc)
                run.failed.append(f"head {seq} from {tsa.name}: {exc}")
                continue
            run.stored.append(key)
    return run


# --- checking ------------------------------------------------------------------------------------


@dataclass
class TimestampSummary:
    """What the timestamps prove, for the report."""

    tokens: int = 0
    sealed: int = 0
    # authority -> seqs of heads it has no token for (the gaps), as "a..b" ranges
    gaps: dict[str, list[str]] = field(default_factory=dict)
    newest_proven: dict[str, Any] | None = None
    at: str | None = None
    proven_at: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        out = [f"timestamps: {self.tokens} token(s) verified, {self.sealed} sealed in later heads"]
        if self.newest_proven:
            p = self.newest_proven
            out.append(f"timestamps: archive head {p['seq']} existed by {p['time']} ({p['tsa']})")
        for name, ranges in sorted(self.gaps.items()):
            out.append(f"timestamp gap: no token from {name} for head(s) {', '.join(ranges)}")
        if self.at is not None:
            if self.proven_at:
                p = self.proven_at
                out.append(
                    f"at {self.at}: archive head {p['seq']} is the newest a timestamp proves "
                    f"existed ({p['tsa']}, {p['time']})"
                )
            else:
                out.append(f"at {self.at}: no timestamp proves any archive head existed")
        return out


def _ranges(seqs: Iterable[int]) -> list[str]:
    out: list[str] = []
    ordered = sorted(seqs)
    start = prev = None
    for seq in [*ordered, None]:
        if seq is not None and prev is not None and seq == prev + 1:
            prev = seq
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}..{prev}")
        start = prev = seq
    return out


def _verified_heads(
    store: ObjectStore, trust: TrustStore, archive_name: str | None
) -> dict[int, ArchiveHead]:
    """Heads that open with the trust file (the archive-head step reports the others)."""
    heads: dict[int, ArchiveHead] = {}
    for key in store.list(HEAD_PREFIX):
        seq = head_seq(key)
        if seq is None:
            continue
        try:
            head, _ = open_head(store.get(key), trust, archive_name=archive_name)
        except (SignatureError, FormatError, ObjectMissingError):
            continue
        if head.seq == seq:
            heads[seq] = head
    return heads


def check_timestamps(
    store: ObjectStore,
    trust: TrustStore,
    tsas: Sequence[Tsa],
    failures: list[Failure],
    *,
    archive_name: str | None = None,
    at: datetime | None = None,
) -> TimestampSummary:
    """Check every stored and sealed token; failures go to ``failures``."""

    def fail(message: str, key: str | None = None) -> None:
        failures.append(Failure(STEP, message, None, key))

    roots = {tsa.name: tsa for tsa in tsas}
    heads = _verified_heads(store, trust, archive_name)
    summary = TimestampSummary(at=at.isoformat() if at else None)
    checked: dict[tuple[int, str], CheckedToken] = {}
    digests: dict[tuple[int, str], bytes] = {}

    # 1. Every stored token is over its head's note text and chains to the configured roots.
    for key in store.list(TIMESTAMP_PREFIX):
        parsed = parse_token_key(key)
        if parsed is None:
            fail("unexpected object among the timestamps", key)
            continue
        seq, name = parsed
        if seq not in heads:
            fail(f"timestamp for archive head {seq}, which is not a verified head", key)
            continue
        tsa = roots.get(name)
        if tsa is None:
            fail(
                f"timestamp from {name}, which the TSA file does not name (no roots to check)", key
            )
            continue
        token = store.get(key)
        digests[seq, name] = hashlib.sha256(token).digest()
        try:
            checked[seq, name] = check_token(token, heads[seq].body(), tsa.roots, name=name)
        except (SignatureError, FormatError) as exc:
            fail(f"timestamp of archive head {seq}: {exc}", key)
    summary.tokens = len(checked)

    # 2. Every digest a head sealed names exactly the stored token; 3. and that token is no later
    #    than any token over the sealing head or a later one.
    earliest_from: dict[int, datetime] = {}
    running: datetime | None = None
    for seq in sorted(heads, reverse=True):
        for (token_seq, _), found in checked.items():
            if token_seq == seq and (running is None or found.gen_time < running):
                running = found.gen_time
        if running is not None:
            earliest_from[seq] = running
    for seq, head in sorted(heads.items()):
        for line in head.anchored("timestamp"):
            key = token_key(line.seq, line.name)
            stored = digests.get((line.seq, line.name))
            if stored is None:
                fail(
                    f"archive head {seq} sealed a timestamp of head {line.seq} from {line.name} "
                    "that is not in the archive (deleted?)",
                    key,
                )
                continue
            if stored != line.digest:
                fail(
                    f"the timestamp of head {line.seq} from {line.name} differs from the one "
                    f"archive head {seq} sealed (replaced?)",
                    key,
                )
                continue
            summary.sealed += 1
            sealed = checked.get((line.seq, line.name))
            bound = earliest_from.get(seq)
            if sealed is not None and bound is not None and sealed.gen_time > bound:
                fail(
                    f"timestamp of head {line.seq} from {line.name} "
                    f"({sealed.gen_time.isoformat()}) "
                    f"is later than a timestamp of head {seq} or later ({bound.isoformat()}), "
                    f"though head {seq} sealed it: times are not monotonic with the heads",
                    key,
                )

    # 4. Gaps: heads without a token from a configured authority.
    for tsa in tsas:
        missing = [seq for seq in heads if (seq, tsa.name) not in checked]
        if missing:
            summary.gaps[tsa.name] = _ranges(missing)

    # 5. What the tokens prove: a token over head t proves every head up to t existed then.
    def newest(before: datetime | None) -> dict[str, Any] | None:
        best: tuple[int, CheckedToken] | None = None
        for (seq, _), token in checked.items():
            if before is not None and token.gen_time > before:
                continue
            if (
                best is None
                or seq > best[0]
                or (seq == best[0] and token.gen_time < best[1].gen_time)
            ):
                best = (seq, token)
        if best is None:
            return None
        return {"seq": best[0], "tsa": best[1].name, "time": best[1].gen_time.isoformat()}

    summary.newest_proven = newest(None)
    if at is not None:
        summary.proven_at = newest(at)
    return summary
