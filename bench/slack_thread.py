"""Bench: many simultaneous Slack conversations through the real adapter and core.

20 conversations (by default) are started at once against the FakeSlack stand-in,
with a scripted model that thinks for a moment and calls a read-only tool 8 times
before answering. Everything between is real: bolt's request handling, the Slack
adapter with Slack's pace (one post, edit or stream call per second per channel), the
agent, the store, the policy and `run_command`. Each scenario runs in a workspace that
allows Slack's agent stream (runs are shown as a timeline of tasks) and in one that
refuses it (runs are shown in an edited message). It prints, per scenario:

- peak chat calls per channel in any one-second window (Slack allows about 1/s, with
  short bursts tolerated),
- the median (and p95) time from a step being produced by the agent to it being
  visible in Slack (the first post, edit or stream call whose text contains it),
- steps lost: produced but never shown, or missing from the store (must be 0).

    .venv/bin/python bench/slack_thread.py [--conversations 20] [--steps 8] [--think 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fakes

from adapters.progress import step_line
from adapters.slack import SlackAdapter
from adapters.slack.messages import escape, mrkdwn
from bot.app import build_services
from bot.platforms import slack_config
from bot.settings import Settings
from core.events import Answer, Event, Partial, Request, ToolResult
from core.llm import LLMReply, LLMToolCall, WholeReplies
from tests.fakes.slack import BOT_USER_ID, FakeSlack, app_mention, deliver, event_callback, message

SECRET = "bench-secret"
POSTING = (
    "chat.postMessage", "chat.update", "files.completeUploadExternal",
    "chat.startStream", "chat.appendStream", "chat.stopStream",
)  # fmt: skip


class ScriptedModel(WholeReplies):
    """A model that takes `think` seconds per turn: `steps` tool calls, then an answer."""

    def __init__(self, steps: int, think: float) -> None:
        self.steps = steps
        self.think = think

    async def chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> LLMReply:
        await asyncio.sleep(self.think * random.uniform(0.5, 1.5))
        conv = str(messages[-1]["content"]).split()[0] if messages[-1]["role"] == "user" else ""
        conv = conv or next(str(m["content"]).split()[0] for m in reversed(messages) if m["role"] == "user")
        step = sum(1 for m in messages if m["role"] == "tool")
        if step < self.steps:
            return LLMReply(
                thinking=f"{conv} step {step + 1}: checking the next thing",
                tool_calls=(LLMToolCall("run_command", {"command": f"echo {conv} step {step + 1}"}),),
            )
        return LLMReply(content=f"{conv}: all {self.steps} checks passed.")


@dataclass
class Produced:
    channel: str
    visible_as: str  # text that appears in Slack once the step is shown
    at: float


@dataclass
class Recorder:
    """Wraps the agent: notes when each step is handed to the adapter."""

    agent: Any
    streaming: bool
    produced: list[Produced] = field(default_factory=list)

    async def run(self, request: Request) -> AsyncIterator[Event]:
        async for ev in self.agent.run(request):
            if isinstance(ev, Partial):
                yield ev
                continue
            if isinstance(ev, Answer):
                shown = escape(ev.text) if self.streaming else mrkdwn(ev.text)
            elif isinstance(ev, ToolResult) and self.streaming:  # the tool's task: complete, with its output
                lines = ev.output.strip().splitlines() or ["(no output)"]
                shown = escape(" ".join(lines[0].split())[:200])
            else:
                line = step_line(ev)
                shown = escape(line) if line else ""
            if shown:
                self.produced.append(Produced(request.channel, shown, time.time()))
            yield ev


def peak_per_second(times: list[float]) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def call_text(args: dict[str, Any]) -> str:
    """What a call puts in front of people: its text, or its stream chunks' titles and text."""
    chunks = args.get("chunks") or []
    shown = [str(c.get(k) or "") for c in chunks if isinstance(c, dict) for k in ("title", "text", "output")]
    return "\n".join([str(args.get("text") or args.get("initial_comment") or ""), *shown])


