"""A ``payout: run`` run's held rounds, on disk: a coordinator killed outright (power
cut, ``kill -9``, out of memory) before its run's end posted nothing, and its
contributors would wait for a settlement that never comes. The budget is not stranded
(it is only moved to the pool with the settlement), but the contributors' work is
unpaid.

So the coordinator writes each round it holds for the settlement to its output
directory as the round ends, ``held/round-NNNNN-inputs.npz`` (that round's
:class:`~idlegrid.fl.RoundInputs` file, written whole then renamed, so that a kill
mid-write leaves no half file), beside ``held/settlement.json`` (the run and the
settlement's part). When the run is settled it removes them. After a kill, the
sponsor settles from them: ``idlegrid posting settle DIR`` (:func:`settle_held`)
builds the run's :class:`~idlegrid.fl.RunInputs` from the held rounds, publishes it as
``DIR/run-inputs.npz``, funds the run's pool and posts the settlement for the last
held round, as the coordinator would have at the run's end.

The directory is the sponsor's own, but its files are read as a stranger's would be:
within the inputs' byte budget, each by its own reader, only names this module writes
(nothing in a file names a path).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .._exceptions import ConfigError, InvalidInput
from ._inputs import MAX_INPUTS_BYTES, RoundInputs, fund_run, post_contributions
from ._run_inputs import MAX_RUN_ROUNDS, RunInputs

if TYPE_CHECKING:
    from ..client import Client

__all__ = [
    "HELD_DIR",
    "forget_held",
    "hold_round",
    "read_held",
    "refuse_unsettled",
    "settle_held",
]

#: the output directory's folder of held rounds
HELD_DIR = "held"
#: the held run's id and the settlement's part
META_FILE = "settlement.json"
META_FORMAT = "idlegrid/held/1"
#: the most bytes ``settlement.json`` may have
MAX_META_BYTES = 4096
ROUND_FILE = re.compile(r"round-(\d{5})-inputs\.npz")


def _write(path: Path, data: bytes) -> None:
    """``data`` to ``path``, whole or not at all (a temporary file renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def hold_round(directory: Path, run: bytes, part: int, inputs: RoundInputs) -> None:
    """Keep round ``inputs.round`` of ``run`` in ``directory/held`` for the run's
    settlement of ``part`` wei (blocking: the round's file)."""
    held = directory / HELD_DIR
    held.mkdir(parents=True, exist_ok=True)
    meta = held / META_FILE
    if not meta.exists():
        doc = {"format": META_FORMAT, "run": run.hex(), "part": str(part)}
        _write(meta, json.dumps(doc).encode())
    _write(held / f"round-{inputs.round:05d}-inputs.npz", inputs.to_bytes())


def refuse_unsettled(directory: Path) -> None:
    """ConfigError if ``directory/held`` holds an earlier run's rounds: a new run's
    would mix with them, and removing them would leave that run's contributors unpaid."""
    held = directory / HELD_DIR
    if held.exists():
        raise ConfigError(
            f"{held} holds the rounds of an earlier run that was never settled: settle it "
            f"with `idlegrid posting settle {directory}`, or give this run another output"
        )


def forget_held(directory: Path) -> None:
    """Remove ``directory/held`` (the run is settled, or its rounds posted one by one)."""
    shutil.rmtree(directory / HELD_DIR, ignore_errors=True)


def _fail(why: str) -> InvalidInput:
    return InvalidInput(f"held rounds: {why}")


def _meta(held: Path) -> tuple[bytes, int]:
    path = held / META_FILE
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_META_BYTES + 1)
    except FileNotFoundError:
        raise _fail(f"{held} holds no run's settlement ({META_FILE} is missing)") from None
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_META_BYTES:
        raise _fail(f"{META_FILE} is over {MAX_META_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(f"{META_FILE} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != {"format", "run", "part"}:
        raise _fail(f"{META_FILE} is not an object of format, run and part")
    if doc["format"] != META_FORMAT:
        raise _fail(f"{META_FILE} is of format {doc['format']!r}, not {META_FORMAT!r}")
    run, part = doc["run"], doc["part"]
    if not isinstance(run, str) or not re.fullmatch(r"[0-9a-f]{64}", run):
        raise _fail("the run id is not 32 bytes of hex")
    if not isinstance(part, str) or not re.fullmatch(r"\d{1,78}", part) or int(part) >= 2**256:
        raise _fail("the settlement's part is not an amount of wei")
    return bytes.fromhex(run), int(part)


def read_held(directory: Path) -> RunInputs:
    """The settlement inputs of the rounds held in ``directory/held``; InvalidInput says
    what is missing or wrong (another run's round, a damaged file, too many bytes)."""
    held = directory / HELD_DIR
    if not held.is_dir():
        raise _fail(f"{directory} has no {HELD_DIR}/ folder: no run's rounds wait there")
    run, part = _meta(held)
    files: list[tuple[int, Path]] = []
    size = 0
    with os.scandir(held) as entries:
        for entry in entries:
            match = ROUND_FILE.fullmatch(entry.name)
            if match is None:
                continue  # settlement.json, a temporary file a kill left
            if not entry.is_file(follow_symlinks=False):
                raise _fail(f"{entry.name} is not a plain file")
            size += entry.stat(follow_symlinks=False).st_size
            files.append((int(match.group(1)), Path(entry.path)))
            if len(files) > MAX_RUN_ROUNDS or size > MAX_INPUTS_BYTES:
                raise _fail(f"more than {MAX_RUN_ROUNDS} rounds or {MAX_INPUTS_BYTES} bytes")
    if not files:
        raise _fail(f"{held} holds no round")
    rounds = []
    for number, path in sorted(files):
        try:
            inputs = RoundInputs.from_bytes(path.read_bytes())
        except InvalidInput as exc:
            raise _fail(f"{path.name}: {exc}") from exc
        except OSError as exc:
            raise _fail(f"cannot read {path}: {exc.strerror or exc}") from exc
        if inputs.round != number:
            raise _fail(f"{path.name} holds round {inputs.round}'s inputs")
        rounds.append(inputs)
    try:
        return RunInputs(run=run, rounds=rounds, part=part)
    except InvalidInput as exc:
        raise _fail(str(exc)) from exc


def settle_held(
    client: Client, directory: Path, inputs: RunInputs | None = None
) -> tuple[dict[str, int], RunInputs]:
    """Settle the run whose rounds ``directory/held`` holds (its coordinator was killed
    before its end): publish the settlement's inputs as ``directory/run-inputs.npz``,
    fund the run's pool up to the settlement's part (what it does not hold yet: a
    settlement whose posting failed after funding is not funded twice) and post it for
    the last held round. ``client`` must be the run's coordinator (the pool refuses
    anyone else). The held rounds are removed once posted. ``inputs``: what
    :func:`read_held` gave for ``directory``, if the caller read it already.
    ``(amounts, inputs)``."""
    from ..chain import RewardPoolClient

    inputs = read_held(directory) if inputs is None else inputs
    if not inputs.amounts():
        raise InvalidInput("nobody's netted contribution is positive: nothing to post")
    pool = client.ledger.client("rewards", RewardPoolClient)
    if pool.posting(inputs.run, inputs.round).posted_at != 0:
        raise InvalidInput(f"round {inputs.round} of the run is already posted")
    _write(directory / "run-inputs.npz", inputs.to_bytes())
    missing = inputs.part - pool.pool(inputs.run).budget
    if missing > 0:
        fund_run(client, inputs.run, missing)
    amounts = post_contributions(client, inputs)
    forget_held(directory)
    return amounts, inputs
