"""Object keys of the archive (normative: ``schemas/SEALING.md`` §Layout).

Sequence numbers and tree sizes are zero-padded to 20 digits so that lexicographic listing order
is numeric order.
"""

from __future__ import annotations

import re

from coexarchive._internal.clock import utc_date as utc_date
from coexarchive.errors import InvalidArgumentError

ARCHIVE_PREFIX = "archive/v1/"
CHECKPOINT_PREFIX = "checkpoints/"
MANIFEST_PREFIX = "manifests/"
RAW_PREFIX = "raw/"
QUARANTINE_PREFIX = "quarantine/"
ACCESS_LOG_PREFIX = "access-log/"
HOLDS_PREFIX = "holds/"
LEAVES_PREFIX = "leaves/"  # leaf hashes of disposed segments, kept so proofs outlive content
DEDUP_PREFIX = "dedup/"
INGESTED_PREFIX = "ingested/"  # continuous ingest: one marker per raw object processed

_CHAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def check_chain_id(chain_id: str) -> str:
    """Chain ids become path segments: allow only a safe, bounded alphabet."""
    if not _CHAIN_ID.fullmatch(chain_id):
        raise InvalidArgumentError(
            f"invalid chain id {chain_id!r}: use letters, digits and . _ : -"
        )
    return chain_id


def pad(number: int) -> str:
    return f"{number:020d}"


DAY_MS = 86_400_000


def segment_key(chain_id: str, date: str, first_seq: int, last_seq: int) -> str:
    check_chain_id(chain_id)
    return f"{ARCHIVE_PREFIX}chain={chain_id}/date={date}/{pad(first_seq)}-{pad(last_seq)}.parquet"


def manifest_prefix(chain_id: str) -> str:
    return f"{MANIFEST_PREFIX}chain={check_chain_id(chain_id)}/"


def manifest_key(chain_id: str, first_seq: int) -> str:
    return f"{manifest_prefix(chain_id)}{pad(first_seq)}.json"


def checkpoint_prefix(chain_id: str) -> str:
    return f"{CHECKPOINT_PREFIX}chain={check_chain_id(chain_id)}/"


def checkpoint_key(chain_id: str, tree_size: int) -> str:
    return f"{checkpoint_prefix(chain_id)}{pad(tree_size)}"


def chain_of(key: str) -> str | None:
    """The chain id named by a ``chain=<id>`` path segment, if any."""
    match = re.search(r"chain=([^/]+)/", key)
    return match.group(1) if match else None


def number_of(key: str) -> int:
    """The zero-padded number that ends a checkpoint or manifest key."""
    tail = key.rsplit("/", 1)[-1].split(".", 1)[0]
    return int(tail)


def leaves_key(chain_id: str, first_seq: int, last_seq: int) -> str:
    """Where the leaf hashes of a disposed segment (seq ``first..last``) are kept."""
    return (
        f"{LEAVES_PREFIX}chain={check_chain_id(chain_id)}/{pad(first_seq)}-{pad(last_seq)}.leaves"
    )
