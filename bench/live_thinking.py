"""Bench: how soon a reasoning model's thinking shows in Slack and Discord threads.

The real agent (bot.app.build_services: OllamaLLM, the store, the policy, `run_command`)
against FakeOllama streaming a model that thinks for about 10 s (200 thinking chunks, 50 ms
apart), runs a read-only command, thinks a little more and answers. The real adapters
against their stand-ins, at the platforms' real pace: Slack in a workspace that allows its
agent stream (a timeline of tasks), Slack in one that refuses it (an edited message), and
Discord (an edited message, 5 creates-or-edits per 5 s per channel). Per surface:

- the delay from the model's first chunk (FakeOllama.first_chunk_times) to the first call
  to the platform whose text holds the first thinking words (target: at most 1.5 s);
- steps lost: produced by the agent but not in the thread once the run is over (target 0);
- the most calls per channel in any window, against the platform's limit (Slack: posts,
  edits and stream calls, about 1 per second; Discord: creates and edits, 5 per 5 s).

One function per surface; `main` runs them all. (The console's figures: bench/live_console.py.)

    .venv/bin/python bench/live_thinking.py [--chunks 200] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fakes

from adapters.discord import DiscordAdapter
from adapters.slack import SlackAdapter
from adapters.slack.messages import escape, mrkdwn
from adapters.texts import step_line
from bot.app import Services, build_services
from bot.platforms import discord_config, slack_config
from bot.settings import Settings
from core.events import Answer, Event, Partial, Request, ToolCall, ToolResult
from tests.fakes.discord import APPROVER_ID, BOT_USER_ID, TEXT_CHANNEL_ID, FakeDiscord, RestCall
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import BOT_ID, FakeSlack, app_mention, deliver, event_callback, message

TARGET = 1.5  # seconds, model's first chunk → first thinking words in the thread
FIRST_WORDS = "Considering the"
ANSWER = "The disk is 41% full: /var/log holds most of it."
SECRET = "bench-secret"
TOKEN = "bench-token"
SLACK_CALLS = (
    "chat.postMessage", "chat.update", "files.completeUploadExternal",
    "chat.startStream", "chat.appendStream", "chat.stopStream",
)  # fmt: skip


@dataclass
class Figures:
    surface: str
    first_visible: float | None  # seconds after the model's first chunk
    steps: int
    lost: int
    peak: int
    window: float
    limit: int
    calls: int
    notes: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        seen = self.first_visible is not None and self.first_visible <= TARGET
        return seen and not self.lost and self.peak <= self.limit


class Recorder:
    """The real agent; keeps the steps it produced (what must be in the thread at the end)."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.steps: list[Event] = []

    async def run(self, request: Request) -> AsyncIterator[Event]:
        async for ev in self.agent.run(request):
            if not isinstance(ev, Partial):
                self.steps.append(ev)
            yield ev


def script(fake: FakeOllama, chunks: int, delay: float) -> None:
    words = ["Considering the question about the disk, "] + [f"step {i} of my reasoning, " for i in range(chunks - 1)]
    fake.script(
        Reply(
            thinking_pieces=words,
            tool_calls=[{"name": "run_command", "arguments": {"command": "echo /var/log 38G"}}],
            chunk_delay=delay,
        ),
        Reply(thinking="The logs are the bulk of it.", content=ANSWER, chunk_delay=delay),
    )


def settings_for(tmp: Path, fake: FakeOllama, **platform: str) -> Settings:
    root = tmp / "root"
    root.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "ORCHESTRATOR_DATA_DIR": str(tmp / "data"), "OLLAMA_HOST": fake.url, "ORCHESTRATOR_FILE_ROOTS": str(root),
        "ORCHESTRATOR_MEMORY": "false", "ORCHESTRATOR_RATE_LIMIT": 0,
    }  # fmt: skip
    return Settings(**(values | platform))


