"""20 Discord conversations at once, 8 steps each, through the real adapter and core.

An unmodified discord.py client talks to the FakeDiscord stand-in (gateway + REST); the
agent, store (SQLite) and approval gate are the real ones; the model is scripted (a think
and a tool call per turn, with a delay like a small local model) and the tool waits a little
like a real read. The adapter paces as in production: 5 message creates or edits per 5 s
per channel (a thread is a channel); `--smooth` spaces them about 1 s apart instead.

Prints, from the stand-in's record of REST calls:
- peak creates+edits in one channel within any 5 s window (Discord's limit: 5);
- median and p90 time from a step being produced by the agent to it being visible in Discord
  (the first create or edit whose text has it);
- steps lost: produced but never visible, or missing from the final thread (target 0).

    .venv/bin/python bench/discord_thread.py [--conversations 20] [--model-delay 0.3] [--tool-delay 0.2] [--smooth]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.discord import DiscordAdapter, DiscordConfig
from adapters.progress import step_line
from bot.app import build_services
from bot.settings import Settings
from core.events import Answer, Event, Request
from core.llm import LLMReply, LLMToolCall
from core.tools.registry import ToolRegistry, tool
from tests.fakes.discord import APPROVER_ID, BOT_USER_ID, TEXT_CHANNEL_ID, FakeDiscord, RestCall
from tests.support.models import FunctionModel, question, tool_turns

TOKEN = "bench-token"
WINDOW = 5.0  # seconds: Discord's per-channel window for message creates and edits
TOOL_TURNS = 2  # each conversation: 2 × (think, tool call, tool result), then think + answer = 8 steps

_TAG = re.compile(r"\[c\d+\]")


def make_tools(delay: float) -> ToolRegistry:
    @tool(risk="read")
    async def bench_step(step: str) -> str:
        """Pretend to look something up.

        Args:
            step: which step this is.
        """
        await asyncio.sleep(delay)
        return f"result of {step}"

    return ToolRegistry([bench_step])


def scripted_reply(messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> LLMReply:
    """Per conversation (tagged `[cN]` in the question): two tool turns, then an answer."""
    match = _TAG.search(question(messages))
    tag = match.group(0) if match else "[c?]"
    done = tool_turns(messages)
    if done < TOOL_TURNS:
        step = 3 * done + 1
        call = LLMToolCall("bench_step", {"step": f"{tag} s{step + 1}"})
        return LLMReply(thinking=f"thinking {tag} s{step}", tool_calls=(call,))
    return LLMReply(thinking=f"thinking {tag} s7", content=f"answer {tag}: all {TOOL_TURNS} lookups done")


class TimedAgent:
    """The real agent, noting when each event is produced and the text that will show it."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.produced: list[tuple[float, str]] = []  # (monotonic time, visible marker)

    async def run(self, request: Request) -> AsyncIterator[Event]:
        async for ev in self.agent.run(request):
            marker = ev.text if isinstance(ev, Answer) else step_line(ev)
            if marker:
                self.produced.append((time.monotonic(), marker))
            yield ev


def peak_per_window(calls: list[RestCall]) -> tuple[int, str]:
    """The most creates+edits in one channel within any WINDOW seconds."""
    by_channel: dict[str, list[float]] = defaultdict(list)
    for c in calls:
        m = re.fullmatch(r"/channels/(\d+)/messages(/\d+)?", c.path)
        if m and ((c.method == "POST" and not m.group(2)) or (c.method == "PATCH" and m.group(2))):
            by_channel[m.group(1)].append(c.at)
    best, where = 0, ""
    for channel, stamps in by_channel.items():
        stamps.sort()
        start = 0
        for end, t in enumerate(stamps):
            while t - stamps[start] >= WINDOW:
                start += 1
            if end - start + 1 > best:
                best, where = end - start + 1, channel
    return best, where


def text_of(c: RestCall) -> str:
    return str((c.json or {}).get("content") or "")


def answer_posted(text: str) -> Callable[[RestCall], bool]:
    return lambda c: c.method == "POST" and text in text_of(c)


