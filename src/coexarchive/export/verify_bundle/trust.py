"""Steps 4 and 5: which keys decide, and each chain's checkpoint signed by one of them."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coexarchive.errors import CoexArchiveError, ConfigError
from coexarchive.export.verify_bundle.report import BUNDLE_KEYS_WARNING, BundleReport
from coexarchive.seal.checkpoint import Checkpoint, checkpoint_origin, open_checkpoint, open_note
from coexarchive.seal.keys import TrustStore

__all__ = ["Chain", "checkpoints_step", "keys_step", "require_trust_choice"]


@dataclass
class Chain:
    chain_id: str
    checkpoint: Checkpoint | None
    note: bytes | None
    proofs_path: str


def require_trust_choice(trust: TrustStore | None, *, trust_bundle_keys: bool) -> None:
    """Raise :class:`ConfigError` unless exactly one source of trust was chosen.

    With nothing trusted nothing can be verified, so the caller must choose; the bundle's own
    keys are never a silent default.
    """
    if trust is not None and trust_bundle_keys:
        raise ConfigError("give either a trust file (--trust) or --trust-bundle-keys, not both")
    if trust is None and not trust_bundle_keys:
        raise ConfigError(
            "no trust given: pass the archive's trust file with --trust FILE (its public key, "
            "obtained from the archive's owner by another channel than the bundle); "
            "--trust-bundle-keys checks integrity only, against the keys the bundle carries"
        )


# Step 4: which keys decide.
def keys_step(
    files: Mapping[str, bytes],
    trust: TrustStore | None,
    report: BundleReport,
    *,
    trust_bundle_keys: bool,
) -> TrustStore:
    """The caller's trust store; the bundle's own keys only when the caller asked for them."""
    require_trust_choice(trust, trust_bundle_keys=trust_bundle_keys)
    if trust is not None:
        report.trust_source = "trust file given with --trust"
        report.trusted = True
        return trust
    report.trust_source = "the bundle's own keys/trust.txt (UNTRUSTED: integrity only, not origin)"
    report.trusted = False
    report.warnings.append(BUNDLE_KEYS_WARNING)
    try:
        return TrustStore.parse(files.get("keys/trust.txt", b"").decode("utf-8"))
    except (ConfigError, UnicodeDecodeError) as exc:
        report.fail("keys", f"unreadable trust file ({exc})", key="keys/trust.txt")
        return TrustStore()


# Step 5: each chain's checkpoint is signed, for the chain, with the stated size and root.
def checkpoints_step(
    files: Mapping[str, bytes],
    description: Mapping[str, Any],
    trust: TrustStore,
    report: BundleReport,
) -> dict[str, Chain]:
    chains: dict[str, Chain] = {}
    archive = str(description.get("archive"))
    signers: set[str] = set()
    entries = description.get("chains")
    if not isinstance(entries, list) or not entries:
        report.fail(
            "checkpoints",
            "names no chain: nothing in the bundle leads to a signed checkpoint",
            key="BUNDLE.json",
        )
        return chains
    for entry in entries:
        if not isinstance(entry, dict):
            report.fail("checkpoints", "a chains entry is not an object", key="BUNDLE.json")
            continue
        chain_id = str(entry.get("chain_id"))
        path = str(entry.get("checkpoint"))
        chain = Chain(chain_id, None, None, str(entry.get("proofs")))
        chains[chain_id] = chain
        note = files.get(path)
        if note is None:
            report.fail("checkpoints", "checkpoint file is missing", key=path, chain=chain_id)
            continue
        try:
            checkpoint = open_checkpoint(note, trust, origin=checkpoint_origin(archive, chain_id))
        except CoexArchiveError as exc:
            report.fail(
                "checkpoints", f"checkpoint does not verify: {exc}", key=path, chain=chain_id
            )
            continue
        if checkpoint.size != entry.get("tree_size") or base64.b64encode(
            checkpoint.root_hash
        ).decode() != entry.get("root_hash"):
            report.fail(
                "checkpoints", "size or root differs from BUNDLE.json", key=path, chain=chain_id
            )
            continue
        chain.checkpoint, chain.note = checkpoint, note
        signers.update(_signers(note, trust))
        report.chains.append(
            {"chain_id": chain_id, "tree_size": checkpoint.size, "origin": checkpoint.origin}
        )
    report.key_ids = sorted(signers)
    return chains


def _signers(note: bytes, trust: TrustStore) -> list[str]:
    """``name+keyid`` of each key of ``trust`` whose signature ``note`` carries (and verifies)."""
    found = []
    for verifier in trust.verifiers:
        try:
            open_note(note, TrustStore([verifier]))
        except CoexArchiveError:
            continue
        found.append(f"{verifier.name}+{verifier.key_id.hex()}")
    return found
