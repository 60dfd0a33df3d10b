"""The client's local model store: model files named by their sha256, nothing else.

``idlegrid model register`` puts a model here; ``Client.infer("sha256:…")`` and
``idlegrid infer --model HASH`` read it back by that hash. A file's name is always the
sha256 this store computed of its bytes (never a name from a peer or a user), and every
read hashes the bytes again: a file changed on disk is removed and refused
(``BlobCorrupt``), never run.

Layout: ``ROOT/<sha256 hex>``, written to a temporary file in ``ROOT`` and renamed into
place, so a reader sees a whole file or none. The default root is
``$IDLEGRID_CACHE/models`` (``~/.cache/idlegrid/models``), next to the client's index.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .._exceptions import BlobCorrupt, BlobNotFound, InvalidInput
from ..chain._compile import cache_dir

__all__ = ["ModelStore", "parse_model_hash"]

_HEX = frozenset("0123456789abcdef")


def parse_model_hash(value: str) -> str | None:
    """The lowercase hex of ``value`` if it names a model by sha256 (64 hex characters,
    optionally ``sha256:`` or ``0x`` prefixed), else None (a path, say)."""
    text = value.strip()
    for prefix in ("sha256:", "0x"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
            break
    text = text.lower()
    return text if len(text) == 64 and set(text) <= _HEX else None


class ModelStore:
    """Model files by sha256 under ``root`` (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def default(cls) -> ModelStore:
        """The store under the client's cache directory (``$IDLEGRID_CACHE/models``)."""
        return cls(cache_dir() / "models")

    def path(self, digest: str) -> Path:
        """Where the model ``digest`` lives (whether or not it is stored)."""
        return self.root / _checked_hex(digest)

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and self.path(digest).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data``; its sha256 (hex), which names it. Storing it again replaces the
        file (mending a corrupt copy)."""
        digest = hashlib.sha256(data).hexdigest()
        self.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.root, prefix=".put-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(name, self.root / digest)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        """The model ``digest``'s bytes, hashed again: BlobNotFound when it is not stored,
        BlobCorrupt (the file removed) when its bytes no longer hash to its name."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(digest) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != path.name:
            path.unlink(missing_ok=True)
            raise BlobCorrupt(path.name, actual)
        return data


def _checked_hex(digest: str) -> str:
    text = parse_model_hash(digest)
    if text is None:
        raise InvalidInput(f"a model hash is a sha256 (64 hex characters), not {digest!r}")
    return text
