"""The scheduler: APScheduler 3 on the event loop, its jobs in the project's database, one per database.

Jobs survive restarts (the job store is a table next to ours) and a missed run is coalesced:
when the bot comes back, a job that missed N runs runs once, if within its grace time.

- `jobs`: what runs and when. Every job is stored as a reference to `run_job(job_id)`; the
  process holding the scheduler lock maps each id to the one coroutine doing that job
  (`MetricsRecorder.record`, `HealthMonitor.run_pass`, …). No object owns the chat clients,
  the scheduler and the database together: each runner closes over exactly the service it needs.
- `store`: where jobs are kept. APScheduler reads them from memory; each change is written
  to the table by one worker thread, in order, so nothing blocks the loop.
- `host`: exactly one scheduler across processes, by a lease row (core.health.lock), renewed
  every `lease / 3` and taken over once it expires or its holder is known to be gone.
- `wiring`: the scheduler as a companion of `orchestrator run …`, its reports in the log.
- `status`: `orchestrator jobs`.

Jobs run their own blocking work (psutil, the notebook, the database) in threads.
"""

from bot.scheduler.host import SchedulerHost
from bot.scheduler.jobs import RUN_JOB, JobRegistry, JobRunner, JobSpec, job_specs, registry, run_job, sync_jobs
from bot.scheduler.status import jobs_command
from bot.scheduler.store import JOBS_TABLE, JobInfo, WriteBehindJobStore, list_jobs
from bot.scheduler.wiring import CheckObserver, log_pass, log_report, run_scheduler

__all__ = [
    "JOBS_TABLE",
    "RUN_JOB",
    "CheckObserver",
    "JobInfo",
    "JobRegistry",
    "JobRunner",
    "JobSpec",
    "SchedulerHost",
    "WriteBehindJobStore",
    "job_specs",
    "jobs_command",
    "list_jobs",
    "log_pass",
    "log_report",
    "registry",
    "run_job",
    "run_scheduler",
    "sync_jobs",
]
