"""Alembic environment: the connection is handed in by core.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import core.health.models  # (registers the health tables)
import core.store.models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata
connection = context.config.attributes.get("connection")

if connection is None:
    from sqlalchemy import create_engine

    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///orchestrator.db"
    connection = create_engine(url).connect()


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name == "apscheduler_jobs")  # owned by APScheduler's job store


context.configure(
    connection=connection, target_metadata=target_metadata, render_as_batch=True, include_name=_include_name
)
with context.begin_transaction():
    context.run_migrations()
