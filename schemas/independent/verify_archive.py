"""An archive verifier written from schemas/SEALING.md alone.

It imports nothing from coexarchive: only the standard library, the `rfc8785` package (an
independent RFC 8785 implementation), `cryptography` for Ed25519 and `pyarrow` to read Parquet and
decompress zstd. Point it at a directory holding a copy of the archive bucket (e.g. `aws s3 sync
s3://bucket dir`), a trust file and the archive's name (from your configuration, never from the
archive); it runs checks 1-8, 10, 11 and 12 of SEALING.md "Verifying an archive without this
code" and its fail-closed rule for a run that verified no checkpoint, plus the manifest encoding
and the record-id index, and SEALING.md "Disposition": a segment whose content is missing passes
only when a signed disposition names it, and its kept leaf hashes still link and root the chain.
It prints one FAIL line per failed check and one WARN line per leftover of an interrupted run
("unreferenced, never signed").
Retention (check 9) needs the S3 API and is not covered here; a directory copy holds one version
of each object, so the "one version each" part of checks 7 and 10 is not covered either.

    python schemas/independent/verify_archive.py ARCHIVE_DIR TRUST_FILE ARCHIVE_NAME [PINNED...]

Each PINNED file is a chain checkpoint or an archive head kept outside the archive. Exit status:
0 when every check held (warnings do not fail), 1 when any failed, 2 on a usage error. Checks
never use `assert`, so `python -O` runs them all; anything unexpected in the archive is a FAIL
line, not a traceback.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# SEALING.md "Record fields (version 1)": the sealed object's members, exactly.
SEALED_MEMBERS = (
    "record_version", "seq", "chain_id", "record_id", "kind", "origin", "direction",
    "event_time", "received_time", "waba_id", "business_phone", "customer_id", "customer_wa_id",
    "customer_user_id", "wamid", "msg_type", "text", "media_id", "template_name",
    "template_language", "template_category", "template_status", "status", "context_wamid",
    "ref_record_id", "consent_state", "error_code", "window_open", "flags", "detail", "raw_key",
    "raw_line",
)  # fmt: skip
HASH_COLUMNS = ("leaf_hash", "chain_hash")
TIME_COLUMNS = ("event_time", "received_time")
MANIFEST_FORMAT = "coexarchive.manifest/v1"
INDEX_FORMAT = "coexarchive.record-index/v1"
EMPTY_ROOT = hashlib.sha256(b"").digest()
ZERO_HASH = bytes(32)
MAX_SIGNATURES = 100
NUMBER = re.compile(r"0|[1-9][0-9]{0,19}")
PADDED = re.compile(r"[0-9]{20}")
CHAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
ANCHOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SIG_PREFIX = "\u2014 "
INTENT_BODY = re.compile(
    r"first-seq (0|[1-9][0-9]*)\nlast-seq (0|[1-9][0-9]*)\nmanifest-sha256 ([0-9a-f]{64})\n"
)
# SEALING.md "Object layout": the keys of a chain's objects (below its prefix), and the seq range
# each names: a segment its last seq, a record index or an intent its first seq, for step 12.
SEGMENT_NAME = re.compile(
    r"date=[0-9]{4}-[0-9]{2}-[0-9]{2}/[0-9]{20}-([0-9]{20})-[0-9a-f]{16}\.parquet"
)
INDEX_NAME = re.compile(r"date=[0-9]{4}-[0-9]{2}-[0-9]{2}/([0-9]{20})-[0-9a-f]{16}\.ids\.zst")
INTENT_NAME = re.compile(r"([0-9]{20})-[0-9a-f]{16}")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# SEALING.md "Disposition".
DISPOSITIONS = "dispositions"
LEAVES_FORMAT = b"coexarchive.leaves/v1\n"


class Failed(Exception):
    """One check that did not hold; the message says which and why."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash32(text: Any, what: str) -> bytes:
    """Canonical padded base64 of exactly 32 bytes."""
    require(isinstance(text, str), f"{what} is not a string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Failed(f"{what} is not standard base64") from None
    require(len(raw) == 32 and b64(raw) == text, f"{what} is not the base64 of 32 bytes")
    return raw


def number(text: str, what: str) -> int:
    require(
        bool(NUMBER.fullmatch(text)) and int(text) < 2**64, f"{what} {text[:30]!r} is not canonical"
    )
    return int(text)


def pad(value: int) -> str:
    return f"{value:020d}"


class Frontier:
    """Roots of the perfect subtrees covering leaves 0..size-1, largest first (SEALING.md)."""

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None) -> None:
        self.size, self.hashes = size, list(hashes or [])

    def append(self, leaf: bytes) -> None:
        carry, value = self.size, leaf
        while carry & 1:
            value = node(self.hashes.pop(), value)
            carry >>= 1
        self.hashes.append(value)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        value = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            value = node(left, value)
        return value


