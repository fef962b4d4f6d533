"""A lease in the database: exactly one process runs the scheduled jobs, whatever shares the database.

The holder renews the lease well before it expires; another process takes over once it has
expired (the holder died or hung), or at once when the holder is known to be gone (a process
of the same instance whose lock file is free, see `core.instance`). Every step is one
conditional UPDATE (or the first INSERT), atomic on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import case, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core.health.models import SchedulerLock
from core.store import Store


def make_owner_id() -> str:
    """host:pid:random, so a log line says which process holds the lock (the bot passes its
    `core.instance` owner id instead, which other processes can probe)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class LockState:
    acquired: bool
    owner: str  # the holder after this attempt ("" when nobody)
    expires_at: float


class LeaseLock:
    def __init__(
        self, store: Store, name: str = "scheduler", *, holder_gone: Callable[[str], bool] | None = None
    ) -> None:
        self.store = store
        self.name = name
        self.holder_gone = holder_gone  # True for a holder known to be dead: taken over before its lease ends

    def acquire_sync(self, owner: str, *, now: float, lease: float) -> LockState:
        t = SchedulerLock
        with self.store.engine.begin() as conn:
            taken = conn.execute(
                update(t)
                .where(col(t.name) == self.name, or_(col(t.owner) == owner, col(t.expires_at) < now))
                .values(
                    owner=owner,
                    heartbeat_at=now,
                    expires_at=now + lease,
                    acquired_at=case((col(t.owner) == owner, col(t.acquired_at)), else_=now),
                )
            )
            if taken.rowcount == 1:
                return LockState(True, owner, now + lease)
        row = self.holder_sync()
        if row is not None and self.holder_gone is not None and row.owner != owner and self.holder_gone(row.owner):
            with self.store.engine.begin() as conn:
                taken = conn.execute(
                    update(t)
                    .where(col(t.name) == self.name, col(t.owner) == row.owner)  # still that dead holder's
                    .values(owner=owner, heartbeat_at=now, expires_at=now + lease, acquired_at=now)
                )
                if taken.rowcount == 1:
                    return LockState(True, owner, now + lease)
        if row is not None:
            row = self.holder_sync()
            return LockState(False, row.owner if row else "", row.expires_at if row else 0.0)
        try:
            with self.store.engine.begin() as conn:
                conn.execute(
                    insert(t).values(
                        name=self.name, owner=owner, acquired_at=now, heartbeat_at=now, expires_at=now + lease
                    )
                )
            return LockState(True, owner, now + lease)
        except IntegrityError:
            row = self.holder_sync()
            return LockState(False, row.owner if row else "", row.expires_at if row else 0.0)

    def holder_sync(self) -> SchedulerLock | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(SchedulerLock).where(col(SchedulerLock.name) == self.name)).first()
        return SchedulerLock.model_validate(row._mapping) if row is not None else None

    def release_sync(self, owner: str) -> bool:
        t = SchedulerLock
        with self.store.engine.begin() as conn:
            done = conn.execute(update(t).where(col(t.name) == self.name, col(t.owner) == owner).values(expires_at=0.0))
            return bool(done.rowcount)

    async def acquire(self, owner: str, *, now: float, lease: float) -> LockState:
        """Take the lock, or renew it when `owner` already holds it."""
        return await self.store.run(lambda _s: self.acquire_sync(owner, now=now, lease=lease))

    async def release(self, owner: str) -> bool:
        """Let the next process take over at once (on an orderly stop)."""
        return await self.store.run(lambda _s: self.release_sync(owner))

    async def holder(self) -> SchedulerLock | None:
        return await self.store.run(lambda _s: self.holder_sync())