async def scenario(
    *, conversations: int, channels: int, steps: int, think: float, rate_limits: int, data_dir: Path, streaming: bool
) -> dict[str, Any]:
    async with FakeSlack(streaming=streaming) as fake:
        settings = Settings(
            ORCHESTRATOR_DATA_DIR=str(data_dir),
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=fake.api_url,
            SLACK_ALLOWED_USERS="U1",  # the one asker here
            ORCHESTRATOR_RATE_LIMIT=0,  # the bench measures pacing, not the per-person limits
        )
        services = await build_services(settings, llm=ScriptedModel(steps, think))
        recorder = Recorder(services.agent, streaming)
        adapter = SlackAdapter(
            replace(slack_config(settings), runs_per_user=conversations),
            agent=recorder,
            gate=services.gate,
            store=services.store,
        )  # Slack's real pace: one post or edit per second per channel
        if rate_limits:
            fake.rate_limit_next("chat.appendStream" if streaming else "chat.update", retry_after=1, times=rate_limits)
        started = time.time()
        bodies = []
        for n in range(conversations):
            channel, ts = f"C{n % channels:03d}", f"1700000000.{n + 1:06d}"
            text = f"<@{BOT_USER_ID}> conv{n:02d} please check everything"
            bodies += [app_mention("U1", channel, text, ts), message("U1", channel, text, ts)]
        await asyncio.gather(*(deliver(adapter.app, event_callback(b), signing_secret=SECRET) for b in bodies))
        while adapter.events_handled < len(bodies):  # noqa: ASYNC110 - bolt runs listeners after the ack
            await asyncio.sleep(0.01)
        await adapter.wait_idle()
        elapsed = time.time() - started

        by_channel: dict[str, list[float]] = defaultdict(list)
        texts: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for call in fake.calls:
            if call.method in POSTING and call.ok:
                channel = str(call.args.get("channel") or call.args.get("channel_id"))
                by_channel[channel].append(call.at)
                texts[channel].append((call.at, call_text(call.args)))
        latencies: list[float] = []
        lost = 0
        for step in recorder.produced:
            seen = next((at for at, text in texts[step.channel] if at >= step.at and step.visible_as in text), None)
            if seen is None:
                lost += 1
            else:
                latencies.append(seen - step.at)
        stored = sum([len(await services.store.steps(r.id or 0)) for r in await services.store.runs(limit=1000)])
        lost += abs(stored - len(recorder.produced))
        await adapter.close()
        await services.close()
        latencies.sort()
        return {
            "conversations": conversations,
            "channels": channels,
            "steps": len(recorder.produced),
            "stored": stored,
            "seconds": elapsed,
            "peak": max(peak_per_second(t) for t in by_channel.values()),
            "chat_calls": sum(len(t) for t in by_channel.values()),
            "median": statistics.median(latencies) if latencies else float("nan"),
            "p95": latencies[int(len(latencies) * 0.95) - 1] if latencies else float("nan"),
            "lost": lost,
            "rate_limits": rate_limits,
            "streaming": streaming,
        }


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--steps", type=int, default=8, help="tool calls per conversation before the answer")
    parser.add_argument("--think", type=float, default=0.3, help="mean seconds the scripted model takes per turn")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    random.seed(7)
    plans = [  # (channels, injected 429s on chat.appendStream / chat.update, streaming)
        (channels, limits, streaming)
        for streaming in (True, False)
        for channels, limits in [
            (args.conversations, 0),
            (max(1, args.conversations // 5), 0),
            (max(1, args.conversations // 5), 5),
        ]
    ]
    print(f"{args.conversations} conversations, {args.steps} tool steps each, model turn ≈ {args.think:g} s")
    print(
        f"{'shown as':>9} {'channels':>8} {'429s':>5} {'steps':>6} {'stored':>6} {'chat calls':>10} "
        f"{'peak/ch/s':>9} {'median':>8} {'p95':>8} {'lost':>5} {'wall':>7}"
    )
    worst_lost = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (channels, limits, streaming) in enumerate(plans):
            r = await scenario(
                conversations=args.conversations,
                channels=channels,
                steps=args.steps,
                think=args.think,
                rate_limits=limits,
                data_dir=Path(tmp) / f"s{i}",
                streaming=streaming,
            )
            worst_lost = max(worst_lost, r["lost"])
            print(
                f"{'stream' if streaming else 'edits':>9} "
                f"{r['channels']:>8} {r['rate_limits']:>5} {r['steps']:>6} {r['stored']:>6} {r['chat_calls']:>10} "
                f"{r['peak']:>9} {r['median']:>7.2f}s {r['p95']:>7.2f}s {r['lost']:>5} {r['seconds']:>6.1f}s"
            )
    print("peak/ch/s: most posts, edits, stream calls and file shares seen in one channel within any 1 s window")
    print("median/p95: step produced by the agent → first Slack post, edit or stream call showing it")
    return 1 if worst_lost else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
