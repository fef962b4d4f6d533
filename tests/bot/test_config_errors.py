"""An operator's mistakes, as they meet them: the real `orchestrator` command with the real bad
configuration says what is wrong and how to fix it in one line, and exits 2 (1 when a service
it needs does not answer). Never a traceback."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.cli import run_cli

EXIT_MISTAKE, EXIT_FAILED, EXIT_PIPE = 2, 1, 141
HAS_PSYCOPG = importlib.util.find_spec("psycopg") is not None


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "ws"
    root.mkdir()
    return {
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "ORCHESTRATOR_FILE_ROOTS": str(root),
        "OLLAMA_HOST": "http://127.0.0.1:9",  # nothing here needs the model
        "_CWD": str(tmp_path),  # where ./orchestrator.toml is looked for
    }


def one_line(proc: subprocess.CompletedProcess[str], status: int = EXIT_MISTAKE) -> str:
    """The command failed with `status` and said why in a single line, without a traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("orchestrator"), lines[0]
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """A directory this user cannot create files in. root ignores permissions: it gets the immutable flag."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root where `chattr +i` is refused: no directory is read-only for root here")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# ---- orchestrator.toml and ORCHESTRATOR_CONFIG ------------------------------------------------
def test_malformed_toml_names_the_file_and_the_line(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "orchestrator.toml"
    config.write_text('model = "qwen3:8b"\nmax_iterations = 4\nthink = tru\n')
    for command in (["audit"], ["ask", "hi"], ["doctor"]):
        line = one_line(run_cli(command, env))
        assert f"{config} line 3, column 9 is not valid TOML" in line, line


def test_a_bad_value_in_the_toml_is_blamed_on_the_toml(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "orchestrator.toml"
    config.write_text('model = "qwen3:8b"\nmax_iterations = "lots"\n')
    line = one_line(run_cli(["audit"], env))
    assert line == (
        f'orchestrator: invalid configuration: max_iterations = "lots" ({config} line 2): '
        "Input should be a valid integer, unable to parse string as an integer (see docs/configuration.md)"
    )
    env["ORCHESTRATOR_MAX_ITERATIONS"] = "500"  # the environment wins, so its value is the one blamed
    line = one_line(run_cli(["audit"], env))
    assert "ORCHESTRATOR_MAX_ITERATIONS=500 (environment variable): Input should be less than or equal to 100" in line

    config.write_text('[reports]\nslack_channel = "C1"\ndaily_at = "25:00"\n\n[reports.checks]\ndisk_percent = 120\n')
    del env["ORCHESTRATOR_MAX_ITERATIONS"]
    proc = run_cli(["audit"], env)
    assert proc.returncode == EXIT_MISTAKE and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "orchestrator: invalid configuration (see docs/configuration.md):"
    assert f'  reports.daily_at = "25:00" ({config} line 3): String should match pattern' in lines[1]
    assert (
        lines[2] == f"  reports.checks.disk_percent = 120 ({config} line 6): Input should be less than or equal to 100"
    )
    assert "ORCHESTRATOR_" not in proc.stderr


def test_a_misspelt_toml_key_is_refused_with_the_nearest_name(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "orchestrator.toml"
    config.write_text('model = "qwen3:8b"\nmax_iteration = 5\n')
    assert one_line(run_cli(["ask", "hi"], env)) == (
        f"orchestrator: {config} line 2: unknown setting max_iteration (did you mean max_iterations?); "
        "see docs/configuration.md"
    )
    config.write_text('[reports.checks]\ndisk_percnt = 80\n\n[hosts.web1]\nssh = "ops@web1"\nsh_port = 2222\n')
    proc = run_cli(["audit"], env)
    assert proc.returncode == EXIT_MISTAKE and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "orchestrator: unknown settings (see docs/configuration.md):",
        f"  {config} line 2: unknown setting reports.checks.disk_percnt (did you mean reports.checks.disk_percent?)",
        f"  {config} line 6: unknown setting hosts.web1.sh_port (did you mean hosts.web1.ssh_port?)",
    ]


def test_a_missing_orchestrator_config_file_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    env["ORCHESTRATOR_CONFIG"] = str(tmp_path / "etc" / "orchestrator.toml")
    assert one_line(run_cli(["audit"], env)) == (
        f"orchestrator: ORCHESTRATOR_CONFIG names {tmp_path / 'etc' / 'orchestrator.toml'}, which does not exist: "
        "point ORCHESTRATOR_CONFIG at your orchestrator.toml, or unset it"
    )


# ---- the data directory -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "command", [["audit"], ["ask", "hi"], ["chat"], ["report", "health"], ["report", "daily"], ["jobs"]]
)
def test_an_impossible_data_dir_is_one_line(env: dict[str, str], command: list[str]) -> None:
    env["ORCHESTRATOR_DATA_DIR"] = "/proc/orchestrator"
    assert one_line(run_cli(command, env, stdin="hi\n")) == (
        "orchestrator: cannot use the data directory /proc/orchestrator (No such file or directory): "
        "set ORCHESTRATOR_DATA_DIR to a directory this user can write"
    )


def test_a_data_dir_set_in_the_toml_is_blamed_on_the_toml(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    config = tmp_path / "orchestrator.toml"
    config.write_text(f'model = "qwen3:8b"\ndata_dir = "{tmp_path / "not-a-dir"}"\n')
    del env["ORCHESTRATOR_DATA_DIR"]
    assert one_line(run_cli(["audit"], env)) == (
        f"orchestrator: cannot use the data directory {tmp_path / 'not-a-dir'} (a file, not a directory): "
        f"set data_dir in {config} line 2 to a directory this user can write"
    )


def test_an_unwritable_data_dir_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with read_only(data):
        for command in (["audit"], ["ask", "hi"]):
            line = one_line(run_cli(command, env))
            assert line.startswith(f"orchestrator: cannot use the data directory {data} (")
            assert line.endswith("): set ORCHESTRATOR_DATA_DIR to a directory this user can write")


def test_doctor_fails_the_memory_of_an_impossible_data_dir(env: dict[str, str]) -> None:
    env["ORCHESTRATOR_DATA_DIR"] = "/proc/orchestrator"
    proc = run_cli(["doctor"], env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "[FAIL] data dir: /proc/orchestrator: No such file or directory" in proc.stdout
    assert "[FAIL] memory: /proc/orchestrator/memory cannot be written (No such file or directory)" in proc.stdout
    assert "[ok  ] memory" not in proc.stdout


# ---- the database -----------------------------------------------------------------------------
def test_a_garbage_database_url_is_one_line(env: dict[str, str]) -> None:
    env["DATABASE_URL"] = "garbage"
    assert one_line(run_cli(["audit"], env)) == (
        "orchestrator: invalid configuration: DATABASE_URL=garbage (environment variable): not a database URL; "
        "use sqlite:////path/to/orchestrator.db or postgresql+psycopg://user:password@host/db "
        "(see docs/configuration.md)"
    )


@pytest.mark.skipif(not HAS_PSYCOPG, reason="psycopg is not installed (the postgres extra): see the next test")
def test_an_unreachable_postgresql_is_one_line(env: dict[str, str]) -> None:
    port = closed_port()
    env["DATABASE_URL"] = f"postgresql+psycopg://bot:s3cret-pw@127.0.0.1:{port}/orchestrator"
    for command in (["audit"], ["ask", "hi"]):
        line = one_line(run_cli(command, env), EXIT_FAILED)
        assert line.startswith(
            f"orchestrator: cannot reach the database at postgresql+psycopg://bot:***@127.0.0.1:{port}"
        )
        assert "Connection refused" in line and "s3cret-pw" not in line


@pytest.mark.skipif(HAS_PSYCOPG, reason="psycopg is installed here")
def test_a_missing_psycopg_says_which_extra_to_install(env: dict[str, str]) -> None:
    env["DATABASE_URL"] = "postgresql+psycopg://bot:s3cret-pw@127.0.0.1:5432/orchestrator"
    for command in (["audit"], ["ask", "hi"]):
        assert one_line(run_cli(command, env)) == (
            "orchestrator: postgresql+psycopg://bot:***@127.0.0.1:5432/orchestrator needs the PostgreSQL driver "
            "psycopg, which is not installed: install the `postgres` extra: pip install -e '.[postgres]'"
        )


# ---- a chat platform that does not answer -----------------------------------------------------
def test_run_discord_with_discord_unreachable_is_one_line(env: dict[str, str]) -> None:
    port = closed_port()
    api = f"http://127.0.0.1:{port}/api/v10"  # DISCORD_API_URL: what the fake Discord is reached through too
    env |= {"DISCORD_TOKEN": "MTAwMA.fake.token", "DISCORD_APPROVERS": "4001", "DISCORD_API_URL": api,
            "ORCHESTRATOR_SCHEDULER": "false"}  # fmt: skip
    proc = run_cli(["run", "discord"], env)
    assert proc.returncode == EXIT_FAILED and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"orchestrator run discord: cannot reach Discord at {api} (Cannot connect to host")
    assert lines[-1].endswith("; check the network or proxy, and DISCORD_API_URL")
    assert len(lines) < 20 and all(len(line) < 400 for line in lines)  # the start-up log, then the reason


# ---- a reader that goes away ------------------------------------------------------------------
@pytest.mark.parametrize("args", [["audit"], ["audit", "--json"]])
def test_audit_into_a_closed_pipe_exits_quietly(env: dict[str, str], args: list[str]) -> None:
    """`orchestrator audit | head -1`: once head has its line it closes the pipe, and every later write
    fails. Here the pipe is closed before the command writes at all, so every run meets it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "DISCORD_", "SLACK_"))}
    child_env |= {k: v for k, v in env.items() if not k.startswith("_")}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bot", *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
            env=child_env, cwd=env["_CWD"], timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == EXIT_PIPE  # what a program killed by SIGPIPE reports, as `git log | head -1` does
