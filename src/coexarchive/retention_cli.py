"""``coexarchive dispose`` and ``coexarchive retention``: the end of retention, planned and done."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from coexarchive._internal.cliutil import AddOptions, MakeSettings, binder, parse_time
from coexarchive._internal.clock import now_ms
from coexarchive.disposition import (
    DISPOSITIONS_CHAIN,
    Disposer,
    DispositionPlan,
    plan_disposition,
    retention_report,
)
from coexarchive.query.access_log import auditor_identity


def _ranges(plan: DispositionPlan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for manifest in plan.due:
        out.setdefault(manifest.chain_id, []).append(f"{manifest.first_seq}..{manifest.last_seq}")
    return out


def cmd_dispose(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    settings = make_settings(args)
    store = settings.store()
    now = now_ms()
    plan = plan_disposition(store, until_ms=args.until, now_ms=now, trust=settings.trust())
    cutoff = plan.cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
    if args.json and not args.execute:
        print(json.dumps(_plan_json(plan), indent=2, sort_keys=True))
        return 0
    for chain_id, ranges in sorted(_ranges(plan).items()):
        records = sum(m.record_count for m in plan.due if m.chain_id == chain_id)
        print(f"due: chain {chain_id}: {len(ranges)} segment(s), {records} record(s)")
    for manifest, matters in plan.held:
        print(
            f"held: chain {manifest.chain_id} seq {manifest.first_seq}..{manifest.last_seq} "
            f"({manifest.record_count} record(s)) retention ended, kept for matter(s) "
            f"{', '.join(matters)}"
        )
    if plan.pending:
        print(f"pending: {len(plan.pending)} segment(s) sealed as disposed, content still there")
    if not args.execute:
        print(
            f"dry run: {len(plan.due)} segment(s), {plan.records()} record(s) whose retention "
            f"ended by {cutoff} would be disposed of; {len(plan.held)} held; nothing deleted "
            "(add --execute to seal the disposition and delete them)"
        )
        return 0
    who = auditor_identity(args.who)
    outcome = Disposer.for_settings(settings, store).execute(
        plan, who=who, now_ms=now, policy=settings.retention, reason=args.reason
    )
    sealed = ", ".join(str(m.last_seq) for m in outcome.sealed) or "none"
    print(
        f"disposed of {outcome.segments} segment(s), {outcome.records} record(s) whose retention "
        f"ended by {cutoff}: sealed in chain {DISPOSITIONS_CHAIN} at seq {sealed} by {who}, then "
        f"deleted {len(outcome.deleted)} object(s); leaf hashes kept under leaves/ so every "
        f"remaining record still proves; {len(plan.held)} segment(s) kept for legal holds"
    )
    return 0


def _plan_json(plan: DispositionPlan) -> dict[str, Any]:
    return {
        "cutoff": plan.cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "due": [
            {
                "chain": m.chain_id,
                "first_seq": m.first_seq,
                "last_seq": m.last_seq,
                "records": m.record_count,
                "retain_until": m.retention.retain_until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for m in plan.due
        ],
        "held": [
            {
                "chain": m.chain_id,
                "first_seq": m.first_seq,
                "last_seq": m.last_seq,
                "records": m.record_count,
                "matters": matters,
            }
            for m, matters in plan.held
        ],
        "pending": [entry.to_json() for entry in plan.pending],
    }


def cmd_retention(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    settings = make_settings(args)
    rows = retention_report(
        settings.store(), trust=settings.trust(), since_ms=args.since, until_ms=args.until
    )
    if args.json:
        print(json.dumps([row.to_json() for row in rows], indent=2, sort_keys=True))
        return 0
    if not rows:
        print("nothing falls due in this period")
        return 0
    header = ("MONTH", "CLASS", "CHAIN", "RECORDS", "HELD", "HELD FOR")
    table = [
        (r.month, r.kind, r.chain_id, f"{r.records:,}", f"{r.held:,}", ", ".join(r.matters) or "-")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print(
            "  ".join(
                cell.rjust(widths[i]) if i in (3, 4) else cell.ljust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
        )
    total, held = sum(r.records for r in rows), sum(r.held for r in rows)
    print(
        f"{total:,} record(s) fall due, {held:,} of them blocked by legal holds (as the "
        "manifests state; `coexarchive verify` proves them)"
    )
    return 0


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    bind = binder(make_settings)

    dispose = sub.add_parser(
        "dispose",
        help="dispose of segments whose retention has ended (dry run unless --execute)",
        description="Find every segment whose Object Lock retention ended by --until (and by "
        "now) and that no active legal hold covers. With --execute: check each against its "
        "seal, keep its leaf hashes under leaves/ (so every remaining record still proves into "
        "every checkpoint), seal a signed `disposition` record in chain `dispositions` naming "
        "what goes (keys, SHA-256s, seq ranges, counts, the policy, who), and only then delete "
        "the Parquet segment and its record index. Manifests and checkpoints stay. `verify` "
        "accepts exactly the missing content a signed disposition names.",
    )
    add_archive_options(dispose)
    dispose.add_argument(
        "--until", type=parse_time, required=True, help="dispose of what expired by this time"
    )
    dispose.add_argument(
        "--execute", action="store_true", help="seal the disposition and delete (default: plan)"
    )
    dispose.add_argument("--reason", help="free text sealed with the disposition")
    dispose.add_argument("--as", dest="who", help="who disposes (env COEXARCHIVE_AUDITOR)")
    dispose.add_argument("--key", type=Path, help="signing key file")
    dispose.add_argument("--json", action="store_true", help="print the plan as JSON (dry run)")
    dispose.set_defaults(handler=bind(cmd_dispose))

    retention = sub.add_parser(
        "retention",
        help="what falls due for disposition, per month, record class and chain",
        description="Per month in which segments' retention ends, per record class (kind) and "
        "chain: how many records fall due for disposition, how many of them an active legal "
        "hold blocks and which matters. From the manifests (unverified).",
    )
    add_archive_options(retention)
    retention.add_argument("--since", type=parse_time, help="retention ending from this time (ISO)")
    retention.add_argument(
        "--until", type=parse_time, help="retention ending before this time (ISO)"
    )
    retention.add_argument("--json", action="store_true", help="print JSON")
    retention.set_defaults(handler=bind(cmd_retention))
