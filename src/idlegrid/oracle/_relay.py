"""A provider's side of the oracle: watch requests, answer, agree, deliver.

One :class:`OracleRelay` per provider node. Each :meth:`OracleRelay.step` reads the
oracle's new ``Requested`` events; for every open quorum request whose committee
holds this node, it runs the model on the request's input (onnxruntime, the model's
first output as fixed point with 18 decimals), signs its answer and hands it to the
other members through ``send`` (the node's HTTP endpoint in production). Answers from
the others arrive through :meth:`OracleRelay.receive`, checked against the committee
before they are kept. Members are put in a delivery order (by a hash of the
request's epoch and their address, so that the requests of one epoch share it); the
first in that order holding answers from all of the committee delivers them; when
some members stay silent, it delivers a majority after ``grace_s``, and each later
member waits ``grace_s`` more, so that a dead leader does not stall a request
(fail-over). Whatever is due in one step goes in one ``fulfill`` report of up to
``MAX_BATCH`` requests, like an OCR report covering a round: the transaction's own
cost is shared.

Everything a peer sends is checked: an answer must be signed by the committee member
at its position for this very request and commitment, and an output has at most
``MAX_OUTPUT`` values. The node never pays for anything here: delivering costs gas,
and the fee comes back in ``owed``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._exceptions import ContractReverted, IdlegridError, InvalidInput
from ..chain import (
    FIXED_ONE,
    OracleAnswer,
    OracleClient,
    OracleRequest,
    from_fixed,
    sign_answer,
    to_fixed,
)
from ..chain._oracle import MAX_BATCH, answer_digest
from ..protocol import Account
from ..protocol._fastsig import recover_digest
from ..protocol._keccak import keccak256
from ._challenge import OutlierChallenger

__all__ = ["MAX_OUTPUT", "OracleRelay", "run_model"]

log = logging.getLogger("idlegrid.oracle")

#: outputs in one answer (the contract's MAX_OUTPUT)
MAX_OUTPUT = 16
#: answers kept for requests not read yet, in all and from one sender
MAX_EARLY = 1024
MAX_EARLY_PER_SENDER = 16
#: requests answered that the dispute path remembers
MAX_ANSWERED = 1024
#: requests of one epoch (blocks) share a delivery order, so that they travel together
EPOCH_BLOCKS = 64

#: (request, answer) -> None: hand a signed answer to the other committee members
Send = Callable[[OracleRequest, OracleAnswer, Sequence[str]], None]


def run_model(model: bytes, values: Sequence[int]) -> list[int]:
    """The model's first output on one row of fixed-point features, in fixed point."""
    from ..workloads import OnnxRunner, model_info

    info = model_info(model)
    if len(info.inputs) != 1:
        raise InvalidInput("an oracle model takes one input")
    x = from_fixed(values).astype(np.dtype(info.inputs[0].dtype))[None, :]
    out = np.asarray(OnnxRunner(cache_size=4).run_first(model, x)).reshape(-1)
    if not 0 < out.size <= MAX_OUTPUT:
        raise InvalidInput(f"an oracle model gives 1 to {MAX_OUTPUT} outputs, not {out.size}")
    return to_fixed(out)


@dataclass
class _Pending:
    req: OracleRequest
    committee: list[str]
    position: int
    seen_at: float
    answers: dict[int, OracleAnswer] = field(default_factory=dict)


