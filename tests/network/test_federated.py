"""Federated runs over real edge node processes on loopback (anvil devnet).

One federation of four edge nodes, each holding one Dirichlet partition of the
digits data, serves the module; every byte each edge node sends is captured. The
test that kills a node runs last.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from idlegrid import ContractReverted, ProviderFailed
from idlegrid.chain import ModelRegistryClient, find_anvil
from idlegrid.client import Client
from idlegrid.edge import read_capture
from idlegrid.edge._federation import Federation, start_federation
from idlegrid.fl import load_spec
from idlegrid.fl._coordinator import Coordinator
from idlegrid.fl._dp import PrivacyAccountant
from idlegrid.fl._partition import FederatedData, digits_federated

from ..conftest import fresh_cache

pytestmark = pytest.mark.anvil

EDGES = 4
MODEL = {"family": "mlp", "inputs": 64, "hidden": [32], "classes": 10}


@pytest.fixture(scope="module")
def data() -> FederatedData:
    return digits_federated(EDGES, 0.5, seed=0)


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, data: FederatedData
) -> Iterator[Federation]:
    if find_anvil() is None:
        pytest.fail("anvil is not installed: run `npm install` in the idlegrid checkout")
    parts = [(data.x_train[p], data.y_train[p]) for p in data.parts]
    fed = start_federation(tmp_path_factory.mktemp("federation"), parts, capture=True)
    try:
        yield fed
    finally:
        fed.close()


def _spec(**over: Any) -> Any:
    return load_spec(_spec_raw(**over))


def _spec_raw(**over: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "dataset": "digits",
        "rounds": 3,
        "clients_per_round": EDGES,
        "min_clients": 2,
        "deadline_s": 90,
        "local": {"epochs": 1, "batch": 32, "lr": 0.1},
        "seed": 3,
        **over,
    }


def _cli_json(*args: str) -> Any:
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "idlegrid.cli", *args, "--json"],
        capture_output=True, text=True, env=dict(os.environ), timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _run(fed: Federation, data: FederatedData, spec: Any, **kw: Any) -> Any:
    client = Client(fed.info.accounts[fed.sponsor], fed.ledger(), timeout_s=120)
    with client:
        return client.federate(spec, (data.x_test, data.y_test), **kw)


def test_accuracy_improves_round_over_round_and_each_round_is_in_the_lineage(
    federation: Federation, data: FederatedData
) -> None:
    # Execute
    result = _run(federation, data, _spec())

    # Assert: three rounds, every edge node took part, accuracy went up
    accuracies = [r.accuracy for r in result.rounds]
    assert len(accuracies) == 3, result.stopped
    assert accuracies[-1] > accuracies[0] + 0.1, accuracies
    edges = sorted(e.address for e in federation.edges)
    for r in result.rounds:
        assert sorted(r.participants) == edges
        assert r.dropped == [] and r.rejected == {}
        # each participant's contribution to the round, estimated from its update:
        # together they took loss off the model
        assert sorted(r.contributions) == edges
        assert all(np.isfinite(v) for v in r.contributions.values())
        assert sum(r.contributions.values()) > 0
    # the sponsor paid the edge nodes for their training, through its channels
    assert result.rounds[-1].paid > result.rounds[0].paid > 0
    # ... and the edge nodes redeem their vouchers: their work is on chain, paid
    ledger = federation.ledger()
    deadline = time.monotonic() + 60
    while not all(ledger.market.record(e.address).earned > 0 for e in federation.edges):
        assert time.monotonic() < deadline, "edge nodes did not redeem their vouchers"
        time.sleep(0.5)
    assert all(ledger.market.record(e.address).jobs >= 3 for e in federation.edges)
    # every round's model is registered, with its participants, its parent the round before
    models = ledger.client("models", ModelRegistryClient)
    parent = bytes(32)
    for rnd, r in enumerate(result.rounds, start=1):
        model = bytes.fromhex(r.model)
        record = models.model(model)
        assert record is not None and record.parent == parent
        assert sorted(models.participants(model)) == edges
        assert models.round_model(bytes.fromhex(result.run), rnd) == model
        parent = model


def test_a_run_pays_its_contributors_on_chain_by_their_contributions(
    federation: Federation, data: FederatedData, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    from idlegrid.chain import TOKEN, RewardPoolClient, RewardTree
    from idlegrid.fl._contrib import split_reward

    # Prepare
    ledger = federation.ledger()
    pool = ledger.client("rewards", RewardPoolClient)
    sponsor = federation.info.accounts[federation.sponsor].address
    before = {e.address: ledger.token.balance_of(e.address) for e in federation.edges}
    paid_before = ledger.token.balance_of(sponsor)

    # Execute: a run with 3 tokens for its contributors; after the challenge window the
    # first edge node claims its own from the command line (the postings are read from
    # the chain), the others' claims are sent by anyone (here the sponsor's account)
    spec = _spec(rounds=2, seed=5, payout="round")
    result = _run(federation, data, spec, rewards=3 * TOKEN, output=tmp_path / "run")
    run = bytes.fromhex(result.run)
    ledger.backend.advance_time(pool.challenge_window() + 1)
    edge = federation.edges[0]
    cli = subprocess.run(
        [sys.executable, "-m", "idlegrid.cli", "rewards", "--claim",
         "--network", str(federation.network),
         "--account", str(edge.index), "--json"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300, check=False,
    )  # fmt: skip
    payer = federation.info.accounts[federation.sponsor]
    for rnd, r in enumerate(result.rounds, start=1):
        tree = RewardTree(run, rnd, r.rewards)
        for who in tree.contributors:
            if not pool.claimed(run, rnd, who):
                pool.claim_from(tree, who, sender=payer)

    # Assert: each round's part split by positive contributions, posted for the round's
    # model; every contributor got exactly what was posted for it; the rest stays in
    # the pool for the sponsor, who paid the budget
    got = {e.address: ledger.token.balance_of(e.address) - before[e.address]
           for e in federation.edges}  # fmt: skip
    owed: dict[str, int] = {}
    for rnd, r in enumerate(result.rounds, start=1):
        positive = {a: v for a, v in r.contributions.items() if v > 0}
        assert set(r.rewards) <= set(positive) and r.rewards
        assert r.rewards == split_reward(3 * TOKEN // 2, r.contributions)
        assert 3 * TOKEN // 2 - len(positive) <= sum(r.rewards.values()) <= 3 * TOKEN // 2
        for a, amount in r.rewards.items():
            owed[a] = owed.get(a, 0) + amount
        posting = pool.posting(run, rnd)
        assert posting.model == bytes.fromhex(r.model) and posting.claimed == posting.total
    assert got == {a: owed.get(a, 0) for a in got}
    assert cli.returncode == 0, cli.stderr[-3000:]
    shown = json.loads(cli.stdout)
    mine = sum(r.rewards.get(edge.address, 0) for r in result.rounds)
    assert sum(c["amount"] for c in shown["claimed_now"]) == mine
    assert shown["data_contributor"]["claimed"] == mine and shown["address"] == edge.address
    assert shown["provider"]["jobs"] >= 2  # it was paid for its training too
    assert pool.pool(run).budget == 3 * TOKEN - sum(owed.values())
    assert paid_before - ledger.token.balance_of(sponsor) >= 3 * TOKEN


@contextlib.contextmanager
def _greedy_postings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A cheating coordinator, inside the block: each posting pays the round's whole
    part to its first contributor (its published inputs say otherwise)."""
    from idlegrid.chain import RewardPoolClient, RewardTree

    honest_post = RewardPoolClient.post

    def greedy_post(self: Any, tree: RewardTree, model: bytes, **kw: Any) -> Any:
        first = tree.contributors[0]
        return honest_post(self, RewardTree(tree.run, tree.round, {first: tree.total}), model, **kw)

    with monkeypatch.context() as m:
        m.setattr(RewardPoolClient, "post", greedy_post)
        yield


