"""`orchestrator run scheduler` (and `run all` with no platform) as a real process, against the
Ollama and Slack stand-ins: the metrics and incident rows it writes, the report lines it logs, the
reports it posts without serving, and its /healthz and /metrics scraped over HTTP. Then the
post-only outlet those reports go through, in this process.

A disk threshold of 0.01 % makes the disk check fail on any machine: a failing check is what
opens an incident, the report the scheduler logs and posts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from bot.cli import RUN_ALL_ALONE
from bot.posting import PostingOutlet
from core.events import Event, Report, Request
from core.health.lock import LeaseLock
from core.health.models import Incident, MetricSample
from core.store import Store
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import BOT_ID, FakeSlack
from tests.support import waiting

WAIT = 60.0  # generous: a bot process starts in a few seconds on a busy machine
CHANNEL = "C0REPORTS"


# A bot process starts in a few seconds on a busy machine: every wait here is WAIT long.
until = partial(waiting.until, timeout=WAIT, interval=0.1)
until_async = partial(waiting.until_async, timeout=WAIT, interval=0.2)


@dataclass
class Bot:
    proc: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def text(self) -> str:
        return "".join(self.log)

    def listening(self) -> list[Any]:
        return [c for c in psutil.Process(self.proc.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), WAIT)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, WAIT)
        return code


@pytest_asyncio.fixture
async def bots() -> AsyncIterator[Callable[..., Any]]:
    started: list[Bot] = []

    async def start(*args: str, env: dict[str, str]) -> Bot:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, env=env, cwd=env["_CWD"], stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        bot = Bot(proc)

        async def read(stream: asyncio.StreamReader | None) -> None:
            assert stream is not None
            while chunk := await stream.read(4096):
                bot.log.append(chunk.decode(errors="replace"))

        async def both() -> None:
            await asyncio.gather(read(proc.stdout), read(proc.stderr))

        bot.reader = asyncio.create_task(both())
        started.append(bot)
        return bot

    yield start
    for bot in started:
        if bot.proc.returncode is None:
            bot.proc.kill()
            await bot.proc.wait()


@pytest.fixture
def env(tmp_path: Path, fake_ollama: FakeOllama, database_url: str) -> dict[str, str]:
    root = tmp_path / "ws"
    root.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "SLACK_", "DISCORD_"))}
    env = base | {
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "OLLAMA_HOST": fake_ollama.url,
        "ORCHESTRATOR_FILE_ROOTS": str(root),
        "ORCHESTRATOR_MEMORY": "false",
        "ORCHESTRATOR_METRICS_INTERVAL": "1",
        "ORCHESTRATOR_HEALTH_INTERVAL": "1",
        "ORCHESTRATOR_DISK_THRESHOLD": "0.01",
        "ORCHESTRATOR_DOCKER_CHECK": "off",
        "ORCHESTRATOR_SYSTEMD_CHECK": "off",
        "_CWD": str(tmp_path),
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def store_of(env: dict[str, str]) -> Store:
    return Store(env.get("DATABASE_URL") or f"sqlite:///{Path(env['ORCHESTRATOR_DATA_DIR']) / 'orchestrator.db'}")


def rows(env: dict[str, str], table: type[Any]) -> list[Any]:
    store = store_of(env)
    try:
        return store.run_sync(lambda s: list(s.exec(select(table)).all()))
    finally:
        store.engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# ---- the real process -----------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_run_all_with_no_platform_runs_the_scheduler_alone(env: dict[str, str], bots: Any) -> None:
    bot = await bots("run", "all", env=env)
    await until(lambda: "incident report: " in bot.text(), what="the incident's report line", log=bot.text)
    text = bot.text()
    assert RUN_ALL_ALONE in text  # said once, in one line
    assert "reports go to the log only (no reports channel is set)" in text
    [line] = [x for x in text.splitlines() if "incident report: " in x]
    assert " WARNING bot.scheduler: incident report: " in line and "disk:" in line
    assert re.search(r"INFO bot\.scheduler: {5}.* % full", text), text  # the report's text, at INFO
    [sample, *_] = await until(lambda: rows(env, MetricSample), what="a metrics sample in the database", log=bot.text)
    assert sample.cpu_cores >= 1
    assert any(i.check_name == "disk" and i.status == "open" for i in rows(env, Incident))
    assert bot.listening() == []  # no ORCHESTRATOR_METRICS_PORT: nothing listens
    assert await bot.stop() == 0
    store = store_of(env)
    try:
        holder = LeaseLock(store).holder_sync()
    finally:
        store.engine.dispose()
    assert holder is not None and holder.expires_at == 0.0  # the lease was held, and released on the way out
    assert "Traceback" not in bot.text()


@pytest.mark.asyncio
async def test_run_scheduler_answers_healthz_and_metrics(env: dict[str, str], bots: Any) -> None:
    port = free_port()
    bot = await bots("run", "scheduler", env=env | {"ORCHESTRATOR_METRICS_PORT": str(port)})
    await until(lambda: f"serving /healthz and /metrics on http://127.0.0.1:{port}" in bot.text(),
                what="the endpoint", log=bot.text)  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    async def scheduling() -> dict[str, Any] | None:
        status, text = await get(f"{base}/healthz")
        body = json.loads(text)
        return body if status == 200 and body["scheduler"].get("this_process") else None

    body = await until_async(scheduling, what="a healthy /healthz with the lease held here", log=bot.text)
    assert body["failing"] == [] and body["adapters"] == {}
    assert body["database"]["ok"] and body["model"]["ok"]

    async def incident_seen() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        status, text = await get(f"{base}/metrics")
        assert status == 200
        found = samples(text)
        return found if found.get(("orchestrator_incidents_open", (("check", "disk"),))) == 1 else None

    found = await until_async(incident_seen, what="the open disk incident in /metrics", log=bot.text)
    assert found[("orchestrator_database_up", ())] == 1
    assert found[("orchestrator_runs_total", (("status", "answered"),))] == 0
    assert any(name == "orchestrator_health_check_ok" and dict(labels)["check"] == "disk" and v == 0
               for (name, labels), v in found.items())  # fmt: skip
    assert [c.laddr.port for c in bot.listening()] == [port]
    assert await bot.stop() == 0


@pytest.mark.asyncio
async def test_run_scheduler_healthz_is_503_naming_an_unreachable_ollama(env: dict[str, str], bots: Any) -> None:
    port = free_port()
    closed = "http://127.0.0.1:9"
    bot = await bots("run", "scheduler", env=env | {"ORCHESTRATOR_METRICS_PORT": str(port), "OLLAMA_HOST": closed})
    await until(lambda: "serving /healthz" in bot.text(), what="the endpoint", log=bot.text)
    status, text = await get(f"http://127.0.0.1:{port}/healthz")
    body = json.loads(text)
    assert status == 503
    assert body["failing"] == ["model"]
    assert f"cannot reach Ollama at {closed}" in body["model"]["detail"]
    assert body["database"]["ok"] is True
    assert await bot.stop() == 0


@pytest.mark.asyncio
async def test_run_scheduler_posts_to_a_slack_reports_channel_without_serving_slack(
    env: dict[str, str], fake_ollama: FakeOllama, bots: Any
) -> None:
    fake_ollama.script(Reply(content="Nothing to fix: the threshold is set at 0.01 %."))
    async with FakeSlack() as slack:
        env |= {
            "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s3cret", "SLACK_API_URL": slack.api_url,
            "SLACK_HTTP_PORT": "0", "SLACK_APPROVERS": "UADMIN", "ORCHESTRATOR_REPORTS_SLACK_CHANNEL": CHANNEL,
        }  # fmt: skip
        bot = await bots("run", "scheduler", env=env)

        def incident() -> Any:
            return next((m for m in slack.messages(CHANNEL) if m.thread_ts is None and "disk:" in m.text), None)

        posted = await until(incident, what="the incident in the reports channel", log=bot.text)

        def answered() -> Any:
            return next(
                (m for m in slack.thread(CHANNEL, posted.ts) if m.bot_id == BOT_ID and "Nothing to fix" in m.text),
                None,
            )

        await until(answered, what="the agent's follow-up in the incident's thread", log=bot.text)
        assert "reports go to the log and the slack channel C0REPORTS" in bot.text()
        assert "HTTP mode on" not in bot.text() and bot.listening() == []  # Slack is posted to, not served
        assert await bot.stop() == 0


# ---- the post-only outlet -------------------------------------------------------------------------
class GatewayAdapter:
    """Posts only while `serve()` runs, like the Discord adapter."""

    platform = "discord"
    posts_without_serving = False
    made: list[GatewayAdapter] = []

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.served = 0
        self.closed = 0
        self.posted: list[str] = []
        GatewayAdapter.made.append(self)

    async def serve(self) -> None:
        self.served += 1
        self.ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.ready.clear()
            self.closed += 1

    async def post_report(self, channel: str, report: Report) -> str:
        await asyncio.wait_for(self.ready.wait(), 5)
        self.posted.append(report.title)
        return f"ref-{len(self.posted)}"

    async def post_in_thread(self, channel: str, thread: str, text: str) -> str:
        await asyncio.wait_for(self.ready.wait(), 5)
        self.posted.append(text)
        return "thread-ref"

    async def announce_expired(self, approvals: Any) -> None: ...

    async def run_request(self, request: Request) -> list[Event]:
        await asyncio.wait_for(self.ready.wait(), 5)
        return []


class WebApiAdapter(GatewayAdapter):
    """Posts without serving, like the Slack adapter."""

    platform = "slack"
    posts_without_serving = True

    async def post_report(self, channel: str, report: Report) -> str:
        self.posted.append(report.title)
        return "ts"

    async def close(self) -> None:
        self.closed += 1


@pytest.mark.asyncio
async def test_an_adapter_that_needs_its_gateway_is_connected_only_while_posting() -> None:
    GatewayAdapter.made.clear()
    outlet = PostingOutlet(GatewayAdapter)
    [first] = GatewayAdapter.made
    assert first.served == 0  # made at start (a configuration mistake shows then), not connected
    report = Report(kind="daily", title="Daily report", text="all quiet")
    assert await asyncio.gather(outlet.post_report("C", report), outlet.post_in_thread("C", "t", "more")) == [
        "ref-1", "thread-ref"
    ]  # fmt: skip
    assert (first.served, first.closed) == (1, 1)  # one connection for both, closed once nothing was posting
    await outlet.post_report("C", report)
    assert len(GatewayAdapter.made) == 2 and GatewayAdapter.made[1].posted == ["Daily report"]  # a fresh one
    assert GatewayAdapter.made[1].closed == 1
    await outlet.aclose()


@pytest.mark.asyncio
async def test_an_adapter_with_a_web_api_posts_without_being_served() -> None:
    GatewayAdapter.made.clear()
    outlet = PostingOutlet(WebApiAdapter)
    await outlet.post_report("C", Report(kind="daily", title="one", text=""))
    await outlet.post_report("C", Report(kind="daily", title="two", text=""))
    [adapter] = GatewayAdapter.made
    assert adapter.posted == ["one", "two"] and adapter.served == 0
    await outlet.aclose()
    assert adapter.closed == 1


# ---- nothing to run -------------------------------------------------------------------------------
@pytest.mark.parametrize("platform", ["all", "scheduler"])
def test_with_the_scheduler_off_and_no_platform_there_is_nothing_to_run(
    platform: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    for name, val in (env | {"ORCHESTRATOR_SCHEDULER": "false"}).items():
        monkeypatch.setenv(name, val)
    monkeypatch.chdir(env["_CWD"])
    assert main(["run", platform]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"orchestrator run {platform}: ") and "the scheduler is off" in line
    assert "ORCHESTRATOR_SCHEDULER" in line
