"""A node's seat on dispute committees: re-execute the disputed job, vote, settle.

Every staked provider may be drawn onto a dispute's committee (``Disputes.draw``). A
node follows the dispute contract's ``CommitteeDrawn`` events; for each dispute that
seats it, it:

1. waits for the challenger's evidence (``POST /v1/disputes/evidence``, a
   :class:`~idlegrid.protocol.DisputeEvidence`), and checks it against what the provider
   signed, read from the chain's ``DisputeOpened`` event: the spec fields must hash to
   the receipt's ``spec_hash`` and ``input_hash`` (``Workload.digests``), each blob to its
   name, the output to the receipt's ``output_hash``. Evidence that does not check out is
   dropped (someone else may still send the right one);
2. re-executes the job on its own executor (``ProviderNode.reexecute``: unbilled, never
   tampered with) and votes ``wrong`` when its result is not ``close_enough`` (the
   workload's tolerance, the same the client's audits use) to the provider's output;
3. commits ``commitment(dispute, itself, wrong, salt)``, reveals once every member
   committed or the commit deadline passed, and resolves the dispute once voting is
   over (anyone may; the referees who voted with the majority are paid then).

A referee that has no valid evidence by half the commit period votes that the provider
was right: the burden of proof is the challenger's, and an honest provider is never
found wrong on a claim nobody showed. A job that fails when re-executed here (a spec
this node refuses, an error in the worker) is also a vote for the provider: it is not the
provider's fault that the client's job cannot run. Votes and salts are kept in
``referee.json`` in the node's data directory, written before each transaction, so a
restarted node reveals what it committed.

All chain calls run in threads; deadlines are read in chain time (the pending block's
timestamp), never from this machine's clock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import ContractReverted, IdlegridError, InvalidInput, NotFound, PeerError
from ..chain import DisputeClient, DisputeStatus
from ..protocol import DisputeEvidence, array_from_npy
from ..workloads import get_workload

if TYPE_CHECKING:
    from ._node import ProviderNode

__all__ = ["Referee"]

log = logging.getLogger("idlegrid.referee")

#: blocks scanned for events per chain call
SCAN_BLOCKS = 2000


@dataclass
class Case:
    """One dispute this node sits on, and how far its vote went."""

    dispute: str  # 0x id
    provider: str
    spec_hash: str
    input_hash: str
    output_hash: str
    commit_deadline: int
    reveal_deadline: int
    evidence_until: int  # chain time after which it votes without evidence
    stage: str = "seated"  # seated -> committed -> revealed -> done
    wrong: bool | None = None
    why: str = ""
    salt: str = ""
    #: an oracle answer's dispute (``Disputes.open_answer``): its request and the
    #: disputed output; 0 for a job's receipt
    request_id: int = 0
    answer: list[int] = field(default_factory=list)
    #: a challenged reward posting (``Disputes.open_posting``): its run (0x hex) and
    #: round; "" for a job's receipt or an oracle answer
    posting_run: str = ""
    posting_round: int = 0


class Referee:
    """Follows the dispute contract for one node and votes where it is seated."""

    def __init__(
        self, node: ProviderNode, disputes: DisputeClient, path: Path, *, poll_s: float = 1.0
    ) -> None:
        self.node = node
        self.disputes = disputes
        self.path = path
        self.poll_s = poll_s
        self.cases: dict[str, Case] = {}
        self.evidence: dict[str, DisputeEvidence] = {}
        self.next_block = node.ledger.deployment.start_block
        self._scanning = asyncio.Lock()  # one scan at a time: it moves next_block
        self._load()

    # -- state ----------------------------------------------------------------------
    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except ValueError as exc:  # our own file: a torn write is a bug worth seeing
            raise InvalidInput(f"{self.path}: not the referee's state ({exc})") from exc
        self.next_block = int(raw["next_block"])
        self.cases = {k: Case(**v) for k, v in raw["cases"].items()}

    def _save(self) -> None:
        done = [k for k, c in self.cases.items() if c.stage == "done"]
        for key in done[: max(0, len(done) - 256)]:  # keep the latest finished ones
            del self.cases[key]
        state = {
            "next_block": self.next_block,
            "cases": {k: asdict(c) for k, c in self.cases.items()},
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # -- evidence -------------------------------------------------------------------
    async def take_evidence(self, evidence: DisputeEvidence) -> str:
        """Keep a challenger's evidence for a dispute this node sits on; what it does
        with it (checked later, against the chain). NotFound when the chain does not
        seat this node on that dispute (the chain is read again first: the challenger
        may be quicker than this node's last look)."""
        key = evidence.dispute.lower()
        if key not in self.cases:
            async with self._scanning:
                await asyncio.to_thread(self._scan)
        case = self.cases.get(key)
        if case is None:
            raise NotFound("the chain does not seat this node on that dispute")
        if case.stage != "seated":
            return "the vote is already committed"
        self.evidence[case.dispute] = evidence
        return "kept; checked before the vote"

    # -- the loop -------------------------------------------------------------------
    async def run(self) -> None:
        """Follow the chain and vote, until cancelled."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.step()
            except IdlegridError as exc:
                log.warning("referee: %s: %s", type(exc).__name__, exc)
            except Exception:  # a bug: logged, and the seat is kept (the next pass retries)
                log.exception("referee: pass failed")

    async def step(self) -> None:
        """One pass: learn new seats, then move every open case one stage on."""
        async with self._scanning:
            await asyncio.to_thread(self._scan)
        for case in list(self.cases.values()):
            if case.stage != "done":
                await self._advance(case)

    def _scan(self) -> None:
        """New ``CommitteeDrawn`` events that seat this node (blocking)."""
        backend = self.node.ledger.backend
        head = backend.block_number()
        me = self.node.address
        while self.next_block <= head:
            last = min(head, self.next_block + SCAN_BLOCKS - 1)
            seated_now = False
            for block, drawn in self.disputes.logs("CommitteeDrawn", self.next_block, last):
                seated = [str(a).lower() for a in drawn["committee"]]
                key = "0x" + bytes(drawn["dispute"]).hex()
                if me.lower() in seated and key not in self.cases:
                    self.cases[key] = self._case(bytes(drawn["dispute"]), drawn, block)
                    seated_now = True
            self.next_block = last + 1
            if seated_now:  # else a restart scans these blocks again: nothing is lost
                self._save()

    def _case(self, dispute: bytes, drawn: dict[str, Any], block: int) -> Case:
        start = self.node.ledger.deployment.start_block
        found = self.disputes.logs("DisputeOpened", start, block, dispute=dispute)
        if len(found) != 1:
            raise PeerError(f"dispute {dispute.hex()[:12]} has {len(found)} DisputeOpened events")
        opened = found[0][1]
        commit, reveal = int(drawn["commit_deadline"]), int(drawn["reveal_deadline"])
        period = commit - self.node.ledger.backend.timestamp()
        log.info("referee: seated on dispute %s against %s", dispute.hex()[:12], opened["provider"])
        request_id, answer, posting_run, posting_round = 0, [], "", 0
        if int(str(opened["client"]), 16) == 0 and any(bytes(opened["channel"])):
            # a challenged posting: its run and round
            posting_run = "0x" + bytes(opened["channel"]).hex()
            posting_round = int.from_bytes(bytes(opened["job_id"]), "big")
        elif not any(bytes(opened["channel"])):  # an oracle answer: its output is on chain
            told = self.disputes.logs("AnswerDisputed", start, block, dispute=dispute)
            if len(told) != 1:
                raise PeerError(
                    f"dispute {dispute.hex()[:12]} has {len(told)} AnswerDisputed events"
                )
            disputed = told[0][1]
            request_id = int(disputed["request_id"])
            answer = [int(v) for v in disputed["output"]]
        return Case(
            request_id=request_id,
            answer=answer,
            posting_run=posting_run,
            posting_round=posting_round,
            dispute="0x" + dispute.hex(),
            provider=str(opened["provider"]),
            spec_hash=bytes(opened["spec_hash"]).hex(),
            input_hash=bytes(opened["input_hash"]).hex(),
            output_hash=bytes(opened["output_hash"]).hex(),
            commit_deadline=commit,
            reveal_deadline=reveal,
            evidence_until=commit - max(1, period // 2),
        )

    async def _advance(self, case: Case) -> None:
        now = await asyncio.to_thread(self.node.ledger.backend.next_timestamp)
        dispute = bytes.fromhex(case.dispute[2:])
        if case.stage == "seated":
            if now >= case.commit_deadline:  # too late: the contract counts it absent
                case.stage, case.why = "done", "missed the commit deadline"
                self._save()
                return
            evidence = self.evidence.pop(case.dispute, None)
            if case.request_id:  # an oracle answer: everything needed is on chain
                case.wrong, case.why = await asyncio.to_thread(self._judge_answer, case)
            elif evidence is not None and case.posting_run:
                case.wrong, case.why = await asyncio.to_thread(self._judge_posting, case, evidence)
            elif evidence is not None:
                case.wrong, case.why = await self._judge(case, evidence)
            elif now >= case.evidence_until:
                case.wrong, case.why = False, "no valid evidence came: the provider stands"
            if case.wrong is None:
                return
            case.salt = secrets.token_hex(32)
            self._save()  # the vote and its salt, before the commitment is on chain
            commitment = self.disputes.commitment(
                dispute, self.node.address, case.wrong, bytes.fromhex(case.salt)
            )
            await self._send("commit", self.disputes.commit, dispute, commitment)
            case.stage = "committed"
            self._save()
            log.info("referee: %s: committed (%s)", case.dispute[:14], case.why)
            return
        state = await asyncio.to_thread(self.disputes.dispute, dispute)
        if state.status is DisputeStatus.RESOLVED:
            case.stage = "done"
            self._save()
            return
        if case.stage == "committed":
            if now >= case.reveal_deadline:
                case.stage = "revealed"  # too late to reveal; resolve it still
            elif now >= case.commit_deadline or state.commits == len(state.committee):
                assert case.wrong is not None
                salt = bytes.fromhex(case.salt)
                await self._send("reveal", self.disputes.reveal, dispute, case.wrong, salt)
                case.stage = "revealed"
                self._save()
            return
        if case.stage == "revealed":
            revealed = state.wrong_votes + state.right_votes
            if now >= case.reveal_deadline or revealed == len(state.committee):
                await self._send("resolve", self.disputes.resolve, dispute)
                case.stage = "done"
                self._save()

    async def _send(self, what: str, fn: Any, *args: Any) -> None:
        try:
            await asyncio.to_thread(fn, *args, sender=self.node.account)
        except ContractReverted as exc:
            # another member resolved first, or a deadline passed between read and send:
            # the next pass reads the dispute again
            log.info("referee: %s refused: %s", what, exc.reason)
            raise

    async def _judge(self, case: Case, evidence: DisputeEvidence) -> tuple[bool | None, str]:
        """(wrong, why) from checked evidence; (None, why) when the evidence is unusable
        (the referee goes on waiting for a valid one)."""
        try:
            claimed = await asyncio.to_thread(self._check, case, evidence)
        except (InvalidInput, PeerError) as exc:
            log.warning("referee: %s: evidence refused: %s", case.dispute[:14], exc)
            return None, ""
        workload = get_workload(evidence.kind)
        try:
            raw = await self.node.reexecute(
                evidence.kind, evidence.fields, owner=f"dispute:{case.dispute[:18]}"
            )
            mine = await asyncio.to_thread(array_from_npy, raw, max_bytes=len(raw) + 1)
        except IdlegridError as exc:
            return False, f"the job fails here too ({type(exc).__name__}): the provider stands"
        if mine.shape == claimed.shape and workload.close_enough(claimed, mine):
            return False, "re-executed: the provider's output is within tolerance"
        return True, "re-executed: the provider's output is not within tolerance"

    def _judge_answer(self, case: Case) -> tuple[bool, str]:
        """(wrong, why) for a disputed oracle answer: the request's input read from the
        oracle's ``Requested`` event, the model from this node's store, run here
        (blocking). Whatever keeps this node from running it is a vote for the provider."""
        from ..chain import OracleClient, input_hash, within_tolerance
        from ..oracle import run_model

        stands = "the provider stands"
        try:
            oracle = self.node.ledger.client("oracle", OracleClient)
            start = self.node.ledger.deployment.start_block
            req = oracle.request_by_id(case.request_id, start)
        except IdlegridError as exc:
            return False, f"the request cannot be read here ({exc}): {stands}"
        if req.model.hex() != case.spec_hash or input_hash(req.input).hex() != case.input_hash:
            return False, f"the dispute is not the request's model and input: {stands}"
        try:
            mine = run_model(bytes(self.node.store.get(case.spec_hash)), req.input)
        except IdlegridError as exc:
            return False, f"the model cannot run here ({type(exc).__name__}): {stands}"
        if within_tolerance(case.answer, mine):
            return False, "re-ran the model: the answer is within tolerance"
        return True, "re-ran the model: the answer is not within tolerance"

    def _judge_posting(self, case: Case, evidence: DisputeEvidence) -> tuple[bool | None, str]:
        """(wrong, why) for a challenged reward posting: the round's published inputs
        from the evidence (they must hash to what the posting names), the contributions
        recomputed from them here and compared with the posted amounts (blocking).
        (None, why) when the evidence is unusable: another may still come."""
        from ..chain import ModelRegistryClient, RewardPoolClient
        from ..fl._secure_inputs import read_round_inputs

        run, rnd = bytes.fromhex(case.posting_run[2:]), case.posting_round
        try:
            pool = self.node.ledger.client("rewards", RewardPoolClient)
            postings = pool.all_postings(self.node.ledger.deployment.start_block)
        except IdlegridError as exc:
            return None, f"the posting cannot be read here ({exc})"
        posted = [
            p for p in postings
            if p.run == run and p.round == rnd and p.root.hex() == case.output_hash
        ]  # fmt: skip
        if not posted:
            return False, "no posting with the disputed root: the coordinator stands"
        posting = posted[-1]
        blob = evidence.blobs.get(posting.inputs.hex())
        if blob is None:
            log.warning("referee: %s: evidence without the posting's inputs", case.dispute[:14])
            return None, ""
        try:
            data = base64.b64decode(blob, validate=True)
            if hashlib.sha256(data).digest() != posting.inputs:
                raise PeerError("the inputs do not hash to what the posting names")
            inputs = read_round_inputs(data)
            if (inputs.run, inputs.round) != (run, rnd):
                raise PeerError("the inputs are another round's")
        except (binascii.Error, ValueError, InvalidInput, PeerError) as exc:
            log.warning("referee: %s: evidence refused: %s", case.dispute[:14], exc)
            return None, ""
        try:
            record = self.node.ledger.client("models", ModelRegistryClient).model(posting.model)
        except IdlegridError as exc:
            return None, f"the round's model cannot be read here ({exc})"
        if record is None or record.data_hash != inputs.data_hash:
            return True, "the published inputs are not the validation set the round registered"
        why = inputs.check(posting.amounts)
        if why is None:
            return False, "recomputed the contributions: the posting is right"
        return True, f"recomputed the contributions: {why}"

    def _check(self, case: Case, evidence: DisputeEvidence) -> np.ndarray:
        """The provider's output from the evidence, once every part of it matches what the
        provider signed; the blobs it names are stored (blocking)."""
        workload = get_workload(evidence.kind)
        spec_hash, input_hash = workload.digests(evidence.fields)
        if spec_hash.hex() != case.spec_hash or input_hash.hex() != case.input_hash:
            raise PeerError("the evidence is not the disputed job (its hashes differ)")
        try:
            output = base64.b64decode(evidence.output_npy, validate=True)
            blobs = {d: base64.b64decode(b, validate=True) for d, b in evidence.blobs.items()}
        except (binascii.Error, ValueError) as exc:
            raise PeerError("the evidence is not valid base64") from exc
        if hashlib.sha256(output).hexdigest() != case.output_hash:
            raise PeerError("the evidence's output is not the one the provider signed")
        store = self.node.store
        for digest, data in blobs.items():
            if hashlib.sha256(data).hexdigest() != digest:
                raise PeerError(f"an evidence blob does not hash to its name {digest[:12]}")
            if not store.has(digest):
                store.put(data, owner=f"dispute:{case.dispute[:18]}")
        return array_from_npy(output, max_bytes=self.node.config.max_output_bytes + 4096)
