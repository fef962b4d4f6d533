"""The private Chroma server the memory tests run through: private, clean per test, and reached the
way the bot reaches it (CHROMA_HOST/CHROMA_PORT, `bot.app.open_memory_store`)."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.app import open_memory_store as open_store
from bot.settings import Settings
from core.memory.store import SHARED_SCOPE

if TYPE_CHECKING:
    from tests.support.chroma import ChromaServer

pytest_plugins = ["tests.support.chroma"]


def test_the_server_is_private_and_answers(chroma_server: ChromaServer) -> None:
    assert chroma_server.host == "127.0.0.1" and chroma_server.port != 8000
    with urllib.request.urlopen(f"{chroma_server.url}/api/v2/heartbeat", timeout=5) as response:
        assert response.status == 200
    assert (chroma_server.root / "data").is_dir()  # its data lives in the temp directory


def test_the_bot_opens_its_memory_on_the_server_named_by_chroma_host(
    chroma_env: ChromaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert chroma_env.collections() == []  # clean before the test
    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path / "data"))
    settings = Settings()  # as an operator configures it: from the environment
    assert (settings.chroma_host, settings.chroma_port) == (chroma_env.host, chroma_env.port)
    with open_store(settings) as store:
        store.add("postgres on db1 listens on port 5433", kind="fact", scope=SHARED_SCOPE, source={})
        assert store.location == chroma_env.url
    assert chroma_env.collections() == [store.collection_name]
    assert not (tmp_path / "data" / "memory").exists()  # nothing embedded on the side
    with open_store(settings) as again:
        [memory] = again.recall("which port does postgres use on db1?", scopes=[SHARED_SCOPE])
        assert memory.text == "postgres on db1 listens on port 5433"


def test_the_next_test_finds_the_server_empty(chroma_server: ChromaServer) -> None:
    assert chroma_server.collections() == []  # the test before left none (`chroma_server_clean`, not this)


def test_a_missing_chroma_command_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import chroma

    monkeypatch.setattr(chroma, "find_cli", lambda: None)
    reason = chroma.start_server()
    assert isinstance(reason, str) and "`chroma` command is not installed" in reason and "chromadb" in reason
