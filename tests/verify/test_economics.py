"""p·(R + S) ≥ c: the least stake for a rate, the least rate for a stake, the defaults."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idlegrid.verify import (
    AUDIT_FLOOR,
    MAX_AUDIT_RATE,
    MIN_STAKE_MULTIPLE,
    cheating_pays,
    min_rate,
    min_stake,
    required_rate,
)


def test_the_default_stake_multiple_follows_from_the_floor() -> None:
    # Execute / Assert: at the floor, a stake of 24 payments is just enough
    assert MIN_STAKE_MULTIPLE == 24
    assert min_stake(AUDIT_FLOOR, 100) == 2_400
    assert not cheating_pays(AUDIT_FLOOR, 100, 2_400)
    assert cheating_pays(AUDIT_FLOOR, 100, 2_399)


def test_a_cheaper_job_needs_less_stake() -> None:
    assert min_stake(0.1, payment=100, cost=50) == 400
    assert min_stake(1.0, payment=100) == 0


@given(
    rate=st.floats(min_value=1e-4, max_value=1.0),
    payment=st.integers(min_value=1, max_value=10**15),
    cost_share=st.floats(min_value=0.01, max_value=1.0),
)
def test_min_stake_is_the_least_that_makes_cheating_unprofitable(
    rate: float, payment: int, cost_share: float
) -> None:
    # Prepare
    cost = min(payment, max(1, int(payment * cost_share)))

    # Execute
    stake = min_stake(rate, payment, cost)

    # Assert
    assert not cheating_pays(rate, payment, stake, cost)
    less = stake - max(2, stake // 10**9)  # floats: least within a part in 1e9
    if less > 0:
        assert cheating_pays(rate, payment, less, cost)


@given(stake=st.integers(min_value=0, max_value=10**30), payment=st.integers(1, 10**30))
def test_min_rate_makes_cheating_unprofitable(stake: int, payment: int) -> None:
    # Execute
    rate = min_rate(stake, payment)

    # Assert
    assert 0 < rate <= 1
    assert not cheating_pays(rate * (1 + 1e-12), payment, stake)


@pytest.mark.parametrize(
    ("stake", "rate"),
    [
        (10**6, AUDIT_FLOOR),  # plenty of stake: the floor
        (24 * 100, AUDIT_FLOOR),
        (9 * 100, 0.1),  # raised: R / (R + S)
        (100, MAX_AUDIT_RATE),
        (99, None),  # less than one payment: refused
        (0, None),
    ],
)
def test_required_rate(stake: int, rate: float | None) -> None:
    # Execute
    got = required_rate(stake, payment=100)

    # Assert
    assert got == (pytest.approx(rate) if rate is not None else None)


def test_min_stake_refuses_a_rate_outside_0_1() -> None:
    with pytest.raises(ValueError):
        min_stake(0.0, 100)
