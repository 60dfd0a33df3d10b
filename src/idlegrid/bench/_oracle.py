"""``idlegrid bench oracle``: the oracle's gas and latency on a devnet, honest and with a
lying provider.

An anvil devnet with ``providers`` provider node processes, each answering the oracle
(``node start --oracle``, as ``devnet up`` starts them). The sponsor registers a small
MLP risk model (8-16-2, seeded weights) and uploads it to every provider; the consumer is
``examples/oracle/AnswerStore.vy`` (its callback keeps two words). ``requests`` requests,
each a fresh row of features, k = 3, first one at a time (``alone``: each waits for its
delivery), then back to back (``burst``: the relays put what is due in shared reports):

* ``gas_per_request``: in the burst, gas of the consumer's ``ask`` (the oracle's
  ``request`` inside) plus its share of the report that delivered it (``fulfill`` and
  the callbacks, divided by the requests in the report), the median; alone, the ask plus
  the whole delivering transaction (``gas_per_request_alone``);
* ``latency_blocks``, ``latency_s``: blocks and seconds from the request's receipt to
  the delivery's, the median, alone (the relays poll every second);
* ``answers_match``: every delivered output equals onnxruntime's on this machine.

Then the last provider restarts as a liar (``--cheat-rate 1``: every oracle answer off
by 1.0) and the burst is measured under ``with_wrong_provider``, with how often the liar
sat on the committee, how often it was named an outlier, whether any delivered answer
differs from the honest one (``wrong_answer_delivered``: the target is never), and how
its outliers fared on the dispute path (disputed, found wrong, stake slashed).
Zero-knowledge mode (``zk_requests`` of the same rows): ``gas_zk`` (ask + the delivery
with its proof check and callback, median), ``prove_s`` (ezkl's prove on one row here,
median) and ``quantisation_error`` (max abs difference of the proven outputs from
onnxruntime's float outputs).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bench_oracle", "risk_model"]

Progress = Callable[[str], None] | None

TARGETS = {"gas_per_request_max": 150_000}
ANCHORS = {
    "chainlink_ocr_report_gas": 110_000,
    "chainlink_ocr_nodes": "n > 3f",
    "chainlink_functions_request_limit_s": 300,
    "ora_opml": "answers after a fraud-proof window",
}
FEE = 10**18
WAIT_S = 120.0


def risk_model(seed: int = 7) -> bytes:
    """An 8-16-2 MLP (Gemm, Relu, Gemm) with seeded weights, as ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (8, 16)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 16).astype(np.float32)
    w2 = rng.normal(0, 0.5, (16, 2)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 2).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["y"]),
        ],
        "risk",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _say(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def bench_oracle(
    *,
    requests: int = 10,
    zk_requests: int = 3,
    providers: int = 4,
    seed: int = 0,
    progress: Progress = None,
) -> dict[str, Any]:
    """Run the benchmark; one JSON-ready dict."""
    from .._process import spawn, stop
    from ..chain import ModelRegistryClient, OracleClient, compile_file, deploy_contract
    from ..chain._clients import ContractClient
    from ..client import Client
    from ..devnet import (
        DEVNET_FILE,
        STATE_DIR,
        devnet_down,
        devnet_up,
        load_devnet,
        node_argv,
        wait_for_node,
    )

    class Store(ContractClient):
        _name = "AnswerStore"

    started = time.perf_counter()
    directory = Path(tempfile.mkdtemp(prefix="idlegrid-bench-oracle-"))
    _say(progress, f"devnet: anvil and {providers} provider nodes answering the oracle")
    record = devnet_up(directory, providers=providers, accounts=providers + 3, backend="anvil")
    liar_ref = None
    try:
        info = load_devnet(directory)
        ledger = info.ledger()
        sponsor = info.accounts[0]
        model = risk_model()
        import hashlib

        digest = hashlib.sha256(model).digest()
        ledger.client("models", ModelRegistryClient).register(digest, sender=sponsor)
        with Client(sponsor, ledger, timeout_s=60.0) as client:
            uploaded = client.publish(model)
        _say(progress, f"model {digest.hex()[:16]} registered and on {len(uploaded)} providers")
        oracle = ledger.client("oracle", OracleClient)
        oracle.declare_width(digest, 8, sender=sponsor)  # as `model register` does
        source = Path(__file__).parents[3] / "examples" / "oracle" / "AnswerStore.vy"
        artifact = compile_file(source)
        store = Store(
            ledger.backend,
            deploy_contract(
                ledger.backend,
                "AnswerStore",
                [oracle.address, ledger.token.address],
                sender=sponsor,
                artifact=artifact,
            ),
            abi=artifact.abi,
        )
        ledger.token.transfer(store.address, 10 * requests * FEE, sender=sponsor)
        rng = np.random.default_rng(seed)
        rows = [rng.normal(0, 1, 8) for _ in range(requests)]
        alone = _measure(oracle, store, sponsor, digest, model, rows, progress, "alone")
        honest = _burst(oracle, store, sponsor, digest, model, rows, None, progress, "burst")
        zk = _zero_knowledge(oracle, store, sponsor, digest, model, rows[:zk_requests], progress)

        # the last provider comes back as a liar: every oracle answer off by 1.0
        liar = providers
        liar_address = info.accounts[liar].address
        for raw in record["processes"]:
            if raw.get("role") == f"provider-{liar}":
                from .._process import ProcessRef

                stop(ProcessRef.from_dict(raw), timeout=10.0)
        endpoint = next(p["endpoint"] for p in record["providers"] if p["address"] == liar_address)
        port = int(endpoint.rsplit(":", 1)[1])
        argv = [
            *node_argv(directory / DEVNET_FILE, liar, port, directory / STATE_DIR / f"node-{liar}"),
            "--cheat-rate", "1",
        ]  # fmt: skip
        proc, liar_ref = spawn(
            argv, log=directory / STATE_DIR / "liar.log", role="liar", cwd=directory
        )
        wait_for_node(endpoint, proc)
        _say(progress, f"provider {liar} ({liar_address[:10]}) now answers wrongly")
        stake = ledger.registry.slashable(liar_address)
        liar_from = ledger.backend.block_number()
        wrong = _burst(
            oracle, store, sponsor, digest, model, rows, liar_address, progress, "one liar"
        )
        wrong.update(_disputes(ledger, liar_address, liar_from, stake, progress))
    finally:
        if liar_ref is not None:
            stop(liar_ref, timeout=10.0)
        devnet_down(directory)
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "gas_per_request": honest["gas_per_request"],
        "gas_zk": zk["gas_zk"],
        "latency_blocks": alone["latency_blocks"],
        "latency_s": alone["latency_s"],
        "prove_s": zk["prove_s"],
        "quantisation_error": zk["quantisation_error"],
        "zero_knowledge": zk,
        "request_gas": honest["request_gas"],
        "fulfill_gas_per_request": honest["fulfill_gas_per_request"],
        "requests_per_report": honest["requests_per_report"],
        "answers_match": honest["answers_match"] and alone["answers_match"],
        "burst": honest,
        "alone": alone,
        "gas_per_request_alone": alone["gas_per_request"],
        "with_wrong_provider": wrong,
        "targets": {
            "gas_per_request_le_150k": honest["gas_per_request"] <= TARGETS["gas_per_request_max"],
            "gas_per_request_alone_le_150k": alone["gas_per_request"]
            <= TARGETS["gas_per_request_max"],
            "wrong_answer_never_delivered": not wrong["wrong_answer_delivered"],
            "liar_disputed_and_slashed": wrong["liar_found_wrong"] > 0
            and wrong["liar_slashed"] > 0,
        },
        "anchors": ANCHORS,
        "how": {
            "chain": "anvil devnet, one machine, loopback",
            "providers": providers,
            "k": 3,
            "model": "MLP 8-16-2 (Gemm, Relu, Gemm), seeded weights",
            "consumer": "examples/oracle/AnswerStore.vy (its callback keeps two words)",
            "requests": requests,
            "gas_per_request": "burst: the consumer asks all rows back to back (one block "
            "each) and the relays deliver them in shared reports; per request = its ask tx "
            "+ its report tx's gas / the requests in that report, the median",
            "gas_per_request_alone": "one request at a time (each waits for its delivery): "
            "ask tx + delivering tx, the median",
            "latency": "alone: median blocks and seconds from the request's receipt to the "
            "delivery",
            "relays": "node start --oracle: poll every 1 s; the first member in the epoch's "
            "delivery order delivers once all k answered, everything due in one report",
            "wrong": "the last provider restarted with --cheat-rate 1 (answers + 1.0); its "
            "outliers disputed by the first honest member (Disputes.open_answer), settled by "
            "the other nodes as referees (they re-run the model)",
            "zero_knowledge": "oracle zk-setup's steps (ezkl 23.0.5: scale and rows from "
            "calibration, local SRS, keys; the Halo2 verifier compiled with npm solc and an "
            "adapter); the drawn provider proves and delivers; gas_zk = ask + delivery "
            "(median); prove_s = ezkl prove here on one row (median); quantisation_error = "
            "max |delivered - onnxruntime float| over outputs and requests",
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
    }


class _Answers:
    """What the deliveries of one measurement said: whether each equals onnxruntime's
    answer here, and, with a liar, how often it sat on the committee and was named."""

    def __init__(self, oracle: Any, model: bytes, liar: str | None) -> None:
        self.oracle, self.model, self.liar = oracle, model, liar
        self.match, self.wrong_delivered = True, False
        self.on_committee = self.named = 0

    def check(self, req: Any, fixed: list[int], found: dict[str, Any]) -> None:
        from ..chain import from_fixed
        from ..oracle import run_model

        expected = run_model(self.model, fixed)
        delivered = list(found["args"]["output"])
        if delivered != expected:
            self.match = False
            off = np.abs(from_fixed(delivered) - from_fixed(expected)).max()
            self.wrong_delivered = self.wrong_delivered or off > 1e-3
        if self.liar is None:
            return
        if self.liar in self.oracle.committee(req):
            self.on_committee += 1
        outliers = self.oracle._c.events.Outlier().get_logs(
            from_block=found["blockNumber"], to_block=found["blockNumber"],
            argument_filters={"request_id": req.request_id},
        )  # fmt: skip
        self.named += sum(1 for o in outliers if o["args"]["provider"] == self.liar)

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"answers_match": self.match}
        if self.liar is not None:
            out.update(
                liar_on_committee=self.on_committee,
                liar_named_outlier=self.named,
                wrong_answer_delivered=self.wrong_delivered,
            )
        return out


