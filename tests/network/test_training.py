"""Training on real nodes (anvil, node processes, PyTorch in their workers): a job trained
segment by segment, paid as it goes, verified by proof-of-learning and registered with
its lineage; its ONNX export predicts as its weights do; a run resumed elsewhere after
its provider is SIGKILLed ends with the weights of an uninterrupted run; a provider that
fabricates intervals is caught, disputed and slashed; bad jobs are refused before any
work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from idlegrid import InvalidInput
from idlegrid.chain import DisputeClient, ModelRegistryClient, TrainingOutcome
from idlegrid.client import Client, Failover, ModelStore, Progress
from idlegrid.workloads import OnnxRunner
from idlegrid.workloads._kind_train import (
    TrainSpec,
    read_dataset,
    torch_threads,
    train_dataset,
    train_steps,
)

from .conftest import DEMO_CLIENT, Network, start_network

MLP = {"family": "mlp", "inputs": 64, "hidden": [32], "classes": 10}
JOB = {"model": MLP, "lr": 0.01, "epochs": 3, "batch": 32, "seed": 5, "checks": 16}


def digits() -> bytes:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return train_dataset(x[:1400], y[:1400], x[1400:], y[1400:])


DATA = digits()


def serve_train(net: Network, *, cheat: list[str] | None = None, only: int | None = None) -> None:
    """Restart the nodes so that they serve ``train`` (only node ``only``, if given; it
    with the ``cheat`` flags)."""
    for node in net.nodes:
        argv = node.argv[: node.argv.index("--train")] if "--train" in node.argv else node.argv
        if only is None or node.index == only:
            argv += ["--train", *(cheat or [])]
        net.nodes[node.index - 1] = net.replace(node, argv)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = start_network(tmp_path_factory.mktemp("training"), node_flags=["--train"])
    try:
        yield network
    finally:
        network.close()


def local_run(spec: TrainSpec, total: int) -> np.ndarray:
    """The whole run here, in one segment, on the same interval grid, with one thread as a
    node's worker (another count sums in another order: not bit-equal)."""
    whole = TrainSpec.model_validate({**spec.model_dump(), "start": 0, "steps": total})
    x, y, _, _ = read_dataset(DATA, whole)
    with torch_threads(1):
        return train_steps(whole, None, x, y)[-1]


