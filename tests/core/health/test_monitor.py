"""The self-healing pass end to end: real store, real agent and approval gate, the Ollama stand-in,
and recording chat platforms. Time is the `now` each pass is given."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.app import Services
from bot.reports import build_monitor, build_recorder
from bot.settings import Settings
from core.health.checks import CheckConfig, CheckContext, CheckResult, DiskCheck, default_checks
from core.health.incidents import IncidentBook
from core.health.metrics import DiskReading, MetricsSnapshot
from core.health.models import Incident
from core.health.monitor import HealthMonitor
from core.health.outlets import Destination
from core.store import Store
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.recording import CHANNEL, RecordingAdapter

T = 1_800_000_000.0
GIB = 2**30


class Disk:
    """The filesystem reading the monitor sees, changed by the test."""

    def __init__(self, percent: float) -> None:
        self.percent = percent

    async def read(self) -> MetricsSnapshot:
        var = DiskReading("/var", self.percent, int(self.percent * GIB), 100 * GIB)
        return MetricsSnapshot(at=T, host="box", cpu_percent=3.0, cpu_cores=4, load=(0.2, 0.2, 0.2),
                               mem_percent=30.0, mem_used=3 * GIB, mem_total=10 * GIB, swap_percent=0.0,
                               disks=(var,))  # fmt: skip


@pytest.fixture
def adapters(services: Services) -> Iterator[tuple[RecordingAdapter, RecordingAdapter]]:
    yield (
        RecordingAdapter(services.agent, services.gate, platform="slack"),
        RecordingAdapter(services.agent, services.gate, platform="discord"),
    )


def make_monitor(services: Services, probe: Any, adapters: Any, checks: Any = None) -> HealthMonitor:
    return HealthMonitor(
        book=IncidentBook(services.store, host="box"),
        checks=checks or [DiskCheck(90)],
        probe=probe,
        destinations=[Destination(a, CHANNEL[a.platform]) for a in adapters],
        clock=lambda: T + 10_000,
    )


async def incidents(store: Store) -> list[Incident]:
    return await store.run(lambda s: list(s.exec(select(Incident).order_by(Incident.id)).all()))  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_failing_disk_opens_one_incident_updates_it_quietly_and_closes_it_on_recovery(
    services: Services, adapters: tuple[RecordingAdapter, RecordingAdapter], fake_ollama: FakeOllama
) -> None:
    slack, discord = adapters
    fake_ollama.script(Reply(content="/var is full of old journal files: `journalctl --vacuum-size=500M` frees it."))
    disk = Disk(97.0)
    monitor = make_monitor(services, disk.read, adapters)

    first = await monitor.run_pass(now=T)
    await monitor.drain()
    assert [i.key for i in first.opened] == ["disk:/var"]
    for chat in adapters:
        [post] = chat.reports
        assert post.channel == CHANNEL[chat.platform]
        assert "disk:/var" in post.report.title and "/var is 97.0 % full" in post.report.text  # type: ignore[union-attr]
        assert post.report.fields["used %"] == 97.0  # type: ignore[union-attr]
    # The model is asked once, in the first platform's incident thread, as the scheduler.
    assert len(fake_ollama.chat_requests) == 1
    [request] = slack.requests
    assert (request.platform, request.channel, request.thread) == ("slack", CHANNEL["slack"], slack.reports[0].ref)
    assert (request.user_id, request.user_name) == ("scheduler", "health check")
    assert "/var is 97.0 % full" in request.text and "propose" in request.text
    assert discord.requests == []
    assert slack.thread(slack.reports[0].ref)[-1] == "🏁 done"

    second = await monitor.run_pass(now=T + 300)
    await monitor.drain()
    assert [i.key for i in second.updated] == ["disk:/var"] and not second.opened
    assert len(slack.reports) == len(discord.reports) == 1
    assert len(fake_ollama.chat_requests) == 1
    [row] = await incidents(services.store)
    assert (row.status, row.failures, row.updated_at) == ("open", 2, T + 300)

    disk.percent = 62.0
    third = await monitor.run_pass(now=T + 900)
    assert [i.key for i in third.closed] == ["disk:/var"]
    for chat in adapters:
        assert chat.thread(chat.reports[0].ref)[-1] == "✅ Recovered after 15 min: /var is 62.0 % full (38.0 GiB free)"
    [row] = await incidents(services.store)
    assert (row.status, row.resolution, row.closed_at) == ("closed", "recovered", T + 900)

    quiet = await monitor.run_pass(now=T + 1200)
    assert not (quiet.opened or quiet.updated or quiet.closed)
    assert len(slack.reports) == 1 and len(fake_ollama.chat_requests) == 1


@pytest.mark.asyncio
async def test_when_every_check_passes_the_model_is_not_called(
    services: Services, settings: Settings, adapters: tuple[RecordingAdapter, RecordingAdapter],
    fake_ollama: FakeOllama,
) -> None:  # fmt: skip
    recorder = build_recorder(settings, services.store)
    monitor = build_monitor(settings, services.store, recorder, [Destination(a, CHANNEL[a.platform]) for a in adapters])
    # The real checks on this machine, with thresholds a busy test host passes.
    lenient = CheckConfig(disk_percent=100, memory_percent=100, memory_pressure=0, load_factor=1000)
    monitor.checks = default_checks(lenient)
    for _ in range(3):
        outcome = await monitor.run_pass()
        assert not outcome.failing, outcome.failing
    assert len(outcome.results) >= 4
    await monitor.drain()
    assert fake_ollama.requests == []
    assert all(not a.reports and not a.thread_posts and not a.requests for a in adapters)


@pytest.mark.asyncio
async def test_a_proposed_fix_needs_approval_runs_once_and_the_recheck_is_posted(
    services: Services, adapters: tuple[RecordingAdapter, RecordingAdapter], fake_ollama: FakeOllama,
    workspace: Path,
) -> None:  # fmt: skip
    slack, discord = adapters
    big = workspace / "huge.log"
    big.write_bytes(b"x" * 4096)

    async def probe() -> MetricsSnapshot:  # /var is full while the file is there
        return await Disk(97.0 if big.exists() else 41.0).read()

    remove = {"name": "run_command", "arguments": {"command": f"rm {big}"}}
    fake_ollama.script(
        Reply(thinking="huge.log fills /var.", tool_calls=[remove]),
        Reply(content="Removed huge.log; /var has room again."),
    )
    monitor = make_monitor(services, probe, adapters)
    await monitor.run_pass(now=T)
    await monitor.drain()

    assert not big.exists()
    [approval] = await services.store.approvals()
    assert (approval.status, approval.tool, approval.requested_by) == ("approved", "run_command", "slack:scheduler")
    assert approval.decided_by == "slack:U0APPROVER" and approval.thread == slack.reports[0].ref
    runs = [e for e in await services.store.audit_entries() if e.action == "tool_run"]
    assert [(e.tool, e.decision, e.exit_status) for e in runs] == [("run_command", "approved", 0)]
    thread = slack.thread(slack.reports[0].ref)
    assert any(line.startswith("⏸️ waiting for approval") for line in thread)
    assert thread[-1] == "✅ Re-check after the fix: disk:/var passes now. /var is 41.0 % full (59.0 GiB free)"
    assert discord.thread(discord.reports[0].ref) == ["✅ The fix held: /var is 41.0 % full (59.0 GiB free)"]
    [row] = await incidents(services.store)
    assert (row.status, row.resolution) == ("closed", "fixed")
    assert len(fake_ollama.chat_requests) == 2

    after = await monitor.run_pass(now=T + 300)
    assert not (after.opened or after.closed) and len(slack.reports) == 1
    assert len(fake_ollama.chat_requests) == 2


@pytest.mark.asyncio
async def test_a_denied_fix_does_not_run_and_the_incident_stays_open(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    slack = RecordingAdapter(services.agent, services.gate, platform="slack", approve=False)
    big = workspace / "huge.log"
    big.write_bytes(b"x")
    fake_ollama.script(
        Reply(tool_calls=[{"name": "run_command", "arguments": {"command": f"rm {big}"}}]),
        Reply(content="Understood, I left it alone."),
    )
    monitor = make_monitor(services, Disk(97.0).read, [slack])
    await monitor.run_pass(now=T)
    await monitor.drain()
    assert big.exists()
    thread = slack.thread(slack.reports[0].ref)
    assert not any("Re-check" in line for line in thread)
    assert any("Denied by slack:U0APPROVER" in line for line in thread)
    [row] = await incidents(services.store)
    assert row.status == "open"
    assert not [e for e in await services.store.audit_entries() if e.action == "tool_run"]


@pytest.mark.asyncio
async def test_failing_again_soon_after_recovery_reopens_the_same_incident(
    services: Services, adapters: tuple[RecordingAdapter, RecordingAdapter], fake_ollama: FakeOllama
) -> None:
    slack, _ = adapters
    fake_ollama.default_reply = Reply(content="Looks like log growth.")
    disk = Disk(95.0)
    monitor = make_monitor(services, disk.read, adapters)
    await monitor.run_pass(now=T)
    await monitor.drain()
    disk.percent = 85.0
    await monitor.run_pass(now=T + 300)
    disk.percent = 92.0
    again = await monitor.run_pass(now=T + 600)
    await monitor.drain()
    assert [i.key for i in again.reopened] == ["disk:/var"] and not again.opened
    assert len(slack.reports) == 1 and len(fake_ollama.chat_requests) == 1
    last = slack.thread(slack.reports[0].ref)[-1]
    assert last == "🔴 Failing again: /var is 92.0 % full: 8.0 GiB free of 100.0 GiB (threshold 90 %)"
    [row] = await incidents(services.store)
    assert (row.status, row.failures) == ("open", 2)

    # Long after a recovery, a new failure is a new incident.
    disk.percent = 50.0
    await monitor.run_pass(now=T + 900)
    disk.percent = 99.0
    late = await monitor.run_pass(now=T + 900 + 3600)
    await monitor.drain()
    assert [i.key for i in late.opened] == ["disk:/var"]
    assert len(slack.reports) == 2 and len(fake_ollama.chat_requests) == 2


class Scripted:
    """A check whose next results the test sets."""

    name = "scripted"

    def __init__(self) -> None:
        self.results: list[CheckResult] = []

    async def run(self, ctx: CheckContext) -> list[CheckResult]:
        return list(self.results)


@pytest.mark.asyncio
async def test_inconclusive_checks_leave_incidents_alone_and_vanished_keys_close(
    services: Services, fake_ollama: FakeOllama
) -> None:
    check = Scripted()
    monitor = make_monitor(services, Disk(10.0).read, [], checks=[check])
    check.results = [CheckResult("scripted", "container:web", False, "web is unhealthy")]
    opened = await monitor.run_pass(now=T)
    assert [i.key for i in opened.opened] == ["container:web"]
    check.results = [CheckResult("scripted", "scripted", True, "engine unreachable", inconclusive=True)]
    unsure = await monitor.run_pass(now=T + 300)
    assert not unsure.closed
    check.results = []  # the container was removed
    gone = await monitor.run_pass(now=T + 600)
    assert [(i.key, i.summary) for i in gone.closed] == [("container:web", "container:web is no longer reported")]
    assert fake_ollama.requests == []  # no reports channel: nothing to run the agent in


@pytest.mark.asyncio
async def test_two_writers_racing_still_open_one_incident(services: Services) -> None:
    other = Store(services.store.url)  # another process on the same database
    try:
        result = CheckResult("disk", "disk:/var", False, "full")
        books = [IncidentBook(store, host="box") for store in (services.store, other) for _ in range(3)]
        outcomes = await asyncio.gather(*(book.record_failure(result, T) for book in books))
        assert len({incident.id for incident, _ in outcomes}) == 1
        assert sorted(change.value for _, change in outcomes).count("opened") == 1
        rows = await incidents(services.store)
        assert len(rows) == 1 and rows[0].failures == 6
    finally:
        await other.close()


@pytest.mark.asyncio
async def test_what_goes_to_chat_is_redacted(services: Services, fake_ollama: FakeOllama) -> None:
    slack = RecordingAdapter(services.agent, services.gate, platform="slack")
    check = Scripted()
    monitor = HealthMonitor(
        book=IncidentBook(services.store, host="box"), checks=[check], probe=Disk(10.0).read,
        destinations=[Destination(slack, CHANNEL["slack"])], redact=lambda text: text.replace("hunter2", "[redacted]"),
    )  # fmt: skip
    check.results = [CheckResult("scripted", "container:db", False, "healthcheck: password hunter2 refused",
                                 {"last healthcheck output": "login with hunter2 failed"})]  # fmt: skip
    await monitor.run_pass(now=T)
    await monitor.drain()
    check.results = []
    await monitor.run_pass(now=T + 60)
    posted = "\n".join([slack.reports[0].text, *slack.thread(slack.reports[0].ref)])
    assert "hunter2" not in posted and posted.count("[redacted]") >= 2
