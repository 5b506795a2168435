"""C2SP witnesses for the archive heads: the heads log, the tlog-witness client, and the checks.

**The heads log.** Archive heads form a hash-linked list; witnesses cosign Merkle checkpoints, so
the heads are also the leaves of an RFC 6962 tree: leaf ``i`` = ``SHA-256(0x00 || note text of
head i)``. Its checkpoint (C2SP ``tlog-checkpoint``), signed by the key that signed the newest
head, is::

    <archive>/coexarchive/v1/heads
    <number of heads>
    <base64 root>

**Submitting** (``tlog-witness`` ``add-checkpoint``): after each head, the writer sends every
configured witness ``old <size>``, the consistency proof lines from that size, a blank line and
the signed checkpoint; a ``409`` with ``text/x.tlog.size`` tells the size the witness holds and
the writer retries once from it. The returned cosignature lines are verified and stored,
create-only and locked, with the checkpoint at ``anchors/cosignatures/<seq>/<key id hex>.note``.
A witness that is down or refuses never stops a commit; the next head's submission covers it.

**Checking** with a policy (``quorum K`` of the listed witnesses): every stored cosigned note must
verify (archive signature and witness cosignature) and its root must equal the archive's heads
tree at its size (else a fork or a re-signed history); the newest head must be cosigned by at
least K witnesses; and each reachable witness is asked, with the archive's own stored note for
the newest head and ``old`` = its size, whether it has seen more: a ``409`` naming a larger size
means heads were removed (rollback or truncation), a ``409`` at the same size or a ``422`` means
the witness saw another history (fork).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coexarchive._internal.clock import now_ms
from coexarchive.errors import (
    AnchorError,
    ConfigError,
    Failure,
    FormatError,
    ObjectMissingError,
    SignatureError,
)
from coexarchive.seal.checkpoint import Checkpoint, open_checkpoint, sign_note
from coexarchive.seal.cosignature import CosignerKey, cosignatures_of
from coexarchive.seal.head import HEAD_PREFIX, ArchiveHead, head_key, head_seq, open_head
from coexarchive.seal.keys import Signer, TrustStore
from coexarchive.seal.merkle import MerkleTree, leaf_hash
from coexarchive.store.base import ObjectStore

__all__ = [
    "COSIGNATURE_PREFIX",
    "SIZE_CONTENT_TYPE",
    "Witness",
    "WitnessPolicy",
    "WitnessSummary",
    "add_checkpoint",
    "check_witnesses",
    "cosign_head",
    "encode_request",
    "heads_origin",
    "load_witness_policy",
    "parse_request",
]

log = logging.getLogger(__name__)

STEP = "witness"
COSIGNATURE_PREFIX = "anchors/cosignatures/"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63
_MAX_BODY = 64 * 1024
_NUMBER = re.compile(r"0|[1-9][0-9]{0,19}")


def heads_origin(archive_name: str) -> str:
    return f"{archive_name}/coexarchive/v1/heads"


def cosignature_key(seq: int, witness: CosignerKey) -> str:
    return f"{COSIGNATURE_PREFIX}{seq:020d}/{witness.key_id.hex()}.note"


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Witness:
    key: CosignerKey
    url: str  # the submission prefix; add-checkpoint is <url>/add-checkpoint

    @property
    def name(self) -> str:
        return self.key.name


@dataclass(frozen=True)
class WitnessPolicy:
    """At least ``quorum`` of ``witnesses`` must have cosigned the newest head."""

    witnesses: tuple[Witness, ...]
    quorum: int

    def keys(self) -> list[CosignerKey]:
        return [witness.key for witness in self.witnesses]


def load_witness_policy(path: Path) -> WitnessPolicy:
    """Read a witness file: ``witness <vkey> <url>`` lines and one ``quorum <K>`` line."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"witness file {path}: {exc.strerror or exc}") from None
    witnesses: list[Witness] = []
    quorum: int | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"witness file {path} line {number}"
        if parts[0] == "witness" and len(parts) == 3:
            if not parts[2].startswith(("http://", "https://")):
                raise ConfigError(f"{where}: URL {parts[2][:60]!r} is not http(s)")
            witness = Witness(CosignerKey.parse(parts[1]), parts[2].rstrip("/"))
            if any(w.key.key_id == witness.key.key_id for w in witnesses):
                raise ConfigError(f"{where}: witness {witness.name} is listed twice")
            witnesses.append(witness)
        elif parts[0] == "quorum" and len(parts) == 2 and parts[1].isdigit() and quorum is None:
            quorum = int(parts[1])
        else:
            raise ConfigError(f"{where}: expected 'witness <vkey> <url>' or 'quorum <K>'")
    if not witnesses:
        raise ConfigError(f"witness file {path} names no witness")
    if quorum is None:
        quorum = len(witnesses)
    if not 1 <= quorum <= len(witnesses):
        raise ConfigError(f"witness file {path}: quorum {quorum} is not 1..{len(witnesses)}")
    return WitnessPolicy(tuple(witnesses), quorum)


