"""IdlegridOracle: requests, quorum answers, callbacks, refunds; success and attack side
by side, on the embedded EVM and on anvil, the token conserved after every test."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from idlegrid import ContractReverted, InvalidInput
from idlegrid.chain import (
    TOKEN,
    DisputeClient,
    DisputeOutcome,
    ModelRegistryClient,
    OracleAnswer,
    OracleClient,
    OracleRequest,
    compile_file,
    deploy_contract,
    encode_report,
    sign_answer,
    to_fixed,
    vote_commitment,
)
from idlegrid.chain._clients import ContractClient
from idlegrid.protocol import Account

from ..conftest import Env

MAX = 2**256 - 1
FEE = 3 * TOKEN + 2  # not a multiple of 3: the remainder must not be stranded
EXAMPLES = Path(__file__).parents[2] / "examples" / "oracle"
HERE = Path(__file__).parent / "oracle"


@dataclass
class Setup:
    env: Env
    oracle: OracleClient
    model: bytes
    providers: list[Account]
    consumer: Account
    #: contracts a test deployed that hold tokens
    holders: list[str] = field(default_factory=list)


class _Contract(ContractClient):
    _name = "a test's contract"


def _deploy(env: Env, path: Path, args: list[object], sender: Account) -> _Contract:
    artifact = compile_file(path)
    address = deploy_contract(env.backend, path.stem, args, sender=sender, artifact=artifact)
    return _Contract(env.backend, address, abi=artifact.abi)


@pytest.fixture
def setup(env: Env) -> Iterator[Setup]:
    oracle = env.ledger.client("oracle", OracleClient)
    models = env.ledger.client("models", ModelRegistryClient)
    model = hashlib.sha256(b"risk model").digest()
    models.register(model, sender=env.users[0])
    providers = env.users[1:5]
    for p in providers:
        env.token.approve(env.registry.address, MAX, sender=p)
        env.registry.register("http://p", 1, b"\x01" * 32, 200 * TOKEN, sender=p)
    consumer = env.users[6]
    env.token.approve(oracle.address, MAX, sender=consumer)
    s = Setup(env, oracle, model, providers, consumer)
    yield s
    env.conservation(*s.holders)
    _escrow_holds(env, oracle)


def _escrow_holds(env: Env, oracle: OracleClient) -> None:
    """The oracle's balance is the fees of its open requests plus what it owes providers."""
    head = env.backend.block_number()
    open_fees = sum(r.fee for r in oracle.requests(0, head) if oracle.is_open(r.request_id))
    owed = sum(oracle.owed(u.address) for u in env.users)
    assert env.token.balance_of(oracle.address) == open_fees + owed


def _answers(s: Setup, req: OracleRequest, outputs: dict[int, list[int]]) -> list[OracleAnswer]:
    """Signed answers: ``outputs[position]`` from the committee member at that position."""
    committee = s.oracle.committee(req)
    by_address = {p.address: p for p in s.providers}
    return [
        sign_answer(by_address[committee[pos]], s.oracle.domain(), req, pos, out)
        for pos, out in sorted(outputs.items())
    ]


def test_a_quorum_answer_reaches_the_consumer_and_pays_the_committee(setup: Setup) -> None:
    # Prepare: the example vault asks the risk model before a rebalance
    s, env = setup, setup.env
    vault = _deploy(
        env, EXAMPLES / "RiskVault.vy", [s.oracle.address, env.token.address, s.model, 0],
        s.consumer,
    )  # fmt: skip
    s.holders.append(vault.address)
    env.token.transfer(vault.address, 10 * TOKEN, sender=s.consumer)
    result = vault._send("rebalance", to_fixed([0.5, -1.25, 3.0]), FEE, sender=s.consumer)
    (asked,) = vault._events("RebalanceAsked", result)
    (req,) = [r for r in s.oracle.requests(result.block, result.block)]
    risk = to_fixed([0.25])

    # Execute: all three committee members answer alike (within float noise)
    answers = _answers(s, req, {0: risk, 1: [risk[0] + 7], 2: [risk[0] - 3]})
    done = s.oracle.fulfill(req, answers, sender=s.providers[0])

    # Assert: the vault stored the median; the fee went to the three, nothing left over
    assert req.request_id == asked["request_id"] and req.k == 3 and req.consumer == vault.address
    assert vault._call("risk") == risk[0] and vault._call("pending") == 0
    assert vault._call("at_risk_bps") == 8_000 - 7_000 * risk[0] // 10**18
    (event,) = s.oracle._events("Fulfilled", done)
    assert event["callback_ok"] and list(event["output"]) == risk
    committee = s.oracle.committee(req)
    assert sorted(event["paid"]) == sorted(committee)
    assert sum(s.oracle.owed(p) for p in committee) == FEE
    assert not s.oracle.is_open(req.request_id)
    before = env.token.balance_of(committee[0])
    member = next(p for p in s.providers if p.address == committee[0])
    s.oracle.withdraw(sender=member)
    assert env.token.balance_of(committee[0]) - before > 0 and s.oracle.owed(committee[0]) == 0


