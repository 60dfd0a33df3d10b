"""``fl``: one federated client's part of one round, run on an edge node's own data.

The coordinator sends the global model (a blob) and the round's settings; the edge
node trains on a data set it holds locally, named by the coordinator only by a name
the node advertises (``/v1/info`` ``datasets``), never by a path. What comes back is
the client's new weights (or, under secure aggregation, its masked update), never a
row of its data. The job is paid like any other: its units are the training FLOPs,
counted from the spec and the data set's advertised size.

A job is one *stage* of a round:

* ``fit``: local training from the global model (``idlegrid.fl._local.local_fit``),
  with FedProx's proximal term when ``prox_mu > 0`` and the update clipped to
  ``clip`` (client-level DP). Output: float64 ``[1, 2 + M]``: examples, mean training
  loss, then the clipped weights ``[P]``, or, under secure aggregation, the masked
  vector ``[P + 1]`` (the example-weighted update and its weight, quantized and masked).
* ``keys``, ``share``, ``unmask``: the secure-aggregation stages
  (``idlegrid.fl._secagg``, SecAgg+ after Flower). The node derives every per-round
  secret from its own key, so the stages need no state between requests, except the
  one answer per round that ``unmask`` may give (the node's ``UnmaskLedger``). Output:
  uint8 ``[1, K]``, the stage's JSON.

The coordinator asks for ``unmask`` as a signed request (``POST /v1/fl/unmask``,
``EdgeState.unmask``), paid with the round's masked fit, rather than as a job; the stage
runs as a job too. An ``unmask`` may carry ``share_next``: the ``share`` stage of the
next round (its own roster, signed for ``round + 1``), answered in the same answer as
``{"unmask": {...}, "share": {...}}``. The two stages are independent (other round,
other secrets); carrying them together saves a paid round trip per secure round.
"""

from __future__ import annotations

import asyncio
import functools
import json
import pickle
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from .._exceptions import InvalidInput, PayloadTooLarge
from ._base import (
    JOB_SENDER,
    ClientHost,
    NodeHost,
    OutputSpec,
    Plan,
    Prepared,
    Workload,
    npy_output,
)
from ._base import Spec as _Spec
from ._train_models import ModelSpec, flops_per_sample, param_count

__all__ = [
    "DATASET_NAME",
    "FlSpec",
    "FlWorkload",
    "RosterEntry",
    "SecAggJob",
    "fit_output",
    "keys_digest",
    "read_local_dataset",
    "unmask_answer",
]

DIGEST = r"^[0-9a-f]{64}$"
#: what an edge node's data set may be called (a file stem under its data directory)
DATASET_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_EPOCHS = 100
MAX_BATCH = 4096
MAX_ROSTER = 128
MAX_EXAMPLES = 10_000_000
#: units of one secure-aggregation stage, per roster member (key agreement, shares)
STAGE_UNITS_PER_MEMBER = 10**6
#: rounds a keys stage may give keys for at once
MAX_KEY_ROUNDS = 64
#: bytes a stage's JSON output may have
MAX_STAGE_BYTES = 4 * 2**20


class RosterEntry(_Spec):
    """One sampled client of a secure round: its Shamir index, its public keys (hex),
    and its node's signature over them (the coordinator only relays keys: a member
    checks every other member's signature, so a coordinator cannot swap in its own)."""

    index: int = Field(ge=1, le=MAX_ROSTER)
    pk1: str = Field(pattern=r"^[0-9a-f]{2,512}$")
    pk2: str = Field(pattern=r"^[0-9a-f]{2,512}$")
    address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    sig: str = Field(pattern=r"^[0-9a-f]{130}$")


def keys_digest(run: str, rnd: int, pk1: bytes, pk2: bytes) -> bytes:
    """What an edge node signs about its round keys."""
    import hashlib

    head = b"idlegrid/fl/keys/v1" + bytes.fromhex(run) + rnd.to_bytes(8, "big")
    return hashlib.sha256(head + len(pk1).to_bytes(2, "big") + pk1 + pk2).digest()


