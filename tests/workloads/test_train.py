"""The long-running ``train`` kind: real PyTorch training, deterministic and resumable
segments, the bill from the spec alone, bad specs refused before any work, and an ONNX
export the ``onnx`` workload can serve."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

pytest.importorskip("torch")

from idlegrid import InvalidInput
from idlegrid.protocol import array_from_npy
from idlegrid.workloads import LongWorkload, OnnxRunner, get_workload, model_cost
from idlegrid.workloads._kind_train import (
    TrainSpec,
    TrainWorkload,
    evaluate,
    export_onnx,
    initial_state,
    output_size,
    read_dataset,
    run,
    state_hash,
    state_size,
    state_step,
    train_dataset,
    train_units,
    unpack_output,
)
from idlegrid.workloads._train_models import build, flops_per_sample, param_count

MLP = {"family": "mlp", "inputs": 64, "hidden": [32], "classes": 10}
CNN = {"family": "cnn", "channels": 1, "height": 8, "width": 8, "conv": [4, 8], "classes": 10}
TRANSFORMER = {
    "family": "transformer",
    "vocab": 17,
    "seq": 6,
    "d_model": 16,
    "heads": 2,
    "layers": 2,
    "ff": 32,
    "classes": 3,
}


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return x[:1400], y[:1400], x[1400:], y[1400:]


DATA = train_dataset(*digits())
DIGEST = hashlib.sha256(DATA).hexdigest()


def fields(**overrides: Any) -> dict[str, Any]:
    base = {
        "model": MLP,
        "optimizer": "adam",
        "lr": 0.01,
        "schedule": "cosine",
        "total_steps": 200,
        "batch": 32,
        "seed": 3,
        "data": DIGEST,
        "start": 0,
        "steps": 20,
    }
    return {**base, **overrides}


class Node:
    """A node's blobs, for ``check``, ``prepare`` and ``report``."""

    metered = False
    max_blob_bytes = 2**24
    max_model_bytes = 2**24

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def blob_size(self, digest: str) -> int:
        return len(self.blobs[digest])

    def blob(self, digest: str) -> bytes:
        return self.blobs[digest]


def segment(node: Node, **overrides: Any) -> bytes:
    """Check, prepare and run one segment as a node would (keeping its states as
    blobs); its output ``.npy``."""
    workload = TrainWorkload()
    spec = workload.parse(fields(**overrides))
    asyncio.run(workload.check(spec, node))  # type: ignore[arg-type]
    prepared = asyncio.run(workload.prepare(spec, node))  # type: ignore[arg-type]
    assert prepared.units == workload.units(spec)
    out, states = workload.split_output(spec, run(prepared.payload))
    for blob in states:
        node.blobs[hashlib.sha256(blob).hexdigest()] = blob
    return out


def last_state(out: bytes) -> np.ndarray:
    """The final state in a segment's output."""
    array = array_from_npy(out)
    return array[1 + 16 * int(array[0]) :]


def state_of(out: bytes) -> str:
    """The digest naming a segment's final state (what the next segment names)."""
    return state_hash(last_state(out)).hex()


def test_registered_as_a_long_kind() -> None:
    assert isinstance(get_workload("train"), TrainWorkload)
    assert isinstance(get_workload("train"), LongWorkload)


@pytest.mark.parametrize("model", [MLP, CNN, TRANSFORMER])
def test_parameter_count_matches_the_network(model: dict[str, Any]) -> None:
    spec = TrainSpec.model_validate(fields(model=model))
    net = build(spec.model)
    assert param_count(spec.model) == sum(p.numel() for p in net.parameters())


def test_units_come_from_the_spec() -> None:
    spec = TrainSpec.model_validate(fields(steps=7, batch=16))
    assert flops_per_sample(spec.model) == 2 * (64 * 32 + 32 * 10)
    assert train_units(spec) == 3 * flops_per_sample(spec.model) * 16 * 7


def test_training_lowers_the_loss_and_learns_digits() -> None:
    node = Node({DIGEST: DATA})
    spec = TrainSpec.model_validate(fields())
    arrays = read_dataset(DATA, spec)
    first = last_state(segment(node, steps=1, total_steps=200))
    raw = segment(node, steps=200)
    out = last_state(raw)
    assert array_from_npy(raw).shape == (output_size(spec.model_copy(update={"steps": 200})),)
    assert out.shape == (state_size(spec),) and state_step(out) == 200
    before, after = evaluate(spec, first, arrays), evaluate(spec, out, arrays)
    assert after["val_loss"] < before["val_loss"] / 4
    assert out[2] < first[2] / 4  # the training loss of the last interval
    assert after["val_accuracy"] > 0.85


def test_a_segment_is_deterministic() -> None:
    node = Node({DIGEST: DATA})
    assert segment(node, steps=30) == segment(node, steps=30)