def _measure(
    oracle: Any,
    store: Any,
    sponsor: Any,
    digest: bytes,
    model: bytes,
    rows: list[np.ndarray],
    progress: Progress,
    what: str,
) -> dict[str, Any]:
    """One request at a time, each waiting for its delivery."""
    from ..chain import to_fixed

    w3 = oracle.backend.w3
    answers = _Answers(oracle, model, None)
    gas, req_gas, ful_gas, blocks, seconds = [], [], [], [], []
    for i, row in enumerate(rows):
        fixed = to_fixed(row)
        t0 = time.perf_counter()
        asked = store._send("ask", digest, fixed, 0, FEE, sender=sponsor)
        (req,) = oracle.requests(asked.block, asked.block)
        found = oracle.wait_fulfilled(req.request_id, asked.block, timeout_s=WAIT_S)
        if found is None:
            raise RuntimeError(f"{what}: request {req.request_id} not answered in {WAIT_S:.0f} s")
        seconds.append(time.perf_counter() - t0)
        receipt = w3.eth.get_transaction_receipt(found["transactionHash"])
        fulfill = int(receipt["gasUsed"])
        gas.append(asked.gas_used + fulfill)
        req_gas.append(asked.gas_used)
        ful_gas.append(fulfill)
        blocks.append(int(found["blockNumber"]) - asked.block)
        answers.check(req, fixed, found)
        _say(progress, f"{what}: request {i + 1}/{len(rows)}: {gas[-1]:,} gas, "
                       f"{blocks[-1]} block(s), {seconds[-1]:.2f} s")  # fmt: skip
    return {
        "gas_per_request": int(statistics.median(gas)),
        "request_gas": int(statistics.median(req_gas)),
        "fulfill_gas": int(statistics.median(ful_gas)),
        "latency_blocks": float(statistics.median(blocks)),
        "latency_s": round(float(statistics.median(seconds)), 3),
        **answers.figures(),
    }


