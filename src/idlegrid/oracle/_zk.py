"""The oracle's zero-knowledge mode: ezkl circuits, keys, proofs and the EVM verifier.

``zk_setup`` runs once per model, locally and offline (``ezkl`` 23.0.5, the ``zk``
extra): settings with public inputs and outputs and fixed weights (the batch dimension
pinned to one row), calibration, circuit, a local SRS, the proving and verifying keys,
and the Solidity ``Halo2Verifier`` ezkl writes, compiled with npm's ``solc`` (ezkl's own
step downloads a compiler, which cannot run here). ``zk_prove`` proves one row.

Values: ezkl quantizes a value x to ``round(x * 2**scale)``, a field element of BN254
(negative q as ``p - |q|``); the proof's instances are the quantized inputs then the
outputs. The oracle speaks 18-decimal fixed point; with scale s, 1e18 / 2**s is an
integer for s <= 18, so an output q is exactly ``q * 1e18 // 2**s`` and the adapter
contract (``contracts/ZkAdapter.vy``) converts both ways on chain.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import ConfigError, IdlegridError, InvalidInput

__all__ = [
    "BN254_P",
    "ZkArtifacts",
    "deploy_zk_verifier",
    "felt",
    "zk_dir",
    "zk_prove",
    "zk_setup",
]

#: the BN254 scalar field (ezkl's instances live in it)
BN254_P = 21888242871839275222246405745257275088548364400416034343698204186575808495617
_SOLC_VERSION = "0.8.37"


def zk_dir(model: bytes) -> Path:
    """Where ``zk_setup`` keeps a model's artifacts (by the model's sha256): under
    ``$IDLEGRID_CACHE/zk``, where a provider on the same machine finds the proving key."""
    from ..chain._compile import cache_dir

    return cache_dir() / "zk" / model.hex()


def _srs_dir() -> Path:
    """Where ``zk_setup`` keeps the SRS of each circuit size: ``$IDLEGRID_CACHE/zk/srs``."""
    from ..chain._compile import cache_dir

    return cache_dir() / "zk" / "srs"


def felt(q: int) -> int:
    """A signed quantized value as a field element."""
    return q % BN254_P


def _signed(f: int) -> int:
    return f - BN254_P if f > BN254_P // 2 else f


@dataclass(frozen=True)
class ZkArtifacts:
    """What ``zk_setup`` leaves in ``directory`` for one model."""

    directory: Path
    input_scale: int
    output_scale: int
    inputs: int
    outputs: int
    logrows: int
    setup_s: float

    @property
    def verifier_bin(self) -> bytes:
        return bytes.fromhex((self.directory / "Halo2Verifier.bin").read_text().strip())

    @property
    def verifier_abi(self) -> list[dict[str, Any]]:
        return list(json.loads((self.directory / "Halo2Verifier.abi").read_text()))

    @classmethod
    def load(cls, directory: Path) -> ZkArtifacts:
        doc = json.loads((directory / "zk.json").read_text())
        return cls(directory=directory, **doc)


def _ezkl() -> Any:
    try:
        import ezkl
    except ImportError as exc:  # pragma: no cover - the zk extra is in the dev install
        raise ConfigError("the zero-knowledge mode needs ezkl: pip install 'idlegrid[zk]'") from exc
    return ezkl


def _solcjs() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "node_modules" / ".bin" / "solcjs"
        if candidate.exists():
            return candidate
    found = shutil.which("solcjs")
    if found is None:
        raise ConfigError(
            f"npm's solc {_SOLC_VERSION} is needed: run `npm install` in the checkout"
        )
    return Path(found)


def _run(fn: Any, *args: Any, **kw: Any) -> Any:
    """Call an ezkl function: some return values, some awaitables that must be created
    inside a running event loop (``create_evm_verifier``), so each call runs in one."""

    async def call() -> Any:
        result = fn(*args, **kw)
        if asyncio.iscoroutine(result) or hasattr(result, "__await__"):
            result = await result
        return result

    return asyncio.run(call())


def zk_setup(model: bytes, directory: Path, *, srs_dir: Path | None = None) -> ZkArtifacts:
    """Circuit, keys and a compiled EVM verifier for ``model`` (ONNX, one input of one
    row), in ``directory``; reused when it holds them already. The SRS comes from
    ``srs_dir`` (default ``$IDLEGRID_CACHE/zk/srs``), one per circuit size, made there
    by the first setup that needs it (:func:`_srs`)."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "zk.json").exists():
        return ZkArtifacts.load(directory)
    ezkl = _ezkl()
    from ..workloads import OnnxRunner, model_info

    info = model_info(model)
    if len(info.inputs) != 1:
        raise InvalidInput("a zero-knowledge model takes one input")
    shape = [d if isinstance(d, int) else 1 for d in info.inputs[0].shape]
    width = int(np.prod(shape[1:]))
    started = time.perf_counter()
    d = directory
    (d / "model.onnx").write_bytes(model)
    sample = np.random.default_rng(0).normal(0, 1, (1, width)).astype(np.float32)
    (d / "calibration.json").write_text(json.dumps({"input_data": [sample[0].tolist()]}))
    args = ezkl.PyRunArgs()
    args.input_visibility = "public"
    args.output_visibility = "public"
    args.param_visibility = "fixed"
    args.variables = _symbols(model) or [("batch_size", 1)]  # one row
    try:
        _run(ezkl.gen_settings, str(d / "model.onnx"), str(d / "settings.json"), py_run_args=args)
        _run(
            ezkl.calibrate_settings,
            str(d / "calibration.json"),
            str(d / "model.onnx"),
            str(d / "settings.json"),
            "resources",
        )
        _run(
            ezkl.compile_circuit,
            str(d / "model.onnx"),
            str(d / "model.compiled"),
            str(d / "settings.json"),
        )
        settings = json.loads((d / "settings.json").read_text())
        run_args = settings["run_args"]
        logrows = int(run_args["logrows"])
        _copy_srs(_srs(ezkl, logrows, srs_dir or _srs_dir()), d / "kzg.srs")
        _run(
            ezkl.setup,
            str(d / "model.compiled"),
            str(d / "vk.key"),
            str(d / "pk.key"),
            str(d / "kzg.srs"),
        )
        try:  # writes the Solidity source, then fails to download a compiler
            _run(
                ezkl.create_evm_verifier,
                str(d / "vk.key"),
                str(d / "settings.json"),
                str(d / "Halo2Verifier.sol"),
                str(d / "Halo2Verifier.abi.json"),
                str(d / "kzg.srs"),
            )
        except RuntimeError:
            if not (d / "Halo2Verifier.sol").exists():
                raise
    except RuntimeError as exc:
        raise IdlegridError(f"ezkl could not set the model up: {exc}") from exc
    _compile_verifier(d)
    out = OnnxRunner(cache_size=1).run_first(model, sample[:1])
    artifacts = ZkArtifacts(
        directory=d,
        input_scale=int(run_args["input_scale"]),
        output_scale=int(run_args.get("output_scale", run_args["input_scale"])),
        inputs=width,
        outputs=int(np.asarray(out).size),
        logrows=logrows,
        setup_s=round(time.perf_counter() - started, 2),
    )
    doc = {k: v for k, v in artifacts.__dict__.items() if k != "directory"}
    (d / "zk.json").write_text(json.dumps(doc))
    return artifacts


