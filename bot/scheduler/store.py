"""Where the jobs are kept: a table next to ours in the project's database, read into memory.

APScheduler reads jobs from memory (`WriteBehindJobStore`), so nothing blocks the loop; each
change is written to the table by one worker thread, in order. `list_jobs` reads the table
alone, for `orchestrator jobs`.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import inspect

from core.store.db import make_engine

# Every part of the scheduler logs as "bot.scheduler", the name operators' log filters know.
log = logging.getLogger("bot.scheduler")

JOBS_TABLE = "apscheduler_jobs"


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
