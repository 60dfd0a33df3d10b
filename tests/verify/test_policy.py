"""The Verifier: audit and quorum on fake witnesses. A wrong result is caught with its
evidence, the agreed result is returned, and a difference within the tolerance is
never an accusation."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from idlegrid import InvalidInput, ProviderFailed
from idlegrid.verify import LOCAL, AdaptiveAudit, Attempt, Policy, Verifier, majority
from idlegrid.workloads import get_workload

ONNX = get_workload("onnx")
TRUE = np.linspace(0, 1, 12, dtype=np.float32).reshape(4, 3)
WITHIN = TRUE + np.float32(1e-6)  # another honest machine
WRONG = np.zeros_like(TRUE)


class Witnesses:
    """Providers that answer a shard with a fixed output, and the local machine."""

    def __init__(self, outputs: dict[str, np.ndarray], here: np.ndarray | None = TRUE) -> None:
        self.outputs, self._here = outputs, here
        self.asked: list[str] = []
        self.here_runs = 0

    async def elsewhere(self, exclude: set[str]) -> Attempt | None:
        for name, output in self.outputs.items():
            if name not in exclude and name not in self.asked:
                self.asked.append(name)
                return Attempt(name, output, receipts=())
        return None

    async def here(self) -> np.ndarray:
        self.here_runs += 1
        if self._here is None:
            raise ImportError("this kind cannot run here")
        return self._here


def _settle(verifier: Verifier, first: Attempt, witnesses: Witnesses) -> np.ndarray:
    return asyncio.run(verifier.settle(first, 0, "inputs", witnesses.elsewhere, witnesses.here))


def _verifier(verify: str, **kw: object) -> Verifier:
    audit = AdaptiveAudit(rng=random.Random(0))
    return Verifier(Policy(verify, **kw), ONNX, audit)  # type: ignore[arg-type]


def test_none_accepts_without_asking_anyone() -> None:
    # Prepare
    verifier, witnesses = _verifier("none"), Witnesses({"b": TRUE})

    # Execute
    out = _settle(verifier, Attempt("a", WRONG), witnesses)

    # Assert
    assert out is WRONG and witnesses.asked == [] and verifier.audited == 0


def test_an_audit_that_agrees_within_tolerance_accuses_nobody() -> None:
    # Prepare: a new provider is always audited
    verifier, witnesses = _verifier("audit"), Witnesses({"b": WITHIN})

    # Execute
    out = _settle(verifier, Attempt("a", TRUE), witnesses)

    # Assert
    assert out is TRUE
    assert verifier.caught == {} and witnesses.here_runs == 0
    # the audited provider's record grows; a witness's agreement builds it no trust
    assert (verifier.audit.consistent("a"), verifier.audit.consistent("b")) == (1, 0)


def test_a_witness_that_lies_is_caught_and_its_record_reset() -> None:
    # Prepare: "b" witnesses a shard of an honest "a" and lies
    verifier, witnesses = _verifier("audit"), Witnesses({"b": WRONG})
    for _ in range(5):
        verifier.audit.record("b", ok=True)

    # Execute
    out = _settle(verifier, Attempt("a", TRUE), witnesses)

    # Assert: the truth comes back, the lying witness is caught, its record starts over
    assert np.array_equal(out, TRUE)
    assert set(verifier.caught) == {"b"}
    assert verifier.audit.consistent("b") == 0 and verifier.audit.failures("b") == 1


def test_an_audit_that_disagrees_is_broken_here_and_catches_the_liar() -> None:
    # Prepare
    verifier, witnesses = _verifier("audit"), Witnesses({"b": WITHIN})

    # Execute
    out = _settle(verifier, Attempt("a", WRONG), witnesses)

    # Assert: the agreed result comes back, the liar is caught with its evidence
    assert np.array_equal(out, TRUE)
    evidence = verifier.caught["a"]
    assert evidence.output is WRONG and np.array_equal(evidence.reference, TRUE)
    assert evidence.inputs == "inputs" and evidence.kind == "onnx"
    assert set(evidence.witnesses) == {"b", LOCAL}
    assert verifier.audit.failures("a") == 1 and "b" not in verifier.caught


def test_a_lying_auditor_is_caught_and_the_honest_provider_kept() -> None:
    # Prepare
    verifier, witnesses = _verifier("audit"), Witnesses({"liar": WRONG})

    # Execute
    out = _settle(verifier, Attempt("a", TRUE), witnesses)

    # Assert
    assert out is not WRONG and set(verifier.caught) == {"liar"}


def test_a_local_audit_decides_alone() -> None:
    # Prepare
    verifier, witnesses = _verifier("audit", local=True), Witnesses({"b": TRUE})

    # Execute
    out = _settle(verifier, Attempt("a", WRONG), witnesses)

    # Assert
    assert np.array_equal(out, TRUE) and set(verifier.caught) == {"a"}
    assert witnesses.asked == [] and witnesses.here_runs == 1


def test_a_trusted_provider_is_audited_at_its_rate_only() -> None:
    # Prepare: a long record (rate: the floor, 5 %)
    verifier = _verifier("audit")
    for _ in range(1000):
        verifier.audit.record("a", ok=True)

    # Execute
    for _ in range(400):
        _settle(verifier, Attempt("a", TRUE), Witnesses({"b": TRUE}))

    # Assert
    assert 5 <= verifier.audited <= 40


def test_a_quorum_keeps_the_majority_and_catches_the_minority() -> None:
    # Prepare
    verifier, witnesses = _verifier("quorum", k=3), Witnesses({"b": WITHIN, "c": TRUE})

    # Execute
    out = _settle(verifier, Attempt("a", WRONG), witnesses)

    # Assert
    assert not np.array_equal(out, WRONG) and set(verifier.caught) == {"a"}
    assert witnesses.asked == ["b", "c"] and witnesses.here_runs == 0


def test_a_quorum_of_two_that_disagrees_is_broken_here() -> None:
    # Prepare
    verifier, witnesses = _verifier("quorum", k=2), Witnesses({"b": WRONG})

    # Execute
    out = _settle(verifier, Attempt("a", WITHIN), witnesses)

    # Assert
    assert out is WITHIN or np.array_equal(out, TRUE)
    assert set(verifier.caught) == {"b"}


def test_no_majority_and_no_tiebreak_accuses_nobody() -> None:
    # Prepare: two different answers, the kind cannot run here, nobody else
    verifier, witnesses = _verifier("quorum", k=2), Witnesses({"b": WRONG}, here=None)

    # Execute / Assert
    with pytest.raises(ProviderFailed, match="no two"):
        _settle(verifier, Attempt("a", TRUE), witnesses)
    assert verifier.caught == {}


def test_majority_prefers_the_local_result() -> None:
    # Prepare
    attempts = [Attempt("a", WRONG), Attempt("b", WRONG), Attempt(LOCAL, TRUE)]

    # Execute
    agreed = majority(attempts, ONNX.close_enough)

    # Assert
    assert agreed is not None and agreed.provider == LOCAL


@pytest.mark.parametrize(("verify", "k"), [("maybe", 3), ("quorum", 1)])
def test_a_bad_policy_is_refused(verify: str, k: int) -> None:
    with pytest.raises(InvalidInput):
        Policy(verify, k)  # type: ignore[arg-type]
