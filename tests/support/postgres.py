"""A private, throw-away PostgreSQL server for tests.

`start_server()` runs Debian's PostgreSQL (``initdb`` and ``postgres`` from
``/usr/lib/postgresql/<version>/bin``, the ``postgresql`` package that
.ci/system-deps.sh installs) on 127.0.0.1 and a free port, with its data
directory and unix socket in a short temp directory such as ``/tmp/opg-k3j9/``.
PostgreSQL refuses to run as root: as root, the server runs as the ``postgres``
user the package creates; otherwise as the current user. Trust authentication,
superuser ``postgres``, no fsync (the data is thrown away). It returns a
`PostgresServer`, or a one-line reason string when a server cannot run here; it
never raises for that.

Pytest use (``conftest.py``)::

    pytest_plugins = ["tests.support.postgres"]

    def test_x(postgres_url: str) -> None:  # postgresql+psycopg://postgres@127.0.0.1:PORT/test_N
        store = Store(postgres_url)

``postgres_server`` is session scoped (one server for the run, about 1.5 s to
start); ``postgres_url`` is a fresh empty database on it for each test (made in
the background while the previous test ran), dropped afterwards, also in the
background (``DROP DATABASE … WITH (FORCE)``: connections a test left open do
not keep it). The product creates its schema in it, as on a first start. The
end of the run prints how many tests ran against the server.

Over both databases: ``store_url`` is parametrized (a SQLite file, then a
fresh PostgreSQL database); ``database_url`` is what tests/conftest.py's
``settings`` takes as DATABASE_URL ("" — SQLite under the data directory —
unless the test is decorated with `on_each_database`, or its module overrides
it with ``store_url``). The PostgreSQL cases carry the ``postgres`` mark
(``-m "not postgres"`` leaves them out).

When the server cannot start, the fixtures skip with the reason;
``ORCHESTRATOR_TEST_POSTGRES=require`` (the default when ``CI=true``) turns the
skip into a failure and ``ORCHESTRATOR_TEST_POSTGRES=skip`` skips without
trying. ``ORCHESTRATOR_TEST_POSTGRES_BIN`` names another directory holding
``initdb`` and ``postgres``. The driver is psycopg (``pip install -e '.[dev]'``).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.support import servers

ENV_MODE = "ORCHESTRATOR_TEST_POSTGRES"
ENV_BIN = "ORCHESTRATOR_TEST_POSTGRES_BIN"
SUPERUSER = "postgres"
DEFAULT_TIMEOUT = 60.0
INSTALL = "install the postgresql package: bash .ci/system-deps.sh"

# Throw-away data: durability off. Enough connections for tests that leave a few pools open.
SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "logging_collector": "off",
}

_PREFIX = "opg-"
_MARKER = ".orchestrator-postgres"
_DEBIAN_BINS = Path("/usr/lib/postgresql")

_live: set[PostgresServer] = set()
_live_lock = threading.Lock()


_tally = servers.Tally("PostgreSQL")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: runs against the session's private PostgreSQL server")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _tally.record(report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    line = _tally.line()
    if line:
        terminalreporter.write_line(line)


# ---- the server --------------------------------------------------------------------------------------
@dataclass(eq=False)
class PostgresServer:
    """A running private PostgreSQL. Call `stop()` (idempotent) when done."""

    host: str
    port: int
    root: Path
    version: str
    startup_seconds: float
    _proc: subprocess.Popen[bytes] = field(repr=False)
    _admin: Any = field(default=None, repr=False)  # a psycopg connection to `postgres`, autocommit
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    # Databases are made (and dropped) in the background, while tests run: one spare is kept ready.
    _background: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="postgres-admin"), repr=False
    )
    _spare: Future[str] | None = field(default=None, repr=False)

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL the product takes as DATABASE_URL."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def running(self) -> bool:
        return self._proc.poll() is None

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """One statement on the `postgres` database, autocommit (CREATE/DROP DATABASE, checks)."""
        with self._lock:
            cursor = self._admin.execute(sql)
            return list(cursor.fetchall()) if cursor.description else []

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (from template1); returns its name."""
        name = name or f"test_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def fresh_database(self) -> str:
        """A new empty database, made while the previous test ran (the next one is started now)."""
        spare, self._spare = self._spare, None
        name = spare.result() if spare is not None else self.create_database()
        self._spare = self._background.submit(self.create_database)
        return name

    def drop_later(self, name: str) -> None:
        """Drop `name` in the background (the next test need not wait for it)."""
        self._background.submit(self.drop_database, name)

    def log_tail(self, lines: int = 5) -> str:
        return servers.tail(self.log_path, lines)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), then delete the temp directory."""
        with _live_lock:
            if self not in _live:
                return
            _live.discard(self)
        self._background.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(Exception):
            self._admin.close()
        servers.stop_process(self._proc, signal.SIGINT)
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(*, timeout: float = DEFAULT_TIMEOUT, bindir: str | Path | None = None) -> PostgresServer | str:
    """Start a private PostgreSQL, or say in one line why it cannot run here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    found = find_bindir(bindir)
    if isinstance(found, str):
        return found
    account = _run_as()
    if isinstance(account, str):
        return account
    servers.sweep_stale(_PREFIX, _MARKER, _stop_stale)
    root = servers.make_root(_PREFIX, _MARKER)
    try:
        return _boot(root, found, account, timeout)
    except Exception as exc:
        shutil.rmtree(root, ignore_errors=True)
        return f"PostgreSQL did not start: {type(exc).__name__}: {exc}"


