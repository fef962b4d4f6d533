"""Start-up as a user sees it: whole `orchestrator` processes, median of N after a warm-up.

- `orchestrator --help`: wall time to exit;
- `orchestrator ask`: from the process start to its first /api/chat request at the Ollama
  stand-in, and the peak RSS of that process (memory off: an ask that never touches memory);
  the same with the memory on (the default) for comparison;
- `orchestrator run slack`: from the process start to "HTTP mode on http://…" in its log,
  against the Slack stand-in (defaults: memory and scheduler on), and with both off.

Each figure is printed next to its target and the floor: a bare `python -c pass` process.
The processes may write their bytecode, as an installed bot does (the warm-up run writes it).

    .venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import FakeSlack

HELP_TARGET_S = 0.5
FIRST_REQUEST_TARGET_S = 1.0
ASK_RSS_TARGET_MIB = 150
SLACK_READY_TARGET_S = 2.0
READY = b"HTTP mode on http://"
TIMEOUT = 120.0


class TimedOllama(FakeOllama):
    """The Ollama stand-in, noting when (time.time()) each /api/chat request arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.chat_arrivals: list[float] = []

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.chat_arrivals.append(time.time())
        return await super()._chat(request)


def command() -> list[str]:
    """The console script a user runs, or `python -m bot` where it is not installed."""
    script = Path(sys.executable).parent / "orchestrator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