def tree_root(leaves: list[bytes]) -> bytes:
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


# --- keys and signed notes (SEALING.md "Keys and trust file", "Checkpoints") -------------------

Trust = dict[tuple[str, bytes], Ed25519PublicKey]


def valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def load_trust(path: Path) -> Trust:
    keys: Trust = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Failed(f"trust file {path}: cannot be read ({exc})") from None
    for number_, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        where = f"trust file {path} line {number_}"
        parts = line.split("+", 2)  # base64 may itself contain "+"
        require(len(parts) == 3, f"{where}: not <name>+<key id>+<key>")
        name, key_id, encoded = parts
        require(valid_key_name(name), f"{where}: invalid key name")
        require(bool(re.fullmatch(r"[0-9a-f]{8}", key_id)), f"{where}: key id is not 8 hex digits")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise Failed(f"{where}: key is not standard base64") from None
        require(len(raw) == 33 and raw[0] == 1, f"{where}: not an Ed25519 verifier key")
        require(
            sha256(name.encode() + b"\n" + raw)[:4].hex() == key_id, f"{where}: key id mismatch"
        )
        require((name, bytes.fromhex(key_id)) not in keys, f"{where}: key listed twice")
        keys[(name, bytes.fromhex(key_id))] = Ed25519PublicKey.from_public_bytes(raw[1:])
    return keys


def open_note(note: bytes, trust: Trust) -> tuple[bytes, list[str]]:
    """The text of a signed note with a valid signature from a trusted key, and who signed."""
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError:
        raise Failed("note is not valid UTF-8") from None
    require(not any(ord(c) < 0x20 and c != "\n" for c in decoded), "note holds a control character")
    split = decoded.rfind("\n\n")
    require(split >= 0, "note has no signature block")
    body, block = decoded[: split + 1], decoded[split + 2 :]
    require(bool(block) and block.endswith("\n"), "note has no signature lines")
    lines = block[:-1].split("\n")
    require(len(lines) <= MAX_SIGNATURES, f"note has more than {MAX_SIGNATURES} signatures")
    signers: list[str] = []
    for line in lines:
        require(line.startswith(SIG_PREFIX), "malformed signature line")
        name, space, encoded = line[len(SIG_PREFIX) :].partition(" ")
        require(bool(space) and valid_key_name(name), "malformed signature line")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise Failed("malformed signature line") from None
        require(len(blob) >= 5, "malformed signature line")
        key = trust.get((name, blob[:4]))
        if key is None:
            continue  # an unknown key: a witness or another archive's key
        try:
            key.verify(blob[4:], body.encode("utf-8"))
        except InvalidSignature:
            raise Failed(f"signature by trusted key {name} does not verify") from None
        signers.append(name)
    require(bool(signers), "no signature from a trusted key")
    return body.encode("utf-8"), signers


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]


def parse_checkpoint(body: bytes) -> Checkpoint:
    lines = body.decode("utf-8")[:-1].split("\n")
    require(len(lines) >= 3, "a checkpoint has an origin, a size and a root line")
    origin, size, root, *extensions = lines
    require(bool(origin), "checkpoint origin is empty")
    require(all(extensions), "checkpoint has an empty extension line")
    return Checkpoint(
        origin, number(size, "checkpoint size"), hash32(root, "checkpoint root"), tuple(extensions)
    )


@dataclass(frozen=True)
class Head:
    origin: str
    seq: int
    prev: bytes
    chains: dict[str, tuple[int, bytes]]
    text: bytes


