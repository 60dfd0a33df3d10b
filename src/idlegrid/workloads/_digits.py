"""A small, deterministic ONNX classifier for demos and tests: scikit-learn's digits.

The 8×8 digits ship inside scikit-learn, so nothing is downloaded. Pixels are
scaled to [0, 1] and stored as float32; the model takes float32 ``[N, 64]`` and
returns ``label`` (int64 ``[N]``) and ``probabilities`` (float32 ``[N, 10]``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .._exceptions import InvalidInput

__all__ = ["DIGITS_FEATURES", "train_digits_model"]

DIGITS_FEATURES = 64
_SEED = 0

_X = npt.NDArray[np.float32]
_Y = npt.NDArray[np.int64]
DigitsModel = tuple[bytes, _X, _X, _Y, _Y]
FittedDigits = tuple[Any, _X, _X, _Y, _Y]


def train_digits_model(kind: Literal["logreg", "mlp"] = "logreg") -> DigitsModel:
    """Train a classifier on the digits and export it to ONNX (no ZipMap).

    Returns ``(model, X_train, X_test, y_train, y_test)`` with a fixed 75/25
    stratified split; the same call returns the same model bytes every time.
    """
    estimator, x_train, x_test, y_train, y_test = fit_digits(kind)
    return export_digits(estimator), x_train, x_test, y_train, y_test


def export_digits(estimator: Any) -> bytes:
    """A fitted digits classifier as ONNX bytes: float32 ``[None, 64]`` in, no ZipMap."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onnx_model = convert_sklearn(
        estimator,
        name=f"digits_{type(estimator).__name__}",  # skl2onnx's default is a random uuid
        initial_types=[("input", FloatTensorType([None, DIGITS_FEATURES]))],
        options={id(estimator): {"zipmap": False}},
    )
    model: bytes = onnx_model.SerializeToString()
    return model


def fit_digits(kind: str) -> FittedDigits:
    """The fitted scikit-learn estimator and the split, before export (tests compare with it)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    estimator: Any
    if kind == "logreg":
        estimator = LogisticRegression(max_iter=1000)
    elif kind == "mlp":
        estimator = MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000, random_state=_SEED)
    else:
        raise InvalidInput(f"kind must be 'logreg' or 'mlp', got {kind!r}")
    digits = load_digits()
    x = (np.asarray(digits.data) / 16.0).astype(np.float32)
    y = np.asarray(digits.target).astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=_SEED, stratify=y
    )
    estimator.fit(x_train, y_train)
    return estimator, x_train, x_test, y_train, y_test
