"""Object storage: the :class:`ObjectStore` seam, its S3 and in-memory implementations, the
embedded SeaweedFS server, and the archive's key layout (:mod:`coexarchive.store.layout`)."""

from coexarchive.store.base import LockMode, ObjectInfo, ObjectStore, Retention, sha256_hex
from coexarchive.store.memory import MemoryStore
from coexarchive.store.s3 import S3Store, create_locked_bucket
from coexarchive.store.seaweed import EmbeddedS3

__all__ = [
    "EmbeddedS3",
    "LockMode",
    "MemoryStore",
    "ObjectInfo",
    "ObjectStore",
    "Retention",
    "S3Store",
    "create_locked_bucket",
    "sha256_hex",
]
