"""What an operator sees of a real node on loopback: its JSON-lines logs, where every record
of a job names that job and its channel, and its status (``GET /v1/status``, ``idlegrid
node status``), which says what its journal and the chain say.

One devnet for the module, with one provider restarted as an operator would start it:
``idlegrid node start ... --log-json --log-level debug``. Two clients run jobs on it at
once, from two threads, then hand over their last vouchers.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from idlegrid._process import spawn
from idlegrid.chain import TOKEN, free_port
from idlegrid.cli import app
from idlegrid.devnet import wait_for_node
from idlegrid.protocol import NodeStatus

from .conftest import (
    DEMO_CLIENT,
    JOB_CLIENT,
    Digits,
    JobChannel,
    Network,
    Node,
    put_blob,
    send,
    start_network,
)

JOBS = 4  # per client
DEPOSIT = 10 * TOKEN
SETTLE_TIMEOUT = 60.0


@dataclass
class Operated:
    """The devnet, its node (logging JSON lines to ``log``), and the jobs run on it."""

    net: Network
    node: Node
    log: Path
    channels: dict[str, JobChannel]  # each job id sent, and the channel it was paid on

    def journal(self) -> sqlite3.Connection:
        """The node's journal, read-only (the node keeps writing it)."""
        path = self.node.directory / ".idlegrid" / f"node-{self.node.index}" / "journal.sqlite"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


@pytest.fixture(scope="module")
def operated(tmp_path_factory: pytest.TempPathFactory, digits: Digits) -> Iterator[Operated]:
    net = start_network(tmp_path_factory.mktemp("devnet"), providers=1)
    try:
        node = net.nodes[0]
        net.kill(node)
        log = net.directory / "node-json.log"
        argv = [*node.argv, "--log-json", "--log-level", "debug"]
        proc, ref = spawn(argv, log=log, role=f"provider-{node.index}", cwd=node.directory)
        net.restarted.append(ref)  # stopped, and checked gone, by net.close()
        wait_for_node(node.url, proc)
        channels = []
        for who in (JOB_CLIENT, DEMO_CLIENT):
            client = net.account(who)
            put_blob(net, node, digits.model, account=client)
            channels.append(JobChannel(net, node, client, digits, deposit=DEPOSIT))
        with ThreadPoolExecutor(max_workers=2) as pool:  # the two clients at once
            sent = list(pool.map(lambda ch: _run_jobs(net, node, ch), channels))
        by_job = {job_id: ch for ch, ids in zip(channels, sent, strict=True) for job_id in ids}
        yield Operated(net, node, log, by_job)
    finally:
        net.close()


def _run_jobs(net: Network, node: Node, ch: JobChannel) -> list[str]:
    """JOBS good jobs on ``ch``, then its last voucher handed over; the job ids."""
    ids = []
    for _ in range(JOBS):
        body = ch.request()
        ch.run(body)
        ids.append(body["job_id"])
    voucher = ch.channel.voucher_model()
    assert voucher is not None
    submission = {"channel": ch.channel.terms_json(), "voucher": voucher.model_dump()}
    sent = send(
        net, node, "POST", "/v1/vouchers", json.dumps(submission).encode(), account=ch.client
    )
    assert sent.status == 200, sent.response.text
    return ids


def _paid(ch: JobChannel) -> int:
    """What the client's latest voucher on ``ch`` pays."""
    assert ch.channel.voucher is not None
    return ch.channel.voucher[0].amount


# -- logs ------------------------------------------------------------------------------
def test_every_log_line_is_json_and_every_record_of_a_job_names_it_and_its_channel(
    operated: Operated,
) -> None:
    # Execute
    lines = operated.log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line, or this fails

    # Assert: the shape of every line
    assert records
    for r in records:
        assert {"ts", "level", "logger", "message"} <= set(r)
        assert datetime.fromisoformat(r["ts"]).utcoffset() == timedelta(0)
    # Assert: each job's records name it and the channel that paid it, never another's
    channel = {job_id: "0x" + ch.terms.id.hex() for job_id, ch in operated.channels.items()}
    of_jobs = [r for r in records if "job_id" in r]
    for r in of_jobs:
        assert r["job_id"] in channel, r  # only the jobs the clients sent
        assert r["channel"] == channel[r["job_id"]], r
    messages: dict[str, list[str]] = {job_id: [] for job_id in channel}
    for r in of_jobs:
        messages[r["job_id"]].append(r["message"])
    for job_id, said in messages.items():
        assert len(said) == 2 and said[0].startswith("job started: onnx"), (job_id, said)
        assert said[1].startswith("job ok:"), (job_id, said)
    done = [r for r in of_jobs if r["message"].startswith("job ok")]
    assert all(r["outcome"] == "ok" and r["units"] > 0 and r["amount"] > 0 for r in done)
    # Assert: records outside a job carry no job keys (not a made-up value)
    others = [r for r in records if "job_id" not in r]
    assert any("serving" in r["message"] for r in others)
    assert not any(r["message"].startswith("job ") for r in others)
    assert all("channel" not in r for r in others)


