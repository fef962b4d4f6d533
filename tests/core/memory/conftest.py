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


# ---- the memory wired into the agent: real services against the Ollama stand-in ----------------


@pytest.fixture
def memory_settings(tmp_path: Path, fake_ollama: Any, workspace: Path) -> Any:
    """Settings with the memory on (whatever the shell says) and data under tmp_path."""
    from bot.settings import Settings

    return Settings(
        ORCHESTRATOR_DATA_DIR=str(tmp_path / "data"),
        OLLAMA_HOST=fake_ollama.url,
        ORCHESTRATOR_FILE_ROOTS=str(workspace),
        ORCHESTRATOR_CONSOLE_APPROVERS="tester",
        SLACK_APPROVERS="U-carol",  # decides on the approvals of Alice's and Bob's Slack requests
        ORCHESTRATOR_APPROVAL_TIMEOUT=30,  # a test that did not expect an approval fails fast
        ORCHESTRATOR_MEMORY=True,
        ORCHESTRATOR_MEMORY_EXTRACT=True,
        ORCHESTRATOR_EMBEDDING="offline",
    )
