"""Incidents in the store: one open row per host and check key, opened, updated and closed by passes.

A check that fails again shortly after it recovered (within `reopen_window`) reopens its
previous incident rather than starting a new one, so a value wavering around a threshold
keeps one thread instead of a new message and a new model call every few minutes.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.health.checks import CheckResult
from core.health.models import Incident
from core.store import Store


class Change(StrEnum):
    OPENED = "opened"
    REOPENED = "reopened"
    UPDATED = "updated"


def posts_of(incident: Incident) -> dict[str, dict[str, str]]:
    try:
        posts = json.loads(incident.posts_json or "{}")
    except ValueError:
        return {}
    return posts if isinstance(posts, dict) else {}


def figures_of(incident: Incident) -> dict[str, Any]:
    try:
        figures = json.loads(incident.figures_json or "{}")
    except ValueError:
        return {}
    return figures if isinstance(figures, dict) else {}


class IncidentBook:
    def __init__(self, store: Store, *, host: str, reopen_window: float = 1800.0) -> None:
        self.store = store
        self.host = host
        self.reopen_window = reopen_window

    def _open_row(self, s: Session, key: str) -> Incident | None:
        q = select(Incident).where(Incident.host == self.host, Incident.key == key, Incident.status == "open")
        return s.exec(q).first()

    async def record_failure(self, result: CheckResult, now: float) -> tuple[Incident, Change]:
        """Open, reopen or update the incident for `result.key`. Every write is one conditional statement,
        so two writers (two processes) never lose an update or open a second incident."""
        figures = json.dumps(result.figures, default=str, ensure_ascii=False)
        t = Incident
        fresh = {"summary": result.summary, "figures_json": figures, "updated_at": now,
                 "failures": col(t.failures) + 1}  # fmt: skip

        def attempt(s: Session) -> tuple[Incident, Change] | None:
            row = self._open_row(s, result.key)
            if row is not None:
                done = s.execute(update(t).where(col(t.id) == row.id, col(t.status) == "open").values(**fresh))
                change = Change.UPDATED
            else:
                row = self._recently_closed(s, result.key, now)
                if row is None:
                    row = Incident(host=self.host, key=result.key, check_name=result.name, summary=result.summary,
                                   figures_json=figures, opened_at=now, updated_at=now)  # fmt: skip
                    s.add(row)
                    s.commit()
                    return row, Change.OPENED
                done = s.execute(
                    update(t)
                    .where(col(t.id) == row.id, col(t.status) == "closed")
                    .values(status="open", closed_at=None, resolution="", **fresh)
                )
                change = Change.REOPENED
            if done.rowcount != 1:  # type: ignore[attr-defined]  # changed under us: look again
                s.rollback()
                return None
            s.commit()
            s.refresh(row)
            return row, change

        def work(s: Session) -> tuple[Incident, Change]:
            for _ in range(5):
                try:
                    outcome = attempt(s)
                except IntegrityError:  # another writer opened it first
                    s.rollback()
                    continue
                if outcome is not None:
                    return outcome
            raise RuntimeError(f"could not record the incident for {result.key}")  # pragma: no cover

        return await self.store.run(work)

    def _recently_closed(self, s: Session, key: str, now: float) -> Incident | None:
        if self.reopen_window <= 0:
            return None
        q = (
            select(Incident)
            .where(Incident.host == self.host, Incident.key == key, Incident.status == "closed")
            .where(col(Incident.closed_at) >= now - self.reopen_window)
            .order_by(col(Incident.closed_at).desc())
        )
        return s.exec(q).first()

    async def attach_posts(self, incident_id: int, posts: dict[str, dict[str, str]]) -> None:
        def work(s: Session) -> None:
            row = s.get(Incident, incident_id)
            if row is not None:
                row.posts_json = json.dumps(posts)
                s.add(row)
                s.commit()

        await self.store.run(work)

    async def close(
        self, incident_id: int, *, now: float, resolution: str, summary: str | None = None
    ) -> Incident | None:
        """Close an open incident; None when it was not open (already closed by someone else)."""

        def work(s: Session) -> Incident | None:
            values: dict[str, Any] = {"status": "closed", "closed_at": now, "resolution": resolution, "updated_at": now}
            if summary is not None:
                values["summary"] = summary
            t = Incident
            done = s.execute(update(t).where(col(t.id) == incident_id, col(t.status) == "open").values(**values))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                s.rollback()
                return None
            s.commit()
            return s.get(Incident, incident_id)

        return await self.store.run(work)

    async def get(self, incident_id: int) -> Incident | None:
        return await self.store.run(lambda s: s.get(Incident, incident_id))

    async def open_incidents(self) -> list[Incident]:
        def work(s: Session) -> list[Incident]:
            q = select(Incident).where(Incident.host == self.host, Incident.status == "open")
            return list(s.exec(q.order_by(col(Incident.id))).all())

        return await self.store.run(work)

    async def all(self, *, limit: int = 100) -> list[Incident]:
        return await self.store.run(
            lambda s: list(s.exec(select(Incident).order_by(col(Incident.id).desc()).limit(limit)).all())
        )
