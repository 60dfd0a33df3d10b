"""Blob stores: one suite run against every implementation, then file-store specifics.

``make_store`` is the factory fixture: each test that takes it (or ``store``) runs
once per implementation, like Flower's ``StateTest.state_factory``.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import itertools
import multiprocessing
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import pytest

import idlegrid.store
from idlegrid import BlobCorrupt, BlobNotFound, ConfigError, InvalidInput, PayloadTooLarge
from idlegrid.store import (
    DEFAULT_MAX_BLOB_BYTES,
    BlobStore,
    FileBlobStore,
    MemoryBlobStore,
    sha256_hex,
)


class StoreFactory(Protocol):
    def __call__(
        self,
        *,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
        max_total_bytes: int | None = None,
        evict: bool = False,
    ) -> BlobStore: ...


@pytest.fixture(params=["memory", "file"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    def memory(**limits: Any) -> BlobStore:
        return MemoryBlobStore(**limits)

    def file(**limits: Any) -> BlobStore:
        return FileBlobStore(tmp_path / "blobs", **limits)

    factory: StoreFactory = memory if request.param == "memory" else file
    return factory


@pytest.fixture
def store(make_store: StoreFactory) -> BlobStore:
    return make_store()


def stray_files(store: BlobStore) -> list[Path]:
    """Files of a file store that are neither blobs nor its lock and index (none in memory)."""
    if not isinstance(store, FileBlobStore):
        return []
    return [
        p
        for p in store.root.rglob("*")
        if p.is_file()
        and p.name != ".lock"
        and not p.name.startswith(".index.sqlite")
        and not (len(p.parent.name) == 2 and p.parent.parent == store.root and len(p.name) == 62)
    ]


MISSING = "0" * 64
BAD_DIGESTS = [
    "A" * 64,  # uppercase
    sha256_hex(b"x").upper(),
    "ab" * 31,  # short
    "a" * 65,  # long
    "../../etc/passwd",
    "ab/../../../../etc/passwd" + "0" * 39,
    "g" * 64,  # not hex
    "0" * 63 + "\n",
    "",
    None,
    b"0" * 64,
]


# -- round trip ---------------------------------------------------------------


def test_round_trip(store: BlobStore) -> None:
    data = b"model weights \x00\xff" * 100

    digest = store.put(data)

    assert store.has(digest)
    assert store.get(digest) == data
    assert store.size(digest) == len(data)
    assert store.usage() == len(data)
    with store.open(digest) as stream:
        assert stream.read() == data
    local = store.path(digest)
    if isinstance(store, FileBlobStore):
        assert local is not None
        assert local.read_bytes() == data
    else:
        assert local is None


@pytest.mark.parametrize("data", [b"", b"a", b"hello world", bytes(range(256)) * 1000])
def test_the_name_is_the_lowercase_hex_sha256(store: BlobStore, data: bytes) -> None:
    expected = hashlib.sha256(data).hexdigest()

    assert sha256_hex(data) == expected
    assert store.put(data) == expected
    assert store.put_stream(iter([data[:3], data[3:]])) == expected
    assert store.get(expected) == data


def test_put_stream_joins_chunks(store: BlobStore) -> None:
    chunks = [b"abc", b"", b"defg", b"h" * 1000]

    digest = store.put_stream(iter(chunks))

    assert store.get(digest) == b"".join(chunks)


def test_putting_the_same_bytes_twice_stores_them_once(store: BlobStore) -> None:
    data = b"same content"

    first = store.put(data)
    second = store.put(data, expected=first)
    third = store.put_stream([b"same ", b"content"])

    assert first == second == third
    assert store.usage() == len(data)
    assert stray_files(store) == []


# -- expected hash ------------------------------------------------------------


def test_a_matching_expected_hash_is_accepted(store: BlobStore) -> None:
    data = b"payload"

    assert store.put(data, expected=sha256_hex(data)) == sha256_hex(data)
    assert store.put_stream([data], expected=sha256_hex(data)) == sha256_hex(data)


@pytest.mark.parametrize("streamed", [False, True])
def test_a_wrong_expected_hash_is_refused_and_nothing_stored(
    store: BlobStore, streamed: bool
) -> None:
    data, claimed = b"what was sent", sha256_hex(b"what was promised")

    with pytest.raises(InvalidInput) as exc:
        if streamed:
            store.put_stream([data[:4], data[4:]], expected=claimed)
        else:
            store.put(data, expected=claimed)

    assert claimed in str(exc.value)
    assert sha256_hex(data) in str(exc.value)
    assert not store.has(sha256_hex(data))
    assert not store.has(claimed)
    assert store.usage() == 0
    assert stray_files(store) == []


@pytest.mark.parametrize("bad", [d for d in BAD_DIGESTS if d is not None])  # None: no check
def test_a_malformed_expected_hash_is_refused_before_reading(store: BlobStore, bad: Any) -> None:
    def chunks() -> Iterator[bytes]:
        raise AssertionError("the upload must not be read")
        yield b""  # pragma: no cover

    with pytest.raises(InvalidInput):
        store.put(b"data", expected=bad)
    with pytest.raises(InvalidInput):
        store.put_stream(chunks(), expected=bad)
    assert store.usage() == 0


# -- limits -------------------------------------------------------------------


def test_a_blob_at_the_limit_is_stored_and_one_byte_more_is_refused(
    make_store: StoreFactory,
) -> None:
    store = make_store(max_blob_bytes=10)

    digest = store.put(b"x" * 10)
    with pytest.raises(PayloadTooLarge, match="max_blob_bytes=10"):
        store.put(b"y" * 11)

    assert store.has(digest)
    assert not store.has(sha256_hex(b"y" * 11))
    assert store.usage() == 10
    assert stray_files(store) == []


def test_a_streamed_upload_is_cut_off_as_soon_as_it_passes_the_limit(
    make_store: StoreFactory,
) -> None:
    store = make_store(max_blob_bytes=10)
    pulled = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        for chunk in itertools.repeat(b"abcd"):
            pulled += 1
            yield chunk

    with pytest.raises(PayloadTooLarge, match="max_blob_bytes=10"):
        store.put_stream(endless())

    assert pulled == 3  # 4 + 4 + 4 > 10: refused at the third chunk, no more read
    assert store.usage() == 0
    assert stray_files(store) == []


def test_the_quota_bounds_the_total(make_store: StoreFactory) -> None:
    store = make_store(max_total_bytes=10)
    six = store.put(b"6" * 6)

    with pytest.raises(InvalidInput, match="max_total_bytes=10"):
        store.put(b"5" * 5)
    with pytest.raises(InvalidInput, match="max_total_bytes=10"):
        store.put_stream([b"5" * 2, b"5" * 3])
    assert store.put(b"6" * 6) == six  # already stored: costs nothing
    four = store.put_stream([b"4" * 4])  # exactly full
    assert store.usage() == 10
    assert stray_files(store) == []

    store.delete(six)
    store.put(b"5" * 5)

    assert store.usage() == 9
    assert store.has(four)


@pytest.mark.parametrize(
    "limits",
    [{"max_blob_bytes": -1}, {"max_total_bytes": -1}, {"max_blob_bytes": True}],
)
def test_bad_limits_are_refused(make_store: StoreFactory, limits: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        make_store(**limits)


def test_limits_are_visible(make_store: StoreFactory) -> None:
    assert make_store().max_blob_bytes == 256 * 1024 * 1024
    assert make_store().max_total_bytes is None
    assert make_store(max_blob_bytes=5, max_total_bytes=50).max_total_bytes == 50


# -- digests and missing blobs ------------------------------------------------

READERS: dict[str, Callable[[BlobStore, Any], object]] = {
    "get": lambda s, d: s.get(d),
    "open": lambda s, d: s.open(d).close(),
    "iter_chunks": lambda s, d: list(s.iter_chunks(d)),
    "size": lambda s, d: s.size(d),
    "path": lambda s, d: s.path(d),
}
CALLS: dict[str, Callable[[BlobStore, Any], object]] = {
    **READERS,
    "has": lambda s, d: s.has(d),
    "delete": lambda s, d: s.delete(d),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_a_malformed_digest_is_refused(
    store: BlobStore, call: Callable[[BlobStore, Any], object], bad: Any
) -> None:
    store.put(b"something")

    with pytest.raises(InvalidInput, match="not a sha256 digest") as exc:
        call(store, bad)

    assert not isinstance(exc.value, BlobNotFound)


@pytest.mark.parametrize("call", READERS.values(), ids=READERS.keys())
def test_a_missing_blob_raises_blob_not_found(
    store: BlobStore, call: Callable[[BlobStore, Any], object]
) -> None:
    store.put(b"something else")

    with pytest.raises(BlobNotFound) as exc:
        call(store, MISSING)

    assert exc.value.digest == MISSING
    assert MISSING in str(exc.value)
    assert isinstance(exc.value, InvalidInput)


def test_a_missing_blob_is_not_had(store: BlobStore) -> None:
    assert not store.has(MISSING)
    assert not store.delete(MISSING)


def test_delete(store: BlobStore) -> None:
    keep, drop = store.put(b"keep"), store.put(b"drop me")

    assert store.delete(drop)
    assert not store.delete(drop)

    assert not store.has(drop)
    with pytest.raises(BlobNotFound):
        store.get(drop)
    assert store.get(keep) == b"keep"
    assert store.usage() == len(b"keep")
    assert store.put(b"drop me") == drop  # can be stored again


# -- streaming download -------------------------------------------------------


def test_streaming_download_yields_the_content_in_bounded_chunks(store: BlobStore) -> None:
    data = bytes(range(256)) * 4 + b"tail"
    digest = store.put(data)

    chunks = list(store.iter_chunks(digest, chunk_size=100))

    assert b"".join(chunks) == data
    assert all(0 < len(c) <= 100 for c in chunks)
    assert len(chunks) == -(-len(data) // 100)
    assert b"".join(store.iter_chunks(digest)) == data


def test_streaming_download_of_an_empty_blob_yields_nothing(store: BlobStore) -> None:
    assert list(store.iter_chunks(store.put(b""))) == []


def test_streaming_download_checks_its_arguments_at_once(store: BlobStore) -> None:
    digest = store.put(b"data")

    with pytest.raises(BlobNotFound):
        store.iter_chunks(MISSING)  # not even iterated
    for bad in (0, -1, True):
        with pytest.raises(InvalidInput):
            store.iter_chunks(digest, chunk_size=bad)


def test_a_download_in_progress_is_not_cut_by_a_delete(store: BlobStore) -> None:
    data = b"0123456789" * 10
    digest = store.put(data)
    chunks = store.iter_chunks(digest, chunk_size=10)
    first = next(chunks)

    store.delete(digest)

    assert first + b"".join(chunks) == data


def test_a_blob_is_invisible_until_its_upload_completes(store: BlobStore) -> None:
    data = b"a" * 50
    digest = sha256_hex(data)
    seen_midway: list[bool] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b"a" * 10
            seen_midway.append(store.has(digest))

    store.put_stream(chunks())

    assert seen_midway == [False] * 5
    assert store.get(digest) == data


# -- concurrency --------------------------------------------------------------


def test_threads_putting_and_getting_the_same_and_different_blobs(store: BlobStore) -> None:
    payloads = [bytes([i]) * (1000 + i) for i in range(8)]
    start = threading.Barrier(8)

    def work(i: int) -> bool:
        data = payloads[i % len(payloads)]  # each payload 8 times, by different threads
        if i < 8:
            start.wait(timeout=10)  # the first round starts together
        digest = store.put_stream([data[:500], data[500:]], expected=sha256_hex(data))
        return digest == sha256_hex(data) and store.get(digest) == data

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(64)))

    assert all(results)
    assert store.usage() == sum(map(len, payloads))
    assert stray_files(store) == []


def test_threads_racing_for_the_last_space_never_pass_the_quota(make_store: StoreFactory) -> None:
    store = make_store(max_total_bytes=35)
    start = threading.Barrier(8)

    def work(i: int) -> bool:
        start.wait(timeout=10)
        try:
            store.put(bytes([i]) * 10)
        except InvalidInput:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        stored = sum(pool.map(work, range(8)))

    assert stored == 3
    assert store.usage() == 30
    assert stray_files(store) == []


# -- owners and sharing ---------------------------------------------------------

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20


def test_each_put_records_its_owner_and_sharing(store: BlobStore) -> None:
    model, output = b"a model", b"an output"

    store.put(model, owner=ALICE, shared=True)
    store.put_stream([model], owner=BOB)  # the same bytes, stored again by another key
    store.put(output, owner=BOB)
    store.put(b"the node's own")

    assert store.meta(sha256_hex(model)).owners == {ALICE, BOB}
    assert store.meta(sha256_hex(model)).shared  # once published, it stays so
    assert store.meta(sha256_hex(output)).owners == {BOB}
    assert not store.meta(sha256_hex(output)).shared
    assert store.meta(sha256_hex(b"the node's own")).owners == frozenset()
    assert store.meta(sha256_hex(model)).size == len(model)
    assert store.owner_usage(ALICE) == len(model)
    assert store.owner_usage(BOB) == len(model) + len(output)
    assert store.owner_usage("0x" + "00" * 20) == 0


def test_a_deleted_blob_has_no_record(store: BlobStore) -> None:
    digest = store.put(b"gone soon", owner=ALICE)

    store.delete(digest)

    with pytest.raises(BlobNotFound):
        store.meta(digest)
    assert store.owner_usage(ALICE) == 0
    with pytest.raises(InvalidInput, match="not a sha256 digest"):
        store.meta("../x")


# -- corrupt blobs ------------------------------------------------------------


def corrupt(store: BlobStore, digest: str, data: bytes) -> None:
    """Change a stored blob's bytes behind the store's back (bit rot, a stray write)."""
    if isinstance(store, FileBlobStore):
        path = store.root / digest[:2] / digest[2:]
        path.chmod(0o644)
        path.write_bytes(data)
        path.chmod(0o444)
    else:
        assert isinstance(store, MemoryBlobStore)
        store._blobs[digest] = data


@pytest.mark.parametrize("call", ["get", "iter_chunks", "path", "verify"])
def test_a_corrupt_blob_is_refused_removed_and_can_be_stored_again(
    store: BlobStore, call: str
) -> None:
    data = b"weights as uploaded" * 10
    digest = store.put(data, owner=ALICE)
    corrupt(store, digest, b"weights after bit rot")
    read: dict[str, Callable[[], object]] = {
        "get": lambda: store.get(digest),
        "iter_chunks": lambda: list(store.iter_chunks(digest, chunk_size=16)),
        "path": lambda: store.path(digest),
        "verify": lambda: store.verify(digest),
    }

    with pytest.raises(BlobCorrupt) as exc:
        read[call]()

    assert exc.value.digest == digest
    assert sha256_hex(b"weights after bit rot") in str(exc.value)
    assert isinstance(exc.value, BlobNotFound)  # reported as missing: upload it again
    assert not store.has(digest)
    assert store.usage() == 0
    assert store.put(data, owner=ALICE) == digest
    assert store.get(digest) == data


def test_storing_good_bytes_mends_a_corrupt_copy_without_reading_it(store: BlobStore) -> None:
    data = b"the right bytes"
    digest = store.put(data)
    corrupt(store, digest, b"the wrong bytes")

    store.put(data, owner=BOB)

    assert store.get(digest) == data
    assert store.usage() == len(data)
    assert store.meta(digest).owners == {BOB}
    assert stray_files(store) == []


def test_an_empty_file_under_a_blobs_name_is_corrupt(store: BlobStore) -> None:
    digest = store.put(b"not empty")
    corrupt(store, digest, b"")

    with pytest.raises(BlobCorrupt):
        list(store.iter_chunks(digest))

    assert not store.has(digest)


# -- eviction -----------------------------------------------------------------


def test_eviction_removes_the_least_recently_used_blobs(make_store: StoreFactory) -> None:
    store = make_store(max_total_bytes=12, evict=True)
    old, read, kept = store.put(b"o" * 4), store.put(b"r" * 4), store.put(b"k" * 4)
    store.get(read)  # read since: now more recent than `kept`

    new = store.put(b"n" * 6)  # needs 6 bytes: `old`, then `kept`, go

    assert not store.has(old)
    assert not store.has(kept)
    assert store.has(read) and store.has(new)
    assert store.usage() == 10
    assert stray_files(store) == []


def test_pinned_blobs_are_never_evicted(make_store: StoreFactory) -> None:
    store = make_store(max_total_bytes=10, evict=True)
    model, other = store.put(b"m" * 5), store.put(b"x" * 5)

    with store.pin(model, None):
        assert store.pinned(model)
        new = store.put(b"n" * 5)  # evicts the unpinned one
        with pytest.raises(PayloadTooLarge, match="pinned"):
            store.put(b"z" * 6)  # only the pinned model and `new` are left to take
        with store.pin(new), pytest.raises(PayloadTooLarge, match="pinned"):
            store.put(b"y" * 1)

    assert not store.pinned(model)
    assert store.has(model) and store.has(new) and not store.has(other)
    store.put(b"z" * 6)  # unpinned now: the model is the oldest and goes
    assert not store.has(model)


def test_a_blob_larger_than_the_whole_store_evicts_nothing(make_store: StoreFactory) -> None:
    store = make_store(max_total_bytes=10, evict=True)
    kept = store.put(b"k" * 5)

    with pytest.raises(PayloadTooLarge, match="max_total_bytes=10"):
        store.put(b"b" * 11)

    assert store.has(kept)
    assert stray_files(store) == []


# -- the file store -----------------------------------------------------------


def test_blobs_are_read_only_files_fanned_out_by_hash_prefix(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)

    digest = store.put(b"weights")

    path = tmp_path / digest[:2] / digest[2:]
    assert store.path(digest) == path
    assert path.read_bytes() == b"weights"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


def test_uploads_leave_no_temp_files(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path, max_blob_bytes=100, max_total_bytes=150)

    store.put(b"a" * 100)
    store.put(b"a" * 100)
    store.put_stream([b"b" * 20, b"c" * 20])
    with pytest.raises(InvalidInput):
        store.put_stream([b"d" * 101])  # over the blob limit in one chunk
    with pytest.raises(InvalidInput):
        store.put_stream([b"e" * 50, b"e" * 51])  # over it in the second
    with pytest.raises(InvalidInput):
        store.put_stream([b"f" * 20], expected=MISSING)  # wrong hash
    with pytest.raises(InvalidInput):
        store.put(b"g" * 11)  # over the quota

    assert stray_files(store) == []
    assert list((tmp_path / ".tmp").iterdir()) == []
    assert store.usage() == 140


def test_an_upload_in_progress_lives_only_in_the_temp_dir(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    midway: list[list[Path]] = []

    def chunks() -> Iterator[bytes]:
        yield b"partial"
        midway.append(stray_files(store))
        yield b" then whole"

    digest = store.put_stream(chunks())

    assert [p.parent.name for p in midway[0]] == [".tmp"]
    assert stray_files(store) == []
    assert store.get(digest) == b"partial then whole"


def test_an_interrupted_upload_leaves_nothing(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)

    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put_stream(chunks())

    assert stray_files(store) == []
    assert store.usage() == 0


def test_two_stores_on_one_root_see_each_others_blobs(tmp_path: Path) -> None:
    a, b = FileBlobStore(tmp_path), FileBlobStore(tmp_path)

    digest = a.put(b"shared")

    assert b.has(digest)
    assert b.get(digest) == b"shared"
    assert b.put(b"shared") == digest
    assert b.delete(digest)
    assert not a.has(digest)


def test_fsync_mode_stores_the_same(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path, fsync=False)

    digest = store.put_stream([b"durable", b" bytes"])
    store.put(b"durable bytes")

    assert store.get(digest) == b"durable bytes"
    assert stray_files(store) == []


def test_a_put_flushes_the_blob_and_its_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path)
    flushed: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        flushed.append(Path(f"/proc/self/fd/{fd}").resolve().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    digest = store.put(b"durable")

    assert len(flushed) == 2
    assert flushed[0].startswith("upload-")  # the file, before it is renamed into place
    assert flushed[1] == digest[:2]  # then the directory that holds the new name


def test_opening_a_store_sweeps_temp_files_left_by_killed_uploads(tmp_path: Path) -> None:
    FileBlobStore(tmp_path)
    stale = tmp_path / ".tmp" / "upload-killed.part"
    stale.write_bytes(b"half an upload")
    live = tmp_path / ".tmp" / "upload-live.part"
    with live.open("wb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)  # as an upload in progress holds it

        store = FileBlobStore(tmp_path)

        assert store.swept == 1
        assert not stale.exists()
        assert live.exists()


def test_records_survive_a_restart_and_are_rebuilt_from_the_files(tmp_path: Path) -> None:
    first = FileBlobStore(tmp_path)
    owned = first.put(b"owned", owner=ALICE)
    first.close()
    (tmp_path / ".index.sqlite").unlink()  # lost, say, with the rest of a crashed disk's cache
    for extra in tmp_path.glob(".index.sqlite-*"):
        extra.unlink()
    again = FileBlobStore(tmp_path)
    kept = again.put(b"kept", owner=BOB)
    again.close()

    store = FileBlobStore(tmp_path)

    assert store.meta(kept).owners == {BOB}
    assert store.meta(owned).owners == frozenset()  # found on disk: no owner known ...
    assert store.meta(owned).shared  # ... so it is readable by paying clients, as it was
    assert store.usage() == len(b"owned") + len(b"kept")
    (tmp_path / kept[:2] / kept[2:]).unlink()
    assert FileBlobStore(tmp_path).usage() == len(b"owned")  # records without a file go


def test_usage_counts_only_blobs(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    store.put(b"12345")
    (tmp_path / "notes.txt").write_text("not a blob")
    (tmp_path / "ab").mkdir(exist_ok=True)
    (tmp_path / "ab" / "short").write_text("not a blob either")

    assert store.usage() == 5


def test_an_unusable_root_is_a_config_error(tmp_path: Path) -> None:
    root = tmp_path / "a-file"
    root.write_text("")

    with pytest.raises(ConfigError):
        FileBlobStore(root)


def _put_from_another_process(root: str, fill: int) -> str | None:
    store = FileBlobStore(root, max_total_bytes=2500)
    try:
        store.put(b"shared by all" * 50)  # 650 bytes, the same in every process
        return store.put(bytes([fill]) * 600)
    except InvalidInput:
        return None


def test_processes_sharing_a_root_keep_the_quota(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")

    with ProcessPoolExecutor(max_workers=4, mp_context=ctx) as pool:
        results = list(pool.map(_put_from_another_process, [str(tmp_path)] * 6, range(6)))

    store = FileBlobStore(tmp_path)
    stored = [d for d in results if d is not None]
    assert len(stored) == 3  # 650 + 3 * 600 = 2450 <= 2500
    assert store.usage() == 650 + 3 * 600
    assert all(store.get(d) == bytes([i]) * 600 for i, d in enumerate(results) if d is not None)
    assert stray_files(store) == []


# -- the namespace ------------------------------------------------------------


def test_public_namespace_matches_all() -> None:
    public = {
        n
        for n, obj in vars(idlegrid.store).items()
        if not n.startswith("_") and not inspect.ismodule(obj) and n != "annotations"
    }
    assert public == set(idlegrid.store.__all__)
