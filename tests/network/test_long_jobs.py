"""Long-running jobs on real nodes: an ``sgd`` run followed segment by segment, paid as it
goes, resumed elsewhere after a SIGKILL of its provider, and cancelled.

Each test has a devnet of its own (the first kills a node). The run is deterministic,
so its result is checked against the same steps run here, uninterrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from idlegrid.client import Client, Failover, Progress
from idlegrid.devnet import PROVIDER_PRICE
from idlegrid.workloads import flops_per_step, sgd_steps

from .conftest import DEMO_CLIENT, Network
from .test_failover import paid_only_for_what_was_received, wait_earned

FEATURES, CLASSES, BATCH = 4, 3, 8
SEGMENT_STEPS = 12_000  # about half a second of a worker
SEGMENTS = 12  # about 6 s of work in all
KILL_AT = 4  # segments done when the run's provider is killed
OPTIONS: dict[str, Any] = {"segment_steps": SEGMENT_STEPS, "batch": BATCH, "lr": 0.05, "seed": 7}


def dataset(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(CLASSES, FEATURES)) * 2
    y = rng.integers(0, CLASSES, n)
    return centers[y] + rng.normal(size=(n, FEATURES)), y


def reference(x: np.ndarray, y: np.ndarray, steps: int) -> np.ndarray:
    w = np.zeros((FEATURES + 1, CLASSES))
    return sgd_steps(w, x, y, start=0, steps=steps, batch=BATCH, lr=0.05, seed=7)


SEGMENT_AMOUNT = SEGMENT_STEPS * flops_per_step(BATCH, FEATURES, CLASSES) * PROVIDER_PRICE


def test_long_run_survives_a_killed_provider_and_pays_each_for_its_part(
    make_network: Callable[..., Network],
) -> None:
    # Prepare
    net = make_network()
    x, y = dataset()
    steps = SEGMENTS * SEGMENT_STEPS
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    events: list[Progress | Failover] = []
    killed: list[str] = []
    by_address = {node.address: node for node in net.nodes}

    # Execute
    try:
        run = client.start("sgd", x=x, y=y, steps=steps, **OPTIONS)
        for event in run.events():
            events.append(event)
            if isinstance(event, Progress) and event.step == KILL_AT * SEGMENT_STEPS:
                killed.append(event.provider)
                net.kill(by_address[event.provider])
        result = run.result()
    finally:
        client.close()

    # Assert
    progress = [e for e in events if isinstance(e, Progress)]
    failovers = [e for e in events if isinstance(e, Failover)]
    assert [p.step for p in progress] == [(i + 1) * SEGMENT_STEPS for i in range(SEGMENTS)]
    assert progress[-1].metrics["loss"] < progress[0].metrics["loss"]
    assert [p.amount for p in progress] == [(i + 1) * SEGMENT_AMOUNT for i in range(SEGMENTS)]
    # the run goes on while the events wait for this loop, so on a loaded machine the
    # killed provider may finish one more segment before the kill lands
    done = result.segments[killed[0]]
    assert done in (KILL_AT, KILL_AT + 1)
    assert len(failovers) == 1 and failovers[0].provider == killed[0]
    assert failovers[0].step == done * SEGMENT_STEPS
    assert all(p.provider != killed[0] for p in progress[done:])
    assert result.steps == steps and not result.cancelled
    assert sum(result.segments.values()) == SEGMENTS
    assert result.paid == {a: n * SEGMENT_AMOUNT for a, n in result.segments.items()}
    assert run.plan.workload.close_enough(result.output, reference(x, y, steps))
    paid_only_for_what_was_received(net, client)
    for address, amount in result.paid.items():
        vouchered = sum(ch.amount for ch in client.channels() if ch.terms.provider == address)
        assert vouchered == amount
        if address != killed[0]:  # the survivors redeem as the client closes its channels
            assert wait_earned(net, address, amount) == amount


def test_cancelled_run_stops_after_its_segment_and_resumes_on_a_node_giving_no_credit(
    make_network: Callable[..., Network],
) -> None:
    # Prepare
    net = make_network(providers=1)
    # a node that starts no segment while the one before is unvouchered: the client pays
    # as it goes, so it never meets a 402
    net.replace(net.nodes[0], [*net.nodes[0].argv, "--credit-jobs", "1"])
    x, y = dataset()
    steps = 6 * SEGMENT_STEPS
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)

    # Execute
    try:
        run = client.start("sgd", x=x, y=y, steps=steps, **OPTIONS)
        for event in run.events():
            if isinstance(event, Progress) and event.step == 2 * SEGMENT_STEPS:
                run.cancel()
        cancelled = run.result()
        assert run.checkpoint is not None
        resumed = client.run_long(
            "sgd", x=x, y=y, steps=steps, resume_from=run.checkpoint, **OPTIONS
        )
    finally:
        client.close()

    # Assert
    assert cancelled.cancelled and cancelled.steps in (2 * SEGMENT_STEPS, 3 * SEGMENT_STEPS)
    assert sum(cancelled.paid.values()) == cancelled.steps // SEGMENT_STEPS * SEGMENT_AMOUNT
    assert not resumed.cancelled and resumed.steps == steps
    assert sum(resumed.paid.values()) == (steps - cancelled.steps) // SEGMENT_STEPS * SEGMENT_AMOUNT
    assert run.plan.workload.close_enough(resumed.output, reference(x, y, steps))
    paid_only_for_what_was_received(net, client)
