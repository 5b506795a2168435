"""Fixtures shared by the verify-bundle tests: one evidence archive and its bundle per module."""

from __future__ import annotations

import pytest
from export._evidence import Evidence, alice_bundle, build_evidence

from coexarchive.store import MemoryStore


@pytest.fixture(scope="module")
def evidence() -> Evidence:
    return build_evidence(MemoryStore())


@pytest.fixture(scope="module")
def pristine(evidence: Evidence) -> dict[str, bytes]:
    return alice_bundle(evidence).files