def parse_head(body: bytes) -> Head:
    lines = body.decode("utf-8")[:-1].split("\n")
    require(len(lines) >= 3, "an archive head has an origin, a seq and a previous-hash line")
    origin, seq, prev, *chain_lines = lines
    chains: dict[str, tuple[int, bytes]] = {}
    ids = []
    anchors = [line for line in chain_lines if line.startswith("anchor/")]
    chain_lines = chain_lines[: len(chain_lines) - len(anchors)]
    # Anchor lines (timestamps of earlier heads) come last; this verifier checks their form, not
    # the tokens they seal (that needs an RFC 3161 implementation: coexarchive verify does it).
    for line in anchors:
        parts = line.split(" ")
        kind = parts[0]
        require(
            (kind == "anchor/timestamp" and len(parts) == 4)
            or (kind == "anchor/timestamp-missing" and len(parts) == 3),
            f"archive head anchor line {line[:40]!r} is not in a known form",
        )
        require(number(parts[1], "anchor seq") < number(seq, "archive head seq"), "anchor seq")
        require(bool(ANCHOR_NAME.fullmatch(parts[2])), f"bad anchor name {parts[2][:40]!r}")
        if len(parts) == 4:
            hash32(parts[3], "anchor digest")
    encoded = [line.encode() for line in anchors]
    require(encoded == sorted(set(encoded)), "archive head anchor lines are not sorted and unique")
    for line in chain_lines:
        parts = line.split(" ")
        require(len(parts) == 3, f"archive head line {line[:40]!r} is not '<chain> <size> <root>'")
        chain, size, root = parts
        require(
            bool(CHAIN_ID.fullmatch(chain)), f"archive head names an invalid chain {chain[:40]!r}"
        )
        size_value = number(size, f"archive head size of {chain}")
        require(size_value >= 1, f"archive head states size 0 for {chain}")
        chains[chain] = (size_value, hash32(root, f"archive head root of {chain}"))
        ids.append(chain.encode())
    require(ids == sorted(set(ids)), "archive head chains are not sorted by id and unique")
    return Head(
        origin,
        number(seq, "archive head seq"),
        hash32(prev, "archive head previous hash"),
        chains,
        body,
    )


# --- reading objects ----------------------------------------------------------------------------


def read(root: Path, key: str) -> bytes:
    path = root / key
    require(".." not in Path(key).parts and not Path(key).is_absolute(), f"unsafe key {key!r}")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise Failed(f"{key} is missing") from None
    except OSError as exc:
        raise Failed(f"{key} cannot be read ({exc.strerror})") from None


def zstd_content_size(data: bytes) -> int:
    """The content size a zstd frame header states (RFC 8878 §3.1.1.1); Failed if it states none."""
    require(len(data) >= 6 and data[:4] == ZSTD_MAGIC, "not a zstd frame")
    descriptor = data[4]
    fcs_flag, single = descriptor >> 6, (descriptor >> 5) & 1
    dict_bytes = (0, 1, 2, 4)[descriptor & 3]
    fcs_bytes = (1 if single else 0, 2, 4, 8)[fcs_flag]
    require(fcs_bytes > 0, "zstd frame does not state its content size")
    at = 5 + (0 if single else 1) + dict_bytes
    require(len(data) >= at + fcs_bytes, "zstd frame header is truncated")
    value = int.from_bytes(data[at : at + fcs_bytes], "little")
    return value + 256 if fcs_bytes == 2 else value


def index_lines(data: bytes) -> list[str]:
    size = zstd_content_size(data)
    require(size <= 1 << 30, "record index states an implausible size")
    try:
        text = pa.Codec("zstd").decompress(data, decompressed_size=size, asbytes=True)
        decoded = bytes(text).decode("utf-8")
    except (pa.ArrowException, UnicodeDecodeError) as exc:
        raise Failed(f"record index does not decompress ({exc})") from None
    require(decoded.endswith("\n"), "record index does not end in a newline")
    lines = decoded[:-1].split("\n")
    require(lines[0] == INDEX_FORMAT, "record index has an unknown format line")
    return lines[1:]


def sealed_rows(data: bytes) -> list[dict[str, Any]]:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise Failed(f"segment is not readable Parquet ({exc})") from None
    names = set(table.schema.names)
    expected = set(SEALED_MEMBERS) | set(HASH_COLUMNS)
    require(
        names == expected,
        f"segment columns differ from the record fields: {sorted(names ^ expected)}",
    )
    for name in TIME_COLUMNS:  # timestamps hash as integer milliseconds
        index = table.schema.get_field_index(name)
        require(
            str(table.schema.field(name).type) == "timestamp[ms, tz=UTC]",
            f"{name} is not timestamp[ms, UTC]",
        )
        table = table.set_column(index, name, table.column(name).cast(pa.int64()))
    return sorted(table.to_pylist(), key=lambda row: row["seq"])


def sealed_object(row: dict[str, Any]) -> dict[str, Any]:
    value = {name: row[name] for name in SEALED_MEMBERS}
    value["flags"] = list(value["flags"] or [])
    return value


# --- one chain ----------------------------------------------------------------------------------


@dataclass
class Chain:
    chain_id: str
    leaves: list[bytes] = field(default_factory=list)
    roots: dict[int, bytes] = field(default_factory=dict)  # root at each segment boundary

    @property
    def size(self) -> int:
        return len(self.leaves)

    def root_at(self, size: int) -> bytes:
        if size not in self.roots:
            self.roots[size] = tree_root(self.leaves[:size])
        return self.roots[size]