def test_one_report_delivers_several_requests_and_skips_those_already_delivered(
    setup: Setup,
) -> None:
    # Prepare: three requests; the first is delivered on its own meanwhile
    s = setup
    reqs = [
        s.oracle.request(s.model, to_fixed([x]), fee=FEE, sender=s.consumer)[0]
        for x in (1.0, 2.0, 3.0)
    ]
    outs = {r.request_id: to_fixed([r.request_id / 4]) for r in reqs}
    signed = {
        r.request_id: _answers(s, r, dict.fromkeys(range(3), outs[r.request_id])) for r in reqs
    }
    s.oracle.fulfill(reqs[0], signed[reqs[0].request_id], sender=s.consumer)
    owed = {p.address: s.oracle.owed(p.address) for p in s.providers}

    # Execute: one report of all three (a relay that had not seen the first delivery)
    done = s.oracle.fulfill_batch([(r, signed[r.request_id]) for r in reqs], sender=s.consumer)

    # Assert: the two open ones delivered with their own outputs, each fee to its own
    # committee, the first skipped (not paid twice)
    events = s.oracle._events("Fulfilled", done)
    assert [(e["request_id"], list(e["output"])) for e in events] == [
        (r.request_id, outs[r.request_id]) for r in reqs[1:]
    ]
    for p in s.providers:
        earned = sum(FEE // 3 + (FEE % 3 if s.oracle.committee(r)[0] == p.address else 0)
                     for r in reqs[1:] if p.address in s.oracle.committee(r))  # fmt: skip
        assert s.oracle.owed(p.address) - owed[p.address] == earned
    assert not any(s.oracle.is_open(r.request_id) for r in reqs)
    with pytest.raises(ContractReverted, match="no open request"):  # nothing left to deliver
        s.oracle.fulfill_batch([(r, signed[r.request_id]) for r in reqs], sender=s.consumer)


def test_a_report_with_one_forged_answer_delivers_nothing(setup: Setup) -> None:
    # Prepare
    s, env = setup, setup.env
    a, _ = s.oracle.request(s.model, to_fixed([1.0]), fee=FEE, sender=s.consumer)
    b, _ = s.oracle.request(s.model, to_fixed([2.0]), fee=FEE, sender=s.consumer)
    out = to_fixed([0.5])
    outsider = next(u for u in env.users if u.address not in s.oracle.committee(b))
    forged = [
        *_answers(s, b, {0: out, 1: out}),
        sign_answer(outsider, s.oracle.domain(), b, 2, out),
    ]
    report = [(a, _answers(s, a, {0: out, 1: out, 2: out})), (b, forged)]
    before = env.token.balance_of(s.oracle.address)

    # Execute / Assert: the whole report reverts; both stay open, nobody is paid
    with pytest.raises(ContractReverted, match="not signed by its committee member"):
        s.oracle.fulfill_batch(report, sender=s.consumer)
    assert s.oracle.is_open(a.request_id) and s.oracle.is_open(b.request_id)
    assert env.token.balance_of(s.oracle.address) == before
    assert all(s.oracle.owed(p.address) == 0 for p in s.providers)
    with pytest.raises(InvalidInput, match="1 to 8 requests"):
        s.oracle.fulfill_batch([report[0]] * 9, sender=s.consumer)


