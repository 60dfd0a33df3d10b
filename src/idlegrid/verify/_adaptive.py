"""Adaptive auditing, in the spirit of BOINC's adaptive replication.

A provider's record is its run of consecutive consistent results (``CV``, the
count of its audited results that agreed, since it was last caught). A provider with
no record is audited on every job; once ``CV`` reaches ``trust_after`` a job is
trusted with probability ``1 − 1/CV``, so it is audited with probability ``1/CV``,
never less than ``floor``. A failure (a result found wrong) resets ``CV`` to 0. The
rate never reaches zero, so a provider can never stop being checked.

BOINC trusts a host once ``CV ≥ 10``. Here ``trust_after`` follows from what must be
caught: a provider that cheats on a fraction ``q`` of its jobs passes ``n`` audits in
a row with probability ``(1 − q)^n``, so ``n = ⌈ln(miss) / ln(1 − q)⌉`` consecutive
consistent results leave at most ``miss`` of such cheaters trusted. For ``q = 10 %``
and ``miss = 1 %`` that is 44 (:func:`trust_after_for`), the default. Past it, ``1/CV``
is below the floor, so a trusted provider is audited at the floor (4 %): that is the
steady-state overhead.

Which job is audited is drawn with ``secrets`` (the operating system's randomness),
and the audited job travels like any other: the provider can neither predict nor
tell which of its results are checked. A seeded ``random.Random`` may be given
instead, for tests and benchmarks that must repeat.
"""

from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass

__all__ = ["AUDIT_FLOOR", "TRUST_AFTER", "AdaptiveAudit", "trust_after_for"]

#: the least fraction of a provider's jobs that is audited, however long its record: the
#: steady-state overhead, under a 5 % budget with room for chance (``_economics.py``)
AUDIT_FLOOR = 0.04
_SCALE = 2**53


def trust_after_for(cheat_rate: float = 0.1, miss: float = 0.01) -> int:
    """Consecutive consistent audits that a provider cheating on ``cheat_rate`` of its
    jobs passes with probability at most ``miss``: ``⌈ln(miss) / ln(1 − cheat_rate)⌉``."""
    if not 0.0 < cheat_rate < 1.0 or not 0.0 < miss < 1.0:
        raise ValueError("cheat_rate and miss must be within (0, 1)")
    return math.ceil(math.log(miss) / math.log1p(-cheat_rate))


#: consistent results after which a provider is trusted with probability 1 − 1/CV:
#: a 10 % cheater is trusted by then in at most 1 % of cases
TRUST_AFTER = trust_after_for(0.1, 0.01)


@dataclass
class _Record:
    consistent: int = 0
    audited: int = 0
    failures: int = 0


class AdaptiveAudit:
    """How often each provider's jobs are audited, from its record (state in memory)."""

    def __init__(
        self,
        *,
        floor: float = AUDIT_FLOOR,
        trust_after: int = TRUST_AFTER,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 < floor <= 1.0:
            raise ValueError("floor must be within (0, 1]")
        if trust_after < 1:
            raise ValueError("trust_after must be >= 1")
        self.floor = floor
        self.trust_after = trust_after
        self._rng = rng
        self._records: dict[str, _Record] = {}

    def consistent(self, provider: str) -> int:
        """The provider's run of consistent audited results (CV)."""
        record = self._records.get(provider.lower())
        return record.consistent if record else 0

    def rate(self, provider: str) -> float:
        """The probability that the provider's next job is audited."""
        cv = self.consistent(provider)
        if cv < self.trust_after:
            return 1.0
        return max(self.floor, 1.0 / cv)

    def sample(self, provider: str, *, at_least: float = 0.0) -> bool:
        """Whether to audit the provider's next job (at ``max(rate, at_least)``),
        drawn so that the provider cannot predict it."""
        p = min(1.0, max(self.rate(provider), at_least))
        draw = self._rng.getrandbits(53) if self._rng is not None else secrets.randbits(53)
        return draw < p * _SCALE

    def record(self, provider: str, *, ok: bool) -> None:
        """An audited result of the provider agreed (``ok``) or was found wrong."""
        record = self._records.setdefault(provider.lower(), _Record())
        record.audited += 1
        if ok:
            record.consistent += 1
        else:
            record.consistent = 0
            record.failures += 1

    def failures(self, provider: str) -> int:
        """Results of the provider found wrong, over its whole record."""
        record = self._records.get(provider.lower())
        return record.failures if record else 0
