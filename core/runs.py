"""Runs that end without an answer: stopped on purpose, or left behind by a crash.

A run belongs to the process that started it (`Run.owner`) and carries a heartbeat while it
runs. On start-up a bot process marks `interrupted` the runs whose owner is gone (see
`core.instance`), so they do not stay `running` forever, and its adapters tell their threads.
Runs of processes still alive, sharing the database, are left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from core.events import Failed
from core.instance import ProcessIdentity
from core.store import Store
from core.store.models import Run, RunStatus

log = logging.getLogger(__name__)

#: What the thread of a run is told when the bot restarted (after a crash) while it ran.
RESTARTED = "I restarted while working on this; ask again."
#: What the thread of a run is told when the bot is stopped (SIGTERM) while it runs.
STOPPED = "I was stopped while working on this; ask again."
#: What the console shows when its user cancels the run in flight (Ctrl-C).
CANCELLED = "Cancelled (Ctrl-C)."
#: Said instead of "Sorry, that failed: …": these are not failures of the question.
INTERRUPTION_LINES = frozenset({RESTARTED, STOPPED, CANCELLED})

RUN_LEASE = 30.0  # seconds without a heartbeat after which a run's process counts as gone


async def interrupt_orphaned_runs(
    store: Store,
    identity: ProcessIdentity,
    *,
    platforms: Iterable[str] | None = None,
    lease: float = RUN_LEASE,
    now: float | None = None,
) -> list[Run]:
    """Mark `interrupted` the running runs (of `platforms`, all by default) whose process is gone.
    Returns them, for their threads to be told."""
    wanted = set(platforms) if platforms is not None else None
    now = time.time() if now is None else now
    interrupted: list[Run] = []
    for run in await store.running_runs():
        assert run.id is not None
        if wanted is not None and run.platform not in wanted:
            continue
        if run.owner == identity.owner:
            continue
        if not identity.is_gone(run.owner, beat=run.heartbeat_at or run.started_at, now=now, lease=lease):
            continue
        if await store.finish_run(run.id, status=RunStatus.INTERRUPTED, error=RESTARTED):
            seq = len(await store.steps(run.id)) + 1
            await store.add_step(run.id, seq, Failed(run.id, RESTARTED))
            log.info("run #%s (%s) was interrupted by a restart; its thread is told", run.id, run.platform)
            run.status, run.error = RunStatus.INTERRUPTED, RESTARTED
            interrupted.append(run)
    return interrupted