def test_one_wrong_answer_of_three_does_not_pass_and_is_reported(setup: Setup) -> None:
    # Prepare
    s = setup
    req, _ = s.oracle.request(s.model, to_fixed([1.0, 2.0]), fee=FEE, sender=s.consumer)
    good, wrong = to_fixed([0.9, 0.1]), to_fixed([0.0, 1.0])

    # Execute: the wrong member answers with the others
    done = s.oracle.fulfill(req, _answers(s, req, {0: good, 1: wrong, 2: good}), sender=s.consumer)

    # Assert: the delivered answer is the honest one; the wrong member is named, unpaid
    committee = s.oracle.committee(req)
    (event,) = s.oracle._events("Fulfilled", done)
    assert list(event["output"]) == good
    (outlier,) = s.oracle._events("Outlier", done)
    assert outlier["provider"] == committee[1] and list(outlier["output"]) == wrong
    assert s.oracle.owed(committee[1]) == 0
    assert s.oracle.owed(committee[0]) + s.oracle.owed(committee[2]) == FEE


def test_a_wrong_answer_with_one_honest_one_is_no_majority(setup: Setup) -> None:
    # Prepare
    s = setup
    req, _ = s.oracle.request(s.model, to_fixed([1.0]), fee=FEE, sender=s.consumer)
    good, wrong = to_fixed([0.9]), to_fixed([5.0])

    # Execute / Assert: two answers that disagree deliver nothing; the third decides
    with pytest.raises(ContractReverted, match="no majority agrees"):
        s.oracle.fulfill(req, _answers(s, req, {0: good, 2: wrong}), sender=s.consumer)
    assert s.oracle.is_open(req.request_id)
    s.oracle.fulfill(req, _answers(s, req, {0: good, 1: good, 2: wrong}), sender=s.consumer)
    assert not s.oracle.is_open(req.request_id)


def test_forged_misplaced_and_replayed_answers_are_refused(setup: Setup) -> None:
    # Prepare
    s = setup
    req, _ = s.oracle.request(s.model, to_fixed([1.0]), fee=FEE, sender=s.consumer)
    other, _ = s.oracle.request(s.model, to_fixed([2.0]), fee=FEE, sender=s.consumer)
    out = to_fixed([0.5])
    committee = s.oracle.committee(req)
    outsider = next(u for u in s.env.users if u.address not in committee)
    answers = _answers(s, req, {0: out, 1: out, 2: out})

    # Execute / Assert
    forged = [sign_answer(outsider, s.oracle.domain(), req, 0, out), *answers[1:]]
    for bad, reason in (
        (forged, "not signed by its committee member"),
        ([answers[1], answers[0], answers[2]], "out of order or repeated"),
        ([answers[0], answers[0], answers[2]], "out of order or repeated"),
        (answers[:1], "majority of the committee"),
        (_answers(s, other, {0: out, 1: out, 2: out}), "not signed by its committee member"),
        ([*answers[:2], sign_answer(outsider, s.oracle.domain(), req, 5, out)], "no such"),
    ):
        with pytest.raises(ContractReverted, match=reason):
            s.oracle._send("fulfill", *encode_report([(req, bad)], sort=False), sender=s.consumer)
    tampered = OracleRequest(**{**req.__dict__, "fee": 0})
    with pytest.raises(ContractReverted, match="not the request's commitment"):
        s.oracle.fulfill(tampered, answers, sender=s.consumer)
    s.oracle.fulfill(req, answers, sender=s.consumer)
    with pytest.raises(ContractReverted, match="no open request"):
        s.oracle.fulfill(req, answers, sender=s.consumer)


def _named_outlier(
    s: Setup, liars: dict[int, list[int]], honest: list[int]
) -> tuple[OracleRequest, dict[str, Any]]:
    """A delivered request whose committee positions in ``liars`` answered those outputs
    and the rest ``honest``; the first ``Outlier`` event's args."""
    req, _ = s.oracle.request(s.model, to_fixed([1.0]), fee=FEE, sender=s.consumer)
    outputs = {pos: liars.get(pos, honest) for pos in range(3)}
    done = s.oracle.fulfill(req, _answers(s, req, outputs), sender=s.consumer)
    (outlier,) = s.oracle._events("Outlier", done)
    return req, outlier


def _referee(s: Setup, disputes: DisputeClient, dispute: bytes, wrong: bool) -> list[Account]:
    """Draw the committee and have every member vote ``wrong``; the members."""
    s.env.backend.advance_time(1)
    s.env.backend.advance_time(1)  # the seed block, and one past it
    disputes.draw(dispute, sender=s.consumer)
    committee = disputes.dispute(dispute).committee
    members = [p for p in s.providers if p.address in committee]
    assert len(members) == len(committee) >= 1
    salt = b"\x07" * 32
    for m in members:
        disputes.commit(dispute, vote_commitment(dispute, m.address, wrong, salt), sender=m)
    for m in members:
        disputes.reveal(dispute, wrong, salt, sender=m)
    disputes.resolve(dispute, sender=s.consumer)
    return members


