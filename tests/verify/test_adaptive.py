"""AdaptiveAudit: every job of a provider with no record, 1/CV once CV >= trust_after,
never below the floor, back to every job after a failure; the draw follows the rate;
the default trust_after is what leaves at most 1 % of 10 % cheaters trusted."""

from __future__ import annotations

import random

import pytest

from idlegrid.verify import AUDIT_FLOOR, TRUST_AFTER, AdaptiveAudit, trust_after_for

P = "0xProvider"


def _audit(consistent: int, **kw: float) -> AdaptiveAudit:
    kw.setdefault("trust_after", 10)  # BOINC's threshold: the 1/CV phase is visible
    audit = AdaptiveAudit(rng=random.Random(1), **kw)  # type: ignore[arg-type]
    for _ in range(consistent):
        audit.record(P, ok=True)
    return audit


@pytest.mark.parametrize(
    ("consistent", "rate"), [(0, 1.0), (9, 1.0), (10, 0.1), (16, 1 / 16), (1000, AUDIT_FLOOR)]
)
def test_the_rate_falls_with_the_record_to_the_floor(consistent: int, rate: float) -> None:
    # Execute
    audit = _audit(consistent)

    # Assert
    assert audit.rate(P) == pytest.approx(rate)


def test_a_failure_resets_the_record() -> None:
    # Prepare
    audit = _audit(50)

    # Execute
    audit.record(P, ok=False)

    # Assert
    assert (audit.consistent(P), audit.rate(P), audit.failures(P)) == (0, 1.0, 1)


def test_records_are_per_provider_and_ignore_address_case() -> None:
    # Prepare
    audit = _audit(20)

    # Execute / Assert
    assert audit.consistent(P.upper()) == 20
    assert audit.rate("0xOther") == 1.0


@pytest.mark.parametrize("consistent", [0, 12, 40, 10_000])
def test_the_sample_follows_the_rate(consistent: int) -> None:
    # Prepare
    audit = _audit(consistent)
    n = 20_000

    # Execute
    hits = sum(audit.sample(P) for _ in range(n))

    # Assert: within 5 standard deviations of n·p
    p = audit.rate(P)
    assert abs(hits - n * p) <= 5 * (n * p * (1 - p)) ** 0.5 + 1


def test_at_least_raises_the_rate() -> None:
    # Prepare
    audit = _audit(10_000)

    # Execute
    hits = sum(audit.sample(P, at_least=0.5) for _ in range(10_000))

    # Assert
    assert 4_700 < hits < 5_300


def test_without_a_seed_the_draw_comes_from_the_os() -> None:
    # Prepare: no rng given, so secrets draws; the rate is the floor
    audit = AdaptiveAudit(floor=0.5)
    for _ in range(10_000):
        audit.record(P, ok=True)

    # Execute
    hits = sum(audit.sample(P) for _ in range(2_000))

    # Assert: neither always nor never (the chance of failing is below 1e-100)
    assert 0 < hits < 2_000


@pytest.mark.parametrize("kw", [{"floor": 0.0}, {"floor": 1.5}, {"trust_after": 0}])
def test_bad_parameters_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveAudit(**kw)  # type: ignore[arg-type]


def test_the_default_trust_after_leaves_at_most_1_percent_of_10_percent_cheaters() -> None:
    # Execute
    n = trust_after_for(0.1, 0.01)

    # Assert: the least n with 0.9**n <= 0.01, and the default
    assert 0.9**n <= 0.01 < 0.9 ** (n - 1)
    assert n == TRUST_AFTER == 44
    assert AdaptiveAudit().rate(P) == 1.0 and _audit(44, trust_after=44).rate(P) == AUDIT_FLOOR
    with pytest.raises(ValueError):
        trust_after_for(0.0, 0.01)
