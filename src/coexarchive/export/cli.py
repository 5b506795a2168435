"""Legal-team subcommands: ``hold place|release|list``, ``export`` and ``verify-bundle``.

Registered by ``coexarchive.cli`` like ``coexarchive.commands``; the clock and the caller's
identity are read here, at the edge, and passed down.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from coexarchive._internal.cliutil import AddOptions, MakeSettings, parse_customer, parse_time
from coexarchive._internal.clock import now_ms
from coexarchive.anchor.tsa import load_tsa_file
from coexarchive.anchor.witness import load_witness_policy
from coexarchive.export.bundle import ExportRequest, Selection, export_bundle, read_bundle
from coexarchive.export.holds import HoldRegister, HoldScope, coverage
from coexarchive.export.verify_bundle import BundleReport, BundleVerificationError, verify_bundle
from coexarchive.export.zipfiles import DEFAULT_LIMITS, ReadLimits
from coexarchive.query.access_log import AccessLog, auditor_identity
from coexarchive.query.session import AuditSession
from coexarchive.query.views import ArchiveCatalog
from coexarchive.seal.keys import TrustStore
from coexarchive.settings import Settings

__all__ = ["register"]


def _pin(text: str) -> tuple[str, int]:
    chain, _, size = text.partition("=")
    if not chain or not size.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not CHAIN=TREE_SIZE")
    return chain, int(size)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


# --- hold ----------------------------------------------------------------------------------------


def _register(settings: Settings) -> HoldRegister:
    return HoldRegister.for_settings(settings)


def cmd_hold_place(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    scope = HoldScope(customer=args.customer, chain=args.chain, since=args.since, until=args.until)
    who = auditor_identity(args.who)
    outcome = _register(make_settings(args)).place(
        args.matter, scope, who=who, now_ms=now_ms(), reason=args.reason
    )
    if outcome.sealed is None:
        print(
            f"matter {args.matter}: already held ({outcome.segments} segment(s)); nothing new to "
            "hold"
        )
        return 0
    if not outcome.segments:
        print(
            f"matter {args.matter}: prospective hold recorded at seq {outcome.sealed.last_seq} "
            f"by {who}: no sealed record matches yet; matching records are held as they are sealed"
        )
        return 0
    print(
        f"matter {args.matter}: legal hold placed on {len(outcome.keys)} object(s) of "
        f"{outcome.segments} segment(s); recorded in the hold register at seq "
        f"{outcome.sealed.last_seq} by {who}; records sealed later that match are held too"
    )
    return 0


def cmd_hold_release(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    who = auditor_identity(args.who)
    outcome = _register(make_settings(args)).release(
        args.matter, who=who, now_ms=now_ms(), reason=args.reason
    )
    print(
        f"matter {args.matter}: released by {who}; legal hold removed from {len(outcome.keys)} "
        f"object(s), kept on {len(outcome.kept)} still held by other matters"
    )
    return 0


def cmd_hold_list(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    settings = make_settings(args)
    matters = coverage(settings.store(), trust=settings.trust(), include_released=args.all)
    if args.json:
        documents = []
        for matter in matters:
            document = matter.hold.to_json()
            document.update(
                objects=len(matter.keys),
                records=matter.records,
                segments=matter.segments,
                prospective=matter.prospective,
            )
            documents.append(document)
        print(orjson.dumps(documents, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not matters:
        print("no active legal holds" if not args.all else "no legal holds")
    for matter in matters:
        hold = matter.hold
        if not hold.active:
            state = f"released {_iso(hold.released_at or 0)}"
        else:
            state = (
                "ACTIVE, PROSPECTIVE (nothing sealed matches yet)"
                if matter.prospective
                else "ACTIVE"
            )
        scopes = "; ".join(
            ", ".join(f"{k}={v}" for k, v in scope.items() if v is not None)
            for scope in hold.scopes
        )
        held = (
            f"{len(matter.keys)} object(s) holding {matter.records} record(s) now held"
            if hold.active
            else f"{len(hold.keys)} object(s) were held"
        )
        print(
            f"{hold.matter}: {state}; placed {_iso(hold.placed_at)} by {hold.placed_by}; "
            f"{held}; scope {scopes}"
        )
    return 0


# --- export --------------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    settings = make_settings(args)
    store = settings.store()
    trust = settings.trust()
    who = auditor_identity(args.who)
    now = now_ms()
    selection = Selection(
        customer=args.customer, query=args.query, since=args.since, until=args.until
    )
    request = ExportRequest(
        matter=args.matter,
        selection=selection,
        who=who,
        as_of=args.as_of if args.as_of is not None else now,
        zone=args.tz,
        tree_sizes=dict(args.at or ()),
    )
    log = AccessLog.for_settings(settings, store, trust=trust)
    catalog = ArchiveCatalog(store)
    keys = settings.readable_data_keys(clock=now_ms)
    query_result = None
    if args.query is not None:
        session = AuditSession(
            store,
            access_log=log,
            who=who,
            trust=trust,
            catalog=catalog,
            keys=keys,
        )
        query_result = session.query(args.query).table
    result = export_bundle(
        catalog,
        trust,
        request,
        access_log=log,
        sealed_at_ms=now,
        out=args.out,
        query_result=query_result,
        keys=keys,
    )
    bundle = result.bundle
    counts = bundle.custody["counts"]
    print(
        f"exported {bundle.record_count} record(s) of {counts['chains']} chain(s), "
        f"{counts['conversations']} conversation(s), to {args.out}"
    )
    for tree in bundle.trees:
        print(f"  chain {tree.chain_id}: proofs to the checkpoint at tree size {tree.size}")
    print(f"MANIFEST sha256 {bundle.manifest_sha256}")
    print(
        f"custody entry sealed in the access log at seq {result.access.last_seq} "
        f"(CUSTODY.json sha256 {bundle.custody_sha256})"
    )
    pins = " ".join(f"--at {t.chain_id}={t.size}" for t in bundle.trees)
    print(f"reproduce byte for byte with: --as {who!r} --as-of {bundle.custody['when']} {pins}")
    return 0


# --- verify-bundle -------------------------------------------------------------------------------


# Exit status of verify-bundle: every check held but only against the bundle's own keys.
EXIT_UNTRUSTED = 3


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    limits = ReadLimits(
        max_members=args.max_members,
        max_member_bytes=args.max_member_bytes,
        max_total_bytes=args.max_bundle_bytes,
    )
    trust = TrustStore.from_file(args.trust) if args.trust else None
    files = read_bundle(args.path, limits)
    try:
        report = verify_bundle(
            files,
            trust=trust,
            trust_bundle_keys=args.trust_bundle_keys,
            workers=args.workers,
            limits=limits,
            tsas=load_tsa_file(args.tsa_file) if args.tsa_file else (),
            witnesses=load_witness_policy(args.witnesses) if args.witnesses else None,
        )
    except BundleVerificationError as exc:
        report = exc.report
    if args.report:
        lines = b"".join(orjson.dumps(r.to_json()) + b"\n" for r in report.records)
        Path(args.report).write_bytes(lines)
    if args.json:
        document: dict[str, Any] = report.to_json()
        document["records"] = [r.to_json() for r in report.records]
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    elif report.format is None:
        # Refused before anything was checked (an unknown format, no BUNDLE.json): one line each.
        for failure in report.failures:
            print(f"coexarchive: verify-bundle: {args.path}: {failure}", file=sys.stderr)
    else:
        _print_report(report, verbose=args.verbose)
    if not report.ok:
        return 1
    return 0 if report.trusted else EXIT_UNTRUSTED


def _print_report(report: BundleReport, *, verbose: bool) -> None:
    good = sum(1 for r in report.records if r.ok)
    print(f"matter {report.matter}: {len(report.records)} record(s), {good} proven")
    for chain in report.chains:
        print(f"  chain {chain['chain_id']}: checkpoint at tree size {chain['tree_size']} verified")
    print(f"keys: {report.trust_source}")
    if report.anchors is not None:
        times = ", ".join(f"{n} {t}" for n, t in sorted(report.anchors["timestamps"].items()))
        print(
            f"anchors: archive head {report.anchors['head']}; timestamps: {times or 'none checked'}"
            f"; cosigned by: {', '.join(report.anchors['witnesses']) or 'none checked'}"
        )
    for warning in report.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    if verbose:
        for record in report.records:
            state = "ok" if record.ok else "FAILED: " + "; ".join(record.problems)
            print(f"  record line {record.line} chain {record.chain_id} seq {record.seq}: {state}")
    print("checks: " + ", ".join(f"{i}. {step}" for i, step in enumerate(report.steps, 1)))
    keys = ", ".join(report.key_ids) or "none"
    if not report.ok:
        print(str(BundleVerificationError(report)))
    elif report.trusted:
        print(
            f"OK: every file, record, proof and checkpoint verified against trusted key(s) {keys}"
        )
    else:
        print(
            "UNTRUSTED: every check held, but only against the keys the bundle itself carries "
            f"({keys}): this proves the bundle is intact, NOT who made it; verify with --trust "
            "and the archive's trust file, obtained from its owner, for OK"
        )


# --- registration --------------------------------------------------------------------------------


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    def bind(
        handler: Callable[[argparse.Namespace, MakeSettings], int],
    ) -> Callable[[argparse.Namespace], int]:
        return lambda args: handler(args, make_settings)

    hold = sub.add_parser(
        "hold",
        help="place, release or list legal holds by matter",
        description="Legal holds: an S3 legal hold on every object holding matching records, "
        "recorded in the sealed hold register (chain `holds`). Held objects cannot be deleted, "
        "even after their retention expires, until every matter holding them is released.",
    )
    hold_sub = hold.add_subparsers(dest="hold_command", metavar="ACTION", required=True)
    place = hold_sub.add_parser(
        "place",
        help="hold every object holding a customer's (or a chain's) records",
        description="Put a legal hold on each segment (Parquet, record index, manifest, "
        "checkpoint) holding matching records, then seal the placement. The hold follows the "
        "data: until released, ingest holds every new segment holding matching records before "
        "committing it. A scope that matches nothing yet is recorded as a prospective hold. "
        "Phone numbers may be typed with + and spaces (+65 9170 3423).",
    )
    add_archive_options(place)
    place.add_argument("--matter", required=True, help="matter name or reference")
    target = place.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--customer", type=parse_customer, help="customer wa_id or BSUID (in every business chain)"
    )
    target.add_argument("--chain", help="a whole chain (business phone number id)")
    place.add_argument("--since", type=parse_time, help="records from this time (ISO, inclusive)")
    place.add_argument("--until", type=parse_time, help="records before this time (ISO, exclusive)")
    place.add_argument("--reason", help="free text kept in the register")
    place.add_argument("--as", dest="who", help="who places the hold (env COEXARCHIVE_AUDITOR)")
    place.add_argument("--key", type=Path, help="signing key file")
    place.set_defaults(handler=bind(cmd_hold_place))

    release = hold_sub.add_parser(
        "release",
        help="release a matter's holds",
        description="Seal the release, then remove the legal hold from the matter's objects "
        "that no other active matter holds.",
    )
    add_archive_options(release)
    release.add_argument("--matter", required=True, help="the matter whose holds to release")
    release.add_argument("--reason", help="free text kept in the register")
    release.add_argument("--as", dest="who", help="who releases (env COEXARCHIVE_AUDITOR)")
    release.add_argument("--key", type=Path, help="signing key file")
    release.set_defaults(handler=bind(cmd_hold_release))

    listing = hold_sub.add_parser(
        "list",
        help="list legal holds, with the objects and records each holds now",
        description="List the matters of the sealed hold register; for each active one, the "
        "objects and records its scopes cover now (prospective when nothing sealed matches yet).",
    )
    add_archive_options(listing)
    listing.add_argument("--all", action="store_true", help="include released matters")
    listing.add_argument("--json", action="store_true", help="print the register as JSON")
    listing.set_defaults(handler=bind(cmd_hold_list))

    export = sub.add_parser(
        "export",
        help="export an evidence bundle (records, proofs, transcripts, RSMF, custody)",
        description="Build a self-verifying evidence bundle: records as JSONL (canonical bytes), "
        "Parquet and CSV; per record its leaf index and C2SP tlog-proof to a signed checkpoint; "
        "the checkpoints and public keys; HTML transcripts; RSMF 2.0; MANIFEST of SHA-256; and "
        "CUSTODY.json, sealed in the access log before the bundle is written. See "
        "schemas/BUNDLE.md and docs/legal.md.",
    )
    add_archive_options(export)
    export.add_argument(
        "--matter", required=True, help="matter name or reference, kept with the export"
    )
    what = export.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--customer", type=parse_customer, help="customer wa_id or BSUID (in every business chain)"
    )
    what.add_argument("--query", help="SQL over the auditor views returning chain_id and seq")
    export.add_argument("--since", type=parse_time, help="records from this time (ISO, inclusive)")
    export.add_argument(
        "--until", type=parse_time, help="records before this time (ISO, exclusive)"
    )
    export.add_argument("--out", type=Path, required=True, help="new directory, or a .zip file")
    export.add_argument("--tz", default="UTC", help="second time zone of the transcripts (IANA)")
    export.add_argument("--as", dest="who", help="who exports (env COEXARCHIVE_AUDITOR)")
    export.add_argument(
        "--as-of", type=parse_time, help="the custody entry's time (ISO; default: now)"
    )
    export.add_argument(
        "--at",
        type=_pin,
        action="append",
        metavar="CHAIN=SIZE",
        help="prove to the checkpoint at this tree size (default: the latest); repeatable",
    )
    export.add_argument("--trust", type=Path, help="trust file (env COEXARCHIVE_TRUST)")
    export.add_argument("--key", type=Path, help="signing key file (for the access log)")
    export.set_defaults(handler=bind(cmd_export))

    check = sub.add_parser(
        "verify-bundle",
        help="verify an evidence bundle offline, from the bundle alone",
        description="Check every file hash, then each record's canonical bytes -> leaf hash -> "
        "inclusion proof -> checkpoint -> signature, and re-render the tables, transcripts and "
        "RSMF from the proven records, against the keys of --trust. Exit 0 (OK) only when "
        f"everything holds against them; 1 when a check fails; {EXIT_UNTRUSTED} (UNTRUSTED) when "
        "everything holds against --trust-bundle-keys. A bundle past the size and count limits, "
        "or with a duplicate, absolute, '..' or linked member, is refused before it is read. "
        "Bundles of every format a release wrote (coexarchive.bundle/v1, v2 and v3) are checked by "
        "the rules of their own format.",
    )
    check.add_argument("path", type=Path, help="bundle directory or zip")
    trusted = check.add_mutually_exclusive_group(required=True)
    trusted.add_argument(
        "--trust",
        type=Path,
        help="the archive's trust file, obtained from its owner by another channel than the "
        "bundle; only a bundle verified against it is OK",
    )
    trusted.add_argument(
        "--trust-bundle-keys",
        action="store_true",
        help="check integrity only, against the keys the bundle itself carries: anyone can make "
        f"such a bundle, so the result is UNTRUSTED and the exit status {EXIT_UNTRUSTED}",
    )
    check.add_argument(
        "--tsa-file",
        type=Path,
        help="timestamp authorities ('<name> <url> <roots PEM>' lines; URLs unused): the "
        "bundle's RFC 3161 tokens must verify against these roots, one per authority named",
    )
    check.add_argument(
        "--witnesses",
        type=Path,
        help="witness policy ('witness <vkey> <url>' lines, 'quorum K'): the bundle's archive "
        "head must be cosigned by K of them (offline: a bundle cannot show a later rollback)",
    )
    defaults = DEFAULT_LIMITS
    check.add_argument(
        "--max-members",
        type=int,
        default=defaults.max_members,
        help="refuse a bundle (or an rsmf.zip) of more files than this (default: %(default)s)",
    )
    check.add_argument(
        "--max-member-bytes",
        type=int,
        default=defaults.max_member_bytes,
        help="refuse a file that expands to more bytes than this (default: %(default)s)",
    )
    check.add_argument(
        "--max-bundle-bytes",
        type=int,
        default=defaults.max_total_bytes,
        help="refuse a bundle that expands to more bytes than this in all, rsmf.zip members "
        "included (default: %(default)s)",
    )
    check.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes: 2 re-renders transcripts and RSMF beside the proof checks "
        "(default: %(default)s on this machine; 1 runs everything in one process)",
    )
    check.add_argument("--report", type=Path, help="write one JSON line per record to this file")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--verbose", action="store_true", help="print a line per record")
    check.set_defaults(handler=cmd_verify_bundle)
