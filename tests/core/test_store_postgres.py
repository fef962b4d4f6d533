"""The store on PostgreSQL where it differs from SQLite: two processes creating the schema at once.

On SQLite the schema upgrade takes the write lock first (BEGIN IMMEDIATE), so a second bot starting
at the same moment waits, then finds the schema at head. On PostgreSQL nothing serializes the two:
both create `alembic_version` and every table, and the second one to commit dies with a unique
violation. Two real processes (Alembic keeps its context in module globals: two upgrades cannot
share one process); the first is held mid-upgrade, right after it created `alembic_version`,
until the second is seen waiting in the database.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import inspect

from core.store import Store
from tests.support import waiting

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[2]
WAIT = 60.0

UPGRADE = """
import pathlib, sys, time
from sqlalchemy import event
from core.store import Store

url, held, release = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
store = Store(url)

def hold(_conn, _cursor, statement, *_args):
    if statement.lstrip().startswith("CREATE TABLE alembic_version") and release.name != "-":
        held.touch()
        while not release.exists():
            time.sleep(0.01)

event.listen(store.engine, "after_cursor_execute", hold)
store.migrate_sync()
"""


def upgrade(url: str, *, held: Path | None = None, release: Path | None = None) -> subprocess.Popen[str]:
    """A process upgrading the schema at `url` (as a bot does on start); held after it created
    alembic_version until `release` exists, when given."""
    argv = [sys.executable, "-c", UPGRADE, url, str(held or "-"), str(release or "-")]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def waiting_on_a_lock(server: PostgresServer, database: str) -> bool:
    query = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND wait_event_type = 'Lock'"
    return bool(server.execute(query)[0][0])


def until(predicate: Callable[[], object], what: str, *procs: subprocess.Popen[str]) -> None:
    """`tests.support.waiting.until` from this synchronous test; a process that ended also ends the
    wait (its exit status says how)."""

    def done() -> bool:
        return bool(predicate()) or any(proc.poll() is not None for proc in procs)

    asyncio.run(waiting.until(done, WAIT, what=what, interval=0.02))


def test_two_processes_starting_at_once_on_an_empty_database_both_start(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    held, release = tmp_path / "held", tmp_path / "release"
    first = upgrade(postgres_url, held=held, release=release)
    second: subprocess.Popen[str] | None = None
    try:
        until(held.exists, "the first process to create alembic_version", first)
        second = upgrade(postgres_url)  # the second bot starts while the first creates the schema
        until(lambda: waiting_on_a_lock(postgres_server, database), "the second to wait", second)
        release.touch()
        first_output, _ = first.communicate(timeout=WAIT)
        second_output, _ = second.communicate(timeout=WAIT)
        assert first.returncode == 0, first_output
        assert second.returncode == 0, second_output
    finally:
        release.touch()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    store = Store(postgres_url)
    try:
        assert {"alembic_version", "auditentry", "approval", "run"} <= set(inspect(store.engine).get_table_names())
    finally:
        store.engine.dispose()