def _challenge_as(federation: Federation, address: str, inputs_file: Path) -> Any:
    """``idlegrid posting challenge INPUTS`` from edge node ``address``'s account: the
    ruling, as JSON."""
    edge = next(e for e in federation.edges if e.address == address)
    return _cli_json(
        "posting", "challenge", str(inputs_file), "--network", str(federation.network),
        "--account", str(edge.index), "--timeout", "240",
    )  # fmt: skip


def test_a_wrong_posting_is_challenged_by_a_contributor_voided_and_corrected(
    federation: Federation, data: FederatedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coordinator that posts the whole round's part to one client (its published
    inputs say otherwise): an underpaid edge node challenges the posting with those
    inputs; the referee seats of the other edge processes recompute the contributions
    and vote; the posting is void, and posted again from the inputs it is right."""
    from idlegrid.chain import TOKEN, Posted, RewardPoolClient, RewardTree
    from idlegrid.fl import RoundInputs, post_contributions

    ledger = federation.ledger()
    pool = ledger.client("rewards", RewardPoolClient)

    # Prepare: one round, its posting skewed, its inputs published as they were
    with _greedy_postings(monkeypatch):
        result = _run(federation, data, _spec(rounds=1, seed=7, payout="round"), rewards=TOKEN,
                      output=tmp_path / "run")  # fmt: skip
    run, report = bytes.fromhex(result.run), result.rounds[0]
    inputs_file = tmp_path / "run" / "round-0001-inputs.npz"
    inputs = RoundInputs.from_bytes(inputs_file.read_bytes())
    posted: Posted = pool.postings_of(run)[1]
    fair = inputs.amounts()
    underpaid = next(a for a in fair if posted.amounts.get(a, 0) < fair[a])
    before = pool.pool(run).budget

    # Execute: the underpaid edge node's account challenges the posting (command line)
    ruling = _challenge_as(federation, underpaid, inputs_file)

    # Assert: found wrong by the committee (edge processes), void, the total back
    assert report.inputs_sha256 == inputs.sha256.hex() == posted.inputs.hex()
    assert posted.amounts != fair and inputs.check(posted.amounts) is not None
    assert ruling["outcome"] == "provider_wrong", ruling
    assert ruling["wrong_votes"] >= 2 and underpaid not in ruling["committee"]
    assert ruling["recomputed"] == fair
    assert pool.posting(run, 1).posted_at == 0
    assert pool.pool(run).budget == before + posted.total

    # Execute: the coordinator posts the round again from its inputs (command line), and
    # a second time, which the pool refuses (a round is posted once)
    corrected = _cli_json(
        "posting", "post", str(inputs_file), "--network", str(federation.network),
        "--account", str(federation.sponsor),
    )["amounts"]  # fmt: skip
    sponsor = Client(federation.info.accounts[federation.sponsor], ledger)
    with sponsor, pytest.raises(ContractReverted, match="round already posted"):
        post_contributions(sponsor, inputs)

    # Assert: the posting is now the recomputation, and pays the underpaid node
    again = pool.postings_of(run)[1]
    assert again.amounts == corrected == dict(RewardTree(run, 1, fair).amounts)
    assert inputs.check(again.amounts) is None
    ledger.backend.advance_time(pool.challenge_window() + 1)
    wallet = ledger.token.balance_of(underpaid)
    pool.claim_from(again.tree(), underpaid, sender=federation.info.accounts[federation.sponsor])
    assert ledger.token.balance_of(underpaid) == wallet + fair[underpaid]


def test_a_run_settled_at_its_end_pays_netted_contributions_and_a_wrong_settlement_is_voided(
    federation: Federation, data: FederatedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``payout: run``: no posting a round; one at the end, for the last round's model,
    the whole budget split by each client's contributions summed over the rounds, with
    every round's inputs published in one file. A greedy settlement is challenged with
    that file, voided by the committee and posted again from it; the underpaid claims."""
    from idlegrid.chain import TOKEN, RewardPoolClient, RewardTree
    from idlegrid.fl import RunInputs, read_round_inputs
    from idlegrid.fl._contrib import split_reward

    ledger = federation.ledger()
    pool = ledger.client("rewards", RewardPoolClient)

    # Prepare: two rounds paid once, the settlement skewed to one contributor
    with _greedy_postings(monkeypatch):
        result = _run(federation, data, _spec(rounds=2, seed=11),
                      rewards=2 * TOKEN, output=tmp_path / "run")  # fmt: skip
    run = bytes.fromhex(result.run)
    inputs_file = tmp_path / "run" / "run-inputs.npz"
    inputs = read_round_inputs(inputs_file.read_bytes())
    assert isinstance(inputs, RunInputs)
    postings = pool.postings_of(run)
    fair = inputs.amounts()
    netted: dict[str, float] = {}
    for r in result.rounds:  # each round's values as fractions of their absolute total
        scale = math.fsum(abs(v) for v in r.contributions.values())  # exactly, as paid
        for who, v in r.contributions.items():
            netted[who] = netted.get(who, 0.0) + v / scale

    # Assert: one posting, the last round's, for its model; the file is every round's
    # inputs and nets what the rounds reported
    assert set(postings) == {2} and all(not r.rewards for r in result.rounds)
    assert postings[2].model == bytes.fromhex(result.rounds[-1].model)
    assert [r.round for r in inputs.rounds] == [1, 2] and inputs.part == 2 * TOKEN
    assert fair == result.rewards == split_reward(2 * TOKEN, netted) and len(fair) >= 2
    assert result.rewards_inputs_sha256 == inputs.sha256.hex() == postings[2].inputs.hex()
    assert not (tmp_path / "run" / "round-0001-inputs.npz").exists()
    underpaid = next(a for a in fair if postings[2].amounts.get(a, 0) < fair[a])

    # Execute: the underpaid node challenges the settlement; then the coordinator posts
    # it again from the file (command line)
    ruling = _challenge_as(federation, underpaid, inputs_file)
    corrected = _cli_json(
        "posting", "post", str(inputs_file), "--network", str(federation.network),
        "--account", str(federation.sponsor),
    )["amounts"]  # fmt: skip
    ledger.backend.advance_time(pool.challenge_window() + 1)
    wallet = ledger.token.balance_of(underpaid)
    again = pool.postings_of(run)[2]
    pool.claim_from(again.tree(), underpaid, sender=federation.info.accounts[federation.sponsor])

    # Assert: voided by the committee, posted right, the underpaid paid its netted share
    assert ruling["outcome"] == "provider_wrong", ruling
    assert ruling["recomputed"] == fair and underpaid not in ruling["committee"]
    assert again.amounts == corrected == dict(RewardTree(run, 2, fair).amounts)
    assert ledger.token.balance_of(underpaid) == wallet + fair[underpaid]
    assert pool.pool(run).budget == 2 * TOKEN - sum(fair.values())


