"""Scans never call back into Python for bytes: a Python filesystem handler deadlocks them.

Arrow calls a filesystem handler written in Python from its I/O threads, which then wait for the
GIL while holding a scan's lock; DuckDB starts a scan of a registered dataset holding the GIL and
waits for that lock. So the in-memory twin's segments are copied into a native filesystem.
"""

from __future__ import annotations

import pyarrow.fs as pafs

from coexarchive.query.views import ArchiveCatalog
from coexarchive.store.memory import MemoryStore


def test_the_memory_twin_is_read_through_a_native_filesystem() -> None:
    catalog = ArchiveCatalog(MemoryStore())
    assert not isinstance(catalog.filesystem, pafs.PyFileSystem)


def test_a_segment_is_copied_once_and_read_back_exactly() -> None:
    store = MemoryStore()
    store.put("archive/v1/chain=1/date=2026-01-01/x.parquet", b"segment bytes")
    catalog = ArchiveCatalog(store)
    catalog._mirror("archive/v1/chain=1/date=2026-01-01/x.parquet")
    catalog._mirror("archive/v1/chain=1/date=2026-01-01/x.parquet")
    path = "archive/v1/chain=1/date=2026-01-01/x.parquet"
    with catalog.filesystem.open_input_file(path) as source:
        assert source.read() == b"segment bytes"
