"""Exactly one scheduler across processes: the lease that makes a process the scheduler, and the takeover.

The lease is a row (core.health.lock). The holder renews it every `lease / 3`; another process
takes over once it has expired, or at its next check when the holder is known to be gone (a
crashed process of the same instance, `core.instance`). The others log "not the scheduler:
<owner> holds the lock" and keep waiting. The holder runs APScheduler over the job store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.scheduler.jobs import JobRegistry, JobRunner, JobSpec, registry, sync_jobs
from bot.scheduler.store import WriteBehindJobStore
from core.health.lock import LeaseLock, make_owner_id

# Every part of the scheduler logs as "bot.scheduler", the name operators' log filters know.
log = logging.getLogger("bot.scheduler")


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
