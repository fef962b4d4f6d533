"""The offline model and the Ollama engine, with real vectors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from chromadb.utils.embedding_functions import known_embedding_functions

from core.memory.embeddings import (
    DEFAULT_OLLAMA_MODEL,
    EmbeddingError,
    MemoryEmbedding,
    OfflineEmbedding,
    OllamaEmbedding,
    embedding_from_settings,
)
from tests.fakes.ollama import FakeOllama


def cosine(a: Any, b: Any) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_offline_vectors_are_unit_length_384d(offline: OfflineEmbedding) -> None:
    vectors = offline(["postgres on db1 listens on port 5433", "hello"])
    assert len(vectors) == 2
    for vector in vectors:
        assert vector.shape == (384,)
        assert vector.dtype == np.float32
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_offline_is_semantic_not_lexical(offline: OfflineEmbedding) -> None:
    fact, related, unrelated = offline(
        [
            "the server has 16 gigabytes of RAM",
            "how much memory is installed in that machine?",  # no word in common
            "the recipe needs two eggs and some flour",
        ]
    )
    assert cosine(fact, related) > 0.6  # measured 0.695
    assert cosine(fact, unrelated) < 0.2  # measured 0.060


def test_offline_batching_keeps_order_and_values(offline: OfflineEmbedding) -> None:
    texts = [f"server web{i} has {i * 4} GB of RAM and runs " + "nginx " * (i % 7) for i in range(70)]
    batched = offline.encode(texts)
    singles = np.stack([offline.encode([t])[0] for t in texts[:10]])
    np.testing.assert_allclose(batched[:10], singles, atol=1e-4)
    assert offline.encode([]).shape == (0, 384)


def test_long_text_is_truncated_not_rejected(offline: OfflineEmbedding) -> None:
    vector = offline(["disk usage report " * 400])[0]
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_offline_implements_chromadb_protocol(offline: OfflineEmbedding) -> None:
    assert isinstance(offline, MemoryEmbedding)
    assert offline.model_name == "all-MiniLM-L6-v2"
    assert not offline.is_legacy()
    assert known_embedding_functions[OfflineEmbedding.name()] is OfflineEmbedding
    rebuilt = OfflineEmbedding.build_from_config(offline.get_config())
    assert isinstance(rebuilt, OfflineEmbedding)
    np.testing.assert_allclose(rebuilt(["db1"])[0], offline(["db1"])[0], atol=1e-6)
    assert offline.embed_query(["db1"])[0].shape == (384,)


def test_missing_model_file_is_a_clear_error() -> None:
    broken = OfflineEmbedding(model_path="/nonexistent/model.onnx")
    with pytest.raises(Exception, match=r"model\.onnx"):
        broken(["x"])


@pytest.fixture
def fake_ollama(offline: OfflineEmbedding) -> Iterator[FakeOllama]:
    """An Ollama stand-in that serves real all-MiniLM-L6-v2 vectors, prefixes stripped."""
    with FakeOllama(models=[DEFAULT_OLLAMA_MODEL]) as fake:

        def embed(text: str) -> list[float]:
            for prefix in ("search_document: ", "search_query: "):
                text = text.removeprefix(prefix)
            return [float(x) for x in offline.encode([text])[0]]

        fake.embed_fn = embed
        yield fake


def test_ollama_embedding_uses_official_client(
    fake_ollama: FakeOllama, offline: OfflineEmbedding, make_ollama: Callable[..., OllamaEmbedding]
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
    assert isinstance(embedding_from_settings("offline", ollama_host="http://x:11434", model=""), OfflineEmbedding)
    assert isinstance(
        embedding_from_settings("onnx", ollama_host="http://x:11434", model="all-MiniLM-L6-v2"), OfflineEmbedding
    )
    ollama_ef = embedding_from_settings("ollama", ollama_host="http://x:11434", model="")
    assert isinstance(ollama_ef, OllamaEmbedding)
    assert ollama_ef.model_name == "ollama:nomic-embed-text"
    assert embedding_from_settings("Ollama", ollama_host="http://x:11434", model="all-minilm").model_name == (
        "ollama:all-minilm"
    )
    with pytest.raises(ValueError, match="only has"):
        embedding_from_settings("offline", ollama_host="", model="bge-small")
    with pytest.raises(ValueError, match="unknown embedding kind"):
        embedding_from_settings("openai", ollama_host="", model="")
