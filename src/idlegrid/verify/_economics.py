"""When cheating does not pay, and the defaults that follow.

A provider paid ``R`` for a job that costs it ``c`` to do honestly can skip the work
and send anything. If each job is audited with probability ``p`` and a cheater caught
loses the payment and a slashable stake ``S``, skipping the work saves ``c`` and
costs, in expectation, ``p·(R + S)``. Cheating is unprofitable when

    p · (R + S) ≥ c.

The client knows ``R`` (the job's bill) but not ``c``; a provider that serves at a
price covers its cost, so ``c ≤ R`` and the client takes ``c = R`` (the worst case).
Then the condition reads ``p ≥ R / (R + S)``, or ``S ≥ R·(1/p − 1)``.

Defaults: the audit rate never falls below ``AUDIT_FLOOR`` = 4 % (the overhead of
steady-state auditing, kept under a 5 % budget with room for chance: BOINC's adaptive
replication costs 5–10 %), so the stake a provider must hold is ``MIN_STAKE_MULTIPLE``
= 1/0.04 − 1 = 24 times the payment of one job it takes. A client facing a provider
with less raises that provider's audit rate to ``min_rate`` (between the floor and
``MAX_AUDIT_RATE``); a provider whose stake
would need a rate above ``MAX_AUDIT_RATE`` = 50 % (a stake below the payment of one
job: auditing it would cost as much as a quorum) is refused for the batch.
"""

from __future__ import annotations

import math
from fractions import Fraction

from ._adaptive import AUDIT_FLOOR

__all__ = [
    "MAX_AUDIT_RATE",
    "MIN_STAKE_MULTIPLE",
    "cheating_pays",
    "min_rate",
    "min_stake",
    "required_rate",
]

#: the stake a provider must hold, in payments of one job, so that cheating does not pay
#: at the audit floor: 1/AUDIT_FLOOR − 1
MIN_STAKE_MULTIPLE = round(1 / AUDIT_FLOOR) - 1
#: the highest audit rate a client raises a provider to; beyond it the provider is refused
MAX_AUDIT_RATE = 0.5


def cheating_pays(rate: float, payment: int, stake: int, cost: int | None = None) -> bool:
    """Whether skipping the work gains in expectation: ``rate·(R + S) < c``."""
    c = payment if cost is None else cost
    return Fraction(rate) * (payment + stake) < c  # exact: token amounts pass 2**53


def min_stake(rate: float, payment: int, cost: int | None = None) -> int:
    """The least stake that makes cheating unprofitable at audit ``rate``:
    ``S = c/p − R`` (rounded up; 0 when the payment alone is enough)."""
    if not 0.0 < rate <= 1.0:
        raise ValueError("rate must be within (0, 1]")
    c = payment if cost is None else cost
    return max(0, math.ceil(Fraction(c) / Fraction(rate)) - payment)


def min_rate(stake: int, payment: int, cost: int | None = None) -> float:
    """The least audit rate that makes cheating unprofitable: ``p = c / (R + S)``
    (at most 1; 0 for a job that pays nothing and costs nothing)."""
    c = payment if cost is None else cost
    if c <= 0:
        return 0.0
    if payment + stake <= 0:
        return 1.0
    return min(1.0, c / (payment + stake))


def required_rate(stake: int, payment: int, *, floor: float = AUDIT_FLOOR) -> float | None:
    """The audit rate a client must use for a provider with ``stake`` on a job paying
    ``payment``: at least ``floor``, raised as the stake requires; None when that would
    exceed ``MAX_AUDIT_RATE`` (refuse the provider)."""
    need = min_rate(stake, payment)
    if need > MAX_AUDIT_RATE:
        return None
    return max(floor, need)
