"""What the scheduler runs and when: the job registry, `run_job`, and the job specs from the settings.

The job store pickles a *reference* to a module-level callable plus its arguments, so a job
cannot carry services. Every job is stored as `run_job(job_id)`; the process that holds the
scheduler lock registers, for each job id, the one coroutine that does that job while it runs
the scheduler, and removes them when it stops.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.settings import ReportSettings

# Every part of the scheduler logs as "bot.scheduler", the name operators' log filters know.
log = logging.getLogger("bot.scheduler")

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
# What the job store keeps for every job: the package's name, not this module's, so that a stored
# job resolves wherever inside bot.scheduler `run_job` is defined.
RUN_JOB = "bot.scheduler:run_job"


async def run_job(job_id: str) -> None:
    """The callable every stored job references, as `RUN_JOB`."""
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


def job_specs(reports: ReportSettings, *, timezone: Any = None, backup_cron: str = "") -> list[JobSpec]:
    """The jobs from the settings; `backup_cron` (ORCHESTRATOR_BACKUP_CRON) adds the weekly backup."""
    tz = timezone or reports.timezone or None
    hour, minute = (int(part) for part in reports.daily_at.split(":"))
    if reports.health_cron:
        health_trigger: BaseTrigger = CronTrigger.from_crontab(reports.health_cron, timezone=tz)
        health_name = f"health checks (cron {reports.health_cron})"
    else:
        health_trigger = IntervalTrigger(seconds=reports.health_interval, timezone=tz)
        health_name = f"health checks every {reports.health_interval} s"
    tz_name = f" {reports.timezone}" if reports.timezone else ""
    backup = (
        [JobSpec("backup", f"backups (cron {backup_cron}{tz_name})", CronTrigger.from_crontab(backup_cron, timezone=tz),
                 reports.daily_misfire_grace)]
        if backup_cron
        else []
    )  # fmt: skip
    return [
        JobSpec("metrics", f"metrics sample every {reports.metrics_interval} s",
                IntervalTrigger(seconds=reports.metrics_interval, timezone=tz),
                max(1, min(reports.misfire_grace, reports.metrics_interval))),
        JobSpec("health", health_name, health_trigger, reports.misfire_grace),
        JobSpec("daily", f"daily analysis at {hour:02d}:{minute:02d}{tz_name}",
                CronTrigger(hour=hour, minute=minute, timezone=tz), reports.daily_misfire_grace),
        JobSpec("prune", f"retention prune ({reports.retention_days:g} days) daily at 04:00{tz_name}",
                CronTrigger(hour=4, minute=0, timezone=tz), 24 * 3600),
        *backup,
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
            and job.func_ref == RUN_JOB
        ):
            continue
        scheduler.add_job(
            RUN_JOB,
            trigger=spec.trigger,
            args=[spec.id],
            id=spec.id,
            name=spec.name,
            replace_existing=True,
            misfire_grace_time=spec.misfire_grace_time,
            coalesce=True,
            max_instances=1,
        )
