"""Schema creation and upgrades through Alembic, run programmatically on start.

A start on a database already at the newest revision, the common case, does not load Alembic
(nor Mako and Pygments with it): the newest revision is read from the migration files as text
and compared with the database's `alembic_version`. A database a newer version upgraded is
refused in one line, before Alembic would fail on a revision it cannot find.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect

from core.errors import ConfigurationError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x6F726368  # "orch": one schema upgrade at a time on PostgreSQL
_ASSIGNMENT = re.compile(r'^(revision|down_revision)\s*=\s*(None|"[^"\\]*")\s*$', re.MULTILINE)


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@dataclass(frozen=True, slots=True)
class Revisions:
    """The migrations this version ships, read from their files without importing them."""

    known: frozenset[str]
    newest: str


@cache
def shipped_revisions() -> Revisions | None:
    """None when the files do not make one plain line of revisions (a branch, a merge, a form
    this reader does not know): then Alembic decides, as it always may."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        found = dict(_ASSIGNMENT.findall(path.read_text(encoding="utf-8")))
        if set(found) != {"revision", "down_revision"} or found["revision"] == "None":
            return None
        revision = found["revision"].strip('"')
        if revision in revisions:
            return None
        revisions.add(revision)
        if found["down_revision"] != "None":
            revised.add(found["down_revision"].strip('"'))
    heads = revisions - revised
    if len(heads) != 1 or not revised <= revisions:
        return None
    return Revisions(frozenset(revisions), heads.pop())


def newest_revision() -> str | None:
    """The revision no other migration revises (None: see `shipped_revisions`)."""
    shipped = shipped_revisions()
    return shipped.newest if shipped else None


def stamped_revisions(engine: Engine) -> list[str] | None:
    """The revisions the database says its schema is at; None for a database without a schema."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return [row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]


def at_newest(engine: Engine) -> bool:
    """The database's schema is at the newest revision: nothing to upgrade."""
    newest = newest_revision()
    return newest is not None and stamped_revisions(engine) == [newest]


def _refuse_a_newer_schema(engine: Engine, stamped: list[str] | None) -> None:
    """A database a newer version upgraded (the bot was downgraded, or two versions share it)."""
    shipped = shipped_revisions()
    unknown = sorted(set(stamped or ()) - shipped.known) if shipped else []
    if shipped and unknown:
        where = engine.url.render_as_string(hide_password=True)
        raise ConfigurationError(
            f"the database {where} was upgraded by a newer version of AI Orchestrator (schema {', '.join(unknown)}; "
            f"this version knows up to {shipped.newest}): run that newer version, or point "
            "DATABASE_URL / ORCHESTRATOR_DATA_DIR at a database of this one"
        )


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` in one transaction.

    On SQLite the transaction is `BEGIN IMMEDIATE`: it takes the write lock first (waiting
    through the busy timeout for another process), so every statement, DDL included, commits
    or rolls back together, and a reader that committed meanwhile cannot make it fail half way
    (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out). A failed upgrade can be retried.
    On PostgreSQL a transaction-scoped advisory lock keeps concurrent upgrades apart.
    """
    if revision == "head":
        stamped = stamped_revisions(engine)
        if stamped == [newest_revision()]:
            return
        _refuse_a_newer_schema(engine, stamped)
    from alembic import command

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
