"""The replay guard remembers nonces until they expire, across restarts when given a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from idlegrid import BadSignature
from idlegrid.protocol import ReplayGuard
from idlegrid.protocol._envelope import SKEW_S

ALICE, BOB = b"\xa1" * 20, b"\xb0" * 20
NOW = 1_700_000_000.0


def test_a_nonce_is_refused_the_second_time_only_for_its_sender(tmp_path: Path) -> None:
    guard = ReplayGuard(tmp_path / "nonces.sqlite", now=NOW)
    guard.check_and_remember(ALICE, 7, int(NOW) + 60, NOW)

    with pytest.raises(BadSignature, match="replayed"):
        guard.check_and_remember(ALICE, 7, int(NOW) + 60, NOW + 1)
    guard.check_and_remember(BOB, 7, int(NOW) + 60, NOW + 1)  # another sender's nonce

    assert len(guard) == 2


def test_nonces_survive_a_restart_until_they_expire(tmp_path: Path) -> None:
    path = tmp_path / "nonces.sqlite"
    first = ReplayGuard(path, now=NOW)
    first.check_and_remember(ALICE, 1, int(NOW) + 60, NOW)
    first.check_and_remember(ALICE, 2, int(NOW) + 300, NOW)
    first.close()  # or killed: each nonce is written before the check returns

    again = ReplayGuard(path, now=NOW + 10)
    with pytest.raises(BadSignature, match="replayed"):
        again.check_and_remember(ALICE, 1, int(NOW) + 60, NOW + 10)
    again.close()
    later = ReplayGuard(path, now=NOW + 60 + SKEW_S + 1)  # the first request has expired

    assert len(later) == 1  # expired nonces are pruned from the file when it is opened
    with pytest.raises(BadSignature, match="replayed"):
        later.check_and_remember(ALICE, 2, int(NOW) + 300, NOW + 100)


def test_expired_nonces_are_pruned_as_time_passes(tmp_path: Path) -> None:
    path = tmp_path / "nonces.sqlite"
    guard = ReplayGuard(path, now=NOW)
    for nonce in range(100):
        guard.check_and_remember(ALICE, nonce, int(NOW) + 60, NOW)

    guard.check_and_remember(BOB, 1, int(NOW) + 400, NOW + 60 + SKEW_S + 11)
    guard.close()

    assert len(guard) == 1
    assert len(ReplayGuard(path, now=NOW + 60 + SKEW_S + 11)) == 1


def test_without_a_file_the_guard_lives_in_memory() -> None:
    guard = ReplayGuard()
    guard.check_and_remember(ALICE, 1, int(NOW) + 60, NOW)

    assert len(ReplayGuard()) == 0
    with pytest.raises(BadSignature):
        guard.check_and_remember(ALICE, 1, int(NOW) + 60, NOW)
