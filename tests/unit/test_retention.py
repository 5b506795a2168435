from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coexarchive.errors import ConfigError
from coexarchive.retention import ClassRetention, RetentionPolicy, add_years
from support.archive import make_records


def test_retain_until_is_the_latest_any_record_needs() -> None:
    records = make_records("c1", 3)
    policy = RetentionPolicy(per_kind={"message": ClassRetention("COMPLIANCE", 6)})
    retention = policy.retention_for(records)
    last_capture = max(r.received_time or 0 for r in records) // 1000
    assert retention.retain_until == add_years(datetime.fromtimestamp(last_capture, tz=UTC), 6)
    assert retention.mode == "COMPLIANCE"


def test_compliance_wins_over_governance_in_one_object() -> None:
    records = make_records("c1", 2)
    policy = RetentionPolicy(
        default=ClassRetention("GOVERNANCE", 3),
        per_kind={"message": ClassRetention("COMPLIANCE", 1)},
    )
    mixed = [records[0], records[1].__class__(**{**_fields(records[1]), "kind": "status"})]
    retention = policy.retention_for(mixed)
    assert retention.mode == "COMPLIANCE"
    # The GOVERNANCE class asks for longer: the object keeps the longer date.
    assert (
        retention.retain_until.year
        == datetime.fromtimestamp(records[1].received_time // 1000, tz=UTC).year + 3
    )  # type: ignore[operator]


def test_same_records_same_retention_whatever_the_clock() -> None:
    records = make_records("c1", 5)
    assert RetentionPolicy().retention_for(records) == RetentionPolicy().retention_for(
        list(reversed(records))
    )


def test_parse_rules() -> None:
    policy = RetentionPolicy.parse("message=COMPLIANCE:6,default=governance:3")
    assert policy.for_kind("message") == ClassRetention("COMPLIANCE", 6)
    assert policy.for_kind("status") == ClassRetention("GOVERNANCE", 3)
    assert RetentionPolicy.parse("COMPLIANCE:5").default == ClassRetention("COMPLIANCE", 5)


@pytest.mark.parametrize(
    "text", ["COMPLIANCE", "LOCKED:5", "COMPLIANCE:0", "COMPLIANCE:x", "COMPLIANCE:500"]
)
def test_bad_rules_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        RetentionPolicy.parse(text)


def test_leap_day_plus_years() -> None:
    assert add_years(datetime(2028, 2, 29, tzinfo=UTC), 1) == datetime(2029, 3, 1, tzinfo=UTC)
    assert add_years(datetime(2028, 2, 29, tzinfo=UTC), 4) == datetime(2032, 2, 29, tzinfo=UTC)


def test_empty_object_needs_no_retention() -> None:
    with pytest.raises(ValueError, match="no records"):
        RetentionPolicy().retention_for([])


def _fields(record: object) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]