def test_a_run_that_fails_after_some_rounds_still_pays_for_them(
    federation: Federation, data: FederatedData, tmp_path: Path
) -> None:
    """``payout: run``: a run that dies with an error after its second round (here its
    caller's round callback fails) settles the rounds it trained before the error is
    raised, as a run that stops early does; its contributors claim as from any posting."""
    from idlegrid.chain import TOKEN, RewardPoolClient
    from idlegrid.fl import RunInputs, read_round_inputs

    pool = federation.ledger().client("rewards", RewardPoolClient)
    reports: list[Any] = []

    def fail_at_round_2(report: Any) -> None:
        reports.append(report)
        if report.round == 2:
            raise RuntimeError("the sponsor's dashboard fell over")

    # Execute
    with pytest.raises(RuntimeError, match="dashboard fell over"):
        _run(federation, data, _spec(rounds=4, seed=13), rewards=2 * TOKEN,
             output=tmp_path / "run", on_round=fail_at_round_2)  # fmt: skip

    # Assert: one posting, for the last round trained, paying its netted contributions
    inputs = read_round_inputs((tmp_path / "run" / "run-inputs.npz").read_bytes())
    assert isinstance(inputs, RunInputs) and [r.round for r in inputs.rounds] == [1, 2]
    posted = pool.posted(bytes.fromhex(reports[-1].model))
    assert posted is not None and posted.round == 2
    assert pool.posted(bytes.fromhex(reports[0].model)) is None
    assert (
        dict(posted.amounts) == inputs.amounts() and 0 < sum(posted.amounts.values()) <= 2 * TOKEN
    )
    assert posted.inputs == inputs.sha256


