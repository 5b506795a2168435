"""The customer filter: never forgets a member, follows the spec bit for bit, rolls generations."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coexarchive import customer_filter
from coexarchive.customer_filter import HASHES, MAX_BITS, MIN_BITS, CustomerFilter
from coexarchive.errors import FormatError

ids = st.lists(st.text(min_size=1, max_size=40), min_size=0, max_size=300)


def spec_positions(value: str, bits: int) -> list[int]:
    """SEALING.md "Customer filter", in plain integers."""
    digest = hashlib.sha256(value.encode("utf-8")).digest()
    h1 = int.from_bytes(digest[0:8], "little")
    h2 = int.from_bytes(digest[8:16], "little") | 1
    return [((h1 + i * h2) % 2**64) % bits for i in range(HASHES)]


def spec_bits(data: bytes) -> set[int]:
    return {p for p in range(len(data) * 8) if data[p // 8] >> (p % 8) & 1}


@settings(max_examples=200, deadline=None)
@given(ids, st.sampled_from([8, 64, 1 << 10, 1 << 16]))
def test_every_member_is_found(members: list[str], bits: int) -> None:
    found = CustomerFilter.of(members, first_seq=0, bits=bits)
    assert found.missing(members) == []
    assert all(found.might_contain(member) for member in members)


@settings(max_examples=100, deadline=None)
@given(ids)
def test_bits_are_exactly_those_the_spec_names(members: list[str]) -> None:
    found = CustomerFilter.of(members, first_seq=3, bits=1 << 12)
    expected = {p for member in members for p in spec_positions(member, 1 << 12)}
    assert spec_bits(found.data) == expected


def test_a_known_vector() -> None:
    # Pinned, so a change of hashing cannot pass unnoticed (computed from SEALING.md by hand).
    positions = [16538, 6887, 62772, 53121, 43470, 33819, 24168]
    assert spec_positions("447700900001", 1 << 16) == positions
    found = CustomerFilter.of(["447700900001"], first_seq=0, bits=1 << 16)
    assert found.data == _bitmap(positions, 1 << 16)


def _bitmap(positions: list[int], bits: int) -> bytes:
    data = bytearray(bits // 8)
    for p in positions:
        data[p // 8] |= 1 << (p % 8)
    return bytes(data)


def test_absent_customers_are_mostly_ruled_out() -> None:
    members = [f"44{i:010d}" for i in range(5_000)]
    found = CustomerFilter.next(None, members, first_seq=0)
    assert found.fill() <= customer_filter.MAX_FILL
    maybe = sum(found.might_contain(f"55{i:010d}") for i in range(20_000))
    assert maybe / 20_000 < 0.02


def test_a_filter_continues_while_at_most_half_full() -> None:
    first = CustomerFilter.next(None, ["a", "b"], first_seq=0)
    second = CustomerFilter.next(first, ["c"], first_seq=10)
    assert (second.first_seq, second.bits) == (0, first.bits)
    assert second.contains_filter(first) and second.missing(["a", "b", "c"]) == []


def test_a_full_filter_starts_a_bigger_generation_at_the_segment() -> None:
    first = CustomerFilter.next(None, [f"c{i}" for i in range(5_000)], first_seq=0)
    crowd = [f"d{i}" for i in range(20_000)]
    second = CustomerFilter.next(first, crowd, first_seq=40)
    assert second.first_seq == 40 and second.bits >= 2 * first.bits
    assert second.missing(crowd) == []
    assert second.bits <= MAX_BITS and first.bits >= MIN_BITS


def test_generations_stop_growing_at_the_cap() -> None:
    big = CustomerFilter(0, MAX_BITS, b"\xff" * (MAX_BITS // 8))
    assert CustomerFilter.next(big, ["x"], first_seq=9).bits == MAX_BITS


def test_json_round_trip() -> None:
    found = CustomerFilter.next(None, ["447700900001", "Ωμέγα"], first_seq=7)
    assert CustomerFilter.from_json(found.to_json()) == found


@pytest.mark.parametrize(
    "change",
    [
        {"hashes": 5},
        {"bits": 1000},
        {"bits": 1 << 17},
        {"bloom": "not base64!"},
        {"first_seq": -1},
        {"bloom": None},
    ],
)
def test_malformed_filters_are_refused(change: dict[str, object]) -> None:
    document = CustomerFilter.of(["a"], first_seq=0, bits=1 << 16).to_json() | change
    with pytest.raises(FormatError):
        CustomerFilter.from_json(document)


def test_contains_filter_needs_every_bit_and_the_same_size() -> None:
    small = CustomerFilter.of(["a"], first_seq=0, bits=1 << 16)
    more = small.adding(["b"])
    assert more.contains_filter(small) and not small.contains_filter(more)
    assert not CustomerFilter.of(["a"], first_seq=0, bits=1 << 17).contains_filter(small)
    one_of_a = spec_positions("a", 1 << 16)[0]
    cleared = bytearray(more.data)
    cleared[one_of_a // 8] &= ~(1 << (one_of_a % 8)) & 0xFF
    assert not CustomerFilter(0, more.bits, bytes(cleared)).contains_filter(small)
    assert CustomerFilter(0, more.bits, bytes(cleared)).missing(["a"]) == ["a"]
    assert base64.b64decode(more.to_json()["bloom"]) == more.data
