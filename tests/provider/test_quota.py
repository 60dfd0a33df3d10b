"""Upload allowances and read rules for a node's blobs."""

from __future__ import annotations

import pytest

from idlegrid import BlobNotFound, PayloadTooLarge
from idlegrid.provider._quota import BlobQuota
from idlegrid.store import MemoryBlobStore, sha256_hex

ALICE, BOB = "0x" + "a1" * 20, "0x" + "b0" * 20


def _quota() -> BlobQuota:
    return BlobQuota(MemoryBlobStore(), allowance_bytes=10, client_bytes=100)


def _upload(quota: BlobQuota, sender: str, data: bytes, *, paying: bool) -> str:
    with quota.admit(sender, sha256_hex(data), len(data), paying=paying):
        return quota.store.put(data, owner=sender, shared=True)


def test_a_key_without_a_channel_gets_the_small_allowance() -> None:
    quota = _quota()
    _upload(quota, ALICE, b"a" * 6, paying=False)

    with pytest.raises(PayloadTooLarge, match="allowance of 10 bytes") as exc:
        _upload(quota, ALICE, b"b" * 5, paying=False)

    assert "open channel" in str(exc.value)
    assert not quota.store.has(sha256_hex(b"b" * 5))
    _upload(quota, ALICE, b"a" * 6, paying=False)  # already hers: costs nothing
    _upload(quota, ALICE, b"b" * 5, paying=True)  # a paying client may store more
    _upload(quota, BOB, b"c" * 10, paying=False)  # allowances are per key
    assert quota.store.owner_usage(ALICE) == 11


def test_uploads_under_way_count_against_the_allowance() -> None:
    quota = _quota()

    with (
        quota.admit(ALICE, sha256_hex(b"x" * 8), 8, paying=False),
        pytest.raises(PayloadTooLarge),
    ):
        _upload(quota, ALICE, b"y" * 8, paying=False)
    _upload(quota, ALICE, b"y" * 8, paying=False)  # the first never stored: room again


def test_owners_read_their_blobs_payers_read_published_ones_and_strangers_nothing() -> None:
    quota = _quota()
    model = _upload(quota, ALICE, b"model", paying=False)
    output = quota.store.put(b"bob's output", owner=BOB)  # a job output: never published

    assert quota.may_read(ALICE, model, paying=False)
    assert quota.may_read(BOB, model, paying=True)
    assert not quota.may_read(BOB, model, paying=False)  # must open a channel first
    assert quota.may_read(BOB, output, paying=False)
    with pytest.raises(BlobNotFound):
        quota.may_read(ALICE, output, paying=True)  # as if it did not exist
    with pytest.raises(BlobNotFound):
        quota.may_read(ALICE, "0" * 64, paying=True)
