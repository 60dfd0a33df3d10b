"""The AI oracle's contract client (``contracts/IdlegridOracle.vy``) and its encodings.

A request is kept on chain as one word, the keccak256 of its :class:`OracleRequest`'s
commitment; everything else travels in the ``Requested`` event, and ``fulfill`` and
``cancel`` take the commitment back. Inputs and outputs are fixed point with 18
decimals (:func:`to_fixed`, :func:`from_fixed`). A committee member signs its own
answer (:func:`sign_answer`, EIP-712 ``OracleAnswer``); the contract takes the median
of each output over a majority of the committee.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from eth_abi import encode as abi_encode

from .._exceptions import InvalidInput, NotFound
from ..protocol import Account, checksum
from ..protocol._eip712 import Domain, typed_digest
from ..protocol._fastsig import sign_digest
from ..protocol._keccak import keccak256
from ._backend import TxResult
from ._clients import ContractClient, RegistryClient
from ._errors import translate

__all__ = [
    "FIXED_ONE",
    "ORACLE_DOMAIN",
    "OracleAnswer",
    "OracleClient",
    "OracleRequest",
    "commitment_hash",
    "encode_report",
    "from_fixed",
    "input_hash",
    "sign_answer",
    "to_fixed",
    "within_tolerance",
]

#: 1.0 in the oracle's fixed point (18 decimals)
FIXED_ONE = 10**18
#: the EIP-712 domain name of the oracle
ORACLE_DOMAIN = "idlegrid Oracle"
QUORUM, ZK = 0, 1
#: requests, and output values, in one delivery (the contract's MAX_BATCH, MAX_REPORT_OUTPUTS)
MAX_BATCH = 8
MAX_REPORT_OUTPUTS = 256
_ANSWER_TYPEHASH = keccak256(
    b"OracleAnswer(uint256 requestId,bytes32 commitment,bytes32 outputHash)"
)
_COMMITMENT = "(address,bytes32,bytes32,uint8,uint8,uint256,uint256,bytes32)"
_INT256 = 2**255


def to_fixed(values: Any) -> list[int]:
    """Floats to int256 fixed point with 18 decimals (rounded to nearest)."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(arr).all():
        raise InvalidInput("a fixed-point value must be finite")
    out = [round(float(v) * FIXED_ONE) for v in arr]
    if any(not -_INT256 <= v < _INT256 for v in out):
        raise InvalidInput("a value does not fit in int256 with 18 decimals")
    return out


def from_fixed(values: Sequence[int]) -> np.ndarray:
    """int256 fixed point with 18 decimals to float64."""
    return np.array([int(v) / FIXED_ONE for v in values], dtype=np.float64)


def input_hash(values: Sequence[int]) -> bytes:
    """``keccak256(abi_encode(int256[]))``, as the contract hashes a request's input."""
    return keccak256(abi_encode(["int256[]"], [list(values)]))


@dataclass(frozen=True)
class OracleRequest:
    """One request as its ``Requested`` event tells it (and its commitment)."""

    request_id: int
    consumer: str
    model: bytes
    input: tuple[int, ...]
    mode: int
    k: int
    fee: int
    deadline: int
    seed: bytes
    input_hash: bytes
    block: int = 0

    def commitment(self) -> tuple[Any, ...]:
        """The ``Commitment`` struct, as ``fulfill`` and ``cancel`` take it."""
        return (
            checksum(self.consumer), self.model, self.input_hash, self.mode, self.k, self.fee,
            self.deadline, self.seed,
        )  # fmt: skip

    @classmethod
    def from_event(cls, args: dict[str, Any], block: int = 0) -> OracleRequest:
        return cls(
            request_id=int(args["request_id"]),
            consumer=checksum(args["consumer"]),
            model=bytes(args["model"]),
            input=tuple(int(v) for v in args["input"]),
            mode=int(args["mode"]),
            k=int(args["k"]),
            fee=int(args["fee"]),
            deadline=int(args["deadline"]),
            seed=bytes(args["seed"]),
            input_hash=bytes(args["input_hash"]),
            block=block,
        )


def commitment_hash(req: OracleRequest) -> bytes:
    """The word the oracle keeps for an open request."""
    return keccak256(abi_encode([_COMMITMENT], [req.commitment()]))


@dataclass(frozen=True)
class OracleAnswer:
    """A committee member's signed answer: its position in the committee and output."""

    position: int
    output: tuple[int, ...]
    signature: bytes  # 65 bytes, r || s || v


