"""How long each record class is kept, and the Object Lock settings that follow.

Retention runs from the time an event was captured (``received_time``, else ``event_time``), so the
same records always get the same retain-until date: a re-run writes byte-identical objects with
identical lock settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from coexarchive.errors import ConfigError
from coexarchive.records import Record
from coexarchive.store.base import LockMode, Retention

# MiFID II / FCA: 5 years, 7 on request; SEC 17a-4(a) and FINRA 4511: 6. Seven covers them all.
DEFAULT_YEARS = 7


@dataclass(frozen=True)
class ClassRetention:
    """Lock mode and period for one record class (a record ``kind``)."""

    mode: LockMode = "COMPLIANCE"
    years: int = DEFAULT_YEARS

    def __post_init__(self) -> None:
        if self.mode not in ("COMPLIANCE", "GOVERNANCE"):
            raise ConfigError(
                f"unknown object-lock mode {self.mode!r}: use COMPLIANCE or GOVERNANCE"
            )
        if not 1 <= self.years <= 100:
            raise ConfigError(f"retention of {self.years} years is out of range (1..100)")


@dataclass(frozen=True)
class RetentionPolicy:
    """Retention per record kind, with a default for every kind not named."""

    default: ClassRetention = field(default_factory=ClassRetention)
    per_kind: Mapping[str, ClassRetention] = field(default_factory=dict)

    def for_kind(self, kind: str) -> ClassRetention:
        return self.per_kind.get(kind, self.default)

    def retention_for(self, records: Iterable[Record]) -> Retention:
        """The lock an object holding ``records`` needs: the latest date any of them needs.

        COMPLIANCE wins over GOVERNANCE when classes of both modes share an object.
        """
        latest: datetime | None = None
        mode: LockMode = "GOVERNANCE"
        for record in records:
            rule = self.for_kind(record.kind)
            captured = (
                record.received_time if record.received_time is not None else record.event_time
            )
            until = add_years(datetime.fromtimestamp(captured // 1000, tz=UTC), rule.years)
            latest = until if latest is None or until > latest else latest
            if rule.mode == "COMPLIANCE":
                mode = "COMPLIANCE"
        if latest is None:
            raise ValueError("an object with no records needs no retention")
        return Retention(mode=mode, retain_until=latest)

    @classmethod
    def parse(cls, text: str) -> RetentionPolicy:
        """Parse ``MODE:YEARS`` or ``kind=MODE:YEARS,...,default=MODE:YEARS``."""
        default = ClassRetention()
        per_kind: dict[str, ClassRetention] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, rule = item.rpartition("=")
            mode, _, years = rule.partition(":")
            try:
                parsed = ClassRetention(mode=mode.upper(), years=int(years))  # type: ignore[arg-type]
            except ValueError as exc:
                raise ConfigError(f"bad retention rule {item!r}: expected MODE:YEARS") from exc
            if name in ("", "default"):
                default = parsed
            else:
                per_kind[name] = parsed
        return cls(default=default, per_kind=per_kind)


def add_years(moment: datetime, years: int) -> datetime:
    """``moment`` plus whole calendar years; 29 February becomes 1 March in common years."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, month=3, day=1)
