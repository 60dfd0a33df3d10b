"""Training on the network: ``Client.train(job, data) -> TrainedModel``.

A training job (:class:`TrainJob`, the ``SPEC.yaml`` of ``idlegrid train``) names a
network from the package's registry, its optimizer and schedule, epochs, batch and
seed; the data set is an ``.npz`` with ``x``, ``y``, ``x_val`` and ``y_val``. It runs
as a node-driven ``train`` run (``workloads/_kind_train.py``): segments of about an
epoch, each a job checked and paid as it goes, each cut into checkpoint intervals whose
states' hashes the provider signs. A provider that dies is failed over from the last
segment received.

Then, under the ``pol`` policy (the default), the run is verified by proof-of-learning
(``idlegrid.verify``, ``docs/proof-of-learning.md``):

1. the client commits the Merkle root of every checkpoint hash, with the hashes of the
   spec and the data, in the ``ModelRegistry`` (``commitTraining``);
2. the hash of a block mined after that commitment selects ``checks`` intervals;
3. the client fetches the states at both ends of each from the providers that made
   them (or has them: a segment's last state travels with its output), replays each
   interval from the first and measures the distance to the second;
4. an interval out of tolerance, or a state its provider cannot produce, fails the run:
   the segment that holds it is disputed (``Disputes``: the committee replays the
   segment, a provider found wrong is slashed);
5. the outcome is recorded in the registry, and the model registered with its lineage
   (``registerTrained``: spec, data, checkpoints root, trainer).

The trained model comes back as named weights (safetensors), an ONNX export the
``onnx`` workload serves, the per-epoch metrics and its lineage on chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._exceptions import IdlegridError, InvalidInput, PeerError, ProviderFailed
from ..protocol import array_from_npy, merkle_root, npy_bytes
from ..verify import POL_TOLERANCE, PolReport, SignedReceipt, verify_run
from ..workloads._kind_train import (
    MAX_INTERVALS,
    MAX_SEGMENT_STATE_BYTES,
    TrainPlan,
    TrainSpec,
    export_onnx,
    read_dataset,
    state_hash,
    state_size,
)
from ._long import Failover, Progress, Run, RunResult, SignedSegment

if TYPE_CHECKING:
    from ..chain import ModelRecord, ModelRegistryClient
    from ._client import Client
    from ._disputes import DisputeReport
    from ._models import ModelStore

__all__ = [
    "DEFAULT_CHECKS",
    "TrainCheckpoint",
    "TrainJob",
    "TrainedModel",
    "load_dataset",
    "load_job",
    "train",
]

log = logging.getLogger("idlegrid.client")

#: intervals a ``pol`` verification replays: a provider fabricating 10 % of them is
#: caught with probability 1 - 0.9**64 = 0.9988 (``docs/proof-of-learning.md``)
DEFAULT_CHECKS = 64
#: a run is cut into at least this many intervals per check: replaying ``checks`` of
#: them is 1/40 = 2.5 % of the training's steps, and what a replay costs besides its steps
#: (the network rebuilt from the state, both states hashed) stays within the 5 % target
INTERVALS_PER_CHECK = 40
#: the largest SPEC.yaml and data set read from disk
MAX_JOB_BYTES = 1 << 20
MAX_DATA_BYTES = 1 << 30


class TrainJob(BaseModel):
    """A training job, as ``SPEC.yaml`` writes it (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: dict[str, Any] = Field(description="a network of the registry (family and sizes)")
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(default=1e-3, gt=0, le=10)
    schedule: Literal["constant", "cosine"] = "constant"
    epochs: int | None = Field(default=None, ge=1, le=100_000)
    total_steps: int | None = Field(default=None, ge=1, le=2**40)
    batch: int = Field(default=32, ge=1, le=4096)
    seed: int = Field(default=0, ge=0, lt=2**63)
    #: steps between checkpoints (default: the run cut into INTERVALS_PER_CHECK * checks)
    interval: int | None = Field(default=None, ge=1)
    #: steps per segment, a multiple of ``interval`` (default: about an epoch)
    segment_steps: int | None = Field(default=None, ge=1)
    #: the data set's sha256, when the job names it: other bytes are refused
    data_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: the hardware class: ``cuda`` runs go to providers with CUDA, and are replayed on it
    device: Literal["cpu", "cuda"] = "cpu"
    verify: Literal["pol", "none"] = "pol"
    #: dispute a failed run's segment on chain (the committee replays it)
    dispute: bool = True
    #: intervals a ``pol`` verification replays
    checks: int = Field(default=DEFAULT_CHECKS, ge=1, le=4096)

    @model_validator(mode="after")
    def _length(self) -> TrainJob:
        if (self.epochs is None) == (self.total_steps is None):
            raise ValueError("a training job needs exactly one of epochs and total_steps")
        return self


def load_job(source: TrainJob | Mapping[str, Any] | str | Path) -> TrainJob:
    """A training job from a :class:`TrainJob`, a mapping or a YAML file."""
    if isinstance(source, TrainJob):
        return source
    if isinstance(source, (str, Path)):
        import yaml  # type: ignore[import-untyped]

        path = Path(source)
        try:
            if path.stat().st_size > MAX_JOB_BYTES:
                raise InvalidInput(f"{path}: a training spec is at most {MAX_JOB_BYTES} bytes")
            source = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise InvalidInput(f"{path}: not YAML ({str(exc)[:200]})") from None
        if not isinstance(source, Mapping):
            raise InvalidInput(f"{path}: a training spec is a mapping of its fields")
    try:
        return TrainJob.model_validate(dict(source))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(
            f"training spec: {where + ': ' if where else ''}{first['msg']}"
        ) from None


def load_dataset(source: bytes | str | Path | tuple[Any, Any, Any, Any]) -> bytes:
    """A data set's ``.npz`` bytes: bytes, a file, or ``(x, y, x_val, y_val)``."""
    from ..workloads._kind_train import train_dataset

    if isinstance(source, tuple):
        return train_dataset(*source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            if path.stat().st_size > MAX_DATA_BYTES:
                raise InvalidInput(f"{path}: a data set is at most {MAX_DATA_BYTES} bytes")
            return path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    return bytes(source)


@dataclass
class TrainedModel:
    """A model trained on the network: its weights, ONNX export, metrics and lineage."""

    spec: TrainSpec  # the run's spec (its first segment's)
    state: np.ndarray  # the final state: step, loss, parameters, optimizer state
    onnx: bytes  # the network as ONNX: input ``x``, output ``logits``
    model_hash: str  # sha256 of ``onnx``: the model's name in the registry
    epochs: list[dict[str, float]]  # the metrics after each epoch (validation split)
    run: RunResult
    run_id: str  # 0x hex: the training run's id in the registry ("" when unverified)
    checkpoints_root: str  # 0x hex: the Merkle root of the run's checkpoint hashes
    verification: PolReport | None  # None under the ``none`` policy
    disputes: list[DisputeReport] = field(default_factory=list)
    lineage: list[ModelRecord] = field(default_factory=list)
    #: the run's tree: the initial state's hash, then each interval's
    leaves: list[bytes] = field(default_factory=list, repr=False)
    #: the chain's seed that selected the intervals checked (empty when unverified)
    seed: bytes = b""
    #: selected intervals left unchecked: their states were lost with a provider that
    #: failed during the run (the run went on elsewhere)
    unavailable: list[int] = field(default_factory=list)
    #: fetches a state of the run by its hash (from the client, or its provider)
    fetch_state: Callable[[bytes], np.ndarray] | None = field(default=None, repr=False)
    _client: Client | None = field(default=None, repr=False)

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.ok

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """The network's named parameters (``state_dict`` order), as numpy arrays."""
        from ..workloads._kind_train import _network

        net = _network(self.spec, self.state)
        return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}

    def infer(self, x: Any) -> np.ndarray:
        """The model's logits for ``x``, run on the network (the ``onnx`` workload)."""
        if self._client is None:
            raise InvalidInput("this model has no client to run it on")
        return self._client.infer(self.onnx, x)

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write ``model.safetensors``, ``model.onnx``, ``metrics.json``,
        ``lineage.json`` and ``checkpoint.npy`` (the final state, to resume or fine-tune)
        into ``directory``; the paths written."""
        from safetensors.numpy import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "weights": out / "model.safetensors",
            "onnx": out / "model.onnx",
            "metrics": out / "metrics.json",
            "lineage": out / "lineage.json",
            "checkpoint": out / "checkpoint.npy",
        }
        meta = {"spec": self.spec.model_dump_json(), "model_hash": self.model_hash}
        save_file(self.weights, str(paths["weights"]), metadata=meta)
        paths["onnx"].write_bytes(self.onnx)
        paths["checkpoint"].write_bytes(npy_bytes(self.state))
        final = self.epochs[-1] if self.epochs else {}
        paths["metrics"].write_text(json.dumps({"epochs": self.epochs, "final": final}, indent=1))
        paths["lineage"].write_text(json.dumps(self.describe(), indent=1))
        return paths

    def describe(self) -> dict[str, Any]:
        """The model's facts as JSON-able values (``lineage.json``, ``--json``)."""
        report = self.verification
        return {
            "model": self.model_hash,
            "run": self.run_id,
            "checkpoints_root": self.checkpoints_root,
            "spec_hash": hashlib.sha256(_canonical(self.spec)).hexdigest(),
            "data_hash": self.spec.data,
            "steps": self.run.steps,
            "segments": self.run.segments,
            "paid": {k: str(v) for k, v in self.run.paid.items()},
            "failovers": [f.__dict__ for f in self.run.failovers],
            "verification": None
            if report is None
            else {
                "ok": report.ok,
                "checked": report.checked,
                "failed": list(report.failed),
                "unavailable": list(self.unavailable),
                "max_distance": report.max_distance,
                "verify_seconds": report.verify_seconds,
            },
            "disputes": [{"dispute": d.dispute, "outcome": d.outcome} for d in self.disputes],
            "lineage": [
                {
                    "model": r.model.hex(),
                    "registrant": r.registrant,
                    "trainer": r.trainer,
                    "registered_at": r.registered_at,
                    "parent": r.parent.hex(),
                }
                for r in self.lineage
            ],
        }


@dataclass(frozen=True)
class TrainCheckpoint:
    """Where a stopped training run goes on from (``resume_from`` of ``Client.train``).

    An error that stops a run (or a Ctrl-C) after a segment was received carries one as
    its ``resume_from`` attribute (None before the first segment)."""

    step: int
    state: bytes  # the state at ``step``, as .npy (float32)
    leaves: tuple[bytes, ...]  # the run's checkpoint hashes so far (leaf 0: the initial state)
    holders: tuple[str, ...]  # the provider that keeps each leaf's state ("" for leaf 0)

    def describe(self) -> dict[str, Any]:
        """JSON-able, without the state (``resume.json`` of ``idlegrid train``)."""
        return {
            "step": self.step,
            "state": hashlib.sha256(self.state).hexdigest(),
            "leaves": [h.hex() for h in self.leaves],
            "holders": list(self.holders),
        }

    @classmethod
    def from_description(cls, facts: Mapping[str, Any], state: bytes) -> TrainCheckpoint:
        """The checkpoint ``describe`` wrote, with its state; InvalidInput if they differ."""
        try:
            point = cls(
                int(facts["step"]),
                state,
                tuple(bytes.fromhex(h) for h in facts["leaves"]),
                tuple(str(a) for a in facts["holders"]),
            )
            digest = str(facts["state"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a training checkpoint's description ({exc})") from None
        if hashlib.sha256(state).hexdigest() != digest:
            raise InvalidInput("the checkpoint's state is not the one its description names")
        if len(point.leaves) != len(point.holders) or not point.leaves:
            raise InvalidInput("the checkpoint's description has no checkpoint hashes")
        return point


def _canonical(spec: TrainSpec) -> bytes:
    """The run's spec without what changes per segment (its hash names the run)."""
    fields = spec.model_dump(exclude={"start", "steps", "state"})
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def layout(job: TrainJob, rows: int, state_floats: int) -> tuple[int, int, int]:
    """``(total_steps, interval, segment_steps)`` of a job over ``rows`` training rows.

    The interval makes the run at least ``INTERVALS_PER_CHECK * checks`` intervals long
    (so replaying ``checks`` of them is at most 2.5 % of the training) unless the job sets
    it; a segment is about an epoch, a multiple of the interval, within the caps on the
    checkpoints one segment may keep."""
    per_epoch = rows // job.batch
    if per_epoch < 1:
        raise InvalidInput(f"the data set has {rows} training rows, fewer than a batch")
    total = job.total_steps if job.total_steps is not None else (job.epochs or 1) * per_epoch
    k = job.interval or max(1, total // (INTERVALS_PER_CHECK * job.checks))
    cap = max(1, min(MAX_INTERVALS, MAX_SEGMENT_STATE_BYTES // (4 * state_floats)))
    if job.segment_steps is not None:
        segment = job.segment_steps
        if segment % k:
            raise InvalidInput(f"segment_steps {segment} is not a multiple of interval {k}")
    else:
        segment = max(k, per_epoch // k * k)
    segment = min(segment, cap * k)
    return total, k, segment


def train(
    client: Client,
    job: TrainJob,
    data: bytes,
    *,
    on_event: Callable[[Progress | Failover], None] | None = None,
    resume_from: Any = None,
    register: bool = True,
    store: ModelStore | None = None,
) -> TrainedModel:
    """Train on the network, verify and register (see the module's docstring)."""
    digest = hashlib.sha256(data).hexdigest()
    if job.data_hash is not None and job.data_hash != digest:
        raise InvalidInput(
            f"data hash mismatch: the job names {job.data_hash}, the data is {digest}"
        )
    from ..workloads import get_workload
    from ..workloads._kind_train import _cuda

    if job.device == "cuda" and job.verify == "pol" and not _cuda():
        raise InvalidInput(
            "a cuda run is replayed on CUDA: this machine has none (verify: none, or verify "
            "from a machine with CUDA)"
        )
    probe = get_workload("train").parse(
        {**_base(job, 1, None), "data": "0" * 64, "start": 0, "steps": 1}
    )
    assert isinstance(probe, TrainSpec)
    arrays = read_dataset(data, probe)
    total, k, segment = layout(job, len(arrays[1]), state_size(probe))
    options = _base(job, total, k)
    options.pop("total_steps")
    resume, restored = _resume_point(resume_from, job, k)
    run = client.start(
        "train",
        node_driven=True,
        resume_from=resume,
        data=data,
        total_steps=total,
        segment_steps=segment,
        **restored,
        **options,
    )
    plan = run.plan
    assert isinstance(plan, TrainPlan)
    per_epoch = len(arrays[1]) // job.batch
    epochs: list[dict[str, float]] = []
    try:
        for event in run.events():
            if isinstance(event, Progress) and (
                event.step % per_epoch < segment or event.step == total
            ):
                epochs.append({"epoch": event.step / per_epoch, **event.metrics})
            if on_event is not None:
                on_event(event)
        result = run.result()
        if result.cancelled:
            raise InvalidInput(
                f"the training run stopped at step {result.steps} of {total}: resume it from "
                "the checkpoint this error carries (its resume_from)"
            )
    except BaseException as exc:  # Ctrl-C too: stop the run, say where it can go on from
        run.cancel()
        if run._future is not None:  # now: the segment under way is not waited for
            run._future.cancel()
        exc.resume_from = _stopped_at(run, plan)  # type: ignore[attr-defined]
        raise
    spec = plan.spec(0, min(segment, total))
    state = plan.result(result.checkpoint)
    onnx = export_onnx(spec, state)
    model_hash = hashlib.sha256(onnx).hexdigest()
    root = merkle_root(plan.leaves) if len(plan.leaves) > 1 else bytes(32)
    model = TrainedModel(
        spec, state, onnx, model_hash, epochs, result, "", "0x" + root.hex(), None, _client=client
    )
    model.leaves = list(plan.leaves)
    model.fetch_state = _Fetcher(client, plan, _held_states(run.signed, plan))
    _keep(store, onnx)
    if job.verify == "pol":
        if _registry(client) is None:
            raise InvalidInput("proof-of-learning needs the ModelRegistry (or verify: none)")
        _verify(client, model, run, plan, job.checks, arrays, dispute=job.dispute)
    if register and _registry(client) is not None:
        _register(client, model, result)
    return model


def _resume_point(
    resume_from: Any, job: TrainJob, interval: int
) -> tuple[tuple[int, bytes] | None, dict[str, Any]]:
    """``(step, state)`` for ``Client.start`` and the run's checkpoint hashes so far (the
    plan's ``leaves`` and ``holders``) from a :class:`TrainCheckpoint` or ``(step, state)``
    (then the earlier hashes are unknown: only an unverified run may resume from it)."""
    if resume_from is None:
        return None, {}
    if isinstance(resume_from, TrainCheckpoint):
        point = resume_from
    else:
        step, state = resume_from
        if job.verify == "pol":
            raise InvalidInput(
                "a verified run resumes from a TrainCheckpoint (it has the run's checkpoint "
                "hashes so far), not from (step, state)"
            )
        done = int(step) // interval + 1
        state = npy_bytes(state) if isinstance(state, np.ndarray) else bytes(state)
        point = TrainCheckpoint(int(step), state, (bytes(32),) * done, ("",) * done)
    if point.step % interval or len(point.leaves) != point.step // interval + 1:
        raise InvalidInput(
            f"the checkpoint at step {point.step} is not on this run's grid of {interval} steps"
        )
    restored = {"leaves": list(point.leaves), "holders": list(point.holders)}
    return (point.step, point.state), restored


def _stopped_at(run: Run, plan: TrainPlan) -> TrainCheckpoint | None:
    """Where a stopped run can go on from: its last checkpoint received, if any."""
    if run.checkpoint is None:
        return None
    step, raw = run.checkpoint
    done = step // plan.interval + 1
    state = npy_bytes(plan.result(raw))
    return TrainCheckpoint(step, state, tuple(plan.leaves[:done]), tuple(plan.holders[:done]))


def _registry(client: Client) -> ModelRegistryClient | None:
    from .._exceptions import ConfigError
    from ..chain import ModelRegistryClient

    try:
        return client.ledger.client("models", ModelRegistryClient)
    except ConfigError:  # a deployment without a model registry
        return None


def _base(job: TrainJob, total: int, interval: int | None) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": job.model,
        "optimizer": job.optimizer,
        "lr": job.lr,
        "schedule": job.schedule,
        "total_steps": total,
        "batch": job.batch,
        "seed": job.seed,
    }
    if job.device != "cpu":
        base["device"] = job.device
    if interval is not None:
        base["interval"] = interval
    return base


def _keep(store: ModelStore | None, onnx: bytes) -> None:
    """The model in the client's model store, so that it runs by its hash."""
    from ._models import ModelStore

    try:
        (store or ModelStore.default()).put(onnx)
    except (OSError, IdlegridError) as exc:  # a cache: the model is returned anyway
        log.warning("could not keep the model in the local store: %s", exc)


def _verify(
    client: Client,
    model: TrainedModel,
    run: Run,
    plan: TrainPlan,
    checks: int,
    arrays: Any,
    *,
    dispute: bool,
) -> None:
    """Commit, draw, replay (``verify_run``), dispute what fails, record the outcome."""
    models = _registry(client)
    assert models is not None
    leaves = plan.leaves
    root = bytes.fromhex(model.checkpoints_root[2:])
    run_id = hashlib.sha256(root + client.account.address.encode() + os.urandom(16)).digest()
    spec_hash = hashlib.sha256(_canonical(model.spec)).digest()
    models.commit_training(
        run_id,
        spec_hash=spec_hash,
        data_hash=bytes.fromhex(model.spec.data),
        checkpoints_root=root,
        intervals=len(leaves) - 1,
        sender=client.account,
    )
    seed = models.wait_seed(run_id, sender=client.account, timeout_s=client.timeout_s * 4)
    fetch = model.fetch_state
    assert isinstance(fetch, _Fetcher)
    held = fetch.held
    x, y = arrays[0], arrays[1]
    run_spec = TrainSpec.model_validate({**model.spec.model_dump(), "interval": plan.interval})
    report = verify_run(run_spec, x, y, leaves, fetch, seed, checks, tolerance=POL_TOLERANCE)
    report, model.unavailable = _without_lost(report, leaves, fetch, run)
    model.run_id = "0x" + run_id.hex()
    model.seed = seed
    model.verification = report
    if not report.ok and dispute:
        model.disputes = _dispute(client, run, plan, report, held)
    models.record_verification(
        run_id,
        passed=report.ok,
        checked=report.checked,
        failed=len(report.failed) + (0 if report.initial_ok else 1),
        sender=client.account,
    )


def _without_lost(
    report: PolReport, leaves: list[bytes], fetch: _Fetcher, run: Run
) -> tuple[PolReport, list[int]]:
    """The report without the intervals whose states were lost with a provider that
    failed during the run (killed, unreachable: the run went on elsewhere): they could
    not be checked, which is not evidence of cheating. Returns those intervals apart."""
    import dataclasses

    failed = {f.provider for f in run.result().failovers}
    missing = set(fetch.missing)
    lost = [
        v.index
        for v in report.verdicts
        if not v.ok
        and any(
            leaves[i].hex() in missing and fetch.where.get(leaves[i], "") in failed
            for i in (v.index, v.index + 1)
        )
    ]
    if not lost:
        return report, []
    kept = tuple(v for v in report.verdicts if v.index not in lost)
    return dataclasses.replace(report, verdicts=kept), lost


def _held_states(signed: list[SignedSegment], plan: TrainPlan) -> dict[bytes, np.ndarray]:
    """The states the client holds: the initial one (it follows from the seed) and each
    segment's last one (in its output)."""
    from ..workloads._kind_train import initial_state

    first = initial_state(plan.spec(0, 1))
    held: dict[bytes, np.ndarray] = {state_hash(first): first}
    for s in signed:
        state = plan.result(s.output_npy)
        held[state_hash(state)] = state
    return held


class _Fetcher:
    """``fetch_state`` for ``verify_run``: a state the client holds, else from the
    provider whose segment made it (checked against its hash by the session). A state
    its provider cannot produce comes back empty: it hashes to no leaf, so the interval
    fails (the provider signed a checkpoint it cannot show)."""

    def __init__(self, client: Client, plan: TrainPlan, held: dict[bytes, np.ndarray]) -> None:
        self.client, self.plan, self.held = client, plan, held
        self.where = dict(zip(plan.leaves, plan.holders, strict=True))
        self.missing: list[str] = []

    def __call__(self, digest: bytes) -> np.ndarray:
        if digest in self.held:
            return self.held[digest]
        provider = self.where.get(digest, "")
        try:
            raw = self.client._run(self._get(provider, digest.hex()))
            return array_from_npy(raw, max_bytes=len(raw) + 1)
        except (ProviderFailed, PeerError, InvalidInput, OSError) as exc:
            log.warning("state %s from %s: %s", digest.hex()[:12], provider, exc)
            self.missing.append(digest.hex())
            return np.zeros(0, np.float32)

    async def _get(self, provider: str, digest: str) -> bytes:
        for session in await self.client._sessions_for(provider):
            return await session.get_blob(digest)
        raise ProviderFailed(f"{provider} is not reachable")


@dataclass(frozen=True)
class _SegmentRequest:
    """A segment's job as a dispute names it (its kind and spec fields)."""

    kind: str
    fields: dict[str, Any]

    def spec_fields(self) -> dict[str, Any]:
        return dict(self.fields)


def _dispute(
    client: Client, run: Run, plan: TrainPlan, report: PolReport, held: dict[bytes, np.ndarray]
) -> list[DisputeReport]:
    """Dispute the segment of the first failed interval of each provider caught."""
    from ._disputes import dispute_receipt

    out: list[DisputeReport] = []
    done: set[str] = set()
    for index in report.failed:
        start = index * plan.interval
        segment = next((s for s in run.signed if s.start <= start < s.start + s.steps), None)
        if segment is None or segment.provider in done:
            continue
        done.add(segment.provider)
        channel = next(
            (c for c in client._channels.all() if c.terms.id == segment.receipt.channel), None
        )
        if channel is None:
            continue
        blobs = {plan.digest: plan.data}
        before = segment.fields.get("state")
        if before is not None:
            state = held.get(bytes.fromhex(before))
            if state is None:
                log.warning("dispute: the state before segment %d is not held", segment.start)
                continue
            blobs[before] = npy_bytes(state)
        signed = SignedReceipt(
            _SegmentRequest("train", segment.fields),
            segment.receipt,
            segment.signature,
            segment.output_npy,
        )
        try:
            out.append(
                client._run(
                    dispute_receipt(client, signed, channel, blobs, timeout_s=client.timeout_s * 20)
                )
            )
        except IdlegridError as exc:
            log.warning("dispute of %s failed: %s", segment.provider, exc)
    return out


def _register(client: Client, model: TrainedModel, result: RunResult) -> None:
    """Register the model: from its verified run, else as a model of unknown training."""
    models = _registry(client)
    assert models is not None
    digest = bytes.fromhex(model.model_hash)
    if models.model(digest) is None:
        trainer = max(result.segments, key=lambda a: result.segments[a])
        if model.run_id:
            models.register_trained(
                digest, run=bytes.fromhex(model.run_id[2:]), trainer=trainer, sender=client.account
            )
        else:
            models.register(
                digest,
                spec_hash=hashlib.sha256(_canonical(model.spec)).digest(),
                data_hash=bytes.fromhex(model.spec.data),
                trainer=trainer,
                sender=client.account,
            )
    model.lineage = models.lineage(digest)
