"""The reward pool's contract client (``contracts/RewardPool.vy``) and its Merkle trees.

A federated run's sponsor funds a pool; after a round the run's coordinator posts the
contributions as the Merkle root of (contributor, amount) leaves (:class:`RewardTree`
builds it and each contributor's proof); contributors claim with their proof once the
challenge window has passed.

Royalties: a model's registrant sets its price per compute unit once
(:meth:`RewardPoolClient.set_royalty`); a payment for the model
(:meth:`~RewardPoolClient.pay_royalty`) flows up its lineage to trainers (who
withdraw) and to the data contributors of the posting behind each model (who claim
with the posting's tree, :meth:`~RewardPoolClient.claim_royalty`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode

from .._exceptions import InvalidInput
from ..protocol import Account, checksum, merkle_proof, merkle_root
from ..protocol._keccak import keccak256
from ._backend import TxResult
from ._clients import ContractClient

__all__ = [
    "DataRoyalty",
    "PoolState",
    "Posted",
    "PostingState",
    "RewardPoolClient",
    "RewardTree",
    "RoyaltyTerms",
    "reward_leaf",
]


def _run(run: bytes) -> bytes:
    if len(run) != 32:
        raise InvalidInput(f"a run id is 32 bytes, not {len(run)}")
    return run


def _model(model: bytes) -> bytes:
    if len(model) != 32:
        raise InvalidInput(f"a model hash is 32 bytes, not {len(model)}")
    return model


def reward_leaf(run: bytes, round: int, contributor: str, amount: int) -> bytes:
    """``keccak256(abi_encode(run, round, contributor, amount))``, as the pool hashes it."""
    return keccak256(
        abi_encode(
            ["bytes32", "uint256", "address", "uint256"],
            [_run(run), round, checksum(contributor), amount],
        )
    )


@dataclass(frozen=True)
class Posted:
    """A posting as its ``Posted`` event records it: every contributor's amount."""

    run: bytes
    round: int
    model: bytes
    root: bytes
    inputs: bytes  # sha256 of the round's published inputs
    block: int
    amounts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.amounts.values())

    def shares(self) -> dict[str, float]:
        """Each contributor's fraction of the posting."""
        return {c: a / self.total for c, a in self.amounts.items()}

    def tree(self) -> RewardTree:
        return RewardTree(self.run, self.round, self.amounts)


@dataclass(frozen=True)
class RewardTree:
    """One round's contributions as the pool's Merkle tree: the root to post, the total,
    and each contributor's proof. Contributors in ascending address order (as numbers);
    one leaf each."""

    run: bytes
    round: int
    amounts: Mapping[str, int]

    def __post_init__(self) -> None:
        if not self.amounts:
            raise InvalidInput("a posting names at least one contributor")
        if any(int(a) <= 0 for a in self.amounts.values()):
            raise InvalidInput("a contributor's amount is positive")
        normal = {checksum(c): int(a) for c, a in self.amounts.items()}
        if len(normal) != len(self.amounts):
            raise InvalidInput("a contributor appears twice")
        # ascending address order, as the pool requires
        ordered = sorted(normal.items(), key=lambda item: int(item[0], 16))
        object.__setattr__(self, "amounts", dict(ordered))

    @property
    def contributors(self) -> list[str]:
        return list(self.amounts)

    def _leaves(self) -> list[bytes]:
        return [reward_leaf(self.run, self.round, c, a) for c, a in self.amounts.items()]

    @property
    def root(self) -> bytes:
        return merkle_root(self._leaves())

    @property
    def total(self) -> int:
        return sum(self.amounts.values())

    def proof(self, contributor: str) -> list[bytes]:
        who = checksum(contributor)
        if who not in self.amounts:
            raise InvalidInput(f"{who} is not in round {self.round}'s posting")
        return merkle_proof(self._leaves(), self.contributors.index(who))


@dataclass(frozen=True)
class PoolState:
    sponsor: str
    budget: int
    locked_until: int


