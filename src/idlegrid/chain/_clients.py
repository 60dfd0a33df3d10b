"""Typed clients for the idlegrid contracts, on one shared base.

Every write takes ``sender=`` (an :class:`~idlegrid.protocol.Account`) and
returns a :class:`TxResult`; every failure is an idlegrid exception carrying
the contract's reason. Nothing here returns a web3 or ABI object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract

from .._exceptions import InvalidInput
from ..protocol import (
    MARKET_DOMAIN_NAME,
    Account,
    Domain,
    Permit,
    Signature,
    Voucher,
    checksum,
    royalties_hash,
)
from ._backend import ChainBackend, TxResult
from ._compile import Artifact, compile_all
from ._errors import translate
from ._types import (
    ChannelState,
    ChannelTerms,
    Contribution,
    DisputeOutcome,
    DisputeState,
    DisputeStatus,
    ProviderInfo,
    ReceiptFields,
)

__all__ = [
    "ContractClient",
    "DisputeClient",
    "FederatedRunRecord",
    "MarketClient",
    "ModelRecord",
    "ModelRegistryClient",
    "RegistryClient",
    "TokenClient",
    "TrainingOutcome",
    "TrainingRecord",
    "deploy_contract",
    "vote_commitment",
]


def deploy_contract(
    backend: ChainBackend,
    name: str,
    args: Sequence[Any],
    *,
    sender: Account,
    artifact: Artifact | None = None,
) -> str:
    """Deploy contract ``name`` with constructor ``args``; return its address.

    The artifact is the compiled contract of that name unless ``artifact`` is given.
    """
    art = artifact or compile_all()[name]
    factory = backend.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    with translate(f"{name}.__init__"):
        tx = factory.constructor(*args).build_transaction(
            {"from": sender.address, "gas": 8_000_000}
        )
    result = backend.send(sender, {"data": tx["data"], "gas": tx["gas"]}, function=f"deploy {name}")
    return checksum(result.receipt["contractAddress"])


class ContractClient:
    """Shared plumbing of a typed contract client: a bound contract, calls and transactions.

    A subclass names its compiled contract in ``_name``; ``abi`` overrides the
    compiled one (a contract compiled from a file outside ``contracts/``).
    """

    _name: str

    def __init__(
        self, backend: ChainBackend, address: str, *, abi: list[dict[str, Any]] | None = None
    ) -> None:
        self.backend = backend
        self.address = checksum(address)
        self._c: Contract = backend.w3.eth.contract(
            address=Web3.to_checksum_address(self.address),
            abi=abi if abi is not None else compile_all()[self._name].abi,
        )

    def _call(self, fn: str, *args: Any) -> Any:
        with translate(f"{self._name}.{fn}"):
            return getattr(self._c.functions, fn)(*args).call()

    def _send(self, fn: str, *args: Any, sender: Account) -> TxResult:
        label = f"{self._name}.{fn}"
        with translate(label):
            data = self._c.encode_abi(fn, args=list(args))
        return self.backend.send(sender, {"to": self.address, "data": data}, function=label)

    def owner(self) -> str:
        """The contract's owner (the ``ownable`` module)."""
        return checksum(self._call("owner"))

    def pending_owner(self) -> str:
        """The proposed next owner (the zero address when no transfer is under way)."""
        return checksum(self._call("pending_owner"))

    def transfer_ownership(self, new_owner: str, *, sender: Account) -> TxResult:
        """Propose ``new_owner`` as the next owner (owner only); it must then accept."""
        return self._send("transfer_ownership", checksum(new_owner), sender=sender)

    def accept_ownership(self, *, sender: Account) -> TxResult:
        """Take the owner role proposed to ``sender``."""
        return self._send("accept_ownership", sender=sender)

    def logs(
        self, event: str, from_block: int, to_block: int, **filters: Any
    ) -> list[tuple[int, dict[str, Any]]]:
        """``(block number, decoded args)`` of this contract's ``event`` logs in blocks
        ``from_block..to_block`` (inclusive), filtered on indexed ``filters``."""
        with translate(f"{self._name}.{event} logs"):
            found = getattr(self._c.events, event)().get_logs(
                from_block=from_block, to_block=to_block, argument_filters=filters or None
            )
        return [(int(log["blockNumber"]), dict(log["args"])) for log in found]

    def _events(self, event: str, result: TxResult) -> list[dict[str, Any]]:
        """Decoded ``event`` logs of one transaction, as plain dicts."""
        from web3.logs import DISCARD

        logs = getattr(self._c.events, event)().process_receipt(result.receipt, errors=DISCARD)
        return [dict(log["args"]) for log in logs]


