"""``coexarchive erase``: a data subject's erasure by crypto-shredding.

Registered by ``coexarchive.cli`` like the other command modules; the clock and the caller's
identity are read here, at the edge, and passed down.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coexarchive._internal.cliutil import AddOptions, MakeSettings
from coexarchive._internal.clock import now_ms
from coexarchive.datakeys import DataKeyStore
from coexarchive.erasure import Eraser
from coexarchive.query.access_log import auditor_identity
from coexarchive.settings import Settings

__all__ = ["register"]


def _search_purger(settings: Settings, keys: DataKeyStore) -> Callable[[str], int]:
    def purge(customer: str) -> int:
        from coexarchive.query.views import ArchiveCatalog
        from coexarchive.search.index import SearchIndex, archive_identity, default_index_dir

        index = SearchIndex(default_index_dir(settings), archive_identity(settings), keys=keys)
        if not index.exists():
            return 0
        return index.purge_customer(customer, ArchiveCatalog(settings.store()))

    return purge


def cmd_erase(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    settings = make_settings(args)
    keys = settings.data_keys(create=False, clock=now_ms)
    eraser = Eraser.for_settings(settings)
    if args.dry_run:
        plan = eraser.plan(args.customer, keys)
        blockers = plan.blockers(keep_raw=args.keep_raw)
        records = sum(plan.records.values())
        print(
            f"customer {plan.customer}: {records} encrypted record(s) in "
            f"{len(plan.records)} chain(s); live data key(s): {', '.join(plan.live_keys) or 'none'}"
        )
        for reason in blockers:
            print(f"would refuse: {reason}")
        if not blockers:
            print("dry run: `erase` without --dry-run would destroy the key(s) and seal the record")
        return 1 if blockers else 0
    who = auditor_identity(args.who)
    outcome = eraser.erase(
        args.customer,
        keys,
        reason=args.reason,
        who=who,
        now_ms=now_ms(),
        keep_raw=args.keep_raw,
        purge=[_search_purger(settings, keys)],
    )
    plan = outcome.plan
    destroyed = ", ".join(outcome.destroyed) or "none left (destroyed by an earlier run)"
    seq = outcome.sealed.last_seq if outcome.sealed is not None else "?"
    print(
        f"customer {plan.customer}: erased. Data key(s) destroyed: {destroyed}; "
        f"{sum(plan.records.values())} sealed record(s) now read [erased]; erasure sealed in "
        f"chain `erasures` at seq {seq} by {who}; {outcome.purged} search document(s) purged"
    )
    if plan.raw_keys:
        print(
            f"not erased: {len(plan.raw_keys)} raw landing object(s) keep the deliveries as "
            "received until their retention ends (named in the erasure record)"
        )
    return 0


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    def bind(
        handler: Callable[[argparse.Namespace, MakeSettings], int],
    ) -> Callable[[argparse.Namespace], int]:
        return lambda args: handler(args, make_settings)

    erase = sub.add_parser(
        "erase",
        help="erase one customer's personal content by destroying their data key",
        description="Erasure by crypto-shredding, for a data subject's request the firm must "
        "honour. The archive seals each customer's message text, captions, profile names and "
        "secondary identifiers encrypted under that customer's data key; `erase` destroys the "
        "key, so those fields read [erased] in every query, transcript and new export, while "
        "every hash, proof, checkpoint and `verify` stays valid (they commit to the ciphertext). "
        "It refuses, destroying nothing, while a legal hold covers the customer, when records "
        "of the customer were sealed unencrypted (it names them), and when raw landing objects "
        "hold the customer's deliveries unless --keep-raw says to erase the rest anyway. On "
        "success it seals an `erasure` record (chain `erasures`) and purges the customer from "
        "the search index. The customer id itself stays: it routes and proves the erasure.",
    )
    add_archive_options(erase)
    erase.add_argument(
        "--customer", required=True, help="customer wa_id (with or without +) or BSUID"
    )
    erase.add_argument(
        "--reason",
        default="",
        help="the request this honours (a ticket or reference); kept in the erasure record "
        "(required unless --dry-run)",
    )
    erase.add_argument(
        "--keep-raw",
        action="store_true",
        help="erase although raw landing objects keep the deliveries as received until their "
        "retention ends; the erasure record names them",
    )
    erase.add_argument(
        "--dry-run",
        action="store_true",
        help="only say what would be erased and what stands in the way; exit 1 if refused",
    )
    erase.add_argument("--as", dest="who", help="who erases (env COEXARCHIVE_AUDITOR)")
    erase.add_argument("--key", type=Path, help="signing key file")
    erase.set_defaults(handler=bind(cmd_erase))