def environment(data: Path, ollama: FakeOllama, **extra: str) -> dict[str, str]:
    """This shell's environment without the bot's own settings, pointed at the stand-ins."""
    drop = ("ORCHESTRATOR_", "SLACK_", "DISCORD_", "OLLAMA_", "CHROMA_", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    (data / "ws").mkdir(parents=True, exist_ok=True)
    return env | {
        "ORCHESTRATOR_DATA_DIR": str(data / "data"),
        "ORCHESTRATOR_FILE_ROOTS": str(data / "ws"),
        "ORCHESTRATOR_CONSOLE_APPROVERS": "bench",
        "ORCHESTRATOR_MEMORY_EXTRACT": "off",  # one model request per question
        "OLLAMA_HOST": ollama.url,
        "USER": "bench",
        **extra,
    }


# Peak RSS is read by a small launcher: a child forked from this (large) process would count this
# process's pages in its own ru_maxrss until its exec. The launcher notes when it starts the command,
# waits for it, and writes "<start time> <peak RSS in KiB>" to the file it is given.
LAUNCHER = """
import os, sys, time
started = time.time()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{started} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(argv: list[str], env: dict[str, str] | None, cwd: Path) -> tuple[float, float, int]:
    """(started at, wall seconds, peak RSS in KiB) of one process; its output goes nowhere."""
    figures = cwd / "launcher.out"
    begin = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(figures), *argv],
        env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    wall = time.perf_counter() - begin
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')[-2000:]}")
    started, rss = figures.read_text().split()
    return float(started), wall, int(rss)


def wall_of(argv: list[str], cwd: Path) -> float:
    begin = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - begin


def after_warm_up(runs: int, once: Callable[[], Any]) -> list[Any]:
    once()  # warm-up: the page cache, the database and its migrations, the memory store
    return [once() for _ in range(runs)]


def line(what: str, value: float, unit: str, target: float | None, floor: float) -> str:
    mark = "" if target is None else ("  ok" if value <= target else "  MISSED")
    goal = f"target ≤ {target:g} {unit}" if target is not None else "no target"
    return f"  {what:<50} {value:8.3f} {unit:<4} ({goal}; floor {floor:.3f} {unit}){mark}"


def bench_help(runs: int, cwd: Path) -> float:
    return statistics.median(after_warm_up(runs, lambda: wall_of([*command(), "--help"], cwd)))


def bench_ask(runs: int, tmp: Path, *, memory: bool) -> tuple[float, float]:
    """(median seconds to the first model request, median peak RSS in MiB)."""
    with TimedOllama() as ollama:
        ollama.default_reply = Reply(content="The disk is fine.")
        env = environment(tmp / f"ask-memory-{memory}", ollama, ORCHESTRATOR_MEMORY="on" if memory else "off")

        def once() -> tuple[float, float]:
            ollama.chat_arrivals.clear()
            started, _, rss = run_child([*command(), "ask", "how full is the disk?"], env, tmp)
            return ollama.chat_arrivals[0] - started, rss / 1024

        samples = after_warm_up(runs, once)
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


async def slack_ready_once(env: dict[str, str], cwd: Path) -> float:
    begin = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *command(), "run", "slack", env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    log = b""
    try:
        async with asyncio.timeout(TIMEOUT):
            while READY not in log:
                chunk = await proc.stderr.read(4096)
                if not chunk:
                    raise SystemExit(f"orchestrator run slack exited before it was ready:\n{log.decode()[-2000:]}")
                log += chunk
        ready = time.perf_counter() - begin
        proc.send_signal(signal.SIGTERM)
        await proc.stderr.read()
        await proc.wait()
        return ready
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def bench_slack(runs: int, tmp: Path, *, defaults: bool) -> float:
    with TimedOllama() as ollama:
        async with FakeSlack() as slack:
            extra = {
                "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": "bench-secret", "SLACK_API_URL": slack.api_url,
                "SLACK_HTTP_PORT": "0", "SLACK_APPROVERS": "UBENCH",
            }  # fmt: skip
            if not defaults:
                extra |= {"ORCHESTRATOR_MEMORY": "off", "ORCHESTRATOR_SCHEDULER": "off"}
            env = environment(tmp / f"slack-defaults-{defaults}", ollama, **extra)
            samples = [await slack_ready_once(env, tmp) for _ in range(runs + 1)][1:]  # the first is the warm-up
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each, after one warm-up (default 5)")
    args = parser.parse_args()
    runs = args.runs
    # A user's install keeps the compiled bytecode; a shell that forbids writing it (some
    # containers set PYTHONDONTWRITEBYTECODE) would measure compiling ~90 modules on every start.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="orch-startup-") as name:
        tmp = Path(name)
        bare = [sys.executable, "-c", "pass"]
        floor_s = statistics.median(after_warm_up(runs, lambda: wall_of(bare, tmp)))
        floor_mib = (
            statistics.median(rss for _, _, rss in after_warm_up(runs, lambda: run_child(bare, None, tmp))) / 1024
        )
        help_s = bench_help(runs, tmp)
        first_off, rss_off = bench_ask(runs, tmp, memory=False)
        first_on, rss_on = bench_ask(runs, tmp, memory=True)
        ready_default = asyncio.run(bench_slack(runs, tmp, defaults=True))
        ready_lean = asyncio.run(bench_slack(runs, tmp, defaults=False))
    load_after = os.getloadavg()
    print(f"start-up, whole processes: median of {runs} after a warm-up ({' '.join(command())}; "
          f"{os.cpu_count()} cores; load {load_before[0]:.2f} before, {load_after[0]:.2f} after)")  # fmt: skip
    print("  floor: a bare `python -c pass` process")
    print(line("orchestrator --help", help_s, "s", HELP_TARGET_S, floor_s))
    print(line("ask → first model request (memory off)", first_off, "s", FIRST_REQUEST_TARGET_S, floor_s))
    print(line("ask peak RSS (memory off)", rss_off, "MiB", ASK_RSS_TARGET_MIB, floor_mib))
    print(line("ask → first model request (memory on)", first_on, "s", None, floor_s))
    print(line("ask peak RSS (memory on)", rss_on, "MiB", None, floor_mib))
    print(line("run slack → ready (defaults: memory, scheduler)", ready_default, "s", SLACK_READY_TARGET_S, floor_s))
    print(line("run slack → ready (memory and scheduler off)", ready_lean, "s", None, floor_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
