"""``close_enough``: two honest results of a job agree, a perturbed one does not.

Honest runs differ only in how a kernel sums: onnxruntime's thread count, and (for
embed) which texts share a padded batch. The digits MLP and MiniLM run here with 1, 2
and 4 threads and several batch sizes; every pair passes ``close_enough``, and the
largest difference seen stays 10x or more inside the tolerance (``RTOL``/``ATOL``).
"""

from __future__ import annotations

import numpy as np
import pytest

from idlegrid.workloads import ATOL, CPU, RTOL, Embedder, OnnxRunner, get_workload

from .conftest import Digits

THREADS = (1, 2, 4)
TEXTS = [f"Idle machines answer jobs for pay, number {i}. " * (1 + i % 12) for i in range(48)]


def _perturbations(a: np.ndarray) -> list[np.ndarray]:
    """Results an honest run never gives: one value off by 1e-3, NaN, a wrong shape
    or dtype."""
    off = a.copy()
    off.flat[off.size // 2] += 1e-3
    nan = a.copy()
    nan.flat[0] = np.nan
    return [off, nan, a[:-1], a.astype(np.float64)]


def _largest_gap(results: list[np.ndarray]) -> float:
    """The largest difference between results, in units of the tolerance at that value."""
    base = results[0]
    return max(float(np.max(np.abs(r - base) / (ATOL + RTOL * np.abs(base)))) for r in results)


def test_honest_onnx_results_agree_across_threads_and_batches(mlp: Digits) -> None:
    # Prepare
    onnx = get_workload("onnx")
    x = mlp.x_test

    # Execute: every thread count, the whole batch and row by row
    results = []
    for threads in THREADS:
        runner = OnnxRunner(providers=[CPU], threads=threads)
        results.append(runner.run(mlp.model, x)[1])
        results.append(
            np.concatenate([runner.run(mlp.model, x[i : i + 7])[1] for i in range(0, len(x), 7)])
        )

    # Assert
    assert results[0].dtype == np.float32
    assert all(onnx.close_enough(results[0], r) for r in results)
    assert _largest_gap(results) < 0.1
    assert not any(onnx.close_enough(results[0], p) for p in _perturbations(results[0]))


def test_integer_outputs_must_be_equal() -> None:
    # Prepare
    onnx = get_workload("onnx")
    labels = np.array([1, 2, 3], dtype=np.int64)

    # Execute / Assert
    assert onnx.close_enough(labels, labels.copy())
    assert not onnx.close_enough(labels, labels + np.array([0, 0, 1]))


@pytest.fixture(scope="module")
def embeddings() -> list[np.ndarray]:
    """The texts embedded with 1, 2 and 4 threads, and in batches of 1, 7 and 32."""
    out = [Embedder(threads=threads, batch_size=32).embed(TEXTS) for threads in THREADS]
    out += [Embedder(threads=1, batch_size=batch).embed(TEXTS) for batch in (1, 7)]
    return out


def test_honest_embed_results_agree_across_threads_and_batches(
    embeddings: list[np.ndarray],
) -> None:
    # Prepare
    embed = get_workload("embed")

    # Execute
    agree = [embed.close_enough(embeddings[0], e) for e in embeddings]

    # Assert
    assert all(agree)
    assert _largest_gap(embeddings) < 0.1


def test_a_perturbed_embedding_is_not_close_enough(embeddings: list[np.ndarray]) -> None:
    # Prepare
    embed = get_workload("embed")
    honest = embeddings[0]

    # Execute / Assert
    assert not any(embed.close_enough(honest, p) for p in _perturbations(honest))