def test_a_settlement_too_large_to_hold_falls_back_to_posting_each_round(
    federation: Federation, data: FederatedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``payout: run`` with room for one held round: at the second, the held round is
    posted as ``payout: round`` posts it, and so is the second; nothing waits for the
    end, and nothing is paid twice."""
    from idlegrid.chain import TOKEN, RewardPoolClient
    from idlegrid.fl import RoundInputs
    from idlegrid.fl import _coordinator as coordinator

    pool = federation.ledger().client("rewards", RewardPoolClient)
    monkeypatch.setattr(coordinator, "MAX_RUN_ROUNDS", 1)

    # Execute
    result = _run(federation, data, _spec(rounds=2, seed=12, payout="run"), rewards=2 * TOKEN,
                  output=tmp_path / "run")  # fmt: skip

    # Assert: both rounds posted by their own inputs, no settlement
    run = bytes.fromhex(result.run)
    postings = pool.postings_of(run)
    assert set(postings) == {1, 2} and result.rewards == {}
    for rnd in (1, 2):
        inputs = RoundInputs.from_bytes(
            (tmp_path / "run" / f"round-{rnd:04d}-inputs.npz").read_bytes()
        )
        assert postings[rnd].amounts == inputs.amounts() and postings[rnd].inputs == inputs.sha256
    assert result.rounds[1].rewards == postings[2].amounts
    assert not (tmp_path / "run" / "run-inputs.npz").exists()
    assert pool.pool(run).budget == 2 * TOKEN - postings[1].total - postings[2].total


def test_secure_aggregation_gives_the_plain_run_s_models(
    federation: Federation, data: FederatedData
) -> None:
    # Execute: the same run, in the clear and under SecAgg+
    plain = _run(federation, data, _spec(rounds=2), register=False)
    secure = _run(federation, data, _spec(rounds=2, secagg=True), register=False)

    # Assert: the unmasked sum is the plain sum up to quantization
    for a, b in zip(plain.rounds, secure.rounds, strict=True):
        assert abs(a.accuracy - b.accuracy) <= 0.02
    assert np.abs(plain.params - secure.params).max() < 1e-3
    assert sorted(secure.rounds[-1].participants) == sorted(e.address for e in federation.edges)
    # the coordinator never sees a secure round's single updates: its contributions come
    # from the aggregates (every node in every round: the equal split of the mean gain)
    assert all(r.contributions for r in plain.rounds)
    for r in secure.rounds:
        assert sorted(r.contributions) == sorted(r.participants)
        assert max(r.contributions.values()) - min(r.contributions.values()) < 1e-9


def test_a_secure_run_pays_its_participants_by_the_aggregates(
    federation: Federation, data: FederatedData, tmp_path: Path
) -> None:
    """Under SecAgg+ the coordinator sees only each round's sum: the contributions come
    from the run's aggregates, here every node in every round, so the equal split; each
    round's part is posted on chain with the sha256 of its published inputs (the run's
    secure history: cohorts and models, no single update), which recompute it."""
    from idlegrid.chain import TOKEN, RewardPoolClient
    from idlegrid.fl import SecureRoundInputs, read_round_inputs

    result = _run(federation, data, _spec(rounds=2, secagg=True, seed=11), rewards=TOKEN,
                  output=tmp_path / "run")  # fmt: skip

    pool = federation.ledger().client("rewards", RewardPoolClient)
    posted = pool.postings_of(bytes.fromhex(result.run))
    for rnd, r in enumerate(result.rounds, start=1):
        assert sorted(r.rewards) == sorted(r.participants) == sorted(r.contributions)
        # equal up to the solver's float rounding (~1e-15 of the part)
        assert max(r.rewards.values()) - min(r.rewards.values()) <= TOKEN // 10**9
        assert TOKEN // 2 - len(r.rewards) <= sum(r.rewards.values()) <= TOKEN // 2
        blob = (tmp_path / "run" / f"round-{rnd:04d}-inputs.npz").read_bytes()
        inputs = read_round_inputs(blob)
        assert isinstance(inputs, SecureRoundInputs)
        assert inputs.round == rnd and len(inputs.steps) == rnd
        assert posted[rnd].amounts == r.rewards == inputs.amounts()
        assert posted[rnd].inputs == inputs.sha256 and r.inputs_sha256 == inputs.sha256.hex()
        assert inputs.check(posted[rnd].amounts) is None
        assert b"updates.npy" not in blob


def test_a_wrong_secure_posting_is_challenged_and_voided(
    federation: Federation, data: FederatedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secure run's coordinator that posts a round's whole part to one member of an
    equal cohort: an underpaid member challenges it with the published secure inputs;
    the referees (edge processes) refit the history's gains and vote it wrong."""
    from idlegrid.chain import TOKEN, RewardPoolClient
    from idlegrid.fl import SecureRoundInputs, read_round_inputs

    pool = federation.ledger().client("rewards", RewardPoolClient)

    # Prepare: two secure rounds, their postings skewed, their inputs published as they were
    with _greedy_postings(monkeypatch):
        result = _run(federation, data, _spec(rounds=2, secagg=True, seed=13), rewards=TOKEN,
                      output=tmp_path / "run")  # fmt: skip
    run = bytes.fromhex(result.run)
    inputs_file = tmp_path / "run" / "round-0002-inputs.npz"
    inputs = read_round_inputs(inputs_file.read_bytes())
    assert isinstance(inputs, SecureRoundInputs)
    posted = pool.postings_of(run)[2]
    fair = inputs.amounts()
    underpaid = next(a for a in fair if posted.amounts.get(a, 0) < fair[a])
    before = pool.pool(run).budget

    # Execute: the underpaid member challenges round 2's posting (command line)
    ruling = _challenge_as(federation, underpaid, inputs_file)

    # Assert: found wrong by the committee, void, its total back in the pool
    assert posted.inputs == inputs.sha256 and inputs.check(posted.amounts) is not None
    assert ruling["outcome"] == "provider_wrong", ruling
    assert ruling["wrong_votes"] >= 2 and underpaid not in ruling["committee"]
    assert ruling["recomputed"] == fair
    assert pool.posting(run, 2).posted_at == 0
    assert pool.pool(run).budget == before + posted.total


