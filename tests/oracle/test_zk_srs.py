"""The zero-knowledge setup's SRS: one per circuit size, made once, shared by every model
of that size, never left half-written. ezkl's ``gen_srs`` is stood in for by a stub
here (this is a test of the cache around it); ``test_zk.py`` runs the real one."""

from __future__ import annotations

from pathlib import Path

import pytest

from idlegrid.oracle._zk import _copy_srs, _srs


class FakeEzkl:
    """``gen_srs`` that writes its size, counting its calls (or fails, if told to)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def gen_srs(self, path: str, logrows: int) -> None:
        self.calls.append(logrows)
        Path(path).write_bytes(b"half a file")
        if self.fail:
            raise RuntimeError("out of disk")
        Path(path).write_bytes(f"srs of 2**{logrows}".encode())


def test_one_srs_is_made_for_each_size_and_then_reused(tmp_path: Path) -> None:
    # Execute
    ezkl = FakeEzkl()
    first = _srs(ezkl, 15, tmp_path / "srs")
    again = _srs(ezkl, 15, tmp_path / "srs")
    larger = _srs(ezkl, 17, tmp_path / "srs")

    # Assert
    assert ezkl.calls == [15, 17]
    assert first == again and first.read_bytes() == b"srs of 2**15"
    assert larger.read_bytes() == b"srs of 2**17"
    assert sorted(p.name for p in (tmp_path / "srs").iterdir()) == ["kzg-15.srs", "kzg-17.srs"]


def test_a_failed_generation_leaves_no_file_to_be_taken_for_an_srs(tmp_path: Path) -> None:
    # Execute
    with pytest.raises(RuntimeError, match="out of disk"):
        _srs(FakeEzkl(fail=True), 15, tmp_path / "srs")

    # Assert: nothing there, so the next setup makes it again
    assert list((tmp_path / "srs").iterdir()) == []
    ezkl = FakeEzkl()
    assert _srs(ezkl, 15, tmp_path / "srs").read_bytes() == b"srs of 2**15"
    assert ezkl.calls == [15]


def test_a_models_directory_holds_the_srs_it_was_set_up_with(tmp_path: Path) -> None:
    # Prepare: a model directory with a stale SRS
    shared = _srs(FakeEzkl(), 15, tmp_path / "srs")
    model = tmp_path / "model"
    model.mkdir()
    (model / "kzg.srs").write_bytes(b"stale")

    # Execute
    _copy_srs(shared, model / "kzg.srs")

    # Assert
    assert (model / "kzg.srs").read_bytes() == b"srs of 2**15"