class SecAggJob(_Spec):
    """The secure-aggregation part of a job: who this client is in the round's roster,
    the roster, and the protocol's numbers."""

    index: int = Field(ge=1, le=MAX_ROSTER)
    roster: tuple[RosterEntry, ...] = Field(min_length=2, max_length=MAX_ROSTER)
    threshold: int = Field(ge=2, le=MAX_ROSTER)
    clip_range: float = Field(gt=0, le=1e6)
    target_range: int = Field(ge=2, le=2**40)
    mod_range: int = Field(ge=2, le=2**62)
    #: ``fit``: this client's weight in the mean (the coordinator's choice: its examples
    #: over the largest client's; 1 for all under DP)
    weight: float = Field(default=1.0, gt=0, le=1)
    #: ``unmask``: the ciphertexts the other members addressed to this one, by sender
    inbox: dict[int, str] = Field(default_factory=dict, max_length=MAX_ROSTER)
    #: ``unmask``: members whose masked vectors arrived, and the ones that did not
    survivors: tuple[int, ...] = Field(default=(), max_length=MAX_ROSTER)
    dropped: tuple[int, ...] = Field(default=(), max_length=MAX_ROSTER)

    @model_validator(mode="after")
    def _valid(self) -> SecAggJob:
        indices = [e.index for e in self.roster]
        if len(set(indices)) != len(indices):
            raise ValueError("the roster names an index twice")
        if self.index not in indices:
            raise ValueError("this client is not in the roster")
        if self.threshold > len(indices):
            raise ValueError("the threshold is larger than the roster")
        return self


class FlSpec(_Spec):
    """One stage of one federated round on one edge node."""

    stage: Literal["fit", "keys", "share", "unmask"]
    run: str = Field(pattern=DIGEST, description="the federated run's id")
    round: int = Field(ge=1, le=1_000_000)
    dataset: str = Field(pattern=DATASET_NAME, description="a data set the edge node holds")
    model: ModelSpec
    #: ``fit``: the global model, a blob (float32 [P] as .npy)
    params: str | None = Field(default=None, pattern=DIGEST)
    #: rows of the data set (from the node's /v1/info): the bill counts them
    examples: int = Field(ge=1, le=MAX_EXAMPLES)
    epochs: int = Field(default=1, ge=1, le=MAX_EPOCHS)
    batch: int = Field(default=32, ge=1, le=MAX_BATCH)
    lr: float = Field(default=0.05, gt=0, le=10)
    optimizer: Literal["sgd", "adam"] = "sgd"
    prox_mu: float = Field(default=0.0, ge=0, le=100)
    seed: int = Field(default=0, ge=0, lt=2**63)
    #: ``keys``: give the keys of this many rounds from ``round`` on (the coordinator
    #: asks once for several rounds: public keys are fresh per round, not secret)
    ahead: int = Field(default=1, ge=1, le=MAX_KEY_ROUNDS)
    #: client-level DP: clip the update (new - global weights) to this L2 norm
    clip: float | None = Field(default=None, gt=0, le=1e6)
    #: secure aggregation (None: the weights travel in the clear)
    secagg: SecAggJob | None = None
    #: ``unmask``: also the ``share`` stage of round ``round + 1``, for its roster
    share_next: SecAggJob | None = None

    @model_validator(mode="after")
    def _stage(self) -> FlSpec:
        if self.stage == "fit" and self.params is None:
            raise ValueError("a fit names the global model (params)")
        if self.stage in ("share", "unmask") and self.secagg is None:
            raise ValueError(f"stage {self.stage} is a secure-aggregation stage: secagg missing")
        s = self.secagg
        if self.stage == "unmask" and s is not None and set(s.survivors) & set(s.dropped):
            raise ValueError("a member cannot both survive and drop")
        if self.share_next is not None and self.stage != "unmask":
            raise ValueError("only an unmask carries the next round's share (share_next)")
        return self


def fit_output(examples: int, loss: float, vector: np.ndarray) -> np.ndarray:
    """A fit's output row: float64 ``[1, 2 + M]``."""
    head = np.array([examples, loss], dtype=np.float64)
    return np.concatenate([head, vector.astype(np.float64)])[None, :]