# --- the heads log -------------------------------------------------------------------------------


@dataclass
class HeadsLog:
    """The archive's heads as verified, and the Merkle tree over their note texts."""

    heads: list[ArchiveHead]
    tree: MerkleTree

    @property
    def size(self) -> int:
        return self.tree.size

    def checkpoint(self, archive_name: str, size: int | None = None) -> Checkpoint:
        size = self.size if size is None else size
        return Checkpoint(heads_origin(archive_name), size, self.tree.root(size))


def read_heads_log(
    store: ObjectStore, trust: TrustStore, archive_name: str | None, *, strict: bool = True
) -> HeadsLog:
    """Every head from 0 up, each opened with ``trust``; stops at the first gap when not strict."""
    heads: list[ArchiveHead] = []
    for key in store.list(HEAD_PREFIX):
        seq = head_seq(key)
        if seq is None:
            continue
        try:
            if seq != len(heads):
                raise FormatError(f"archive head {key} follows head {len(heads) - 1}")
            head, _ = open_head(store.get(key), trust, archive_name=archive_name)
        except (SignatureError, FormatError, ObjectMissingError) as exc:
            if strict:
                raise AnchorError(f"the heads log cannot be read: {exc}") from None
            break
        heads.append(head)
    return HeadsLog(heads, MerkleTree([leaf_hash(head.body()) for head in heads]))


# --- the tlog-witness protocol -------------------------------------------------------------------