def test_a_model_trained_on_the_network_is_verified_registered_and_served(
    net: Network, tmp_path: Path
) -> None:
    # Prepare
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    events: list[Progress | Failover] = []
    store = ModelStore(tmp_path / "models")

    # Execute
    try:
        model = client.train(JOB, DATA, on_event=events.append, store=store)
        served = model.infer(read_dataset(DATA, model.spec)[2][:50])
        files = model.save(tmp_path / "out")
    finally:
        client.close()

    # Assert: trained as the same run here, every segment paid
    progress = [e for e in events if isinstance(e, Progress)]
    total = 3 * (1400 // 32)
    assert progress[-1].step == total and model.run.steps == total
    assert progress[-1].metrics["val_accuracy"] > 0.8
    assert [round(e["epoch"]) for e in model.epochs] == [1, 2, 3]
    np.testing.assert_array_equal(model.state, local_run(model.spec, total))
    assert sum(model.run.paid.values()) == progress[-1].amount > 0
    # verified by proof-of-learning, the outcome and the model on chain
    assert model.verification is not None and model.verified
    assert model.verification.checked == 16 and model.verification.failed == ()
    registry = net.ledger.client("models", ModelRegistryClient)
    record = registry.model(bytes.fromhex(model.model_hash))
    assert record is not None and record.training is not None
    assert record.training.outcome is TrainingOutcome.PASSED
    assert record.checkpoints_root.hex() == model.checkpoints_root[2:]
    assert record.data_hash.hex() == model.spec.data
    assert record.trainer in model.run.segments
    # the ONNX export predicts as the weights do, here and on the network
    import torch

    from idlegrid.workloads._kind_train import _network

    x_val = read_dataset(DATA, model.spec)[2]
    with torch.no_grad():
        want = _network(model.spec, model.state).eval()(torch.from_numpy(x_val)).numpy()
    got = OnnxRunner().run(model.onnx, {"x": x_val})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(served, want[:50], rtol=1e-4, atol=1e-5)
    assert store.get(model.model_hash) == model.onnx
    from safetensors.numpy import load_file

    weights = load_file(str(files["weights"]))
    assert set(weights) == set(model.weights) and weights["0.weight"].shape == (32, 64)


def test_training_resumes_elsewhere_after_its_provider_is_killed(net: Network) -> None:
    # Prepare
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    by_address = {node.address: node for node in net.nodes}
    killed: list[str] = []

    def kill_after_first(event: Progress | Failover) -> None:
        if isinstance(event, Progress) and not killed:
            killed.append(event.provider)
            net.kill(by_address[event.provider])

    # Execute
    try:
        model = client.train(JOB, DATA, on_event=kill_after_first)
    finally:
        client.close()
        for address in killed:
            net.restart(by_address[address])

    # Assert: the killed provider was paid for its part; the rest ran elsewhere; the
    # final weights are an uninterrupted run's. The events reach the callback from a
    # queue while the run goes on, so on a loaded machine the provider may finish its
    # second segment before the kill lands (CI has seen it do so).
    total = 3 * (1400 // 32)
    assert [f.provider for f in model.run.failovers] == killed
    done = model.run.segments[killed[0]]
    assert done in (1, 2)
    assert sum(model.run.segments.values()) == 3 and len(model.run.paid) == 2
    np.testing.assert_array_equal(model.state, local_run(model.spec, total))
    # verified, but for intervals whose states died with the killed provider (inside
    # its segments of 43 steps: unfetchable, so unchecked rather than failed)
    assert model.verified and model.disputes == []
    assert all(i < 43 * done for i in model.unavailable)


def test_a_provider_that_fabricates_intervals_is_caught_disputed_and_slashed(
    net: Network,
) -> None:
    # Prepare: node 3 alone serves training, and skips the steps of 30 % of intervals
    serve_train(net, cheat=["--cheat-rate", "0.3", "--cheat-mode", "skip-steps"], only=3)
    cheater = net.nodes[2].address
    stake = net.ledger.registry.provider(cheater).stake
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)

    # Execute
    try:
        model = client.train(JOB, DATA)
    finally:
        client.close()

    # Assert: the replay found fabricated intervals; the committee agreed; slashed
    report = model.verification
    assert report is not None and not report.ok and report.failed
    assert [d.outcome for d in model.disputes] == ["provider_wrong"]
    assert net.ledger.registry.provider(cheater).stake < stake
    registry = net.ledger.client("models", ModelRegistryClient)
    training = registry.training(bytes.fromhex(model.run_id[2:]))
    assert training is not None and training.outcome is TrainingOutcome.FAILED
    disputes = net.ledger.client("disputes", DisputeClient)
    assert disputes.address  # the dispute contract holds nothing once resolved:
    assert net.ledger.token.balance_of(disputes.address) == 0


@pytest.mark.parametrize(
    ("job", "match"),
    [
        ({**JOB, "model": {**MLP, "family": "resnet"}}, "model"),
        ({**JOB, "model": {**MLP, "inputs": 63}}, "x must be"),
        ({**JOB, "model": {**MLP, "inputs": 65_536, "hidden": [4096, 4096]}}, "parameters"),
        ({**JOB, "epochs": None}, "exactly one of epochs"),
        ({**JOB, "code": "import os"}, "code"),
        ({**JOB, "data_hash": "ab" * 32}, "data hash"),
        ({**JOB, "batch": 5000}, "batch"),
    ],
)
def test_bad_jobs_are_refused_before_any_work(
    net: Network, job: dict[str, Any], match: str
) -> None:
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    try:
        channels = len(client.channels())
        with pytest.raises(InvalidInput, match=match):
            client.train(job, DATA)
        assert len(client.channels()) == channels  # nothing opened, nothing paid
    finally:
        client.close()
