"""An operator adds read-only programs in orchestrator.toml, in the table's own format."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.app import make_policy, make_sandbox
from bot.settings import Settings
from core.policy import Verdict


def _settings(tmp_path: Path, **extra: object) -> Settings:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return Settings(data_dir=tmp_path / "data", file_roots=[root], **extra)  # type: ignore[arg-type]


def test_an_added_program_runs_freely_only_with_its_listed_options(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        commands={"uptime": {"options": {"-p": "flag"}}, "nproc": {"options": {}, "operands": []}},
    )
    policy = make_policy(settings)
    assert policy.check_command("uptime -p").verdict is Verdict.READ
    assert policy.check_command("uptime -s").verdict is Verdict.APPROVAL  # the entry replaced the shipped one
    assert policy.check_command("nproc --all").verdict is Verdict.APPROVAL


def test_read_commands_are_free_with_plain_operands_only(tmp_path: Path) -> None:
    policy = make_policy(_settings(tmp_path, read_commands=["sleep"]))
    assert policy.check_command("sleep 1").verdict is Verdict.READ
    assert policy.check_command("sleep --help").verdict is Verdict.APPROVAL
    assert policy.check_command("sleep /etc/shadow").verdict is Verdict.APPROVAL


def test_a_mistake_in_an_entry_names_the_entry_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        _settings(tmp_path, commands={"smartctl": {"options": {"-a": "flag"}, "operand": ["meta"]}})
    assert "smartctl" in str(err.value) and "operand" in str(err.value)
    with pytest.raises(ValidationError) as err:
        _settings(tmp_path, commands={"smartctl": {"options": {"-a": "blob"}}})
    assert "blob" in str(err.value)


def test_the_sandbox_hides_the_bots_own_data_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-fake\n")
    settings = _settings(tmp_path)
    hidden = make_sandbox(settings).config.hidden
    assert settings.data_dir in hidden
    assert (tmp_path / ".env").resolve() in hidden
    off = make_sandbox(_settings(tmp_path, sandbox="off"))
    assert off.config.mode == "off"
