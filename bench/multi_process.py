"""Bench: two real bot processes on one PostgreSQL, as docs/deploy.md runs several.

A private PostgreSQL (tests/support/postgres.py), the Ollama and Slack stand-ins (tests/fakes),
then two `orchestrator run slack` processes in HTTP mode, each with its own data directory (two
machines), on one fresh database, as tests/bot/test_two_bots_postgres.py starts them. It prints:

1. takeover: seconds from SIGKILL of the process holding the scheduler lease to the other one
   holding it (the lease row names it) and to its jobs starting (its log says so), once per lease
   value (the default 60 s, and a short one);
2. approval: seconds from a ✅ reaction POSTed to process B to the run waiting in process A going on
   (its next model request reaches the stand-in) and to its answer in the thread;
3. questions: N questions all sent to A, then N spread over A and B: wall time until every thread
   has its answer, and per thread how many answers there are (must be exactly 1; 0 is lost);

each with os.getloadavg() at the time.

    .venv/bin/python bench/multi_process.py [--questions 20] [--think 0.5] [--short-lease 6]
                                            [--skip-default-lease]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fakes and tests.support

from tests.bot.test_restarts import (
    ADMIN,
    CHANNEL,
    Bot,
    mention,
    post_event,
    said,
    start,
    write_motd,
)
from tests.bot.test_two_bots_postgres import lease_holder, machine
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import BOT_ID, FakeSlack, reaction_added
from tests.support.postgres import PostgresServer, start_server

DEFAULT_LEASE = 60.0  # bot/settings.py's scheduler_lease
ANSWER = "Answered."
POLL = 0.01


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


async def waited(predicate: Callable[[], Any], *, limit: float, what: str) -> float:
    """Seconds until `predicate()` is true, polled every 10 ms."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > limit:
            raise TimeoutError(f"timed out after {limit:.0f} s waiting for {what}")
        await asyncio.sleep(POLL)
    return time.monotonic() - started


class Pair:
    """Two bot processes on one fresh database of `server`."""

    def __init__(self, server: PostgresServer, slack: FakeSlack, ollama: FakeOllama, *, lease: float) -> None:
        self.server, self.slack, self.ollama, self.lease = server, slack, ollama, lease
        self.database = server.url(server.create_database())
        self.tmp = Path(tempfile.mkdtemp(prefix="orch-multi-"))
        self.bots: list[Bot] = []
        self.ports: list[int] = []

    async def start(self) -> None:
        for name in ("a", "b"):  # one after the other: the first creates the schema
            env = machine(self.tmp, name, database=self.database, slack=self.slack, ollama=self.ollama)
            env["ORCHESTRATOR_SCHEDULER_LEASE"] = f"{self.lease:g}"
            env["ORCHESTRATOR_RATE_LIMIT"] = "0"  # one person asks all N: 10 a minute would refuse most
            bot = await start(["run", "slack"], env)
            self.bots.append(bot)
            self.ports.append(await bot.port())

    def holder(self) -> Bot | None:
        owner = lease_holder(self.database)
        return next((bot for bot in self.bots if f":{bot.pid}:" in owner), None)

    async def stop(self) -> None:
        for bot in self.bots:
            if bot.proc.returncode is None:
                bot.proc.kill()
                await bot.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def takeover(pair: Pair) -> dict[str, float]:
    await waited(lambda: pair.holder() is not None, limit=120, what="a scheduler lease holder")
    holder = pair.holder()
    assert holder is not None
    other = next(bot for bot in pair.bots if bot is not holder)
    await waited(lambda: "not the scheduler" in other.text(), limit=120, what="the other bot to stand by")
    logged = other.text().count("this process runs the scheduler")
    holder.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    await holder.proc.wait()
    timeout = pair.lease * 3 + 60
    await waited(lambda: pair.holder() is other, limit=timeout, what="the takeover")
    lease = time.monotonic() - killed
    await waited(lambda: other.text().count("this process runs the scheduler") > logged, limit=timeout, what="the jobs")
    return {"lease": lease, "jobs": time.monotonic() - killed}