def test_an_edge_node_answers_a_round_s_unmask_only_to_the_client_who_paid_its_fit(
    federation: Federation, data: FederatedData
) -> None:
    # Prepare: a secure round run by the sponsor; a stranger with a signed request for
    # that round's unmask (well formed: only who asks is wrong)
    result = _run(federation, data, _spec(rounds=1, secagg=True), register=False)
    entry = {"index": 1, "pk1": "11" * 32, "pk2": "22" * 32, "address": "0x" + "33" * 20,
             "sig": "44" * 65}  # fmt: skip
    ask = {
        "stage": "unmask", "run": result.run, "round": 1, "dataset": "digits", "model": MODEL,
        "examples": 1,
        "secagg": {"index": 1, "roster": [entry, {**entry, "index": 2}], "threshold": 2,
                   "clip_range": 8.0, "target_range": 2**22, "mod_range": 2**32,
                   "survivors": [1, 2]},
    }  # fmt: skip
    stranger = Client(
        federation.info.accounts[federation.sponsor + 1], federation.ledger(), timeout_s=30
    )

    async def unmask(body: dict[str, Any]) -> tuple[int, bytes]:
        (edge,) = [c for c in await stranger._discover("fl", force=True)][:1]
        return await stranger._session(edge).call(
            "POST", "/v1/fl/unmask", json.dumps(body).encode()
        )

    # Execute
    with stranger:
        status, answer = stranger._run(unmask(ask))
        other_status, other = stranger._run(unmask({**ask, "run": "cd" * 32}))

    # Assert: refused with a reason before any work: 403 for the round run here, 404 for
    # a round that never ran here
    assert status == 403 and "paid this round's masked fit" in answer.decode()
    assert other_status == 404 and "no masked fit" in other.decode()


def test_dp_stops_when_the_budget_is_spent(federation: Federation, data: FederatedData) -> None:
    # Prepare: a budget between epsilon after 2 and after 3 rounds (all 4 sampled: q = 1)
    acc = PrivacyAccountant(1.5, 1.0, 1e-5, None)
    acc.spend()
    acc.spend()
    two, three = acc.epsilon(), acc.epsilon_after(1)
    budget = (two + three) / 2
    dp = {"clip": 1.0, "noise_multiplier": 1.5, "delta": 1e-5, "epsilon": budget}

    # Execute
    result = _run(federation, data, _spec(rounds=10, dp=dp), register=False)

    # Assert: two rounds, then the run stopped for the budget, within it
    assert len(result.rounds) == 2
    assert "privacy budget" in result.stopped
    assert result.rounds[-1].epsilon == pytest.approx(two)
    assert result.rounds[-1].epsilon <= budget


