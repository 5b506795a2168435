"""``coexarchive chains``: which chains an archive holds, how long each is, and how recent.

A listing, not a verification: it reads each chain's newest manifest and the store's write time
of its newest checkpoint, and says so. ``coexarchive verify`` proves what is listed here.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from coexarchive._internal.cliutil import AddOptions, MakeSettings, binder
from coexarchive.segments import Manifest, list_manifests
from coexarchive.store.base import ObjectStore
from coexarchive.verify import chains_in


@dataclass(frozen=True)
class ChainSummary:
    """One chain as its newest manifest and checkpoint describe it (unverified)."""

    chain_id: str
    segments: int
    records: int  # tree size of the newest manifest: every record ever sealed in the chain
    newest_event: datetime | None  # latest event time in the newest segment
    checkpoint_key: str | None
    checkpoint_written: datetime | None  # the store's LastModified of that checkpoint

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "segments": self.segments,
            "records": self.records,
            "newest_event": _iso(self.newest_event),
            "newest_checkpoint": self.checkpoint_key,
            "checkpoint_written": _iso(self.checkpoint_written),
        }


def summarize(store: ObjectStore, chain_id: str) -> ChainSummary:
    keys = list_manifests(store, chain_id)
    if not keys:
        return ChainSummary(chain_id, 0, 0, None, None, None)
    manifest = Manifest.from_bytes(store.get(keys[-1]), key=keys[-1])
    written = None
    if store.exists(manifest.checkpoint_key):
        written = store.info(manifest.checkpoint_key).last_modified
    return ChainSummary(
        chain_id=chain_id,
        segments=len(keys),
        records=manifest.tree_size,
        newest_event=datetime.fromtimestamp(manifest.max_event_time / 1000, UTC),
        checkpoint_key=manifest.checkpoint_key,
        checkpoint_written=written,
    )


def list_chains(store: ObjectStore) -> list[ChainSummary]:
    """Every chain with a manifest or a checkpoint, in chain-id order."""
    return [summarize(store, chain_id) for chain_id in chains_in(store)]


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(summaries: list[ChainSummary]) -> str:
    header = ("CHAIN", "SEGMENTS", "RECORDS", "NEWEST EVENT (UTC)", "NEWEST CHECKPOINT WRITTEN")
    rows = [
        (
            s.chain_id,
            f"{s.segments:,}",
            f"{s.records:,}",
            _iso(s.newest_event) or "-",
            _iso(s.checkpoint_written) or ("missing" if s.checkpoint_key else "-"),
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {1, 2}
    lines = [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def cmd_chains(args: argparse.Namespace, make_settings: MakeSettings) -> int:
    store = make_settings(args).store()
    summaries = list_chains(store)
    if args.json:
        print(json.dumps([s.to_json() for s in summaries], indent=2, sort_keys=True))
        return 0
    if not summaries:
        print(
            f"no chains in s3://{getattr(store, 'bucket', '?')}/ yet: "
            "land traffic (`coexarchive simulate` or `receive`) and run `coexarchive ingest`"
        )
        return 0
    print(render(summaries))
    print(
        f"{len(summaries)} chain(s), as their newest manifests say (not verified: "
        "`coexarchive verify` proves them)"
    )
    return 0


def register(sub: Any, add_archive_options: AddOptions, make_settings: MakeSettings) -> None:
    bind = binder(make_settings)

    chains = sub.add_parser(
        "chains",
        help="list the archive's chains: segments, records, newest event and checkpoint",
        description="List every chain (one per business number, plus access-log and holds) with "
        "its segment count, its size in records, the newest event it holds and when its newest "
        "checkpoint was written (the store's time). Reads the newest manifest of each chain; "
        "`coexarchive verify` proves them.",
    )
    add_archive_options(chains)
    chains.add_argument("--json", action="store_true", help="print JSON")
    chains.set_defaults(handler=bind(cmd_chains))
