"""Provider relays answering the oracle: a quorum of three agrees off chain and one
delivers; a lying member is outvoted and reported; a dead leader is covered; forged
answers from peers are refused. On the embedded EVM and on anvil, with a real ONNX
model in onnxruntime."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from idlegrid import InvalidInput
from idlegrid.chain import (
    TOKEN,
    DisputeClient,
    DisputeStatus,
    ModelRegistryClient,
    OracleAnswer,
    OracleClient,
    OracleRequest,
    from_fixed,
    to_fixed,
)
from idlegrid.oracle import OracleRelay, OutlierChallenger, run_model
from idlegrid.oracle._relay import EPOCH_BLOCKS
from idlegrid.protocol import Account
from idlegrid.protocol._keccak import keccak256

from ..conftest import Env

MAX = 2**256 - 1
W = np.array([[0.5], [-1.0], [2.0]], np.float32)
B = np.array([0.25], np.float32)


def _linear_model(b: np.ndarray = B) -> bytes:
    """y = x @ W + b: three features, one output."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "risk",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(W, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Bus:
    """Hands each relay's answers to the others (the node's HTTP endpoint's part)."""

    def __init__(self) -> None:
        self.relays: dict[str, OracleRelay] = {}
        self.down: set[str] = set()
        self.lie: dict[str, list[int]] = {}

    def send(self, req: OracleRequest, answer: OracleAnswer, to: Sequence[str]) -> None:
        for address in to:  # each on its own: one refusal does not stop the others
            if address in self.relays and address not in self.down:
                with contextlib.suppress(InvalidInput):
                    self.relays[address].receive(req.request_id, answer)


@dataclass
class World:
    env: Env
    oracle: OracleClient
    digest: bytes
    consumer: Account
    bus: Bus
    clock: Clock


@pytest.fixture
def world(env: Env) -> Iterator[World]:
    model = _linear_model()
    digest = hashlib.sha256(model).digest()
    env.ledger.client("models", ModelRegistryClient).register(digest, sender=env.users[0])
    oracle = env.ledger.client("oracle", OracleClient)
    providers = env.users[1:5]
    for p in providers:
        env.token.approve(env.registry.address, MAX, sender=p)
        env.registry.register("http://p", 1, b"\x01" * 32, 200 * TOKEN, sender=p)
    consumer = env.users[6]
    env.token.approve(oracle.address, MAX, sender=consumer)
    bus, clock = Bus(), Clock()
    start = env.backend.block_number()

    def models(h: bytes) -> bytes:
        assert h == digest
        return model

    for p in providers:
        bus.relays[p.address] = OracleRelay(
            oracle, p, models, bus.send, grace_s=5.0, from_block=start, clock=clock
        )
    yield World(env, oracle, digest, consumer, bus, clock)
    env.conservation()


def _steps(bus: Bus, times: int = 1) -> None:
    for _ in range(times):
        for address, relay in bus.relays.items():
            if address not in bus.down:
                relay.step()


def test_a_quorum_of_relays_answers_with_the_model_s_output(world: World) -> None:
    w = world
    env, oracle, digest, consumer, bus = w.env, w.oracle, w.digest, w.consumer, w.bus
    x = [1.0, 0.5, -0.25]
    req, _ = oracle.request(digest, to_fixed(x), fee=3 * TOKEN, sender=consumer)

    # Execute: every relay reads the request, the members answer and share, one delivers
    _steps(bus, 2)

    # Assert: delivered once, with onnxruntime's answer; the three members paid
    assert not oracle.is_open(req.request_id)
    delivered = [a for a, r in bus.relays.items() if req.request_id in r.delivered]
    assert len(delivered) == 1
    expected = float((np.array(x, np.float32) @ W + B)[0])
    logs = oracle.logs("Fulfilled", req.block, env.backend.block_number())
    (_, event) = logs[-1]
    assert abs(from_fixed(event["output"])[0] - expected) < 1e-6
    assert sorted(event["paid"]) == sorted(oracle.committee(req))
    assert run_model(_linear_model(), to_fixed(x)) == list(event["output"])