def encode_request(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """An add-checkpoint body: ``old N``, proof lines, a blank line, the signed checkpoint."""
    if len(proof) > MAX_PROOF_LINES:
        raise FormatError(f"a consistency proof of {len(proof)} hashes is too long to send")
    lines = [f"old {old_size}".encode()] + [base64.b64encode(h) for h in proof]
    return b"\n".join(lines) + b"\n\n" + note


def parse_request(body: bytes) -> tuple[int, list[bytes], bytes]:
    """Split an add-checkpoint body strictly; :class:`FormatError` on anything malformed."""
    head, sep, note = body.partition(b"\n\n")
    if not sep or not head:
        raise FormatError("add-checkpoint body has no blank line after the old size and proof")
    lines = head.split(b"\n")
    first = lines[0].decode("ascii", errors="replace")
    if not first.startswith("old ") or not _NUMBER.fullmatch(first[4:]):
        raise FormatError("add-checkpoint body does not start with 'old <size>'")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise FormatError("add-checkpoint body holds more than 63 proof lines")
    proof = []
    for line in lines[1:]:
        try:
            digest = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise FormatError("a consistency proof line is not base64") from None
        if len(digest) != 32 or base64.b64encode(digest) != line:
            raise FormatError("a consistency proof line is not the base64 of 32 bytes")
        proof.append(digest)
    return int(first[4:]), proof, note


def add_checkpoint(witness: Witness, body: bytes, *, timeout: float = 10.0) -> bytes:
    """POST ``body`` to the witness; its cosignature lines, or :class:`AnchorError`.

    A ``409`` carries the witness's size in ``AnchorError.size`` (Content-Type checked).
    """
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked when configured
        witness.url + "/add-checkpoint", data=body, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            lines: bytes = answer.read(_MAX_BODY)
            return lines
    except urllib.error.HTTPError as exc:
        text = exc.read(64)
        kind = (exc.headers.get("Content-Type") or "").split(";")[0].strip()
        if exc.code == 409 and kind == SIZE_CONTENT_TYPE:
            decoded = text.decode("ascii", errors="replace")
            if decoded.endswith("\n") and _NUMBER.fullmatch(decoded[:-1]):
                raise AnchorError(
                    f"witness {witness.name} holds size {decoded[:-1]}",
                    status=409,
                    size=int(decoded[:-1]),
                ) from None
        raise AnchorError(
            f"witness {witness.name} answered HTTP {exc.code}", status=exc.code
        ) from None
    except (OSError, ValueError) as exc:
        raise AnchorError(f"witness {witness.name} unreachable: {exc}") from None


def _submit(
    witness: Witness, log: HeadsLog, note: bytes, old: int, *, timeout: float
) -> tuple[bytes, int]:
    """Submit ``note`` from ``old``; retry once from the size a 409 names. (lines, old used)."""
    for attempt in range(2):
        proof = log.tree.consistency_proof(old, log.size) if old else []
        try:
            return add_checkpoint(witness, encode_request(old, proof, note), timeout=timeout), old
        except AnchorError as exc:
            if exc.status == 422:
                raise AnchorError(
                    f"witness {witness.name} refuses the heads as inconsistent with the "
                    f"{old} it saw (fork)",
                    status=422,
                ) from None
            if exc.status != 409 or exc.size is None:
                raise
            if exc.size > log.size:
                raise AnchorError(
                    f"witness {witness.name} has seen {exc.size} archive heads, the archive has "
                    f"{log.size}: heads were removed (rollback) or the archive forked",
                    status=409,
                    size=exc.size,
                ) from None
            if exc.size == old:
                raise AnchorError(
                    f"witness {witness.name} holds another root for {exc.size} heads (fork)",
                    status=409,
                    size=exc.size,
                ) from None
            if attempt:
                raise AnchorError(
                    f"witness {witness.name} moved to size {exc.size} meanwhile; try again",
                    status=409,
                    size=exc.size,
                ) from None
            old = exc.size
    raise AssertionError("unreachable")


@dataclass
class CosignRun:
    stored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def cosign_head(
    store: ObjectStore,
    witnesses: Sequence[Witness],
    *,
    signer: Signer,
    trust: TrustStore,
    archive_name: str,
    timeout: float = 10.0,
) -> CosignRun:
    """Submit the heads log's checkpoint to every witness; store what they cosign."""
    run = CosignRun()
    try:
        log = read_heads_log(store, trust, archive_name)
    except AnchorError as exc:
        run.failed.append(str(exc))
        return run
    if not log.size:
        return run
    newest = log.heads[-1]
    checkpoint = log.checkpoint(archive_name)
    note = sign_note(checkpoint.body(), [signer])
    try:
        retention = store.info(head_key(newest.seq)).retention
    except ObjectMissingError:
        retention = None
    for witness in witnesses:
        key = cosignature_key(newest.seq, witness.key)
        if store.exists(key):
            continue
        try:
            lines, _ = _submit(witness, log, note, _last_size(store, witness), timeout=timeout)
            cosigned = note + lines
            _, found = cosignatures_of(cosigned, [witness.key])
            if not found:
                raise AnchorError(f"witness {witness.name} returned no cosignature of its key")
            store.put(key, cosigned, retention=retention, content_type="text/plain")
        except (AnchorError, SignatureError, FormatError) as exc:
            log_message = f"head {newest.seq} not cosigned by {witness.name}: {exc}"
            logging.getLogger(__name__).warning("%s", log_message)
            run.failed.append(log_message)
            continue
        run.stored.append(key)
    return run


def _last_size(store: ObjectStore, witness: Witness) -> int:
    """The heads-log size of the newest note this witness cosigned for us (0 if none)."""
    suffix = f"/{witness.key.key_id.hex()}.note"
    keys = [key for key in store.list(COSIGNATURE_PREFIX) if key.endswith(suffix)]
    return int(keys[-1][len(COSIGNATURE_PREFIX) :].split("/")[0]) + 1 if keys else 0


# --- checking ------------------------------------------------------------------------------------


@dataclass
class WitnessSummary:
    quorum: int
    witnesses: int
    heads: int = 0
    # witness name -> the size of the newest heads log it cosigned (from the stored notes)
    cosigned: dict[str, int] = field(default_factory=dict)
    # witness name -> what asking it now said
    asked: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        newest = sum(1 for size in self.cosigned.values() if size == self.heads)
        out = [
            f"witnesses: {newest} of {self.witnesses} cosigned the newest head ({self.heads} "
            f"heads; quorum {self.quorum})"
        ]
        out += [f"witness {name}: {said}" for name, said in sorted(self.asked.items())]
        return out


def check_witnesses(
    store: ObjectStore,
    trust: TrustStore,
    policy: WitnessPolicy,
    failures: list[Failure],
    *,
    archive_name: str,
    ask: bool = True,
    timeout: float = 10.0,
) -> WitnessSummary:
    """Check stored cosignatures against the heads, the quorum, and (``ask``) the witnesses."""

    def fail(message: str, key: str | None = None) -> None:
        failures.append(Failure(STEP, message, None, key))

    summary = WitnessSummary(policy.quorum, len(policy.witnesses))
    log = read_heads_log(store, trust, archive_name, strict=False)
    summary.heads = log.size
    origin = heads_origin(archive_name)
    newest_note: bytes | None = None
    keys = policy.keys()
    names = {key.key_id.hex(): key.name for key in keys}
    # 1. Every stored cosigned note verifies and agrees with the archive's heads.
    for key in store.list(COSIGNATURE_PREFIX):
        parts = key[len(COSIGNATURE_PREFIX) :].split("/")
        if len(parts) != 2 or not parts[1].endswith(".note") or not parts[0].isdigit():
            fail("unexpected object among the cosignatures", key)
            continue
        name = names.get(parts[1][: -len(".note")])
        if name is None:
            continue  # a witness outside the policy: not counted, not trusted
        try:
            note = store.get(key)
            checkpoint = open_checkpoint(note, trust, origin=origin)
            _, found = cosignatures_of(note, keys)
        except (SignatureError, FormatError, ObjectMissingError) as exc:
            fail(f"cosigned checkpoint does not verify: {exc}", key)
            continue
        if not any(c.name == name for c in found):
            fail(f"holds no cosignature by {name}", key)
            continue
        if checkpoint.size > log.size:
            fail(
                f"{name} cosigned {checkpoint.size} archive heads; the archive has {log.size}: "
                "heads were removed (rollback or truncation)",
                key,
            )
            continue
        if checkpoint.size == 0 or checkpoint.root_hash != log.tree.root(checkpoint.size):
            fail(
                f"{name} cosigned another history of the first {checkpoint.size} archive heads "
                "than the archive holds (fork or re-signed history)",
                key,
            )
            continue
        summary.cosigned[name] = max(summary.cosigned.get(name, 0), checkpoint.size)
        if checkpoint.size == log.size:
            newest_note = note
    # 2. The newest head must be cosigned by a quorum.
    newest = sum(1 for size in summary.cosigned.values() if size == log.size)
    if log.size and newest < policy.quorum:
        fail(
            f"archive head {log.size - 1} is cosigned by {newest} of the policy's witnesses; "
            f"the policy asks for {policy.quorum} (a witness was down: `coexarchive anchor` "
            "submits it again; or the newest heads were replaced)",
            head_key(log.size - 1),
        )
    # 3. Ask each witness whether it has seen more than the archive holds.
    if ask and newest_note is not None:
        for witness in policy.witnesses:
            body = encode_request(log.size, [], _log_signed_only(newest_note, trust))
            try:
                add_checkpoint(witness, body, timeout=timeout)
                summary.asked[witness.name] = f"agrees: its newest is these {log.size} heads"
            except AnchorError as exc:
                if exc.status == 409 and exc.size is not None and exc.size > log.size:
                    fail(
                        f"witness {witness.name} has seen {exc.size} archive heads; the archive "
                        f"holds {log.size}: the newest heads were removed (rollback)"
                    )
                elif exc.status == 409 and exc.size is not None and exc.size < log.size:
                    summary.asked[witness.name] = f"behind: it has seen {exc.size} heads"
                    continue
                elif exc.status in (409, 422):
                    fail(
                        f"witness {witness.name} saw another history of the archive heads "
                        f"(HTTP {exc.status}): fork"
                    )
                summary.asked[witness.name] = f"could not confirm: {exc}"
    elif ask:
        summary.asked["*"] = "not asked: no stored checkpoint of the newest head to show them"
    return summary


def _log_signed_only(note: bytes, trust: TrustStore) -> bytes:
    """The archive's checkpoint with its own signature lines (cosignatures dropped)."""
    split = note.rfind(b"\n\n")
    body, lines = note[: split + 2], note[split + 2 :].splitlines(keepends=True)
    names = {verifier.name for verifier in trust.verifiers}
    kept = [line for line in lines if line[len("— ".encode()) :].split(b" ")[0].decode() in names]
    return body + b"".join(kept)


def timestamp_now() -> int:
    """Cosignature time: POSIX seconds from the one clock."""
    return now_ms() // 1000
