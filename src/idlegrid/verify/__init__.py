"""Trust in untrusted providers: verification policies, adaptive audits, the economics
of cheating, and the tolerance honest results are compared with.

A client checks a provider's results by running a sample of its jobs again elsewhere
(``audit``) or by asking several providers (``quorum``), comparing with the kind's
``close_enough`` (``Verifier``). How often it audits adapts to the provider's record
(``AdaptiveAudit``), and the rate and the provider's stake together make cheating a
loss (``min_stake``, ``min_rate``: p·(R + S) ≥ c).
"""

from __future__ import annotations

from ._adaptive import AUDIT_FLOOR, TRUST_AFTER, AdaptiveAudit, trust_after_for
from ._economics import (
    MAX_AUDIT_RATE,
    MIN_STAKE_MULTIPLE,
    cheating_pays,
    min_rate,
    min_stake,
    required_rate,
)
from ._local import LocalRunner
from ._policy import (
    LOCAL,
    Attempt,
    Evidence,
    Policy,
    SignedReceipt,
    Verifier,
    capture_receipts,
    majority,
    record_receipt,
)
from ._tolerance import THREADS, Calibration, calibrate, headroom, just_beyond, measure

__all__ = [
    "AUDIT_FLOOR",
    "LOCAL",
    "MAX_AUDIT_RATE",
    "MIN_STAKE_MULTIPLE",
    "THREADS",
    "TRUST_AFTER",
    "AdaptiveAudit",
    "Attempt",
    "Calibration",
    "Evidence",
    "LocalRunner",
    "Policy",
    "SignedReceipt",
    "Verifier",
    "calibrate",
    "capture_receipts",
    "cheating_pays",
    "headroom",
    "just_beyond",
    "majority",
    "measure",
    "min_rate",
    "min_stake",
    "record_receipt",
    "required_rate",
    "trust_after_for",
]
