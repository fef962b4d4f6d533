"""Schema creation and upgrades through Alembic, run programmatically on start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x6F726368  # "orch": one schema upgrade at a time on PostgreSQL


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` in one transaction.

    On SQLite the transaction is `BEGIN IMMEDIATE`: it takes the write lock first (waiting
    through the busy timeout for another process), so every statement, DDL included, commits
    or rolls back together, and a reader that committed meanwhile cannot make it fail half way
    (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out). A failed upgrade can be retried.
    On PostgreSQL a transaction-scoped advisory lock keeps concurrent upgrades apart.
    """
    cfg = alembic_config()
    if engine.url.get_backend_name() == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        return
    with engine.begin() as conn:
        if engine.url.get_backend_name() == "postgresql":
            # Two processes starting on an empty database: the second waits here for the first's
            # upgrade to commit, then finds the schema at head (else: a duplicate alembic_version).
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