def peak_per_window(stamps: dict[str, list[float]], window: float) -> int:
    best = 0
    for times in stamps.values():
        times.sort()
        start = 0
        for end, t in enumerate(times):
            while t - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
    return best


# ---- Slack ----------------------------------------------------------------------------------------------
async def slack_surface(*, streaming: bool, chunks: int, delay: float, tmp: Path) -> Figures:
    """One question in a Slack channel: thinking, a command, the answer."""
    with FakeOllama() as model:
        async with FakeSlack(streaming=streaming) as fake:
            settings = settings_for(
                tmp, model, SLACK_BOT_TOKEN="xoxb-bench", SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=fake.api_url,
                SLACK_ALLOWED_USERS="U1",
            )  # fmt: skip
            services = await build_services(settings)
            recorder = Recorder(services.agent)
            adapter = SlackAdapter(slack_config(settings), agent=recorder, gate=services.gate, store=services.store)
            script(model, chunks, delay)
            try:
                channel, ts = "C1", "1700000000.000100"
                text = f"<@{BOT_USER_ID}> why is the disk full?"
                for body in (app_mention("U1", channel, text, ts), message("U1", channel, text, ts)):
                    await deliver(adapter.app, event_callback(body), signing_secret=SECRET)
                while adapter.events_handled < 2:  # noqa: ASYNC110 - bolt runs listeners after the ack
                    await asyncio.sleep(0.01)
                await adapter.wait_idle()
                first = model.first_chunk_times[0] if model.first_chunk_times else None
                calls = [c for c in fake.calls if c.method in SLACK_CALLS and c.ok]
                seen = next((c.at for c in calls if FIRST_WORDS in json.dumps(c.args, ensure_ascii=False)), None)
                by_channel: dict[str, list[float]] = defaultdict(list)
                for c in calls:
                    by_channel[str(c.args.get("channel") or c.args.get("channel_id"))].append(c.at)
                lost = _slack_lost(fake, channel, ts, recorder.steps, streaming=streaming)
                lost += await _unstored(services, recorder.steps)
                notes = [f"{len(fake.calls_to('chat.startStream'))} stream(s) started"] if streaming else []
                return Figures(
                    "Slack, agent stream" if streaming else "Slack, edited message (stream refused)",
                    None if first is None or seen is None else max(0.0, seen - first),
                    len(recorder.steps), lost, peak_per_window(by_channel, 1.0), 1.0, 1, len(calls), notes,
                )  # fmt: skip
            finally:
                await adapter.close()
                await services.close()


def _slack_lost(fake: FakeSlack, channel: str, thread: str, steps: Sequence[Event], *, streaming: bool) -> int:
    """Steps not in the thread as it is at the end."""
    texts = [m.text for m in fake.thread(channel, thread) if m.bot_id == BOT_ID]
    tasks = {t.id: t for st in fake.streams(channel) if st.thread_ts == thread for t in st.tasks.values()}
    streamed = "\n".join(st.text for st in fake.streams(channel) if st.thread_ts == thread)
    lost = 0
    for ev in steps:
        if streaming and isinstance(ev, ToolCall | ToolResult):
            task = tasks.get(ev.call_id)
            ok = task is not None and task.status in ("complete", "error")
        elif isinstance(ev, Answer):
            ok = escape(ev.text) in streamed if streaming else any(mrkdwn(ev.text) == t for t in texts)
        else:
            line = escape(step_line(ev) or "")
            ok = any(line == t.title for t in tasks.values()) if streaming else any(line in t for t in texts)
        lost += not ok
    return lost


