"""The coordinator: runs a federated run's rounds over edge nodes, and pays them.

Any client can coordinate (the model's sponsor, who funds the run, usually does).
A round, after Flower's server loop (``flwr.server.Server.fit_round``):

1. *sample*: ``clients_per_round`` edge nodes that advertise the run's data set,
   drawn with ``numpy.random.default_rng([seed, round])`` from those that did not
   fail the previous round;
2. *secure aggregation* (``secagg: true``): the ``keys`` and ``share`` stages, so that
   each client's masking secrets are secret-shared among the others;
3. *fit*: each sampled node trains from the global model on its own data (an ``fl``
   job, paid through the same channels as any job); the round closes at its deadline
   with whoever answered, if at least ``min_clients`` did;
4. *check*: an update of the wrong shape, with NaN or Inf, or farther from the global
   model than ``max_update_norm`` (or than the DP clip) is refused and counted, with
   its reason;
5. *aggregate*: by the strategy (Flower's); under secure aggregation the ``unmask``
   stage gives the sum of the survivors' updates only; under DP, Gaussian noise is
   added to the mean and the accountant (opacus) records the round;
6. *evaluate* on the sponsor's validation set, *checkpoint* (``round-NNNN.npy``) and
   *register* the new global model in the ``ModelRegistry`` lineage with the
   participants (``registerRound``), its parent the previous round's model.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import (
    ContractReverted,
    IdlegridError,
    InvalidInput,
    NoProviders,
    PeerError,
    ProviderFailed,
    ProviderRefused,
)
from ..protocol import checksum, npy_bytes
from ..workloads import get_workload
from ..workloads._kind_fl import MAX_ROSTER, MAX_STAGE_BYTES
from ..workloads._train_models import param_count
from ._contrib import PATH_NODES
from ._held import HELD_DIR, forget_held, hold_round, refuse_unsettled
from ._inputs import MAX_INPUTS_BYTES, RoundInputs, fund_run
from ._local import evaluate_params, initial_params
from ._partition import client_seed
from ._run_inputs import MAX_RUN_ROUNDS, RunInputs
from ._secure_inputs import MAX_CLIENTS as MAX_SECURE_CLIENTS
from ._secure_inputs import SecureRoundInputs
from ._spec import FederatedSpec

if TYPE_CHECKING:
    from ..client import Client
    from ..client._selection import Candidate
    from ..client._session import ProviderSession

__all__ = ["Coordinator", "FederatedResult", "RoundReport", "check_update", "client_seed"]

log = logging.getLogger("idlegrid.fl")

#: what a secure round's history keeps of its models once they are not published
_EMPTY = np.zeros(0, np.float32)

#: bytes of a node's /v1/info the coordinator reads
MAX_INFO_BYTES = 1 << 20
#: key agreements a secure round tries when members fail to share their secrets
SHARE_ATTEMPTS = 3
#: rounds of keys a secure run asks each member for at once
KEY_ROUNDS_AHEAD = 64


@dataclass(frozen=True)
class RoundReport:
    """One round, as the live view and the result show it."""

    round: int
    accuracy: float
    loss: float
    participants: list[str]
    dropped: list[str]
    rejected: dict[str, str]
    epsilon: float | None
    seconds: float
    model: str  # sha256 of the round's global model (its ONNX export)
    paid: int  # wei paid to edge nodes so far in the run
    bytes_per_client: float  # bytes each participant exchanged with the coordinator
    #: whether this run registered the round's model (False: registration off, or the
    #: same weights were registered before, by an identical run)
    registered: bool = False
    #: each participant's contribution to the round (Aumann-Shapley, in units of the
    #: validation score it added; ``fl/_contrib.py``); in a secure round, whose single
    #: updates the coordinator never sees, estimated from the run's secure aggregates
    #: so far (``group_contributions``)
    contributions: dict[str, float] = field(default_factory=dict)
    #: what the run's RewardPool posting for this round pays each contributor (wei);
    #: empty when the run funds no rewards or nobody's contribution was positive
    rewards: dict[str, int] = field(default_factory=dict)
    #: sha256 (hex) of the round's published inputs (``round-NNNN-inputs.npz`` in the
    #: run's output; :class:`~idlegrid.fl.RoundInputs`), as the posting records it, for
    #: anyone to recompute the posting from; "" when the round posted nothing
    inputs_sha256: str = ""


@dataclass
class FederatedResult:
    """A finished run: its global model, its rounds and why it stopped."""

    run: str
    spec: FederatedSpec
    params: np.ndarray
    rounds: list[RoundReport] = field(default_factory=list)
    stopped: str = "all rounds done"
    #: ``payout: run``: what the run's one posting (for its last paid round) pays each
    #: contributor (wei), by its contributions netted over the rounds
    rewards: dict[str, int] = field(default_factory=dict)
    #: sha256 (hex) of that posting's inputs (``run-inputs.npz``; :class:`RunInputs`)
    rewards_inputs_sha256: str = ""

    @property
    def accuracy(self) -> float:
        return self.rounds[-1].accuracy if self.rounds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "stopped": self.stopped,
            "accuracy": self.accuracy,
            "rounds": [asdict(r) for r in self.rounds],
            "rewards": self.rewards,
            "rewards_inputs_sha256": self.rewards_inputs_sha256,
        }


def check_update(
    row: np.ndarray, global_params: np.ndarray, *, examples: int, spec: FederatedSpec
) -> str | None:
    """Why a fit's output (float64 ``[2 + P]``, in the clear) is refused; None if not."""
    p = len(global_params)
    if row.ndim != 1 or row.shape[0] != 2 + p:
        return f"shape {row.shape}, expected [{2 + p}]"
    if not np.isfinite(row).all():
        return "NaN or Inf in the update"
    if int(row[0]) != examples:
        return f"trained on {int(row[0])} examples, the node advertises {examples}"
    norm = float(np.linalg.norm(row[2:] - global_params.astype(np.float64)))
    if norm > spec.max_update_norm:
        return f"update norm {norm:.3g} above the limit {spec.max_update_norm:.3g}"
    if spec.dp is not None and norm > spec.dp.clip * (1 + 1e-3) + 1e-6:
        return f"update norm {norm:.3g} above the DP clip {spec.dp.clip:.3g} (not clipped)"
    return None