def test_a_burst_of_requests_travels_in_shared_reports(world: World) -> None:
    w = world
    env, oracle, digest, consumer, bus = w.env, w.oracle, w.digest, w.consumer, w.bus
    rows = [[float(i), 1.0, -0.5] for i in range(6)]
    reqs = [oracle.request(digest, to_fixed(x), fee=3 * TOKEN, sender=consumer)[0] for x in rows]

    # Execute: the relays read all six in one step, answer, and deliver in the next
    _steps(bus, 2)

    # Assert: each delivered once with its own answer, in fewer transactions than
    # requests (each transaction is a block here)
    logs = oracle.logs("Fulfilled", reqs[0].block, env.backend.block_number())
    by_id = {e["request_id"]: (block, list(e["output"])) for block, e in logs}
    assert sorted(by_id) == [r.request_id for r in reqs] and len(logs) == len(reqs)
    for r, x in zip(reqs, rows, strict=True):
        assert by_id[r.request_id][1] == run_model(_linear_model(), to_fixed(x))
    assert len({block for block, _ in by_id.values()}) < len(reqs)
    assert sum(len(r.delivered) for r in bus.relays.values()) == len(reqs)


def test_a_lying_member_is_outvoted_and_reported(world: World) -> None:
    w = world
    env, oracle, digest, consumer, bus = w.env, w.oracle, w.digest, w.consumer, w.bus
    req, _ = oracle.request(digest, to_fixed([1.0, 1.0, 1.0]), fee=3 * TOKEN, sender=consumer)
    liar = oracle.committee(req)[1]
    honest = bus.relays[liar].models

    def wrong(h: bytes) -> bytes:  # the liar runs another model
        model = onnx.load_from_string(honest(h))
        model.graph.initializer[1].CopyFrom(
            numpy_helper.from_array(np.array([9.0], np.float32), "b")
        )
        return bytes(model.SerializeToString())

    bus.relays[liar].models = wrong

    # Execute
    _steps(bus, 2)

    # Assert: the honest answer got through; the liar is named and unpaid
    (_, done) = oracle.logs("Fulfilled", req.block, env.backend.block_number())[-1]
    assert abs(from_fixed(done["output"])[0] - 1.75) < 1e-6  # 0.5 - 1 + 2 + 0.25
    (_, outlier) = oracle.logs("Outlier", req.block, env.backend.block_number())[-1]
    assert outlier["provider"] == liar and oracle.owed(liar) == 0