def _burst(
    oracle: Any,
    store: Any,
    sponsor: Any,
    digest: bytes,
    model: bytes,
    rows: list[np.ndarray],
    liar: str | None,
    progress: Progress,
    what: str,
) -> dict[str, Any]:
    """All rows asked back to back, then every delivery awaited: the relays put what
    is due in shared reports. Per request: its ask's gas plus its report's gas shared
    equally by the requests in that report."""
    from ..chain import to_fixed

    w3 = oracle.backend.w3
    asked_all = []
    for row in rows:
        fixed = to_fixed(row)
        t0 = time.perf_counter()
        asked = store._send("ask", digest, fixed, 0, FEE, sender=sponsor)
        (req,) = oracle.requests(asked.block, asked.block)
        asked_all.append((fixed, req, asked, t0))
    found_all = []
    for _, req, asked, t0 in asked_all:
        found = oracle.wait_fulfilled(req.request_id, asked.block, timeout_s=WAIT_S)
        if found is None:
            raise RuntimeError(f"{what}: request {req.request_id} not answered in {WAIT_S:.0f} s")
        found_all.append((found, time.perf_counter() - t0))
    per_tx: dict[bytes, int] = {}
    for found, _ in found_all:
        tx = bytes(found["transactionHash"])
        per_tx[tx] = per_tx.get(tx, 0) + 1
    report_gas = {tx: int(w3.eth.get_transaction_receipt(tx)["gasUsed"]) for tx in per_tx}
    answers = _Answers(oracle, model, liar)
    gas, req_gas, ful_gas, blocks, seconds = [], [], [], [], []
    for (fixed, req, asked, _), (found, took) in zip(asked_all, found_all, strict=True):
        tx = bytes(found["transactionHash"])
        share = report_gas[tx] / per_tx[tx]
        gas.append(asked.gas_used + share)
        req_gas.append(asked.gas_used)
        ful_gas.append(share)
        blocks.append(int(found["blockNumber"]) - asked.block)
        seconds.append(took)
        answers.check(req, fixed, found)
    _say(progress, f"{what}: {len(rows)} requests in {len(per_tx)} report(s), "
                   f"{int(statistics.median(gas)):,} gas a request (median)")  # fmt: skip
    return {
        "gas_per_request": int(statistics.median(gas)),
        "request_gas": int(statistics.median(req_gas)),
        "fulfill_gas_per_request": int(statistics.median(ful_gas)),
        "reports": len(per_tx),
        "requests_per_report": round(len(rows) / len(per_tx), 2),
        "latency_blocks": float(statistics.median(blocks)),
        "latency_s": round(float(statistics.median(seconds)), 3),
        **answers.figures(),
    }


