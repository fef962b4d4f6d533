"""`orchestrator jobs`: who holds the scheduler lock, and every stored job with its next run."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from bot.app import open_store
from bot.scheduler.store import list_jobs
from bot.settings import Settings
from core.health.lock import LeaseLock
from core.instance import ProcessIdentity


def jobs_command(settings: Settings, *, as_json: bool = False, out: Any = None) -> int:
    """`orchestrator jobs`: who holds the scheduler lock, and every stored job with its next run."""
    out = out or sys.stdout
    store = open_store(settings)  # an unusable data dir is one line, not a traceback
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
