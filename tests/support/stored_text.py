"""Every stored byte as searchable text: what the erasure tests look for plaintext in."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import zstandard

from coexarchive.store.base import ObjectStore


def every_stored_text(store: ObjectStore) -> str:
    """Every object of the bucket as text: Parquet decoded, zstd frames decompressed."""
    parts = []
    for key in sorted(store.list("")):
        data = store.get(key)
        if key.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(data))
            parts.append(str(table.drop_columns(["leaf_hash", "chain_hash"]).to_pylist()))
        elif key.endswith(".zst"):
            parts.append(zstandard.ZstdDecompressor().decompress(data).decode("utf-8", "replace"))
        else:
            parts.append(data.decode("utf-8", "replace"))
    return "\n".join(parts)
