"""Which customers a run of segments may hold: a Bloom filter carried by each manifest.

A query for one customer's transcript must otherwise open every segment's Parquet footer, one
request per segment, to learn from row-group statistics which files hold that customer; on an
archive of thousands of segments that, not the data, is the cost. Each manifest therefore
carries a Bloom filter of the ``customer_id`` values of every record of its chain from the
filter's ``first_seq`` to the manifest's ``last_seq``. A filter never forgets a member (no
false negatives); it may say "maybe" for a customer that is absent (about 1% of the time when
half its bits are set), which costs only a needless read.

Filters are cumulative: a segment's filter is the previous manifest's filter with this segment's
customers added, until half its bits are set; then a new *generation* starts at the segment,
twice the size. The newest manifest of a chain therefore answers for its whole generation, and
the manifest just before each generation's ``first_seq`` answers for the one before: a query
reads one manifest per generation per chain instead of one footer per segment.

The filter is a query aid, not evidence: ``coexarchive verify`` checks that each segment's
customers are in its manifest's filter and that each filter contains the one before it in its
generation, so a query that skips a segment the filter rules out cannot miss a record. Format:
``schemas/SEALING.md`` ("Customer filter").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from coexarchive.errors import FormatError

__all__ = ["HASHES", "MAX_BITS", "MIN_BITS", "CustomerFilter"]

HASHES = 7
MIN_BITS = 1 << 16
# 256 KiB: past about 180,000 customers a chain starts a new generation instead of a bigger
# filter, so no manifest grows without bound; a query then reads one more manifest per chain.
MAX_BITS = 1 << 21
# Above this share of set bits a generation is closed: at 7 hashes "maybe" for an absent
# customer then comes up about 0.8% of the time.
MAX_FILL = 0.5
_INDEX = np.arange(HASHES, dtype=np.uint64)


def _positions(ids: Iterable[str], bits: int) -> np.ndarray:
    """Bit positions of each id: ``(h1 + i * h2) mod 2**64 mod bits`` for i in 0..6."""
    digest = b"".join(hashlib.sha256(value.encode("utf-8")).digest()[:16] for value in ids)
    if not digest:
        return np.zeros((0, HASHES), dtype=np.uint64)
    halves = np.frombuffer(digest, dtype="<u8").reshape(-1, 2)
    h1, h2 = halves[:, 0:1], halves[:, 1:2] | np.uint64(1)
    return (h1 + _INDEX * h2) & np.uint64(bits - 1)  # uint64 arithmetic wraps mod 2**64


@dataclass(frozen=True)
class CustomerFilter:
    """A Bloom filter over ``customer_id`` for seq ``first_seq`` up to its manifest's end."""

    first_seq: int
    bits: int
    data: bytes  # bit p is bit (p % 8) of byte p // 8, least significant first

    def __post_init__(self) -> None:
        if self.bits < 8 or self.bits & (self.bits - 1) or len(self.data) * 8 != self.bits:
            raise FormatError(
                f"customer filter: {self.bits} bits in {len(self.data)} bytes (need a power of two)"
            )
        if self.first_seq < 0:
            raise FormatError("customer filter: first_seq is negative")

    @classmethod
    def of(cls, ids: Iterable[str], *, first_seq: int, bits: int) -> CustomerFilter:
        return cls(first_seq, bits, bytes(bits // 8)).adding(ids)

    @classmethod
    def next(
        cls, previous: CustomerFilter | None, ids: Iterable[str], *, first_seq: int
    ) -> CustomerFilter:
        """The filter of the segment starting at ``first_seq``, given the previous manifest's.

        ``previous`` continues while it stays at most half full; otherwise (or when there is no
        previous filter) a new generation starts here, sized for this segment's customers and at
        least twice the previous generation, up to ``MAX_BITS``.
        """
        members = sorted(set(ids))
        if previous is not None:
            grown = previous.adding(members)
            if grown.fill() <= MAX_FILL:
                return grown
        wanted = max(MIN_BITS, 2 * previous.bits if previous else 0, 12 * len(members))
        bits = min(MAX_BITS, 1 << (wanted - 1).bit_length())
        return cls.of(members, first_seq=first_seq, bits=bits)

    def adding(self, ids: Iterable[str]) -> CustomerFilter:
        positions = _positions(ids, self.bits).ravel()
        if positions.size == 0:
            return self
        bitmap = np.unpackbits(np.frombuffer(self.data, dtype=np.uint8), bitorder="little")
        bitmap[positions.astype(np.int64)] = 1
        return CustomerFilter(
            self.first_seq, self.bits, np.packbits(bitmap, bitorder="little").tobytes()
        )

    def might_contain(self, customer: str) -> bool:
        try:
            customer.encode("utf-8")
        except UnicodeEncodeError:
            return True  # not an id any record can hold; the query itself will say so
        data, positions = self.data, _positions([customer], self.bits)[0]
        return all(data[p >> 3] >> (p & 7) & 1 for p in map(int, positions))

    def missing(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` the filter does not contain (none, unless it was altered)."""
        members = sorted(set(ids))
        positions = _positions(members, self.bits).astype(np.int64)
        if positions.size == 0:
            return []
        bitmap = np.unpackbits(np.frombuffer(self.data, dtype=np.uint8), bitorder="little")
        absent = np.flatnonzero(bitmap[positions].min(axis=1) == 0)
        return [members[i] for i in absent.tolist()]

    def contains_filter(self, other: CustomerFilter) -> bool:
        """Every bit of ``other`` (same size) is set here."""
        if other.bits != self.bits:
            return False
        mine = np.frombuffer(self.data, dtype=np.uint8)
        theirs = np.frombuffer(other.data, dtype=np.uint8)
        return bool(np.all((mine & theirs) == theirs))

    def fill(self) -> float:
        ones = int(np.unpackbits(np.frombuffer(self.data, dtype=np.uint8)).sum())
        return ones / self.bits

    def to_json(self) -> dict[str, Any]:
        return {
            "first_seq": self.first_seq,
            "bits": self.bits,
            "hashes": HASHES,
            "bloom": base64.b64encode(self.data).decode("ascii"),
        }

    @classmethod
    def from_json(
        cls, value: Mapping[str, Any], *, what: str = "customer filter"
    ) -> CustomerFilter:
        try:
            if int(value["hashes"]) != HASHES:
                raise FormatError(f"{what}: {value['hashes']} hashes; this version uses {HASHES}")
            data = base64.b64decode(value["bloom"], validate=True)
            return cls(int(value["first_seq"]), int(value["bits"]), data)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise FormatError(f"{what}: not a customer filter ({exc})") from None