def read_local_dataset(path: str, *, max_rows: int = MAX_EXAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """An edge data set: ``.npz`` with float ``x [n, ...]`` and integer ``y [n]`` (no
    pickles); InvalidInput if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    except (OSError, KeyError, ValueError) as exc:
        raise InvalidInput(f"the data set is not an .npz with x and y: {exc}") from exc
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or not 0 < len(y) <= max_rows:
        raise InvalidInput(f"the data set's x {x.shape} and y {y.shape} do not match")
    if not np.issubdtype(y.dtype, np.integer) or not np.issubdtype(x.dtype, np.number):
        raise InvalidInput("the data set's x must be numbers and y integer labels")
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)


class FlWorkload(Workload[FlSpec, Any]):
    """The ``fl`` kind (a job goes to one edge node: the coordinator picks it)."""

    name = "fl"
    Spec = FlSpec
    task = "idlegrid.workloads._kind_fl:run"
    summary = "one stage of a federated round on an edge node's own data (fit, secure agg.)"
    input_fields = ("params",)
    #: torch's optimizers import ``torch._dynamo`` when first made (1.1 s, torch 2.13)
    preload = ("torch", "torch._dynamo")

    def units(self, spec: FlSpec, inputs: Any = None) -> int:
        if spec.stage == "fit":
            train = 3 * flops_per_sample(spec.model) * spec.examples * spec.epochs
            if spec.secagg is None:
                return train
            # a masked fit also pays for the round's unmask and the next round's share,
            # which its coordinator asks for as signed requests (``EdgeState.unmask``)
            return train + 2 * STAGE_UNITS_PER_MEMBER * len(spec.secagg.roster)
        members = len(spec.secagg.roster) if spec.secagg is not None else 1
        if spec.share_next is not None:
            members += len(spec.share_next.roster)
        return STAGE_UNITS_PER_MEMBER * members * (spec.ahead if spec.stage == "keys" else 1)

    def outputs(self, spec: FlSpec, inputs: Any = None) -> OutputSpec:
        if spec.stage == "fit":
            extra = 1 if spec.secagg is not None else 0
            return OutputSpec(
                "update", np.dtype(np.float64), (2 + param_count(spec.model) + extra,)
            )
        return OutputSpec("stage", np.dtype(np.uint8), (None,))

    def close_enough(self, a: np.ndarray, b: np.ndarray) -> bool:
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype == np.uint8:
            return bool(np.array_equal(a, b))
        return bool(np.allclose(a, b, rtol=1e-4, atol=1e-5))

    def rows(self, inputs: Any) -> int:
        return 1

    def blobs(self, spec: FlSpec) -> tuple[str, ...]:
        return (spec.params,) if spec.params is not None else ()

    async def check(self, spec: FlSpec, node: NodeHost) -> None:
        if spec.params is not None:
            want = 4 * param_count(spec.model)
            if not want <= node.blob_size(spec.params) <= want + 1024:
                raise PayloadTooLarge(
                    f"the global model is not float32 [{param_count(spec.model)}]"
                )

    async def prepare(self, spec: FlSpec, node: NodeHost) -> Prepared:
        edge = getattr(node, "edge", None)
        if edge is None:
            raise InvalidInput("this node holds no local data: fl jobs run on edge nodes")
        path, rows = edge.dataset(spec.dataset)  # NotFound naming the known ones
        if rows != spec.examples:
            raise InvalidInput(
                f"data set {spec.dataset!r} has {rows} rows here, the job says {spec.examples}"
            )
        job: dict[str, Any] = {"spec": spec.model_dump(), "data": path}
        if spec.secagg is not None or spec.stage != "fit":
            job["secret"] = edge.secret
        if spec.stage == "keys":

            def keys() -> dict[str, dict[str, str]]:
                rounds = range(spec.round, spec.round + spec.ahead)
                return {str(r): edge.signed_keys(spec.run, r) for r in rounds}

            job["keys"] = await asyncio.to_thread(keys)
        cheat = getattr(node, "fabrication", None)  # TESTING AID: a poisoning client
        if spec.stage == "fit" and cheat and cheat.get("mode") == "sign-flip":
            draw = np.random.default_rng([int(cheat.get("seed") or 0), spec.round]).random()
            if draw < float(cheat.get("rate", 0.0)):
                job["attack"] = "sign-flip"
        if spec.stage == "unmask" and spec.secagg is not None:
            edge.unmask_once(spec.run, spec.round, spec.secagg.survivors, spec.secagg.dropped)
        if spec.stage == "fit" and spec.secagg is not None:
            # one masked update per round: training is deterministic in the spec, so the
            # same fields give the same update; other fields would reuse the masks
            edge.mask_once(spec.run, spec.round, spec.model_dump_json().encode())
            # the round's unmask is answered to the client who paid this fit, and to no
            # one else (``EdgeState.unmask``)
            edge.record_fit(spec.run, spec.round, JOB_SENDER.get())
        if spec.params is not None:
            digest = spec.params

            def load() -> bytes:
                from ..protocol import array_from_npy

                raw = node.blob(digest)
                params = array_from_npy(raw, max_bytes=len(raw) + 1)
                n = param_count(spec.model)
                if params.dtype != np.float32 or params.shape != (n,):
                    raise InvalidInput(f"the global model is not float32 [{n}]")
                if not np.isfinite(params).all():
                    raise InvalidInput("the global model has NaN or Inf weights")
                return raw

            job["params"] = await asyncio.to_thread(load)
        return Prepared(self.task, pickle.dumps(job, protocol=5), 1, self.units(spec))

    async def plan(self, inputs: Any, client: ClientHost, **options: Any) -> Plan[Any]:
        raise InvalidInput(
            "fl jobs go to one edge node each: run them with idlegrid.fl (a coordinator), "
            "not as a batch"
        )


def _stage_output(value: Mapping[str, Any]) -> bytes:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    if len(raw) > MAX_STAGE_BYTES:
        raise InvalidInput(f"the stage's answer has {len(raw)} bytes, more than {MAX_STAGE_BYTES}")
    return npy_output(np.frombuffer(raw, dtype=np.uint8)[None, :])


def _roster(
    spec: FlSpec, secagg: SecAggJob | None = None, rnd: int | None = None
) -> dict[int, Any]:
    """The roster's keys (``spec.secagg``'s, or ``secagg``'s for round ``rnd``), each
    checked against its node's signature."""
    from .._exceptions import BadSignature
    from ..fl._secagg import RoundKeys

    secagg = secagg if secagg is not None else spec.secagg
    rnd = rnd if rnd is not None else spec.round
    assert secagg is not None
    out = {}
    for e in secagg.roster:
        pk1, pk2 = bytes.fromhex(e.pk1), bytes.fromhex(e.pk2)
        try:
            signer = _keys_signer(keys_digest(spec.run, rnd, pk1, pk2), bytes.fromhex(e.sig))
        except BadSignature as exc:
            raise InvalidInput(
                f"roster member {e.index}: a bad signature on its keys: {exc}"
            ) from exc
        if signer != bytes.fromhex(e.address[2:]):
            raise InvalidInput(
                f"roster member {e.index}: its keys are not signed by {e.address} "
                "(a coordinator that swaps keys would read the shares)"
            )
        out[e.index] = RoundKeys(pk1=pk1, pk2=pk2)
    return out


@functools.lru_cache(maxsize=4096)
def _keys_signer(digest: bytes, signature: bytes) -> bytes:
    """Who signed a member's round keys, recovered once per worker: a roster comes back
    in a round's fit and unmask, and (as ``share_next``) in the round before."""
    from ..protocol._fastsig import recover_digest

    return recover_digest(digest, signature)


def _config(spec: FlSpec, secagg: SecAggJob | None = None) -> Any:
    from ..fl._secagg import SecAggConfig

    s = secagg if secagg is not None else spec.secagg
    assert s is not None
    return SecAggConfig(
        clip_range=s.clip_range,
        target_range=s.target_range,
        mod_range=s.mod_range,
        threshold=s.threshold,
    )


def run(payload: bytes) -> bytes:
    """The worker task: one stage of a round (see the module docstring)."""
    job = pickle.loads(payload)
    spec = FlSpec.model_validate(job["spec"])
    if spec.stage == "keys":  # derived and signed by the node (``EdgeState.signed_keys``)
        return _stage_output(job["keys"])
    if spec.stage == "share":
        assert spec.secagg is not None
        return _stage_output(_share(spec, job["secret"], spec.secagg, spec.round))
    if spec.stage == "unmask":
        return _stage_output(unmask_answer(spec, job["secret"]))
    return _fit(spec, job)


def unmask_answer(spec: FlSpec, secret: bytes) -> dict[str, Any]:
    """Stage ``unmask``: this member's shares of the survivors' self masks and of the
    dropped members' masking keys, by owner; with ``share_next``,
    ``{"unmask": those, "share": the next round's ciphertexts}``. Pure: the caller
    admits the question first (``EdgeState.unmask_once``)."""
    from ..fl._secagg import client_unmask

    s = spec.secagg
    if spec.stage != "unmask" or s is None:
        raise InvalidInput("not an unmask stage with its secagg fields")
    try:
        inbox = {int(j): bytes.fromhex(c) for j, c in s.inbox.items()}
    except ValueError as exc:
        raise InvalidInput(f"a ciphertext is not hex: {exc}") from exc
    out = client_unmask(
        secret, spec.run, spec.round, s.index, _roster(spec), _config(spec), inbox,
        s.survivors, s.dropped,
    )  # fmt: skip
    shares = {str(j): share.hex() for j, share in out.items()}
    if spec.share_next is None:
        return shares
    ahead = _share(spec, secret, spec.share_next, spec.round + 1)
    return {"unmask": shares, "share": ahead}


def _share(spec: FlSpec, secret: bytes, secagg: SecAggJob, rnd: int) -> dict[str, str]:
    """Stage ``share`` of round ``rnd`` for ``secagg``'s roster: one ciphertext per member."""
    from ..fl._secagg import client_shares

    roster = _roster(spec, secagg, rnd)
    shares = client_shares(secret, spec.run, rnd, secagg.index, roster, _config(spec, secagg))
    return {str(j): c.hex() for j, c in shares.items()}


def _fit(spec: FlSpec, job: dict[str, Any]) -> bytes:
    from ..fl._local import local_fit
    from ..protocol import array_from_npy

    raw = job["params"]
    global_params = array_from_npy(raw, max_bytes=len(raw) + 1)
    x, y = read_local_dataset(job["data"])
    if (y < 0).any() or (y >= spec.model.classes).any():
        raise InvalidInput(f"local labels outside 0..{spec.model.classes - 1}")
    fit = local_fit(
        spec.model, global_params, x, y,
        epochs=spec.epochs, batch=spec.batch, lr=spec.lr, optimizer=spec.optimizer,
        prox_mu=spec.prox_mu, seed=spec.seed,
    )  # fmt: skip
    params = fit.params
    if job.get("attack") == "sign-flip":  # TESTING AID (``provider/_cheat.py``): poisoning
        params = (2 * global_params.astype(np.float64) - params).astype(np.float32)
    if not np.isfinite(params).all():
        raise InvalidInput("local training diverged (NaN or Inf): lower the learning rate")
    if spec.clip is not None:
        from ..fl._dp import clip_update

        params, _ = clip_update(params, global_params, spec.clip)
    if spec.secagg is None:
        return npy_output(fit_output(fit.examples, fit.loss, params))
    from ..fl._secagg import client_mask

    # the weighted update and its weight: the sum of the survivors' vectors is
    # (sum w_k (p_k - g), sum w_k), the weighted mean update; DP runs weigh clients alike
    weight = spec.secagg.weight
    delta = (params.astype(np.float64) - global_params.astype(np.float64)) * weight
    vector = np.concatenate([delta, [weight]]).astype(np.float32)
    masked = client_mask(
        job["secret"], spec.run, spec.round, spec.secagg.index, _roster(spec), _config(spec),
        vector,
    )  # fmt: skip
    return npy_output(fit_output(fit.examples, fit.loss, np.asarray(masked, dtype=np.float64)))