def _srs(ezkl: Any, logrows: int, srs_dir: Path) -> Path:
    """The local KZG SRS for circuits of ``2**logrows`` rows: the one in ``srs_dir``, or
    a new one (``gen_srs``: seconds, minutes for large circuits) put there, written
    under a name of its own and renamed, so that setups racing for it each find a whole
    file. Shared by every model of that size: the SRS is a property of the size, not of
    the circuit, and a local one is as trusted as the machine that made it."""
    path = srs_dir / f"kzg-{logrows}.srs"
    if not path.exists():
        srs_dir.mkdir(parents=True, exist_ok=True)
        part = srs_dir / f".kzg-{logrows}-{secrets.token_hex(8)}.part"
        try:
            _run(ezkl.gen_srs, str(part), logrows)
            os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
    return path


def _copy_srs(source: Path, target: Path) -> None:
    """The SRS in a model's directory (its artifacts stay whole on their own): a hard
    link where the file system allows, else a copy."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _symbols(model: bytes) -> list[tuple[str, int]]:
    """The model input's symbolic dimensions, each pinned to 1 (ezkl needs them fixed)."""
    import onnx

    graph = onnx.load_from_string(model).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    return [(d.dim_param, 1) for d in dims if d.dim_param]


def _compile_verifier(d: Path) -> None:
    out = d / "solc"
    cmd = [
        str(_solcjs()),
        "--bin",
        "--abi",
        "--optimize",
        "--optimize-runs",
        "1",
        "-o",
        str(out),
        "--base-path",
        str(d),
        str(d / "Halo2Verifier.sol"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    bins = list(out.glob("*Halo2Verifier.bin")) if out.exists() else []
    if done.returncode != 0 or not bins:
        raise IdlegridError(f"solc could not compile the verifier: {done.stderr[-500:]}")
    abis = list(out.glob("*Halo2Verifier.abi"))
    (d / "Halo2Verifier.bin").write_text(bins[0].read_text())
    (d / "Halo2Verifier.abi").write_text(abis[0].read_text())


def zk_prove(artifacts: ZkArtifacts, row: np.ndarray) -> tuple[list[int], bytes, float]:
    """Prove the model on one row (floats): the quantized outputs (signed ints at the
    output scale), the proof's bytes, and the seconds proving took."""
    ezkl = _ezkl()
    d = artifacts.directory
    x = np.asarray(row, dtype=np.float64).reshape(-1)
    if x.size != artifacts.inputs:
        raise InvalidInput(f"the model takes {artifacts.inputs} features, not {x.size}")
    work = d / "prove"
    work.mkdir(exist_ok=True)
    (work / "input.json").write_text(json.dumps({"input_data": [x.tolist()]}))
    started = time.perf_counter()
    try:
        _run(
            ezkl.gen_witness,
            str(work / "input.json"),
            str(d / "model.compiled"),
            str(work / "witness.json"),
        )
        _run(
            ezkl.prove,
            str(work / "witness.json"),
            str(d / "model.compiled"),
            str(d / "pk.key"),
            str(work / "proof.json"),
            str(d / "kzg.srs"),
        )
    except RuntimeError as exc:
        raise IdlegridError(f"ezkl could not prove: {exc}") from exc
    took = time.perf_counter() - started
    proof = json.loads((work / "proof.json").read_text())
    instances = [int.from_bytes(bytes.fromhex(h), "little") for h in proof["instances"][0]]
    outputs = [_signed(f) for f in instances[artifacts.inputs :]]
    hex_proof = str(proof["hex_proof"]).removeprefix("0x")
    return outputs, bytes.fromhex(hex_proof), took


def deploy_zk_verifier(backend: Any, artifacts: ZkArtifacts, model: bytes, *, sender: Any) -> str:
    """Deploy ``artifacts``' Halo2 verifier and a ``ZkAdapter`` for ``model`` (its
    sha256); the adapter's address, to link in the ModelRegistry (``link_verifier``)."""
    from ..chain import deploy_contract
    from ..chain._compile import Artifact

    verifier = deploy_contract(
        backend,
        "Halo2Verifier",
        [],
        sender=sender,
        artifact=Artifact("Halo2Verifier", artifacts.verifier_abi, artifacts.verifier_bin),
    )
    return deploy_contract(
        backend,
        "ZkAdapter",
        [
            verifier,
            model,
            artifacts.input_scale,
            artifacts.output_scale,
            artifacts.inputs,
            artifacts.outputs,
        ],
        sender=sender,
    )