def test_no_raw_record_leaves_an_edge_node(federation: Federation) -> None:
    """Every byte each edge node sent (its HTTP answers, its chain requests), raw and
    with every base64 string in it decoded, holds no row of its data set and no 16-byte
    window of its data file (a compressed .npz) or of the records inside it (but a run
    of one byte value)."""
    for edge in federation.edges:
        assert edge.capture is not None and edge.capture.exists()
        sent = [data for _, data in read_capture(edge.capture)]
        assert sum(len(s) for s in sent) > 10_000  # it did answer jobs
        streams = list(sent)
        for chunk in sent:  # JSON bodies carry outputs as base64
            for token in re.findall(rb"[A-Za-z0-9+/]{24,}={0,2}", chunk):
                try:
                    streams.append(base64.b64decode(token + b"=" * (-len(token) % 4)))
                except ValueError:
                    continue
        haystack = b"\x00".join(streams)
        file = (edge.data / "digits.npz").read_bytes()
        with np.load(edge.data / "digits.npz") as z:
            records = z["x"].tobytes() + z["y"].tobytes()  # the file's records, inflated
        windows = {b[i : i + 16] for b in (file, records) for i in range(len(b) - 15)}
        seen = {haystack[i : i + 16] for i in range(len(haystack) - 15)}
        # a run of one byte value (16 zero bytes: every ABI-encoded chain request has
        # them, and so has a data file of pixels) carries no record
        common = {w for w in windows & seen if len(set(w)) > 1}
        assert not common, f"edge {edge.index} sent part of its data file: {sorted(common)[:3]}"
        with np.load(edge.data / "digits.npz") as z:
            rows = [r.tobytes() for r in z["x"]] + [r.astype(np.float64).tobytes() for r in z["x"]]
        assert not any(row in haystack for row in rows)