class TokenClient(ContractClient):
    """The ERC-20 + EIP-2612 token."""

    _name = "Token"

    def name(self) -> str:
        return str(self._call("name"))

    def symbol(self) -> str:
        return str(self._call("symbol"))

    def decimals(self) -> int:
        return int(self._call("decimals"))

    def total_supply(self) -> int:
        return int(self._call("totalSupply"))

    def balance_of(self, owner: str) -> int:
        return int(self._call("balanceOf", checksum(owner)))

    def allowance(self, owner: str, spender: str) -> int:
        return int(self._call("allowance", checksum(owner), checksum(spender)))

    def nonce(self, owner: str) -> int:
        """The owner's next EIP-2612 permit nonce."""
        return int(self._call("nonces", checksum(owner)))

    def domain(self) -> Domain:
        """The EIP-712 domain of ``permit``."""
        return Domain(
            name=self.name(), chain_id=self.backend.chain_id, verifying_contract=self.address
        )

    def transfer(self, to: str, amount: int, *, sender: Account) -> TxResult:
        return self._send("transfer", checksum(to), amount, sender=sender)

    def approve(self, spender: str, amount: int, *, sender: Account) -> TxResult:
        return self._send("approve", checksum(spender), amount, sender=sender)

    def transfer_from(self, owner: str, to: str, amount: int, *, sender: Account) -> TxResult:
        return self._send("transferFrom", checksum(owner), checksum(to), amount, sender=sender)

    def permit(self, permit: Permit, signature: Signature, *, sender: Account) -> TxResult:
        """Submit a signed permit (anyone may send it)."""
        return self._send(
            "permit",
            checksum(permit.owner),
            checksum(permit.spender),
            permit.value,
            permit.deadline,
            signature.v,
            signature.r,
            signature.s,
            sender=sender,
        )

    def mint(self, to: str, amount: int, *, sender: Account) -> TxResult:
        """Create tokens (owner only: the faucet)."""
        return self._send("mint", checksum(to), amount, sender=sender)


class RegistryClient(ContractClient):
    """The provider registry: endpoints, prices, stakes."""

    _name = "ProviderRegistry"

    def min_stake(self) -> int:
        return int(self._call("min_stake"))

    def unbonding_delay(self) -> int:
        return int(self._call("unbonding_delay"))

    def market(self) -> str:
        return checksum(self._call("market"))

    def set_market(self, market: str, *, sender: Account) -> TxResult:
        return self._send("set_market", checksum(market), sender=sender)

    def register(
        self, endpoint: str, price: int, capabilities: bytes, stake: int, *, sender: Account
    ) -> TxResult:
        """Register ``sender`` as a provider, locking ``stake`` (approve the registry first)."""
        return self._send("register", endpoint, price, _b32(capabilities), stake, sender=sender)

    def update(
        self, endpoint: str, price: int, capabilities: bytes, *, sender: Account
    ) -> TxResult:
        return self._send("update", endpoint, price, _b32(capabilities), sender=sender)

    def add_stake(self, amount: int, *, sender: Account) -> TxResult:
        return self._send("add_stake", amount, sender=sender)

    def begin_unbonding(self, amount: int, *, sender: Account) -> TxResult:
        return self._send("begin_unbonding", amount, sender=sender)

    def withdraw(self, *, sender: Account) -> TxResult:
        return self._send("withdraw", sender=sender)

    def slashable(self, address: str) -> int:
        """What a slash of ``address`` can take now: its stake plus unbonding tokens."""
        return int(self._call("slashable", checksum(address)))

    def slash(self, provider: str, amount: int, beneficiary: str, *, sender: Account) -> TxResult:
        """Only the market may call this; exposed for tests of that rule."""
        return self._send("slash", checksum(provider), amount, checksum(beneficiary), sender=sender)

    def provider(self, address: str) -> ProviderInfo:
        addr = checksum(address)
        endpoint, price, caps, stake, unbonding, withdrawable_at, registered = self._call(
            "providers", addr
        )
        return ProviderInfo(
            address=addr,
            endpoint=str(endpoint),
            price=int(price),
            capabilities=bytes(caps),
            stake=int(stake),
            unbonding=int(unbonding),
            withdrawable_at=int(withdrawable_at),
            registered=bool(registered),
            active=self.is_active(addr),
        )

    def is_active(self, address: str) -> bool:
        return bool(self._call("is_active", checksum(address)))

    def active_count(self) -> int:
        return int(self._call("active_count"))

    def active_providers(self) -> list[str]:
        """Every active provider's address (paged 256 at a time)."""
        out: list[str] = []
        count = self.active_count()
        while len(out) < count:
            page = self._call("active_providers", len(out), 256)
            if not page:
                break
            out.extend(checksum(a) for a in page)
        return out


