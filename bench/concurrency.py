"""N conversations at once, each running a real `sleep 1` through run_command (in the sandbox).

If nothing blocks the event loop the wall time stays close to the floor measured in the
same run: N bare asyncio subprocesses of `sleep 1` started at once. A second floor shows
what the sandbox itself costs: the same N commands started through `Sandbox.run` directly,
without the agent. Target: at 400 conversations, wall <= 1.3x the bare floor.

    .venv/bin/python bench/concurrency.py [--conversations 50 200 400] [--seconds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import make_agent
from core.events import Answer, Request, ToolResult
from core.llm import LLMToolCall
from core.sandbox import Sandbox, SandboxConfig
from tests.support.models import steps_then_answer

TARGET_RATIO = 1.3


async def bare_floor(n: int, seconds: float) -> float:
    async def one() -> None:
        proc = await asyncio.create_subprocess_exec("sleep", f"{seconds:g}")
        await proc.wait()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - start


async def sandbox_floor(n: int, seconds: float, root: Path) -> float:
    sandbox = Sandbox(SandboxConfig(file_roots=(root,)))
    await sandbox.probe()
    start = time.perf_counter()
    await asyncio.gather(
        *(sandbox.run(["/usr/bin/sleep", f"{seconds:g}"], cwd=root, timeout=60, output_cap=65536) for _ in range(n))
    )
    return time.perf_counter() - start


async def through_agent(n: int, seconds: float) -> tuple[float, int, Path]:
    llm = steps_then_answer(lambda i: LLMToolCall("run_command", {"command": f"sleep {seconds:g}"}), 1)
    agent, store, tmp = await make_agent(llm, extra_read=["sleep"])

    async def one(k: int) -> bool:
        request = Request(platform="bench", user_id="u", channel="c", thread=f"t{k}", text="sleep")
        events = [ev async for ev in agent.run(request)]
        ok = any(isinstance(e, ToolResult) and e.ok for e in events)
        return ok and isinstance(events[-1], Answer)

    start = time.perf_counter()
    results = await asyncio.gather(*(one(k) for k in range(n)))
    wall = time.perf_counter() - start
    await store.close()
    return wall, sum(results), tmp / "ws"


async def main(counts: list[int], seconds: float) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8 * max(counts))), hard))
    print(
        f"conversations at once, each running `sleep {seconds:g}` through run_command (load {os.getloadavg()[0]:.2f})"
    )
    failed = 0
    for n in counts:
        wall, completed, root = await through_agent(n, seconds)
        bare = await bare_floor(n, seconds)
        boxed = await sandbox_floor(n, seconds, root)
        ratio = wall / bare
        verdict = (
            ""
            if n != max(counts)
            else f"   target <= {TARGET_RATIO}x -> {'met' if ratio <= TARGET_RATIO else 'NOT met'}"
        )
        print(f"  {n:4d}: wall {wall:5.2f} s   bare floor {bare:5.2f} s   sandbox floor {boxed:5.2f} s   "
              f"{ratio:.2f}x the bare floor   completed {completed}/{n}{verdict}")  # fmt: skip
        failed += completed != n or (n == max(counts) and ratio > TARGET_RATIO)
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, nargs="+", default=[50, 200, 400])
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.conversations, args.seconds)))
