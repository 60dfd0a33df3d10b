"""Verification policies: how a client checks the results of a batch.

* ``none``: a result is accepted once its signature, hash, bill and shape check out.
* ``audit``: a sample of a provider's jobs (``AdaptiveAudit``: every job while it has
  no record, falling to ``AUDIT_FLOOR`` as its run of consistent results grows, and
  raised where its stake is small: ``_economics``) is run again on another provider,
  or here (``local``), and compared with the kind's ``close_enough``.
* ``quorum``: every job runs on ``k`` providers; the result a strict majority agrees
  on is kept.

Who is wrong: a result run here (``local``) decides when there is one (the client
trusts its own machine); otherwise a strict majority does. Two results that disagree
with no majority are broken by a run here (or, if the kind cannot run here, on one
more provider). A provider is caught only when its result is *not* close_enough to
the agreed one: a difference within the tolerance is never an accusation.

A provider caught keeps its evidence (``Evidence``: its signed receipts, the job's
inputs and spec, what it returned and what the others agreed on) for the dispute
flow; it is left out of the rest of the batch, and the shard's returned output is the
agreed one.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .._exceptions import IdlegridError, InvalidInput, ProviderFailed
from ._adaptive import AdaptiveAudit

__all__ = [
    "LOCAL",
    "Attempt",
    "Evidence",
    "Policy",
    "SignedReceipt",
    "Verifier",
    "capture_receipts",
    "majority",
    "record_receipt",
]

#: the name of the client's own machine as a witness
LOCAL = "local"
Verify = Literal["none", "audit", "quorum"]


@dataclass(frozen=True)
class Policy:
    """A batch's verification policy (``Client.run(..., verify=, k=, local=)``)."""

    verify: Verify = "none"
    #: providers per job under ``quorum``
    k: int = 3
    #: ``audit`` re-runs jobs here instead of on another provider
    local: bool = False

    def __post_init__(self) -> None:
        if self.verify not in ("none", "audit", "quorum"):
            raise InvalidInput(f"verify must be none, audit or quorum, not {self.verify!r}")
        if self.verify == "quorum" and self.k < 2:
            raise InvalidInput("a quorum needs k >= 2 providers")


@dataclass(frozen=True)
class SignedReceipt:
    """A job as sent and the provider's signed receipt for its result."""

    request: Any  # the JobRequest (its spec and inputs, inline or by digest)
    receipt: Any  # the Receipt the client rebuilt and checked
    signature: str  # the provider's signature over it, hex
    output_npy: bytes = b""  # the output as the provider sent it (sha256: the result hash)


@dataclass(frozen=True)
class Attempt:
    """One witness's result for a shard: a provider's (with its receipts) or ours."""

    provider: str
    output: np.ndarray
    receipts: tuple[SignedReceipt, ...] = ()


@dataclass(frozen=True)
class Evidence:
    """Why a provider was caught: what a dispute needs."""

    provider: str
    kind: str
    shard: int
    #: the shard's inputs, as the kind reads them
    inputs: Any
    #: what the provider returned, and what the witnesses agreed on instead
    output: np.ndarray
    reference: np.ndarray
    witnesses: tuple[str, ...]
    #: the provider's signed receipts for the shard's jobs (requests included)
    receipts: tuple[SignedReceipt, ...]


_receipts: contextvars.ContextVar[list[SignedReceipt] | None] = contextvars.ContextVar(
    "idlegrid_receipts", default=None
)


def record_receipt(request: Any, receipt: Any, signature: str, output_npy: bytes = b"") -> None:
    """Called by the client's session for every result it accepts: kept while a
    verifier captures (``capture_receipts``), else dropped (no cost)."""
    into = _receipts.get()
    if into is not None:
        into.append(SignedReceipt(request, receipt, signature, output_npy))


async def capture_receipts(
    run: Callable[[], Awaitable[np.ndarray]],
) -> tuple[np.ndarray, tuple[SignedReceipt, ...]]:
    """Run ``run`` (jobs on one provider) and keep the receipts it accepted."""
    into: list[SignedReceipt] = []
    token = _receipts.set(into)
    try:
        output = await run()
    finally:
        _receipts.reset(token)
    return output, tuple(into)


