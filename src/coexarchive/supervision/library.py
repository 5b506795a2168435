"""Importing policy versions into the ``policies`` chain and reading them back.

A version is immutable: importing the same name and version again with the same content seals
nothing; with other content it is refused (raise the version). Scans use only sealed versions,
read back and checked against their seal, never a local file.
"""

from __future__ import annotations

from dataclasses import dataclass

from coexarchive.errors import ConfigError, FormatError
from coexarchive.records import Kind, Origin, Record
from coexarchive.store.base import ObjectStore
from coexarchive.supervision.policy import Policy, parse_policy, parse_spec
from coexarchive.supervision.register import (
    POLICIES_CHAIN,
    ChainRow,
    Sealer,
    internal_record,
    read_chain,
)

__all__ = [
    "ImportOutcome",
    "SealedPolicy",
    "import_policy",
    "parse_sealed",
    "resolve_policy",
    "sealed_policies",
]


@dataclass(frozen=True)
class SealedPolicy:
    policy: Policy
    seq: int
    record_id: str
    sealed_at: int
    who: str


@dataclass(frozen=True)
class ImportOutcome:
    policy: SealedPolicy
    created: bool  # False: this exact version was already sealed


def parse_sealed(row: ChainRow) -> SealedPolicy:
    detail = row.detail
    try:
        policy = parse_policy(detail["policy"], source=f"policies seq {row.seq}")
        if policy.sha256() != detail["sha256"]:
            raise FormatError(f"policies seq {row.seq}: policy does not match its sha256")
        return SealedPolicy(policy, row.seq, row.record_id, row.event_time, str(detail["who"]))
    except (KeyError, TypeError) as exc:
        raise FormatError(f"policies seq {row.seq}: malformed policy record ({exc})") from None


def sealed_policies(store: ObjectStore) -> list[SealedPolicy]:
    """Every sealed policy version, in the order they were imported."""
    return [
        parse_sealed(row) for row in read_chain(store, POLICIES_CHAIN) if row.kind == Kind.POLICY
    ]


def resolve_policy(store: ObjectStore, spec: str) -> SealedPolicy:
    """``NAME`` (its newest version) or ``NAME@VERSION`` among the sealed policies."""
    name, version = parse_spec(spec)
    found = [s for s in sealed_policies(store) if s.policy.name == name]
    if version is not None:
        found = [s for s in found if s.policy.version == version]
    if not found:
        known = sorted({s.policy.label for s in sealed_policies(store)})
        raise ConfigError(
            f"no sealed policy {spec!r} (sealed: {', '.join(known) or 'none'}); "
            "import it with `coexarchive policy import FILE`"
        )
    return max(found, key=lambda s: s.policy.version)


def import_policy(sealer: Sealer, policy: Policy, *, who: str, now_ms: int) -> ImportOutcome:
    """Seal ``policy`` in the ``policies`` chain unless this exact version is sealed already."""
    digest = policy.sha256()
    existing: list[SealedPolicy] = []

    def build(rows: list[ChainRow]) -> list[Record]:
        existing.clear()
        for row in rows:
            if row.kind != Kind.POLICY:
                continue
            sealed = parse_sealed(row)
            if (sealed.policy.name, sealed.policy.version) != (policy.name, policy.version):
                continue
            if sealed.policy.sha256() != digest:
                raise ConfigError(
                    f"policy {policy.label} is already sealed (seq {sealed.seq}) with other "
                    f"content: a version never changes; raise `version` to {_next(rows, policy)}"
                )
            existing.append(sealed)
            return []
        detail = {
            "name": policy.name,
            "version": policy.version,
            "sha256": digest,
            "policy": policy.model_dump(mode="json"),
            "who": who,
        }
        return [
            internal_record(
                POLICIES_CHAIN,
                Kind.POLICY.value,
                ("policy", policy.name, policy.version, digest),
                detail,
                now_ms=now_ms,
                origin=Origin.AUDITOR,
                status=policy.label,
            )
        ]

    records, manifest = sealer.seal(POLICIES_CHAIN, build)
    if not records:
        return ImportOutcome(existing[0], created=False)
    assert manifest is not None
    record = records[0]
    return ImportOutcome(
        SealedPolicy(policy, manifest.last_seq, record.record_id, now_ms, who), created=True
    )


def _next(rows: list[ChainRow], policy: Policy) -> int:
    versions = [
        int(row.detail.get("version", 0))
        for row in rows
        if row.kind == Kind.POLICY and row.detail.get("name") == policy.name
    ]
    return max([policy.version, *versions]) + 1