@dataclass
class _Outcome:
    """What a round gathered: updates in the clear, or (secure) only their new mean."""

    updates: list[Any] = field(default_factory=list)  # FitResult
    new: np.ndarray | None = None  # the strategy's new model, secure rounds
    participants: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    #: why the round could not be aggregated at all (secure aggregation), or None
    failure: str | None = None


@dataclass
class _Agreement:
    """A secure round's key agreement (stages ``keys`` and ``share``)."""

    sample: list[str]  # the addresses it was made for
    ok: bool = False
    members: list[_Edge] = field(default_factory=list)
    roster: dict[int, Any] = field(default_factory=dict)  # index -> RoundKeys
    secagg: _SecureRoster | None = None
    ciphertexts: dict[int, dict[int, str]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _SecureRoster:
    """A secure round's roster: who is which index, their signed keys, the numbers."""

    index_of: dict[str, int]
    signed: dict[int, dict[str, str]]
    cfg: Any  # SecAggConfig

    def fields(self, e: _Edge, **extra: Any) -> dict[str, Any]:
        """The ``secagg`` field of a job to ``e``."""
        return {
            "index": self.index_of[e.candidate.address],
            "roster": [{"index": i, **keys} for i, keys in self.signed.items()],
            "threshold": self.cfg.threshold,
            "clip_range": self.cfg.clip_range,
            "target_range": self.cfg.target_range,
            "mod_range": self.cfg.mod_range,
            **extra,
        }


@dataclass
class _Edge:
    candidate: Candidate
    rows: int
    index: int  # its place in the sorted roster of edge nodes (the seeding rule)


class Coordinator:
    """Runs ``spec`` from ``client`` (who pays) over the edge nodes on the network."""

    def __init__(
        self,
        client: Client,
        spec: FederatedSpec,
        validation: tuple[np.ndarray, np.ndarray],
        *,
        nodes: Sequence[str] | None = None,
        register: bool = True,
        output: Path | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
        initial: np.ndarray | None = None,
        contributions: bool = True,
        rewards: int = 0,
    ) -> None:
        x_val, y_val = validation
        if len(x_val) != len(y_val) or len(y_val) == 0:
            raise InvalidInput("the validation set needs as many labels as rows, at least one")
        self.client = client
        self.spec = spec
        self.x_val = np.ascontiguousarray(x_val, dtype=np.float32)
        self.y_val = np.asarray(y_val, dtype=np.int64)
        if nodes is not None and not nodes:
            raise InvalidInput("nodes: name at least one edge node (or none, for every one)")
        #: the only edge nodes the run may sample (the sponsor's named sites), or None
        self.nodes = {checksum(n).lower() for n in nodes} if nodes is not None else None
        self.register = register
        self.output = output
        self.on_round = on_round
        self.initial = initial
        #: estimate each client's contribution to each round in the clear
        self.contributions = contributions
        if rewards < 0 or (rewards and not (register and contributions)):
            raise InvalidInput("rewards need a positive budget, registration and contributions")
        #: tokens the sponsor puts in the run's RewardPool for its data contributors,
        #: posted round by round in proportion to the round's contributions
        self.rewards = rewards
        if rewards and spec.secagg and self.nodes is None:
            log.warning(
                "a secure run's rewards are split among each round's sampled nodes by "
                "estimates from aggregates only: an operator with more staked edge nodes "
                "holds more seats; name the sites to sample (--node, nodes=) if it matters "
                "(docs/federated.md, 'Under secure aggregation')"
            )
        self.run_id = hashlib.sha256(
            spec.spec_hash() + client.account.address.encode() + os.urandom(16)
        ).hexdigest()
        self.data_hash = hashlib.sha256(npy_bytes(self.x_val) + npy_bytes(self.y_val)).digest()
        self._workload = get_workload("fl")
        self._bytes: dict[str, int] = {}
        #: members' signed round keys, by (address, round)
        self._keys: dict[tuple[str, int], dict[str, str]] = {}
        #: the next secure round's key agreement, started during this round's tail
        self._agreement: tuple[int, asyncio.Future[_Agreement]] | None = None
        #: the edge nodes holding the run's data set (found at start)
        self._pool: list[_Edge] = []
        #: jobs that missed their round's deadline and still run (paid when they finish)
        self._stragglers: set[asyncio.Task[Any]] = set()
        self._funded = False
        #: each secure round's number, cohort, global model before it, aggregate and the
        #: aggregate's gain (its contributions and published inputs come from them)
        self._secure: list[tuple[int, list[str], np.ndarray, np.ndarray, float]] = []
        #: whether the secure history is still small enough to publish as inputs
        self._secure_inputs = True
        #: ``payout: run``: each paid round's inputs and model, held for the settlement
        #: (and their file's bytes so far)
        self._unsettled: list[tuple[RoundInputs, bytes]] = []
        self._unsettled_bytes = 0
        #: whether paid rounds are still held for the settlement (``payout: run``)
        self._settling = spec.payout == "run"

    # -- the run ---------------------------------------------------------------------
    async def run(self) -> FederatedResult:
        from ._dp import PrivacyAccountant
        from ._strategy import make_strategy

        spec = self.spec
        if self.output is not None and self.rewards and self._settling:
            refuse_unsettled(self.output)  # before any round is trained or paid for
        edges = self._pool = await self._edges()
        if len(edges) < spec.min_clients:
            named = "" if self.nodes is None else f" (of the {len(self.nodes)} named)"
            raise NoProviders(
                f"{len(edges)} edge node(s){named} hold data set {spec.dataset!r}; the run "
                f"needs at least min_clients={spec.min_clients}"
            )
        params = (
            self.initial.astype(np.float32)
            if self.initial is not None
            else await asyncio.to_thread(initial_params, spec.model, spec.seed)
        )
        if params.shape != (param_count(spec.model),):
            raise InvalidInput(f"the initial model is not float32 [{param_count(spec.model)}]")
        strategy = make_strategy(spec.strategy.name, **spec.strategy.options)
        strategy.initialize(params)
        accountant = None
        if spec.dp is not None:
            rate = min(1.0, spec.clients_per_round / len(edges))
            accountant = PrivacyAccountant(
                spec.dp.noise_multiplier, rate, spec.dp.delta, spec.dp.epsilon
            )
        result = FederatedResult(self.run_id, spec, params)
        try:
            await self._rounds(result, edges, params, strategy, accountant)
        except Exception:
            await self._settle_failed_run(result)
            raise
        finally:
            if self._agreement is not None:  # a prefetched agreement the run did not use
                with contextlib.suppress(Exception):
                    await self._agreement[1]
                self._agreement = None
            await self._settle_stragglers()
        if self.output is not None:
            self.output.mkdir(parents=True, exist_ok=True)
            (self.output / "rounds.json").write_text(json.dumps(result.summary(), indent=2))
        return result

    async def _rounds(
        self,
        result: FederatedResult,
        edges: list[_Edge],
        params: np.ndarray,
        strategy: Any,
        accountant: Any,
    ) -> None:
        spec = self.spec
        failed: set[str] = set()
        parent: bytes | None = None
        previous_step: np.ndarray | None = None
        rng_noise = np.random.default_rng([spec.seed, 1])
        for rnd in range(1, spec.rounds + 1):
            if accountant is not None and not accountant.allows_round():
                result.stopped = (
                    f"privacy budget spent: one more round would take epsilon to "
                    f"{accountant.epsilon_after(1):.3g} > {spec.dp.epsilon if spec.dp else 0}"
                )
                break
            started = time.perf_counter()
            sample = self._sample(edges, failed, rnd)
            self._bytes = {}
            got = await self._round(rnd, sample, params, strategy)
            failed = set(got.dropped) | set(got.rejected)
            if len(got.participants) < spec.min_clients:
                why = got.failure or (
                    "; ".join(f"{a}: {r}" for a, r in got.rejected.items()) or "deadline"
                )
                result.stopped = (
                    f"round {rnd}: {len(got.participants)} client(s) answered, fewer than "
                    f"min_clients={spec.min_clients} ({why})"
                )
                break
            new = got.new
            if new is None:
                new = strategy.aggregate_fit(rnd, params, got.updates, len(failed))
            contributions: dict[str, float] = {}
            inputs: RoundInputs | SecureRoundInputs | None = None
            if self.contributions and got.updates:
                inputs, contributions = await asyncio.to_thread(
                    self._contributions, rnd, params, got.updates, previous_step
                )
            elif self.contributions and got.new is not None and got.participants:
                # a secure round: only its aggregate is seen
                inputs, contributions = await asyncio.to_thread(
                    self._group_contributions, rnd, params, new, got.participants
                )
            if spec.dp is not None and accountant is not None:
                from ._dp import noise_mean

                new = noise_mean(
                    (new.astype(np.float64) - params.astype(np.float64)).astype(np.float32),
                    noise_multiplier=spec.dp.noise_multiplier,
                    clip=spec.dp.clip,
                    sampled=len(sample),
                    rng=rng_noise,
                ) + params.astype(np.float64)
                accountant.spend()
            previous_step = np.asarray(new, dtype=np.float32) - params
            params = np.asarray(new, dtype=np.float32)
            loss, accuracy = await asyncio.to_thread(
                evaluate_params, spec.model, params, self.x_val, self.y_val
            )
            participants = sorted(got.participants)
            reached = spec.target_accuracy is not None and accuracy >= spec.target_accuracy
            if spec.secagg and spec.dp is None and rnd < spec.rounds and not reached:
                self._prefetch(
                    rnd + 1, self._sample(edges, set(got.dropped) | set(got.rejected), rnd + 1)
                )
            model_hash, onnx = await asyncio.to_thread(self._export, params)
            registered = False
            if self.register:
                registered = await asyncio.to_thread(
                    self._register_round, rnd, model_hash, parent, participants,
                    accuracy, accountant.epsilon() if accountant is not None else None,
                )  # fmt: skip
            rewards: dict[str, int] = {}
            posted_inputs = ""
            if self.rewards and registered and contributions:
                held = isinstance(inputs, RoundInputs) and await asyncio.to_thread(
                    self._holds, inputs
                )
                if held and isinstance(inputs, RoundInputs):
                    self._unsettled.append((inputs, model_hash))
                    if self.output is not None:  # a killed coordinator's run is settled
                        await asyncio.to_thread(  # from them (idlegrid posting settle)
                            hold_round, self.output, bytes.fromhex(self.run_id), self.rewards,
                            inputs,
                        )  # fmt: skip
                else:
                    rewards, posted_inputs = await asyncio.to_thread(
                        self._post_rewards, rnd, model_hash, inputs, contributions
                    )
            parent = model_hash
            self._checkpoint(rnd, params, onnx)
            report = RoundReport(
                round=rnd,
                accuracy=accuracy,
                loss=loss,
                participants=participants,
                dropped=sorted(got.dropped),
                rejected=dict(got.rejected),
                epsilon=accountant.epsilon() if accountant is not None else None,
                seconds=time.perf_counter() - started,
                model=model_hash.hex(),
                paid=self._paid(),
                bytes_per_client=sum(self._bytes.values()) / max(1, len(self._bytes)),
                registered=registered,
                contributions=contributions,
                rewards=rewards,
                inputs_sha256=posted_inputs,
            )
            result.rounds.append(report)
            result.params = params
            if self.on_round is not None:
                self.on_round(report)
            if spec.target_accuracy is not None and accuracy >= spec.target_accuracy:
                result.stopped = f"target accuracy {spec.target_accuracy} reached"
                break
        if self._unsettled:
            result.rewards, result.rewards_inputs_sha256 = await asyncio.to_thread(self._settle)

    def _post_rewards(
        self,
        rnd: int,
        model: bytes,
        inputs: RoundInputs | SecureRoundInputs | RunInputs | None,
        contributions: Mapping[str, float],
        *,
        name: str | None = None,
    ) -> tuple[dict[str, int], str]:
        """Post round ``rnd``'s rewards to the run's pool (funding it first, on the first
        round): an equal part of the budget a round (``inputs.part``), split by positive
        contribution, with the sha256 of the round's inputs, published first as
        ``round-NNNN-inputs.npz`` in the output (blocking). What rounding leaves stays in
        the pool for the sponsor. ``(amounts, inputs' sha256 hex)``, or ``({}, "")``
        when nothing was posted. A secure round's inputs (its run's secure history) grow
        with the rounds: past :data:`MAX_INPUTS_BYTES` they are not published and the
        ``contributions`` are posted with no inputs hash (that posting cannot be
        challenged)."""
        from ..chain import RewardPoolClient, RewardTree

        pool = self.client.ledger.client("rewards", RewardPoolClient)
        run = bytes.fromhex(self.run_id)
        account = self.client.account
        try:
            if not self._funded:
                fund_run(self.client, run, self.rewards)
                self._funded = True
            if inputs is None:  # a secure round whose history grew past publishing
                from ._contrib import split_reward

                amounts = split_reward(self.rewards // self.spec.rounds, contributions)
            else:
                amounts = inputs.amounts()
            if not amounts:
                return {}, ""
            digest = bytes(32)
            if inputs is not None:
                digest = inputs.sha256
                if self.output is not None:
                    self.output.mkdir(parents=True, exist_ok=True)
                    file = name or f"round-{rnd:04d}-inputs.npz"
                    (self.output / file).write_bytes(inputs.to_bytes())
            tree = RewardTree(run, rnd, amounts)
            pool.post(tree, model, inputs=digest, sender=account)
        except (ContractReverted, InvalidInput) as exc:  # the round is trained: go on
            log.warning("round %d: rewards not posted: %s", rnd, exc)
            return {}, ""
        return amounts, digest.hex() if inputs is not None else ""

    def _holds(self, inputs: RoundInputs) -> bool:
        """Whether a clear round's posting waits for the run's settlement (``payout:
        run``). The held rounds' inputs stay in memory until then: once they would pass
        :data:`MAX_INPUTS_BYTES` (or :data:`MAX_RUN_ROUNDS` rounds, or name more clients
        than a posting may pay), the held rounds are posted one by one, as ``payout:
        round`` posts them, and so is every round after (blocking: the inputs' bytes)."""
        if not self._settling:
            return False
        size = self._unsettled_bytes + len(inputs.to_bytes()) + 256
        clients = {a for held, _ in self._unsettled for a in held.updates} | set(inputs.updates)
        if (
            size <= MAX_INPUTS_BYTES
            and len(self._unsettled) < MAX_RUN_ROUNDS
            and len(clients) <= MAX_ROSTER
        ):
            self._unsettled_bytes = size
            return True
        log.warning(
            "round %d: the run's settlement inputs would be %d bytes, %d rounds, %d clients "
            "(at most %d, %d, %d): its rounds are posted one by one from now on",
            inputs.round, size, len(self._unsettled) + 1, len(clients), MAX_INPUTS_BYTES,
            MAX_RUN_ROUNDS, MAX_ROSTER,
        )  # fmt: skip
        held, self._unsettled = self._unsettled, []
        self._settling = False
        for past, model in held:
            self._post_rewards(past.round, model, past, past.contributions())
        if self.output is not None:
            forget_held(self.output)
        return False

    async def _settle_failed_run(self, result: FederatedResult) -> None:
        """``payout: run``, a run that failed after some rounds: the rounds it trained are
        settled as those of a run that stopped early are, so that their contributors are
        paid for them. The run's own error is the one raised: a settlement that cannot
        be posted either (the chain is down) is logged, and its rounds stay unpaid."""
        if not self._unsettled:
            return
        try:
            result.rewards, result.rewards_inputs_sha256 = await asyncio.to_thread(self._settle)
        except Exception as exc:
            log.warning("the run failed; settling its %d rounds failed too: %s%s",
                        len(result.rounds), exc, "" if self.output is None else
                        f" (they wait in {self.output / HELD_DIR}: `idlegrid posting "
                        f"settle {self.output}` posts them)")  # fmt: skip

    def _settle(self) -> tuple[dict[str, int], str]:
        """Post the run's settlement (``payout: run``): the whole budget by each client's
        contributions netted over the held rounds, for the last of them, with their
        inputs published as ``run-inputs.npz`` (blocking)."""
        held, self._unsettled = self._unsettled, []
        inputs = RunInputs(
            run=bytes.fromhex(self.run_id), rounds=[i for i, _ in held], part=self.rewards
        )
        last, model = held[-1]
        amounts, digest = self._post_rewards(
            last.round, model, inputs, inputs.contributions(), name="run-inputs.npz"
        )
        if self.output is None:
            return amounts, digest
        if amounts or not inputs.amounts():  # posted, or nothing to post
            forget_held(self.output)
        else:
            log.warning(
                "the run's settlement was not posted; its rounds wait in %s: post it with "
                "`idlegrid posting settle %s`", self.output / HELD_DIR, self.output,
            )  # fmt: skip
        return amounts, digest

    def _group_contributions(
        self, rnd: int, params: np.ndarray, new: np.ndarray, participants: Sequence[str]
    ) -> tuple[SecureRoundInputs | None, dict[str, float]]:
        """A secure round's published inputs, and its participants' contributions
        estimated from them: the gains of this run's secure aggregates so far
        (``group_contributions``; blocking). Once the history's models would make the
        inputs larger than :data:`MAX_INPUTS_BYTES` (or name more clients than they
        may), they are dropped, and the contributions come from the gains alone: no
        inputs, so no challenge, from then on."""
        from ._contrib import group_contributions, validation_value

        cohort = [checksum(a) for a in participants]
        before, after = np.asarray(params, dtype=np.float32), np.asarray(new, dtype=np.float32)
        value = validation_value(self.spec.model, self.x_val, self.y_val)
        self._secure.append((rnd, cohort, before, after, value(after) - value(before)))
        clients = {a for _, c, *_ in self._secure for a in c}
        size = 0
        if self._secure_inputs:  # as from_history stores them: a start equal to the
            # previous round's aggregate (no differential privacy) is not stored again
            starts = sum(
                not np.array_equal(a[3], b[2]) for a, b in itertools.pairwise(self._secure)
            )
            vectors = 1 + len(self._secure) + starts
            size = vectors * before.nbytes + self.x_val.nbytes + self.y_val.nbytes
        if self._secure_inputs and (size > MAX_INPUTS_BYTES or len(clients) > MAX_SECURE_CLIENTS):
            log.warning(
                "round %d: the run's secure inputs would be %d bytes for %d clients (at most "
                "%d and %d): its postings are published without inputs from now on",
                rnd, size, len(clients), MAX_INPUTS_BYTES, MAX_SECURE_CLIENTS,
            )  # fmt: skip
            self._secure_inputs = False
        if not self._secure_inputs:
            self._secure = [(n, c, _EMPTY, _EMPTY, g) for n, c, _, _, g in self._secure]
            estimate = group_contributions([(c, g) for _, c, _, _, g in self._secure])
            return None, {a: estimate[a] for a in cohort}
        inputs = SecureRoundInputs.from_history(
            run=bytes.fromhex(self.run_id),
            model=self.spec.model,
            history=[(n, c, b, a) for n, c, b, a, _ in self._secure],
            x_val=self.x_val,
            y_val=self.y_val,
            part=self.rewards // self.spec.rounds,
        )
        return inputs, inputs.contributions()

    def _contributions(
        self,
        rnd: int,
        params: np.ndarray,
        updates: Sequence[Any],
        previous_step: np.ndarray | None,
    ) -> tuple[RoundInputs, dict[str, float]]:
        """Round ``rnd``'s inputs, and each client's contribution from them (blocking)."""
        inputs = RoundInputs(
            run=bytes.fromhex(self.run_id),
            round=rnd,
            model=self.spec.model,
            params=params,
            updates={checksum(u.client): u.params for u in updates},
            examples={checksum(u.client): u.examples for u in updates},
            previous_step=previous_step,
            x_val=self.x_val,
            y_val=self.y_val,
            nodes=PATH_NODES,
            part=self.rewards // self.spec.rounds,
        )
        return inputs, inputs.contributions()

    async def _settle_stragglers(self) -> None:
        """Give the jobs that missed a deadline one more deadline to finish (their
        results are paid for and their channels settle); then stop waiting for them."""
        if not self._stragglers:
            return
        log.info(
            "waiting up to %.0f s for %d late job(s)", self.spec.deadline_s, len(self._stragglers)
        )
        _, pending = await asyncio.wait(set(self._stragglers), timeout=self.spec.deadline_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # -- one round -------------------------------------------------------------------
    async def _round(
        self, rnd: int, sample: list[_Edge], params: np.ndarray, strategy: Any
    ) -> _Outcome:
        from ._strategy import FitResult

        digest = await self._upload(sample, params)
        if self.spec.secagg:
            return await self._secure_round(rnd, sample, params, digest, strategy)
        config = strategy.configure_fit(rnd)
        fields = {e.candidate.address: self._fit_fields(rnd, e, digest, config) for e in sample}
        answers, errors = await self._gather(sample, fields)
        got = _Outcome()
        rejected = got.rejected
        by_address = {e.candidate.address: e for e in sample}
        for address, out in answers.items():
            row = out[0]
            why = check_update(row, params, examples=by_address[address].rows, spec=self.spec)
            if why is not None:
                rejected[address] = why
                log.warning("round %d: refused %s's update: %s", rnd, address, why)
                continue
            got.participants.append(address)
            got.updates.append(
                FitResult(
                    client=address,
                    params=row[2:].astype(np.float32),
                    # DP's noise is sized for an unweighted mean: clients weigh alike
                    examples=1 if self.spec.dp is not None else int(row[0]),
                    metrics={"loss": float(row[1])},
                )
            )
        for address, why in errors.items():
            if why.startswith("refused:"):
                rejected[address] = why
        got.dropped = [a for a in errors if a not in rejected]
        return got

    async def _agree(self, rnd: int, sample: list[_Edge]) -> _Agreement:
        """Stages ``keys`` and ``share`` of a secure round: the roster, its numbers and
        every member's ciphertexts (``ok`` False when too few members remain)."""
        base = self._base_fields(rnd)
        got = _Agreement(sample=[e.candidate.address for e in sample])
        cohort = list(sample)
        for _attempt in range(SHARE_ATTEMPTS):
            # 1. keys: each member's round keys, signed by its node (asked for several
            # rounds at once, then kept)
            await self._fetch_keys(rnd, cohort, got.dropped, got.rejected)
            keyed, roster, secagg = self._keyed_roster(rnd, cohort)
            if secagg is None or len(keyed) < self.spec.min_clients:
                return got
            index_of = secagg.index_of
            # 2. share: each member's secrets, Shamir-shared, encrypted for each other member
            fields = {
                e.candidate.address: {**base, "stage": "share", "examples": e.rows,
                                      "secagg": secagg.fields(e)}
                for e in keyed
            }  # fmt: skip
            answers, errors = await self._gather(keyed, fields)
            got.dropped += list(errors)
            ciphertexts: dict[int, dict[int, str]] = {}
            for e in keyed:
                out = answers.get(e.candidate.address)
                if out is None:
                    continue
                mine, why = _ciphertexts(out, roster)
                if mine is None:
                    got.rejected[e.candidate.address] = why
                    continue
                ciphertexts[index_of[e.candidate.address]] = mine
            if len(ciphertexts) == len(keyed):
                got.ok, got.members, got.roster, got.secagg = True, keyed, roster, secagg
                got.ciphertexts = ciphertexts
                return got
            # a member that did not share breaks the roster (its pairwise masks could not
            # be removed): start the round's key agreement again without it
            cohort = [e for e in keyed if index_of[e.candidate.address] in ciphertexts]
        return got

    def _keyed_roster(
        self, rnd: int, cohort: Sequence[_Edge]
    ) -> tuple[list[_Edge], dict[int, Any], _SecureRoster | None]:
        """The members of ``cohort`` whose signed keys for ``rnd`` are known, numbered
        1..n in order, their keys and the round's numbers (None: fewer than 3)."""
        from ._secagg import RoundKeys, SecAggConfig

        roster: dict[int, Any] = {}
        signed: dict[int, dict[str, str]] = {}
        index_of: dict[str, int] = {}
        keyed: list[_Edge] = []
        for e in cohort:
            doc = self._keys.get((e.candidate.address, rnd))
            if doc is None:
                continue
            i = len(keyed) + 1
            keyed.append(e)
            index_of[e.candidate.address] = i
            roster[i] = RoundKeys(pk1=bytes.fromhex(doc["pk1"]), pk2=bytes.fromhex(doc["pk2"]))
            signed[i] = doc
        if len(keyed) < 3:
            return keyed, roster, None
        cfg = SecAggConfig.for_clients(len(keyed), dropout=self.spec.secagg_dropout)
        return keyed, roster, _SecureRoster(index_of, signed, cfg)

    def _share_ahead(
        self, rnd: int, failed: set[str], survivors: Sequence[_Edge]
    ) -> tuple[list[_Edge], dict[int, Any], _SecureRoster] | None:
        """Round ``rnd + 1``'s roster, when its share stage can ride on round ``rnd``'s
        unmask: the next sample is known (no DP budget to check, rounds left), every
        member of it answers this unmask, and their keys for ``rnd + 1`` are in hand."""
        spec = self.spec
        if not spec.secagg or spec.dp is not None or rnd >= spec.rounds:
            return None
        sample = self._sample(self._pool, failed, rnd + 1)
        asked = {e.candidate.address for e in survivors}
        if any(e.candidate.address not in asked for e in sample):
            return None
        keyed, roster, secure = self._keyed_roster(rnd + 1, sample)
        if secure is None or len(keyed) != len(sample) or len(keyed) < spec.min_clients:
            return None
        return keyed, roster, secure

    def _prefetch(self, rnd: int, sample: list[_Edge]) -> None:
        """Start the next secure round's key agreement now, while this round's tail
        (export, registration, checkpoint) runs: it needs only the next sample (unless
        this round's unmask already carried it)."""
        if self._agreement is not None and self._agreement[0] == rnd:
            return
        self._agreement = (rnd, asyncio.ensure_future(self._agree(rnd, sample)))

    def _keep_ahead(
        self,
        rnd: int,
        ahead: tuple[list[_Edge], dict[int, Any], _SecureRoster],
        ciphertexts: dict[int, dict[int, str]],
    ) -> None:
        """Keep round ``rnd``'s agreement made in the previous round's unmask, if every
        member shared (else the round agrees afresh, without the silent ones)."""
        keyed, roster, secure = ahead
        if len(ciphertexts) != len(keyed):
            return
        got = _Agreement(sample=[e.candidate.address for e in keyed], ok=True)
        got.members, got.roster, got.secagg, got.ciphertexts = keyed, roster, secure, ciphertexts
        done: asyncio.Future[_Agreement] = asyncio.get_running_loop().create_future()
        done.set_result(got)
        self._agreement = (rnd, done)

    async def _agreement_for(self, rnd: int, sample: list[_Edge]) -> _Agreement:
        ahead, self._agreement = self._agreement, None
        if ahead is not None:
            got = await ahead[1]  # never cancelled: its jobs are paid and on channels
            if ahead[0] == rnd and got.sample == [e.candidate.address for e in sample]:
                return got
        return await self._agree(rnd, sample)

    async def _secure_round(
        self, rnd: int, sample: list[_Edge], params: np.ndarray, digest: str, strategy: Any
    ) -> _Outcome:
        from ._secagg import SecAggServer

        agreed = await self._agreement_for(rnd, sample)
        dropped, rejected = agreed.dropped, agreed.rejected
        if not agreed.ok:
            return _Outcome(dropped=dropped, rejected=rejected)
        sharers, members, ciphertexts = agreed.members, agreed.roster, agreed.ciphertexts
        secure = agreed.secagg
        assert secure is not None
        cfg, index_of = secure.cfg, secure.index_of
        secagg = secure.fields
        base = self._base_fields(rnd)
        # 3. fit, masked
        largest = max(e.rows for e in sharers)
        fields = {}
        for e in sharers:
            weight = 1.0 if self.spec.dp is not None else e.rows / largest
            fields[e.candidate.address] = {
                **self._fit_fields(rnd, e, digest, strategy.configure_fit(rnd)),
                "secagg": secagg(e, weight=weight),
            }
        answers, errors = await self._gather(sharers, fields)
        dropped += list(errors)
        server = SecAggServer(members, cfg)
        survivors: list[_Edge] = []
        examples = 0
        for e in sharers:
            out = answers.get(e.candidate.address)
            if out is None:
                continue
            row = out[0]
            if not np.isfinite(row).all() or int(row[0]) != e.rows:
                rejected[e.candidate.address] = "a masked update that does not check out"
                continue
            masked = row[2:]
            if (
                (masked != np.floor(masked)).any()
                or masked.min() < 0
                or masked.max() >= cfg.mod_range
            ):
                rejected[e.candidate.address] = "a masked update outside the field"
                continue
            try:
                server.add(index_of[e.candidate.address], masked.astype(np.uint64))
            except IdlegridError as exc:
                rejected[e.candidate.address] = str(exc)
                continue
            survivors.append(e)
            examples += e.rows
        alive = {index_of[e.candidate.address] for e in survivors}
        gone = sorted(set(members) - alive)
        # 4. unmask: survivors give shares of survivors' self masks and of the dropped
        # members' pairwise keys (and, riding along, the next round's share stage)
        ahead = self._share_ahead(rnd, set(dropped) | set(rejected), survivors)
        fields = {}
        for e in survivors:
            me = index_of[e.candidate.address]
            inbox = {str(j): c[me] for j, c in ciphertexts.items() if me in c}
            fields[e.candidate.address] = {
                **base, "stage": "unmask", "examples": e.rows,
                "secagg": secagg(e, inbox=inbox, survivors=sorted(alive), dropped=gone),
            }  # fmt: skip
            if ahead is not None and e.candidate.address in ahead[2].index_of:
                fields[e.candidate.address]["share_next"] = ahead[2].fields(e)
        answers, errors = await self._gather(survivors, fields, self._unmask)
        shares: dict[int, dict[int, bytes]] = {}
        next_ciphertexts: dict[int, dict[int, str]] = {}
        for a, doc in answers.items():
            try:
                if "share_next" in fields[a]:
                    if set(doc) != {"unmask", "share"} or not isinstance(doc["unmask"], dict):
                        raise InvalidInput("not {unmask, share}, as asked")
                    mine, _why = _ciphertexts(doc["share"], ahead[1] if ahead else {})
                    if mine is not None and ahead is not None:
                        next_ciphertexts[ahead[2].index_of[a]] = mine
                    doc = doc["unmask"]
                shares[index_of[a]] = {int(j): bytes.fromhex(str(s)) for j, s in doc.items()}
            except (InvalidInput, ValueError, TypeError) as exc:
                rejected[a] = f"unmask shares that do not parse: {exc}"
        if ahead is not None:
            self._keep_ahead(rnd + 1, ahead, next_ciphertexts)
        try:
            total = await asyncio.to_thread(server.unmask, shares)
        except IdlegridError as exc:
            log.warning("round %d: secure aggregation could not unmask: %s", rnd, exc)
            return _Outcome(
                dropped=dropped + list(errors), rejected=rejected,
                failure=f"secure aggregation could not unmask the sum: {exc}",
            )  # fmt: skip
        weight = float(total[-1])
        if not weight > 0:
            raise InvalidInput("secure aggregation: the unmasked weights sum to zero")
        mean = params.astype(np.float64) + np.asarray(total[:-1], dtype=np.float64) / weight
        new = strategy.aggregate_mean(rnd, params, mean.astype(np.float32), examples)
        return _Outcome(
            new=np.asarray(new, dtype=np.float32),
            participants=[e.candidate.address for e in survivors],
            dropped=dropped,
            rejected=rejected,
        )

    async def _fetch_keys(
        self, rnd: int, cohort: list[_Edge], dropped: list[str], rejected: dict[str, str]
    ) -> None:
        """Ask the members without keys for ``rnd`` for theirs, for up to
        ``KEY_ROUNDS_AHEAD`` rounds; keep those whose signatures check out."""
        missing = [e for e in cohort if (e.candidate.address, rnd) not in self._keys]
        if not missing:
            return
        ahead = max(1, min(KEY_ROUNDS_AHEAD, self.spec.rounds - rnd + 1))
        base = self._base_fields(rnd)
        fields = {
            e.candidate.address: {**base, "stage": "keys", "examples": e.rows, "ahead": ahead}
            for e in missing
        }
        answers, errors = await self._gather(missing, fields)
        dropped += list(errors)
        for e in missing:
            out = answers.get(e.candidate.address)
            if out is None:
                continue
            try:
                by_round = _stage_json(out)
            except InvalidInput as exc:
                rejected[e.candidate.address] = str(exc)
                continue
            for r in range(rnd, rnd + ahead):
                doc = by_round.get(str(r))
                why, keys = _signed_keys(doc, {**base, "round": r}, e.candidate.address)
                if why is not None:
                    rejected[e.candidate.address] = why
                    break
                self._keys[(e.candidate.address, r)] = keys

    # -- helpers ------------------------------------------------------------------------
    async def _edges(self) -> list[_Edge]:
        import httpx

        from ..protocol import NodeInfo

        candidates = await self.client._discover("fl", force=True)
        found: list[tuple[Candidate, int]] = []
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0)) as http:
            for c in candidates:
                if self.nodes is not None and c.address.lower() not in self.nodes:
                    continue
                try:
                    r = await http.get(f"{c.endpoint}/v1/info")
                    if len(r.content) > MAX_INFO_BYTES:
                        continue
                    info = NodeInfo.model_validate_json(r.content)
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("edge node %s does not answer /v1/info: %s", c.address, exc)
                    continue
                held = info.datasets.get(self.spec.dataset)
                if held is None:
                    continue
                rows = held.get("rows")
                if isinstance(rows, int) and rows > 0:
                    found.append((c, rows))
        found.sort(key=lambda f: f[0].address.lower())
        return [_Edge(c, rows, i) for i, (c, rows) in enumerate(found)]

    def _sample(self, edges: list[_Edge], failed: set[str], rnd: int) -> list[_Edge]:
        pool = [e for e in edges if e.candidate.address not in failed]
        if len(pool) < self.spec.min_clients:
            pool = list(edges)  # give the failed ones another chance rather than stop
        k = min(self.spec.clients_per_round, len(pool))
        rng = np.random.default_rng([self.spec.seed, rnd])
        chosen = sorted(rng.choice(len(pool), size=k, replace=False))
        return [pool[i] for i in chosen]

    def _base_fields(self, rnd: int) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "round": rnd,
            "dataset": self.spec.dataset,
            "model": self.spec.model.model_dump(mode="json"),
        }

    def _fit_fields(
        self, rnd: int, e: _Edge, digest: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        local = self.spec.local
        fields: dict[str, Any] = {
            **self._base_fields(rnd),
            "stage": "fit",
            "params": digest,
            "examples": e.rows,
            "epochs": local.epochs,
            "batch": local.batch,
            "lr": local.lr,
            "optimizer": local.optimizer,
            "seed": client_seed(self.spec.seed, rnd, e.index),
        }
        mu = float(config.get("proximal_mu", 0.0))
        if mu > 0:
            fields["prox_mu"] = mu
        if self.spec.dp is not None:
            fields["clip"] = self.spec.dp.clip
        return fields

    async def _upload(self, sample: list[_Edge], params: np.ndarray) -> str:
        data = npy_bytes(params.astype(np.float32))
        digest = hashlib.sha256(data).hexdigest()

        async def put(e: _Edge) -> None:
            session = self.client._session(e.candidate)
            await asyncio.wait_for(session.put_blob(data, digest=digest), self.spec.deadline_s)
            self._count(e.candidate.address, len(data))

        await asyncio.gather(*(put(e) for e in sample), return_exceptions=True)
        return digest

    async def _gather(
        self,
        sample: Sequence[_Edge],
        fields: dict[str, dict[str, Any]],
        call: Callable[[_Edge, dict[str, Any]], Awaitable[Any]] | None = None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Run one job (or ``call``) on each node, closing at the deadline:
        ``(outputs, errors)``."""
        call = call or self._job
        tasks: dict[asyncio.Task[Any], str] = {}
        for e in sample:
            address = e.candidate.address
            if address in fields:
                tasks[asyncio.ensure_future(call(e, fields[address]))] = address
        if not tasks:
            return {}, {}
        done, pending = await asyncio.wait(tasks, timeout=self.spec.deadline_s)
        outputs: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for task in done:
            address = tasks[task]
            exc = task.exception()
            if exc is None:
                outputs[address] = task.result()
            else:
                errors[address] = _reason(exc)
                log.warning("edge node %s: %s", address, errors[address])
        for task in pending:  # a straggler: its job runs on, paid, but misses the round
            errors[tasks[task]] = f"missed the {self.spec.deadline_s:.0f} s deadline"
            task.add_done_callback(_quiet)
            self._stragglers.add(task)
            task.add_done_callback(self._stragglers.discard)
        return outputs, errors

    async def _job(self, e: _Edge, fields: dict[str, Any]) -> np.ndarray:
        from ..client._session import Bill

        spec = self._workload.parse(fields)
        units = self._workload.units(spec, None)
        session: ProviderSession = self.client._session(e.candidate)
        reserve = self.client._reserve(session)
        out: np.ndarray = await session.job(
            reserve, "fl", fields, Bill(units, units, False), self._workload.outputs(spec, None), 1
        )
        self._count(e.candidate.address, len(json.dumps(fields)) + out.nbytes)
        return out

    async def _unmask(self, e: _Edge, fields: dict[str, Any]) -> dict[str, Any]:
        """A secure round's unmask, asked of ``e`` as a signed request (paid with its
        masked fit): the answer's JSON object."""
        self._workload.parse(fields)  # ours, but checked as the node will
        body = json.dumps(fields, separators=(",", ":")).encode()
        session: ProviderSession = self.client._session(e.candidate)
        status, data = await session.call("POST", "/v1/fl/unmask", body)
        if status != 200:
            why = f"{e.candidate.address} refused the unmask ({status}): {session.reason(data)}"
            raise (ProviderRefused if status < 500 else ProviderFailed)(why)
        if len(data) > MAX_STAGE_BYTES:
            raise PeerError(f"an unmask answer of {len(data)} bytes, over {MAX_STAGE_BYTES}")
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise PeerError(f"an unmask answer that is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise PeerError("an unmask answer that is not a JSON object")
        self._count(e.candidate.address, len(body) + len(data))
        return doc

    def _count(self, address: str, n: int) -> None:
        self._bytes[address] = self._bytes.get(address, 0) + n

    def _paid(self) -> int:
        return sum(c.amount for c in self.client.channels())

    def _export(self, params: np.ndarray) -> tuple[bytes, bytes]:
        from ._export import export_params

        onnx = export_params(self.spec.model, params)
        digest = hashlib.sha256(onnx).digest()
        try:
            from ..client import ModelStore

            ModelStore.default().put(onnx)
        except (OSError, IdlegridError) as exc:  # the store is a convenience
            log.warning("could not keep the round's model in the model store: %s", exc)
        return digest, onnx

    def _register_round(
        self,
        rnd: int,
        model: bytes,
        parent: bytes | None,
        participants: list[str],
        accuracy: float | None = None,
        epsilon: float | None = None,
    ) -> bool:
        """Register the round's model with its participants, its accuracy on the
        sponsor's validation set and the DP budget spent so far; False (with a warning)
        when these exact weights are registered already (a rerun of a deterministic run)."""
        from ..chain import ModelRegistryClient

        models = self.client.ledger.client("models", ModelRegistryClient)
        if models.registered(model):
            log.warning(
                "round %d: model %s is registered already (an identical run?): not again",
                rnd, model.hex()[:16],
            )  # fmt: skip
            return False
        try:
            models.register_round(
                model,
                bytes.fromhex(self.run_id),
                rnd,
                spec_hash=self.spec.spec_hash(),
                data_hash=self.data_hash,
                parent=parent,
                participants=participants,
                sender=self.client.account,
                accuracy=accuracy,
                epsilon=epsilon,
            )
        except ContractReverted as exc:  # the round's training is paid for: go on
            log.warning("round %d: its model is not in the lineage: %s", rnd, exc)
            return False
        return True

    def _checkpoint(self, rnd: int, params: np.ndarray, onnx: bytes) -> None:
        if self.output is None:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        np.save(self.output / f"round-{rnd:04d}.npy", params, allow_pickle=False)
        (self.output / "model.onnx").write_bytes(onnx)


def _signed_keys(doc: Any, base: dict[str, Any], address: str) -> tuple[str | None, dict[str, str]]:
    """One round's keys from a keys stage's answer, and why they are refused (None if
    they are not): they must be signed by the node that sent them."""
    from ..protocol._fastsig import recover_digest
    from ..workloads._kind_fl import keys_digest

    if not isinstance(doc, dict):
        return "no round keys for the round", {}
    try:
        pk1, pk2 = bytes.fromhex(doc["pk1"]), bytes.fromhex(doc["pk2"])
        signer = recover_digest(
            keys_digest(base["run"], base["round"], pk1, pk2), bytes.fromhex(doc["sig"])
        )
    except (IdlegridError, KeyError, ValueError, TypeError) as exc:
        return f"round keys that do not parse: {exc}", {}
    if "0x" + signer.hex() != address.lower() or doc.get("address", "").lower() != address.lower():
        return "round keys not signed by the node that sent them", {}
    return None, {k: str(doc[k]) for k in ("pk1", "pk2", "address", "sig")}


def _ciphertexts(doc: Any, roster: Mapping[int, Any]) -> tuple[dict[int, str] | None, str]:
    """A share stage's ciphertexts by recipient (an answer, or its parsed JSON), and
    why they are refused (None)."""
    try:
        if isinstance(doc, np.ndarray):
            doc = _stage_json(doc)
        if not isinstance(doc, dict):
            raise InvalidInput("not a JSON object")
        mine = {int(j): bytes.fromhex(str(c)).hex() for j, c in doc.items()}
    except (InvalidInput, ValueError, TypeError) as exc:
        return None, f"shares that do not parse: {exc}"
    if set(mine) != set(roster):
        return None, "shares for another roster than the round's"
    return mine, ""


def _stage_json(out: np.ndarray) -> dict[str, Any]:
    try:
        doc = json.loads(np.asarray(out, dtype=np.uint8).reshape(-1).tobytes())
    except ValueError as exc:
        raise InvalidInput(f"a stage's answer is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInput("a stage's answer is not a JSON object")
    return doc


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return f"refused: {text}" if isinstance(exc, ProviderRefused) else text


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