def test_a_member_that_fails_to_share_is_left_out_of_a_new_key_agreement(
    federation: Federation, data: FederatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: one node's share stage fails in round 1 (it drops after sending its keys)
    flaky = federation.edges[0]
    job = Coordinator._job
    asked: list[tuple[int, str, str]] = []

    async def failing(self: Coordinator, e: Any, fields: dict[str, Any]) -> Any:
        asked.append((fields["round"], fields["stage"], e.candidate.address))
        if (
            fields["round"] == 1
            and fields["stage"] == "share"
            and e.candidate.address == flaky.address
        ):
            raise ProviderFailed(f"{flaky.address}: connection reset (a test)")
        return await job(self, e, fields)

    monkeypatch.setattr(Coordinator, "_job", failing)

    # Execute
    result = _run(federation, data, _spec(rounds=2, secagg=True), register=False)

    # Assert: round 1 agreed keys again without it and went on with the others
    first = result.rounds[0]
    assert flaky.address in first.dropped and flaky.address not in first.participants
    assert len(first.participants) == EDGES - 1
    shares_round_1 = [a for r, stage, a in asked if r == 1 and stage == "share"]
    assert len(shares_round_1) == EDGES + EDGES - 1  # a second agreement, without it
    # keys were asked once, for both rounds (they are public and fresh per round)
    assert len([a for r, stage, a in asked if stage == "keys"]) == EDGES
    assert len(result.rounds) == 2


def test_a_member_whose_shares_are_garbage_is_refused_and_the_round_goes_on(
    federation: Federation, data: FederatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: one node answers its share stage with junk (a hostile or broken peer)
    liar = federation.edges[1]
    job = Coordinator._job

    async def lying(self: Coordinator, e: Any, fields: dict[str, Any]) -> Any:
        out = await job(self, e, fields)
        if fields["stage"] == "share" and e.candidate.address == liar.address:
            return np.frombuffer(b'{"1": "not hex", "2": 7}', dtype=np.uint8)[None, :]
        return out

    monkeypatch.setattr(Coordinator, "_job", lying)

    # Execute
    result = _run(federation, data, _spec(rounds=1, secagg=True), register=False)

    # Assert: refused with its reason, the others aggregated without it
    first = result.rounds[0]
    assert "do not parse" in first.rejected[liar.address]
    assert liar.address not in first.participants and len(first.participants) == EDGES - 1


def test_bad_updates_are_refused_with_a_reason_and_counted(
    federation: Federation, data: FederatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: two nodes' answers are spoiled after they arrive: one with NaN, one far
    # from the global model (a poisoning attempt)
    nan_node, huge_node = federation.edges[0], federation.edges[1]
    job = Coordinator._job

    async def spoiled(self: Coordinator, e: Any, fields: dict[str, Any]) -> Any:
        out = np.array(await job(self, e, fields))
        if e.candidate.address == nan_node.address:
            out[0, 5] = np.nan
        if e.candidate.address == huge_node.address:
            out[0, 2:] *= 1e6
        return out

    monkeypatch.setattr(Coordinator, "_job", spoiled)

    # Execute
    result = _run(federation, data, _spec(rounds=1), register=False)

    # Assert: both refused, each with its reason; the round aggregated the other two
    first = result.rounds[0]
    assert "NaN" in first.rejected[nan_node.address]
    assert "norm" in first.rejected[huge_node.address]
    assert len(first.rejected) == 2 and len(first.participants) == EDGES - 2
    assert np.isfinite(result.params).all() and np.abs(result.params).max() < 100


def test_a_straggler_misses_the_round_which_closes_at_its_deadline(
    federation: Federation, data: FederatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: one node answers round 1 long after the round's deadline
    slow = federation.edges[1]
    job = Coordinator._job

    async def late(self: Coordinator, e: Any, fields: dict[str, Any]) -> Any:
        if fields["round"] == 1 and e.candidate.address == slow.address:
            await asyncio.sleep(self.spec.deadline_s + 5)
        return await job(self, e, fields)

    monkeypatch.setattr(Coordinator, "_job", late)

    # Execute
    result = _run(federation, data, _spec(rounds=2, deadline_s=10), register=False)

    # Assert: round 1 closed without it; the run went on
    first = result.rounds[0]
    assert slow.address in first.dropped
    assert sorted(first.participants) == sorted(
        e.address for e in federation.edges if e is not slow
    )
    assert len(result.rounds) == 2


def test_a_member_that_drops_after_sending_its_update_is_still_unmasked(
    federation: Federation, data: FederatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: one node sends its masked update, then never answers the unmask stage
    gone = federation.edges[2]
    unmask = Coordinator._unmask

    async def dropping(self: Coordinator, e: Any, fields: dict[str, Any]) -> Any:
        if e.candidate.address == gone.address:
            raise ProviderFailed(f"{gone.address}: gone after sending (a test)")
        return await unmask(self, e, fields)

    plain = _run(federation, data, _spec(rounds=1), register=False)
    monkeypatch.setattr(Coordinator, "_unmask", dropping)

    # Execute
    secure = _run(federation, data, _spec(rounds=1, secagg=True), register=False)

    # Assert: its update is in the sum (the others' shares rebuilt its self mask)
    assert gone.address in secure.rounds[0].participants
    assert np.abs(plain.params - secure.params).max() < 1e-3


def test_the_cli_runs_a_federated_spec_and_an_edge_node_runs_its_model_locally(
    federation: Federation, data: FederatedData, tmp_path: Path
) -> None:
    import hashlib
    import json
    import os
    import subprocess
    import sys

    from idlegrid.edge import UsageReceipt
    from idlegrid.protocol._fastsig import recover_digest

    # Prepare
    spec = tmp_path / "fl.yaml"
    spec.write_text(
        "model: {family: mlp, inputs: 64, hidden: [32], classes: 10}\n"
        "dataset: digits\nrounds: 2\nclients_per_round: 4\nmin_clients: 2\n"
        "local: {epochs: 1, batch: 32, lr: 0.1}\nsecagg: true\n"
    )
    np.savez(tmp_path / "val.npz", x=data.x_test, y=data.y_test)
    env = {**os.environ, "IDLEGRID_CACHE": str(fresh_cache(tmp_path / "cache"))}
    cli = [sys.executable, "-m", "idlegrid.cli"]
    network = ["--network", str(federation.network)]

    # the sponsor names three of the four sites: the fourth is never sampled
    named = [e.address for e in federation.edges[:3]]
    left_out = federation.edges[3].address

    # Execute: a run from the command line, then the factory case on edge 1's data
    out = subprocess.run(
        [*cli, "fl", "start", str(spec), "--validation", str(tmp_path / "val.npz"),
         "--output", str(tmp_path / "run"), *network, "--account", str(federation.sponsor),
         *(a for address in named for a in ("--node", address.lower())), "--json"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    model = (tmp_path / "run" / "model.onnx").read_bytes()
    digest = hashlib.sha256(model).hexdigest()
    edge = federation.edges[0]
    infer = subprocess.run(
        [*cli, "edge", "infer", "--data", str(edge.data), "--dataset", "digits",
         "--model", digest, "--output", str(tmp_path / "pred.npy"), *network,
         "--account", str(edge.index), "--receipt", str(tmp_path / "usage.json")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    # a model nobody registered (here: one byte changed) is refused before it runs
    unregistered = hashlib.sha256(model + b"\0").hexdigest()
    refused = subprocess.run(
        [*cli, "edge", "infer", "--data", str(edge.data), "--dataset", "digits",
         "--model", unregistered, "--output", str(tmp_path / "nope.npy"), *network,
         "--account", str(edge.index)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip

    # Assert: the run's rounds and files; the predictions stay local, the receipt is
    # signed by the edge node and names the model, rows and the predictions' hash only
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for r in summary["rounds"]:
        assert sorted(r["participants"]) == sorted(named) and left_out not in r["participants"]
    assert summary["rounds"][-1]["model"] == digest
    assert (tmp_path / "run" / "round-0002.npy").exists()
    assert infer.returncode == 0, infer.stderr[-3000:]
    pred = np.load(tmp_path / "pred.npy")
    with np.load(edge.data / "digits.npz") as z:
        assert pred.shape == (len(z["y"]), 10)
    doc = json.loads((tmp_path / "usage.json").read_text())
    receipt = UsageReceipt(**doc)
    signer = recover_digest(receipt.digest(), bytes.fromhex(receipt.signature[2:]))
    assert "0x" + signer.hex() == edge.address.lower()
    assert receipt.model == digest and receipt.rows == len(pred)
    assert (
        receipt.predictions_hash == hashlib.sha256((tmp_path / "pred.npy").read_bytes()).hexdigest()
    )
    said = " ".join((refused.stderr + refused.stdout).split())  # the console wraps lines
    assert refused.returncode != 0 and f"model {unregistered} is not registered" in said
    assert not (tmp_path / "nope.npy").exists()
    assert set(doc) == {
        "model",
        "dataset",
        "rows",
        "units",
        "predictions_hash",
        "edge",
        "at",
        "signature",
    }


def test_a_coordinator_killed_before_its_runs_end_is_settled_from_the_rounds_it_held(
    federation: Federation, data: FederatedData, tmp_path: Path
) -> None:
    """``payout: run``, the coordinator's process SIGKILLed after its second round (no
    handler runs): nothing is posted and no token moved; the rounds it held on disk
    settle the run from the command line (funded then, posted for the last held
    round, inputs published), its contributors claim, and the pool conserves tokens."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from idlegrid.chain import TOKEN, RewardPoolClient, RewardTree
    from idlegrid.fl import RunInputs, read_round_inputs

    # Prepare: a run of many rounds, coordinated by its own account (its channels to
    # the edge nodes are nobody else's)
    coordinator = federation.sponsor + 1
    spec = tmp_path / "fl.yaml"
    spec.write_text(json.dumps({**_spec_raw(rounds=12, seed=17), "payout": "run"}))
    np.savez(tmp_path / "val.npz", x=data.x_test, y=data.y_test)
    ledger = federation.ledger()
    pool = ledger.client("rewards", RewardPoolClient)
    who = federation.info.accounts[coordinator].address
    balance = ledger.token.balance_of(who)
    out = tmp_path / "run"
    held = out / "held"
    log = tmp_path / "coordinator.log"

    # Execute: kill it outright once its second round is held
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "idlegrid.cli", "fl", "start", str(spec),
             "--validation", str(tmp_path / "val.npz"), "--output", str(out),
             "--network", str(federation.network), "--account", str(coordinator),
             "--rewards", "2", "--json"],
            stdout=subprocess.DEVNULL, stderr=sink, env=dict(os.environ),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while not (held / "round-00002-inputs.npz").exists():
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "round 2 was never held"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=60)
    run = bytes.fromhex(json.loads((held / "settlement.json").read_text())["run"])
    assert proc.returncode == -signal.SIGKILL
    assert pool.postings_of(run) == {} and pool.pool(run).budget == 0
    assert ledger.token.balance_of(who) <= balance  # it paid for training, no rewards
    before_settling = ledger.token.balance_of(who)
    # a new run in the same output directory would mix with the unsettled rounds
    refused = subprocess.run(
        [sys.executable, "-m", "idlegrid.cli", "fl", "start", str(spec),
         "--validation", str(tmp_path / "val.npz"), "--output", str(out),
         "--network", str(federation.network), "--account", str(coordinator),
         "--rewards", "2"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "never settled" in " ".join(refused.stderr.split())
    settled = _cli_json(
        "posting", "settle", str(out), "--network", str(federation.network),
        "--account", str(coordinator),
    )  # fmt: skip
    again = subprocess.run(
        [sys.executable, "-m", "idlegrid.cli", "posting", "settle", str(out),
         "--network", str(federation.network), "--account", str(coordinator)],
        capture_output=True, text=True, env=dict(os.environ), timeout=300, check=False,
    )  # fmt: skip

    # Assert: one posting, for the last held round, of the held rounds' netted amounts
    inputs = read_round_inputs((out / "run-inputs.npz").read_bytes())
    assert isinstance(inputs, RunInputs) and inputs.part == 2 * TOKEN
    rounds = [r.round for r in inputs.rounds]
    assert rounds == list(range(1, len(rounds) + 1)) and len(rounds) >= 2
    assert settled["rounds"] == rounds and settled["round"] == rounds[-1]
    postings = pool.postings_of(run)
    assert set(postings) == {rounds[-1]}
    posted = postings[rounds[-1]]
    assert dict(posted.amounts) == inputs.amounts() == settled["amounts"]
    assert posted.inputs == inputs.sha256 and 0 < posted.total <= 2 * TOKEN
    assert not held.exists()
    assert again.returncode != 0 and "no held/ folder" in " ".join(again.stderr.split())
    # the settlement was funded once, by the coordinator; its contributors claim it
    assert before_settling - ledger.token.balance_of(who) == 2 * TOKEN
    ledger.backend.advance_time(pool.challenge_window() + 1)
    tree = RewardTree(run, rounds[-1], posted.amounts)
    paid = {a: ledger.token.balance_of(a) for a in tree.contributors}
    for a in tree.contributors:
        pool.claim_from(tree, a, sender=federation.info.accounts[coordinator])
    assert {a: ledger.token.balance_of(a) - paid[a] for a in paid} == dict(posted.amounts)
    assert pool.pool(run).budget == 2 * TOKEN - posted.total


def test_an_edge_node_killed_mid_round_does_not_stop_a_secure_run(
    federation: Federation, data: FederatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: SIGKILL one edge node in round 2, after it shared its secrets and before
    # its training job reaches it: the others must unmask around it
    victim = federation.edges[-1]
    job = Coordinator._job

    async def killing(self: Coordinator, e: Any, fields: dict[str, Any]) -> Any:
        if (
            fields["round"] == 2
            and fields["stage"] == "fit"
            and e.candidate.address == victim.address
        ):
            await asyncio.to_thread(federation.kill, victim)
        return await job(self, e, fields)

    monkeypatch.setattr(Coordinator, "_job", killing)

    # Execute
    result = _run(federation, data, _spec(rounds=3, secagg=True), register=False)

    # Assert: the run went on without it, and improved
    assert len(result.rounds) == 3, result.stopped
    second = result.rounds[1]
    assert victim.address in second.dropped
    assert victim.address not in second.participants and len(second.participants) == EDGES - 1
    assert victim.address not in result.rounds[2].participants
    assert result.rounds[2].accuracy > result.rounds[0].accuracy
    assert Path(victim.data / "digits.npz").exists()
