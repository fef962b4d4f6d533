"""50 conversations at once, each running a real `sleep 1` subprocess through run_command.

If nothing blocks the event loop the wall time stays close to 1 s; serially it would be
50 s. Target: wall under 2 s (a ratio over 25x).

    .venv/bin/python bench/concurrency.py [--conversations 50] [--seconds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ScriptedLLM, make_agent
from core.events import Answer, Request, ToolResult
from core.llm import LLMToolCall


async def main(conversations: int, seconds: float) -> None:
    llm = ScriptedLLM(lambda i: LLMToolCall("run_command", {"command": f"sleep {seconds:g}"}), 1)
    agent, store, _ = await make_agent(llm, extra_read=["sleep"])

    async def one(n: int) -> bool:
        request = Request(platform="bench", user_id="u", channel="c", thread=f"t{n}", text="sleep")
        events = [ev async for ev in agent.run(request)]
        ok = any(isinstance(e, ToolResult) and e.ok for e in events)
        return ok and isinstance(events[-1], Answer)

    start = time.perf_counter()
    results = await asyncio.gather(*(one(n) for n in range(conversations)))
    wall = time.perf_counter() - start
    await store.close()
    serial = conversations * seconds
    print(f"{conversations} conversations, each running `sleep {seconds:g}` as a subprocess")
    print(f"  completed: {sum(results)}/{conversations}")
    print(f"  wall time: {wall:.2f} s   serial sum: {serial:.0f} s   ratio: {serial / wall:.1f}x")
    print(f"  target: wall < 2 s (ratio > 25x) -> {'met' if wall < 2 * seconds else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main(args.conversations, args.seconds))
