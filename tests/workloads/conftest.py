"""Fixtures for the workload tests: the digits models, trained once per session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from idlegrid.workloads._digits import export_digits, fit_digits
from idlegrid.workloads._onnx import OnnxRunner


@dataclass(frozen=True)
class Digits:
    """A trained digits classifier: its ONNX bytes, the scikit-learn original and the split."""

    model: bytes
    estimator: Any
    x_train: npt.NDArray[np.float32]
    x_test: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    y_test: npt.NDArray[np.int64]


def _digits(kind: str) -> Digits:
    estimator, x_train, x_test, y_train, y_test = fit_digits(kind)
    return Digits(export_digits(estimator), estimator, x_train, x_test, y_train, y_test)


@pytest.fixture(scope="session")
def logreg() -> Digits:
    return _digits("logreg")


@pytest.fixture(scope="session")
def mlp() -> Digits:
    return _digits("mlp")


@pytest.fixture
def runner() -> OnnxRunner:
    return OnnxRunner(threads=1)
