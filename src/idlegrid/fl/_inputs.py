"""A round's published inputs: everything the contribution estimate of a clear round is
computed from, so that anyone can recompute its reward posting and challenge it.

The estimate (:func:`~idlegrid.fl.aumann_shapley`) is deterministic for its inputs: the
global model before the round, each participant's update and example count, the
previous round's global step, the sponsor's validation set, the model's spec and the
points of the path's quadrature (``nodes``). :class:`RoundInputs` holds them with the
round's reward part, computes the contributions and the amounts the coordinator posts (the
coordinator uses it too), and writes them as one ``.npz`` whose sha256 the posting records.

The file is an ``.npz`` that ``numpy.load(..., allow_pickle=False)`` reads: stored (not
compressed) members ``meta.npy`` (the scalars, the model and the participants as UTF-8
JSON in uint8), ``params.npy`` (float32 ``[P]``), ``updates.npy`` (float32 ``[n, P]``,
participants in ascending address order), ``previous_step.npy`` (float32 ``[P]``, when
there was a previous round), ``x_val.npy`` (float32 ``[rows, *input]``) and ``y_val.npy``
(int64 ``[rows]``). The zip's timestamps and attributes are fixed, so the same inputs
always give the same bytes.

:meth:`RoundInputs.from_bytes` reads a stranger's file within budgets: the size first,
then the zip's directory (stored members only, so a declared size is the size in the
file), then each array's header (dtype and shape as the model says, before its data is
touched), then the values. :func:`check_posting` says whether a posting matches a
recomputation, within a tolerance for another machine's floating point.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from tokenize import TokenError
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from pydantic import TypeAdapter, ValidationError

from .._exceptions import InvalidInput, PayloadTooLarge
from ..protocol import checksum, npy_bytes
from ..workloads._kind_fl import MAX_ROSTER
from ..workloads._train_models import (
    CnnModel,
    MlpModel,
    ModelSpec,
    TransformerModel,
    input_shape,
    param_count,
)
from ._contrib import MAX_NODES, aumann_shapley, split_reward, validation_value

if TYPE_CHECKING:
    from ..client import Client
    from ._run_inputs import RunInputs
    from ._secure_inputs import SecureRoundInputs

__all__ = ["MAX_INPUTS_BYTES", "RoundInputs", "check_posting", "post_contributions"]

#: bytes a round's inputs may have (a blob store's default limit)
MAX_INPUTS_BYTES = 256 * 2**20
#: the format's name, in ``meta.npy``: another estimator is another format
FORMAT = "idlegrid/round-inputs/3"
#: a posted amount may differ from the recomputation by this part of the round's reward
TOLERANCE = 10**-4

_MAX_META_BYTES = 64 * 2**10
_MAX_DIRECTORY_BYTES = 64 * 2**10
_EPOCH = (1980, 1, 1, 0, 0, 0)
_EOCD = struct.Struct("<4s4H2LH")  # the zip's end of central directory record
_F32, _I64, _U8 = np.dtype("<f4"), np.dtype("<i8"), np.dtype("<u1")
_META_KEYS = {"format", "run", "round", "model", "clients", "examples", "nodes", "part"}
_MEMBERS = ("meta", "params", "updates", "previous_step", "x_val", "y_val")
_models: TypeAdapter[MlpModel | CnnModel | TransformerModel] = TypeAdapter(ModelSpec)


class _Published:
    """What every kind of published inputs does with its file: the bytes (written once,
    by the subclass's ``_write``) and their sha256 (what a posting records)."""

    def _write(self) -> bytes:
        raise NotImplementedError

    @cached_property
    def _blob(self) -> bytes:
        return self._write()

    def to_bytes(self) -> bytes:
        """The inputs as an ``.npz``; the same inputs give the same bytes."""
        return self._blob

    @cached_property
    def sha256(self) -> bytes:
        """The sha256 of :meth:`to_bytes` (what the posting records)."""
        return hashlib.sha256(self._blob).digest()


@dataclass(frozen=True, eq=False)
class RoundInputs(_Published):
    """What round ``round`` of run ``run`` paid its contributors from (see the module's
    notes). Checked when built: a ``RoundInputs`` always writes a file
    :meth:`from_bytes` reads. Updates are kept in ascending address order."""

    run: bytes
    round: int
    model: MlpModel | CnnModel | TransformerModel
    #: float32 [P]: the global model before the round
    params: np.ndarray
    #: address -> float32 [P]: the participant's new weights as the coordinator got them
    updates: Mapping[str, np.ndarray]
    #: address -> the examples it trained on (its weight)
    examples: Mapping[str, int]
    #: float32 [P]: the previous round's global step, or None in the first round
    previous_step: np.ndarray | None
    x_val: np.ndarray
    y_val: np.ndarray
    #: the points of the Gauss-Legendre rule the estimate averages the gradient on
    nodes: int
    #: the round's reward part (wei)
    part: int

    def __post_init__(self) -> None:
        _check(self)

    # -- the recomputation -------------------------------------------------------------
    def contributions(self) -> dict[str, float]:
        """Each participant's contribution (its Aumann-Shapley value, in units of the
        validation score)."""
        return dict(self._contributions)

    def amounts(self) -> dict[str, int]:
        """What the round's posting pays each contributor (wei)."""
        return split_reward(self.part, self._contributions)

    def check(self, posted: Mapping[str, int]) -> str | None:
        """Why ``posted`` (address -> wei) is not this round's posting; None if it is."""
        why = check_posting(posted, self.amounts(), self.part)
        if why is not None:
            return why
        for who in map(checksum, posted):  # addresses, check_posting made sure
            if who not in self.updates:
                return f"{who} is paid and did not take part in round {self.round}"
        return None

    @cached_property
    def _contributions(self) -> dict[str, float]:
        clients = list(self.updates)
        got = aumann_shapley(
            self.params,
            dict(enumerate(self.updates.values())),
            {i: self.examples[a] for i, a in enumerate(clients)},
            validation_value(self.model, self.x_val, self.y_val),
            nodes=self.nodes,
            previous_step=self.previous_step,
        )
        return {clients[i]: v for i, v in got.values.items()}

    # -- the file ----------------------------------------------------------------------
    @property
    def data_hash(self) -> bytes:
        """The validation set's hash as the run registers it with each round's model."""
        return _data_hash(self.x_val, self.y_val)

    def _write(self) -> bytes:
        meta = {
            "format": FORMAT,
            "run": self.run.hex(),
            "round": self.round,
            "model": self.model.model_dump(mode="json"),
            "clients": list(self.updates),
            "examples": [int(self.examples[a]) for a in self.updates],
            "nodes": self.nodes,
            "part": self.part,
        }
        arrays: dict[str, np.ndarray | None] = {
            "params": self.params,
            "updates": np.stack(list(self.updates.values())),
            "previous_step": self.previous_step,
            "x_val": self.x_val,
            "y_val": self.y_val,
        }
        return _file(meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = MAX_INPUTS_BYTES) -> RoundInputs:
        """A stranger's file, read within budgets; InvalidInput says what is wrong."""
        members = _members(data, max_bytes, _MEMBERS, optional=("previous_step",))
        meta = _meta(members.pop("meta"))
        model = meta["model"]
        p, shape = param_count(model), input_shape(model)
        ndim = {"params": 1, "updates": 2, "previous_step": 1, "x_val": 1 + len(shape)}
        arrays = {
            name: _array(name, raw, _I64 if name == "y_val" else _F32, ndim.get(name, 1))
            for name, raw in members.items()
        }
        rows = len(arrays["y_val"])
        want = {
            "params": (p,),
            "updates": (len(meta["clients"]), p),
            "previous_step": (p,),
            "x_val": (rows, *shape),
        }
        for name, expected in want.items():
            if name in arrays and arrays[name].shape != expected:
                raise InvalidInput(
                    f"round inputs: {name} is {list(arrays[name].shape)}, "
                    f"the model and participants make it {list(expected)}"
                )
        return cls(
            run=meta["run"],
            round=meta["round"],
            model=model,
            params=arrays["params"],
            updates=dict(zip(meta["clients"], arrays["updates"], strict=True)),
            examples=dict(zip(meta["clients"], meta["examples"], strict=True)),
            previous_step=arrays.get("previous_step"),
            x_val=arrays["x_val"],
            y_val=arrays["y_val"],
            nodes=meta["nodes"],
            part=meta["part"],
        )


def check_posting(
    posted: Mapping[str, int], recomputed: Mapping[str, int], part: int
) -> str | None:
    """Why a round's posting (address -> wei) is wrong against its recomputation; None
    if it is right. Each amount may differ from the recomputation by
    ``max(1, part * TOLERANCE)`` wei (another machine's BLAS may round the last bits
    differently), so a contributor recomputed within that of zero may be absent from
    either; the posting may not pay more than ``part`` in all."""
    tol = max(1, part // round(1 / TOLERANCE))
    try:
        mine = {_checksum(a): int(v) for a, v in posted.items()}
        theirs = {_checksum(a): int(v) for a, v in recomputed.items()}
    except InvalidInput as exc:
        return str(exc)
    if len(mine) != len(posted):
        return "the posting names a contributor twice"
    for who in sorted(mine.keys() | theirs.keys()):
        got, want = mine.get(who, 0), theirs.get(who, 0)
        if got < 0:
            return f"{who} is posted a negative amount ({got} wei)"
        if abs(got - want) <= tol:
            continue
        if who not in mine:
            return f"{who} is owed {want} wei and not in the posting"
        if who not in theirs:
            return f"{who} is posted {got} wei and earned nothing"
        return f"{who} is posted {got} wei, the recomputation gives {want} (± {tol})"
    total = sum(mine.values())
    if total > part:
        return f"the posting pays {total} wei, more than the round's part of {part}"
    return None


# -- checks -------------------------------------------------------------------------------


def _checksum(address: str) -> str:
    if not isinstance(address, str):
        raise InvalidInput(f"not an Ethereum address: {address!r}")
    return checksum(address)


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _fail(why: str) -> NoReturn:
    raise InvalidInput(f"round inputs: {why}")


def _check(r: RoundInputs) -> None:
    """The meaning of a round's inputs (the shapes of a file are checked as it is read);
    normalises them: contiguous arrays, participants in ascending address order."""
    _check_header(r.run, r.round, r.model, r.part, _fail)
    if not _is_int(r.nodes) or not 1 <= r.nodes <= MAX_NODES:
        _fail(f"nodes {r.nodes!r} is not an integer in [1, {MAX_NODES}]")
    p = param_count(r.model)
    params = _floats(r.params, (p,), "the global model")
    if not 1 <= len(r.updates) <= MAX_ROSTER:
        _fail(f"{len(r.updates)} participants, not 1 to {MAX_ROSTER}")
    if set(r.updates) != set(r.examples):
        _fail("every participant needs an example count, and only participants")
    updates: dict[str, np.ndarray] = {}
    for who in sorted(r.updates, key=lambda a: int(a, 16) if _is_address(a) else -1):
        if not _is_address(who):
            _fail(f"participant {who!r} is not a checksummed address")
        updates[who] = _floats(r.updates[who], (p,), f"{who}'s update")
        n = r.examples[who]
        if not _is_int(n) or not 0 < n < 2**63:
            _fail(f"{who} claims {n!r} examples")
    previous = r.previous_step
    if previous is not None:
        previous = _floats(previous, (p,), "the previous step")
    x = _check_validation(r.x_val, r.y_val, r.model, _fail)
    set_ = object.__setattr__
    set_(r, "params", params)
    set_(r, "updates", updates)
    set_(r, "examples", {a: int(r.examples[a]) for a in updates})
    set_(r, "previous_step", previous)
    set_(r, "x_val", x)
    set_(r, "round", int(r.round))
    set_(r, "nodes", int(r.nodes))
    set_(r, "part", int(r.part))


def _check_header(
    run: object, rnd: int, model: object, part: int, fail: Callable[[str], NoReturn]
) -> None:
    """What either kind of inputs starts with: the run id, the round, the model, the part."""
    if not isinstance(run, bytes) or len(run) != 32:
        fail("the run id is 32 bytes")
    if not _is_int(rnd) or not 1 <= rnd < 2**64:
        fail(f"round {rnd!r} is not a round number")
    if not isinstance(model, MlpModel | CnnModel | TransformerModel):
        fail("the model is not a model spec")
    if not _is_int(part) or not 0 <= part < 2**256:
        fail(f"the round's part {part!r} is not an amount of wei")


def _check_validation(
    x: object, y: object, model: ModelSpec, fail: Callable[[str], NoReturn]
) -> np.ndarray:
    """The sponsor's validation set, as either kind of inputs holds it: int64 labels
    within the model's classes and float32 rows of its input's shape; the rows,
    contiguous."""
    if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1 or not len(y):
        fail("the validation labels are int64 [rows], at least one")
    rows = _floats(x, (len(y), *input_shape(model)), "the validation set", fail)
    if int(y.min()) < 0 or int(y.max()) >= model.classes:
        fail(f"a validation label outside the model's {model.classes} classes")
    return rows


def _data_hash(x: np.ndarray, y: np.ndarray) -> bytes:
    """The validation set's hash as a run registers it with each round's model."""
    return hashlib.sha256(npy_bytes(x) + npy_bytes(y)).digest()


def _is_address(a: object) -> bool:
    if not isinstance(a, str):
        return False
    try:
        return checksum(a) == a
    except InvalidInput:
        return False


def _floats(
    a: object, shape: tuple[int, ...], what: str, fail: Callable[[str], NoReturn] = _fail
) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        fail(f"{what} is not a float32 array")
    if a.shape != shape:
        fail(f"{what} is {list(a.shape)}, not {list(shape)}")
    if not np.isfinite(a).all():
        fail(f"{what} has NaN or Inf")
    return np.ascontiguousarray(a)


# -- the file -----------------------------------------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    np.lib.format.write_array(buf, np.ascontiguousarray(little), allow_pickle=False)
    return buf.getvalue()


def _file(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray | None]) -> bytes:
    """Either kind of inputs as its ``.npz``: ``meta`` as canonical JSON in ``meta.npy``,
    then ``arrays`` (those given) in order."""
    text = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    members = {"meta": np.frombuffer(text, dtype=_U8), **arrays}
    return _zip({f"{k}.npy": _npy(a) for k, a in members.items() if a is not None})


def _zip(members: Mapping[str, bytes]) -> bytes:
    """A stored zip of ``members`` whose bytes depend on nothing else (time, system)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, raw in members.items():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, raw)
    return buf.getvalue()


def _members(
    data: bytes,
    max_bytes: int,
    members: tuple[str, ...],
    *,
    optional: tuple[str, ...] = (),
    only: str | None = None,
    pattern: re.Pattern[str] | None = None,
    most: int | None = None,
) -> dict[str, bytes]:
    """The members of a stranger's zip, each checked from the directory before read:
    ``members`` the names it may hold (without ``.npy``), all but ``optional`` required,
    and any name ``pattern`` matches whole, ``most`` members in all (``len(members)`` by
    default); ``only`` reads that one member and no other."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput("round inputs are bytes")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"round inputs of {len(data)} bytes, over {max_bytes}")
    data = bytes(data)
    # the directory must end the file without a comment and be small: zipfile parses
    # all of it before we can look at the entries
    end = data[-_EOCD.size :]
    if len(end) < _EOCD.size or not end.startswith(b"PK\x05\x06"):
        raise InvalidInput("round inputs are not a zip (.npz) file")
    *_, entries, directory, _, comment = _EOCD.unpack(end)
    if comment:
        raise InvalidInput("round inputs: a zip with a comment")
    limit = len(members) if most is None else most
    if entries > limit or directory > _MAX_DIRECTORY_BYTES:
        raise InvalidInput(
            f"round inputs: a zip of {entries} members in {directory} bytes of directory, "
            f"more than its {limit} members take"
        )
    if data[-_EOCD.size - 20 : -_EOCD.size - 16] == b"PK\x06\x07":
        raise InvalidInput("round inputs: a zip64 file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            allowed = {f"{m}.npy" for m in members}
            foreign = [
                n for n in names
                if n not in allowed
                and not (pattern and n.endswith(".npy") and pattern.fullmatch(n[: -len(".npy")]))
            ]  # fmt: skip
            if len(set(names)) != len(names) or foreign:
                raise InvalidInput(f"round inputs: members {names}, expected {sorted(allowed)}")
            missing = allowed - set(names) - {f"{m}.npy" for m in optional}
            if missing:
                raise InvalidInput(f"round inputs: no {', '.join(sorted(missing))}")
            for i in infos:
                if i.compress_type != zipfile.ZIP_STORED or i.flag_bits & 0x1:
                    raise InvalidInput(f"round inputs: {i.filename} is compressed or encrypted")
                if i.file_size != i.compress_size or i.header_offset + i.file_size > len(data):
                    raise InvalidInput(
                        f"round inputs: {i.filename} declares {i.file_size} bytes, "
                        f"more than the file holds"
                    )
            meta = next(i for i in infos if i.filename == "meta.npy")
            if meta.file_size > _MAX_META_BYTES:
                raise InvalidInput(f"round inputs: meta.npy over {_MAX_META_BYTES} bytes")
            wanted = [i for i in infos if only is None or i.filename == f"{only}.npy"]
            return {i.filename[: -len(".npy")]: zf.read(i) for i in wanted}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise InvalidInput(f"round inputs: not a valid zip: {exc}") from exc
    except (ValueError, OSError, EOFError, struct.error) as exc:  # zipfile's own slips
        raise InvalidInput(f"round inputs: not a valid zip: {exc}") from exc


def _array(name: str, raw: bytes, dtype: np.dtype[Any], ndim: int) -> np.ndarray:
    """A member's array, its header checked before its data is read."""
    f = io.BytesIO(raw)
    try:
        if np.lib.format.read_magic(f) != (1, 0):
            raise ValueError("not a version 1.0 .npy")
        shape, fortran, found = np.lib.format.read_array_header_1_0(f, max_header_size=1024)
    except (ValueError, EOFError, SyntaxError, TypeError, TokenError, RecursionError) as exc:
        # numpy reads the header with tokenize and ast.literal_eval, which fail in these
        raise InvalidInput(f"round inputs: {name}.npy is not a .npy array: {exc}") from exc
    if found != dtype:
        raise InvalidInput(f"round inputs: {name}.npy has dtype {found}, expected {dtype.str}")
    if fortran or len(shape) != ndim:
        raise InvalidInput(f"round inputs: {name}.npy is {list(shape)}, not {ndim}-D C-ordered")
    count = math.prod(shape)
    if count * dtype.itemsize != len(raw) - f.tell():
        raise InvalidInput(
            f"round inputs: {name}.npy declares {list(shape)} ({count * dtype.itemsize} "
            f"bytes) and holds {len(raw) - f.tell()}"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=f.tell()).reshape(shape)


def _meta_doc(raw: bytes) -> Any:
    """``meta.npy``'s JSON document, whatever its shape."""
    array = _array("meta", raw, _U8, 1)
    try:
        return json.loads(array.tobytes().decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"round inputs: meta.npy is not JSON: {exc}") from exc


def _meta_json(raw: bytes, keys: set[str], format: str) -> dict[str, Any]:
    """``meta.npy``'s JSON object: of the format ``format`` (checked first, so that
    another format is refused by name) and with exactly ``keys``; its model read as a
    model spec and its run id as bytes."""
    doc = _meta_doc(raw)
    if not isinstance(doc, dict):
        raise InvalidInput(f"round inputs: meta.npy is not a JSON object of {sorted(keys)}")
    if doc.get("format") != format:
        raise InvalidInput(f"round inputs: format {doc.get('format')!r}, not {format!r}")
    if set(doc) != keys:
        raise InvalidInput(f"round inputs: meta.npy is not a JSON object of {sorted(keys)}")
    try:
        doc["model"] = _models.validate_python(doc["model"])
        run = bytes.fromhex(doc["run"]) if isinstance(doc["run"], str) else b""
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        why = f"{where}: {err['msg']}" if where else err["msg"]
        raise InvalidInput(f"round inputs: model: {why}") from exc
    except ValueError as exc:
        raise InvalidInput(f"round inputs: the run id is not hex: {exc}") from exc
    doc["run"] = run
    return doc


def _meta(raw: bytes) -> dict[str, Any]:
    doc = _meta_json(raw, _META_KEYS, FORMAT)
    clients, examples = doc["clients"], doc["examples"]
    if not isinstance(clients, list) or not all(isinstance(c, str) for c in clients):
        raise InvalidInput("round inputs: clients is not a list of addresses")
    if not isinstance(examples, list) or len(examples) != len(clients):
        raise InvalidInput("round inputs: examples is not a list of one count per client")
    if len(set(clients)) != len(clients):
        raise InvalidInput("round inputs: a participant is named twice")
    return doc


#: how long a run's reward budget stays in its pool at least (seconds)
REWARD_LOCK_S = 30 * 24 * 3600


def fund_run(client: Client, run: bytes, amount: int) -> None:
    """Put ``amount`` wei of ``client``'s tokens (approved here) in run ``run``'s
    RewardPool, kept there for its contributors for :data:`REWARD_LOCK_S` at least (the
    run's sponsor: the pool's first funder, the only one after)."""
    from ..chain import RewardPoolClient

    pool = client.ledger.client("rewards", RewardPoolClient)
    client.ledger.token.approve(pool.address, amount, sender=client.account)
    lock = client.ledger.backend.next_timestamp() + REWARD_LOCK_S
    pool.fund(run, amount, lock, sender=client.account)


def post_contributions(
    client: Client, inputs: RoundInputs | SecureRoundInputs | RunInputs
) -> dict[str, int]:
    """Post round ``inputs.round`` of run ``inputs.run`` from its published inputs: the
    amounts they give (:meth:`RoundInputs.amounts`), for the round's model in the
    lineage, with the inputs' sha256. What a coordinator does when a challenge voided
    its posting (the run's coordinator only; the pool refuses anyone else)."""
    from ..chain import ModelRegistryClient, RewardPoolClient, RewardTree

    models = client.ledger.client("models", ModelRegistryClient)
    model = models.round_model(inputs.run, inputs.round)
    if model is None:
        raise InvalidInput(f"round {inputs.round} of the run is not in the lineage")
    amounts = inputs.amounts()
    if not amounts:
        raise InvalidInput("nobody's contribution to the round was positive: nothing to post")
    pool = client.ledger.client("rewards", RewardPoolClient)
    tree = RewardTree(inputs.run, inputs.round, amounts)
    pool.post(tree, model, inputs=inputs.sha256, sender=client.account)
    return dict(tree.amounts)
