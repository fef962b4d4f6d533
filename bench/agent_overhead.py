"""The agent's own time per step: a model that answers instantly, a tool that returns at once.

Each step is one model turn plus one tool call, with every event written to the store
(SQLite, WAL). Target: median at most 2 ms per step on a 2-core machine, printed beside
the floor: the same runs with step and audit writes dropped.

    .venv/bin/python bench/agent_overhead.py [--runs 30] [--steps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import NoStepWrites, make_agent
from core.events import Request
from core.llm import LLMToolCall
from core.store import Store
from core.tools.registry import ToolRegistry, tool
from tests.support.models import steps_then_answer

TARGET_MS = 2.0


@tool(risk="read")
async def echo(text: str) -> str:
    """Return the text unchanged.

    Args:
        text: what to echo.
    """
    return text


async def per_step(runs: int, steps: int, store_class: type[Store]) -> list[float]:
    """Milliseconds per step of each run (warm-up runs excluded), sorted."""
    llm = steps_then_answer(lambda i: LLMToolCall("echo", {"text": f"step {i}"}), steps)
    agent, store, _tmp = await make_agent(llm, registry=ToolRegistry([echo]), store_class=store_class)
    times: list[float] = []
    for n in range(runs + 3):
        request = Request(platform="bench", user_id="u", channel="c", thread=f"t{n}", text="go")
        start = time.perf_counter()
        events = [ev async for ev in agent.run(request)]
        elapsed = time.perf_counter() - start
        assert type(events[-1]).__name__ == "Answer", events[-1]
        if n >= 3:  # warm-up runs excluded
            times.append(elapsed / steps * 1000)
    await store.close()
    return sorted(times)


def line(label: str, ms: list[float]) -> str:
    return (f"  {label:28} median {statistics.median(ms):.2f} ms   p90 {ms[int(len(ms) * 0.9) - 1]:.2f} ms   "
            f"min {ms[0]:.2f} ms   max {ms[-1]:.2f} ms")  # fmt: skip


async def main(runs: int, steps: int) -> None:
    # alternate the two so a change in the machine's load hits both alike
    real: list[float] = []
    floor: list[float] = []
    for _ in range(3):
        real += await per_step(runs, steps, Store)
        floor += await per_step(runs, steps, NoStepWrites)
    real.sort()
    floor.sort()
    print(f"agent overhead per step ({steps}-step runs, {3 * runs} runs each; load {os.getloadavg()[0]:.2f})")
    print(line("store writes included:", real))
    print(line("floor (step writes dropped):", floor))
    median = statistics.median(real)
    verdict = "met" if median <= TARGET_MS else "NOT met"
    print(f"  target: median <= {TARGET_MS:g} ms, store writes included -> {verdict}")
    print(f"  the store's share: {median - statistics.median(floor):.2f} ms per step "
          "(a step: the model's turn and one tool call; 2 transactions: its thinking with the call, "
          "then the result with its audit row)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.steps))