def test_deterministic_mode_is_set_without_loading_the_compiler() -> None:
    """``deterministic()`` turns PyTorch's switch on, as the public call does, and leaves
    ``torch._inductor`` and ``torch._dynamo`` unloaded (their import is what made every
    training process's start 1.4 s longer). In a process of its own: another test may
    have loaded them here."""
    code = (
        "import sys, torch\n"
        "from idlegrid.workloads._train_models import deterministic\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
        "deterministic()\n"
        "print(torch.are_deterministic_algorithms_enabled(),"
        " sorted(m for m in ('torch._inductor', 'torch._dynamo') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "True []"


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resuming_from_a_checkpoint_equals_one_run(optimizer: str) -> None:
    """0..60 in one segment equals 0..30 then 30..60 (crossing an epoch: 43 per epoch)."""
    node = Node({DIGEST: DATA})
    common = {"optimizer": optimizer, "total_steps": 60, "interval": 30}
    whole = last_state(segment(node, steps=60, **common))
    half = segment(node, steps=30, **common)
    resumed = last_state(segment(node, start=30, steps=30, state=state_of(half), **common))
    np.testing.assert_array_equal(resumed, whole)


def test_a_segment_checkpoints_every_interval_and_signs_each_hash() -> None:
    """Intervals of 8 steps over 30 (the last one shorter): the output names each state,
    the node keeps each one, and a segment of one interval from any of them replays it."""
    node = Node({DIGEST: DATA})
    workload = TrainWorkload()
    spec = workload.parse(fields(steps=30, interval=8, total_steps=60))
    raw = segment(node, steps=30, interval=8, total_steps=60)
    hashes, last = unpack_output(spec, array_from_npy(raw))
    assert spec.intervals == 4 and len(hashes) == 4
    states = [array_from_npy(node.blobs[h.hex()]) for h in hashes]
    assert [state_step(s) for s in states] == [8, 16, 24, 30]
    np.testing.assert_array_equal(states[-1], last)
    replay = segment(node, start=16, steps=8, interval=8, total_steps=60, state=hashes[1].hex())
    np.testing.assert_array_equal(last_state(replay), states[2])
    assert workload.state_digest(spec, raw) == hashes[-1].hex()


def test_the_initial_state_follows_from_the_seed() -> None:
    spec = TrainSpec.model_validate(fields())
    first = initial_state(spec)
    assert state_step(first) == 0 and first.shape == (state_size(spec),)
    np.testing.assert_array_equal(first, initial_state(spec))
    other = initial_state(TrainSpec.model_validate(fields(seed=4)))
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("mode", ["skip-steps", "interpolate"])
def test_the_fabrication_aid_changes_the_trajectory_it_claims(mode: str) -> None:
    from idlegrid.workloads._kind_train import train_steps

    spec = TrainSpec.model_validate(fields(steps=20, interval=4))
    x, y, _, _ = read_dataset(DATA, spec)
    honest = train_steps(spec, None, x, y)
    fake = train_steps(spec, None, x, y, fabricate={"mode": mode, "rate": 0.5, "seed": 1})
    assert [state_step(s) for s in fake] == [state_step(s) for s in honest]
    differs = [not np.array_equal(a, b) for a, b in zip(honest, fake, strict=True)]
    assert any(differs)


def test_a_corrupt_output_is_refused() -> None:
    node = Node({DIGEST: DATA})
    spec = TrainWorkload().parse(fields(steps=8, interval=4))
    out = array_from_npy(segment(node, steps=8, interval=4)).copy()
    out[17] = (out[17] + 1) % 2**16  # a chunk of the last interval's hash
    with pytest.raises(InvalidInput, match="last checkpoint hash"):
        unpack_output(spec, out)
    out[17] += 0.5
    with pytest.raises(InvalidInput, match="16-bit"):
        unpack_output(spec, out)


def test_next_fields_and_report() -> None:
    node = Node({DIGEST: DATA})
    workload = TrainWorkload()
    spec = workload.parse(fields(steps=20, total_steps=50))
    out = segment(node, steps=20, total_steps=50)
    digest = workload.state_digest(spec, out)
    assert digest == state_of(out)
    nxt = workload.next_fields(spec, digest, 50)
    assert nxt is not None and nxt["start"] == 20 and nxt["state"] == digest
    last = workload.parse({**nxt, "start": 40, "steps": 10})
    assert workload.next_fields(last, digest, 50) is None
    report = workload.report(spec, out, node)  # type: ignore[arg-type]
    assert set(report) == {"step", "loss"} and report["step"] == 20


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"model": {**MLP, "family": "resnet"}}, "model"),
        ({"model": {**MLP, "hidden": [100_000]}}, "hidden"),
        ({"model": {**TRANSFORMER, "heads": 3}}, "multiple of heads"),
        ({"model": {**MLP, "inputs": 65_536, "hidden": [4096, 4096]}}, "parameters"),
        ({"model": {**MLP, "hidden": [8192] * 8}, "batch": 4096}, "parameters|activations"),
        (
            {"model": {**TRANSFORMER, "seq": 1024, "d_model": 256, "layers": 12}, "batch": 4096},
            "activations",
        ),
        ({"start": 190, "steps": 20, "state": "b" * 64}, "after the run"),
        ({"start": 10}, "state"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"code": "import os"}, "code"),
        ({"start": 20, "state": "b" * 64, "interval": 8}, "multiple of 8"),
        ({"steps": 5000, "total_steps": 5000, "interval": 1}, "at most 4096"),
        (
            {"model": {**MLP, "hidden": [1000, 1000]}, "steps": 100, "interval": 1},
            "checkpoint less often",
        ),
    ],
)
def test_bad_specs_are_refused(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        TrainWorkload().parse(fields(**overrides))


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({**MLP, "inputs": 63}, "x must be"),
        ({**MLP, "classes": 5}, "labels"),
        (CNN, "x must be"),
        (TRANSFORMER, "x must be"),
    ],
)
def test_data_that_does_not_fit_the_model_is_refused_before_running(
    model: dict[str, Any], match: str
) -> None:
    workload = TrainWorkload()
    spec = workload.parse(fields(model=model))
    with pytest.raises(InvalidInput, match=match):
        asyncio.run(workload.prepare(spec, Node({DIGEST: DATA})))  # type: ignore[arg-type]


