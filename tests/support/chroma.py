"""A private, throw-away Chroma server for tests.

`start_server()` runs ``chroma run --path DIR --host 127.0.0.1 --port P``, the
server that comes with the chromadb package (``.venv/bin/chroma``), with its
data in a short temp directory such as ``/tmp/och-k3j9/``, and waits for its
heartbeat. It returns a `ChromaServer`, or a one-line reason string when a
server cannot run here; it never raises for that.

Pytest use (``conftest.py``)::

    pytest_plugins = ["tests.support.chroma"]

    def test_x(chroma_server_clean: ChromaServer) -> None:
        store = MemoryStore(host=chroma_server_clean.host, port=chroma_server_clean.port, embedding=...)

``chroma_server`` is session scoped (one server for the run, about 2 s to
start); ``chroma_server_clean`` is the same server with every collection
deleted before and after the test; ``chroma_env`` is ``chroma_server_clean``
with ``$CHROMA_HOST``/``$CHROMA_PORT`` set, as an operator configures the bot.
Tests through the server carry the ``chroma_server`` mark; the end of the run
prints how many used the server.

When the server cannot start, the fixtures skip with the reason;
``ORCHESTRATOR_TEST_CHROMA=require`` (the default when ``CI=true``) turns the
skip into a failure and ``ORCHESTRATOR_TEST_CHROMA=skip`` skips without trying.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.support import servers

ENV_MODE = "ORCHESTRATOR_TEST_CHROMA"
DEFAULT_TIMEOUT = 60.0
HEARTBEAT = "/api/v2/heartbeat"

_PREFIX = "och-"
_MARKER = ".orchestrator-chroma"

_live: set[ChromaServer] = set()
_live_lock = threading.Lock()


_tally = servers.Tally("Chroma server")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chroma_server: runs the memory through the session's private Chroma server")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _tally.record(report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    line = _tally.line()
    if line:
        terminalreporter.write_line(line)


@dataclass(eq=False)
class ChromaServer:
    """A running private Chroma server. Call `stop()` (idempotent) when done."""

    host: str
    port: int
    root: Path
    startup_seconds: float
    _proc: subprocess.Popen[bytes] = field(repr=False)
    _client: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The settings that point the bot at this server."""
        return {"CHROMA_HOST": self.host, "CHROMA_PORT": str(self.port)}

    @property
    def log_path(self) -> Path:
        return self.root / "chroma.log"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def running(self) -> bool:
        return self._proc.poll() is None

    def client(self) -> Any:
        """A chromadb HttpClient on this server (kept for the session: do not close it)."""
        if self._client is None:
            import chromadb
            from chromadb.config import Settings

            self._client = chromadb.HttpClient(
                host=self.host, port=self.port, settings=Settings(anonymized_telemetry=False)
            )
        return self._client

    def collections(self) -> list[str]:
        return sorted(c.name for c in self.client().list_collections())

    def reset(self) -> None:
        """Delete every collection (a fresh server for the next test)."""
        client = self.client()
        for collection in client.list_collections():
            client.delete_collection(collection.name)

    def log_tail(self, lines: int = 5) -> str:
        return servers.tail(self.log_path, lines)

    def stop(self) -> None:
        with _live_lock:
            if self not in _live:
                return
            _live.discard(self)
        servers.stop_process(self._proc)
        shutil.rmtree(self.root, ignore_errors=True)


def find_cli() -> str | None:
    """The `chroma` command of the chromadb installed beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if os.access(beside, os.X_OK) else shutil.which("chroma")


def start_server(*, timeout: float = DEFAULT_TIMEOUT) -> ChromaServer | str:
    """Start a private Chroma server, or say in one line why it cannot run here."""
    cli = find_cli()
    if cli is None:
        return "the `chroma` command is not installed (it comes with the chromadb package: pip install -e .)"
    servers.sweep_stale(_PREFIX, _MARKER, lambda root: servers.kill_all(servers.pids_referencing(root)))
    root = servers.make_root(_PREFIX, _MARKER)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "LANG": "C.UTF-8",
           "NO_COLOR": "1", "ANONYMIZED_TELEMETRY": "False"}  # fmt: skip
    started = time.monotonic()
    failures: list[str] = []
    for _ in range(3):  # the port picked may be taken before the server binds it
        port = servers.free_port()
        log_path = root / "chroma.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [cli, "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
                start_new_session=True, preexec_fn=servers.die_with_parent(),
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}{HEARTBEAT}"
        problem = servers.wait_until(partial(_heartbeat, url), alive=partial(_exited, proc, log_path), timeout=timeout)
        if problem is None:
            server = ChromaServer("127.0.0.1", port, root, time.monotonic() - started, proc)
            with _live_lock:
                _live.add(server)
            return server
        servers.stop_process(proc)
        failures.append(problem)
        if "in use" not in problem.lower():
            break
    shutil.rmtree(root, ignore_errors=True)
    return "the Chroma server did not start: " + "; ".join(failures)


def _heartbeat(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # a fixed http://127.0.0.1 URL
            return None if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def _exited(proc: subprocess.Popen[bytes], log_path: Path) -> str | None:
    code = proc.poll()
    if code is None:
        return None
    return f"chroma exited with code {code} during startup: {servers.tail(log_path)}"


def _stop_all() -> None:
    with _live_lock:
        live = list(_live)
    for server in live:
        server.stop()


atexit.register(_stop_all)


# ---- pytest ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chroma_server() -> Iterator[ChromaServer]:
    """One private Chroma server for the whole session (skips with the reason if impossible)."""
    servers.skip_unless_wanted(ENV_MODE, "Chroma server")
    result = start_server()
    if isinstance(result, str):
        servers.cannot_start(ENV_MODE, result)
    _tally.server = f"the private Chroma server on {result.host}:{result.port}"
    try:
        yield result
    finally:
        result.stop()


@pytest.fixture
def chroma_server_clean(chroma_server: ChromaServer, request: pytest.FixtureRequest) -> Iterator[ChromaServer]:
    """`chroma_server` with no collection before the test, and none left after it."""
    _tally.used_by(request.node.nodeid)
    if not chroma_server.running():
        pytest.fail(f"the private Chroma server died: {chroma_server.log_tail()}", pytrace=False)
    chroma_server.reset()
    try:
        yield chroma_server
    finally:
        with contextlib.suppress(Exception):
            chroma_server.reset()


@pytest.fixture
def chroma_env(chroma_server_clean: ChromaServer, monkeypatch: pytest.MonkeyPatch) -> ChromaServer:
    """`chroma_server_clean` with $CHROMA_HOST and $CHROMA_PORT pointing at it."""
    for name, value in chroma_server_clean.env.items():
        monkeypatch.setenv(name, value)
    return chroma_server_clean
