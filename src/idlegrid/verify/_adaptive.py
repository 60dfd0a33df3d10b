"""Adaptive auditing, in the spirit of BOINC's adaptive replication.

A provider's record is its run of consecutive consistent results (``CV``, the
count of its audited results that agreed, since it was last caught). A provider with
no record is audited on every job; once ``CV`` reaches ``trust_after`` (BOINC: 10) a
job is trusted with probability ``1 − 1/CV``, so it is audited with probability
``1/CV``, never less than ``floor``. A failure (a result found wrong) resets ``CV``
to 0. The rate never reaches zero, so a provider can never stop being checked.

Which job is audited is drawn with ``secrets`` (the operating system's randomness),
and the audited job travels like any other: the provider can neither predict nor
tell which of its results are checked. A seeded ``random.Random`` may be given
instead, for tests and benchmarks that must repeat.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

__all__ = ["AUDIT_FLOOR", "TRUST_AFTER", "AdaptiveAudit"]

#: the least fraction of a provider's jobs that is audited, however long its record
#: (see ``_economics.py`` for why 5 %)
AUDIT_FLOOR = 0.05
#: consistent results after which a provider is trusted with probability 1 − 1/CV
TRUST_AFTER = 10
_SCALE = 2**53


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
