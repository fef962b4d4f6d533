"""Values outside their range are refused with one line naming the command, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["audit", "--hours", "-5"], "above 0"),
        (["audit", "--hours", "0"], "above 0"),
        (["audit", "--hours", "nan"], "above 0"),
        (["audit", "--hours", "soon"], "'soon' is not a number of hours"),
        (["audit", "--limit", "0"], "at least 1"),
        (["approvals", "--limit", "-1"], "at least 1"),
        (["report", "daily", "--hours", "-3"], "above 0"),
        (["report", "daily", "--hours", "0"], "above 0"),
        (["report", "health", "--hours", "3"], "--hours is for the daily report"),
    ],
)
def test_a_value_out_of_range_is_one_line_and_exit_2(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1 and err.startswith("orchestrator ")
    assert not (tmp_path / "data").exists(), "nothing was opened or created"


def test_an_unknown_command_says_where_to_look(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bogus"])
    assert exited.value.code == 2
    assert "see `orchestrator --help`" in capsys.readouterr().err
