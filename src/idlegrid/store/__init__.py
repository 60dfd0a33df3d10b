"""Content-addressed blob storage (sha256) for models, inputs and outputs.

``BlobStore`` is the interface; ``FileBlobStore`` keeps blobs as files under a
directory (shareable between processes), ``MemoryBlobStore`` keeps them in memory.
"""

from ._base import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_BLOB_BYTES,
    BlobMeta,
    BlobStore,
    check_digest,
    sha256_hex,
)
from ._fs import FileBlobStore
from ._memory import MemoryBlobStore

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_BLOB_BYTES",
    "BlobMeta",
    "BlobStore",
    "FileBlobStore",
    "MemoryBlobStore",
    "check_digest",
    "sha256_hex",
]