def _disputes(
    ledger: Any, liar: str, from_block: int, stake: int, progress: Progress
) -> dict[str, Any]:
    """The liar's outliers on the dispute path: opened by an honest member, settled by
    the referee nodes (waited for up to WAIT_S), and the stake it lost."""
    from ..chain import DisputeClient, DisputeOutcome, DisputeStatus

    disputes = ledger.client("disputes", DisputeClient)
    deadline = time.monotonic() + WAIT_S
    while True:
        head = ledger.backend.block_number()
        opened = disputes.logs("AnswerDisputed", from_block, head, provider=liar)
        states = [disputes.dispute(bytes(o["dispute"])) for _, o in opened]
        settled = all(st.status is DisputeStatus.RESOLVED for st in states)
        if (opened and settled) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    wrong = sum(1 for st in states if st.outcome is DisputeOutcome.PROVIDER_WRONG)
    _say(progress, f"one liar: {len(opened)} of its answers disputed, {wrong} found wrong")
    return {
        "liar_disputed": len(opened),
        "liar_found_wrong": wrong,
        "liar_slashed": stake - ledger.registry.slashable(liar),
    }


def _zero_knowledge(
    oracle: Any,
    store: Any,
    sponsor: Any,
    digest: bytes,
    model: bytes,
    rows: list[np.ndarray],
    progress: Progress,
) -> dict[str, Any]:
    from ..chain import ModelRegistryClient, from_fixed, to_fixed
    from ..oracle import deploy_zk_verifier, zk_dir, zk_prove, zk_setup
    from ..workloads import OnnxRunner

    _say(progress, "zero-knowledge: circuit, SRS, keys, verifier (once per model)")
    artifacts = zk_setup(model, zk_dir(digest))
    adapter = deploy_zk_verifier(oracle.backend, artifacts, digest, sender=sponsor)
    ModelRegistryClient(oracle.backend, oracle._call("models")).link_verifier(
        digest, adapter, sender=sponsor
    )
    w3 = oracle.backend.w3
    gas, prove, errors = [], [], []
    for i, row in enumerate(rows):
        fixed = to_fixed(row)
        asked = store._send("ask", digest, fixed, 1, FEE, sender=sponsor)
        (req,) = oracle.requests(asked.block, asked.block)
        found = oracle.wait_fulfilled(req.request_id, asked.block, timeout_s=WAIT_S)
        if found is None:
            raise RuntimeError(f"zero-knowledge request {req.request_id} not answered")
        receipt = w3.eth.get_transaction_receipt(found["transactionHash"])
        gas.append(asked.gas_used + int(receipt["gasUsed"]))
        delivered = from_fixed(list(found["args"]["output"]))
        floats = np.asarray(
            OnnxRunner(cache_size=1).run_first(model, from_fixed(fixed).astype(np.float32)[None])
        ).reshape(-1)
        errors.append(float(np.abs(delivered - floats).max()))
        _, _, took = zk_prove(artifacts, from_fixed(fixed))
        prove.append(took)
        _say(progress, f"zero-knowledge: request {i + 1}/{len(rows)}: {gas[-1]:,} gas, "
                       f"prove {took:.2f} s")  # fmt: skip
    return {
        "gas_zk": int(statistics.median(gas)),
        "prove_s": round(float(statistics.median(prove)), 3),
        "quantisation_error": max(errors),
        "requests": len(rows),
        "input_scale": artifacts.input_scale,
        "output_scale": artifacts.output_scale,
        "logrows": artifacts.logrows,
        "setup_s": artifacts.setup_s,
        "operators": "Gemm, Relu (the example); see docs/oracle.md",
    }
