"""Who may store and read blobs on a node, and how much.

A key that signs an upload is charged for the bytes it asks the node to keep
(``BlobStore.owner_usage``: a blob two keys uploaded counts for both; storing a
blob one already owns costs nothing). A key without an open channel on this
node gets ``upload_allowance_bytes``, enough for a model before its first job;
a client with an open channel gets ``client_upload_bytes``. Uploads under way
count too, so parallel uploads cannot pass the allowance together.

A blob may be read by a key that stored it (its job outputs are stored for it),
or, if someone published it by upload (``shared``), by any client with an open
channel here: a client that pays may fetch a model by its sha256. A blob that
was never published is not revealed to anyone else (it reads as missing).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from .._exceptions import BlobNotFound, PayloadTooLarge
from ..store import BlobStore

__all__ = ["BlobQuota"]


class BlobQuota:
    """The node's rules for one blob store; thread-safe."""

    def __init__(self, store: BlobStore, *, allowance_bytes: int, client_bytes: int) -> None:
        self.store = store
        self.allowance_bytes = allowance_bytes
        self.client_bytes = client_bytes
        self._uploading: dict[str, int] = {}
        self._lock = threading.Lock()

    def limit(self, *, paying: bool) -> int:
        """The bytes a key may store: more for a client with an open channel."""
        return self.client_bytes if paying else self.allowance_bytes

    @contextlib.contextmanager
    def admit(self, sender: str, digest: str, size: int, *, paying: bool) -> Iterator[None]:
        """Hold ``size`` bytes of ``sender``'s allowance while its upload is stored.

        Raises ``PayloadTooLarge`` (nothing stored) if the upload would pass it.
        """
        cost = 0 if self._owns(sender, digest) else size
        limit = self.limit(paying=paying)
        with self._lock:
            used = self.store.owner_usage(sender) + self._uploading.get(sender, 0)
            if used + cost > limit:
                hint = (
                    ""
                    if paying
                    else f"; a client with an open channel on this node may store "
                    f"{self.client_bytes}"
                )
                raise PayloadTooLarge(
                    f"upload quota exceeded: {sender} stores {used} bytes here and {cost} more"
                    f" would pass its allowance of {limit} bytes{hint}"
                )
            self._uploading[sender] = self._uploading.get(sender, 0) + cost
        try:
            yield
        finally:
            with self._lock:
                left = self._uploading[sender] - cost
                if left:
                    self._uploading[sender] = left
                else:
                    del self._uploading[sender]

    def may_read(self, sender: str, digest: str, *, paying: bool) -> bool:
        """Whether ``sender`` may read a blob; False: it is published, but ``sender`` must
        open a channel here first.

        ``BlobNotFound`` if the blob is not stored, or is not ``sender``'s and was never
        published (so a stranger cannot even learn that it exists).
        """
        meta = self.store.meta(digest)
        if sender in meta.owners:
            return True
        if not meta.shared:
            raise BlobNotFound(digest)
        return paying

    def _owns(self, sender: str, digest: str) -> bool:
        try:
            return sender in self.store.meta(digest).owners
        except BlobNotFound:
            return False
