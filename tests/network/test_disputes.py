"""Disputes end to end on real node processes (anvil): a cheater caught by an audit is
taken to the dispute contract by the client; the other nodes, drawn as its committee,
re-execute the job from the evidence, vote (commit, reveal) and settle; the cheater's
stake is slashed to the client (its refund), the referees who voted with the majority
and the challenger. A false challenge of an honest result loses the challenger's bond
to the provider. Token conservation holds over every account the disputes touch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest

from idlegrid import InvalidInput
from idlegrid.chain import DisputeClient, DisputeStatus
from idlegrid.client import Client
from idlegrid.workloads import CPU, OnnxRunner

from .conftest import DEMO_CLIENT, Network, start_network
from .test_verify import MODEL, PER_SHARD, X

TRUTH = OnnxRunner(providers=[CPU], threads=1).run_first(MODEL, X)
MODEL_DIGEST = hashlib.sha256(MODEL).hexdigest()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = start_network(tmp_path_factory.mktemp("disputes"))
    try:
        yield network
    finally:
        network.close()


def _holdings(net: Network) -> dict[str, int]:
    """Every token holding the disputes move: wallets, market balances, stakes, bonds."""
    ledger = net.ledger
    disputes = ledger.client("disputes", DisputeClient)
    out = {"disputes": ledger.token.balance_of(disputes.address)}
    for account in net.info.accounts:
        a = account.address
        out[a] = ledger.token.balance_of(a) + ledger.market.balance_of(a)
        info = ledger.registry.provider(a)
        out[a + ":stake"] = info.stake + info.unbonding
    return out


def _caught(net: Network, mode: str) -> tuple[Client, str]:
    """Node 3 as a cheater on every job; a client that caught it with an audit."""
    node = net.nodes[2]
    net.replace(node, [*node.argv, "--cheat-rate", "1", "--cheat-mode", mode])
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    out = client.infer(MODEL, X, rows_per_shard=PER_SHARD, verify="audit")
    assert np.allclose(out, TRUTH, rtol=1e-4, atol=1e-5)
    assert [e.provider for e in client.evidence] == [node.address]
    return client, node.address


def test_a_caught_cheater_is_disputed_slashed_and_everyone_paid(net: Network) -> None:
    # Prepare: a cheater caught; its channel redeemed and closed (so that what the client
    # holds moves by the dispute alone); what everyone holds
    client, cheater = _caught(net, "random")
    client.close_channels()
    referees = [n.address for n in net.nodes[:2]]
    before = _holdings(net)
    supply = net.ledger.token.total_supply()

    # Execute
    try:
        report = client.dispute(client.evidence[0], blobs={MODEL_DIGEST: MODEL})
    finally:
        client.close()
    after = _holdings(net)

    # Assert: the committee (the two honest nodes) found the provider wrong
    assert report.outcome == "provider_wrong"
    assert sorted(report.committee) == sorted(referees)
    assert (report.wrong_votes, report.right_votes) == (2, 0)
    # the cheater lost stake; the client got its refund and the challenger's pay (bond back)
    assert report.slashed > 0 and report.refund > 0
    assert after[cheater + ":stake"] == before[cheater + ":stake"] - report.slashed
    me = client.account.address
    assert after[me] - before[me] == report.refund + report.challenger_paid - _bond(net)
    for referee in referees:
        assert after[referee] - before[referee] == report.referee_reward > 0
    # nothing created, destroyed or stranded
    assert sum(after.values()) == sum(before.values())
    assert net.ledger.token.total_supply() == supply and after["disputes"] == 0
    state = net.ledger.client("disputes", DisputeClient).dispute(bytes.fromhex(report.dispute[2:]))
    assert state.status is DisputeStatus.RESOLVED


def test_a_false_challenge_loses_its_bond_to_the_honest_provider(net: Network) -> None:
    # Prepare: every node honest; a client whose own machine once computes a wrong
    # result, so that its local audit accuses an honest provider (it trusts itself)
    node = net.nodes[2]
    net.replace(node, node.argv)
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    try:
        right = client._local.run
        glitches = [0.5]

        async def wrong_here(plan: object, part: object) -> np.ndarray:
            return await right(plan, part) + (glitches.pop() if glitches else 0.0)

        client._local.run = wrong_here  # type: ignore[method-assign]
        client.infer(MODEL, X, rows_per_shard=PER_SHARD, verify="audit", local=True)
        accused = client.evidence[0]
        client.close_channels()
        before = _holdings(net)

        # Execute
        report = client.dispute(accused, blobs={MODEL_DIGEST: MODEL})
    finally:
        client.close()
    after = _holdings(net)
    honest = accused.provider

    # Assert: the committee re-executed and found the provider right; the bond is its
    assert report.outcome == "provider_right"
    assert (report.wrong_votes, report.slashed, report.refund) == (0, 0, 0)
    me, bond = client.account.address, _bond(net)
    assert after[me] - before[me] == -bond
    assert after[honest] - before[honest] == bond
    assert sum(after.values()) == sum(before.values())


def test_a_dispute_without_the_model_is_refused_before_any_bond(net: Network) -> None:
    # Prepare
    client, _ = _caught(net, "noise")
    before = _holdings(net)

    # Execute, Assert: nothing moves, one clear error
    try:
        with pytest.raises(InvalidInput, match="needs the blobs its job names"):
            client.dispute(client.evidence[0], blobs={})
    finally:
        client.close()
    assert _holdings(net)["disputes"] == before["disputes"]


def _bond(net: Network) -> int:
    return net.ledger.client("disputes", DisputeClient).bond()


def test_a_lying_oracle_provider_is_disputed_by_the_deliverer_and_slashed(net: Network) -> None:
    import time

    from idlegrid.chain import DisputeOutcome, ModelRegistryClient, OracleClient, to_fixed

    from ..oracle.test_relay import _linear_model
    from .conftest import put_blob

    # Prepare: a model on every node; node 3 answers every oracle request off by 1.0
    # (three providers: it sits on every committee of three)
    ledger, owner = net.ledger, net.account(DEMO_CLIENT)
    model = _linear_model(np.array([0.125], np.float32))
    digest = hashlib.sha256(model).digest()
    ledger.client("models", ModelRegistryClient).register(digest, sender=owner)
    for node in net.nodes:
        put_blob(net, node, model, account=owner)
    liar = net.nodes[2]
    net.replace(liar, [*liar.argv, "--cheat-rate", "1"])
    oracle = ledger.client("oracle", OracleClient)
    disputes = ledger.client("disputes", DisputeClient)
    ledger.token.approve(oracle.address, 10**18, sender=owner)
    before, held_before = _holdings(net), ledger.token.balance_of(oracle.address)

    # Execute: a request; nobody but the node processes acts after it
    req, asked = oracle.request(digest, to_fixed([0.5, 0.25, -1.0]), fee=10**18, sender=owner)
    deadline, found = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        head = ledger.backend.block_number()
        found = disputes.logs("AnswerDisputed", asked.block, head, request_id=req.request_id)
        if (
            found
            and disputes.dispute(bytes(found[0][1]["dispute"])).status is DisputeStatus.RESOLVED
        ):
            break
        time.sleep(0.5)

    # Assert: the honest majority's answer delivered; the liar named, disputed by the
    # node that delivered, found wrong by the referee(s) who re-ran the model, slashed
    assert found, "no dispute opened on the outlier within the wait"
    dispute = disputes.dispute(bytes(found[0][1]["dispute"]))
    assert dispute.status is DisputeStatus.RESOLVED, "the dispute was not settled in time"
    assert dispute.provider == liar.address and dispute.outcome is DisputeOutcome.PROVIDER_WRONG
    assert dispute.challenger in {n.address for n in net.nodes[:2]}
    after = _holdings(net)
    assert after[liar.address + ":stake"] < before[liar.address + ":stake"]
    assert after["disputes"] == 0
    # nothing created, destroyed or stranded (the fee now sits in the oracle, owed)
    held = ledger.token.balance_of(oracle.address)
    assert sum(after.values()) + held == sum(before.values()) + held_before
