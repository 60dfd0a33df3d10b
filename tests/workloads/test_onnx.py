"""The onnx workload: results match scikit-learn, bad jobs fail clearly, sessions are reused."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from idlegrid import ConfigError, IdlegridError, InvalidInput
from idlegrid.workloads import (
    CPU,
    CUDA,
    OnnxRunner,
    WorkloadError,
    select_providers,
    train_digits_model,
)
from idlegrid.workloads._errors import ORT_DEVICE_ERRORS, ORT_JOB_ERRORS, translate_onnx
from idlegrid.workloads._onnx import SPINNING

from .conftest import Digits


def reshape_model() -> bytes:
    """[N, 6] -> Reshape to [-1, 4]: loads fine, fails at run time unless 6·N divides by 4."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(np.array([-1, 4], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_matches_scikit_learn(runner: OnnxRunner, logreg: Digits, mlp: Digits, kind: str) -> None:
    digits = {"logreg": logreg, "mlp": mlp}[kind]
    labels, probabilities = runner.run(digits.model, digits.x_test)
    np.testing.assert_allclose(
        probabilities, digits.estimator.predict_proba(digits.x_test), atol=1e-5
    )
    np.testing.assert_array_equal(labels, digits.estimator.predict(digits.x_test))
    assert (labels == digits.y_test).mean() > 0.9


def test_train_digits_model_is_deterministic(logreg: Digits) -> None:
    model, x_train, x_test, y_train, y_test = train_digits_model("logreg")
    assert model == logreg.model
    assert x_train.dtype == x_test.dtype == np.float32
    assert x_train.shape[1] == 64 and len(x_train) + len(x_test) == 1797
    assert len(y_train) == len(x_train) and len(y_test) == len(x_test)
    with pytest.raises(InvalidInput, match="kind"):
        train_digits_model("svm")  # type: ignore[arg-type]


def test_inputs_are_cast_to_the_declared_dtype(runner: OnnxRunner, logreg: Digits) -> None:
    rows = logreg.x_test[:5]
    as_float32 = runner.run_first(logreg.model, rows)
    assert np.array_equal(runner.run_first(logreg.model, rows.astype(np.float64)), as_float32)
    assert np.array_equal(runner.run_first(logreg.model, {"input": rows}), as_float32)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (np.zeros((3, 63), np.float32), r"dim 1: expected 64, got 63"),
        (np.zeros(64, np.float32), r"expects rank 2 \[N, 64\], got shape \(64,\)"),
        (np.zeros((1, 8, 8), np.float32), r"expects rank 2"),
        (np.zeros((0, 64), np.float32), r"empty batch"),
        (np.full((2, 64), "x"), r"expects float32, got <U1"),
        (np.zeros((2, 64), np.complex64), r"expects float32, got complex64"),
        ({"pixels": np.zeros((2, 64), np.float32)}, r"inputs are \['input'\], got \['pixels'\]"),
    ],
)
def test_bad_inputs_are_invalid_input(
    runner: OnnxRunner, logreg: Digits, inputs: object, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        runner.run(logreg.model, inputs)  # type: ignore[arg-type]


def test_too_many_elements_are_refused(logreg: Digits) -> None:
    runner = OnnxRunner(max_elements=64 * 10)
    assert len(runner.run_first(logreg.model, logreg.x_test[:10])) == 10
    with pytest.raises(InvalidInput, match="more than the 640 allowed"):
        runner.run(logreg.model, logreg.x_test[:11])


@pytest.mark.parametrize("garbage", [b"", b"not an onnx model", bytes(range(256)) * 4])
def test_garbage_model_is_invalid_input(runner: OnnxRunner, garbage: bytes) -> None:
    with pytest.raises(InvalidInput, match="ONNX model"):
        runner.run(garbage, np.zeros((1, 64), np.float32))
    assert runner.cached() == []


def test_a_kernel_failing_at_run_time_is_translated(runner: OnnxRunner) -> None:
    model = reshape_model()
    assert runner.run_first(model, np.zeros((2, 6), np.float32)).shape == (3, 4)
    with pytest.raises(InvalidInput, match="the model failed to run") as exc:
        runner.run(model, np.zeros((1, 6), np.float32))
    assert isinstance(exc.value.__cause__, Exception)


def test_zipmap_outputs_are_refused_with_a_hint(runner: OnnxRunner, logreg: Digits) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    model = convert_sklearn(
        logreg.estimator, initial_types=[("input", FloatTensorType([None, 64]))]
    ).SerializeToString()
    with pytest.raises(InvalidInput, match="zipmap"):
        runner.run(model, logreg.x_test[:2])


def test_sessions_are_cached_by_sha256_in_a_bounded_lru(logreg: Digits, mlp: Digits) -> None:
    runner = OnnxRunner(cache_size=1)
    first = runner.session(logreg.model)
    assert runner.session(logreg.model) is first
    assert runner.cached() == [hashlib.sha256(logreg.model).hexdigest()]
    runner.run(mlp.model, mlp.x_test[:1])
    assert runner.cached() == [hashlib.sha256(mlp.model).hexdigest()]
    assert runner.session(logreg.model) is not first  # evicted, loaded again


def test_sessions_do_not_spin_between_jobs(logreg: Digits) -> None:
    """A metered job is billed by its worker's CPU time, every thread counted: pool
    threads busy-waiting for the next run would bill their wait to the job before."""
    options = OnnxRunner(threads=2).session(logreg.model).get_session_options()
    assert options.get_session_config_entry(SPINNING) == "0"
    assert options.intra_op_num_threads == 2


def test_provider_choice_prefers_cuda_and_falls_back_to_cpu() -> None:
    assert select_providers(available=[CPU]) == [CPU]
    assert select_providers(available=["AzureExecutionProvider", CPU]) == [CPU]
    assert select_providers(available=[CPU, CUDA]) == [CUDA, CPU]
    assert select_providers([CPU], available=[CPU, CUDA]) == [CPU]
    with pytest.raises(ConfigError, match="not available"):
        select_providers([CUDA], available=[CPU])
    with pytest.raises(ConfigError):
        select_providers([], available=[CPU])


def test_runner_uses_what_this_machine_has(runner: OnnxRunner, logreg: Digits) -> None:
    assert runner.providers == select_providers()
    assert CPU in runner.session(logreg.model).get_providers()
    assert OnnxRunner(providers=[CPU]).session(logreg.model).get_providers() == [CPU]


def all_ort_errors() -> list[type[Exception]]:
    return sorted(
        (
            value
            for value in vars(ort_state).values()
            if isinstance(value, type) and issubclass(value, Exception)
        ),
        key=lambda cls: cls.__name__,
    )


@pytest.mark.parametrize("foreign", all_ort_errors(), ids=lambda cls: cls.__name__)
def test_every_onnxruntime_error_is_translated(foreign: type[Exception]) -> None:
    assert foreign in ORT_JOB_ERRORS + ORT_DEVICE_ERRORS
    error = foreign("boom")
    with pytest.raises(IdlegridError) as exc, translate_onnx("running"):
        raise error
    assert exc.value.__cause__ is error
    expected = WorkloadError if foreign in ORT_DEVICE_ERRORS else InvalidInput
    assert type(exc.value) is expected and str(exc.value) == "running: boom"


def test_out_of_memory_is_the_machine_not_the_job() -> None:
    with pytest.raises(WorkloadError), translate_onnx("running"):
        raise ort_state.RuntimeException("Failed to allocate memory for requested buffer")
    with pytest.raises(WorkloadError), translate_onnx("running"):
        raise MemoryError()
