"""Fixtures for the memory tests: the real offline model and real embedded Chroma."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.memory.embeddings import OfflineEmbedding, OllamaEmbedding
from core.memory.store import MemoryStore


@pytest.fixture(scope="session")
def offline() -> OfflineEmbedding:
    """One loaded model for the whole run (loading takes about 0.3 s)."""
    embedding = OfflineEmbedding()
    embedding(["warm up"])
    return embedding


@pytest.fixture
def store(tmp_path: Path, offline: OfflineEmbedding) -> Iterator[MemoryStore]:
    with MemoryStore(tmp_path / "chroma", embedding=offline) as opened:
        yield opened


@pytest.fixture
def make_ollama() -> Iterator[Callable[..., OllamaEmbedding]]:
    """Build OllamaEmbedding instances that are closed after the test."""
    made: list[OllamaEmbedding] = []

    def make(**kwargs: Any) -> OllamaEmbedding:
        made.append(OllamaEmbedding(**kwargs))
        return made[-1]

    yield make
    for embedding in made:
        embedding.close()
