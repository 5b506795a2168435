"""Compliance subcommands: ``consent import``, ``templates import`` and ``reassess``.

Registered by ``coexarchive.cli`` like ``coexarchive.commands``; the clock is read here, at the
edge, and passed down.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

from coexarchive._internal.cliutil import (
    AddOptions,
    MakeSettings,
    add_signing_key_option,
    binder,
    parse_time,
)
from coexarchive._internal.clock import now_ms
from coexarchive.enrich.context import load_context, waba_chain
from coexarchive.enrich.crm import parse_consent_file
from coexarchive.enrich.flags import EnrichConfig
from coexarchive.enrich.reassess import reassess
from coexarchive.enrich.sealing import SealOutcome, seal_new
from coexarchive.enrich.templates import TemplateRegistry, catalogue_records, parse_catalogue
from coexarchive.errors import ConfigError
from coexarchive.records import Record
from coexarchive.settings import Settings
from coexarchive.store.base import ObjectStore

__all__ = ["cmd_consent_import", "cmd_reassess", "cmd_templates_import", "register"]


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _seal(
    settings: Settings, store: ObjectStore, chain_id: str, records: list[Record]
) -> SealOutcome:
    return seal_new(
        store,
        chain_id,
        records,
        signer=settings.signer(),
        archive_name=settings.archive_name,
        policy=settings.policy(),
        personal=settings.personal_sealer(store, clock=now_ms),
        trust=settings.trust(),
    )


# --- handlers ------------------------------------------------------------------------------------


def cmd_consent_import(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    path: Path = args.file
    fmt = args.format or ("csv" if path.suffix.lower() == ".csv" else "json")
    parsed = parse_consent_file(
        _read_file(path), fmt=fmt, source_name=path.name, now_ms=now_ms(), chain_id=args.chain
    )
    for line in parsed.report():
        print(f"rejected {line}")
    by_chain: dict[str, list[Record]] = defaultdict(list)
    for record in parsed.records:
        by_chain[record.chain_id].append(record)
    if by_chain:
        settings = make_settings(args)
        store = settings.store()
        settings.signer()
        for chain_id, records in sorted(by_chain.items()):
            outcome = _seal(settings, store, chain_id, records)
            print(
                f"chain {chain_id}: {outcome.sealed} consent record(s) sealed, "
                f"{outcome.duplicates} already in the archive"
            )
    print(f"{parsed.rows} row(s) read: {len(parsed.records)} kept, {len(parsed.problems)} rejected")
    return 1 if parsed.problems else 0


def cmd_templates_import(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    path: Path = args.file
    entries, problems = parse_catalogue(_read_file(path), source=path.name)
    for problem in problems:
        print(f"rejected {problem}")
    now = now_ms()
    as_of = args.as_of if args.as_of is not None else now
    settings = make_settings(args)
    store = settings.store()
    chain_id = waba_chain(args.waba)
    context = load_context(
        store, chain_id, since_ms=as_of, until_ms=as_of, trust=settings.trust(), waba_id=args.waba
    )
    records = catalogue_records(
        entries,
        waba_id=args.waba,
        as_of_ms=as_of,
        imported_ms=now,
        registry=TemplateRegistry(context.template_events),
        source=path.name,
    )
    unchanged = len(entries) - len(records)
    if records:
        settings.signer()
        outcome = _seal(settings, store, chain_id, records)
        print(f"chain {chain_id}: {outcome.sealed} template snapshot(s) sealed")
    print(
        f"{len(entries) + len(problems)} template(s) read: {len(records)} new or changed, "
        f"{unchanged} already known in that state, {len(problems)} rejected"
    )
    return 1 if problems else 0


def cmd_reassess(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    from coexarchive.verify import chains_in

    settings = make_settings(args)
    store = settings.store()
    now = now_ms()
    until = args.until if args.until is not None else now
    chains = (
        [args.chain] if args.chain else [c for c in chains_in(store) if not c.startswith("waba-")]
    )
    config = EnrichConfig()
    if not args.dry_run:
        settings.signer()
    trust = settings.trust()
    total = 0
    for chain_id in chains:
        result = reassess(
            store,
            chain_id,
            since_ms=args.since,
            until_ms=until,
            now_ms=now,
            config=config,
            trust=trust,
            keys=settings.readable_data_keys(clock=now_ms),
        )
        changes = ", ".join(f"{k} {v}" for k, v in result.counts().items()) or "no changes"
        sealed = ""
        if result.changed and not args.dry_run:
            outcome = _seal(settings, store, chain_id, result.changed)
            sealed = f"; {outcome.sealed} assessment record(s) sealed"
        print(f"chain {chain_id}: {result.examined} record(s) examined: {changes}{sealed}")
        total += len(result.changed)
    print(
        f"{total} record(s) whose flags changed"
        + (" (dry run: nothing sealed)" if args.dry_run else "")
    )
    return 0


# --- registration --------------------------------------------------------------------------------


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    bind = binder(make_settings)

    consent = sub.add_parser(
        "consent",
        help="import CRM consent records into the consent ledger",
        description="Consent ledger maintenance. See schemas/ENRICHMENT.md.",
    )
    consent_sub = consent.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    cimport = consent_sub.add_parser(
        "import",
        help="seal consent records from a CRM export (CSV or JSON)",
        description="Validate each row (customer, purpose, state, timestamp, source, evidence; "
        "optional chain_id) and seal the good ones as consent_event records (origin crm) in the "
        "customer's chain. Bad rows are reported with their line number and skipped. Exit 1 "
        "when any row was rejected. Re-importing the same rows seals nothing new.",
    )
    add_archive_options(cimport)
    cimport.add_argument("file", type=Path, help="the CRM export (.csv or .json)")
    cimport.add_argument(
        "--format", choices=("csv", "json"), help="file format (default: from the extension)"
    )
    cimport.add_argument("--chain", help="chain (phone number id) for rows without chain_id")
    add_signing_key_option(cimport)
    cimport.set_defaults(handler=bind(cmd_consent_import))

    templates = sub.add_parser(
        "templates",
        help="import the template catalogue into the template registry",
        description="Template registry maintenance. See schemas/ENRICHMENT.md.",
    )
    templates_sub = templates.add_subparsers(
        dest="templates_command", metavar="ACTION", required=True
    )
    timport = templates_sub.add_parser(
        "import",
        help="seal a snapshot of the Graph API template list",
        description='Read the JSON of GET /<WABA_ID>/message_templates ({"data": [...]}) and '
        "seal, on the WABA's chain, a template_event for each template whose status, category or "
        "text (components) the archive does not already hold as of --as-of; evidence bundles show "
        "template sends with that text.",
    )
    add_archive_options(timport)
    timport.add_argument("file", type=Path, help="JSON of the Graph API template list")
    timport.add_argument("--waba", required=True, help="the WABA id the catalogue belongs to")
    timport.add_argument(
        "--as-of", type=parse_time, help="when the catalogue was fetched (ISO; default: now)"
    )
    add_signing_key_option(timport)
    timport.set_defaults(handler=bind(cmd_templates_import))

    again = sub.add_parser(
        "reassess",
        help="recompute flags with late events; seal assessment records for changes",
        description="Recompute the flags of sealed outbound messages and statuses with event "
        "time in [--since, --until) using everything the archive holds now. Where they differ "
        "from the current flags, seal an assessment record referencing the original. Sealed "
        "records are never rewritten; re-running adds nothing.",
    )
    add_archive_options(again)
    again.add_argument("--since", type=parse_time, required=True, help="ISO date or date-time")
    again.add_argument("--until", type=parse_time, help="ISO date or date-time (default: now)")
    again.add_argument("--chain", help="one chain (phone number id); default: every chain")
    add_signing_key_option(again)
    again.add_argument("--dry-run", action="store_true", help="report, seal nothing")
    again.set_defaults(handler=bind(cmd_reassess))
