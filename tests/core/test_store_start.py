"""Starting on a database another process is using: the schema upgrade waits for the other
writer, and past the busy timeout fails with one line naming the file, never half-migrated.
A database at an older revision is upgraded; one at the newest is left as it is."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect

from core.errors import ConfigurationError, ServiceUnavailable
from core.store import Store
from core.store.migrate import alembic_config, at_newest, newest_revision, upgrade


def hold_write_lock(path: Path, seconds: float, held: threading.Event) -> threading.Thread:
    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE IF NOT EXISTS other_program (x)")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


def test_a_start_waits_for_another_writer_then_creates_every_table(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.db"
    held = threading.Event()
    other = hold_write_lock(path, 0.5, held)
    held.wait(5)
    store = Store(f"sqlite:///{path}", busy_timeout=5)
    try:
        store.migrate_sync()
        tables = set(inspect(store.engine).get_table_names())
    finally:
        store.engine.dispose()
        other.join()
    assert {"run", "approval", "alembic_version", "other_program"} <= tables


def test_a_lock_held_past_the_busy_timeout_is_one_line_and_nothing_is_half_created(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.db"
    held = threading.Event()
    other = hold_write_lock(path, 2.0, held)
    held.wait(5)
    store = Store(f"sqlite:///{path}", busy_timeout=0.3)
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            store.migrate_sync()
    finally:
        other.join()
    message = str(caught.value)
    assert str(path) in message and "locked by another program" in message and "\n" not in message
    try:
        assert set(inspect(store.engine).get_table_names()) == {"other_program"}  # nothing of ours, half made
        store.migrate_sync()  # once the other program is done, the same start works
        assert "run" in inspect(store.engine).get_table_names()
    finally:
        store.engine.dispose()


def test_the_newest_revision_read_from_the_files_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None and newest_revision() == head


def test_a_database_at_an_older_revision_is_upgraded_on_start(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'orchestrator.db'}")
    try:
        upgrade(store.engine, "0006")  # as a bot from before the change workflows left it
        assert not at_newest(store.engine)
        assert "verdict" not in {c["name"] for c in inspect(store.engine).get_columns("run")}
        store.migrate_sync()
        assert at_newest(store.engine)
        assert "verdict" in {c["name"] for c in inspect(store.engine).get_columns("run")}
        with store.engine.connect() as conn:
            stamped = [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
        assert stamped == [newest_revision()]
    finally:
        store.engine.dispose()


def test_a_database_stamped_by_a_newer_bot_is_refused_not_skipped(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'orchestrator.db'}")
    try:
        store.migrate_sync()
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
        assert not at_newest(store.engine)
        with pytest.raises(ConfigurationError) as caught:
            store.migrate_sync()
        message = str(caught.value)
        assert "upgraded by a newer version" in message and "schema 0099" in message
        assert f"knows up to {newest_revision()}" in message and "\n" not in message
    finally:
        store.engine.dispose()
