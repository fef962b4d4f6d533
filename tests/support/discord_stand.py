"""The Discord stand: an unmodified discord.py client against FakeDiscord, the real core and the
real Ollama client against FakeOllama. The fixtures `fake` and `settings` (which overrides
tests/conftest.py's) are imported by the test modules that use them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from adapters.discord import DiscordAdapter
from adapters.discord.adapter import AgentRunner
from bot.app import Services, build_services
from bot.platforms import discord_config
from bot.settings import Settings
from core.store import Store
from tests.fakes.discord import APPROVER_ID, BOT_USER_ID, OWNER_ID, STRANGER_ID, TEXT_CHANNEL_ID, FakeDiscord, RestCall
from tests.fakes.ollama import FakeOllama, Reply

TOKEN = "fake-token"
WAIT = 10.0  # generous upper bounds for waits; nothing here measures time
MENTION = f"<@{BOT_USER_ID}>"
PACE_WINDOW = 0.5  # the live tests' window (Discord's is 5 s): 5 creates or edits per window per channel


# ---- fixtures ---------------------------------------------------------------------------------
@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN) as f:
        yield f


def discord_settings(data_dir: Path, ollama: FakeOllama, workspace: Path, fake: FakeDiscord, **extra: Any) -> Settings:
    """The core on the stand-ins, Discord pointed at `fake`, APPROVER_ID the approver; `extra` adds settings."""
    return Settings(
        ORCHESTRATOR_DATA_DIR=str(data_dir),
        OLLAMA_HOST=ollama.url,
        ORCHESTRATOR_FILE_ROOTS=str(workspace),
        DISCORD_TOKEN=TOKEN,
        DISCORD_APPROVERS=str(APPROVER_ID),
        DISCORD_API_URL=fake.api_base,
        **extra,
    )


@pytest.fixture
def settings(tmp_path: Path, fake_ollama: FakeOllama, workspace: Path, fake: FakeDiscord) -> Settings:
    """Overrides conftest's: the same core, plus Discord pointed at the stand-in. Some tests have
    the stranger ask (and be refused as an approver); who may ask at all is tested in
    tests/adapters/test_access_discord.py."""
    allowed = f"{OWNER_ID},{STRANGER_ID}"
    return discord_settings(
        tmp_path / "data", fake_ollama, workspace, fake, ORCHESTRATOR_APPROVAL_TIMEOUT=30, DISCORD_ALLOWED_USERS=allowed
    )


@asynccontextmanager
async def services_for(settings: Settings, **update: Any) -> AsyncIterator[Services]:
    svc = await build_services(settings.model_copy(update=update) if update else settings)
    svc.gate.poll_interval = 0.05
    try:
        yield svc
    finally:
        await svc.close()


@asynccontextmanager
async def running(services: Services, *, store: Store | None = None, **config: Any) -> AsyncIterator[DiscordAdapter]:
    """The adapter serving against the fake (on `store`, by default the services' own); a short ready
    delay and pace window keep tests quick, `config` changes more of its `DiscordConfig`."""
    cfg = replace(discord_config(services.settings), guild_ready_timeout=0.1, pace_window=0.5, **config)
    adapter = DiscordAdapter(cfg, agent=services.agent, gate=services.gate, store=store or services.store)
    task = asyncio.create_task(adapter.serve(), name="test-discord-serve")
    ready = asyncio.create_task(adapter.ready.wait())
    await asyncio.wait([task, ready], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # a setup error surfaces here
    assert adapter.ready.is_set(), "the adapter did not connect"
    try:
        yield adapter
    finally:
        await adapter.close()
        await asyncio.wait_for(task, WAIT)


# ---- helpers --------------------------------------------------------------------------------
def call(name: str, **arguments: object) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


def content(c: RestCall) -> str:
    return str((c.json or {}).get("content") or "")


async def posted(fake: FakeDiscord, channel_id: int, contains: str = "") -> RestCall:
    """The first message the bot posted in a channel whose text contains `contains`."""
    path = f"/channels/{channel_id}/messages"
    return await fake.wait_for(
        lambda c: c.method == "POST" and c.path == path and c.status == 200 and contains in content(c), WAIT
    )


async def approval_posted(fake: FakeDiscord, channel_id: int) -> int:
    """Waits until the approval message carries both of the bot's reactions; returns its id."""
    deny = await fake.wait_for_call("PUT", rf"/channels/{channel_id}/messages/\d+/reactions/❌/@me", WAIT)
    match = re.search(r"/messages/(\d+)/", deny.path)
    assert match is not None
    return int(match.group(1))


def said(fake: FakeDiscord, channel_id: int, text: str) -> list[str]:
    return [m for m in fake.messages(channel_id) if text in m]


def tool_runs(services: Services) -> list[str]:
    return [e.args_json for e in services.store.audit_entries_sync() if e.action == "tool_run"]


def touch_script(target: Path, after: str) -> list[Reply]:
    return [
        Reply(thinking="The user wants the marker file.", tool_calls=[{"name": "run_command", "arguments": {
            "command": f"touch {target}"}}]),
        Reply(content=after),
    ]  # fmt: skip


async def ask(fake: FakeDiscord, text: str, *, user: int = APPROVER_ID) -> int:
    """A mention in the text channel; returns the message id (= the id of the thread opened on it)."""
    return await fake.push_message(TEXT_CHANNEL_ID, user, f"{MENTION} {text}")


@asynccontextmanager
async def serving(services: Services, agent: AgentRunner, **config: Any) -> AsyncIterator[DiscordAdapter]:
    cfg = replace(discord_config(services.settings), guild_ready_timeout=0.1, pace_window=PACE_WINDOW, **config)
    adapter = DiscordAdapter(cfg, agent=agent, gate=services.gate, store=services.store)
    task = asyncio.create_task(adapter.serve(), name="test-discord-serve")
    await asyncio.wait_for(adapter.ready.wait(), WAIT)
    try:
        yield adapter
    finally:
        await adapter.close()
        await asyncio.wait_for(task, WAIT)


async def shown(fake: FakeDiscord, channel_id: int, text: str) -> RestCall:
    """Until a create or edit in the channel carries `text`."""
    return await fake.wait_for(
        lambda c: c.method in ("POST", "PATCH") and str(channel_id) in c.path and text in content(c), WAIT
    )