async def main(conversations: int, model_delay: float, tool_delay: float, **pacing: Any) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-discord-"))
    settings = Settings(ORCHESTRATOR_DATA_DIR=str(tmp), OLLAMA_HOST="http://127.0.0.1:9", DISCORD_TOKEN=TOKEN)
    services = await build_services(
        settings, llm=FunctionModel(scripted_reply, delay=model_delay), extra_tools=make_tools(tool_delay)
    )
    agent = TimedAgent(services.agent)
    async with FakeDiscord(token=TOKEN) as fake:
        config = replace(
            DiscordConfig(token=TOKEN, api_url=fake.api_base, guild_ready_timeout=0.1, approvers=frozenset({"1"})),
            allowed_users=frozenset({str(APPROVER_ID)}),  # the one asker here; no per-person limits in a bench
            rate_limit=0,
            runs_per_user=conversations,
            **pacing,
        )
        adapter = DiscordAdapter(config, agent=agent, gate=services.gate, store=services.store)
        serving = asyncio.create_task(adapter.serve())
        await asyncio.wait_for(adapter.ready.wait(), 30)

        started = time.monotonic()
        ids = await asyncio.gather(
            *(
                fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, f"<@{BOT_USER_ID}> check the web tier [c{n}]")
                for n in range(conversations)
            )
        )

        for n in range(conversations):
            await fake.wait_for(answer_posted(f"answer [c{n}]"), timeout=120)
        await adapter.wait_idle()
        wall = time.monotonic() - started

        calls = [c for c in fake.rest_calls if c.status == 200 and c.method in {"POST", "PATCH"}]
        latencies: list[float] = []
        lost = 0
        for at, marker in agent.produced:
            seen = next((c.at for c in calls if marker in text_of(c)), None)
            if seen is None:
                lost += 1
            else:
                latencies.append(max(0.0, seen - at))
        # The final state of each thread must still show every step (the view keeps the last 15 lines).
        final_missing = 0
        for _, marker in agent.produced:
            tag = _TAG.search(marker)
            mid = ids[int(tag.group(0)[2:-1])] if tag else None
            if mid is not None and not any(marker in m for m in fake.messages(mid)):
                final_missing += 1
        peak, channel = peak_per_window(fake.rest_calls)
        rate_limited = sum(1 for c in fake.rest_calls if c.status == 429)
        threads = len(fake.threads())

        await adapter.close()
        await serving
    await services.close()

    produced = len(agent.produced)
    expected = conversations * (3 * TOOL_TURNS + 2)
    print(f"{conversations} simultaneous Discord conversations, {expected // conversations} steps each")
    print(f"  model turn {model_delay:g} s, tool {tool_delay:g} s; threads opened: {threads}; wall {wall:.1f} s")
    print(f"  pacing per channel: {config.pace_ops} per {config.pace_window:g} s (+{config.pace_margin:g} s margin)")
    print(f"  steps produced: {produced} (expected {expected})")
    print(f"  peak creates+edits per channel per {WINDOW:g} s: {peak} (channel {channel}; limit 5)")
    print(f"  step produced -> visible: median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p90 {statistics.quantiles(latencies, n=10)[-1]:.2f} s, max {max(latencies):.2f} s")  # fmt: skip
    print(f"  steps lost: {lost + final_missing + (expected - produced)} (never shown: {lost}, "
          f"missing from the final thread: {final_missing}); 429 answers: {rate_limited}")  # fmt: skip
    ok = peak <= 5 and lost == 0 and final_missing == 0 and produced == expected
    print(f"  target: peak <= 5 and 0 steps lost -> {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--model-delay", type=float, default=0.3)
    parser.add_argument("--tool-delay", type=float, default=0.2)
    parser.add_argument(
        "--smooth", action="store_true", help="pace 1 per 1 s instead of 5 per 5 s (same limit, no bursts)"
    )
    args = parser.parse_args()
    pacing = {"pace_ops": 1, "pace_window": 1.0, "pace_margin": 0.05} if args.smooth else {}
    sys.exit(asyncio.run(main(args.conversations, args.model_delay, args.tool_delay, **pacing)))