async def approval(pair: Pair) -> dict[str, float]:
    a_port, b_port = pair.ports
    pair.ollama.script(write_motd(), Reply(content="Written."))
    thread = await mention(a_port, pair.slack, "write a motd")
    await waited(lambda: said(pair.slack, thread, "Approval needed"), limit=60, what="the approval message")
    request = said(pair.slack, thread, "Approval needed")
    await waited(lambda: "x" in pair.slack.reactions(CHANNEL, request.ts), limit=60, what="the reactions")
    asked = len(pair.ollama.chat_requests)
    sent = time.monotonic()
    await post_event(b_port, reaction_added(ADMIN, "white_check_mark", CHANNEL, request.ts))
    posted = time.monotonic() - sent
    resumed = await waited(lambda: len(pair.ollama.chat_requests) > asked, limit=60, what="the run to go on")
    answered = await waited(lambda: said(pair.slack, thread, "Written."), limit=60, what="the answer")
    return {"post": posted, "resumed": posted + resumed, "answered": posted + resumed + answered}


def answers(slack: FakeSlack, thread: str) -> int:
    return sum(1 for m in slack.thread(CHANNEL, thread) if m.bot_id == BOT_ID and ANSWER in m.text)


async def questions(pair: Pair, n: int, *, spread: bool) -> dict[str, Any]:
    ports = [pair.ports[i % 2] if spread else pair.ports[0] for i in range(n)]
    started = time.monotonic()
    threads = await asyncio.gather(*(mention(port, pair.slack, f"question {i}") for i, port in enumerate(ports)))
    try:
        await waited(lambda: all(answers(pair.slack, t) for t in threads), limit=300, what="every answer")
    except TimeoutError:
        pass  # counted below as lost
    wall = time.monotonic() - started
    await asyncio.sleep(2)  # a duplicate would come after the first answer
    counts = [answers(pair.slack, t) for t in threads]
    return {"wall": wall, "lost": counts.count(0), "twice": sum(1 for c in counts if c > 1), "n": n}


async def main(args: argparse.Namespace) -> None:
    server = start_server()
    if isinstance(server, str):
        raise SystemExit(server)
    print(f"PostgreSQL {server.version} on {server.host}:{server.port}; {load()}")
    ollama = FakeOllama().start()
    ollama.default_reply = Reply(content=ANSWER)
    ollama.delay = args.think
    try:
        async with FakeSlack() as slack:
            pair = Pair(server, slack, ollama, lease=args.short_lease)
            try:
                await pair.start()
                r = await approval(pair)
                print(
                    f"approval: ✅ to B → run in A asks the model again {r['resumed']:.3f} s, answer in the "
                    f"thread {r['answered']:.3f} s (the POST itself {r['post']:.3f} s); {load()}"
                )
                for spread in (False, True):
                    q = await questions(pair, args.questions, spread=spread)
                    where = "spread over A and B" if spread else "all to A"
                    print(
                        f"questions: {q['n']} {where}: all answered in {q['wall']:.2f} s, lost {q['lost']}, "
                        f"answered more than once {q['twice']} (model think {args.think:g} s); {load()}"
                    )
                t = await takeover(pair)
                print(
                    f"takeover (lease {args.short_lease:g} s): SIGKILL → other holds the lease {t['lease']:.2f} s, "
                    f"its jobs start {t['jobs']:.2f} s; {load()}"
                )
            finally:
                await pair.stop()
            if not args.skip_default_lease:
                pair = Pair(server, slack, ollama, lease=DEFAULT_LEASE)
                try:
                    await pair.start()
                    t = await takeover(pair)
                    print(
                        f"takeover (lease {DEFAULT_LEASE:g} s, the default): SIGKILL → other holds the lease "
                        f"{t['lease']:.2f} s, its jobs start {t['jobs']:.2f} s; {load()}"
                    )
                finally:
                    await pair.stop()
    finally:
        ollama.stop()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--think", type=float, default=0.5, help="seconds the model stand-in takes per reply")
    parser.add_argument("--short-lease", type=float, default=6.0, help="ORCHESTRATOR_SCHEDULER_LEASE (at least 5)")
    parser.add_argument("--skip-default-lease", action="store_true", help="leave out the 60 s lease takeover")
    asyncio.run(main(parser.parse_args()))
