"""The health tests use settings with a reports channel and an approver on each platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings
from tests.fakes.ollama import FakeOllama
from tests.support.recording import health_settings


@pytest.fixture
def settings(tmp_path: Path, fake_ollama: FakeOllama, workspace: Path) -> Settings:
    return health_settings(tmp_path, fake_ollama.url, workspace)
