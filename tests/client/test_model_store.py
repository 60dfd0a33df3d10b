"""The local model store: files named by their sha256, hashed again on every read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from idlegrid import BlobCorrupt, BlobNotFound, InvalidInput
from idlegrid.client import ModelStore, parse_model_hash

DATA = b"an onnx model, say"
DIGEST = hashlib.sha256(DATA).hexdigest()


def test_a_model_is_stored_under_its_sha256_and_read_back(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path / "models")

    # Execute
    digest = store.put(DATA)
    again = store.put(DATA)

    # Assert: one file, its name the hash, nothing else left in the directory
    assert digest == again == DIGEST
    assert store.get(digest) == DATA == store.get("sha256:" + digest.upper())
    assert store.path(digest) == tmp_path / "models" / DIGEST
    assert [p.name for p in (tmp_path / "models").iterdir()] == [DIGEST]
    assert DIGEST in store and "ab" * 32 not in store


def test_a_file_changed_on_disk_is_refused_and_removed(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path)
    store.put(DATA)
    store.path(DIGEST).write_bytes(b"a swapped model")

    # Execute / Assert
    with pytest.raises(BlobCorrupt) as caught:
        store.get(DIGEST)
    assert caught.value.actual == hashlib.sha256(b"a swapped model").hexdigest()
    assert DIGEST not in store
    store.put(DATA)  # storing it again mends it
    assert store.get(DIGEST) == DATA


def test_a_missing_model_and_a_name_that_is_no_hash_are_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)

    with pytest.raises(BlobNotFound):
        store.get(DIGEST)
    for bad in ("../../etc/passwd", "ab" * 31, "zz" * 32, DIGEST + "/x"):
        with pytest.raises(InvalidInput, match="64 hex characters"):
            store.path(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DIGEST, DIGEST),
        ("sha256:" + DIGEST, DIGEST),
        ("0x" + DIGEST.upper(), DIGEST),
        ("model.onnx", None),
        ("sha256:" + DIGEST[:-1], None),
        ("sha256:0x" + DIGEST, None),
    ],
)
def test_parse_model_hash(text: str, expected: str | None) -> None:
    assert parse_model_hash(text) == expected


def test_the_default_store_lives_in_the_cache_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDLEGRID_CACHE", str(tmp_path))

    assert ModelStore.default().root == tmp_path / "models"
