"""Two bot processes at the same time on one PostgreSQL, as docs/deploy.md runs several.

Two real `orchestrator run slack` processes, each with its own data directory (two machines),
share the session's PostgreSQL (a fresh database) and serve Slack in HTTP mode on their own ports,
as behind a load balancer. Exactly one runs the scheduler; an approval a run on one process asks
for is granted by a ✅ that Slack delivers to the other; when the scheduler's process stops, the
other takes the scheduler over.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import select

from core.health.lock import LeaseLock
from core.store import Store
from core.store.models import Approval, ApprovalStatus
from tests.bot.test_restarts import (
    ADMIN,
    CHANNEL,
    SECRET,
    Bot,
    mention,
    post_event,
    said,
    start,
    until,
    write_motd,
)
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import FakeSlack, reaction_added

pytestmark = pytest.mark.postgres

LEASE = 6  # seconds: the holder renews every 2 s, the other checks as often


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def machine(tmp_path: Path, name: str, *, database: str, slack: FakeSlack, ollama: FakeOllama) -> dict[str, str]:
    """The environment of the bot on one machine: its own data directory and files, the shared database."""
    (tmp_path / name / "ws").mkdir(parents=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "SLACK_", "DISCORD_"))}
    return base | {
        "DATABASE_URL": database,
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / name / "data"),
        "ORCHESTRATOR_FILE_ROOTS": str(tmp_path / name / "ws"),
        "OLLAMA_HOST": ollama.url,
        "ORCHESTRATOR_MEMORY": "false",
        "ORCHESTRATOR_SCHEDULER": "true",
        "ORCHESTRATOR_SCHEDULER_LEASE": str(LEASE),
        "ORCHESTRATOR_HEALTH_INTERVAL": "3600",
        "ORCHESTRATOR_METRICS_INTERVAL": "3600",
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "SLACK_HTTP_PORT": "0",
        "SLACK_APPROVERS": ADMIN,
        "_CWD": str(tmp_path / name),
    }


@pytest_asyncio.fixture
async def bots() -> AsyncIterator[list[Bot]]:
    started: list[Bot] = []
    yield started
    for bot in started:
        if bot.proc.returncode is None:
            bot.proc.kill()
            await bot.proc.wait()


def lease_holder(database: str) -> str:
    store = Store(database)
    try:
        row = LeaseLock(store).holder_sync()
    except (OperationalError, ProgrammingError):  # the first bot is still creating the tables
        return ""
    finally:
        store.engine.dispose()
    return row.owner if row is not None and row.expires_at > 0 else ""


def the_bot_holding(bots: list[Bot], database: str) -> Bot | None:
    owner = lease_holder(database)
    return next((bot for bot in bots if f":{bot.pid}:" in owner), None)


@pytest.mark.asyncio
async def test_two_bots_run_one_scheduler_and_either_one_takes_the_approval(
    tmp_path: Path, postgres_url: str, slack: FakeSlack, fake_ollama: FakeOllama, bots: list[Bot]
) -> None:
    env_a = machine(tmp_path, "a", database=postgres_url, slack=slack, ollama=fake_ollama)
    env_b = machine(tmp_path, "b", database=postgres_url, slack=slack, ollama=fake_ollama)
    # One after the other: two bots creating the schema of an empty database at the same moment
    # is tests/core/test_store_postgres.py's case.
    a = await start(["run", "slack"], env_a)
    bots.append(a)
    port_a = await a.port()
    b = await start(["run", "slack"], env_b)
    bots.append(b)
    port_b = await b.port()

    # One scheduler: the lease row names one of them; the other says it is not the scheduler.
    holder = await until(lambda: the_bot_holding(bots, postgres_url), what="one bot to hold the scheduler lease")
    other = b if holder is a else a
    await until(lambda: "not the scheduler" in other.text(), what="the other bot to stand by", log=other.text)
    assert "this process runs the scheduler" in holder.text()
    assert "this process runs the scheduler" not in other.text()

    # A question reaches a; Slack delivers the ✅ on its approval request to b.
    fake_ollama.script(write_motd(), Reply(content="Written."))
    thread = await mention(port_a, slack, "write a motd")
    request = await until(lambda: said(slack, thread, "Approval needed"), what="the approval message", log=a.text)
    await until(lambda: "x" in slack.reactions(CHANNEL, request.ts), what="the approval's reactions")
    await post_event(port_b, reaction_added(ADMIN, "white_check_mark", CHANNEL, request.ts))
    await until(lambda: said(slack, thread, "Written."), what="the answer after the approval", log=a.text)
    assert (Path(env_a["ORCHESTRATOR_FILE_ROOTS"]) / "motd").read_text() == "hello\n"  # run where it was asked
    assert not (Path(env_b["ORCHESTRATOR_FILE_ROOTS"]) / "motd").exists()
    store = Store(postgres_url)
    try:
        [approval] = store.run_sync(lambda s: list(s.exec(select(Approval)).all()))
        assert (approval.status, approval.decided_by) == (ApprovalStatus.APPROVED, f"slack:{ADMIN}")
        approved = [e for e in store.audit_entries_sync() if e.action == "approved"]
        assert [e.decider for e in approved] == [f"slack:{ADMIN}"]  # recorded once, by the run that took it
    finally:
        store.engine.dispose()

    # The scheduler's process stops: it hands the lease over, and the other runs the jobs.
    assert await holder.stop(signal.SIGTERM) == 0
    await until(lambda: the_bot_holding(bots, postgres_url) is other, what="the other bot to take over", log=other.text)
    await until(lambda: "this process runs the scheduler" in other.text(), what="the jobs to start", log=other.text)
    await other.stop(signal.SIGTERM)
