"""Supervision subcommands: ``policy import|list|show|rescan`` and ``review list|show|decide|...``.

Registered by ``coexarchive.cli``. The clock and the reviewer's identity are read here, at the
edge. Every read of the archive (a rescan, the queue, a hit with its conversation, a report) is
sealed in the access log before its result is printed; every change is sealed in the
``policies`` or ``reviews`` chain with the audit key.
"""

from __future__ import annotations

import argparse
import hashlib
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from coexarchive._internal.cliutil import AddOptions, MakeSettings, binder, parse_time
from coexarchive._internal.clock import now_ms
from coexarchive.errors import ConfigError
from coexarchive.query.access_log import AccessEntry, AccessLog, auditor_identity
from coexarchive.query.views import ArchiveCatalog
from coexarchive.settings import Settings
from coexarchive.supervision import queue as review_queue
from coexarchive.supervision.library import import_policy, resolve_policy, sealed_policies
from coexarchive.supervision.policy import load_policy
from coexarchive.supervision.register import Sealer
from coexarchive.supervision.scan import (
    IngestRow,
    ingest_rows,
    message_fields,
    read_messages,
    rescan,
)

__all__ = ["register"]

_DAY_MS = 86_400_000


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def safe(text: str) -> str:
    """Control and bidi characters shown as escapes: archived text cannot drive the terminal."""
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf") else c for c in text
    )


class _Context:
    """The store, the audit key and the access log of one command."""

    def __init__(self, settings: Settings, who: str) -> None:
        self.settings = settings
        self.who = who
        self.store = settings.store()
        signer = settings.audit_signer()
        trust = settings.trust() if settings.trust_file.exists() else None
        self.sealer = Sealer.for_settings(settings, self.store, signer=signer, trust=trust)
        self.log = AccessLog.for_settings(settings, self.store, signer=signer, trust=trust)

    def logged(self, what: str, params: Mapping[str, Any], result: Any, rows: int) -> int:
        """Seal the access-log entry for a read; returns its seq. Call before printing."""
        digest = hashlib.sha256(orjson.dumps(result, option=orjson.OPT_SORT_KEYS)).hexdigest()
        entry = AccessEntry(
            who=self.who,
            sql=f"-- {what}",
            params=dict(params),
            rows=rows,
            result_sha256=digest,
            report=what,
        )
        return self.log.append(entry, now_ms=now_ms()).last_seq


def _context(args: argparse.Namespace, make_settings: MakeSettings) -> _Context:
    return _Context(make_settings(args), auditor_identity(args.who))