# -- status ----------------------------------------------------------------------------
def _settled(operated: Operated) -> dict[str, Any]:
    """The node's status once the chain has paid every voucher and the node has seen it."""
    net, node = operated.net, operated.node
    market = net.ledger.market
    channels = set(operated.channels.values())
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        paid = all(market.channel(ch.terms).paid == _paid(ch) for ch in channels)
        status = net.http.get(f"{node.url}/v1/status")
        assert status.status_code == 200, status.text
        body: dict[str, Any] = status.json()
        earned = (body["earnings"] or {}).get("earned")
        if paid and body["vouchers"]["count"] == 0 and earned == market.record(node.address).earned:
            return body
        assert time.monotonic() < deadline, f"not settled: {body}"
        time.sleep(0.25)


def test_the_status_route_says_what_the_journal_and_the_chain_say(operated: Operated) -> None:
    # Execute
    body = _settled(operated)
    status = NodeStatus.model_validate(body)

    # Assert: earnings are the market's record, all of it from these channels
    net, node = operated.net, operated.node
    channels = {"0x" + ch.terms.id.hex(): ch for ch in operated.channels.values()}
    record = net.ledger.market.record(node.address)
    assert status.address == node.address
    assert status.earnings is not None
    assert (status.earnings.earned, status.earnings.jobs, status.earnings.units) == (
        record.earned,
        record.jobs,
        record.units,
    )
    assert record.earned == sum(_paid(ch) for ch in channels.values())
    assert record.jobs == 2 * JOBS
    # Assert: what the journal holds
    with operated.journal() as db:
        vouchers = {
            "0x" + bytes(cid).hex(): (int(amount), int(redeemed))
            for cid, amount, redeemed in db.execute(
                "SELECT channel, amount, redeemed_amount FROM vouchers"
            )
        }
        jobs = {
            "0x" + bytes(jid).hex(): (kind, status_, error, units, int(amount), created)
            for jid, kind, status_, error, units, amount, created in db.execute(
                "SELECT job_id, kind, status, error, units, amount, created FROM jobs"
            )
        }
        delivered = {
            "0x" + bytes(cid).hex(): int(total)
            for cid, total in db.execute(
                "SELECT channel, SUM(CAST(amount AS INTEGER)) FROM jobs WHERE status='done'"
                " GROUP BY channel"
            )
        }
    assert (status.vouchers.count, status.vouchers.tokens) == (0, 0)
    assert all(amount == redeemed for amount, redeemed in vouchers.values())
    assert status.open_channels == len(status.channels) == 2
    for c in status.channels:
        ch = channels[c.channel]
        assert (c.client, c.deposit, c.expiry) == (ch.client.address, DEPOSIT, ch.terms.expiry)
        assert c.paid == vouchers[c.channel][0] == _paid(ch)
        assert c.delivered == delivered[c.channel] == c.paid  # every job vouchered
        assert c.remaining == DEPOSIT - c.paid
    assert {j.job_id for j in status.jobs} == set(operated.channels) == set(jobs)
    for j in status.jobs:
        kind, status_, error, units, amount, created = jobs[j.job_id]
        assert (j.kind, j.outcome, j.units, j.amount, j.created) == (
            kind,
            "ok",
            units,
            amount,
            created,
        )
        assert (status_, error) == ("done", None)
    created = [j.created for j in status.jobs]
    assert created == sorted(created, reverse=True)  # the latest first


def test_node_status_prints_the_node_s_state(operated: Operated) -> None:
    # Prepare
    _settled(operated)
    runner = CliRunner()
    url = operated.node.url

    # Execute
    table = runner.invoke(app, ["node", "status", "--url", url], env={"COLUMNS": "200"})
    as_json = runner.invoke(app, ["node", "status", "--url", url, "--json"])

    # Assert
    assert table.exit_code == 0, table.output
    assert operated.node.address in table.stdout
    assert "unredeemed vouchers: 0, 0.0000 tokens" in table.stdout
    assert "Open channels: 2" in table.stdout
    for job_id in operated.channels:
        assert job_id[:10] + "…" in table.stdout
    for ch in set(operated.channels.values()):
        assert ch.client.address in table.stdout
    assert as_json.exit_code == 0, as_json.output
    printed = NodeStatus.model_validate(json.loads(as_json.stdout))
    assert printed.address == operated.node.address
    assert {j.job_id for j in printed.jobs} == set(operated.channels)


def test_node_status_of_an_unreachable_node_is_one_line_and_exit_1() -> None:
    # Prepare: a port nothing listens on
    url = f"http://127.0.0.1:{free_port()}"

    # Execute
    result = CliRunner().invoke(app, ["node", "status", "--url", url, "--timeout", "5"])

    # Assert
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the node at {url}")
    assert "Traceback" not in result.output
