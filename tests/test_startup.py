"""Start-up stays light: what a command never needs is not imported, checked in a fresh process.

A user notices this as start-up time (`orchestrator --help` at once, an `ask` that reaches
the model quickly and stays small); it is asserted here by the modules loaded, not by a
clock. bench/startup.py measures the times themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fakes.ollama import FakeOllama, Reply

ROOT = Path(__file__).resolve().parents[1]

VECTOR_STORE = ("chromadb", "onnxruntime", "tokenizers", "numpy")
REPORTS = ("matplotlib", "nbclient", "nbformat", "jupyter_client")
DOCKER_SDK = ("docker", "paramiko")
SLACK = ("slack_bolt", "slack_sdk")
DISCORD = ("discord",)
SCHEDULER = ("apscheduler",)
DATABASE = ("sqlalchemy", "sqlmodel", "alembic")
MODEL_CLIENT = ("ollama", "httpx")
SETTINGS = ("pydantic_settings",)

NOT_FOR_HELP = VECTOR_STORE + REPORTS + DOCKER_SDK + SLACK + DISCORD + SCHEDULER + DATABASE + MODEL_CLIENT + SETTINGS
NOT_FOR_ASK = VECTOR_STORE + REPORTS + DOCKER_SDK + SLACK + DISCORD + SCHEDULER


def loaded_by(code: str, env: dict[str, str] | None = None, *, cwd: Path = ROOT) -> set[str]:
    """The top-level packages in sys.modules once `code` has run in a new interpreter (also if it exits)."""
    script = textwrap.dedent(
        """
        import atexit, json, sys
        atexit.register(lambda: print("\\nMODULES " + json.dumps(sorted({m.split(".")[0] for m in sys.modules}))))
        """
    ) + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    last = proc.stdout.rstrip().rsplit("\n", 1)[-1]
    assert proc.returncode == 0 and last.startswith("MODULES "), f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return set(json.loads(last.removeprefix("MODULES ")))


def bot_env(tmp_path: Path, fake: FakeOllama, **extra: str) -> dict[str, str]:
    drop = ("ORCHESTRATOR_", "SLACK_", "DISCORD_", "OLLAMA_", "CHROMA_", "DATABASE_URL")
    root = tmp_path / "ws"
    root.mkdir(exist_ok=True)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | {
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "ORCHESTRATOR_FILE_ROOTS": str(root),
        "ORCHESTRATOR_CONSOLE_APPROVERS": "cli-user",
        "OLLAMA_HOST": fake.url,
        "USER": "cli-user",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@pytest.mark.parametrize("argv", [["--help"], ["ask", "--help"], ["memory", "list", "--help"], ["pairing", "--help"]])
def test_help_loads_no_database_model_client_or_sdk(argv: list[str]) -> None:
    loaded = loaded_by(f"from bot.cli import main\nmain({argv!r})")
    assert loaded & set(NOT_FOR_HELP) == set()


def test_an_ask_with_memory_off_loads_no_vector_store_docker_reports_or_chat_sdk(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Reply(tool_calls=[{"name": "disk_usage", "arguments": {}}]),  # a tool runs; Docker's are registered too
        Reply(content="Plenty of room."),
    )
    env = bot_env(tmp_path, fake_ollama, ORCHESTRATOR_MEMORY="off")
    loaded = loaded_by("import sys\nfrom bot.cli import main\nsys.exit(main(['ask', 'how full is the disk?']))", env)
    assert len(fake_ollama.chat_requests) == 2, "the ask ran to its answer"
    assert "docker_ps" in str(fake_ollama.chat_requests[0]["tools"])
    assert loaded & set(NOT_FOR_ASK) == set()
    assert {"sqlalchemy", "ollama"} <= loaded  # what an ask does need, so the check above means something


def test_a_second_ask_on_a_database_at_the_newest_schema_does_not_load_alembic(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    fake_ollama.default_reply = Reply(content="Fine.")
    env = bot_env(tmp_path, fake_ollama, ORCHESTRATOR_MEMORY="off")
    ask = "import sys\nfrom bot.cli import main\nsys.exit(main(['ask', 'how full is the disk?']))"
    assert "alembic" in loaded_by(ask, env)  # the first start creates the schema
    again = loaded_by(ask, env)
    assert "alembic" not in again and "sqlalchemy" in again
    assert len(fake_ollama.chat_requests) == 2  # both asks reached the model


def test_building_the_services_with_memory_off_loads_no_vector_store_or_docker(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    env = bot_env(tmp_path, fake_ollama, ORCHESTRATOR_MEMORY="off")
    code = """
        import asyncio
        from bot.app import build_services
        from bot.settings import load_settings

        async def build() -> None:
            services = await build_services(load_settings(), platforms=["console"])
            assert services.memory is None and "docker_ps" in services.tools.names()
            await services.close()

        asyncio.run(build())
    """
    assert loaded_by(code, env) & set(NOT_FOR_ASK) == set()


@pytest.mark.parametrize(
    ("platform", "other"), [("slack", DISCORD), ("discord", SLACK)], ids=["slack-not-discord", "discord-not-slack"]
)
def test_run_imports_only_the_platform_it_serves(platform: str, other: tuple[str, ...]) -> None:
    code = f"""
        from bot.runner import adapter_factories
        assert list(adapter_factories([{platform!r}])) == [{platform!r}]
    """
    assert loaded_by(code) & set(other + VECTOR_STORE + REPORTS + DOCKER_SDK + SCHEDULER) == set()


def test_the_report_code_loads_the_notebook_and_chart_libraries_only_when_it_runs() -> None:
    # What the scheduler imports when it starts; the daily analysis imports the rest when it runs.
    assert loaded_by("import bot.reports, bot.scheduler") & set(REPORTS + VECTOR_STORE + DOCKER_SDK) == set()


def test_the_docker_sdk_loads_on_the_first_docker_call_and_its_errors_still_read_clearly() -> None:
    code = """
        import asyncio, sys
        from bot.app import make_policy
        from bot.settings import Settings
        from core.hosts import Inventory
        from core.tools.docker import DockerEngines, docker_tools
        from core.errors import ToolError

        engines = DockerEngines(Inventory.from_mapping({}), timeout=2)
        assert docker_tools(make_policy(Settings()), engines)
        assert "docker" not in sys.modules, "registered, not yet called"
        try:
            asyncio.run(engines.call("local", lambda client: client.ping()))
        except ToolError as exc:
            assert str(exc).startswith("cannot reach the Docker engine on host local ("), exc
            assert str(exc).endswith("): Connection refused"), exc
        else:
            raise AssertionError("a closed port answered")
    """
    env = dict(os.environ) | {"DOCKER_HOST": "tcp://127.0.0.1:9"}  # nothing listens there: an error, at once
    assert "docker" in loaded_by(code, env)
