"""A ``payout: run`` run's held rounds on disk (what a killed coordinator's run is
settled from): written whole, read back as the settlement the coordinator would have
posted, and a damaged or foreign folder refused with a reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from idlegrid import ConfigError, InvalidInput
from idlegrid.fl import RoundInputs, RunInputs, read_held
from idlegrid.fl import _held as held_module
from idlegrid.fl._held import HELD_DIR, META_FILE, forget_held, hold_round, refuse_unsettled

from .test_run_inputs import BUDGET, RUN, _round


def _hold(directory: Path, *rounds: int) -> list[RoundInputs]:
    made = [_round(n, [0, 1, 2], seed=n) for n in rounds]
    for inputs in made:
        hold_round(directory, RUN, BUDGET, inputs)
    return made


def test_held_rounds_read_back_as_the_settlement_the_coordinator_would_post(
    tmp_path: Path,
) -> None:
    rounds = _hold(tmp_path, 1, 2, 4)

    # Execute
    settlement = read_held(tmp_path)

    # Assert: the same file, so the same amounts and hash, as the in-memory settlement
    expected = RunInputs(run=RUN, rounds=rounds, part=BUDGET)
    assert settlement.sha256 == expected.sha256
    assert settlement.amounts() == expected.amounts() and settlement.round == 4
    assert sorted(p.name for p in (tmp_path / HELD_DIR).iterdir()) == [
        "round-00001-inputs.npz", "round-00002-inputs.npz", "round-00004-inputs.npz",
        META_FILE,
    ]  # fmt: skip
    forget_held(tmp_path)
    assert not (tmp_path / HELD_DIR).exists()


def test_a_file_a_kill_left_half_written_is_not_a_round(tmp_path: Path) -> None:
    _hold(tmp_path, 1, 2)
    half = (tmp_path / HELD_DIR / "round-00002-inputs.npz").read_bytes()[:100]
    (tmp_path / HELD_DIR / "round-00003-inputs.npz.tmp").write_bytes(half)

    # Assert: the temporary file is not read (rounds are renamed into place whole)
    assert [r.round for r in read_held(tmp_path).rounds] == [1, 2]


def _break_meta(directory: Path, text: str) -> None:
    (directory / HELD_DIR / META_FILE).write_text(text)


BAD_META = {
    "missing": None,
    "not json": "{run:",
    "other keys": json.dumps({"format": "idlegrid/held/1", "run": RUN.hex()}),
    "other format": json.dumps({"format": "idlegrid/held/9", "run": RUN.hex(), "part": "1"}),
    "short run": json.dumps({"format": "idlegrid/held/1", "run": "ab", "part": "1"}),
    "part a float": json.dumps({"format": "idlegrid/held/1", "run": RUN.hex(), "part": 1.5}),
    "part negative": json.dumps({"format": "idlegrid/held/1", "run": RUN.hex(), "part": "-1"}),
    "huge": " " * 5000,
}


@pytest.mark.parametrize("case", sorted(BAD_META))
def test_a_bad_settlement_file_is_refused(tmp_path: Path, case: str) -> None:
    _hold(tmp_path, 1)
    if BAD_META[case] is None:
        (tmp_path / HELD_DIR / META_FILE).unlink()
    else:
        _break_meta(tmp_path, BAD_META[case])  # type: ignore[arg-type]

    with pytest.raises(InvalidInput, match="held rounds"):
        read_held(tmp_path)


def test_nothing_held_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no held/ folder"):
        read_held(tmp_path)
    _hold(tmp_path, 1)
    (tmp_path / HELD_DIR / "round-00001-inputs.npz").unlink()
    with pytest.raises(InvalidInput, match="holds no round"):
        read_held(tmp_path)


def test_a_damaged_misnamed_foreign_or_linked_round_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / HELD_DIR
    _hold(tmp_path, 1, 2)
    good = (folder / "round-00002-inputs.npz").read_bytes()

    # a damaged file
    (folder / "round-00002-inputs.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(InvalidInput, match=r"round-00002-inputs\.npz"):
        read_held(tmp_path)
    # a file under another round's name
    (folder / "round-00002-inputs.npz").unlink()
    (folder / "round-00003-inputs.npz").write_bytes(good)
    with pytest.raises(InvalidInput, match="holds round 2's inputs"):
        read_held(tmp_path)
    # another run's round
    (folder / "round-00003-inputs.npz").unlink()
    other = _round(2, [0, 1], seed=2, run=bytes(32 * [7]))
    (folder / "round-00002-inputs.npz").write_bytes(other.to_bytes())
    with pytest.raises(InvalidInput, match="another run's"):
        read_held(tmp_path)
    # a link named as a round (the folder never names a file elsewhere)
    (folder / "round-00002-inputs.npz").unlink()
    (tmp_path / "elsewhere.npz").write_bytes(good)
    os.symlink(tmp_path / "elsewhere.npz", folder / "round-00002-inputs.npz")
    with pytest.raises(InvalidInput, match="not a plain file"):
        read_held(tmp_path)


def test_more_bytes_than_a_settlement_may_hold_are_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hold(tmp_path, 1, 2)
    size = (tmp_path / HELD_DIR / "round-00001-inputs.npz").stat().st_size
    monkeypatch.setattr(held_module, "MAX_INPUTS_BYTES", size + 10)

    with pytest.raises(InvalidInput, match="bytes"):
        read_held(tmp_path)


def test_a_new_run_is_not_mixed_with_an_unsettled_ones_rounds(tmp_path: Path) -> None:
    refuse_unsettled(tmp_path)  # nothing held: a run may start
    _hold(tmp_path, 1)

    with pytest.raises(ConfigError, match="never settled"):
        refuse_unsettled(tmp_path)
    assert [r.round for r in read_held(tmp_path).rounds] == [1]  # left as it was