@dataclass(frozen=True)
class Segment:
    """A manifest that passed checks 1-5: its range, what it names, whether check 6 held."""

    manifest_key: str
    first_seq: int
    last_seq: int
    manifest_sha256: str  # hex, of the exact manifest bytes
    names: tuple[str, str, str]  # its segment, record index and intent keys
    signed: bool

    @property
    def tree_size(self) -> int:
        return self.last_seq + 1


class Verifier:
    def __init__(self, root: Path, trust: Trust, archive: str) -> None:
        self.root, self.trust, self.archive = root, trust, archive
        self.failures: list[str] = []
        self.warnings: list[str] = []
        self.signed_checkpoints = 0  # checkpoints that passed step 6, for the fail-closed rule
        # (chain, first seq) -> the entry of a disposition in a signed segment of its chain.
        self.disposed: dict[tuple[str, int], dict[str, Any]] = {}

    def read_dispositions(self, segments: list[Segment]) -> None:
        """The entries of every disposition whose segment a trusted checkpoint signed."""
        for segment in segments:
            if not segment.signed:
                continue
            for row in sealed_rows(read(self.root, segment.names[0])):
                detail = json.loads(row["detail"])
                require(
                    isinstance(detail, dict) and isinstance(detail.get("segments"), list),
                    f"disposition seq {row['seq']} is malformed",
                )
                for entry in detail["segments"]:
                    require(isinstance(entry, dict), "a disposition entry is not an object")
                    key = (str(entry.get("chain")), int(entry.get("first_seq", -1)))
                    self.disposed[key] = entry

    def fail(self, where: str, message: str) -> None:
        self.failures.append(f"{where}: {message}")

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(f"{where}: {message}")

    def check(self, where: str, step: Any, *args: Any) -> Any:
        """Run one check; a Failed (or anything unexpected) becomes a FAIL line, not a crash."""
        try:
            return step(*args)
        except Failed as exc:
            self.fail(where, str(exc))
        except Exception as exc:  # an unreadable archive fails, it never crashes
            self.fail(where, f"could not be checked ({type(exc).__name__}: {exc})")
        return None

    def chain_ids(self) -> list[str]:
        found: set[str] = set()
        for top in ("manifests", "checkpoints", "archive/v1", "dedup/v1", "intents"):
            for path in (self.root / top).glob("chain=*"):
                found.add(path.name.split("=", 1)[1])
        return sorted(found)

    def verify_chain(self, chain_id: str) -> Chain:
        chain = Chain(chain_id)
        where = f"chain {chain_id}"
        if not CHAIN_ID.fullmatch(chain_id):
            self.fail(where, "invalid chain id")
            return chain
        manifests = sorted((self.root / "manifests" / f"chain={chain_id}").glob("*"))
        checkpoints = sorted((self.root / "checkpoints" / f"chain={chain_id}").glob("*"))
        if not manifests:
            self.fail(where, "has objects (segments or checkpoints) but no segment manifests")
        state = (sha256(b"coexarchive/chain/v1\n" + chain_id.encode()), Frontier())
        segments: list[Segment] = []
        for path in manifests:
            result = self.check(f"{where} {path.name}", self.verify_segment, chain, path, state)
            if result is None:
                break  # later segments cannot be linked past a broken one
            state, segment = result
            segments.append(segment)
        else:
            # 7. Every checkpoint object is a segment boundary's (no fork at another size).
            sizes = {segment.tree_size for segment in segments}
            for path in checkpoints:
                if not PADDED.fullmatch(path.name) or int(path.name) not in sizes:
                    self.fail(where, f"checkpoint {path.name} matches no sealed segment")
        self.check(where, self.verify_tail, chain_id, segments)
        if chain_id == DISPOSITIONS:
            self.check(where, self.read_dispositions, segments)
        return chain

    def verify_tail(self, chain_id: str, segments: list[Segment]) -> None:
        """12. Nothing of the chain lies past its last signed checkpoint.

        S is the largest tree size whose checkpoint passed step 6 (a segment that broke checks
        1-5 ends the list, so nothing past it counts as signed). A manifest past S, and every
        object of the chain that no manifest within S names, is an unsigned tail (FAIL), unless
        it is not a manifest and its key names a seq range wholly below S: a leftover of a run
        interrupted before its manifest (WARN "unreferenced, never signed").
        """
        where = f"chain {chain_id}"
        signed = [segment.tree_size for segment in segments if segment.signed]
        self.signed_checkpoints += len(signed)
        size = max(signed, default=0)
        if not signed:
            self.fail(where, "none of its checkpoints verifies: nothing of this chain is signed")
        named: set[str] = set()
        unsigned: dict[str, str] = {}  # key -> the manifest past S that names it
        for segment in segments:
            if segment.tree_size <= size:
                named.update((segment.manifest_key, *segment.names))
                continue
            self.fail(
                f"{where} {segment.manifest_key}",
                f"unsigned tail: manifest past the last signed checkpoint (size {size}) is not "
                f"signed and may be forged ({self.intent_says(chain_id, segment)})",
            )
            named.add(segment.manifest_key)  # reported just now
            for key in segment.names:
                unsigned.setdefault(key, segment.manifest_key)
        layout = (
            ("segment", f"archive/v1/chain={chain_id}", SEGMENT_NAME),
            ("record index", f"dedup/v1/chain={chain_id}", INDEX_NAME),
            ("intent", f"intents/chain={chain_id}", INTENT_NAME),
            ("manifest", f"manifests/chain={chain_id}", None),
        )
        for kind, prefix, pattern in layout:
            directory = self.root / prefix
            if not directory.is_dir():
                continue
            for path in sorted(p for p in directory.rglob("*") if not p.is_dir()):
                key = path.relative_to(self.root).as_posix()
                if key in named:
                    continue
                if key in unsigned:
                    self.fail(
                        f"{where} {key}",
                        f"unsigned tail: {kind} named only by the unsigned manifest "
                        f"{unsigned[key]}",
                    )
                    continue
                match = pattern.fullmatch(key[len(prefix) + 1 :]) if pattern else None
                if match is not None and int(match[1]) < size:
                    self.warn(
                        f"{where} {key}",
                        f"unreferenced, never signed: {kind} left by a run interrupted before "
                        f"its manifest; its seq range lies below the signed size {size}",
                    )
                elif pattern is not None and match is None:
                    self.fail(
                        f"{where} {key}",
                        f"unsigned tail: unexpected object among the chain's {kind}s; "
                        "it is not signed",
                    )
                elif pattern is None:
                    self.fail(
                        f"{where} {key}",
                        f"unsigned tail: manifest that no signed checkpoint covers (last signed "
                        f"size {size}); it is not signed and may be forged",
                    )
                else:
                    self.fail(
                        f"{where} {key}",
                        f"unsigned tail: {kind} past the last signed checkpoint (size {size}) "
                        "that no signed manifest names; it is not signed and may be forged",
                    )

    def intent_says(self, chain_id: str, segment: Segment) -> str:
        """Whether a trusted intent names this manifest (a crashed run) or not (a forgery?)."""
        key = segment.names[2]
        if not (self.root / key).is_file():
            return "no intent names it"
        try:
            body, _ = open_note(read(self.root, key), self.trust)
        except Failed as exc:
            return f"its intent does not verify: {exc}"
        origin, _, rest = body.decode("utf-8").partition("\n")
        match = INTENT_BODY.fullmatch(rest)
        if origin != f"{self.archive}/coexarchive/v1/intent/{chain_id}" or match is None:
            return "its intent is not this archive's intent for this chain"
        stated = (int(match[1]), int(match[2]), match[3])
        if stated != (segment.first_seq, segment.last_seq, segment.manifest_sha256):
            return "its intent names another seq range or other manifest bytes"
        return "a trusted intent names it: a writer crashed before its checkpoint"

    def verify_segment(
        self, chain: Chain, path: Path, state: tuple[bytes, Frontier]
    ) -> tuple[tuple[bytes, Frontier], Segment]:
        chain_id = chain.chain_id
        chain_hash, frontier = state
        data = path.read_bytes()
        try:
            m = json.loads(data)
        except ValueError:
            raise Failed("manifest is not JSON") from None
        require(isinstance(m, dict), "manifest is not a JSON object")
        # The manifest's bytes are JCS plus one newline.
        require(
            rfc8785.dumps(m) + b"\n" == data, "manifest is not in canonical form (JCS + newline)"
        )
        require(m.get("format") == MANIFEST_FORMAT, "unknown manifest format")
        require(
            m.get("archive") == self.archive,
            f"manifest names archive {m.get('archive')!r}, not {self.archive!r}",
        )
        require(m.get("chain_id") == chain_id, "manifest names another chain")
        first, last = m.get("first_seq"), m.get("last_seq")
        require(
            type(first) is int and type(last) is int and 0 <= first <= last,
            "manifest seq range is invalid",
        )
        require(path.name == f"{pad(first)}.json", "manifest is stored under another seq")
        require(
            m.get("tree_size") == last + 1 and m.get("record_count") == last - first + 1,
            "manifest sizes disagree with its seq range",
        )
        # 1. The seq ranges cover 0..n-1 with no gap or overlap.
        require(
            first == frontier.size,
            f"segment starts at seq {first}, expected {frontier.size} (gap or overlap)",
        )
        segment_ref = m.get("segment")
        if (
            isinstance(segment_ref, dict)
            and isinstance(segment_ref.get("key"), str)
            and not (self.root / segment_ref["key"]).is_file()
        ):
            # Disposition: the content is gone, and only a signed disposition may say so.
            state = self.verify_disposed(chain, m, data, (chain_hash, frontier))
            return self.finish_segment(chain, path, m, data, *state)
        # 2. Each listed object exists; its size and SHA-256 equal the manifest's.
        blobs = {}
        for member in ("segment", "record_index"):
            ref = m.get(member)
            require(
                isinstance(ref, dict) and isinstance(ref.get("key"), str),
                f"manifest {member} is invalid",
            )
            blob = read(self.root, ref["key"])
            require(len(blob) == ref.get("size"), f"{ref['key']}: size differs from the manifest")
            require(
                hashlib.sha256(blob).hexdigest() == ref.get("sha256"),
                f"{ref['key']}: SHA-256 differs from the manifest",
            )
            blobs[member] = blob
        rows = sealed_rows(blobs["segment"])
        require(
            len(rows) == last - first + 1,
            f"segment holds {len(rows)} rows, the manifest says {last - first + 1}",
        )
        # The record index lists exactly the segment's records.
        expected_index = sorted(
            {f"{row['record_id']} {row['kind']}" for row in rows}, key=str.encode
        )
        require(
            index_lines(blobs["record_index"]) == expected_index,
            "record index does not list exactly the segment's records",
        )
        # 3-4. Leaves recompute from the sealed object; chain hashes link; seq runs first..last.
        require(
            hash32(m.get("prev_chain_hash"), "prev_chain_hash") == chain_hash,
            "prev_chain_hash does not continue the previous segment's chain",
        )
        for offset, row in enumerate(rows):
            seq = row["seq"]
            require(seq == first + offset, f"seq {seq} out of place (expected {first + offset})")
            require(row["chain_id"] == chain_id, f"seq {seq} belongs to chain {row['chain_id']!r}")
            leaf = sha256(b"\x00" + rfc8785.dumps(sealed_object(row)))
            require(leaf == row["leaf_hash"], f"seq {seq} does not match its leaf hash")
            chain_hash = sha256(chain_hash + leaf)
            require(chain_hash == row["chain_hash"], f"seq {seq} breaks the hash chain")
            frontier.append(leaf)
            chain.leaves.append(leaf)
        return self.finish_segment(chain, path, m, data, chain_hash, frontier)

    def verify_disposed(
        self, chain: Chain, m: dict[str, Any], data: bytes, state: tuple[bytes, Frontier]
    ) -> tuple[bytes, Frontier]:
        """2, 4. A disposed segment: the disposition names it, its kept leaves link the chain."""
        chain_hash, frontier = state
        first, last = m["first_seq"], m["last_seq"]
        entry = self.disposed.get((chain.chain_id, first))
        if entry is None:
            raise Failed(f"{m['segment']['key']} is missing, and no signed disposition names it")
        require(
            entry.get("last_seq") == last
            and entry.get("segment") == m.get("segment")
            and entry.get("record_index") == m.get("record_index")
            and entry.get("manifest_sha256") == hashlib.sha256(data).hexdigest(),
            f"{m['segment']['key']} is missing, and the disposition naming seq {first} is about "
            "another manifest",
        )
        ref = entry.get("leaves")
        require(
            isinstance(ref, dict) and isinstance(ref.get("key"), str),
            "disposition leaves are invalid",
        )
        blob = read(self.root, ref["key"])
        require(
            len(blob) == ref.get("size") and hashlib.sha256(blob).hexdigest() == ref.get("sha256"),
            f"{ref['key']}: differs from the SHA-256 the disposition sealed",
        )
        body = blob[len(LEAVES_FORMAT) :]
        require(
            blob.startswith(LEAVES_FORMAT) and len(body) == 32 * (last - first + 1),
            f"{ref['key']}: not the segment's {last - first + 1} leaf hashes",
        )
        require(
            hash32(m.get("prev_chain_hash"), "prev_chain_hash") == chain_hash,
            "prev_chain_hash does not continue the previous segment's chain",
        )
        for offset in range(0, len(body), 32):
            leaf = body[offset : offset + 32]
            chain_hash = sha256(chain_hash + leaf)
            frontier.append(leaf)
            chain.leaves.append(leaf)
        return chain_hash, frontier

    def finish_segment(
        self,
        chain: Chain,
        path: Path,
        m: dict[str, Any],
        data: bytes,
        chain_hash: bytes,
        frontier: Frontier,
    ) -> tuple[tuple[bytes, Frontier], Segment]:
        chain_id, first, last = chain.chain_id, m["first_seq"], m["last_seq"]
        require(
            hash32(m.get("chain_hash"), "chain_hash") == chain_hash,
            "manifest chain_hash differs from the last row's",
        )
        # 5. The extended frontier gives the manifest's root and frontier.
        root = frontier.root()
        require(
            hash32(m.get("root_hash"), "root_hash") == root, "Merkle root differs from the manifest"
        )
        stated = m.get("frontier")
        require(
            isinstance(stated, list) and [hash32(h, "frontier") for h in stated] == frontier.hashes,
            "frontier differs from the manifest",
        )
        chain.roots[frontier.size] = root
        # 6. Checked apart, so that an untrusted checkpoint does not stop the next segments' checks.
        signed = self.check(
            f"chain {chain_id} {path.name}",
            self.verify_checkpoint,
            chain_id,
            m.get("checkpoint_key"),
            frontier.size,
            root,
            chain_hash,
        )
        digest = hashlib.sha256(data).hexdigest()
        names = (
            m["segment"]["key"],
            m["record_index"]["key"],
            f"intents/chain={chain_id}/{pad(first)}-{digest[:16]}",
        )
        segment = Segment(
            path.relative_to(self.root).as_posix(), first, last, digest, names, signed is True
        )
        return (chain_hash, frontier), segment

    def verify_checkpoint(
        self, chain_id: str, named: Any, size: int, root: bytes, chain_hash: bytes
    ) -> bool:
        """6. The checkpoint is signed by a trusted key for this chain, size, root and head."""
        key = f"checkpoints/chain={chain_id}/{pad(size)}"
        require(named == key, "manifest names another checkpoint key")
        try:
            body, _ = open_note(read(self.root, key), self.trust)
            checkpoint = parse_checkpoint(body)
        except Failed as exc:
            raise Failed(f"checkpoint does not verify ({exc})") from None
        require(
            checkpoint.origin == f"{self.archive}/coexarchive/v1/chain/{chain_id}",
            f"checkpoint origin {checkpoint.origin!r} is not this archive's chain",
        )
        require(checkpoint.size == size, "checkpoint states another size")
        require(checkpoint.root == root, "signed root differs from the recomputed tree")
        require(
            f"chain-hash {b64(chain_hash)}" in checkpoint.extensions, "signed chain head differs"
        )
        return True

    # 8. Pinned checkpoints; 10-11. archive heads.
    def verify_pinned_checkpoint(self, checkpoint: Checkpoint, chains: dict[str, Chain]) -> None:
        prefix = f"{self.archive}/coexarchive/v1/chain/"
        require(
            checkpoint.origin.startswith(prefix),
            f"pinned checkpoint origin {checkpoint.origin!r} is not this archive's",
        )
        chain_id = checkpoint.origin[len(prefix) :]
        chain = chains.get(chain_id)
        size = chain.size if chain else 0
        require(
            checkpoint.size <= size,
            f"chain {chain_id}: tail truncated: the archive has {size} records, "
            f"the pinned checkpoint vouches for {checkpoint.size}",
        )
        if chain is not None:
            require(
                chain.root_at(checkpoint.size) == checkpoint.root,
                f"chain {chain_id}: the tree at size {checkpoint.size} differs from the pinned "
                "checkpoint (fork)",
            )

    def verify_heads(self, chains: dict[str, Chain]) -> dict[int, Head]:
        heads: dict[int, Head] = {}
        directory = self.root / "heads"
        paths = sorted(directory.glob("*")) if directory.is_dir() else []
        previous: Head | None = None
        for expected, path in enumerate(paths):
            where = f"archive head {path.name}"
            if not PADDED.fullmatch(path.name):
                self.fail(where, "unexpected object among the archive heads")
                return heads
            if int(path.name) != expected:
                self.fail(where, f"archive heads {expected}..{int(path.name) - 1} are missing")
                return heads
            head = self.check(where, self.open_head, path.read_bytes())
            if head is None:
                return heads
            if head.seq != expected:
                self.fail(where, f"states seq {head.seq}")
            want = sha256(previous.text) if previous is not None else ZERO_HASH
            if head.prev != want:
                self.fail(where, "does not link to the previous head (its previous hash differs)")
            if previous is not None:
                for chain_id, (size, root) in previous.chains.items():
                    now = head.chains.get(chain_id)
                    if now is None:
                        self.fail(
                            where, f"drops chain {chain_id}, which head {previous.seq} listed"
                        )
                    elif now[0] < size:
                        self.fail(where, f"shortens chain {chain_id} from {size} to {now[0]}")
                    elif now[0] == size and now[1] != root:
                        self.fail(where, f"states another root for chain {chain_id} at size {size}")
            for chain_id, (size, root) in head.chains.items():
                self.check(
                    where, self.verify_stated, chain_id, size, root, chains, f"head {head.seq}"
                )
            heads[head.seq] = head
            previous = head
        if not heads and chains:
            self.fail(
                "archive", "has chains but no archive head: nothing signed says which chains exist"
            )
        elif previous is not None:
            for chain_id, chain in chains.items():
                if chain.size and chain_id not in previous.chains:
                    print(
                        f"NOTE chain {chain_id}: not yet in the newest archive head "
                        f"({chain.size} records)"
                    )
        return heads

    def open_head(self, note: bytes) -> Head:
        try:
            body, _ = open_note(note, self.trust)
        except Failed as exc:
            raise Failed(f"does not verify ({exc})") from None
        head = parse_head(body)
        require(
            head.origin == f"{self.archive}/coexarchive/v1/head",
            f"origin {head.origin!r} is not this archive's head",
        )
        return head

    def verify_stated(
        self, chain_id: str, size: int, root: bytes, chains: dict[str, Chain], label: str
    ) -> None:
        chain = chains.get(chain_id)
        if chain is None or chain.size == 0:
            raise Failed(
                f"chain {chain_id} vanished: {label} lists it with {size} records, "
                "the archive has none"
            )
        require(
            chain.size >= size,
            f"chain {chain_id} shortened: the archive has {chain.size} records, "
            f"{label} vouches for {size}",
        )
        require(
            chain.root_at(size) == root,
            f"chain {chain_id}: the tree at size {size} differs from {label} (fork)",
        )

    def verify_pinned(self, path: Path, chains: dict[str, Chain], heads: dict[int, Head]) -> None:
        try:
            note = path.read_bytes()
        except OSError as exc:
            raise Failed(f"cannot be read ({exc.strerror})") from None
        try:
            body, _ = open_note(note, self.trust)
        except Failed as exc:
            raise Failed(f"does not verify ({exc})") from None
        origin = body.decode("utf-8").split("\n", 1)[0]
        if not origin.endswith("/coexarchive/v1/head"):
            self.verify_pinned_checkpoint(parse_checkpoint(body), chains)
            return
        head = parse_head(body)
        require(
            head.origin == f"{self.archive}/coexarchive/v1/head",
            f"pinned head origin {head.origin!r} is not this archive's",
        )
        kept = heads.get(head.seq)
        if kept is None:
            raise Failed(
                f"pinned archive head {head.seq} is not in the archive: heads were deleted "
                "or rolled back"
            )
        if kept.text != head.text:
            where = f"pinned {path.name}"
            self.fail(where, f"archive head {head.seq} differs from the pinned one (fork)")
        for chain_id, (size, root) in head.chains.items():
            self.check(
                f"pinned head {head.seq}",
                self.verify_stated,
                chain_id,
                size,
                root,
                chains,
                "the pinned head",
            )


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().split("\n\n")[2], file=sys.stderr)
        return 2
    root, trust_path, archive = Path(argv[0]), Path(argv[1]), argv[2]
    pinned = [Path(p) for p in argv[3:]]
    if not root.is_dir():
        print(f"FAIL archive: {root} is not a directory")
        return 1
    try:
        trust = load_trust(trust_path)
    except Failed as exc:
        print(f"FAIL {exc}")
        return 1
    verifier = Verifier(root, trust, archive)
    # The disposition register first: it says which missing content the other chains may lack.
    order = sorted(verifier.chain_ids(), key=lambda chain_id: chain_id != DISPOSITIONS)
    chains = {chain_id: verifier.verify_chain(chain_id) for chain_id in order}
    heads = verifier.verify_heads(chains)
    for path in pinned:
        verifier.check(f"pinned {path.name}", verifier.verify_pinned, path, chains, heads)
    # Fail closed: a run that verified no checkpoint (an empty directory, one holding only raw
    # objects, chains none of whose checkpoints verifies) verified nothing.
    if not verifier.signed_checkpoints:
        verifier.fail("archive", "no checkpoint verified: nothing was verified")
    for warning in verifier.warnings:
        print("WARN", warning)
    for failure in verifier.failures:
        print("FAIL", failure)
    records = sum(chain.size for chain in chains.values())
    newest = max(heads) if heads else None
    head_text = (
        f"archive head {newest} ({len(heads[newest].chains)} chains)"
        if newest is not None
        else "no archive head"
    )
    print(
        f"{records} records in {len(chains)} chains; {head_text}; {len(verifier.failures)} failures"
        + (f", {len(verifier.warnings)} warnings" if verifier.warnings else "")
    )
    return 1 if verifier.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
