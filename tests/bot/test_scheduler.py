"""The scheduler with the real APScheduler and SQLite, then PostgreSQL (`store_url`): persistence,
coalescing, one scheduler per database. Time is controlled through the job store (next run times in
the past) and short intervals."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
import pytest_asyncio
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import event
from sqlmodel import select

from bot.app import Services
from bot.runner import _extra_jobs
from bot.scheduler import JobSpec, SchedulerHost, job_specs, jobs_command, list_jobs, registry, run_job
from bot.settings import ReportSettings, Settings
from core.health.lock import LeaseLock
from core.health.models import MetricSample
from core.store import Store
from tests.fakes.ollama import FakeOllama
from tests.support import waiting
from tests.support.recording import RecordingAdapter, health_settings


@pytest_asyncio.fixture
async def db(store_url: str) -> AsyncIterator[str]:
    store = Store(store_url)
    await store.init()
    await store.close()
    yield store_url


@pytest_asyncio.fixture
async def store(db: str) -> AsyncIterator[Store]:
    s = Store(db)
    yield s
    await s.close()


def counting(counts: Counter[str], *ids: str) -> dict[str, Callable[[], asyncio.Future[None]]]:
    def runner(job_id: str) -> Callable[[], asyncio.Future[None]]:
        async def run() -> None:
            counts[job_id] += 1

        return run  # type: ignore[return-value]

    return {job_id: runner(job_id) for job_id in ids}


until = partial(waiting.until, timeout=5.0, interval=0.02)  # these waits are for jobs in this process: seconds


def host(db: str, store: Store, specs: list[JobSpec], counts: Counter[str], **kw: object) -> SchedulerHost:
    return SchedulerHost(db_url=db, lock=LeaseLock(store), specs=specs,
                         runners=counting(counts, *(s.id for s in specs)), **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.asyncio
async def test_jobs_survive_a_restart_with_their_next_run_times(db: str, store: Store) -> None:
    counts: Counter[str] = Counter()
    first = host(db, store, job_specs(ReportSettings()), counts)
    assert await first.tick()
    assert first.scheduler is not None
    before = {j.id: j.next_run_time for j in first.scheduler.get_jobs()}
    assert set(before) == {"metrics", "health", "daily", "prune"}
    await first.stop()
    assert {j.id: j.next_run for j in list_jobs(db)} == before  # in the table, not only in memory

    second = host(db, store, job_specs(ReportSettings()), counts)
    try:
        assert await second.tick()
        assert second.scheduler is not None
        assert {j.id: j.next_run_time for j in second.scheduler.get_jobs()} == before  # loaded, not recomputed
    finally:
        await second.stop()

    # Changing one schedule replaces that job only.
    third = host(db, store, job_specs(ReportSettings(health_interval=120)), counts)
    try:
        assert await third.tick()
        assert third.scheduler is not None
        jobs = {j.id: j for j in third.scheduler.get_jobs()}
        assert jobs["health"].name == "health checks every 120 s" and jobs["health"].next_run_time != before["health"]
        assert jobs["metrics"].next_run_time == before["metrics"]
        assert jobs["daily"].name == "daily analysis at 06:00" and str(jobs["daily"].trigger).startswith("cron[")
    finally:
        await third.stop()
    assert counts == Counter()


async def stored_in_the_past(db: str, store: Store, spec: JobSpec, missed: timedelta, *, coalesce: bool) -> None:
    """Store `spec` as if the bot had been down: its next run lies `missed` in the past."""
    writer = host(db, store, [spec], Counter())
    assert await writer.tick()
    assert writer.scheduler is not None
    writer.scheduler.pause()
    writer.scheduler.modify_job(spec.id, next_run_time=datetime.now(UTC) - missed, coalesce=coalesce)
    await writer.stop()
    [job] = list_jobs(db)
    assert job.next_run is not None and job.next_run < datetime.now(UTC)


@pytest.mark.asyncio
async def test_a_job_that_missed_many_runs_runs_once(db: str, store: Store) -> None:
    spec = JobSpec("tick", "tick every 60 s", IntervalTrigger(seconds=60), misfire_grace_time=3600)
    await stored_in_the_past(db, store, spec, timedelta(minutes=10, seconds=30), coalesce=True)  # 11 runs missed
    counts: Counter[str] = Counter()
    back = host(db, store, [spec], counts)
    try:
        assert await back.tick()
        await until(lambda: counts["tick"] >= 1)
        await asyncio.sleep(0.5)
        assert counts["tick"] == 1
        assert back.scheduler is not None
        [job] = back.scheduler.get_jobs()
        assert job.next_run_time > datetime.now(UTC)
    finally:
        await back.stop()


@pytest.mark.asyncio
async def test_without_coalescing_the_same_gap_runs_every_missed_time(db: str, store: Store) -> None:
    spec = JobSpec("tick", "tick every 60 s", IntervalTrigger(seconds=60), misfire_grace_time=3600)
    await stored_in_the_past(db, store, spec, timedelta(minutes=10, seconds=30), coalesce=False)
    counts: Counter[str] = Counter()
    back = host(db, store, [spec], counts)
    try:
        assert await back.tick()
        await until(lambda: counts["tick"] >= 11)
        await asyncio.sleep(0.3)
        assert counts["tick"] == 11
    finally:
        await back.stop()


@pytest.mark.asyncio
async def test_a_run_missed_beyond_its_grace_time_is_skipped(
    db: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    spec = JobSpec("daily", "daily", IntervalTrigger(days=1), misfire_grace_time=60)
    await stored_in_the_past(db, store, spec, timedelta(hours=7), coalesce=True)
    counts: Counter[str] = Counter()
    back = host(db, store, [spec], counts)
    try:
        with caplog.at_level(logging.WARNING, logger="apscheduler"):
            assert await back.tick()
            await until(lambda: "was missed by" in caplog.text)
        assert counts["daily"] == 0
        assert back.scheduler is not None
        assert back.scheduler.get_jobs()[0].next_run_time > datetime.now(UTC)
    finally:
        await back.stop()


@pytest.mark.asyncio
async def test_two_schedulers_on_one_database_only_one_runs_jobs(
    db: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    other = Store(db)  # the second process
    counts: Counter[str] = Counter()
    spec = JobSpec("tick", "tick every 1 s", IntervalTrigger(seconds=1), misfire_grace_time=30)
    a = SchedulerHost(db_url=db, lock=LeaseLock(store), specs=[spec], runners=counting(counts, "tick"),
                      lease=5, heartbeat=0.1, owner="proc-a")  # fmt: skip
    b = SchedulerHost(db_url=db, lock=LeaseLock(other), specs=[spec],
                      runners={"tick": counting(counts, "b")["b"]}, lease=5, heartbeat=0.1, owner="proc-b")  # fmt: skip
    caplog.set_level(logging.WARNING, logger="bot.scheduler")
    task_a = asyncio.create_task(a.run())
    task_b: asyncio.Task[None] | None = None
    try:
        await until(lambda: a.active)
        task_b = asyncio.create_task(b.run())
        await until(lambda: counts["tick"] >= 2)
        assert counts["b"] == 0 and not b.active
        assert caplog.text.count("not the scheduler: proc-a holds the lock") == 1  # said once, not every tick

        task_a.cancel()  # proc-a stops: it releases the lock and proc-b takes over at its next tick
        await asyncio.gather(task_a, return_exceptions=True)
        ran_a = counts["tick"]
        await until(lambda: b.active, timeout=2)
        await until(lambda: counts["b"] >= 1)
        assert counts["tick"] == ran_a
    finally:
        for task in (task_a, task_b):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await other.close()


@pytest.mark.asyncio
async def test_a_process_that_loses_the_lock_stops_its_jobs(
    db: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    spec = JobSpec("tick", "tick every 60 s", IntervalTrigger(seconds=60), misfire_grace_time=30)
    a = host(db, store, [spec], Counter(), lease=30, owner="proc-a", clock=lambda: now)
    try:
        assert await a.tick() and registry.get("tick") is not None
        # proc-a hung past its lease; proc-b took over.
        assert (await LeaseLock(store).acquire("proc-b", now=now + 31, lease=30)).acquired
        with caplog.at_level(logging.WARNING, logger="bot.scheduler"):
            assert not await a.tick()
        assert not a.active and registry.get("tick") is None
        assert "proc-b took over the scheduler lock" in caplog.text
    finally:
        await a.stop()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # threads, whatever the database
@pytest.mark.asyncio
async def test_job_store_io_never_runs_on_the_event_loop(db: str, store: Store) -> None:
    counts: Counter[str] = Counter()
    spec = JobSpec("tick", "tick every 1 s", IntervalTrigger(seconds=1), misfire_grace_time=30)
    a = host(db, store, [spec], counts)
    threads: list[str] = []
    try:
        assert await a.tick()
        assert a._store is not None
        event.listen(a._store.db.engine, "before_cursor_execute",
                     lambda *args: threads.append(threading.current_thread().name))  # fmt: skip
        await until(lambda: counts["tick"] >= 2)
    finally:
        await a.stop()
    assert threads, "the runs' next times were written"
    assert threading.main_thread().name not in threads and all(t.startswith("jobstore") for t in threads)


@pytest.mark.asyncio
async def test_a_stored_job_without_a_runner_here_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.scheduler"):
        await run_job("nothing-registered")
    assert "has nothing to run in this process" in caplog.text


@pytest.fixture
def settings(tmp_path: Path, fake_ollama: FakeOllama, workspace: Path) -> Settings:
    return health_settings(tmp_path, fake_ollama.url, workspace, metrics_interval=1, health_interval=3600)


@pytest.mark.asyncio
async def test_the_scheduler_runs_beside_the_adapters(services: Services, settings: Settings) -> None:
    adapter = RecordingAdapter(services.agent, services.gate, platform="slack")
    [companion] = _extra_jobs(settings, services, [adapter])
    task = asyncio.create_task(companion)
    try:
        samples: list[MetricSample] = []
        deadline = time.monotonic() + 8
        while not samples and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            samples = await services.store.run(lambda s: list(s.exec(select(MetricSample)).all()))
        assert samples and samples[0].cpu_cores >= 1
        out = io.StringIO()
        assert jobs_command(settings, out=out) == 0
        listing = out.getvalue()
        assert "scheduler: running in" in listing
        for line in ("metrics sample every 1 s", "health checks every 3600 s", "daily analysis at 06:00"):
            assert line in listing
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    holder = await LeaseLock(services.store).holder()
    assert holder is not None and holder.expires_at == 0.0  # released on the way out
    assert adapter.reports == []  # nothing failed, nothing was posted

    off = settings.model_copy(update={"reports": ReportSettings(scheduler=False)})
    assert _extra_jobs(off, services, [adapter]) == []


# ---- the scheduler alone (`run scheduler`) --------------------------------------------------------
@pytest.mark.asyncio
async def test_the_scheduler_alone_posts_through_its_outlets_and_logs_each_report(
    tmp_path: Path, fake_ollama: FakeOllama, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.app import build_services
    from bot.posting import PostingOutlet
    from bot.settings import HealthCheckSettings
    from core.health.checks import CheckResult
    from tests.fakes.ollama import Reply
    from tests.support.recording import CHANNEL

    failing_disk = HealthCheckSettings(disk_percent=0.01, docker="off", systemd="off")  # any disk is above it
    alone = health_settings(tmp_path, fake_ollama.url, workspace, metrics_interval=1, health_interval=1,
                            checks=failing_disk)  # fmt: skip
    services = await build_services(alone, platforms=())
    made: list[RecordingAdapter] = []

    def make() -> RecordingAdapter:
        made.append(RecordingAdapter(services.agent, services.gate, platform="slack"))
        return made[-1]

    passes: list[list[CheckResult]] = []
    fake_ollama.script(Reply(content="Nothing to fix: the threshold is 0.01 %."))
    outlet = PostingOutlet(make)
    [companion] = _extra_jobs(alone, services, [], outlets=[outlet], on_checks=lambda r: passes.append(list(r)))
    task = asyncio.create_task(companion)
    try:
        with caplog.at_level(logging.INFO, logger="bot.scheduler"):
            await until(lambda: bool(made and made[0].reports and made[0].requests and passes), timeout=30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outlet.aclose()
        await services.close()
    [adapter] = made  # posts without serving: one adapter, never served
    [posted] = adapter.reports
    assert posted.channel == CHANNEL["slack"] and "disk:" in posted.text
    assert adapter.requests[0].thread == posted.ref  # the agent looks into it in the incident's thread
    assert any(r.name == "disk" and not r.ok for r in passes[0])
    [line] = [r for r in caplog.records if r.getMessage().startswith("incident report: ")]
    assert line.levelno == logging.WARNING and "disk:" in line.getMessage()


def test_a_report_in_the_log_is_one_line_then_its_text(caplog: pytest.LogCaptureFixture) -> None:
    from bot.scheduler import log_report
    from core.events import Attachment, Report

    report = Report(kind="daily", title="Daily report: vm", text="CPU 3 %\n\nMemory 40 %",
                    attachments=(Attachment("/data/reports/daily.png"),))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="bot.scheduler"):
        log_report(report)
    first, text = caplog.records
    assert (first.levelno, first.getMessage()) == (
        logging.INFO,
        "daily report: Daily report: vm (/data/reports/daily.png)",
    )
    assert (text.levelno, text.getMessage()) == (logging.INFO, "    CPU 3 %\n\n    Memory 40 %")
