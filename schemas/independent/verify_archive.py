"""An archive verifier written from schemas/SEALING.md alone.

It imports nothing from coexarchive: only hashlib, base64, json, the `rfc8785` package (an
independent RFC 8785 implementation), `cryptography` for Ed25519 and `pyarrow` to read Parquet.
Point it at a directory holding a copy of the archive bucket (e.g. `aws s3 sync s3://bucket dir`)
and a trust file; it runs checks 1-8 of SEALING.md "Verifying an archive without this code" and
prints one line per failure. Retention (check 9) needs the S3 API and is not covered here.

    python schemas/independent/verify_archive.py ARCHIVE_DIR TRUST_FILE
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HASH_COLUMNS = ("leaf_hash", "chain_hash")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


class Frontier:
    """Roots of the perfect subtrees covering leaves 0..size-1, largest first (SEALING.md)."""

    def __init__(self, size: int, hashes: list[bytes]) -> None:
        self.size, self.hashes = size, list(hashes)

    def append(self, leaf: bytes) -> None:
        carry, value = self.size, leaf
        while carry & 1:
            value = node(self.hashes.pop(), value)
            carry >>= 1
        self.hashes.append(value)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return sha256(b"")
        value = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            value = node(left, value)
        return value


def load_trust(path: Path) -> dict[tuple[str, bytes], Ed25519PublicKey]:
    keys = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, key_id, encoded = line.split("+", 2)  # base64 may itself contain "+"
        raw = base64.b64decode(encoded)
        assert len(raw) == 33, "not an Ed25519 verifier key"
        assert raw[0] == 1, "not an Ed25519 verifier key"
        assert sha256(name.encode() + b"\n" + raw)[:4].hex() == key_id, "key id mismatch"
        keys[(name, bytes.fromhex(key_id))] = Ed25519PublicKey.from_public_bytes(raw[1:])
    return keys


def open_checkpoint(note: bytes, trust: dict[tuple[str, bytes], Ed25519PublicKey]) -> list[str]:
    """Body lines of a signed note with at least one valid signature from a trusted key."""
    body, _, signatures = note.decode("utf-8").rpartition("\n\n")
    body += "\n"
    trusted = 0
    for line in signatures.splitlines():
        assert line.startswith("\u2014 "), "not a signature line"
        name, encoded = line[2:].split(" ")
        blob = base64.b64decode(encoded)
        key = trust.get((name, blob[:4]))
        if key is None:
            continue
        key.verify(blob[4:], body.encode("utf-8"))  # raises InvalidSignature
        trusted += 1
    if not trusted:
        raise InvalidSignature("no signature from a trusted key")
    return body.splitlines()


def sealed_object(row: dict, columns: list[str]) -> dict:
    value = {name: row[name] for name in columns if name not in HASH_COLUMNS}
    value["flags"] = list(value["flags"] or [])
    return value


def verify_chain(root: Path, chain: str, trust: dict, failures: list[str]) -> int:
    manifests = sorted((root / "manifests" / f"chain={chain}").glob("*.json"))
    frontier, chain_hash = Frontier(0, []), sha256(b"coexarchive/chain/v1\n" + chain.encode())
    expected_seq, records = 0, 0
    for path in manifests:
        m = json.loads(path.read_bytes())
        where = f"{chain} {path.name}"
        # 1. The seq ranges cover 0..n-1 with no gap or overlap.
        if m["first_seq"] != expected_seq:
            failures.append(f"{where}: starts at seq {m['first_seq']}, expected {expected_seq}")
        # 2. Each listed object exists with the manifest's size and SHA-256.
        data = (root / m["segment"]["key"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != m["segment"]["sha256"]:
            failures.append(f"{where}: segment bytes differ from the manifest")
        table = pq.read_table(pa.BufferReader(data)).sort_by("seq")
        for name in ("event_time", "received_time"):  # timestamps hash as integer ms
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table.column(name).cast(pa.int64()))
        columns = table.schema.names
        # 3-4. Leaf hashes recompute from the sealed object; chain hashes link.
        if base64.b64decode(m["prev_chain_hash"]) != chain_hash:
            failures.append(f"{where}: does not continue the previous segment's chain")
        for row in table.to_pylist():
            leaf = sha256(b"\x00" + rfc8785.dumps(sealed_object(row, columns)))
            if leaf != row["leaf_hash"]:
                failures.append(f"{where}: seq {row['seq']} does not match its leaf hash")
            chain_hash = sha256(chain_hash + leaf)
            if chain_hash != row["chain_hash"]:
                failures.append(f"{where}: seq {row['seq']} breaks the hash chain")
            if row["seq"] != expected_seq:
                failures.append(f"{where}: seq {row['seq']} out of place (expected {expected_seq})")
            frontier.append(leaf)
            expected_seq += 1
            records += 1
        # 5. The Merkle root equals the manifest's.
        if frontier.root() != base64.b64decode(m["root_hash"]):
            failures.append(f"{where}: Merkle root differs from the manifest")
        # 6. The checkpoint is signed by a trusted key and names this chain, size, root and head.
        try:
            lines = open_checkpoint((root / m["checkpoint_key"]).read_bytes(), trust)
        except (InvalidSignature, FileNotFoundError, ValueError, AssertionError) as exc:
            failures.append(f"{where}: checkpoint does not verify ({type(exc).__name__})")
            continue
        origin, size, signed_root, *extensions = lines
        if not origin.endswith(f"/coexarchive/v1/chain/{chain}") or int(size) != frontier.size:
            failures.append(f"{where}: checkpoint names another chain or size")
        if base64.b64decode(signed_root) != frontier.root():
            failures.append(f"{where}: signed root differs from the recomputed tree")
        if f"chain-hash {base64.b64encode(chain_hash).decode()}" not in extensions:
            failures.append(f"{where}: signed chain head differs")
    # 7. Every checkpoint object is one of the segment boundaries' (no fork at another size).
    sizes = {json.loads(p.read_bytes())["tree_size"] for p in manifests}
    for path in (root / "checkpoints" / f"chain={chain}").glob("*"):
        if int(path.name) not in sizes:
            failures.append(f"{chain}: checkpoint {path.name} matches no sealed segment")
    return records


def main(argv: list[str]) -> int:
    root, trust = Path(argv[0]), load_trust(Path(argv[1]))
    pinned = [Path(p) for p in argv[2:]]
    failures: list[str] = []
    chains = sorted(p.name.split("=", 1)[1] for p in (root / "manifests").glob("chain=*"))
    total = {chain: verify_chain(root, chain, trust, failures) for chain in chains}
    # 8. A checkpoint kept elsewhere is not longer than the archive.
    for path in pinned:
        origin, size, *_ = open_checkpoint(path.read_bytes(), trust)
        chain = origin.rsplit("/", 1)[1]
        if int(size) > total.get(chain, 0):
            failures.append(f"{chain}: tail truncated below the pinned size {size}")
    for failure in failures:
        print("FAIL", failure)
    print(f"{sum(total.values())} records in {len(chains)} chains; {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
