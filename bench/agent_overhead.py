"""The agent's own time per step: a model that answers instantly, a tool that returns at once.

Each step is one model turn plus one tool call, with every event written to the store
(SQLite, WAL). Target: median under 5 ms per step on a 2-core machine.

    .venv/bin/python bench/agent_overhead.py [--runs 30] [--steps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ScriptedLLM, make_agent
from core.events import Request
from core.llm import LLMToolCall
from core.tools.registry import ToolRegistry, tool


@tool(risk="read")
async def echo(text: str) -> str:
    """Return the text unchanged.

    Args:
        text: what to echo.
    """
    return text


async def main(runs: int, steps: int) -> None:
    llm = ScriptedLLM(lambda i: LLMToolCall("echo", {"text": f"step {i}"}), steps)
    agent, store, tmp = await make_agent(llm, registry=ToolRegistry([echo]))
    per_step: list[float] = []
    for n in range(runs + 3):
        request = Request(platform="bench", user_id="u", channel="c", thread=f"t{n}", text="go")
        start = time.perf_counter()
        events = [ev async for ev in agent.run(request)]
        elapsed = time.perf_counter() - start
        assert type(events[-1]).__name__ == "Answer", events[-1]
        if n >= 3:  # warm-up runs excluded
            per_step.append(elapsed / steps)
    await store.close()
    ms = sorted(x * 1000 for x in per_step)
    print(f"agent overhead per step ({steps}-step runs, {runs} runs, store writes included)")
    print(f"  median {statistics.median(ms):.2f} ms   p90 {ms[int(len(ms) * 0.9) - 1]:.2f} ms   "
          f"min {ms[0]:.2f} ms   max {ms[-1]:.2f} ms")  # fmt: skip
    print(f"  target: median < 5 ms -> {'met' if statistics.median(ms) < 5 else 'NOT met'}")
    print(f"  store: {tmp / 'bench.db'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.steps))
