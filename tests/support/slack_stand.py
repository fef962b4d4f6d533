"""The Slack stand: a Slack adapter on the real services, against FakeSlack and FakeOllama.

`Stand.say()` behaves like Slack: a mention is seeded in the fake's channel and delivered
twice, as `app_mention` and as `message`, each signed and pushed through bolt's own request
handling. The fixtures `slack`, `make` and `stand` are imported by the test modules that use them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest_asyncio
from slack_bolt.response import BoltResponse

from adapters.slack import SlackAdapter, SlackConfig
from bot.app import Services, build_services
from bot.platforms import slack_config
from bot.settings import Settings
from core.store.models import AuditEntry
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import (
    BOT_ID,
    BOT_USER_ID,
    FakeSlack,
    Message,
    app_mention,
    deliver,
    event_callback,
    message,
    reaction_added,
)
from tests.support.waiting import until

SECRET = "s3cret"
CHANNEL = "C1"
_ts = itertools.count(1)


def next_ts() -> str:
    return f"1700009000.{next(_ts):06d}"


@dataclass
class Stand:
    slack: FakeSlack
    ollama: FakeOllama
    settings: Settings
    services: Services
    adapter: SlackAdapter

    @property
    def config(self) -> SlackConfig:
        return self.adapter.config

    def new_adapter(self, **services: Any) -> SlackAdapter:
        """Another adapter instance on the same store (a restart, or a second bot process)."""
        deps: dict[str, Any] = {"agent": self.services.agent, "gate": self.services.gate, "store": self.services.store}
        return SlackAdapter(self.config, **(deps | services))

    async def send(self, event: dict[str, Any], *, to: SlackAdapter | None = None, **kw: Any) -> BoltResponse:
        body = event_callback(event, event_id=kw.pop("event_id", None))
        return await deliver((to or self.adapter).app, body, signing_secret=SECRET, **kw)

    async def say(
        self,
        text: str,
        *,
        user: str = "U1",
        channel: str = CHANNEL,
        thread: str | None = None,
        mention: bool = True,
        files: list[dict[str, Any]] | None = None,
    ) -> str:
        """A person posts `text` (mentioning the bot unless `mention=False`), with `files`
        (from `FakeSlack.share_file`) attached; returns its ts."""
        ts = next_ts()
        body = f"<@{BOT_USER_ID}> {text}" if mention else text
        self.slack.add_message(channel, body, user=user, ts=ts, thread_ts=thread)
        seen = self.adapter.events_handled
        extra = {"files": files, "subtype": "file_share"} if files else {}
        if mention:
            await self.send(app_mention(user, channel, body, ts, thread) | ({"files": files} if files else {}))
        await self.send(message(user, channel, body, ts, thread) | extra)
        await until(lambda: self.adapter.events_handled >= seen + (2 if mention else 1))
        return ts

    async def react(
        self, user: str, name: str, ts: str, *, channel: str = CHANNEL, to: SlackAdapter | None = None
    ) -> None:
        adapter = to or self.adapter
        seen = adapter.events_handled
        await self.send(reaction_added(user, name, channel, ts), to=adapter)
        await until(lambda: adapter.events_handled > seen)
        await asyncio.wait_for(adapter.wait_idle(runs=False), 10)

    def bot_messages(self, thread: str, channel: str = CHANNEL) -> list[Message]:
        return [m for m in self.slack.thread(channel, thread) if m.bot_id == BOT_ID]

    async def answer(self, thread: str, *, contains: str = "", channel: str = CHANNEL) -> Message:
        """Wait for the bot's message in `thread` containing `contains`; then for the run to end."""

        def found() -> Message | None:
            return next((m for m in self.bot_messages(thread, channel) if contains in m.text), None)

        await until(found)
        await asyncio.wait_for(self.adapter.wait_idle(), 10)
        result = found()
        assert result is not None
        return result

    async def approval_message(self, thread: str) -> Message:
        await self.slack.wait_for(
            lambda calls: any(c.method == "reactions.add" and c.args.get("name") == "x" for c in calls)
        )
        [msg] = [m for m in self.bot_messages(thread) if "Approval needed" in m.text]
        return msg


async def make_stand(
    slack: FakeSlack, ollama: FakeOllama, data_dir: Path, *, streaming: bool = False, **settings: Any
) -> Stand:
    """A Slack adapter on the real services. `streaming` False: runs are shown in an edited progress
    message, as in a workspace without Slack's agent streaming (tests/adapters/test_live_slack.py
    has the streamed runs)."""
    values: dict[str, Any] = {
        "ORCHESTRATOR_DATA_DIR": str(data_dir),
        "OLLAMA_HOST": ollama.url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_APPROVERS": "UADMIN",
        "SLACK_ALLOWED_USERS": "U1",  # the person asking in these tests (tests/adapters/test_access_slack.py: who may)
        "SLACK_API_URL": slack.api_url,
    }
    s = Settings(**(values | settings))
    services = await build_services(s)
    services.gate.poll_interval = 0.05
    # A fast pace keeps the suite quick; the bench runs Slack's real one.
    config = replace(slack_config(s), pace=0.02, streaming=streaming)
    adapter = SlackAdapter(config, agent=services.agent, gate=services.gate, store=services.store)
    return Stand(slack, ollama, s, services, adapter)


# ---- fixtures ---------------------------------------------------------------------------------
@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


StandFactory = Callable[..., Awaitable[Stand]]


@asynccontextmanager
async def stands(slack: FakeSlack, ollama: FakeOllama, tmp_path: Path, **defaults: Any) -> AsyncIterator[StandFactory]:
    """A factory of stands on one FakeSlack and FakeOllama, each with its own data directory unless
    `data_dir=` reuses one (a restart); `defaults` go to every `make_stand`. All closed on exit."""
    made: list[Stand] = []

    async def factory(*, data_dir: Path | None = None, **settings: Any) -> Stand:
        stand = await make_stand(slack, ollama, data_dir or tmp_path / f"data{len(made)}", **(defaults | settings))
        made.append(stand)
        return stand

    try:
        yield factory
    finally:
        for stand in made:
            await stand.adapter.close()
            await stand.services.close()


@pytest_asyncio.fixture
async def make(slack: FakeSlack, fake_ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[StandFactory]:
    """Stands on one FakeSlack and FakeOllama (`fake_ollama` comes from tests/conftest.py)."""
    async with stands(slack, fake_ollama, tmp_path) as factory:
        yield factory


@pytest_asyncio.fixture
async def stand(make: StandFactory) -> Stand:
    return await make()


def touch_reply(target: Path) -> Reply:
    return Reply(tool_calls=[{"name": "run_command", "arguments": {"command": f"touch {target}"}}])


def echo_reply(words: str, thinking: str = "") -> Reply:
    return Reply(thinking=thinking, tool_calls=[{"name": "run_command", "arguments": {"command": f"echo {words}"}}])


async def tool_runs(stand: Stand) -> list[AuditEntry]:
    return [e for e in await stand.services.store.audit_entries() if e.action == "tool_run"]
