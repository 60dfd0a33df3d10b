"""A referee's check of a challenger's evidence, and its votes' state across restarts.

The evidence comes from a stranger: it is used only when every part of it matches what
the provider signed (the receipt's spec, input and output hashes, as the chain holds
them); each attack below is refused and stores nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from idlegrid import NotFound, PeerError
from idlegrid.protocol import DisputeEvidence, npy_bytes
from idlegrid.provider._referee import Case, Referee
from idlegrid.store import MemoryBlobStore
from idlegrid.workloads import get_workload

MODEL = b"an onnx model's bytes"
MODEL_HASH = hashlib.sha256(MODEL).hexdigest()
ROWS = np.arange(6, dtype=np.float32).reshape(3, 2)
OUTPUT = npy_bytes(np.ones((3, 4), np.float32))
DISPUTE = "0x" + "ab" * 32


def _fields() -> dict[str, Any]:
    return {"model": MODEL_HASH, "input_npy": base64.b64encode(npy_bytes(ROWS)).decode()}


def _referee(tmp_path: Path) -> Referee:
    node = SimpleNamespace(
        ledger=SimpleNamespace(deployment=SimpleNamespace(start_block=7)),
        store=MemoryBlobStore(),
        config=SimpleNamespace(max_output_bytes=2**20),
        address="0x" + "11" * 20,
    )
    referee = Referee(node, disputes=None, path=tmp_path / "referee.json")  # type: ignore[arg-type]
    spec_hash, input_hash = get_workload("onnx").digests(_fields())
    referee.cases[DISPUTE] = Case(
        dispute=DISPUTE,
        provider="0x" + "22" * 20,
        spec_hash=spec_hash.hex(),
        input_hash=input_hash.hex(),
        output_hash=hashlib.sha256(OUTPUT).hexdigest(),
        commit_deadline=1000,
        reveal_deadline=2000,
        evidence_until=500,
    )
    return referee


def _evidence(**change: Any) -> DisputeEvidence:
    body: dict[str, Any] = {
        "dispute": DISPUTE,
        "kind": "onnx",
        "fields": _fields(),
        "output_npy": base64.b64encode(OUTPUT).decode(),
        "blobs": {MODEL_HASH: base64.b64encode(MODEL).decode()},
    }
    body.update(change)
    return DisputeEvidence.model_validate(body)


def test_evidence_that_matches_the_receipt_gives_the_provider_s_output(tmp_path: Path) -> None:
    # Prepare
    referee = _referee(tmp_path)

    # Execute
    claimed = referee._check(referee.cases[DISPUTE], _evidence())

    # Assert: the output the provider signed, and the model stored to re-execute with
    assert np.array_equal(claimed, np.ones((3, 4), np.float32))
    assert referee.node.store.get(MODEL_HASH) == MODEL


OTHER_ROWS = base64.b64encode(npy_bytes(ROWS + 1)).decode()
ATTACKS = [
    pytest.param(
        {"fields": {**_fields(), "input_npy": OTHER_ROWS}}, "hashes differ", id="other inputs"
    ),
    pytest.param({"fields": {**_fields(), "model": "cd" * 32}}, "hashes differ", id="other model"),
    pytest.param({"kind": "embed"}, "hashes differ", id="another kind"),
    pytest.param(
        {"output_npy": base64.b64encode(npy_bytes(np.zeros((3, 4), np.float32))).decode()},
        "not the one the provider signed",
        id="another output",
    ),
    pytest.param(
        {"blobs": {MODEL_HASH: base64.b64encode(b"a swapped model").decode()}},
        "does not hash to its name",
        id="a blob under another's name",
    ),
]


@pytest.mark.parametrize(("change", "says"), ATTACKS)
def test_evidence_that_does_not_match_is_refused_and_stores_nothing(
    tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    # Prepare
    referee = _referee(tmp_path)

    # Execute / Assert
    with pytest.raises(PeerError, match=says):
        referee._check(referee.cases[DISPUTE], _evidence(**change))
    assert not referee.node.store.has(MODEL_HASH)


def test_evidence_for_a_dispute_it_does_not_sit_on_is_not_found(tmp_path: Path) -> None:
    # Prepare: a referee whose chain reads find nothing new
    referee = _referee(tmp_path)
    referee._scan = lambda: None  # type: ignore[method-assign]

    # Execute / Assert
    with pytest.raises(NotFound, match="does not seat this node"):
        asyncio.run(referee.take_evidence(_evidence(dispute="0x" + "cd" * 32)))
    assert asyncio.run(referee.take_evidence(_evidence())) == "kept; checked before the vote"


def test_votes_and_salts_survive_a_restart(tmp_path: Path) -> None:
    # Prepare: a vote committed
    referee = _referee(tmp_path)
    case = referee.cases[DISPUTE]
    case.stage, case.wrong, case.salt = "committed", True, "ef" * 32
    referee.next_block = 99
    referee._save()

    # Execute: a new referee on the same file
    restarted = Referee(referee.node, disputes=None, path=tmp_path / "referee.json")  # type: ignore[arg-type]

    # Assert: it reveals what it committed
    assert restarted.next_block == 99
    assert restarted.cases[DISPUTE] == case