class OracleRelay:
    """Answers the oracle's quorum requests for ``account`` (an active provider)."""

    def __init__(
        self,
        oracle: OracleClient,
        account: Account,
        models: Callable[[bytes], bytes],
        send: Send,
        *,
        grace_s: float = 5.0,
        from_block: int = 0,
        clock: Callable[[], float] = time.monotonic,
        challenger: OutlierChallenger | None = None,
    ) -> None:
        self.oracle = oracle
        self.account = account
        self.models = models
        self.send = send
        self.grace_s = grace_s
        self.next_block = from_block
        self.clock = clock
        #: opens a dispute on each outlier this node's deliveries name (None: it does not)
        self.challenger = challenger
        self.domain = oracle.domain()
        #: TESTING AID (``--cheat-rate``): changes this node's answers before it signs
        self.tamper: Callable[[list[int]], list[int]] | None = None
        self._lock = threading.Lock()  # step (a worker thread) and receive (the server)
        #: answers signed in this step, sent once the lock is released
        self._outbox: list[tuple[OracleRequest, OracleAnswer, list[str]]] = []
        self._pending: dict[int, _Pending] = {}
        #: the requests this node answered lately (the dispute path looks their outliers up)
        self._answered: dict[int, _Pending] = {}
        #: answers to requests not read yet, by request id, and how many each sender sent
        self._early: dict[int, list[OracleAnswer]] = {}
        self._early_by: dict[str, int] = {}
        #: ids below it were read (answers to them are late, not early)
        self.oracle_next_id_floor = 0
        self.delivered: list[int] = []

    # -- the loop ------------------------------------------------------------------
    def step(self) -> None:
        """Read new requests, answer those this node sits on, deliver what is due.

        Answers go out after the lock is released: a peer's node may be posting its own
        answer here at the same moment, and neither may wait on the other."""
        with self._lock:
            self._step()
            outbox, self._outbox = self._outbox, []
        for req, answer, others in outbox:
            try:
                self.send(req, answer, others)
            except IdlegridError as exc:
                log.warning(
                    "oracle request %d: could not reach the others: %s", req.request_id, exc
                )

    def _step(self) -> None:
        head = self.oracle.backend.block_number()
        if head >= self.next_block:
            for req in self.oracle.requests(self.next_block, head):
                self._consider(req)
                self.oracle_next_id_floor = max(self.oracle_next_id_floor, req.request_id + 1)
            if self.challenger is not None:
                self._outliers(self.next_block, head)
            self.next_block = head + 1
            self._early = {r: a for r, a in self._early.items() if r >= self.oracle_next_id_floor}
            if not self._early:
                self._early_by = {}
        due = [p for p in list(self._pending.values()) if self._due(p)]
        if due:
            self._deliver(due)
        if self.challenger is not None:
            self.challenger.step()

    def receive(self, request_id: int, answer: OracleAnswer, sender: str | None = None) -> None:
        """An answer from another member (sent by ``sender``, when over the network);
        InvalidInput when it does not check out.

        An answer to a request this node has not read yet (a peer may be a block
        ahead) is kept aside and checked once it has: only from an active provider, at
        most ``MAX_EARLY_PER_SENDER`` a sender and ``MAX_EARLY`` in all."""
        if not 0 < len(answer.output) <= MAX_OUTPUT or len(answer.signature) != 65:
            raise InvalidInput("an answer has 1 to 16 outputs and a 65-byte signature")
        with self._lock:
            self._receive(request_id, answer, sender)

    def _receive(self, request_id: int, answer: OracleAnswer, sender: str | None) -> None:
        p = self._pending.get(request_id)
        if p is not None:
            self._check(p, answer)
            return
        refused = f"no open request {request_id} with this node on its committee"
        if request_id < self.oracle_next_id_floor:
            raise InvalidInput(refused)
        count = sum(len(v) for v in self._early.values())
        from_sender = self._early_by.get(sender or "", 0)
        if count >= MAX_EARLY or from_sender >= MAX_EARLY_PER_SENDER:
            raise InvalidInput(refused + " (and too many early answers held)")
        if sender is not None and not self.oracle.is_active_provider(sender):
            raise InvalidInput(refused + " (an early answer from a node that is not active)")
        self._early.setdefault(request_id, []).append(answer)
        self._early_by[sender or ""] = from_sender + 1

    def _check(self, p: _Pending, answer: OracleAnswer) -> None:
        if not 0 <= answer.position < len(p.committee):
            raise InvalidInput(f"no committee position {answer.position}")
        signer = recover_digest(answer_digest(self.domain, p.req, answer.output), answer.signature)
        if "0x" + signer.hex() != p.committee[answer.position].lower():
            raise InvalidInput("the answer is not signed by the member at its position")
        p.answers[answer.position] = answer

    # -- one request ---------------------------------------------------------------
    def _consider(self, req: OracleRequest) -> None:
        if req.mode == 1:
            self._prove(req)
            return
        if req.mode != 0 or req.request_id in self._pending:
            return
        if not self.oracle.is_open(req.request_id):
            return
        try:
            committee = self.oracle.committee(req)
        except ContractReverted as exc:  # fewer active providers than its quorum
            log.info("oracle request %d: no committee: %s", req.request_id, exc)
            return
        if self.account.address not in committee:
            return
        position = committee.index(self.account.address)
        p = _Pending(req, committee, position, self.clock())
        self._pending[req.request_id] = p
        for early in self._early.pop(req.request_id, []):
            try:
                self._check(p, early)
            except InvalidInput as exc:
                log.warning("oracle request %d: a peer's answer refused: %s", req.request_id, exc)
        try:
            output = run_model(self.models(req.model), req.input)
        except IdlegridError as exc:  # no such model here, a model that fails: stay silent
            log.warning("oracle request %d: no answer: %s", req.request_id, exc)
            return
        if self.tamper is not None:
            output = self.tamper(output)
        mine = sign_answer(self.account, self.domain, req, position, output)
        p.answers[position] = mine
        self._answered[req.request_id] = p
        while len(self._answered) > MAX_ANSWERED:
            del self._answered[next(iter(self._answered))]
        others = [a for i, a in enumerate(committee) if i != position]
        self._outbox.append((req, mine, others))

    def _prove(self, req: OracleRequest) -> None:
        """A zero-knowledge request drawn to this node: prove the model on the input with
        the model's artifacts (``zk_setup``, under ``zk_dir``) and deliver at once."""
        from ._zk import ZkArtifacts, zk_dir, zk_prove

        if not self.oracle.is_open(req.request_id):
            return
        if self.oracle.committee(req) != [self.account.address]:
            return
        directory = zk_dir(req.model)
        if not (directory / "zk.json").exists():
            log.warning("oracle request %d: no zk artifacts for model %s here",
                        req.request_id, req.model.hex()[:16])  # fmt: skip
            return
        artifacts = ZkArtifacts.load(directory)
        try:
            outputs, proof, took = zk_prove(artifacts, from_fixed(req.input))
        except IdlegridError as exc:
            log.warning("oracle request %d: no proof: %s", req.request_id, exc)
            return
        step = FIXED_ONE >> artifacts.output_scale
        try:
            self.oracle.fulfill_proof(req, [q * step for q in outputs], proof, sender=self.account)
        except ContractReverted as exc:
            log.warning("oracle request %d: proof not delivered: %s", req.request_id, exc)
            return
        log.info("oracle request %d: proven in %.1f s and delivered", req.request_id, took)
        self.delivered.append(req.request_id)

    def _order(self, p: _Pending) -> list[int]:
        """The committee positions in delivery order: by keccak256(epoch, address), the
        epoch being the request's block // ``EPOCH_BLOCKS``. Requests of one epoch share
        the order, so that one member delivers most of them in one report."""
        epoch = (p.req.block // EPOCH_BLOCKS).to_bytes(32, "big")
        return sorted(
            range(len(p.committee)),
            key=lambda i: keccak256(epoch + bytes.fromhex(p.committee[i][2:])),
        )

    def _due(self, p: _Pending) -> bool:
        k = len(p.committee)
        if len(p.answers) < k // 2 + 1:
            return False
        # the first member in delivery order holding answers delivers at once when all
        # are in, after grace_s with a majority; each later one waits grace_s more
        holders = [i for i in self._order(p) if i in p.answers]
        rank = holders.index(p.position) if p.position in holders else k
        due = rank * self.grace_s + (0 if len(p.answers) == k else self.grace_s)
        return self.clock() - p.seen_at >= due

    def _deliver(self, due: list[_Pending]) -> None:
        """Deliver the due requests still open, several to a transaction (``fulfill``
        takes a report of up to MAX_BATCH); a report that reverts is retried request by
        request, so that one request waiting for more answers holds back no other."""
        ready = []
        for p in due:
            if self.oracle.is_open(p.req.request_id):
                ready.append(p)
            else:
                del self._pending[p.req.request_id]
        for i in range(0, len(ready), MAX_BATCH):
            chunk = ready[i : i + MAX_BATCH]
            if len(chunk) > 1:
                try:
                    self.oracle.fulfill_batch(
                        [(p.req, list(p.answers.values())) for p in chunk], sender=self.account
                    )
                except (ContractReverted, InvalidInput) as exc:
                    log.info(
                        "oracle: a report of %d not delivered (%s); one by one", len(chunk), exc
                    )
                else:
                    for p in chunk:
                        self._done(p)
                    continue
            for p in chunk:
                self._deliver_one(p)

    def _outliers(self, from_block: int, to_block: int) -> None:
        """Hand the outliers named in these blocks, of requests this node answered, to
        the dispute path. One member disputes them: the first in the request's delivery
        order among those not named (whoever delivered: a lying deliverer cannot keep its
        own answer from being disputed)."""
        assert self.challenger is not None
        named: dict[int, list[dict[str, Any]]] = {}
        for _, outlier in self.oracle.logs("Outlier", from_block, to_block):
            named.setdefault(int(outlier["request_id"]), []).append(outlier)
        for request_id, outliers in named.items():
            p = self._answered.get(request_id)
            if p is None:
                continue
            blamed = {str(o["provider"]) for o in outliers}
            honest = [p.committee[i] for i in self._order(p) if p.committee[i] not in blamed]
            if honest and honest[0] == self.account.address:
                for outlier in outliers:
                    self.challenger.challenge(p.req, outlier)

    def _done(self, p: _Pending) -> None:
        self.delivered.append(p.req.request_id)
        self._pending.pop(p.req.request_id, None)

    def _deliver_one(self, p: _Pending) -> None:
        try:
            self.oracle.fulfill(p.req, list(p.answers.values()), sender=self.account)
        except (ContractReverted, InvalidInput) as exc:
            # no majority agrees yet (wait for more), or someone delivered first
            log.info("oracle request %d: not delivered: %s", p.req.request_id, exc)
            if "expired" in str(exc) or "no open request" in str(exc):
                self._pending.pop(p.req.request_id, None)
            return
        self._done(p)
