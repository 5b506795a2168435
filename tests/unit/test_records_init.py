"""``Record.__init__`` builds exactly what the frozen dataclass's own ``__init__`` builds.

``records._init`` replaces the generated ``__init__`` for speed (the instance is filled in under a
class with the same slots, then given its own class back). Everything a caller can observe must
stay the same: values and their types, defaults, keyword and positional calls, the errors of a
wrong call, immutability, equality, hashing, ``replace``, ``copy`` and pickling, and subclasses.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coexarchive import records
from coexarchive.records import RECORD_FIELDS, Record, SealedRecord

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=20),
    st.builds(tuple, st.lists(st.text(max_size=5), max_size=3)),
)


def generated(*args: Any, **kwargs: Any) -> Record:
    """A record made by the dataclass's generated ``__init__``."""
    record = object.__new__(Record)
    records._generated_init(record, *args, **kwargs)
    return record


def fields_of(record: Record) -> list[tuple[type, Any]]:
    return [(type(value), value) for value in map(record.__getattribute__, RECORD_FIELDS)]


@settings(max_examples=300, deadline=None)
@given(values=st.lists(scalars, min_size=30, max_size=30))
def test_positional_call_builds_the_generated_record(values: list[Any]) -> None:
    fast, slow = Record(*values), generated(*values)
    assert type(fast) is Record
    assert fields_of(fast) == fields_of(slow)
    assert fast == slow
    assert repr(fast) == repr(slow)


@settings(max_examples=300, deadline=None)
@given(
    values=st.dictionaries(st.sampled_from(RECORD_FIELDS[6:]), scalars),
    required=st.lists(scalars, min_size=6, max_size=6),
)
def test_keyword_call_and_defaults_build_the_generated_record(
    values: dict[str, Any], required: list[Any]
) -> None:
    values.update(zip(RECORD_FIELDS[:6], required, strict=True))
    fast, slow = Record(**values), generated(**values)
    assert fields_of(fast) == fields_of(slow)
    assert hash(fast) == hash(slow) if _hashable(slow) else fast == slow


def _hashable(record: Record) -> bool:
    try:
        hash(record)
    except TypeError:
        return False
    return True


def test_defaults_are_the_dataclass_defaults() -> None:
    fast = Record("c", "r", "message", "customer", "inbound", 1)
    slow = generated("c", "r", "message", "customer", "inbound", 1)
    assert fields_of(fast) == fields_of(slow)
    assert fast.flags is slow.flags  # the empty tuple, as the default factory makes it


def test_signature_names_order_and_defaults_match_the_dataclass() -> None:
    ours = inspect.signature(Record).parameters
    theirs = inspect.signature(records._generated_init).parameters
    assert list(ours) == list(RECORD_FIELDS) == [name for name in theirs if name != "self"]
    for field in dataclasses.fields(Record):
        default = ours[field.name].default
        if field.default is not dataclasses.MISSING:
            assert default == field.default
        elif field.default_factory is not dataclasses.MISSING:
            assert default == field.default_factory()
        else:
            assert default is inspect.Parameter.empty


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("c", "r", "message", "customer", "inbound"), {}),  # event_time missing
        ((), {"chain_id": "c"}),
        (("c", "r", "message", "customer", "inbound", 1), {"chain_id": "again"}),
        (("c", "r", "message", "customer", "inbound", 1), {"no_such_field": 1}),
        (tuple(range(31)), {}),  # one positional too many
    ],
)
def test_a_wrong_call_fails_as_the_generated_one_does(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError):
        generated(*args, **kwargs)
    with pytest.raises(TypeError):
        Record(*args, **kwargs)


def test_records_stay_frozen() -> None:
    record = Record("c", "r", "message", "customer", "inbound", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.text = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del record.text  # type: ignore[misc]
    assert record.text is None


def test_replace_copy_and_pickle_give_equal_records_of_the_class() -> None:
    record = Record("c", "r", "message", "customer", "inbound", 1, flags=("a",), text="hi")
    for other in (
        dataclasses.replace(record),
        copy.copy(record),
        copy.deepcopy(record),
        pickle.loads(pickle.dumps(record)),  # noqa: S301 - our own bytes
    ):
        assert type(other) is Record
        assert fields_of(other) == fields_of(record)
    changed = dataclasses.replace(record, text="changed")
    assert changed.text == "changed"
    assert record.text == "hi"


def test_a_subclass_keeps_its_class_and_its_own_slots() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Tagged(Record):
        tag: str = "t"

    tagged = Tagged("c", "r", "message", "customer", "inbound", 1, tag="x")
    assert type(tagged) is Tagged
    assert tagged.tag == "x"
    assert tagged.chain_id == "c"

    class Plain(Record):
        pass

    plain = Plain("c", "r", "message", "customer", "inbound", 1)
    assert type(plain) is Plain
    assert fields_of(plain) == fields_of(Record("c", "r", "message", "customer", "inbound", 1))


@settings(max_examples=100, deadline=None)
@given(seq=st.integers(), leaf=st.binary(max_size=32), chain=st.binary(max_size=32))
def test_sealed_record_is_the_generated_one(seq: int, leaf: bytes, chain: bytes) -> None:
    record = Record("c", "r", "message", "customer", "inbound", 1)
    fast = SealedRecord(record, seq, leaf, chain)
    slow = object.__new__(SealedRecord)
    records._generated_sealed_init(slow, record, seq, leaf, chain)
    assert type(fast) is SealedRecord
    assert (fast.record, fast.seq, fast.leaf_hash, fast.chain_hash) == (record, seq, leaf, chain)
    assert fast == slow
    assert hash(fast) == hash(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.seq = 0  # type: ignore[misc]
    assert list(inspect.signature(SealedRecord).parameters) == [
        f.name for f in dataclasses.fields(SealedRecord)
    ]
    with pytest.raises(TypeError):
        SealedRecord(record, seq, leaf)  # type: ignore[call-arg]