class MarketClient(ContractClient):
    """The job market: escrow balances, payment channels, contribution records."""

    _name = "JobMarket"

    def token(self) -> str:
        return checksum(self._call("token"))

    def registry(self) -> str:
        return checksum(self._call("registry"))

    def close_window(self) -> int:
        return int(self._call("close_window"))

    def arbiter(self) -> str:
        return checksum(self._call("arbiter"))

    def domain(self) -> Domain:
        """The EIP-712 domain of vouchers."""
        return Domain(MARKET_DOMAIN_NAME, self.backend.chain_id, self.address)

    def balance_of(self, account: str) -> int:
        """Tokens held for ``account`` in the market, free to spend or withdraw."""
        return int(self._call("balance_of", checksum(account)))

    def deposit(self, amount: int, *, sender: Account) -> TxResult:
        return self._send("deposit", amount, sender=sender)

    def withdraw(self, amount: int, *, sender: Account) -> TxResult:
        return self._send("withdraw", amount, sender=sender)

    def open_channel(
        self,
        provider: str,
        amount: int,
        expiry: int,
        *,
        sender: Account,
        salt: int | None = None,
    ) -> tuple[ChannelTerms, TxResult]:
        """Open a channel from ``sender`` to ``provider``; the deposit comes from the
        sender's market balance, then (for any shortfall) from its wallet."""
        terms = ChannelTerms.new(sender.address, provider, amount, expiry)
        if salt is not None:
            terms = ChannelTerms(terms.client, terms.provider, amount, expiry, salt)
        result = self._send(
            "open_channel", terms.provider, amount, expiry, terms.salt, sender=sender
        )
        return terms, result

    def top_up(self, terms: ChannelTerms, amount: int, expiry: int, *, sender: Account) -> TxResult:
        return self._send("top_up", terms.as_tuple(), amount, expiry, sender=sender)

    def redeem(
        self, terms: ChannelTerms, voucher: Voucher, signature: Signature, *, sender: Account
    ) -> TxResult:
        """Redeem a client-signed voucher (the channel's provider only)."""
        if voucher.channel != terms.id:
            raise InvalidInput("voucher is for another channel")
        return self._send(
            "redeem",
            terms.as_tuple(),
            voucher.amount,
            voucher.jobs,
            voucher.units,
            voucher.receipts_root,
            [(model, owed) for model, owed in voucher.royalties],
            signature.v,
            signature.r,
            signature.s,
            sender=sender,
        )

    def close(self, terms: ChannelTerms, *, sender: Account) -> TxResult:
        return self._send("close", terms.as_tuple(), sender=sender)

    def set_royalty_pool(self, pool: str, *, sender: Account) -> TxResult:
        """Name the RewardPool that takes vouchers' royalties (owner only, once)."""
        return self._send("set_royalty_pool", checksum(pool), sender=sender)

    def royalty_pool(self) -> str | None:
        """The RewardPool vouchers' royalties go to (None: not set)."""
        pool = checksum(self._call("royalty_pool"))
        return None if int(pool, 16) == 0 else pool

    def royalties_paid(self, channel: bytes, model: bytes) -> int:
        """Royalties the channel's redeemed vouchers paid ``model``'s lineage."""
        return int(self._call("royalties_paid", channel, model))

    def set_arbiter(self, arbiter: str, *, sender: Account) -> TxResult:
        """Name the dispute contract (owner only, once: the deployment does it)."""
        return self._send("set_arbiter", checksum(arbiter), sender=sender)

    def slash(self, provider: str, amount: int, beneficiary: str, *, sender: Account) -> TxResult:
        """Slash a provider's stake (the arbiter only)."""
        return self._send("slash", checksum(provider), amount, checksum(beneficiary), sender=sender)

    def locked_until(self, provider: str) -> int:
        """The latest ``expiry + close_window`` of the channels to ``provider``."""
        return int(self._call("locked_until", checksum(provider)))

    def stake_locked(self, provider: str) -> bool:
        """Whether ``provider``'s stake backs channels or disputes (it cannot withdraw)."""
        return bool(self._call("stake_locked", checksum(provider)))

    def channel(self, terms: ChannelTerms) -> ChannelState:
        cid, deposit, expiry, paid, jobs, units, is_open, closed = self._call(
            "channel", terms.as_tuple()
        )
        return ChannelState(bytes(cid), deposit, expiry, paid, jobs, units, is_open, closed)

    def channel_id(self, terms: ChannelTerms) -> bytes:
        return bytes(self._call("channel_id", terms.as_tuple()))

    def record(self, provider: str) -> Contribution:
        earned, jobs, units = self._call("record", checksum(provider))
        return Contribution(int(earned), int(jobs), int(units))

    def voucher_digest(self, voucher: Voucher) -> bytes:
        return bytes(
            self._call(
                "voucher_digest",
                voucher.channel,
                voucher.amount,
                voucher.jobs,
                voucher.units,
                voucher.receipts_root,
                royalties_hash(voucher.royalties),
            )
        )

    def verify_receipt(self, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
        """Check a Merkle proof with the contract's own code."""
        return bool(self._call("verify_receipt", leaf, list(proof), root))


class DisputeClient(ContractClient):
    """The dispute contract: the market's arbiter, the only route to a slash.

    Lifecycle: :meth:`open` (with a bond) -> :meth:`draw` -> :meth:`commit` ->
    :meth:`reveal` -> :meth:`resolve`, each stage with a deadline.
    """

    _name = "Disputes"

    def market(self) -> str:
        return checksum(self._call("market"))

    def bond(self) -> int:
        """Tokens a challenger locks to open a dispute."""
        return int(self._call("bond"))

    def slash_bps(self) -> int:
        return int(self._call("slash_bps"))

    def penalty(self) -> int:
        return int(self._call("penalty"))

    def referee_penalty(self) -> int:
        return int(self._call("referee_penalty"))

    def committee_size(self) -> int:
        return int(self._call("committee_size"))

    def dispute_window(self) -> int:
        return int(self._call("dispute_window"))

    def draw_period(self) -> int:
        return int(self._call("draw_period"))

    def commit_period(self) -> int:
        return int(self._call("commit_period"))

    def reveal_period(self) -> int:
        return int(self._call("reveal_period"))

    def pending(self, address: str) -> int:
        """Open disputes that may still slash ``address`` (as accused or referee)."""
        return int(self._call("pending", checksum(address)))

    def dispute(self, dispute: bytes) -> DisputeState:
        raw = self._call("dispute", _b32(dispute))
        (status, outcome, provider, challenger, client, amount, seed, draw, commit, reveal) = raw[
            :10
        ]
        commits, wrong, right, committee = raw[10:]
        return DisputeState(
            id=dispute,
            status=DisputeStatus(status),
            outcome=DisputeOutcome(outcome),
            provider=checksum(provider),
            challenger=checksum(challenger),
            client=checksum(client),
            amount=int(amount),
            seed_block=int(seed),
            draw_deadline=int(draw),
            commit_deadline=int(commit),
            reveal_deadline=int(reveal),
            commits=int(commits),
            wrong_votes=int(wrong),
            right_votes=int(right),
            committee=tuple(checksum(a) for a in committee),
        )

    def ballot(self, dispute: bytes, referee: str) -> int:
        """0 not on the committee, 1 seated, 2 committed, 3 voted wrong, 4 voted right."""
        return int(self._call("ballot", _b32(dispute), checksum(referee)))

    def commitment(self, dispute: bytes, referee: str, wrong: bool, salt: bytes) -> bytes:
        """The contract's own :func:`vote_commitment` (a cross-check)."""
        return bytes(self._call("commitment", _b32(dispute), checksum(referee), wrong, _b32(salt)))

    def receipt_leaf(self, receipt: ReceiptFields) -> bytes:
        """A receipt's Merkle leaf, computed by the contract."""
        return bytes(self._call("receipt_leaf", _receipt_tuple(receipt)))

    def receipt_digest(self, leaf: bytes) -> bytes:
        """The EIP-712 digest a provider signs for ``leaf`` (node domain)."""
        return bytes(self._call("receipt_digest", _b32(leaf)))

    def open(
        self,
        terms: ChannelTerms,
        voucher: Voucher,
        voucher_signature: Signature,
        receipt: ReceiptFields,
        signature: Signature,
        proof: Sequence[bytes],
        *,
        sender: Account,
    ) -> tuple[bytes, TxResult]:
        """Dispute ``receipt`` (approve the bond to this contract first); returns its id.

        ``voucher`` (signed by the channel's client: ``voucher_signature``) is a voucher
        of the channel that the market has paid at least (it, or a later one, was
        redeemed); ``proof`` leads from the receipt's leaf to its receipts root.
        ``signature`` is the provider's, of the receipt.
        """
        if voucher.channel != terms.id:
            raise InvalidInput("voucher is for another channel")
        result = self._send(
            "open",
            terms.as_tuple(),
            (
                voucher.amount,
                voucher.jobs,
                voucher.units,
                _b32(voucher.receipts_root),
                _b32(royalties_hash(voucher.royalties)),
            ),
            _signature_tuple(voucher_signature),
            _receipt_tuple(receipt),
            _signature_tuple(signature),
            [_b32(p) for p in proof],
            sender=sender,
        )
        [event] = self._events("DisputeOpened", result)
        return bytes(event["dispute"]), result

    def open_answer(
        self,
        request_id: int,
        provider: str,
        model: bytes,
        input_hash: bytes,
        output: Sequence[int],
        named_at: int,
        *,
        sender: Account,
    ) -> tuple[bytes, TxResult]:
        """Dispute an oracle answer the oracle named an outlier (approve the bond to
        this contract first); the fields are the request's and the ``Outlier`` event's.
        Returns the dispute's id."""
        result = self._send(
            "open_answer", request_id, checksum(provider), _b32(model), _b32(input_hash),
            [int(v) for v in output], named_at, sender=sender,
        )  # fmt: skip
        [event] = self._events("DisputeOpened", result)
        return bytes(event["dispute"]), result

    def open_posting(self, run: bytes, round: int, *, sender: Account) -> tuple[bytes, TxResult]:
        """Challenge a RewardPool posting within its window (approve the bond to this
        contract first); returns the dispute's id."""
        result = self._send("open_posting", _b32(run), round, sender=sender)
        [event] = self._events("DisputeOpened", result)
        return bytes(event["dispute"]), result

    def oracle(self) -> str:
        """The oracle whose outlier answers can be disputed (the zero address: none)."""
        return checksum(self._call("oracle"))

    def draw(self, dispute: bytes, *, sender: Account) -> TxResult:
        """Draw the committee (anyone, once the seed block is mined)."""
        return self._send("draw", _b32(dispute), sender=sender)

    def commit(self, dispute: bytes, commitment: bytes, *, sender: Account) -> TxResult:
        """Commit a vote (a committee member): see :func:`vote_commitment`."""
        return self._send("commit", _b32(dispute), _b32(commitment), sender=sender)

    def reveal(self, dispute: bytes, wrong: bool, salt: bytes, *, sender: Account) -> TxResult:
        """Reveal a committed vote: ``wrong`` when the re-executed result disagrees."""
        return self._send("reveal", _b32(dispute), wrong, _b32(salt), sender=sender)

    def gas_of(self, dispute: bytes, from_block: int = 0) -> int:
        """Gas of every transaction that logged an event of ``dispute`` since
        ``from_block``: open, draw, each commit and reveal, resolve (a whole dispute)."""
        w3 = self.backend.w3
        txs: set[bytes] = set()
        head = self.backend.block_number()
        for event in ("DisputeOpened", "DrawDeferred", "CommitteeDrawn", "VoteCommitted",
                      "VoteRevealed", "DisputeResolved"):  # fmt: skip
            with translate(f"{self._name}.{event} logs"):
                found = getattr(self._c.events, event)().get_logs(
                    from_block=from_block, to_block=head, argument_filters={"dispute": dispute}
                )
            txs.update(bytes(log["transactionHash"]) for log in found)
        total = 0
        with translate(f"{self._name} receipts"):
            for tx in txs:
                receipt: Any = w3.eth.get_transaction_receipt(tx)  # type: ignore[arg-type]
                total += int(receipt["gasUsed"])
        return total

    def resolve(self, dispute: bytes, *, sender: Account) -> TxResult:
        """Settle the dispute and pay everyone (anyone, once voting is over)."""
        return self._send("resolve", _b32(dispute), sender=sender)


SEED_DELAY = 2
"""Blocks between a training commitment and the block whose hash seeds its verification
(``ModelRegistry.SEED_DELAY``)."""


class TrainingOutcome(IntEnum):
    """A training run's verification outcome as the model registry records it."""

    NOT_VERIFIED = 0
    PASSED = 1
    FAILED = 2


@dataclass(frozen=True)
class TrainingRecord:
    """A training run's commitment, seed and verification outcome in the model registry.

    ``block`` is the block the commitment was mined in; the seed is the hash of block
    ``block + SEED_DELAY`` (zero until drawn). ``model`` is the model registered from
    the run (zero until then).
    """

    run: bytes
    spec_hash: bytes
    data_hash: bytes
    checkpoints_root: bytes
    intervals: int
    committer: str
    block: int
    seed: bytes
    outcome: TrainingOutcome
    checked: int
    failed: int
    model: bytes = bytes(32)

    @property
    def seed_block(self) -> int:
        """The block whose hash is the run's seed."""
        return self.block + SEED_DELAY


@dataclass(frozen=True)
class ModelRecord:
    """A model's lineage as the model registry holds it (hashes as bytes; zero = unknown).

    ``run`` is the training run it was registered from (zero for a model registered
    without one); ``training`` that run's record, with the verification outcome.
    """

    model: bytes
    spec_hash: bytes
    data_hash: bytes
    checkpoints_root: bytes
    parent: bytes
    trainer: str
    registrant: str
    registered_at: int
    run: bytes = bytes(32)
    training: TrainingRecord | None = None

    @property
    def outcome(self) -> TrainingOutcome:
        """The verification outcome of the run that trained it (NOT_VERIFIED without one)."""
        return self.training.outcome if self.training else TrainingOutcome.NOT_VERIFIED


MAX_PARTICIPANTS = 128
"""Most clients one federated round may name (``ModelRegistry.MAX_PARTICIPANTS``)."""


@dataclass(frozen=True)
class FederatedRunRecord:
    """A federated run in the model registry: its coordinator (the sender of its first
    round), how many rounds it registered, and the last round's number and model."""

    run: bytes
    coordinator: str
    rounds: int
    last_round: int
    last_model: bytes


class ModelRegistryClient(ContractClient):
    """The model registry: each model's lineage (spec, data, checkpoints, trainer, parent)
    and the training runs behind models trained on the network.

    A run: :meth:`commit_training` -> :meth:`draw` (or :meth:`wait_seed`) ->
    :meth:`record_verification` -> :meth:`register_trained`. A federated run:
    :meth:`register_round` once per round, by its coordinator.
    """

    _name = "ModelRegistry"

    def count(self) -> int:
        return int(self._call("count"))

    def seed_delay(self) -> int:
        """The contract's ``SEED_DELAY`` (a cross-check of :data:`SEED_DELAY`)."""
        return int(self._call("SEED_DELAY"))

    def registered(self, model: bytes) -> bool:
        return bool(self._call("registered", _b32(model)))

    def link_verifier(self, model: bytes, verifier: str, *, sender: Account) -> TxResult:
        """Link ``model``'s zero-knowledge verifier (its registrant, once)."""
        return self._send("linkVerifier", _b32(model), checksum(verifier), sender=sender)

    def verifier(self, model: bytes) -> str:
        """``model``'s zero-knowledge verifier (the zero address: none linked)."""
        return checksum(self._call("verifier", _b32(model)))

    def model(self, model: bytes) -> ModelRecord | None:
        """The record of ``model`` (the sha256 of its weights), or None if never registered.

        A model registered from a training run carries that run's record (``training``).
        """
        spec, data, root, parent, trainer, registrant, at, run = self._call("model", _b32(model))
        if int(at) == 0:
            return None
        run = bytes(run)
        return ModelRecord(
            model=_b32(model),
            spec_hash=bytes(spec),
            data_hash=bytes(data),
            checkpoints_root=bytes(root),
            parent=bytes(parent),
            trainer=checksum(trainer),
            registrant=checksum(registrant),
            registered_at=int(at),
            run=run,
            training=self.training(run) if any(run) else None,
        )

    def register(
        self,
        model: bytes,
        *,
        spec_hash: bytes = bytes(32),
        data_hash: bytes = bytes(32),
        checkpoints_root: bytes = bytes(32),
        trainer: str = "0x" + "00" * 20,
        parent: bytes = bytes(32),
        sender: Account,
    ) -> TxResult:
        """Record ``model``'s lineage (once; zero hashes mean unknown; no training run)."""
        return self._send(
            "register",
            _b32(model),
            _b32(spec_hash),
            _b32(data_hash),
            _b32(checkpoints_root),
            checksum(trainer),
            _b32(parent),
            sender=sender,
        )

    def lineage(self, model: bytes, *, max_depth: int = 64) -> list[ModelRecord]:
        """``model``'s record, then its parent's, and so on (at most ``max_depth``)."""
        out: list[ModelRecord] = []
        current: bytes | None = _b32(model)
        while current is not None and current != bytes(32) and len(out) < max_depth:
            record = self.model(current)
            if record is None:
                break
            out.append(record)
            current = record.parent
        return out

    # -- training runs -------------------------------------------------------
    def commit_training(
        self,
        run: bytes,
        *,
        spec_hash: bytes,
        data_hash: bytes,
        checkpoints_root: bytes,
        intervals: int,
        sender: Account,
    ) -> TxResult:
        """Commit run ``run``'s checkpoints root (once per run id; ``sender`` is its
        committer). Its seed is the hash of the block ``SEED_DELAY`` after this one."""
        return self._send(
            "commitTraining",
            _b32(run),
            _b32(spec_hash),
            _b32(data_hash),
            _b32(checkpoints_root),
            int(intervals),
            sender=sender,
        )

    def draw(self, run: bytes, *, sender: Account) -> bytes:
        """Fix the run's seed (anyone, once the seed block is mined and no more than 256
        blocks old); returns it."""
        result = self._send("draw", _b32(run), sender=sender)
        [event] = self._events("SeedDrawn", result)
        return bytes(event["seed"])

    def seed(self, run: bytes) -> bytes:
        """The run's seed (32 zero bytes until drawn)."""
        return bytes(self._call("seed", _b32(run)))

    def wait_seed(self, run: bytes, *, sender: Account, timeout_s: float = 60.0) -> bytes:
        """Wait for the run's seed block (on a development chain, which mines only on
        transactions, empty blocks are mined), draw the seed if nobody has, return it.

        ChainTimeout after ``timeout_s``; InvalidInput for a run never committed."""
        record = self.training(run)
        if record is None:
            raise InvalidInput(f"training run {run.hex()} was never committed")
        if any(record.seed):
            return record.seed
        # the draw needs block.number > seed block; its gas is estimated on the head
        # (anvil), so the head must already be past the seed block
        self.backend.wait_for_block(record.seed_block + 1, timeout_s=timeout_s)
        return self.draw(run, sender=sender)

    def training(self, run: bytes) -> TrainingRecord | None:
        """Run ``run``'s commitment, seed and outcome, or None if never committed."""
        raw = self._call("training", _b32(run))
        spec, data, root, intervals, committer, block, seed, outcome, checked, failed = raw[:10]
        if int(committer, 16) == 0:  # every commitment has a committer
            return None
        return TrainingRecord(
            run=_b32(run),
            spec_hash=bytes(spec),
            data_hash=bytes(data),
            checkpoints_root=bytes(root),
            intervals=int(intervals),
            committer=checksum(committer),
            block=int(block),
            seed=bytes(seed),
            outcome=TrainingOutcome(int(outcome)),
            checked=int(checked),
            failed=int(failed),
            model=bytes(raw[10]),
        )

    def record_verification(
        self, run: bytes, *, passed: bool, checked: int, failed: int, sender: Account
    ) -> TxResult:
        """Record the run's verification (its committer, once, after the draw):
        ``checked`` intervals replayed, ``failed`` of them out of tolerance."""
        return self._send(
            "recordVerification", _b32(run), bool(passed), int(checked), int(failed),
            sender=sender,
        )  # fmt: skip

    def register_trained(
        self,
        model: bytes,
        *,
        run: bytes,
        trainer: str,
        parent: bytes = bytes(32),
        sender: Account,
    ) -> TxResult:
        """Register the model run ``run`` trained (its committer, one model per run):
        spec, data and checkpoints root come from the run's commitment."""
        return self._send(
            "registerTrained", _b32(model), _b32(run), checksum(trainer), _b32(parent),
            sender=sender,
        )  # fmt: skip

    # -- federated runs ------------------------------------------------------
    def register_round(
        self,
        model: bytes,
        run: bytes,
        round: int,
        *,
        spec_hash: bytes,
        data_hash: bytes,
        parent: bytes | None,
        participants: Sequence[str],
        sender: Account,
        accuracy: float | None = None,
        epsilon: float | None = None,
    ) -> TxResult:
        """Register federated round ``round``'s global model ``model`` (the sha256 of its
        weights) with the clients whose updates it aggregates, and what the coordinator
        measured of it: ``accuracy`` on the sponsor's validation set (0..1) and the DP
        budget ``epsilon`` spent so far (None: not measured), recorded in millionths.

        ``sender`` is the run's coordinator (the first round's sender fixes it); rounds
        start at 1 and increase; ``parent`` is the previous round's model (None: no
        parent, for a first round). ``spec_hash`` is the run's spec, ``data_hash`` the
        sponsor's validation set. InvalidInput before anything is sent for a round below
        1, or for no, too many (over :data:`MAX_PARTICIPANTS`), repeated, zero or
        malformed participants.
        """
        if round < 1:
            raise InvalidInput(f"rounds are numbered from 1, got {round}")
        if not 1 <= len(participants) <= MAX_PARTICIPANTS:
            raise InvalidInput(
                f"a round names 1 to {MAX_PARTICIPANTS} participants, got {len(participants)}"
            )
        named = [checksum(p) for p in participants]
        if len(set(named)) != len(named):
            repeated = sorted({p for p in named if named.count(p) > 1})
            raise InvalidInput(f"participants named more than once: {', '.join(repeated)}")
        if any(int(p, 16) == 0 for p in named):
            raise InvalidInput("the zero address cannot be a participant")
        if accuracy is not None and not (math.isfinite(accuracy) and 0 <= accuracy <= 1):
            raise InvalidInput(f"accuracy is a fraction 0..1, got {accuracy}")
        if epsilon is not None and not (math.isfinite(epsilon) and 0 <= epsilon < 1e60):
            raise InvalidInput(f"epsilon is finite and >= 0, got {epsilon}")
        return self._send(
            "registerRound",
            _b32(model),
            _b32(run),
            int(round),
            _b32(spec_hash),
            _b32(data_hash),
            _b32(parent if parent is not None else bytes(32)),
            named,
            _millionths(accuracy),
            _millionths(epsilon),
            sender=sender,
        )

    def participants(self, model: bytes) -> list[str]:
        """The clients federated round model ``model`` aggregates, in the order its
        coordinator gave (empty for any other model)."""
        return [checksum(p) for p in self._call("participants", _b32(model))]

    def federated_run(self, run: bytes) -> FederatedRunRecord | None:
        """Federated run ``run``'s coordinator and last round, or None if it has none."""
        coordinator, rounds, last_round, last_model = self._call("federatedRun", _b32(run))
        if int(coordinator, 16) == 0:  # the first round fixes the coordinator
            return None
        return FederatedRunRecord(
            run=_b32(run),
            coordinator=checksum(coordinator),
            rounds=int(rounds),
            last_round=int(last_round),
            last_model=bytes(last_model),
        )

    def round_model(self, run: bytes, round: int) -> bytes | None:
        """The global model federated run ``run`` registered for ``round``, or None."""
        model = bytes(self._call("roundModel", _b32(run), int(round)))
        return model if any(model) else None


def vote_commitment(dispute: bytes, referee: str, wrong: bool, salt: bytes) -> bytes:
    """``keccak256(abi_encode(dispute, referee, wrong, salt))``: what a referee commits."""
    words = (
        _b32(dispute),
        bytes(12) + bytes.fromhex(checksum(referee)[2:]),
        int(wrong).to_bytes(32, "big"),
        _b32(salt),
    )
    return bytes(keccak(b"".join(words)))


def _receipt_tuple(
    receipt: ReceiptFields,
) -> tuple[bytes, bytes, str, bytes, bytes, bytes, int, int]:
    return (
        _b32(receipt.channel),
        _b32(receipt.job_id),
        checksum(receipt.provider),
        _b32(receipt.spec_hash),
        _b32(receipt.input_hash),
        _b32(receipt.output_hash),
        receipt.units,
        receipt.amount,
    )


def _signature_tuple(signature: Signature) -> tuple[int, bytes, bytes]:
    return (signature.v, signature.r, signature.s)


def _b32(value: bytes) -> bytes:
    if len(value) != 32:
        raise InvalidInput(f"expected 32 bytes, got {len(value)}")
    return value


#: a round's accuracy or epsilon the coordinator did not measure (ModelRegistry.NOT_MEASURED)
NOT_MEASURED = 2**256 - 1


def _millionths(value: float | None) -> int:
    return NOT_MEASURED if value is None else round(value * 1_000_000)


def from_millionths(value: int) -> float | None:
    """A round's accuracy or epsilon as registered: None when not measured."""
    return None if value == NOT_MEASURED else value / 1_000_000
