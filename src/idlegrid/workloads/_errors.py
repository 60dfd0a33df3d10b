"""Translate onnxruntime and onnx errors into idlegrid's exception tree.

``WorkloadError`` (in the central tree) is raised when the runtime or the
device failed, not the job. Everything else a workload raises is an
``InvalidInput`` (the model, the inputs or the texts are wrong: running them
again anywhere fails the same way) or a ``ConfigError`` (this machine lacks a
package or an execution provider).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from google.protobuf.message import DecodeError
from onnx.checker import ValidationError
from onnx.shape_inference import InferenceError
from onnxruntime.capi import onnxruntime_pybind11_state as _ort

from .._exceptions import IdlegridError, InvalidInput, WorkloadError

__all__ = ["ORT_DEVICE_ERRORS", "ORT_JOB_ERRORS", "WorkloadError", "translate_onnx"]


#: onnxruntime errors caused by the model or its inputs: the same job fails anywhere
ORT_JOB_ERRORS: tuple[type[Exception], ...] = (
    _ort.Fail,
    _ort.InvalidArgument,
    _ort.InvalidGraph,
    _ort.InvalidProtobuf,
    _ort.ModelLoaded,
    _ort.ModelRequiresCompilation,
    _ort.NoModel,
    _ort.NoSuchFile,
    _ort.NotFound,
    _ort.NotImplemented,
    _ort.RuntimeException,
)
#: onnxruntime errors caused by this machine: another provider may succeed
ORT_DEVICE_ERRORS: tuple[type[Exception], ...] = (
    _ort.DeviceReset,
    _ort.EPFail,
    _ort.EngineError,
    _ort.ModelLoadCanceled,
    MemoryError,
)
# kernels report an exhausted allocator as a plain failure; the message tells
_OUT_OF_MEMORY = ("out of memory", "failed to allocate")
_ONNX_ERRORS = (DecodeError, ValidationError, InferenceError)


@contextmanager
def translate_onnx(what: str) -> Iterator[None]:
    """Re-raise onnx / onnxruntime errors met while doing ``what`` as idlegrid errors."""
    try:
        yield
    except IdlegridError:
        raise
    except ORT_DEVICE_ERRORS as exc:
        raise WorkloadError(f"{what}: {_first_line(exc)}") from exc
    except ORT_JOB_ERRORS as exc:
        text = str(exc)
        if any(marker in text.lower() for marker in _OUT_OF_MEMORY):
            raise WorkloadError(f"{what}: {_first_line(exc)}") from exc
        raise InvalidInput(f"{what}: {_first_line(exc)}") from exc
    except _ONNX_ERRORS as exc:
        raise InvalidInput(f"{what}: {_first_line(exc) or type(exc).__name__}") from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:500] if lines else type(exc).__name__
