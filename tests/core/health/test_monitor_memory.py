"""Incidents and memory: a failure like an earlier one is met with what fixed it then, and the
daily report names what keeps coming back. Real store, agent, gate, ChromaDB and embeddings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.app import Services
from core.health.checks import DiskCheck
from core.health.daily import DailyAnalysis
from core.health.incidents import IncidentBook
from core.health.metrics import MetricsSnapshot
from core.health.monitor import HealthMonitor
from core.health.outlets import Destination
from tests.core.health.test_monitor import Disk, T
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.recording import CHANNEL, RecordingAdapter


@pytest.mark.asyncio
async def test_a_similar_failure_recalls_the_past_fix_and_the_daily_report_names_recurrences(
    services: Services, fake_ollama: FakeOllama, workspace: Path, tmp_path: Path
) -> None:
    assert services.memory is not None, "memory is on by default"
    slack = RecordingAdapter(services.agent, services.gate, platform="slack")
    big = workspace / "huge.log"

    async def probe() -> MetricsSnapshot:  # /var is full while the file is there
        return await Disk(97.0 if big.exists() else 41.0).read()

    monitor = HealthMonitor(
        book=IncidentBook(services.store, host="box"),
        checks=[DiskCheck(90)],
        probe=probe,
        destinations=[Destination(slack, CHANNEL["slack"])],
        clock=lambda: T + 10_000,
        memory=services.memory,
    )

    # The first time: the model removes the file (approved), the re-check passes.
    big.write_bytes(b"x" * 4096)
    remove = {"name": "run_command", "arguments": {"command": f"rm {big}"}}
    fake_ollama.script(
        Reply(tool_calls=[remove]),
        Reply(content="huge.log filled /var; removing it freed the space."),
    )
    await monitor.run_pass(now=T)
    await monitor.drain()
    first = slack.thread(slack.reports[0].ref)
    assert not any("Similar past incidents" in line for line in first)  # nothing to recall yet
    assert not big.exists()

    # Hours later the same failure: the thread and the model hear what fixed it last time.
    big.write_bytes(b"x" * 4096)
    fake_ollama.script(Reply(content="Same as before: huge.log again."))
    await monitor.run_pass(now=T + 6 * 3600)
    await monitor.drain()
    assert len(slack.reports) == 2
    second = slack.thread(slack.reports[1].ref)
    recalled = next(line for line in second if "Similar past incidents" in line)
    assert f"rm {big}" in recalled and "held" in recalled
    prompt = fake_ollama.chat_requests[-1]["messages"][-1]["content"]
    assert "Similar past incidents" in prompt and f"rm {big}" in prompt

    # The daily analysis mentions the incident that recurred (memories carry wall-clock times).
    daily = DailyAnalysis(
        db_url=services.settings.db_url, out_dir=tmp_path / "reports", llm=None, notebook=None,
        memory=services.memory,
    )  # fmt: skip
    report = await daily.build(end=time.time())
    assert "Recurring incidents" in report.text and "/var" in report.text


@pytest.mark.asyncio
async def test_a_recovery_on_its_own_is_not_remembered_as_a_fix_that_held(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    assert services.memory is not None
    slack = RecordingAdapter(services.agent, services.gate, platform="slack")
    big = workspace / "huge.log"

    async def probe() -> MetricsSnapshot:
        return await Disk(97.0 if big.exists() else 41.0).read()

    monitor = HealthMonitor(
        book=IncidentBook(services.store, host="box"), checks=[DiskCheck(90)], probe=probe,
        destinations=[Destination(slack, CHANNEL["slack"])], memory=services.memory,
    )  # fmt: skip

    # First: an approved fix that held.
    big.write_bytes(b"x" * 4096)
    fake_ollama.script(
        Reply(tool_calls=[{"name": "run_command", "arguments": {"command": f"rm {big}"}}]),
        Reply(content="huge.log filled /var; removing it freed the space."),
    )
    monitor.clock = lambda: T + 600
    await monitor.run_pass(now=T)
    await monitor.drain()
    # Later the same failure; nobody fixes it, and it goes away by itself an hour on.
    big.write_bytes(b"x" * 4096)
    fake_ollama.script(Reply(content="Something writes to /var again; watch it."))
    await monitor.run_pass(now=T + 6 * 3600)
    await monitor.drain()
    big.unlink()
    closed = await monitor.run_pass(now=T + 7 * 3600)
    assert [i.resolution for i in closed.closed] == ["recovered"]

    # The third time, the thread recalls both: the fix that held first, the recovery as a recovery.
    big.write_bytes(b"x" * 4096)
    fake_ollama.script(Reply(content="Again."))
    await monitor.run_pass(now=T + 12 * 3600)
    await monitor.drain()
    recalled = next(line for line in slack.thread(slack.reports[-1].ref) if "Similar past incidents" in line)
    lines = recalled.splitlines()[1:]
    assert f"fixed by run rm {big}" in lines[0] and "the fix held" in lines[0]
    on_its_own = [line for line in lines if "recovered on its own" in line]
    assert on_its_own and all("the fix held" not in line for line in on_its_own)
