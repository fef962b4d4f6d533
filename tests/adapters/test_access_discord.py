"""Who may ask, through the real Discord adapter: an unmodified discord.py client against
FakeDiscord, the real core on a temp SQLite, FakeOllama. Nobody is allowed but the approver
(APPROVER_ID) unless a test says so."""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path

import pytest

import tests.support.discord_stand as discord_stand
from bot.app import Services
from bot.cli import build_parser
from bot.settings import Settings
from tests.fakes.discord import (
    APPROVER_ID,
    OPS_ROLE_ID,
    OTHER_CHANNEL_ID,
    OWNER_ID,
    STRANGER_ID,
    TEXT_CHANNEL_ID,
    FakeDiscord,
)
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.discord_stand import MENTION, WAIT, ask, discord_settings, posted, running, services_for

ROLE_HOLDER_ID = 4100  # holds the ops role, is no approver
PEOPLE = frozenset({OWNER_ID, APPROVER_ID, STRANGER_ID, ROLE_HOLDER_ID})


fake = discord_stand.fake  # the stand-in (tests/support/discord_stand.py)


@pytest.fixture
def settings(tmp_path: Path, fake_ollama: FakeOllama, workspace: Path, fake: FakeDiscord) -> Settings:
    return discord_settings(tmp_path / "data", fake_ollama, workspace, fake)


def refusals(services: Services, user: int) -> list[str]:
    """How each refused message of `user` was handled (told / quiet), from the audit log."""
    entries = services.store.audit_entries_sync()
    return [e.decision or e.action for e in entries if e.actor == f"discord:{user}" and e.action != "request"]


async def refused(services: Services, user: int, count: int) -> None:
    """Until `count` refusals of `user` are audited (what the adapter does first with a message)."""

    async def poll() -> None:
        while len(refusals(services, user)) < count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT)


def bot_posts(fake: FakeDiscord, channel_id: int, text: str) -> list[str]:
    return [m.content for m in fake.message_objects(channel_id) if m.author_id not in PEOPLE and text in m.content]


def cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(settings.data_dir))
    args: argparse.Namespace = build_parser().parse_args(["pairing", *argv])
    return int(args.func(args))


# ---- strangers -----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_strangers_mention_and_dm_run_nothing_and_get_one_reply_each(
    fake: FakeDiscord, fake_ollama: FakeOllama, services: Services
) -> None:
    fake_ollama.script(Reply(content="should never be said"))
    async with running(services) as adapter:
        first = await ask(fake, "how full is the disk?", user=STRANGER_ID)
        reply = await posted(fake, TEXT_CHANNEL_ID, "not allowed")
        await ask(fake, "answer me!", user=STRANGER_ID)
        await fake.push_message(None, STRANGER_ID, "let me in", guild=False)
        dm = fake.dm_channel_id(STRANGER_ID)
        offer = await posted(fake, dm, "orchestrator pairing approve")
        await fake.push_message(None, STRANGER_ID, "hello??", guild=False)
        await refused(services, STRANGER_ID, 4)
        await adapter.wait_idle()

    text = str((reply.json or {}).get("content"))
    assert text.startswith(f"<@{STRANGER_ID}> ") and f"`{STRANGER_ID}`" in text and "DISCORD_ALLOWED_USERS" in text
    assert len(bot_posts(fake, TEXT_CHANNEL_ID, "not allowed")) == 1  # once, not once per message
    assert re.search(r"`[A-Z0-9]{8}`", str((offer.json or {}).get("content")))
    assert len(bot_posts(fake, dm, "pairing")) == 1
    assert fake_ollama.chat_requests == [] and await services.store.runs() == []
    assert fake.threads() == [] and fake.reactions(first) == {}  # no thread, no 👀
    assert refusals(services, STRANGER_ID) == ["told", "quiet", "pairing_requested", "quiet"]