#: an answer agrees with the result when within ABS_TOL or REL_TOL_PPM / 1e6 of it (the
#: contract's constants, 18 decimals)
ABS_TOL = 10**12
REL_TOL_PPM = 1_000


def within_tolerance(answer: Sequence[int], result: Sequence[int]) -> bool:
    """Whether ``answer`` agrees with ``result`` output by output, as the oracle judges
    a committee member's answer against the median (and a referee, a disputed answer
    against its own run of the model)."""
    if len(answer) != len(result):
        return False
    return all(
        abs(int(a) - int(b)) <= max(ABS_TOL, abs(int(b)) * REL_TOL_PPM // 1_000_000)
        for a, b in zip(answer, result, strict=True)
    )


def pack_output(output: Sequence[int]) -> bytes:
    """An answer's output as the contract hashes and carries it: its int256 words
    packed (``abi.encodePacked(int256[])``)."""
    return b"".join(int(v).to_bytes(32, "big", signed=True) for v in output)


def encode_report(
    reports: Sequence[tuple[OracleRequest, Sequence[OracleAnswer]]], *, sort: bool = True
) -> tuple[list[Any], list[Any], bytes]:
    """``fulfill``'s arguments ``(heads, sigs, outputs)`` for several requests' answers
    (put in position order unless ``sort`` is false: a test sends them as they come)."""
    if not 0 < len(reports) <= MAX_BATCH:
        raise InvalidInput(f"a report holds 1 to {MAX_BATCH} requests, not {len(reports)}")
    heads: list[Any] = []
    sigs: list[Any] = []
    outputs: list[bytes] = []
    for req, answers in reports:
        ordered = sorted(answers, key=lambda a: a.position) if sort else list(answers)
        if not ordered:
            raise InvalidInput(f"request {req.request_id}: no answers to deliver")
        width = len(ordered[0].output)
        if any(len(a.output) != width for a in ordered):
            raise InvalidInput(f"request {req.request_id}: answers of different widths")
        if any(not 0 <= a.position < 256 for a in ordered):
            raise InvalidInput(f"request {req.request_id}: a committee position is 0 to 255")
        positions = sum(a.position << (8 * i) for i, a in enumerate(ordered))
        heads.append((req.request_id, req.commitment(), len(ordered), width, positions))
        for a in ordered:
            sig = a.signature
            sigs.append((sig[64], sig[:32], sig[32:64]))
            outputs.append(pack_output(a.output))
    packed = b"".join(outputs)
    if len(packed) > 32 * MAX_REPORT_OUTPUTS:
        raise InvalidInput(f"a report holds at most {MAX_REPORT_OUTPUTS} output values")
    return heads, sigs, packed


def answer_digest(domain: Domain, req: OracleRequest, output: Sequence[int]) -> bytes:
    """The EIP-712 digest a committee member signs for its answer to ``req``."""
    output_hash = keccak256(pack_output(output))
    struct = keccak256(
        abi_encode(
            ["bytes32", "uint256", "bytes32", "bytes32"],
            [_ANSWER_TYPEHASH, req.request_id, commitment_hash(req), output_hash],
        )
    )
    return typed_digest(domain, struct)


def sign_answer(
    account: Account, domain: Domain, req: OracleRequest, position: int, output: Sequence[int]
) -> OracleAnswer:
    """``account``'s signed answer ``output`` at committee ``position``."""
    sig = sign_digest(account.key, answer_digest(domain, req, output))
    return OracleAnswer(position, tuple(int(v) for v in output), sig)


class OracleClient(ContractClient):
    """The inference oracle: requests, answers, refunds and the providers' earnings."""

    _name = "IdlegridOracle"
    _registry_client: RegistryClient | None = None

    def domain(self) -> Domain:
        return Domain(ORACLE_DOMAIN, self.backend.chain_id, self.address)

    def request(
        self, model: bytes, input: Sequence[int], *, mode: int = QUORUM, fee: int, sender: Account
    ) -> tuple[OracleRequest, TxResult]:
        """Ask for ``model``'s answer on ``input`` (fixed point); ``sender`` pays ``fee``
        (approved beforehand) and is the consumer."""
        result = self._send("request", model, list(input), mode, fee, sender=sender)
        (event,) = self._events("Requested", result)
        return OracleRequest.from_event(event, result.block), result

    def set_quorum(self, k: int, *, sender: Account) -> TxResult:
        return self._send("set_quorum", k, sender=sender)

    def quorum(self, consumer: str) -> int:
        """``consumer``'s quorum size (0: the default, 3)."""
        return int(self._call("quorum", checksum(consumer)))

    def committee(self, req: OracleRequest) -> list[str]:
        """The providers ``req``'s answers must come from, in position order."""
        return [checksum(a) for a in self._call("committee", req.request_id, req.commitment())]

    def is_open(self, request_id: int) -> bool:
        return any(bytes(self._call("commitments", request_id)))

    def fulfill(
        self, req: OracleRequest, answers: Sequence[OracleAnswer], *, sender: Account
    ) -> TxResult:
        """Deliver a quorum request's signed answers (put in position order)."""
        return self.fulfill_batch([(req, answers)], sender=sender)

    def fulfill_batch(
        self,
        reports: Sequence[tuple[OracleRequest, Sequence[OracleAnswer]]],
        *,
        sender: Account,
    ) -> TxResult:
        """Deliver several quorum requests' answers in one transaction (at most
        ``MAX_BATCH``); requests delivered or cancelled meanwhile, or expired, are
        skipped on chain (reverting only when none is left)."""
        return self._send("fulfill", *encode_report(reports), sender=sender)

    def fulfill_proof(
        self, req: OracleRequest, output: Sequence[int], proof: bytes, *, sender: Account
    ) -> TxResult:
        """Deliver a zero-knowledge request's output with its proof."""
        return self._send(
            "fulfill_proof", req.request_id, req.commitment(), list(req.input), list(output),
            proof, sender=sender,
        )  # fmt: skip

    def cancel(self, req: OracleRequest, *, sender: Account) -> TxResult:
        """Refund an unanswered request past its deadline (its consumer only)."""
        return self._send("cancel", req.request_id, req.commitment(), sender=sender)

    def withdraw(self, *, sender: Account) -> TxResult:
        return self._send("withdraw", sender=sender)

    def owed(self, provider: str) -> int:
        return int(self._call("owed", checksum(provider)))

    def declare_width(self, model: bytes, width: int, *, sender: Account) -> TxResult:
        """Declare ``model``'s input width (its registrant, once): requests of another
        width then revert at once."""
        return self._send("declare_width", model, width, sender=sender)

    def input_width(self, model: bytes) -> int:
        """``model``'s declared input width (0: not declared)."""
        return int(self._call("input_width", model))

    def verifier(self, model: bytes) -> str:
        """``model``'s zero-knowledge verifier, as the ModelRegistry links it (the zero
        address: none)."""
        from ._clients import ModelRegistryClient

        models = ModelRegistryClient(self.backend, checksum(self._call("models")))
        return models.verifier(model)

    def requests(self, from_block: int, to_block: int) -> list[OracleRequest]:
        """The requests made in blocks ``from_block..to_block``."""
        return [
            OracleRequest.from_event(args, block)
            for block, args in self.logs("Requested", from_block, to_block)
        ]

    def request_by_id(self, request_id: int, from_block: int = 0) -> OracleRequest:
        """The request ``request_id`` as its ``Requested`` event tells it (scanning from
        ``from_block``); NotFound when there is none."""
        found = self.logs(
            "Requested", from_block, self.backend.block_number(), request_id=request_id
        )
        if not found:
            raise NotFound(f"no oracle request {request_id}")
        block, args = found[0]
        return OracleRequest.from_event(args, block)

    def is_active_provider(self, address: str) -> bool:
        """Whether ``address`` is an active provider in the registry the oracle draws from."""
        return self._registry().is_active(address)

    def _registry(self) -> RegistryClient:
        if self._registry_client is None:
            self._registry_client = RegistryClient(self.backend, checksum(self._call("registry")))
        return self._registry_client

    def wait_fulfilled(
        self, request_id: int, from_block: int, *, timeout_s: float, poll_s: float = 0.05
    ) -> dict[str, Any] | None:
        """The ``Fulfilled`` log of ``request_id`` (``args``, ``blockNumber``,
        ``transactionHash``), polled from ``from_block`` on; None after ``timeout_s``."""
        import time

        event = self._c.events.Fulfilled()
        deadline = time.monotonic() + timeout_s
        while True:
            with translate(f"{self._name}.Fulfilled logs"):
                logs = event.get_logs(
                    from_block=from_block, to_block="latest",
                    argument_filters={"request_id": request_id},
                )  # fmt: skip
            if logs:
                return dict(logs[-1])
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll_s)

    def callback_gas(self) -> int:
        return int(self._call("CALLBACK_GAS"))
