"""The private PostgreSQL the store tests run against: private, fresh per test, and said-why when absent."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy

from tests.support import servers

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

pytest_plugins = ["tests.support.postgres"]


def test_the_server_is_private_and_not_run_as_root(postgres_server: PostgresServer) -> None:
    assert postgres_server.host == "127.0.0.1" and postgres_server.port != 5432
    socket = postgres_server.socket_dir / f".s.PGSQL.{postgres_server.port}"
    assert socket.is_socket() and len(str(socket)) < 108
    [(user, data_directory)] = postgres_server.execute("SELECT current_user, current_setting('data_directory')")
    assert user == "postgres" and Path(data_directory).is_relative_to(postgres_server.root)
    owner = Path(f"/proc/{postgres_server.pid}").stat().st_uid
    assert owner != 0  # PostgreSQL refuses root: as root, the server runs as the `postgres` user
    [(fsync,)] = postgres_server.execute("SHOW fsync")
    assert fsync == "off"  # throw-away data


def test_each_test_gets_a_fresh_database(postgres_server: PostgresServer, postgres_url: str) -> None:
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            tables = conn.execute(sqlalchemy.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
            assert tables.scalar() == 0
            conn.execute(sqlalchemy.text("CREATE TABLE left_behind (id int)"))
    finally:
        engine.dispose()
    assert postgres_url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/test_")


def test_a_database_is_dropped_even_with_a_connection_left_open(postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    engine = sqlalchemy.create_engine(postgres_server.url(name))
    conn = engine.connect()  # a test that forgot to close its store
    conn.execute(sqlalchemy.text("SELECT 1"))
    postgres_server.drop_database(name)
    assert postgres_server.execute(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == []
    with contextlib.suppress(sqlalchemy.exc.DBAPIError):  # the server ended it: closing may say so
        conn.close()
    engine.dispose()


def test_a_missing_server_is_one_line_naming_the_package(tmp_path: Path) -> None:
    from tests.support.postgres import start_server

    reason = start_server(bindir=tmp_path)
    assert isinstance(reason, str)
    assert f"not found in {tmp_path}" in reason and "bash .ci/system-deps.sh" in reason


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, "auto"), ({"CI": "true"}, "require"), ({"CI": "true", "X_MODE": "skip"}, "skip"),
     ({"X_MODE": "require"}, "require"), ({"X_MODE": "0"}, "skip")],
)  # fmt: skip
def test_ci_requires_the_servers_unless_told_otherwise(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("X_MODE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert servers.mode("X_MODE") == expected


def test_what_a_dead_session_left_is_swept_and_a_live_ones_is_not() -> None:
    live = servers.make_root("ot-", ".marker")
    dead = servers.make_root("ot-", ".marker")
    gone = subprocess.Popen(["true"])
    gone.wait()
    (dead / servers.OWNER_FILE).write_text(json.dumps({"owner_pid": gone.pid, "owner_start": "1"}))
    stopped: list[Path] = []
    try:
        assert live.parent == Path(servers.short_tmp())
        assert json.loads((live / servers.OWNER_FILE).read_text())["owner_pid"] == os.getpid()
        servers.sweep_stale("ot-", ".marker", stopped.append)
        assert stopped == [dead] and not dead.exists()
        assert live.exists()  # its owner (this process) is alive: left alone
    finally:
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)