def majority(
    attempts: Sequence[Attempt], close_enough: Callable[[np.ndarray, np.ndarray], bool]
) -> Attempt | None:
    """The result to keep: ours when there is one, else one a strict majority agrees
    with (None when none has a majority)."""
    for attempt in attempts:
        if attempt.provider == LOCAL:
            return attempt
    need = len(attempts) // 2 + 1
    best, support = None, 0
    for attempt in attempts:
        n = sum(close_enough(attempt.output, other.output) for other in attempts)
        if n > support:
            best, support = attempt, n
    return best if support >= need else None


Elsewhere = Callable[[set[str]], Awaitable[Attempt | None]]
Here = Callable[[], Awaitable[np.ndarray]]


@dataclass
class Verifier:
    """Checks one batch's shards under a policy; keeps what it caught."""

    policy: Policy
    workload: Any
    audit: AdaptiveAudit
    #: providers caught in this batch, with the evidence
    caught: dict[str, Evidence] = field(default_factory=dict)
    #: shards audited, and jobs run again (on providers or here) to check them
    audited: int = 0
    reruns: int = 0
    #: the shards whose output was checked
    checked: set[int] = field(default_factory=set)

    async def settle(
        self,
        first: Attempt,
        index: int,
        inputs: Any,
        elsewhere: Elsewhere,
        here: Here,
        *,
        at_least: float = 0.0,
    ) -> np.ndarray:
        """The verified output of shard ``index`` whose first result is ``first``.

        ``elsewhere(exclude)`` runs the shard on a provider not in ``exclude`` (None
        when none is left); ``here()`` runs it on this machine. ``at_least``: the
        audit rate the provider's stake requires."""
        mode = self.policy.verify
        if mode == "none":
            return first.output
        if mode == "audit" and not self.audit.sample(first.provider, at_least=at_least):
            return first.output
        self.audited += 1
        self.checked.add(index)
        attempts = [first]
        want = self.policy.k if mode == "quorum" else 2
        if mode == "audit" and self.policy.local:
            attempts.append(await self._here(here))
        while len(attempts) < want:
            other = await elsewhere(self._exclude(attempts))
            if other is None:
                break
            self.reruns += 1
            attempts.append(other)
        if len(attempts) == 1:  # nobody else: this machine checks
            attempts.append(await self._here(here))
        agreed = majority(attempts, self.workload.close_enough)
        if agreed is None:  # no majority: break the tie here, or on one more provider
            try:
                attempts.append(await self._here(here))
            except (IdlegridError, ImportError, OSError):
                other = await elsewhere(self._exclude(attempts))
                if other is not None:
                    self.reruns += 1
                    attempts.append(other)
            agreed = majority(attempts, self.workload.close_enough)
        if agreed is None:
            # nobody is accused; the shard goes to another provider (fail-over)
            raise ProviderFailed(f"shard {index}: no two of {len(attempts)} results agree")
        witnesses = tuple(
            a.provider for a in attempts if self.workload.close_enough(agreed.output, a.output)
        )
        for attempt in attempts:
            if attempt.provider == LOCAL:
                continue
            ok = self.workload.close_enough(agreed.output, attempt.output)
            # a provider's record grows with its own shards found right; as a witness it is
            # checked as well (a wrong answer resets its record and catches it), but agreeing
            # builds no trust: else a cheater could earn its trust by witnessing others
            if attempt is first or not ok:
                self.audit.record(attempt.provider, ok=ok)
            if not ok:
                self.caught[attempt.provider] = Evidence(
                    attempt.provider,
                    self.workload.name,
                    index,
                    inputs,
                    attempt.output,
                    agreed.output,
                    witnesses,
                    attempt.receipts,
                )
        return agreed.output

    async def _here(self, here: Here) -> Attempt:
        self.reruns += 1
        return Attempt(LOCAL, await here())

    def _exclude(self, attempts: Sequence[Attempt]) -> set[str]:
        return {a.provider for a in attempts} | set(self.caught)
