"""Choosing providers: a score from price, reputation and latency, and backoff on failure.

Pure functions and a small clock-driven tracker; no I/O. A provider that
failed is avoided for ``base * 2**(failures-1)`` seconds (capped), so a node
that keeps failing is tried less and less often — and a client never picks a
failed provider again while its backoff runs (a long-standing complaint about
Golem's market).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Backoff",
    "Candidate",
    "Limits",
    "Weights",
    "audits",
    "rank",
    "reputation",
    "score",
]


@dataclass(frozen=True)
class Limits:
    """What a provider advertises it accepts (its /v1/info ``limits``); the defaults are
    those of a node that advertises none of them."""

    #: largest signed request body (a job, or one blob upload)
    max_request_bytes: int = 16 * 2**20
    #: largest blob (an uploaded input, or an output it stores for the client)
    max_blob_bytes: int = 256 * 2**20
    #: largest output a job may produce (outputs above it fail inside the worker)
    max_output_bytes: int = 8 * 2**20
    #: outputs above this come back as a blob, not inline
    max_inline_output_bytes: int = 8 * 2**20
    #: compute units a metered job is billed per worker CPU-second
    units_per_cpu_s: int = 10**10
    job_timeout_s: float = 30.0
    #: whether the node runs metered jobs (control flow, data-dependent shapes)
    metered: bool = False
    #: jobs one client may have running or queued there (more are answered 429)
    max_jobs_per_client: int = 8


@dataclass(frozen=True)
class Candidate:
    """What the client knows about one provider."""

    address: str
    endpoint: str
    unit_price: int
    latency_ms: float
    #: its standing from the chain's events, in thousandths
    #: (:attr:`idlegrid.chain.Reputation.points`: tokens paid by distinct clients, disputes;
    #: negative once slashed)
    reputation: int = 0
    slashed: int = 0
    #: this client's own audits of it: consistent results in a row, and results found
    #: wrong (an audit's outcome is known only to the client that ran it, so it weighs in
    #: this client's choice, not in the shared score from the chain)
    audits_passed: int = 0
    audits_failed: int = 0
    workloads: tuple[str, ...] = ("onnx",)
    #: jobs it delivers beyond the latest voucher before it wants a newer one (its /v1/info)
    credit_jobs: int = 64
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Weights:
    """Relative importance of price, latency and reputation (lower score is better)."""

    price: float = 1.0
    latency: float = 1.0
    reputation: float = 0.5
    audits: float = 0.25


def reputation(points: int, slashed: int = 0) -> float:
    """The ranking's reputation term from a provider's indexed reputation ``points``
    (thousandths): log-scaled, so no record outweighs price without bound; a slash or
    a lost dispute (negative points) ranks the provider below any newcomer."""
    if slashed > 0 or points < 0:
        return min(points / 1000, -5.0)
    return math.log1p(points / 1000)


def audits(passed: int, failed: int = 0) -> float:
    """The ranking's term for this client's own audits of a provider: log-scaled in its
    run of consistent results; a provider this client caught ranks below any newcomer."""
    if failed > 0:
        return -5.0
    return math.log1p(passed)


def score(c: Candidate, cheapest: int, fastest_ms: float, w: Weights = Weights()) -> float:
    """Lower is better: relative price and latency, minus reputation and audits passed."""
    price = c.unit_price / cheapest if cheapest > 0 else (1.0 if c.unit_price == 0 else 2.0)
    latency = (c.latency_ms + 1.0) / (fastest_ms + 1.0)
    standing = w.reputation * reputation(c.reputation, c.slashed)
    return (
        w.price * price
        + w.latency * latency
        - standing
        - w.audits * audits(c.audits_passed, c.audits_failed)
    )


def rank(candidates: Sequence[Candidate], w: Weights = Weights()) -> list[Candidate]:
    """Candidates best first."""
    if not candidates:
        return []
    cheapest = min(c.unit_price for c in candidates)
    fastest = min(c.latency_ms for c in candidates)
    return sorted(candidates, key=lambda c: (score(c, cheapest, fastest, w), c.address))


@dataclass
class Backoff:
    """Failures per provider and when each may be tried again."""

    base_s: float = 2.0
    cap_s: float = 300.0
    _failures: dict[str, int] = field(default_factory=dict)
    _until: dict[str, float] = field(default_factory=dict)

    def fail(self, address: str, now: float) -> float:
        """Record a failure; return when the provider may be tried again."""
        n = self._failures.get(address, 0) + 1
        self._failures[address] = n
        until = now + min(self.cap_s, self.base_s * float(2 ** (n - 1)))
        self._until[address] = until
        return until

    def succeed(self, address: str) -> None:
        self._failures.pop(address, None)
        self._until.pop(address, None)

    def available(self, address: str, now: float) -> bool:
        return self._until.get(address, 0.0) <= now

    def failures(self, address: str) -> int:
        return self._failures.get(address, 0)
