"""The scheduler: APScheduler 3 on the event loop, its jobs in the project's database, one per database.

Jobs survive restarts (the job store is a table next to ours) and a missed run is coalesced:
when the bot comes back, a job that missed N runs runs once, if within its grace time.

How a stored job finds its work. The job store pickles a *reference* to a module-level
callable plus its arguments, so a job cannot carry services. Every job is stored as
`run_job(job_id)`; the process that holds the scheduler lock registers, for each job id,
the one coroutine that does that job (`MetricsRecorder.record`, `HealthMonitor.run_pass`,
…) while it runs the scheduler, and removes them when it stops. No object owns the chat
clients, the scheduler and the database together: each runner closes over exactly the
service it needs, and the registry only maps ids to those callables.

Exactly one scheduler across processes: a lease row (core.health.lock). The holder renews
it every `lease / 3`; another process takes over once it has expired, or at its next check
when the holder is known to be gone (a crashed process of the same instance, `core.instance`).
The others log "not the scheduler: <owner> holds the lock" and keep waiting.

Nothing blocks the loop: APScheduler reads jobs from memory (`WriteBehindJobStore`); each
change is written to the table by one worker thread, in order; jobs run their own
blocking work (psutil, the notebook, the database) in threads.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import inspect

from adapters.base import ChatAdapter
from bot.app import Services, prepare_dirs
from bot.settings import ReportSettings, Settings
from core.events import Report
from core.health.checks import CheckResult
from core.health.lock import LeaseLock, make_owner_id
from core.health.monitor import PassOutcome
from core.health.outlets import Destination
from core.health.report import incident_report
from core.instance import ProcessIdentity
from core.store.db import make_engine

log = logging.getLogger(__name__)

JOBS_TABLE = "apscheduler_jobs"
JobRunner = Callable[[], Awaitable[object]]


# ---- what runs ------------------------------------------------------------------------------
class JobRegistry:
    """job id → the coroutine function doing that job in this process (filled by the lock holder)."""

    def __init__(self) -> None:
        self._runners: dict[str, JobRunner] = {}
        self._owner = ""

    def register(self, owner: str, runners: Mapping[str, JobRunner]) -> None:
        if self._owner and self._owner != owner:
            raise RuntimeError(f"scheduled jobs are already wired by {self._owner} in this process")
        self._owner = owner
        self._runners = dict(runners)

    def unregister(self, owner: str) -> None:
        if self._owner == owner:
            self._owner, self._runners = "", {}

    def get(self, job_id: str) -> JobRunner | None:
        return self._runners.get(job_id)


registry = JobRegistry()


async def run_job(job_id: str) -> None:
    """The callable every stored job references (`bot.scheduler:run_job`)."""
    runner = registry.get(job_id)
    if runner is None:
        log.warning("scheduled job %r has nothing to run in this process; skipped", job_id)
        return
    await runner()


# ---- when it runs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class JobSpec:
    id: str
    name: str  # says the schedule; when it changes, the stored job is replaced
    trigger: BaseTrigger
    misfire_grace_time: int


def job_specs(reports: ReportSettings, *, timezone: Any = None) -> list[JobSpec]:
    tz = timezone or reports.timezone or None
    hour, minute = (int(part) for part in reports.daily_at.split(":"))
    if reports.health_cron:
        health_trigger: BaseTrigger = CronTrigger.from_crontab(reports.health_cron, timezone=tz)
        health_name = f"health checks (cron {reports.health_cron})"
    else:
        health_trigger = IntervalTrigger(seconds=reports.health_interval, timezone=tz)
        health_name = f"health checks every {reports.health_interval} s"
    tz_name = f" {reports.timezone}" if reports.timezone else ""
    return [
        JobSpec("metrics", f"metrics sample every {reports.metrics_interval} s",
                IntervalTrigger(seconds=reports.metrics_interval, timezone=tz),
                max(1, min(reports.misfire_grace, reports.metrics_interval))),
        JobSpec("health", health_name, health_trigger, reports.misfire_grace),
        JobSpec("daily", f"daily analysis at {hour:02d}:{minute:02d}{tz_name}",
                CronTrigger(hour=hour, minute=minute, timezone=tz), reports.daily_misfire_grace),
        JobSpec("prune", f"retention prune ({reports.retention_days:g} days) daily at 04:00{tz_name}",
                CronTrigger(hour=4, minute=0, timezone=tz), 24 * 3600),
    ]  # fmt: skip


def sync_jobs(scheduler: AsyncIOScheduler, specs: Sequence[JobSpec]) -> None:
    """Make the stored jobs match the settings. An unchanged job keeps its stored next run time,
    which is what makes a run missed while the bot was down happen (once) on start."""
    wanted = {spec.id: spec for spec in specs}
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            log.info("removing scheduled job %s (%s): no longer configured", job.id, job.name)
            job.remove()
    for spec in specs:
        job = scheduler.get_job(spec.id)
        if (
            job is not None
            and job.name == spec.name
            and job.misfire_grace_time == spec.misfire_grace_time
            and job.func_ref == f"{__name__}:run_job"
        ):
            continue
        scheduler.add_job(
            run_job,
            trigger=spec.trigger,
            args=[spec.id],
            id=spec.id,
            name=spec.name,
            replace_existing=True,
            misfire_grace_time=spec.misfire_grace_time,
            coalesce=True,
            max_instances=1,
        )


# ---- where jobs are kept ---------------------------------------------------------------------
class WriteBehindJobStore(MemoryJobStore):  # type: ignore[misc]  # APScheduler 3 ships no types
    """APScheduler looks jobs up on the event loop, several times per wakeup; here it reads them
    from memory. Every change goes to SQLAlchemyJobStore's table through one worker thread, in
    order, so the table always ends up as APScheduler left it and a restart finds the jobs."""

    def __init__(self, url: str, *, tablename: str = JOBS_TABLE) -> None:
        super().__init__()
        self.db = SQLAlchemyJobStore(engine=make_engine(url), tablename=tablename)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobstore")
        self._loaded = False

    def load(self, scheduler: Any, alias: str = "default") -> None:
        """Blocking (creates the table, reads the jobs): call it in a thread before the scheduler starts."""
        self.db.start(scheduler, alias)
        for job in self.db.get_all_jobs():
            MemoryJobStore.add_job(self, job)
        self._loaded = True

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        if not self._loaded:  # pragma: no cover - SchedulerHost always loads first
            self.load(scheduler, alias)

    def add_job(self, job: Job) -> None:
        super().add_job(job)
        self._write(job)

    def update_job(self, job: Job) -> None:
        super().update_job(job)
        self._write(job)

    def remove_job(self, job_id: str) -> None:
        super().remove_job(job_id)
        self._writer.submit(self._guarded, self._delete, job_id)

    def remove_all_jobs(self) -> None:
        super().remove_all_jobs()
        self._writer.submit(self._guarded, self._delete, None)

    def flush(self) -> None:
        """Blocking: wait until every change so far is in the table."""
        self._writer.submit(lambda: None).result()

    def shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        self.db.shutdown()

    # the writer thread -----------------------------------------------------------------------
    def _write(self, job: Job) -> None:
        # Pickled now, on the loop: the job object keeps changing after this call.
        state = pickle.dumps(job.__getstate__(), self.db.pickle_protocol)
        self._writer.submit(self._guarded, self._upsert, job.id, datetime_to_utc_timestamp(job.next_run_time), state)

    @staticmethod
    def _guarded(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("writing the job store failed")

    def _upsert(self, job_id: str, next_run: float | None, state: bytes) -> None:
        t = self.db.jobs_t
        with self.db.engine.begin() as conn:
            done = conn.execute(t.update().values(next_run_time=next_run, job_state=state).where(t.c.id == job_id))
            if done.rowcount == 0:
                conn.execute(t.insert().values(id=job_id, next_run_time=next_run, job_state=state))

    def _delete(self, job_id: str | None) -> None:
        t = self.db.jobs_t
        with self.db.engine.begin() as conn:
            conn.execute(t.delete() if job_id is None else t.delete().where(t.c.id == job_id))


# ---- one scheduler per database ----------------------------------------------------------------
class SchedulerHost:
    """Holds (or waits for) the scheduler lock and runs APScheduler while it holds it."""

    def __init__(
        self,
        *,
        db_url: str,
        lock: LeaseLock,
        specs: Sequence[JobSpec],
        runners: Mapping[str, JobRunner],
        lease: float = 60.0,
        heartbeat: float | None = None,
        timezone: str = "",
        misfire_grace_time: int = 300,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        jobs: JobRegistry = registry,
    ) -> None:
        self.db_url = db_url
        self.lock = lock
        self.specs = list(specs)
        self.runners = dict(runners)
        self.lease = lease
        self.heartbeat = heartbeat if heartbeat is not None else lease / 3
        self.timezone = timezone or None
        self.misfire_grace_time = misfire_grace_time
        self.owner = owner or make_owner_id()
        self.clock = clock
        self.jobs = jobs
        self.scheduler: AsyncIOScheduler | None = None
        self._store: WriteBehindJobStore | None = None
        self._expires_at = 0.0
        self._reported_holder = ""

    @property
    def active(self) -> bool:
        return self.scheduler is not None

    async def run(self) -> None:
        """Until cancelled. Releases the lock on the way out so another process can take over at once."""
        try:
            while True:
                try:
                    await self.tick()
                except Exception:  # one error boundary per tick: a bad start must not end the scheduler
                    log.exception("the scheduler could not start or stop its jobs; retrying in %g s", self.heartbeat)
                await asyncio.sleep(self.heartbeat)
        finally:
            await self.stop()

    async def tick(self) -> bool:
        """Take or renew the lock, start or stop the jobs accordingly. True while this process schedules."""
        now = self.clock()
        try:
            state = await self.lock.acquire(self.owner, now=now, lease=self.lease)
        except Exception:
            log.exception("the scheduler lock could not be checked")
            if self.active and now >= self._expires_at:
                log.warning("the scheduler lease ran out while the database was unreachable; stopping the jobs")
                await self._stop_jobs()
            return self.active
        if state.acquired:
            self._expires_at = state.expires_at
            if not self.active:
                await self._start_jobs()
            return True
        if self.active:
            log.warning("%s took over the scheduler lock; stopping the jobs here", state.owner)
            await self._stop_jobs()
        if state.owner != self._reported_holder:
            log.warning("not the scheduler: %s holds the lock", state.owner)
            self._reported_holder = state.owner
        return False

    async def stop(self) -> None:
        if self.active:
            await self._stop_jobs()
            try:
                await self.lock.release(self.owner)
            except Exception:
                log.exception("releasing the scheduler lock failed (it expires on its own)")

    async def _start_jobs(self) -> None:
        scheduler = AsyncIOScheduler(
            timezone=self.timezone or _local_zone(),
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self.misfire_grace_time},
        )
        store = WriteBehindJobStore(self.db_url)
        await asyncio.to_thread(store.load, scheduler, "default")
        scheduler.add_jobstore(store, "default")
        self.jobs.register(self.owner, self.runners)
        try:
            scheduler.start(paused=True)
            sync_jobs(scheduler, self.specs)
            scheduler.resume()
        except BaseException:
            self.jobs.unregister(self.owner)
            if scheduler.running:
                scheduler.shutdown(wait=False)
            raise
        self.scheduler, self._store = scheduler, store
        log.info("this process runs the scheduler (%s): %s", self.owner, ", ".join(s.name for s in self.specs))

    async def _stop_jobs(self) -> None:
        scheduler, store = self.scheduler, self._store
        self.scheduler = self._store = None
        self.jobs.unregister(self.owner)
        if scheduler is None or store is None:
            return
        scheduler.pause()
        await asyncio.to_thread(store.flush)
        scheduler.shutdown(wait=False)  # cancels running jobs; the store's last writes are already done


def _local_zone() -> Any:
    from tzlocal import get_localzone

    return get_localzone()


# ---- `orchestrator jobs` ----------------------------------------------------------------------
@dataclass(frozen=True)
class JobInfo:
    id: str
    name: str
    next_run: datetime | None  # None: paused
    trigger: str


def list_jobs(db_url: str) -> list[JobInfo]:
    """The stored jobs, read straight from the table (no scheduler needed)."""
    engine = make_engine(db_url)
    try:
        if not inspect(engine).has_table(JOBS_TABLE):
            return []
        store = SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)
        store.start(None, "default")
        return [JobInfo(j.id, j.name, j.next_run_time, str(j.trigger)) for j in store.get_all_jobs()]
    finally:
        engine.dispose()


# ---- `orchestrator run …` -------------------------------------------------------------------------
CheckObserver = Callable[[Sequence[CheckResult]], None]


async def run_scheduler(
    settings: Settings,
    services: Services,
    adapters: Sequence[ChatAdapter],
    *,
    dests: Sequence[Destination] | None = None,
    on_checks: CheckObserver | None = None,
) -> None:
    """The scheduler as a companion of the chat adapters (bot.runner._extra_jobs), or alone
    (`run scheduler`: `dests` are then post-only outlets). Every report also goes to the log;
    `on_checks` sees each pass's results (the service endpoint's gauges)."""
    from bot.reports import build_daily, build_monitor, build_recorder, destinations, prune, publish_daily

    aps = logging.getLogger("apscheduler")
    if aps.level == logging.NOTSET:  # "Running job …" twice a minute drowns the bot's own INFO lines
        aps.setLevel(logging.WARNING)
    if dests is None:
        dests = destinations(settings, adapters)
    recorder = build_recorder(settings, services.store)
    memory = services.memory
    monitor = build_monitor(settings, services.store, recorder, dests, redact=services.policy.redact, memory=memory)
    daily = build_daily(settings, services.llm, redact=services.policy.redact, memory=memory)

    async def health_pass() -> None:
        outcome = await monitor.run_pass()
        if on_checks is not None:
            on_checks(outcome.results)
        log_pass(outcome)

    async def daily_report() -> None:
        log_report(await publish_daily(daily, dests))

    async def retention() -> None:
        samples, files = await prune(settings, recorder)
        log.info("retention: removed %d samples and %d report files", samples, files)

    identity = services.gate.identity
    host = SchedulerHost(
        db_url=settings.db_url,
        lock=LeaseLock(services.store, holder_gone=identity.is_dead),
        owner=identity.owner,
        specs=job_specs(settings.reports),
        runners={"metrics": recorder.record, "health": health_pass, "daily": daily_report, "prune": retention},
        lease=settings.reports.scheduler_lease,
        timezone=settings.reports.timezone,
        misfire_grace_time=settings.reports.misfire_grace,
    )
    try:
        await host.run()
    finally:
        await monitor.aclose()


def log_report(report: Report, *, level: int = logging.INFO) -> None:
    """A report in the log: one line that says what it is (and where its files are), then its text."""
    files = ", ".join(a.path for a in report.attachments)
    log.log(level, "%s report: %s%s", report.kind, report.title, f" ({files})" if files else "")
    log.info("%s", "\n".join(f"    {line}" if line.strip() else "" for line in report.text.splitlines()))


def log_pass(outcome: PassOutcome) -> None:
    """What a health pass changed, in the log: each incident opened or reopened (a warning, with its
    text) and each one closed. A pass that changes nothing says nothing."""
    for incident in outcome.opened:
        log_report(incident_report(incident, agent=False), level=logging.WARNING)
    for incident in outcome.reopened:
        log.warning("incident reopened: %s: %s", incident.key, incident.summary)
    for incident in outcome.closed:
        log.info("incident closed (%s): %s: %s", incident.resolution, incident.key, incident.summary)


def jobs_command(settings: Settings, *, as_json: bool = False, out: Any = None) -> int:
    """`orchestrator jobs`: who holds the scheduler lock, and every stored job with its next run."""
    import json
    import sys

    from core.store import Store

    out = out or sys.stdout
    prepare_dirs(settings)  # an unusable data dir is one line, not a traceback
    store = Store(settings.db_url)
    store.migrate_sync()
    holder = LeaseLock(store).holder_sync()
    store.engine.dispose()
    jobs = list_jobs(settings.db_url)
    now = time.time()
    observer = ProcessIdentity.observer(settings.data_dir)
    gone = holder is not None and holder.expires_at > now and observer.is_dead(holder.owner)
    if as_json:
        print(json.dumps({
            "scheduler": holder.model_dump() | {"active": holder.expires_at > now and not gone, "holder_gone": gone}
            if holder else None,
            "jobs": [{"id": j.id, "name": j.name, "next_run": j.next_run.isoformat() if j.next_run else None,
                      "trigger": j.trigger} for j in jobs],
        }, indent=2), file=out)  # fmt: skip
        return 0

    def when(ts: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))

    if holder is None:
        print("scheduler: no process has run the scheduler on this database yet", file=out)
    elif gone:
        print(f"scheduler: not running: {holder.owner} ({observer.describe(holder.owner)}) held the lock and is gone; "
              "the next bot process takes over at its next check", file=out)  # fmt: skip
    elif holder.expires_at > now:
        print(f"scheduler: running in {holder.owner} (lease valid until {when(holder.expires_at)})", file=out)
    else:
        print(f"scheduler: not running (last held by {holder.owner}, until {when(holder.expires_at)})", file=out)
    if not jobs:
        print("no scheduled jobs yet: they are created when `orchestrator run …` starts the scheduler", file=out)
        return 0
    print(f"\n{'JOB':<10}{'NEXT RUN':<22}SCHEDULE", file=out)
    for j in jobs:
        next_run = j.next_run.astimezone().strftime("%Y-%m-%d %H:%M:%S") if j.next_run else "paused"
        print(f"{j.id:<10}{next_run:<22}{j.name}", file=out)
    return 0
