"""What a Discord user sees while a run streams: the progress message's live line, coalesced
within Discord's 5 creates-or-edits per 5 s per channel; an unmodified discord.py client
against FakeDiscord, the real adapter, outbox and store. The events come from the real agent
with FakeOllama, or from `EventFeed` (tests/support/live.py) where a test must look at the
thread between two events or needs a stream faster than any model."""

from __future__ import annotations

import asyncio

import pytest

import tests.support.discord_stand as discord_stand
from bot.app import Services
from tests.fakes.discord import FakeDiscord, RestCall
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.discord_stand import PACE_WINDOW, ask, content, posted, serving, shown
from tests.support.live import EventFeed

# the stand's fixtures (tests/support/discord_stand.py)
fake = discord_stand.fake
settings = discord_stand.settings


def writes(fake: FakeDiscord, channel_id: int) -> list[RestCall]:
    """Message creates and edits in a channel that Discord took (what its limit counts)."""
    return [
        c
        for c in fake.calls_matching("POST", rf"/channels/{channel_id}/messages")
        + fake.calls_matching("PATCH", rf"/channels/{channel_id}/messages/\d+")
        if c.status == 200
    ]


def most_in_a_window(calls: list[RestCall], window: float) -> int:
    times = sorted(c.at for c in calls)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.asyncio
async def test_the_thinking_is_in_the_progress_message_before_the_turn_ends(
    fake: FakeDiscord, services: Services
) -> None:
    feed = EventFeed()
    async with serving(services, feed) as adapter:
        mid = await ask(fake, "why is the disk full?")
        feed.give(*feed.thinking_pieces("The user asks about the disk, so df first"))
        await shown(fake, mid, "so df first")
        [progress] = fake.message_objects(mid)
        assert progress.content.splitlines() == ["Working on it…", "💭 The user asks about the disk, so df first"]

        feed.give(feed.thought("The user asks about the disk, so df first"), feed.call(1, "df -h"))
        feed.give(feed.result(1, "/dev/sda1 91% /"), *feed.draft_pieces("The root disk is 91 % full."))
        feed.give(feed.answer("The root disk is 91 % full."))
        feed.end()
        await posted(fake, mid, "The root disk is 91 % full.")
        await adapter.wait_idle()

    progress_text, answer = fake.messages(mid)
    assert progress_text.splitlines() == [
        "Working on it…",
        "💭 The user asks about the disk, so df first",
        '🔧 `run_command(command="df -h")`',
        "✅ run_command: /dev/sda1 91% /",
        "🏁 done",
    ]
    assert answer == "The root disk is 91 % full."


@pytest.mark.asyncio
async def test_a_fast_stream_stays_within_5_edits_per_window_and_shows_the_newest_text(
    fake: FakeDiscord, services: Services
) -> None:
    feed = EventFeed()
    thinking = " ".join(f"thought{n}" for n in range(1500))
    draft = " ".join(f"word{n}" for n in range(200))
    async with serving(services, feed) as adapter:
        mid = await ask(fake, "think hard")
        pieces = feed.thinking_pieces(thinking)
        for i in range(0, len(pieces), 50):  # 1,500 pieces as fast as a model never sends them
            feed.give(*pieces[i : i + 50])
            await feed.taken()
            await asyncio.sleep(0.02)
        await shown(fake, mid, "thought1499")  # the newest words make it, however fast they came
        feed.give(feed.thought(thinking), feed.call(1, "echo done"), feed.result(1, "done"))
        feed.give(*feed.draft_pieces(draft), feed.answer(draft))
        feed.end()
        await posted(fake, mid, "word199")
        await adapter.wait_idle()

    assert most_in_a_window(writes(fake, mid), PACE_WINDOW) <= 5
    assert len(writes(fake, mid)) < 60  # coalesced: 1,700 pieces, a few dozen edits at most
    lines = fake.messages(mid)[0].splitlines()
    assert lines[0] == "Working on it…" and lines[-1] == "🏁 done"
    assert [line[:1] for line in lines[1:-1]] == ["💭", "🔧", "✅"]
    assert "".join(fake.messages(mid)[1:]) == draft  # the answer, whole


@pytest.mark.asyncio
async def test_a_long_draft_is_watched_live_and_that_message_becomes_the_answer(
    fake: FakeDiscord, services: Services
) -> None:
    feed = EventFeed()
    answer = "\n".join(f"Paragraph {n}: " + "all fine here. " * 8 for n in range(25))  # ~3,200 characters
    async with serving(services, feed) as adapter:
        mid = await ask(fake, "tell me everything")
        feed.give(*feed.draft_pieces(answer[:1000]))
        first = await shown(fake, mid, "✍️")  # long enough to be worth watching
        assert first.method == "POST" and content(first).startswith("Working on it…\n✍️ ")
        feed.give(*feed.draft_pieces(answer[1000:]), feed.answer(answer))
        feed.end()
        await posted(fake, mid, "Paragraph 24")
        await adapter.wait_idle()

    parts = fake.messages(mid)
    assert len(parts) == 2 and all(len(p) <= 2000 for p in parts)
    assert "\n".join(parts).splitlines() == answer.splitlines()  # the live message holds the first part


@pytest.mark.asyncio
async def test_a_model_run_shows_every_step_and_the_answer(
    fake: FakeDiscord, fake_ollama: FakeOllama, services: Services
) -> None:
    fake_ollama.script(
        Reply(thinking="Check the disks first.", tool_calls=[{"name": "disk_usage", "arguments": {}}]),
        Reply(thinking="That is enough.", content="The root filesystem has room to spare."),
    )
    async with serving(services, services.agent) as adapter:
        mid = await ask(fake, "how full is the disk?")
        await posted(fake, mid, "room to spare")
        await adapter.wait_idle()
    progress, answer = fake.messages(mid)
    assert [line.split()[0] for line in progress.splitlines()[1:]] == ["💭", "🔧", "✅", "💭", "🏁"]
    assert answer == "The root filesystem has room to spare."