def test_an_outlier_answer_is_disputed_and_its_provider_slashed(setup: Setup) -> None:
    # Prepare: one member of three answers 5.0 where the others answer 0.9
    s, env = setup, setup.env
    disputes = env.ledger.client("disputes", DisputeClient)
    req, outlier = _named_outlier(s, {1: to_fixed([5.0])}, to_fixed([0.9]))
    liar = str(outlier["provider"])
    env.token.approve(disputes.address, disputes.bond(), sender=s.consumer)
    stake = env.registry.slashable(liar)
    wallet = env.token.balance_of(s.consumer.address)

    # Execute: the consumer disputes it with the oracle's record; referees re-run and agree
    dispute, _ = disputes.open_answer(
        req.request_id, liar, s.model, req.input_hash, list(outlier["output"]),
        int(outlier["named_at"]), sender=s.consumer,
    )  # fmt: skip
    (opened,) = disputes.logs("AnswerDisputed", req.block, env.backend.block_number())
    assert opened[1]["request_id"] == req.request_id and opened[1]["provider"] == liar
    assert env.market.stake_locked(liar)  # no withdrawing its stake meanwhile
    members = _referee(s, disputes, dispute, wrong=True)

    # Assert: slashed; the challenger has its bond back and half the slash
    state = disputes.dispute(dispute)
    assert state.outcome is DisputeOutcome.PROVIDER_WRONG and state.client == "0x" + "00" * 20
    slashed = stake - env.registry.slashable(liar)
    assert slashed > 0
    reward = (slashed // 2) // len(members)
    assert env.token.balance_of(s.consumer.address) - wallet == slashed - reward * len(members)
    assert env.token.balance_of(disputes.address) == 0


def test_an_honest_answer_named_an_outlier_is_cleared_and_the_challenger_pays(
    setup: Setup,
) -> None:
    # Prepare: two colluding members outvote the honest third, who is named an outlier
    s, env = setup, setup.env
    disputes = env.ledger.client("disputes", DisputeClient)
    lie = to_fixed([5.0])
    req, outlier = _named_outlier(s, {0: lie, 2: lie}, to_fixed([0.9]))
    honest = str(outlier["provider"])
    env.token.approve(disputes.address, disputes.bond(), sender=s.consumer)
    stake, wallet = env.registry.slashable(honest), env.token.balance_of(honest)
    dispute, _ = disputes.open_answer(
        req.request_id, honest, s.model, req.input_hash, list(outlier["output"]),
        int(outlier["named_at"]), sender=s.consumer,
    )  # fmt: skip

    # Execute: the referees re-run the model and find the answer right
    _referee(s, disputes, dispute, wrong=False)

    # Assert: nothing slashed; the challenger's bond goes to the provider it blamed
    assert disputes.dispute(dispute).outcome is DisputeOutcome.PROVIDER_RIGHT
    assert env.registry.slashable(honest) == stake
    assert env.token.balance_of(honest) - wallet == disputes.bond()


def test_only_an_answer_the_oracle_named_an_outlier_can_be_disputed(setup: Setup) -> None:
    # Prepare
    s, env = setup, setup.env
    disputes = env.ledger.client("disputes", DisputeClient)
    req, outlier = _named_outlier(s, {1: to_fixed([5.0])}, to_fixed([0.9]))
    liar, output, named_at = (
        str(outlier["provider"]),
        list(outlier["output"]),
        int(outlier["named_at"]),
    )
    paid = next(p for p in s.oracle.committee(req) if p != liar)
    env.token.approve(disputes.address, 10 * disputes.bond(), sender=s.consumer)
    before = env.token.balance_of(s.consumer.address)

    def open_(who: str, out: list[int], at: int = named_at, model: bytes = s.model,
              sender: Account = s.consumer) -> None:  # fmt: skip
        disputes.open_answer(req.request_id, who, model, req.input_hash, out, at, sender=sender)

    # Execute / Assert: an answer that was paid, another output, another model, another
    # time, the provider itself; then once, not twice; then too late
    call: Callable[[], None]
    for call, reason in (
        (lambda: open_(paid, to_fixed([0.9])), "not an answer the oracle named an outlier"),
        (lambda: open_(liar, to_fixed([4.0])), "not an answer the oracle named an outlier"),
        (lambda: open_(liar, output, model=b"\x01" * 32), "not an answer the oracle named"),
        (lambda: open_(liar, output, at=named_at + 1), "not an answer the oracle named"),
        (lambda: open_(liar, output, sender=next(p for p in s.providers if p.address == liar)),
         "provider cannot dispute itself"),
    ):  # fmt: skip
        with pytest.raises(ContractReverted, match=reason):
            call()
    assert env.token.balance_of(s.consumer.address) == before  # no bond taken
    open_(liar, output)
    with pytest.raises(ContractReverted, match="already disputed"):
        open_(liar, output)
    later, outlier2 = _named_outlier(s, {0: to_fixed([5.0])}, to_fixed([0.9]))
    env.backend.advance_time(disputes.dispute_window() + 1)
    with pytest.raises(ContractReverted, match="dispute window over"):
        disputes.open_answer(
            later.request_id, str(outlier2["provider"]), s.model, later.input_hash,
            list(outlier2["output"]), int(outlier2["named_at"]), sender=s.consumer,
        )  # fmt: skip


def test_an_unanswered_request_is_refunded_in_full_after_its_deadline(setup: Setup) -> None:
    # Prepare
    s, env = setup, setup.env
    req, _ = s.oracle.request(s.model, to_fixed([1.0]), fee=FEE, sender=s.consumer)
    before = env.token.balance_of(s.consumer.address)

    # Execute / Assert: not before the deadline, not by another, once
    with pytest.raises(ContractReverted, match="still open"):
        s.oracle.cancel(req, sender=s.consumer)
    env.backend.advance_time(301)
    with pytest.raises(ContractReverted, match="only the consumer"):
        s.oracle.cancel(req, sender=s.providers[0])
    answers = _answers(s, req, {0: [1], 1: [1], 2: [1]})
    with pytest.raises(ContractReverted, match="expired"):
        s.oracle.fulfill(req, answers, sender=s.consumer)
    s.oracle.cancel(req, sender=s.consumer)
    assert env.token.balance_of(s.consumer.address) - before == FEE
    with pytest.raises(ContractReverted, match="no open request"):
        s.oracle.cancel(req, sender=s.consumer)


@pytest.mark.parametrize("burn", [False, True], ids=["reverts", "burns-its-gas"])
def test_a_consumer_that_fails_its_callback_does_not_block_the_oracle(
    setup: Setup, burn: bool
) -> None:
    # Prepare
    s, env = setup, setup.env
    bad = _deploy(env, HERE / "BadConsumer.vy", [], s.consumer)
    s.holders.append(bad.address)
    env.token.transfer(bad.address, FEE, sender=s.consumer)
    asked = bad._send(
        "ask", s.oracle.address, env.token.address, s.model, to_fixed([1.0]), FEE, burn,
        sender=s.consumer,
    )  # fmt: skip
    (req,) = s.oracle.requests(asked.block, asked.block)

    # Execute: with a gas limit far above what a delivery needs, so that a callback
    # that were not capped would burn all of it
    report = encode_report([(req, _answers(s, req, {0: [7], 1: [7], 2: [7]}))])
    data = s.oracle._c.encode_abi("fulfill", args=list(report))
    tx = {"to": s.oracle.address, "data": data, "gas": 3_000_000}
    done = env.backend.send(s.consumer, tx, function="fulfill")

    # Assert: delivered and paid; the callback failed within its fixed gas. The rest of
    # a delivery costs ~150k (more or less by the signatures' zero bytes and whether the
    # providers' owed slots were empty): the bound has room for that, not for 2.8M more.
    (event,) = s.oracle._events("Fulfilled", done)
    assert not event["callback_ok"]
    assert sum(s.oracle.owed(p) for p in s.oracle.committee(req)) == FEE
    assert done.gas_used < s.oracle.callback_gas() + 250_000


def test_bad_requests_revert_with_clear_reasons(setup: Setup) -> None:
    s, env = setup, setup.env
    unknown = hashlib.sha256(b"nobody registered this").digest()
    for args, reason in (
        ((unknown, to_fixed([1.0]), 0, FEE), "model not registered"),
        ((s.model, [], 0, FEE), "empty input"),
        ((s.model, to_fixed([1.0]), 2, FEE), "mode is 0"),
        ((s.model, to_fixed([1.0]), 1, FEE), "no verifier linked"),
    ):
        with pytest.raises(ContractReverted, match=reason):
            s.oracle._send("request", *args, sender=s.consumer)
    with pytest.raises(ContractReverted):  # wrong width: more features than an input holds
        s.oracle._send("request", s.model, [1] * 65, 0, FEE, sender=s.consumer)
    poor = env.users[7]
    with pytest.raises(ContractReverted, match=r"fee transfer failed|allowance|insufficient"):
        s.oracle.request(s.model, to_fixed([1.0]), fee=FEE, sender=poor)
    with pytest.raises(ContractReverted, match="quorum is 1 to 7"):
        s.oracle.set_quorum(8, sender=s.consumer)
    # more than the 4 active providers: the committee is drawn at delivery, so the
    # request stands (refundable after its deadline) and no committee can answer it
    s.oracle.set_quorum(5, sender=s.consumer)
    big, _ = s.oracle.request(s.model, to_fixed([1.0]), fee=FEE, sender=s.consumer)
    with pytest.raises(ContractReverted, match="fewer active providers"):
        s.oracle.committee(big)
    s.oracle.set_quorum(3, sender=s.consumer)
    req, _ = s.oracle.request(s.model, to_fixed([1.0]), fee=FEE, sender=s.consumer)
    answers = _answers(s, req, {0: [1, 2], 1: [1], 2: [1, 2]})
    with pytest.raises(InvalidInput, match="different widths"):  # not even expressible
        s.oracle.fulfill(req, answers, sender=s.consumer)
    with pytest.raises(ContractReverted, match="1 to 16 outputs"):
        s.oracle.fulfill(req, _answers(s, req, {0: [], 1: [], 2: []}), sender=s.consumer)


def test_only_a_model_s_registrant_links_its_verifier_once(setup: Setup) -> None:
    s, env = setup, setup.env
    models = env.ledger.client("models", ModelRegistryClient)
    with pytest.raises(ContractReverted, match="only the model's registrant"):
        models.link_verifier(s.model, env.token.address, sender=s.consumer)
    with pytest.raises(ContractReverted, match="not a contract"):
        models.link_verifier(s.model, s.consumer.address, sender=env.users[0])
    with pytest.raises(ContractReverted, match="model not registered"):
        models.link_verifier(b"\x09" * 32, env.token.address, sender=env.users[0])
    with pytest.raises(ContractReverted, match="no verifier linked"):  # mode 1 needs one
        s.oracle.request(s.model, to_fixed([1.0]), mode=1, fee=FEE, sender=s.consumer)
    done = models.link_verifier(s.model, env.token.address, sender=env.users[0])
    (linked,) = models._events("VerifierLinked", done)
    assert (linked["registrant"], linked["verifier"]) == (env.users[0].address, env.token.address)
    assert s.oracle.verifier(s.model) == models.verifier(s.model) == env.token.address
    with pytest.raises(ContractReverted, match="linked already"):
        models.link_verifier(s.model, env.registry.address, sender=env.users[0])


def test_a_declared_width_refuses_other_widths_at_once(setup: Setup) -> None:
    s, env = setup, setup.env
    registrant = env.users[0]
    with pytest.raises(ContractReverted, match="only the model's registrant"):
        s.oracle.declare_width(s.model, 3, sender=s.consumer)
    for bad in (0, 65):
        with pytest.raises(ContractReverted, match="1 to 64 features"):
            s.oracle.declare_width(s.model, bad, sender=registrant)
    s.oracle.declare_width(s.model, 3, sender=registrant)
    assert s.oracle.input_width(s.model) == 3
    with pytest.raises(ContractReverted, match="declared already"):
        s.oracle.declare_width(s.model, 4, sender=registrant)
    with pytest.raises(ContractReverted, match="input width differs from the model's"):
        s.oracle.request(s.model, to_fixed([1.0, 2.0]), fee=FEE, sender=s.consumer)
    req, _ = s.oracle.request(s.model, to_fixed([1.0, 2.0, 3.0]), fee=FEE, sender=s.consumer)
    assert req.input == tuple(to_fixed([1.0, 2.0, 3.0]))