@pytest.mark.asyncio
async def test_a_role_holder_is_served_in_the_server_and_in_a_dm(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings
) -> None:
    fake.add_user(ROLE_HOLDER_ID, "bob", roles=[OPS_ROLE_ID])
    fake_ollama.script(Reply(content="Disks are fine."), Reply(content="Load is fine."))
    async with (
        services_for(settings, discord_allowed_roles=[str(OPS_ROLE_ID)]) as services,
        running(services) as adapter,
    ):
        mid = await ask(fake, "disks?", user=ROLE_HOLDER_ID)
        await posted(fake, mid, "Disks are fine.")
        await fake.push_message(None, ROLE_HOLDER_ID, "load?", guild=False)  # a DM carries no roles
        await posted(fake, fake.dm_channel_id(ROLE_HOLDER_ID), "Load is fine.")
        await adapter.wait_idle()
    assert len(fake_ollama.chat_requests) == 2


@pytest.mark.asyncio
async def test_a_stranger_replying_in_an_allowed_users_thread_runs_nothing(
    fake: FakeDiscord, fake_ollama: FakeOllama, services: Services
) -> None:
    fake_ollama.script(Reply(content="nginx is up."), Reply(content="Since Monday."))
    async with running(services) as adapter:
        mid = await ask(fake, "is nginx up?")
        await posted(fake, mid, "nginx is up.")
        await fake.push_message(mid, STRANGER_ID, "restart it for me")  # no mention needed in the bot's thread
        await posted(fake, mid, "not allowed")
        await fake.push_message(mid, APPROVER_ID, "since when?")
        await posted(fake, mid, "Since Monday.")
        await adapter.wait_idle()
    assert len(fake_ollama.chat_requests) == 2
    users = [m["content"] for m in fake_ollama.chat_requests[1]["messages"] if m["role"] == "user"]
    assert users == ["is nginx up?", "since when?"]


@pytest.mark.asyncio
async def test_a_channel_allowlist_keeps_questions_to_those_channels(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings
) -> None:
    fake_ollama.script(Reply(content="Answered in ops."), Reply(content="And in its thread."))
    allow = {"discord_allowed_users": [str(OWNER_ID)], "discord_allowed_channels": [str(TEXT_CHANNEL_ID)]}
    async with services_for(settings, **allow) as services, running(services) as adapter:
        await fake.push_message(OTHER_CHANNEL_ID, OWNER_ID, f"{MENTION} disk?")
        await posted(fake, OTHER_CHANNEL_ID, "this channel")
        mid = await ask(fake, "disk?", user=OWNER_ID)
        await posted(fake, mid, "Answered in ops.")
        await fake.push_message(mid, OWNER_ID, "more?")  # a thread counts as its channel
        await posted(fake, mid, "And in its thread.")
        await adapter.wait_idle()
    assert len(fake_ollama.chat_requests) == 2


# ---- DM pairing ----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_pairing_code_then_approve_then_served_also_after_a_restart(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    dm = fake.dm_channel_id(STRANGER_ID)
    fake_ollama.script(Reply(content="Welcome."), Reply(content="Still welcome."))
    async with services_for(settings) as services, running(services) as adapter:
        await fake.push_message(dm, STRANGER_ID, "may I?", guild=False)
        offer = str((await posted(fake, dm, "pairing approve")).json or {})
        match = re.search(r"`([A-Z0-9]{8})`", offer)
        assert match is not None
        assert cli(monkeypatch, settings, "approve", match.group(1)) == 0
        await fake.push_message(dm, STRANGER_ID, "now?", guild=False)
        await posted(fake, dm, "Welcome.")
        await adapter.wait_idle()
    async with services_for(settings) as services, running(services) as adapter:  # a new process, same database
        await fake.push_message(dm, STRANGER_ID, "after the restart?", guild=False)
        await posted(fake, dm, "Still welcome.")
        await adapter.wait_idle()
        assert [e.action for e in services.store.audit_entries_sync() if "pairing" in e.action] == [
            "pairing_requested", "pairing_approved",
        ]  # fmt: skip
