"""One `ThreadRun` for both chat adapters: the same run looks the same in Slack (its edited
message, where streaming is off or refused) and in Discord, live line included; and the
progress view coalesces a fast stream into a few edits with the newest text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import tests.support.discord_stand as discord_stand
from adapters.progress import ProgressView
from adapters.slack import SlackAdapter
from adapters.texts import live_line, tail
from bot.app import Services
from core.events import Event, Partial
from tests.fakes.discord import FakeDiscord
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.discord_stand import ask, posted, serving, shown
from tests.support.live import EventFeed
from tests.support.slack_stand import make_stand
from tests.support.waiting import until

fake = discord_stand.fake
settings = discord_stand.settings
WAIT = 10.0


def script(feed: EventFeed) -> tuple[list[Partial], list[Event], list[Event]]:
    """A run in three stages: the model thinking (live), a tool step, the answer."""
    return (
        feed.thinking_pieces("First the disk, then the logs"),
        [feed.thought("First the disk, then the logs"), feed.call(1, "df -h"), feed.result(1, "91% /\n2% /boot")],
        [*feed.draft_pieces("The disk is 91 % full."), feed.answer("The disk is 91 % full.")],
    )


@pytest.mark.asyncio
async def test_slack_and_discord_show_the_same_run_the_same_way(
    fake: FakeDiscord, fake_ollama: FakeOllama, services: Services, tmp_path: Path
) -> None:
    feed = EventFeed()
    live, steps, end = script(feed)
    async with serving(services, feed) as adapter:
        mid = await ask(fake, "disk?")
        feed.give(*live)
        seen_live = (await shown(fake, mid, "then the logs")).json["content"]
        feed.give(*steps, *end)
        feed.end()
        await posted(fake, mid, "91 % full")
        await adapter.wait_idle()
    in_discord = fake.messages(mid)

    async with FakeSlack() as slack:
        stand = await make_stand(slack, fake_ollama, tmp_path / "slack")
        feed = EventFeed()
        stand.adapter = SlackAdapter(stand.config, agent=feed, gate=stand.services.gate, store=stand.services.store)
        try:
            ts = await stand.say("disk?")
            feed.give(*live)
            await until(lambda: any("then the logs" in m.text for m in stand.bot_messages(ts)), WAIT)
            slack_live = stand.bot_messages(ts)[0].text
            feed.give(*steps, *end)
            feed.end()
            await stand.answer(ts, contains="91 % full")
            in_slack = [m.text for m in stand.bot_messages(ts)]
        finally:
            await stand.adapter.close()
            await stand.services.close()

    assert slack_live == seen_live == "Working on it…\n💭 First the disk, then the logs"
    assert (
        in_slack
        == in_discord
        == [
            'Working on it…\n💭 First the disk, then the logs\n🔧 `run_command(command="df -h")`\n'
            "✅ run_command: 91% / (+1 lines)\n🏁 done",
            "The disk is 91 % full.",
        ]
    )


class Recorder:
    """A progress sink that records what it was handed."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    async def post(self, text: str) -> str:
        self.shown.append(text)
        return "m1"

    async def edit(self, message_id: str, text: str) -> None:
        self.shown.append(text)


@pytest.mark.asyncio
async def test_a_fast_stream_is_a_few_edits_with_the_newest_text() -> None:
    sink = Recorder()
    view = ProgressView(sink, "C1", live_every=0.05)
    so_far = ""
    for n in range(2000):
        so_far += f"w{n} "
        view.live("thinking", so_far)
        if n % 100 == 0:
            await asyncio.sleep(0.01)  # the stream goes on for a while
    await until(lambda: sink.shown and sink.shown[-1].endswith("w1999"), WAIT)
    await asyncio.wait_for(view.finish(), WAIT)
    assert 1 < len(sink.shown) < 60  # not an edit per piece
    assert sink.shown[0].startswith("Working on it…\n💭 w0")  # the first piece goes out at once
    assert sink.shown[-1] == "Working on it…"  # closed: the live line is gone
    assert sink.shown[-2].endswith(live_line("thinking", so_far, 300).split("…")[-1])


def test_the_live_line_is_the_latest_words_on_one_line() -> None:
    assert tail("short\nthought", 300) == "short thought"
    long = "x" * 50 + "\n" + "the end of it"
    assert tail(long, 20) == "…" + ("x" * 50 + " the end of it")[-19:]
    assert live_line("text", "a draft", 300) == "✍️ a draft"