def _print_rows(rows: Sequence[Mapping[str, Any]], as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(list(rows), option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        print("(no rows)")
        return
    names = list(rows[0])
    cells = [[safe("" if r.get(n) is None else str(r.get(n))) for n in names] for r in rows]
    widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# --- policy --------------------------------------------------------------------------------------


def cmd_policy_import(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    policy = load_policy(args.file)  # a bad file fails before any key or store is touched
    ctx = _context(args, make_settings)
    outcome = import_policy(ctx.sealer, policy, who=ctx.who, now_ms=now_ms())
    sealed = outcome.policy
    if not outcome.created:
        print(f"policy {policy.label} is already sealed at policies seq {sealed.seq}; unchanged")
        return 0
    print(
        f"policy {policy.label}: {len(policy.rules)} rule(s) sealed at policies seq {sealed.seq} "
        f"by {ctx.who} (sha256 {policy.sha256()})"
    )
    return 0


def cmd_policy_list(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    ctx = _context(args, make_settings)
    rows = [
        {
            "policy": s.policy.label,
            "rules": len(s.policy.rules),
            "seq": s.seq,
            "sealed_at": _iso(s.sealed_at),
            "by": s.who,
            "sha256": s.policy.sha256(),
        }
        for s in sealed_policies(ctx.store)
    ]
    ctx.logged("policy list", {}, rows, len(rows))
    _print_rows(rows, args.json)
    return 0


def cmd_policy_show(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    ctx = _context(args, make_settings)
    sealed = resolve_policy(ctx.store, args.policy)
    document = sealed.policy.model_dump(mode="json")
    ctx.logged("policy show", {"policy": sealed.policy.label}, document, 1)
    print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_policy_rescan(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    if args.since is not None and args.until is not None and args.since >= args.until:
        raise ConfigError("--since must be before --until")
    ctx = _context(args, make_settings)
    sealed = resolve_policy(ctx.store, args.policy)
    keys = ctx.settings.readable_data_keys(clock=now_ms)
    outcome = rescan(
        ArchiveCatalog(ctx.store),
        ctx.sealer,
        sealed,
        who=ctx.who,
        now_ms=now_ms(),
        since=args.since,
        until=args.until,
        chains=args.chain,
        keys=keys,
        hit_keys=keys.live_key if keys is not None else None,
    )
    params = {
        "policy": sealed.policy.label,
        "since": _iso(args.since) or None,
        "until": _iso(args.until) or None,
        "chains": args.chain,
    }
    found = sorted(hit.record_id for hit in outcome.found)
    seq = ctx.logged("policy rescan", params, found, outcome.scanned)
    for chain, counts in sorted(outcome.counts.items()):
        print(
            f"chain {chain}: {counts.scanned} message(s) scanned, {counts.hits} hit(s) "
            f"({counts.sampled} sampled)"
        )
    where = f" at reviews seq up to {outcome.manifest.last_seq}" if outcome.manifest else ""
    print(
        f"policy {sealed.policy.label}: {len(outcome.found)} hit(s), {len(outcome.sealed)} new "
        f"sealed{where}; {len(outcome.found) - len(outcome.sealed)} already in the queue; "
        f"logged as access-log seq {seq}"
    )
    return 0


# --- review --------------------------------------------------------------------------------------


def _at_ingest(ctx: _Context) -> list[IngestRow]:
    return ingest_rows(ArchiveCatalog(ctx.store))


def _queue(ctx: _Context) -> review_queue.Queue:
    """Hits sealed by rescans (``reviews``) and by ingest (the business chains), one queue."""
    reviews, at_ingest = review_queue.sources(ctx.store)
    return review_queue.fold(reviews, at_ingest, keys=ctx.settings.readable_data_keys(clock=now_ms))


def cmd_review_list(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    ctx = _context(args, make_settings)
    now = now_ms()
    hits = review_queue.select(
        _queue(ctx),
        policy=args.policy,
        chain=args.chain,
        assignee=args.assignee,
        state=args.state,
        older_than_ms=int(args.older_than * _DAY_MS) if args.older_than is not None else None,
        now_ms=now,
    )
    rows = [
        {
            "id": hit.id[:12],
            "found": _iso(hit.found_at),
            "age_days": f"{(now - hit.found_at) / _DAY_MS:.1f}",
            "policy": hit.policy,
            "rule": hit.rule,
            "chain": hit.chain,
            "seq": hit.detail.get("seq"),
            "found_by": hit.detail.get("found_by"),
            "assignee": hit.assignee,
            "state": hit.disposition or "open",
            "matched": str(hit.detail["customer"])
            if hit.detail.get("erased") or hit.detail.get("sealed")
            else ", ".join(str(s.get("words")) for s in hit.detail.get("spans", []))
            or ", ".join(hit.detail.get("flags", [])),
        }
        for hit in hits
    ]
    params = {
        "policy": args.policy,
        "chain": args.chain,
        "assignee": args.assignee,
        "state": args.state,
        "older_than_days": args.older_than,
    }
    ctx.logged("review list", params, [h.id for h in hits], len(rows))
    if args.json:
        _print_rows([hit.to_json() for hit in hits], True)
    else:
        _print_rows(rows, False)
    return 0


def cmd_review_show(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    if args.context < 0 or args.days < 0:
        raise ConfigError("--context and --days count messages and days: 0 or more")
    ctx = _context(args, make_settings)
    hit = _queue(ctx).find(args.id)
    detail = hit.detail
    chain, record_id, customer = (
        str(detail["chain"]),
        str(detail["record_id"]),
        detail.get("customer"),
    )
    if detail.get("erased") or detail.get("sealed"):
        customer = None  # no conversation to show of an erased (or unopened) customer
    catalog = ArchiveCatalog(ctx.store)
    catalog.refresh(chain)
    at = _parse_iso(str(detail["message_time"]))
    window = args.days * _DAY_MS
    rows, _ = read_messages(
        catalog,
        chain,
        since=at - window,
        until=at + window + 1,
        customer=customer,
        keys=ctx.settings.readable_data_keys(clock=now_ms),
    )
    rows.sort(key=lambda r: (r.event_time, r.seq))
    index = next((i for i, r in enumerate(rows) if r.record_id == record_id), None)
    if index is None:
        raise ConfigError(
            f"hit {hit.id[:12]}: message {record_id} of chain {chain} is not in the archive; "
            "run `coexarchive verify`"
        )
    message = rows[index]
    seq = message.seq
    # A rescan's hit names the message's leaf hash; ingest's hit is sealed in the message's own
    # chain, by the run that sealed the message, and names it by record id (read checked above).
    if "leaf_hash" in detail:
        proven = message.leaf_hash.hex() == detail.get("leaf_hash")
    else:
        proven = hit.sealed_in == chain
    # Without a customer there is no conversation to show: only the message itself.
    context = review_queue.context_window(rows, index, args.context) if customer else [message]
    shown: list[dict[str, Any]] = [
        {
            "seq": r.seq,
            "time": _iso(r.event_time),
            "kind": r.kind,
            "fields": message_fields(r),
            "hit": r.seq == seq,
        }
        for r in context
    ]
    document = {"hit": hit.to_json(), "message_matches_hit": proven, "conversation": shown}
    seq_logged = ctx.logged("review show", {"hit": hit.id}, document, len(shown))
    if args.json:
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"hit {hit.id}  policy {hit.policy}  rule {hit.rule} ({detail.get('rule_type')})")
    print(f"found {_iso(hit.found_at)}; state {hit.disposition or 'open'}", end="")
    print(f"; assigned to {hit.assignee}" if hit.assignee else "")
    for span in detail.get("spans", []):
        print(
            f"  matched {safe(str(span['term']))!r} as {safe(str(span['words']))!r} in "
            f"{span['field']} words {span['start']}-{span['end']}"
        )
    if detail.get("flags"):
        print(f"  flags: {', '.join(detail['flags'])}")
    print(
        f"message: chain {chain} seq {seq} ({detail.get('message_kind')}), customer {customer}; "
        + (
            "sealed record matches the hit's leaf hash"
            if proven
            else "WARNING: the sealed record's leaf hash differs from the hit's"
        )
    )
    print(f"conversation ({len(shown)} message(s) around it):")
    for item in shown:
        marker = ">>" if item["hit"] else "  "
        text = " | ".join(f"{k}: {v}" for k, v in item["fields"].items())
        print(f"{marker} {item['time']} seq {item['seq']} {item['kind']}: {safe(text)}")
    for event in hit.history:
        print(
            f"  {_iso(event['at'])} {event['action']} by {event.get('who')}: "
            f"{safe(str(event.get('disposition') or event.get('to') or ''))} "
            f"{safe(str(event.get('note') or ''))}".rstrip()
        )
    print(f"-- logged as access-log seq {seq_logged}")
    return 0


def _parse_iso(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def _act(action: str) -> Callable[[argparse.Namespace, MakeSettings], int]:
    def handler(args: argparse.Namespace, make_settings: MakeSettings) -> int:
        ctx = _context(args, make_settings)
        keys = ctx.settings.readable_data_keys(clock=now_ms)
        hit, seq = review_queue.act(
            ctx.sealer,
            args.id,
            action,
            who=ctx.who,
            now_ms=now_ms(),
            disposition=getattr(args, "disposition", None),
            note=getattr(args, "note", None),
            to=getattr(args, "to", None),
            at_ingest=_at_ingest(ctx),
            keys=keys,
            note_key=keys.live_key if keys is not None else None,
        )
        what = {
            "decide": f"decided {getattr(args, 'disposition', '')}",
            "assign": f"assigned to {getattr(args, 'to', '')}",
            "reopen": "reopened",
        }[action]
        print(f"hit {hit.id[:12]}: {what} by {ctx.who}; sealed at reviews seq {seq}")
        return 0

    return handler


def cmd_review_report(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    if args.list or not args.name:
        for name, (summary, _) in review_queue.REPORTS.items():
            print(f"{name:<16} {summary}")
        return 0
    ctx = _context(args, make_settings)
    rows = review_queue.report(args.name, _queue(ctx), now_ms=now_ms())
    for row in rows:
        for key in ("decided_at", "sealed_at"):
            if key in row:
                row[key] = _iso(row[key])
    seq = ctx.logged(f"review report {args.name}", {}, rows, len(rows))
    _print_rows(rows, args.json)
    if not args.json:
        print(f"-- {len(rows)} row(s), logged as access-log seq {seq}")
    return 0


# --- registration --------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, add_archive_options: AddOptions) -> None:
    add_archive_options(parser)
    parser.add_argument("--as", dest="who", help="who acts (env COEXARCHIVE_AUDITOR)")
    parser.add_argument("--key", type=Path, help="signing key file (the audit key)")
    parser.add_argument("--trust", type=Path, help="trust file (env COEXARCHIVE_TRUST)")


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    bind = binder(make_settings)

    policy = sub.add_parser(
        "policy",
        help="supervision policies: import (sealed), list, show, rescan the archive",
        description="Supervision policies (schemas/POLICY.md): lexicons per language with "
        "exclusions and proximity, flag rules and random samples. Each version is sealed in the "
        "chain `policies`; rescans seal hits in the chain `reviews`.",
    )
    psub = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    imp = psub.add_parser("import", help="validate a policy file and seal this version")
    _common(imp, add_archive_options)
    imp.add_argument("file", type=Path, help="policy file (.yaml, .yml or .json)")
    imp.set_defaults(handler=bind(cmd_policy_import))

    listing = psub.add_parser("list", help="list the sealed policy versions")
    _common(listing, add_archive_options)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=bind(cmd_policy_list))

    show = psub.add_parser("show", help="print a sealed policy version as JSON")
    _common(show, add_archive_options)
    show.add_argument("policy", help="NAME (newest version) or NAME@VERSION")
    show.set_defaults(handler=bind(cmd_policy_show))

    scan = psub.add_parser(
        "rescan",
        help="scan archived messages with a sealed policy and seal the new hits",
        description="Match every message (inbound, echoes, Cloud API sends, history, edits: "
        "text, captions, document names) in the window against the policy. A hit is sealed once "
        "per policy version, rule and message, so rescanning adds only new hits.",
    )
    _common(scan, add_archive_options)
    scan.add_argument("--policy", required=True, help="NAME (newest version) or NAME@VERSION")
    scan.add_argument("--since", type=parse_time, help="messages from this time (ISO)")
    scan.add_argument("--until", type=parse_time, help="messages before this time (ISO)")
    scan.add_argument("--chain", action="append", help="only this chain; repeatable")
    scan.set_defaults(handler=bind(cmd_policy_rescan))

    review = sub.add_parser(
        "review",
        help="the supervision review queue: list, show, assign, decide, reopen, report",
        description="Hits found by ingest (as it seals new messages, in their own chain) and "
        "by `policy rescan` (in the chain `reviews`), and what reviewers decided. Every decision "
        "is sealed in the chain `reviews` with the reviewer's name and time; every read is "
        "sealed in the access log.",
    )
    rsub = review.add_subparsers(dest="review_command", metavar="ACTION", required=True)
    lst = rsub.add_parser("list", help="hits in the queue (open ones by default)")
    _common(lst, add_archive_options)
    lst.add_argument("--policy", help="NAME or NAME@VERSION")
    lst.add_argument("--chain", help="business chain")
    lst.add_argument("--assignee", help="assigned to this reviewer")
    lst.add_argument("--older-than", type=float, metavar="DAYS", help="found at least DAYS ago")
    lst.add_argument(
        "--state", choices=("open", "decided", "all"), default="open", help="which hits"
    )
    lst.add_argument("--json", action="store_true", help="print each hit whole, as JSON")
    lst.set_defaults(handler=bind(cmd_review_list))

    shw = rsub.add_parser("show", help="a hit with the conversation around its message")
    _common(shw, add_archive_options)
    shw.add_argument("id", help="hit id (at least 6 leading digits)")
    shw.add_argument("--context", type=int, default=3, help="messages before and after")
    shw.add_argument("--days", type=int, default=7, help="look this many days around it")
    shw.add_argument("--json", action="store_true", help="print JSON")
    shw.set_defaults(handler=bind(cmd_review_show))

    decide = rsub.add_parser("decide", help="decide a hit (once; reopen to decide again)")
    _common(decide, add_archive_options)
    decide.add_argument("id", help="hit id (at least 6 leading digits)")
    decide.add_argument(
        "--disposition", required=True, choices=review_queue.DISPOSITIONS, help="the outcome"
    )
    decide.add_argument("--note", required=True, help="the reason, kept in the sealed record")
    decide.set_defaults(handler=bind(_act("decide")))

    assign = rsub.add_parser("assign", help="assign a hit to a reviewer")
    _common(assign, add_archive_options)
    assign.add_argument("id", help="hit id (at least 6 leading digits)")
    assign.add_argument("--to", required=True, help="the reviewer")
    assign.set_defaults(handler=bind(_act("assign")))

    reopen = rsub.add_parser("reopen", help="re-open a decided hit (sealed as its own event)")
    _common(reopen, add_archive_options)
    reopen.add_argument("id", help="hit id (at least 6 leading digits)")
    reopen.add_argument("--note", required=True, help="why it is re-opened")
    reopen.set_defaults(handler=bind(_act("reopen")))

    rep = rsub.add_parser("report", help="supervision reports (--list shows them)")
    _common(rep, add_archive_options)
    rep.add_argument(
        "name",
        nargs="?",
        choices=sorted(review_queue.REPORTS),
        metavar="NAME",
        help="one of: " + ", ".join(review_queue.REPORTS),
    )
    rep.add_argument("--list", action="store_true", help="list the reports, one line each")
    rep.add_argument("--json", action="store_true", help="print JSON")
    rep.set_defaults(handler=bind(cmd_review_report))