def _delivery_order(req: OracleRequest, committee: list[str]) -> list[str]:
    """The relays' delivery order of ``req``'s committee (by keccak256(epoch, address))."""
    epoch = (req.block // EPOCH_BLOCKS).to_bytes(32, "big")
    return sorted(committee, key=lambda a: keccak256(epoch + bytes.fromhex(a[2:])))


def _challenger(relay: OracleRelay) -> OutlierChallenger:
    assert relay.challenger is not None
    return relay.challenger


@pytest.mark.parametrize("liar_delivers", [False, True], ids=["honest-deliverer", "liar-delivers"])
def test_an_honest_member_disputes_the_outlier_and_draws_its_committee(
    world: World, liar_delivers: bool
) -> None:
    # Prepare: every relay may dispute; one member of the committee lies, first in the
    # delivery order (so that it delivers its own lie) or second
    w = world
    env, oracle, digest, consumer, bus = w.env, w.oracle, w.digest, w.consumer, w.bus
    disputes = env.ledger.client("disputes", DisputeClient)
    for relay in bus.relays.values():
        relay.challenger = OutlierChallenger(disputes, env.token, relay.account)
    req, _ = oracle.request(digest, to_fixed([2.0, 0.0, 1.0]), fee=3 * TOKEN, sender=consumer)
    order = _delivery_order(req, oracle.committee(req))
    liar = order[0] if liar_delivers else order[1]
    challenger = order[1] if liar_delivers else order[0]
    bus.relays[liar].tamper = lambda out: [v + 5 * 10**18 for v in out]

    # Execute: answer and deliver; then a few more steps (the seed block, the draw)
    _steps(bus, 2)
    (deliverer,) = [a for a, r in bus.relays.items() if req.request_id in r.delivered]
    _steps(bus, 3)

    # Assert: one dispute, by the first honest member in the order, against the liar,
    # its committee drawn from the others (never the accused nor the challenger)
    assert (deliverer == liar) is liar_delivers
    ((_, opened),) = disputes.logs("AnswerDisputed", req.block, env.backend.block_number())
    state = disputes.dispute(bytes(opened["dispute"]))
    assert (state.provider, state.challenger) == (liar, challenger)
    assert state.status is DisputeStatus.VOTING and state.committee
    assert not {liar, challenger} & set(state.committee)
    assert env.token.balance_of(disputes.address) == disputes.bond()
    challengers = [_challenger(r) for r in bus.relays.values()]
    assert [c.opened for c in challengers if c.opened] == [[bytes(opened["dispute"])]]


def test_a_dead_leader_is_covered_after_the_grace_period(world: World) -> None:
    w = world
    oracle, digest, consumer, bus, clock = w.oracle, w.digest, w.consumer, w.bus, w.clock
    req, _ = oracle.request(digest, to_fixed([0.0, 0.0, 1.0]), fee=3 * TOKEN, sender=consumer)
    committee = oracle.committee(req)
    bus.down.add(committee[0])  # the leader never answers nor delivers

    # Execute: the two others answer; nothing is delivered until the grace periods pass
    _steps(bus, 2)
    assert oracle.is_open(req.request_id)
    clock.now += 5.1  # position 1's wait (a majority, one rank up)
    _steps(bus)
    clock.now += 5.1
    _steps(bus)

    # Assert
    assert not oracle.is_open(req.request_id)
    assert oracle.owed(committee[0]) == 0


def test_forged_answers_from_peers_are_refused(world: World) -> None:
    w = world
    env, oracle, digest, consumer, bus = w.env, w.oracle, w.digest, w.consumer, w.bus
    req, _ = oracle.request(digest, to_fixed([1.0, 2.0, 3.0]), fee=3 * TOKEN, sender=consumer)
    committee = oracle.committee(req)
    relay = bus.relays[committee[0]]
    relay.send = lambda *a: None  # keep its answer to itself
    relay.step()
    others = [p for p in env.users[1:5] if p.address != committee[0]]
    from idlegrid.chain import sign_answer

    signed = sign_answer(others[0], oracle.domain(), req, 1, to_fixed([1.0]))
    outsider = next(p for p in env.users[1:5] if p.address not in committee)
    for bad, why in (
        (sign_answer(outsider, oracle.domain(), req, 1, to_fixed([1.0])), "not signed by"),
        (replace(signed, position=7), "no committee position"),
        (replace(signed, output=tuple(to_fixed([2.0]))), "not signed by"),
        (replace(signed, output=()), "1 to 16 outputs"),
        (replace(signed, signature=b"\x01" * 10), "65-byte"),
    ):
        with pytest.raises(InvalidInput, match=why):
            relay.receive(req.request_id, bad)
    with pytest.raises(InvalidInput, match="no open request"):  # read already, not ours
        relay.receive(req.request_id - 1, signed)


def test_early_answers_are_held_only_from_active_providers_and_only_so_many(
    world: World,
) -> None:
    from idlegrid.chain import sign_answer
    from idlegrid.oracle._relay import MAX_EARLY_PER_SENDER

    w = world
    req, _ = w.oracle.request(w.digest, to_fixed([1.0, 2.0, 3.0]), fee=0, sender=w.consumer)
    relay = next(iter(w.bus.relays.values()))
    provider, stranger = w.env.users[1], w.env.users[9]
    later = replace(req, request_id=req.request_id + 1)  # a request not read yet
    answer = sign_answer(provider, w.oracle.domain(), later, 0, to_fixed([1.0]))

    # Execute / Assert: a stranger's early answer is refused; a provider's is held, up
    # to its share
    with pytest.raises(InvalidInput, match="not active"):
        relay.receive(later.request_id, answer, stranger.address)
    for _ in range(MAX_EARLY_PER_SENDER):
        relay.receive(later.request_id, answer, provider.address)
    with pytest.raises(InvalidInput, match="too many early answers"):
        relay.receive(later.request_id, answer, provider.address)