@dataclass(frozen=True)
class PostingState:
    root: bytes
    model: bytes
    total: int
    claimed: int
    posted_at: int
    expired: bool


@dataclass(frozen=True)
class RoyaltyTerms:
    """A model's royalty, fixed by its registrant: wei per compute unit, and the data
    contributors' part (basis points) of the model's own share."""

    rate: int
    data_bps: int


@dataclass(frozen=True)
class DataRoyalty:
    """A model's data royalty: what its contributors received so far, and claimed."""

    received: int
    claimed: int


class RewardPoolClient(ContractClient):
    """Data contributors' rewards: fund, post, claim, expire, reclaim; and models'
    royalties: set, pay, withdraw (trainers), claim (data contributors)."""

    _name = "RewardPool"

    def challenge_window(self) -> int:
        return int(self._call("challenge_window"))

    def claim_period(self) -> int:
        return int(self._call("claim_period"))

    def fund(self, run: bytes, amount: int, locked_until: int, *, sender: Account) -> TxResult:
        """Put ``amount`` (approved beforehand) in ``run``'s pool until ``locked_until``."""
        return self._send("fund", _run(run), amount, locked_until, sender=sender)

    def post(
        self, tree: RewardTree, model: bytes, *, inputs: bytes = bytes(32), sender: Account
    ) -> TxResult:
        """Post ``tree``'s amounts for its round's ``model`` (the run's coordinator; the
        pool computes the same root), with the sha256 of the round's published
        ``inputs``."""
        return self._send(
            "post",
            _run(tree.run),
            tree.round,
            model,
            tree.contributors,
            list(tree.amounts.values()),
            _model(inputs),
            sender=sender,
        )

    def postings_of(self, run: bytes, from_block: int = 0) -> dict[int, Posted]:
        """Every posting of ``run`` as its ``Posted`` event records it, by round."""
        return {p.round: p for p in self._posted(from_block, run=_run(run))}

    def set_arbiter(self, arbiter: str, *, sender: Account) -> TxResult:
        """Name the dispute contract (the deployer, once: the deployment does it)."""
        return self._send("set_arbiter", checksum(arbiter), sender=sender)

    def disputed(self, run: bytes, round: int) -> bool:
        """Whether round ``round``'s posting is under a challenge (its claims wait)."""
        return bool(self._call("disputed", _run(run), round))

    def all_postings(self, from_block: int = 0) -> list[Posted]:
        """Every posting since ``from_block``, as the ``Posted`` events record them."""
        return self._posted(from_block)

    def _posted(self, from_block: int, **filters: Any) -> list[Posted]:
        latest = self.backend.block_number()
        return [
            Posted(
                run=bytes(args["run"]),
                round=int(args["round"]),
                model=bytes(args["model"]),
                root=bytes(args["root"]),
                inputs=bytes(args["inputs"]),
                block=block,
                amounts={
                    checksum(c): int(a)
                    for c, a in zip(args["contributors"], args["amounts"], strict=True)
                },
            )
            for block, args in self.logs("Posted", from_block, latest, **filters)
        ]

    def posted(self, model: bytes, from_block: int = 0) -> Posted | None:
        """The posting that pays ``model``'s data contributors (its first), from its
        ``Posted`` event; None when no posting does."""
        ref = self.round_of(model)
        if ref is None:
            return None
        return self.postings_of(ref[0], from_block).get(ref[1])

    def claim(
        self,
        run: bytes,
        round: int,
        contributor: str,
        amount: int,
        proof: Sequence[bytes],
        *,
        sender: Account,
    ) -> TxResult:
        """Pay ``contributor`` its ``amount`` of ``round``'s posting (anyone may send it)."""
        return self._send(
            "claim", _run(run), round, checksum(contributor), amount, list(proof), sender=sender
        )

    def claim_from(self, tree: RewardTree, contributor: str, *, sender: Account) -> TxResult:
        """:meth:`claim` with ``tree``'s amount and proof for ``contributor``."""
        who = checksum(contributor)
        return self.claim(
            tree.run, tree.round, who, tree.amounts.get(who, 0), tree.proof(who), sender=sender
        )

    def expire(self, run: bytes, round: int, *, sender: Account) -> TxResult:
        return self._send("expire", _run(run), round, sender=sender)

    def reclaim(self, run: bytes, *, sender: Account) -> TxResult:
        return self._send("reclaim", _run(run), sender=sender)

    def pool(self, run: bytes) -> PoolState:
        sponsor, budget, locked = self._call("pools", _run(run))
        return PoolState(checksum(sponsor), int(budget), int(locked))

    def posting(self, run: bytes, round: int) -> PostingState:
        root, model, total, claimed, at, expired = self._call("postings", _run(run), round)
        return PostingState(bytes(root), bytes(model), int(total), int(claimed), int(at),
                            bool(expired))  # fmt: skip

    def claimed(self, run: bytes, round: int, contributor: str) -> bool:
        key = keccak256(
            abi_encode(["bytes32", "uint256", "address"], [_run(run), round, checksum(contributor)])
        )
        return bool(self._call("claimed", key))

    # -- royalties -----------------------------------------------------------

    def set_royalty(self, model: bytes, rate: int, data_bps: int, *, sender: Account) -> TxResult:
        """Fix ``model``'s royalty at ``rate`` wei per compute unit, ``data_bps`` of its
        own share to its data contributors (its registrant, once)."""
        return self._send("set_royalty", _model(model), rate, data_bps, sender=sender)

    def royalty(self, model: bytes) -> RoyaltyTerms | None:
        """``model``'s royalty terms, or None when its registrant set none."""
        rate, data_bps = self._call("royalty", _model(model))
        return RoyaltyTerms(int(rate), int(data_bps)) if int(rate) else None

    def royalty_rate(self, model: bytes) -> int:
        """Wei per compute unit for ``model`` (0: no royalty)."""
        return int(self._call("royalty_rate", _model(model)))

    def pay_royalty(self, model: bytes, amount: int, *, sender: Account) -> TxResult:
        """Pay ``amount`` (approved beforehand) of royalty for ``model``; it is shared
        along the model's lineage."""
        return self._send("pay_royalty", _model(model), amount, sender=sender)

    def withdraw_royalties(self, *, sender: Account) -> TxResult:
        """Pay ``sender`` the royalties it is owed as a trainer."""
        return self._send("withdraw_royalties", sender=sender)

    def owed(self, account: str) -> int:
        """The royalties ``account`` is owed as a trainer and has not withdrawn."""
        return int(self._call("owed", checksum(account)))

    def royalties_of(self, model: bytes) -> DataRoyalty:
        received, claimed = self._call("royalties_of", _model(model))
        return DataRoyalty(int(received), int(claimed))

    def round_of(self, model: bytes) -> tuple[bytes, int] | None:
        """The (run, round) of the posting that pays ``model``'s data contributors, or
        None when no posting does."""
        run, round = self._call("round_of", _model(model))
        return (bytes(run), int(round)) if any(run) else None

    def royalty_claimed(self, model: bytes, contributor: str) -> int:
        """What ``contributor`` has claimed of ``model``'s data royalty so far."""
        key = keccak256(abi_encode(["bytes32", "address"], [_model(model), checksum(contributor)]))
        return int(self._call("royalty_claimed", key))

    def claim_royalty(
        self, model: bytes, tree: RewardTree, contributor: str, *, sender: Account
    ) -> TxResult:
        """Pay ``contributor`` its share of ``model``'s data royalty not claimed yet, with
        its amount and proof in ``tree`` (the posting behind the model; anyone may send
        it)."""
        who = checksum(contributor)
        return self._send(
            "claim_royalty",
            _model(model),
            who,
            tree.amounts.get(who, 0),
            tree.proof(who),
            sender=sender,
        )
