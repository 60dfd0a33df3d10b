"""Benchmarks behind `idlegrid bench`: each returns one JSON-ready dict with its method."""

from ._dispatch import run_dispatch
from ._settlement import run_settlement
from ._train import run_train
from ._verify import run_verify, softmax_model

__all__ = ["run_dispatch", "run_settlement", "run_train", "run_verify", "softmax_model"]
