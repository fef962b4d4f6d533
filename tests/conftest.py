"""Shared fixtures: the real core wired against local stand-ins, never a real model."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bot.app import Services, build_services
from bot.settings import Settings
from tests.fakes.ollama import FakeOllama

pytest_plugins = ["tests.support.dockerd", "tests.support.postgres", "tests.support.chroma", "tests.support.s3"]

# Nothing in the suite may reach a real Ollama, Slack or Discord: unset what a developer's
# shell may carry, and point the model at a closed port unless a test gives a stand-in.
for _name in ("OLLAMA_HOST", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DISCORD_TOKEN",
              "DATABASE_URL", "CHROMA_HOST", "ORCHESTRATOR_CONFIG"):  # fmt: skip
    os.environ.pop(_name, None)
os.environ["OLLAMA_HOST"] = "http://127.0.0.1:9"

# The hard switch: in this process, an HTTP request (the ollama client's, Chroma's) to anything
# but this machine, or to Ollama's own port 11434 on it, raises instead of leaving: a test that
# would talk to a real model fails loudly, whatever settings it built.
REAL_OLLAMA_PORT = 11434
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _refuse_real_services(url: httpx.URL) -> None:
    if url.host not in _LOOPBACK or url.port == REAL_OLLAMA_PORT:
        raise RuntimeError(f"the test suite never reaches a real service: refused {url} (use a stand-in)")


_sync_send, _async_send = httpx.Client.send, httpx.AsyncClient.send


def _guarded_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
    _refuse_real_services(request.url)
    return _sync_send(self, request, **kwargs)


async def _guarded_async_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
    _refuse_real_services(request.url)
    return await _async_send(self, request, **kwargs)


httpx.Client.send = _guarded_send  # type: ignore[method-assign]
httpx.AsyncClient.send = _guarded_async_send  # type: ignore[method-assign]


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    return root


@pytest.fixture
def settings(tmp_path: Path, fake_ollama: FakeOllama, workspace: Path, database_url: str) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        ORCHESTRATOR_DATA_DIR=str(tmp_path / "data"),
        OLLAMA_HOST=fake_ollama.url,
        ORCHESTRATOR_FILE_ROOTS=str(workspace),
        ORCHESTRATOR_CONSOLE_APPROVERS="tester",
        ORCHESTRATOR_APPROVAL_TIMEOUT=30,
    )


@pytest_asyncio.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    svc = await build_services(settings)
    svc.gate.poll_interval = 0.05
    yield svc
    await svc.close()