# ---- Discord --------------------------------------------------------------------------------------------
async def discord_surface(*, chunks: int, delay: float, tmp: Path) -> Figures:
    """One question in a Discord channel (a thread is opened on it): thinking, a command, the answer."""
    with FakeOllama() as model:
        async with FakeDiscord(token=TOKEN) as fake:
            settings = settings_for(
                tmp, model, DISCORD_TOKEN=TOKEN, DISCORD_API_URL=fake.api_base, DISCORD_ALLOWED_USERS=str(APPROVER_ID)
            )
            services = await build_services(settings)
            recorder = Recorder(services.agent)
            config = replace(discord_config(settings), guild_ready_timeout=0.1)  # Discord's real pace: 5 per 5 s
            adapter = DiscordAdapter(config, agent=recorder, gate=services.gate, store=services.store)
            serving = asyncio.create_task(adapter.serve())
            try:
                await asyncio.wait_for(adapter.ready.wait(), 30)
                script(model, chunks, delay)
                mid = await fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, f"<@{BOT_USER_ID}> why is the disk full?")
                await fake.wait_for(_posted(mid, ANSWER), timeout=120)
                await adapter.wait_idle()
                first = model.first_chunk_times[0] if model.first_chunk_times else None
                writes = [c for c in fake.rest_calls if c.status == 200 and _is_write(c)]
                seen = next((c.at for c in writes if FIRST_WORDS in _content(c)), None)
                by_channel: dict[str, list[float]] = defaultdict(list)
                for c in writes:
                    by_channel[c.path.split("/")[2]].append(c.at)
                shown = fake.messages(mid)
                lost = sum(not any(_marker(ev) in m for m in shown) for ev in recorder.steps)
                lost += await _unstored(services, recorder.steps)
                # RestCall.at is monotonic, first_chunk_times wall-clock: compare each to its own clock.
                return Figures(
                    "Discord, edited message",
                    None if first is None or seen is None else max(0.0, _since(first, seen)),
                    len(recorder.steps), lost, peak_per_window(by_channel, 5.0), 5.0, 5, len(writes),
                )  # fmt: skip
            finally:
                await adapter.close()
                await serving
                await services.close()


def _is_write(c: RestCall) -> bool:
    parts = c.path.split("/")
    return (c.method == "POST" and len(parts) == 4 and parts[3] == "messages") or (
        c.method == "PATCH" and len(parts) == 5 and parts[3] == "messages"
    )


def _content(c: RestCall) -> str:
    return str((c.json or {}).get("content") or "")


def _posted(channel_id: int, text: str) -> Callable[[RestCall], bool]:
    return lambda c: c.method == "POST" and c.path == f"/channels/{channel_id}/messages" and text in _content(c)


def _marker(ev: Event) -> str:
    return ev.text if isinstance(ev, Answer) else step_line(ev) or ""


def _since(wall: float, monotonic: float) -> float:
    return monotonic - (time.monotonic() - (time.time() - wall))


async def _unstored(services: Services, steps: Sequence[Event]) -> int:
    """Produced steps the store does not have (it is the run's source of truth)."""
    stored = sum([len(await services.store.steps(r.id or 0)) for r in await services.store.runs(limit=10)])
    return abs(stored - len(steps))


# ---- all surfaces ----------------------------------------------------------------------------------------
async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=200, help="thinking chunks before the first tool call")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between two chunks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    print(f"a model thinking for {args.chunks * args.delay:.0f} s ({args.chunks} chunks), a command, then the answer")
    results: list[Figures] = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(await slack_surface(streaming=True, chunks=args.chunks, delay=args.delay, tmp=Path(tmp) / "s1"))
        results.append(await slack_surface(streaming=False, chunks=args.chunks, delay=args.delay, tmp=Path(tmp) / "s2"))
        results.append(await discord_surface(chunks=args.chunks, delay=args.delay, tmp=Path(tmp) / "d"))
    for r in results:
        first = f"{r.first_visible:.3f} s" if r.first_visible is not None else "never"
        print(f"  {r.surface}")
        print(f"    first thinking visible after the model's first chunk: {first} (target <= {TARGET:g} s)")
        print(f"    steps: {r.steps}, lost: {r.lost}; platform calls: {r.calls}" + "".join(f"; {n}" for n in r.notes))
        print(f"    peak calls per channel per {r.window:g} s: {r.peak} (limit {r.limit})")
        print(f"    target {'met' if r.met else 'NOT met'}")
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
