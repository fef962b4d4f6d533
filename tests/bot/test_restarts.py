"""Restarts as they happen: the real `orchestrator` process killed (SIGKILL) or stopped (SIGTERM)
mid-run, then started again, against the Ollama and Slack stand-ins.

What the user sees (the thread, the console) and what is stored (runs, approvals, the
scheduler lease) after each fault. The Slack bot runs in HTTP mode: events are signed and
POSTed to it like Slack does; its Web API calls go to FakeSlack, running in this test's loop.
The tests marked `on_each_database` run on SQLite, then on the session's PostgreSQL (DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import col, select

from core.health.lock import LeaseLock
from core.instance import OwnerId
from core.runs import RESTARTED, STOPPED
from core.store import Store
from core.store.models import Approval, ApprovalStatus, Run, RunStatus
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import (
    BOT_ID,
    BOT_USER_ID,
    FakeSlack,
    app_mention,
    event_callback,
    reaction_added,
    signed_headers,
)
from tests.support import waiting
from tests.support.postgres import on_each_database

SECRET = "s3cret"
CHANNEL = "C1"
ADMIN = "UADMIN"  # approver, and so allowed to ask
WAIT = 60.0  # generous: a bot process starts in a few seconds on a busy machine
_ts = itertools.count(1)


until = partial(waiting.until, timeout=WAIT, interval=0.05)


@dataclass
class Bot:
    """One `orchestrator` process; its stderr (the log) is collected as it comes."""

    proc: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return "".join(self.log)

    async def port(self) -> int:
        found = await until(
            lambda: re.search(r"HTTP mode on http://[^:]+:(\d+)/", self.text()) or self.proc.returncode is not None,
            what="Slack HTTP",
            log=self.text,
        )
        assert isinstance(found, re.Match), self.text()
        return int(found.group(1))

    async def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), WAIT)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, WAIT)
        return code


async def start(args: list[str], env: dict[str, str], *, stdin: bool = False) -> Bot:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, env=env, cwd=env["_CWD"],
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    bot = Bot(proc)

    async def read() -> None:
        async def lines(stream: asyncio.StreamReader | None) -> None:
            assert stream is not None
            while chunk := await stream.read(4096):  # a prompt ends without a newline
                bot.log.append(chunk.decode(errors="replace"))

        await asyncio.gather(lines(proc.stdout), lines(proc.stderr))

    bot.reader = asyncio.create_task(read())
    return bot


@pytest.fixture
def env(tmp_path: Path, fake_ollama: FakeOllama, database_url: str) -> dict[str, str]:
    root = tmp_path / "ws"
    root.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "SLACK_", "DISCORD_"))}
    env = base | {
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "OLLAMA_HOST": fake_ollama.url,
        "ORCHESTRATOR_FILE_ROOTS": str(root),
        "ORCHESTRATOR_CONSOLE_APPROVERS": "cli-user",
        "ORCHESTRATOR_MEMORY": "false",
        "ORCHESTRATOR_SCHEDULER": "false",
        # these tests read the edited progress message; the streamed runs have their own tests
        # (tests/adapters/test_live_slack.py)
        "ORCHESTRATOR_SLACK_STREAMING": "off",
        "USER": "cli-user",
        "LOGNAME": "cli-user",
        "_CWD": str(tmp_path),
    }
    if database_url:
        env["DATABASE_URL"] = database_url  # PostgreSQL; otherwise SQLite under the data directory
    return env


@pytest_asyncio.fixture
async def slack(env: dict[str, str]) -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        env.update(
            SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=fake.api_url,
            SLACK_HTTP_PORT="0", SLACK_APPROVERS=ADMIN,
        )  # fmt: skip
        yield fake


@pytest_asyncio.fixture
async def bots() -> AsyncIterator[list[Bot]]:
    """Every bot a test starts; those still running at the end are killed."""
    started: list[Bot] = []
    yield started
    for bot in started:
        if bot.proc.returncode is None:
            bot.proc.kill()
            await bot.proc.wait()


def store_of(env: dict[str, str]) -> Store:
    return Store(env.get("DATABASE_URL") or f"sqlite:///{Path(env['ORCHESTRATOR_DATA_DIR']) / 'orchestrator.db'}")


def runs(env: dict[str, str]) -> list[Run]:
    store = store_of(env)
    try:
        return store.run_sync(lambda s: list(s.exec(select(Run).order_by(col(Run.id))).all()))
    finally:
        store.engine.dispose()


def approvals(env: dict[str, str]) -> list[Approval]:
    store = store_of(env)
    try:
        return store.run_sync(lambda s: list(s.exec(select(Approval)).all()))
    finally:
        store.engine.dispose()


async def mention(port: int, fake: FakeSlack, text: str) -> str:
    """ADMIN mentions the bot in CHANNEL, as Slack delivers it; returns the message ts (the thread)."""
    ts = f"1700009000.{next(_ts):06d}"
    body = f"<@{BOT_USER_ID}> {text}"
    fake.add_message(CHANNEL, body, user=ADMIN, ts=ts)
    await post_event(port, app_mention(ADMIN, CHANNEL, body, ts))
    return ts


async def post_event(port: int, event: dict[str, Any]) -> None:
    raw = json.dumps(event_callback(event))
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/slack/events"
        async with http.post(url, data=raw, headers=signed_headers(raw, SECRET)) as response:
            assert response.status == 200, await response.text()


def said(fake: FakeSlack, thread: str, text: str) -> Any:
    return next((m for m in fake.thread(CHANNEL, thread) if m.bot_id == BOT_ID and text in m.text), None)


def write_motd() -> Reply:
    return Reply(tool_calls=[{"name": "write_file", "arguments": {"path": "motd", "content": "hello\n"}}])


# ---- the console ------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_sigterm_during_ask_says_so_and_the_run_ends_interrupted(
    env: dict[str, str], fake_ollama: FakeOllama, bots: list[Bot]
) -> None:
    fake_ollama.stall_next(600)  # the model is slow: the question is in flight
    bot = await start(["ask", "how full is the disk?"], env)
    bots.append(bot)
    await until(lambda: fake_ollama.chat_requests, what="the question to reach the model")

    assert await bot.stop(signal.SIGTERM) == 128 + signal.SIGTERM
    assert STOPPED in bot.text() and "Traceback" not in bot.text()
    [run] = runs(env)
    assert (run.status, run.error) == (RunStatus.INTERRUPTED, STOPPED)


@pytest.mark.asyncio
async def test_sigterm_at_the_approval_prompt_gives_up_without_denying(
    env: dict[str, str], fake_ollama: FakeOllama, bots: list[Bot]
) -> None:
    fake_ollama.script(write_motd())
    bot = await start(["ask", "write a motd"], env, stdin=True)  # stdin stays open: nobody answers
    bots.append(bot)
    await until(lambda: "Approve? [y/N]" in bot.text(), what="the approval prompt")

    assert await bot.stop(signal.SIGTERM) == 128 + signal.SIGTERM
    assert STOPPED in bot.text()
    [approval] = approvals(env)
    assert approval.status == ApprovalStatus.EXPIRED and approval.decided_by == "restart"
    assert not (Path(env["ORCHESTRATOR_FILE_ROOTS"]) / "motd").exists()
    assert runs(env)[0].status == RunStatus.INTERRUPTED


@pytest.mark.asyncio
async def test_sigkill_during_ask_is_told_at_the_next_start(
    env: dict[str, str], fake_ollama: FakeOllama, bots: list[Bot]
) -> None:
    fake_ollama.stall_next(600)
    bot = await start(["ask", "how full is the disk?"], env)
    bots.append(bot)
    await until(lambda: fake_ollama.chat_requests, what="the question to reach the model")
    await bot.stop(signal.SIGKILL)
    assert runs(env)[0].status == RunStatus.RUNNING  # nothing could finish it

    fake_ollama.release()
    fake_ollama.script(Reply(content="Plenty of room."))
    again = await start(["ask", "and now?"], env)
    bots.append(again)
    assert await asyncio.wait_for(again.proc.wait(), WAIT) == 0
    await asyncio.wait_for(again.reader, WAIT)  # type: ignore[arg-type]
    assert f"Your question “how full is the disk?” (run #1) was interrupted: {RESTARTED}" in again.text()
    first, second = runs(env)
    assert (first.status, first.error) == (RunStatus.INTERRUPTED, RESTARTED)
    assert second.status == RunStatus.ANSWERED


# ---- Slack --------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_sigterm_mid_run_tells_the_slack_thread_before_exiting(
    env: dict[str, str], slack: FakeSlack, fake_ollama: FakeOllama, bots: list[Bot]
) -> None:
    fake_ollama.script(Reply(tool_calls=[{"name": "disk_usage", "arguments": {}}]), write_motd())
    bot = await start(["run", "slack"], env)
    bots.append(bot)
    thread = await mention(await bot.port(), slack, "write a motd")
    await until(lambda: said(slack, thread, "Approval needed"), what="the approval message")

    assert await bot.stop(signal.SIGTERM) == 0
    line = said(slack, thread, STOPPED)
    assert line is not None and not line.text.startswith("Sorry"), bot.text()  # not a failure of the question
    progress = said(slack, thread, "Working on it")
    assert progress is not None and f"⏹️ {STOPPED}" in progress.text
    [run] = runs(env)
    assert (run.status, run.error) == (RunStatus.INTERRUPTED, STOPPED)
    [approval] = approvals(env)
    assert approval.status == ApprovalStatus.EXPIRED  # nobody can approve what will never run


@pytest.mark.asyncio
async def test_sigkill_mid_run_is_told_in_the_slack_thread_after_the_restart(
    env: dict[str, str], slack: FakeSlack, fake_ollama: FakeOllama, bots: list[Bot]
) -> None:
    fake_ollama.stall_next(600)
    bot = await start(["run", "slack"], env)
    bots.append(bot)
    thread = await mention(await bot.port(), slack, "how full is the disk?")
    await until(lambda: fake_ollama.chat_requests, what="the question to reach the model")
    await bot.stop(signal.SIGKILL)
    assert said(slack, thread, "ask again") is None and runs(env)[0].status == RunStatus.RUNNING

    restarted = await start(["run", "slack"], env)
    bots.append(restarted)
    await until(lambda: said(slack, thread, RESTARTED), what="the restart line in the thread")
    [run] = runs(env)
    assert (run.status, run.error) == (RunStatus.INTERRUPTED, RESTARTED)
    await restarted.stop(signal.SIGTERM)


@pytest.mark.asyncio
async def test_an_approval_left_by_a_container_of_another_name_expires_with_a_message(
    env: dict[str, str], slack: FakeSlack, fake_ollama: FakeOllama, bots: list[Bot]
) -> None:
    """The container is recreated (another hostname, the same data volume) within the approval
    lease: a ✅ must not record `approved` while nothing runs."""
    fake_ollama.script(write_motd())
    old = await start(["run", "slack"], env)
    bots.append(old)
    thread = await mention(await old.port(), slack, "write a motd")
    approval_message = await until(lambda: said(slack, thread, "Approval needed"), what="the approval message")
    # Killed once the thread is quiet (its ✅ / ❌ are on), so no post is half-sent at the time.
    await until(lambda: "x" in slack.reactions(CHANNEL, approval_message.ts), what="the approval's reactions")
    await old.stop(signal.SIGKILL)
    # What the old container wrote carries its hostname; the new one has another.
    store = store_of(env)

    def rename(s: Any) -> None:
        row = s.get(Approval, 1)
        owner = OwnerId.parse(row.owner)
        assert owner is not None
        row.owner = str(OwnerId("old-container", owner.pid, owner.nonce, owner.instance))
        s.add(row)
        s.commit()

    store.run_sync(rename)
    store.engine.dispose()

    new = await start(["run", "slack"], env)  # seconds later: the 30 s heartbeat lease has not run out
    bots.append(new)
    port = await new.port()
    await until(lambda: said(slack, thread, "expired: the bot restarted"), what="the expiry notice", log=new.text)
    await post_event(port, reaction_added(ADMIN, "white_check_mark", CHANNEL, approval_message.ts))
    await until(lambda: said(slack, thread, "is already expired"), what="the reply to the late ✅")
    [approval] = approvals(env)
    assert approval.status == ApprovalStatus.EXPIRED
    assert not (Path(env["ORCHESTRATOR_FILE_ROOTS"]) / "motd").exists()
    store = store_of(env)
    assert "approved" not in [e.action for e in store.audit_entries_sync()]
    store.engine.dispose()
    await new.stop(signal.SIGTERM)


# ---- the scheduler lease -------------------------------------------------------------------------
@on_each_database
@pytest.mark.asyncio
async def test_the_scheduler_lease_of_a_killed_process_is_taken_over_at_once(
    env: dict[str, str], slack: FakeSlack, bots: list[Bot]
) -> None:
    env.update(ORCHESTRATOR_SCHEDULER="true", ORCHESTRATOR_SCHEDULER_LEASE="3600",
               ORCHESTRATOR_HEALTH_INTERVAL="3600", ORCHESTRATOR_METRICS_INTERVAL="3600")  # fmt: skip

    def holder() -> str:
        if "DATABASE_URL" not in env and not (Path(env["ORCHESTRATOR_DATA_DIR"]) / "orchestrator.db").exists():
            return ""
        store = store_of(env)
        try:
            row = LeaseLock(store).holder_sync()
        except (OperationalError, ProgrammingError):  # the bot is still creating its tables
            return ""
        finally:
            store.engine.dispose()
        return row.owner if row is not None and row.expires_at > 0 else ""

    first = await start(["run", "slack"], env)
    bots.append(first)
    await until(lambda: f":{first.pid}:" in holder(), what="the first process to hold the lease")
    await first.stop(signal.SIGKILL)  # its lease still has an hour to run

    jobs = await start(["jobs"], env)
    await asyncio.wait_for(jobs.proc.wait(), WAIT)
    await asyncio.wait_for(jobs.reader, WAIT)  # type: ignore[arg-type]
    assert f"pid {first.pid} on" in jobs.text() and "is gone" in jobs.text() and "running in" not in jobs.text()

    second = await start(["run", "slack"], env)
    bots.append(second)
    await until(lambda: f":{second.pid}:" in holder(), what="the second process to take the lease over")
    listed = await start(["jobs", "--json"], env)
    await asyncio.wait_for(listed.proc.wait(), WAIT)
    await asyncio.wait_for(listed.reader, WAIT)  # type: ignore[arg-type]
    scheduler = json.loads(listed.text())["scheduler"]
    assert f":{second.pid}:" in scheduler["owner"] and scheduler["active"] and not scheduler["holder_gone"]
    with contextlib.suppress(ProcessLookupError):
        await second.stop(signal.SIGTERM)
