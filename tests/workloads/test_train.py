"""The long-running ``train`` kind: real PyTorch training, deterministic and resumable
segments, the bill from the spec alone, bad specs refused before any work, and an ONNX
export the ``onnx`` workload can serve."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from idlegrid import InvalidInput
from idlegrid.protocol import array_from_npy
from idlegrid.workloads import LongWorkload, OnnxRunner, get_workload, model_cost
from idlegrid.workloads._kind_train import (
    TrainSpec,
    TrainWorkload,
    checkpoint_size,
    checkpoint_step,
    evaluate,
    export_onnx,
    read_dataset,
    run,
    train_dataset,
    train_units,
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
    """Check, prepare and run one segment as a node would; its checkpoint ``.npy``."""
    workload = TrainWorkload()
    spec = workload.parse(fields(**overrides))
    asyncio.run(workload.check(spec, node))  # type: ignore[arg-type]
    prepared = asyncio.run(workload.prepare(spec, node))  # type: ignore[arg-type]
    assert prepared.units == workload.units(spec)
    out = run(prepared.payload)
    node.blobs[hashlib.sha256(out).hexdigest()] = out
    return out


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
    first = array_from_npy(segment(node, steps=1, total_steps=200))
    out = array_from_npy(segment(node, steps=200))
    assert out.shape == (checkpoint_size(spec),) and checkpoint_step(out) == 200
    before, after = evaluate(spec, first, arrays), evaluate(spec, out, arrays)
    assert after["loss"] < before["loss"] / 4
    assert after["val_accuracy"] > 0.85


def test_a_segment_is_deterministic() -> None:
    node = Node({DIGEST: DATA})
    assert segment(node, steps=30) == segment(node, steps=30)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resuming_from_a_checkpoint_equals_one_run(optimizer: str) -> None:
    """0..60 in one segment equals 0..30 then 30..60 (crossing an epoch: 43 per epoch)."""
    node = Node({DIGEST: DATA})
    common = {"optimizer": optimizer, "total_steps": 60}
    whole = array_from_npy(segment(node, steps=60, **common))
    half = segment(node, steps=30, **common)
    resumed = array_from_npy(
        segment(node, start=30, steps=30, state=hashlib.sha256(half).hexdigest(), **common)
    )
    np.testing.assert_array_equal(resumed, whole)


def test_next_fields_and_report() -> None:
    node = Node({DIGEST: DATA})
    workload = TrainWorkload()
    spec = workload.parse(fields(steps=20, total_steps=50))
    out = segment(node, steps=20, total_steps=50)
    digest = hashlib.sha256(out).hexdigest()
    nxt = workload.next_fields(spec, digest, 50)
    assert nxt is not None and nxt["start"] == 20 and nxt["state"] == digest
    last = workload.parse({**nxt, "start": 40, "steps": 10})
    assert workload.next_fields(last, digest, 50) is None
    report = workload.report(spec, out, node)  # type: ignore[arg-type]
    assert set(report) == {"step", "loss", "val_accuracy"} and report["step"] == 20


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
    out = segment(node, steps=10)
    state = hashlib.sha256(out).hexdigest()
    workload = TrainWorkload()
    spec = workload.parse(fields(start=20, steps=10, state=state))
    with pytest.raises(InvalidInput, match="not at step 20"):
        asyncio.run(workload.prepare(spec, node))  # type: ignore[arg-type]


@pytest.mark.parametrize("model", [CNN, TRANSFORMER])
def test_cnn_and_transformer_train(model: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
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
    out = array_from_npy(segment(node, model=model, data=digest, batch=16, steps=2))
    assert out.shape == (checkpoint_size(spec),) and np.isfinite(out).all()
    export_onnx(spec, out)  # exports without error


def test_onnx_export_predicts_as_torch() -> None:
    import torch

    from idlegrid.workloads._kind_train import _network

    node = Node({DIGEST: DATA})
    spec = TrainSpec.model_validate(fields())
    state = array_from_npy(segment(node, steps=50))
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
    metrics = plan.metrics(run(payload))
    assert set(metrics) == {"step", "loss", "val_accuracy"}
