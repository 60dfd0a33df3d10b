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
from ._pol import (
    ATTACKS,
    POL_TOLERANCE,
    IntervalVerdict,
    PolCalibration,
    PolReport,
    calibrate_pol,
    check_interval,
    detection_probability,
    digits_calibration,
    interval_bounds,
    intervals_needed,
    param_distance,
    replay_interval,
    select_intervals,
    spoof,
    verify_run,
)
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
    "ATTACKS",
    "AUDIT_FLOOR",
    "LOCAL",
    "MAX_AUDIT_RATE",
    "MIN_STAKE_MULTIPLE",
    "POL_TOLERANCE",
    "THREADS",
    "TRUST_AFTER",
    "AdaptiveAudit",
    "Attempt",
    "Calibration",
    "Evidence",
    "IntervalVerdict",
    "LocalRunner",
    "PolCalibration",
    "PolReport",
    "Policy",
    "SignedReceipt",
    "Verifier",
    "calibrate",
    "calibrate_pol",
    "capture_receipts",
    "cheating_pays",
    "check_interval",
    "detection_probability",
    "digits_calibration",
    "headroom",
    "interval_bounds",
    "intervals_needed",
    "just_beyond",
    "majority",
    "measure",
    "min_rate",
    "min_stake",
    "param_distance",
    "record_receipt",
    "replay_interval",
    "required_rate",
    "select_intervals",
    "spoof",
    "trust_after_for",
    "verify_run",
]