def find_bindir(bindir: str | Path | None = None) -> Path | str:
    """The directory with initdb and postgres: the newest /usr/lib/postgresql/<v>/bin, or PATH."""
    forced = bindir or os.environ.get(ENV_BIN, "").strip()
    if forced:
        candidates = [Path(forced)]
    else:
        versions = sorted(_DEBIAN_BINS.glob("*/bin"), key=lambda p: _version_key(p.parent.name), reverse=True)
        on_path = shutil.which("initdb")
        candidates = [*versions, *([Path(on_path).parent] if on_path else [])]
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in ("initdb", "postgres")):
            return candidate
    where = forced or f"{_DEBIAN_BINS}/*/bin or PATH"
    return f"PostgreSQL server binaries (initdb, postgres) not found in {where} ({INSTALL})"


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int
    name: str

    @property
    def switch(self) -> dict[str, Any]:
        """Popen arguments that run a child as this account (none when it is us)."""
        if self.uid == os.geteuid():
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _run_as() -> _Account | str:
    """PostgreSQL refuses root: as root, run it as the `postgres` user the Debian package creates."""
    if os.geteuid() != 0:
        return _Account(os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name)
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        return f"running as root and there is no `postgres` user to run PostgreSQL as ({INSTALL})"
    return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _boot(root: Path, bindir: Path, account: _Account, timeout: float) -> PostgresServer | str:
    os.chown(root, account.uid, account.gid)
    data = root / "data"
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    log_path = root / "postgres.log"
    started = time.monotonic()
    with open(log_path, "ab") as log:
        initdb = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--no-sync",
             "--encoding=UTF8", "--locale=C"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
            timeout=timeout, check=False, **account.switch,
        )  # fmt: skip
    if initdb.returncode != 0:
        return f"initdb exited with code {initdb.returncode}: {servers.tail(log_path)}"
    version = (data / "PG_VERSION").read_text().strip()
    failures: list[str] = []
    for _ in range(3):  # the port picked may be taken before the server binds it
        port = servers.free_port()
        argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root)]
        for name, value in SERVER_OPTIONS.items():
            argv += ["-c", f"{name}={value}"]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
                start_new_session=True, preexec_fn=servers.die_with_parent(signal.SIGINT), **account.switch,
            )  # fmt: skip
        admin: list[Any] = []
        problem = servers.wait_until(
            partial(_connect, root, port, admin), alive=partial(_exited, proc, log_path), timeout=timeout
        )
        if problem is None:
            server = PostgresServer("127.0.0.1", port, root, version, time.monotonic() - started, proc, admin[0])
            with _live_lock:
                _live.add(server)
            return server
        servers.stop_process(proc, signal.SIGINT)
        failures.append(problem)
        if "in use" not in problem:
            break
    return "PostgreSQL did not start: " + "; ".join(failures)


def _connect(root: Path, port: int, into: list[Any]) -> str | None:
    import psycopg

    try:
        conn = psycopg.connect(host=str(root), port=port, user=SUPERUSER, dbname="postgres", autocommit=True,
                               connect_timeout=2)  # fmt: skip
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    into.append(conn)
    return None


def _exited(proc: subprocess.Popen[bytes], log_path: Path) -> str | None:
    code = proc.poll()
    if code is None:
        return None
    return f"postgres exited with code {code} during startup: {servers.tail(log_path)}"


def _stop_stale(root: Path) -> None:
    """A server a dead test session left: its postmaster's pid is the first line of postmaster.pid."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
        if pid in servers.pids_referencing(root):
            os.kill(pid, signal.SIGQUIT)
            time.sleep(0.5)
    servers.kill_all(servers.pids_referencing(root))


def _stop_all() -> None:
    with _live_lock:
        live = list(_live)
    for server in live:
        server.stop()


atexit.register(_stop_all)


# ---- pytest ------------------------------------------------------------------------------------------
DATABASES = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"))
# A test whose `database_url` should be SQLite's default, then a fresh PostgreSQL database.
on_each_database = pytest.mark.parametrize("database_url", DATABASES, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL for the whole session (skips with the reason if impossible)."""
    servers.skip_unless_wanted(ENV_MODE, "PostgreSQL")
    result = start_server()
    if isinstance(result, str):
        servers.cannot_start(ENV_MODE, result)
    _tally.server = f"the private PostgreSQL {result.version} on {result.host}:{result.port}"
    try:
        yield result
    finally:
        result.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh empty database for this test (dropped after it): its SQLAlchemy URL."""
    _tally.used_by(request.node.nodeid)
    if not postgres_server.running():
        pytest.fail(f"the private PostgreSQL died: {postgres_server.log_tail()}", pytrace=False)
    name = postgres_server.fresh_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_later(name)


@pytest.fixture(params=DATABASES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database of a store test: once SQLite (a file under tmp_path), once a fresh PostgreSQL database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'orchestrator.db'}"


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    """DATABASE_URL for the bot (tests/conftest.py's `settings`): "" (SQLite under the data directory)
    unless the test is parametrized with `on_each_database`, or its module overrides this fixture."""
    if getattr(request, "param", "sqlite") == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return ""


def libpq(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://`) as libpq, psycopg and pg_dump take it."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def pg_program(name: str) -> str:
    """The path of a PostgreSQL program (pg_dump, pg_restore) of the server the tests run."""
    found = find_bindir()
    assert isinstance(found, Path), found
    return str(found / name)


def restored_rows(dump: Path, url: str, name: str, query: str) -> list[tuple[Any, ...]]:
    """Restore a custom-format dump with pg_restore into a fresh database `name` on the server of
    `url`, and return what `query` reads there; the database is dropped afterwards."""
    import psycopg

    admin = libpq(url).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        target = admin.rsplit("/", 1)[0] + f"/{name}"
        done = subprocess.run(
            [pg_program("pg_restore"), "--no-owner", f"--dbname={target}", str(dump)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        with psycopg.connect(target) as conn:
            return conn.execute(query).fetchall()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
