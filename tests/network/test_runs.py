"""Node-driven runs on real nodes (``POST /v1/runs``): the node runs an ``sgd`` run's
segments itself, the client follows its server-sent events and vouchers each segment;
the node runs no further ahead than one unvouchered segment; cancel; 404 and 403; a
SIGKILL of the run's provider mid-run, resumed elsewhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from idlegrid.client import Client, Failover, Progress
from idlegrid.client._session import ClientChannel
from idlegrid.devnet import PROVIDER_PRICE
from idlegrid.protocol import Account
from idlegrid.workloads import flops_per_step, sgd_dataset

from .conftest import DEMO_CLIENT, STRANGER, Network, Node, put_blob, send
from .test_failover import paid_only_for_what_was_received
from .test_long_jobs import BATCH, OPTIONS, SEGMENT_AMOUNT, SEGMENT_STEPS, dataset, reference

SEGMENTS = 8  # about 5 s
KILL_AT = 3
WAIT_S = 120.0  # the most a test waits for the node to reach a state


def test_node_driven_run_is_followed_paid_as_it_goes_and_resumed_after_a_sigkill(
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
        run = client.start("sgd", node_driven=True, x=x, y=y, steps=steps, **OPTIONS)
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
    assert [p.amount for p in progress] == [(i + 1) * SEGMENT_AMOUNT for i in range(SEGMENTS)]
    assert progress[-1].metrics["loss"] < progress[0].metrics["loss"]
    assert len(failovers) == 1 and failovers[0].provider == killed[0]
    assert result.steps == steps and not result.cancelled
    # the node runs on while the events wait for this loop, so on a loaded machine it
    # may finish one more segment before the kill lands
    assert result.segments[killed[0]] in (KILL_AT, KILL_AT + 1)
    assert result.paid == {a: n * SEGMENT_AMOUNT for a, n in result.segments.items()}
    assert run.plan.workload.close_enough(result.output, reference(x, y, steps))
    paid_only_for_what_was_received(net, client)
    for address, amount in result.paid.items():
        vouchered = sum(ch.amount for ch in client.channels() if ch.terms.provider == address)
        assert vouchered == amount


def _open(net: Network, node: Node, client: Account, deposit: int) -> ClientChannel:
    market = net.ledger.market
    net.ledger.token.approve(market.address, deposit, sender=client)
    expiry = net.ledger.backend.next_timestamp() + 3600
    terms, _ = market.open_channel(node.address, deposit, expiry, sender=client)
    return ClientChannel(terms, deposit=deposit, expiry=expiry)


def _events(net: Network, node: Node, run_id: str, account: Account) -> list[tuple[str, Any]]:
    sent = send(net, node, "GET", f"/v1/runs/{run_id}/events", account=account)
    assert sent.status == 200, sent.response.text
    assert sent.response.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in sent.response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def _wait_for_jobs(net: Network, node: Node, kind: str, count: int) -> None:
    """Until the node's journal has ``count`` finished jobs of ``kind`` (its status)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        sent = send(net, node, "GET", "/v1/status", account=None)
        assert sent.status == 200, sent.response.text
        jobs = sent.response.json()["jobs"]
        if sum(j["kind"] == kind and j["outcome"] != "running" for j in jobs) >= count:
            return
        assert time.monotonic() < deadline, f"fewer than {count} {kind} jobs after {WAIT_S}s"
        time.sleep(0.1)


def test_node_runs_no_further_than_the_vouchers_cancel_404_and_403(
    make_network: Callable[..., Network],
) -> None:
    # Prepare
    net = make_network(providers=1)
    node = net.nodes[0]
    owner, stranger = net.account(DEMO_CLIENT), net.account(STRANGER)
    x, y = dataset()
    data = put_blob(net, node, sgd_dataset(x, y), account=owner)
    units = SEGMENT_STEPS * flops_per_step(BATCH, x.shape[1], int(y.max()) + 1)
    channel = _open(net, node, owner, 10 * units * PROVIDER_PRICE)
    body = {
        "kind": "sgd",
        "channel": channel.terms_json(),
        "unit_price": PROVIDER_PRICE,
        "max_units": units,
        "total_steps": 6 * SEGMENT_STEPS,
        "data": data,
        "features": x.shape[1],
        "classes": int(y.max()) + 1,
        "start": 0,
        "steps": SEGMENT_STEPS,
        "batch": BATCH,
        "lr": 0.05,
        "seed": 7,
    }

    # Execute
    started = send(net, node, "POST", "/v1/runs", json.dumps(body).encode(), account=owner)
    run_id = started.response.json()["run_id"]
    _wait_for_jobs(net, node, "sgd", 2)  # the free segment and the one run ahead
    time.sleep(1)  # time for a third, were it not waiting for a voucher (none comes)
    unknown = send(net, node, "GET", "/v1/runs/0x" + "00" * 16 + "/events", account=owner)
    foreign = send(net, node, "GET", f"/v1/runs/{run_id}/events", account=stranger)
    foreign_cancel = send(net, node, "POST", f"/v1/runs/{run_id}/cancel", account=stranger)
    cancel = send(net, node, "POST", f"/v1/runs/{run_id}/cancel", account=owner)
    first = _events(net, node, run_id, owner)
    again = _events(net, node, run_id, owner)  # a client that reconnects reads them all

    # Assert
    assert started.status == 202, started.response.text
    assert (unknown.status, foreign.status, foreign_cancel.status) == (404, 403, 403)
    assert cancel.status == 200
    assert [e for e, _ in first] == ["progress", "progress", "cancelled"]
    assert first == again
    progress = [d for e, d in first if e == "progress"]
    assert [p["step"] for p in progress] == [SEGMENT_STEPS, 2 * SEGMENT_STEPS]
    assert [p["amount"] for p in progress] == [SEGMENT_AMOUNT, 2 * SEGMENT_AMOUNT]
    assert [p["result"]["seq"] for p in progress] == [1, 2]
    assert all(p["result"]["status"] == "ok" for p in progress)
    assert progress[0]["checkpoint"] != progress[1]["checkpoint"]
    assert [p["units"] for p in progress] == [units, 2 * units]