def test_a_checkpoint_of_another_step_is_refused() -> None:
    node = Node({DIGEST: DATA})
    state = state_of(segment(node, steps=10))
    workload = TrainWorkload()
    spec = workload.parse(fields(start=20, steps=10, state=state))
    with pytest.raises(InvalidInput, match="not at step 20"):
        asyncio.run(workload.prepare(spec, node))  # type: ignore[arg-type]


@pytest.mark.parametrize("model", [CNN, TRANSFORMER])
def test_cnn_and_transformer_train(model: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    x: NDArray[np.float32] | NDArray[np.int64]
    if model is CNN:
        x = rng.normal(size=(64, 1, 8, 8)).astype(np.float32)
        y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    else:
        x = rng.integers(0, 17, size=(64, 6))
        y = x[:, 0] % 3
    data = train_dataset(x, y, x[:16], y[:16])
    digest = hashlib.sha256(data).hexdigest()
    node = Node({digest: data})
    spec = TrainSpec.model_validate(fields(model=model, data=digest, batch=16, steps=2))
    out = last_state(segment(node, model=model, data=digest, batch=16, steps=2))
    assert out.shape == (state_size(spec),) and np.isfinite(out).all()
    export_onnx(spec, out)  # exports without error


def test_onnx_export_predicts_as_torch() -> None:
    import torch

    from idlegrid.workloads._kind_train import _network

    node = Node({DIGEST: DATA})
    spec = TrainSpec.model_validate(fields())
    state = last_state(segment(node, steps=50))
    _, _, x_val, _ = read_dataset(DATA, spec)
    net = _network(spec, state).eval()
    with torch.no_grad():
        want = net(torch.from_numpy(x_val)).numpy()
    model = export_onnx(spec, state)
    got = OnnxRunner().run(model, {"x": x_val})[0]
    assert model_cost(model).metering is None  # the onnx kind counts its units
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_client_run_plans_segments_and_computes_metrics() -> None:
    workload = TrainWorkload()
    plan = asyncio.run(
        workload.start(
            None,  # type: ignore[arg-type]
            model=MLP,
            x=digits()[0],
            y=digits()[1],
            x_val=digits()[2],
            y_val=digits()[3],
            epochs=1,
            segment_steps=20,
            batch=32,
        )
    )
    assert plan.total_steps == 1400 // 32
    segments = plan.segments()
    assert [s.steps for s in segments] == [20, 20, 3]
    spec = workload.parse(fields(total_steps=plan.total_steps, steps=20))
    assert segments[0].units == workload.units(spec)
    payload = pickle.dumps({"spec": spec.model_dump(), "data": plan.data, "state": None})
    out, _ = workload.split_output(spec, run(payload))
    metrics = plan.metrics(out)
    assert set(metrics) == {"step", "loss", "val_loss", "val_accuracy"} and metrics["step"] == 20


def test_a_cuda_run_is_refused_by_a_node_without_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for nodes without it")
    workload = TrainWorkload()
    spec = workload.parse(fields(device="cuda"))
    with pytest.raises(InvalidInput, match="no CUDA device"):
        asyncio.run(workload.prepare(spec, Node({DIGEST: DATA})))  # type: ignore[arg-type]


def test_a_run_trains_on_the_device_its_spec_names() -> None:
    """CPU here; on a machine with CUDA the same segment runs on the GPU and its states
    come back to the host, finite and at the right step."""
    import torch

    from idlegrid.workloads._kind_train import train_steps

    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = TrainSpec.model_validate(fields(steps=8, interval=4, device=device))
    x, y, _, _ = read_dataset(DATA, spec)
    states = train_steps(spec, None, x, y)
    assert [state_step(s) for s in states] == [4, 8]
    assert all(np.isfinite(s).all() and s.dtype == np.float32 for s in states)
