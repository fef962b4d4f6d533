"""Reports wired to settings and adapters: the daily report posted with its chart to every reports
channel (also when the model is down), `--post`, and the `orchestrator report|jobs` commands."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot import reports
from bot.app import Services
from bot.reports import build_daily, destinations, post_to_channels, prune_report_files, publish_daily
from bot.settings import Settings
from core.events import Report
from tests.core.health.test_daily import seed
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.recording import CHANNEL, RecordingAdapter, health_settings, png_size


@pytest.fixture
def settings(tmp_path: Path, fake_ollama: FakeOllama, workspace: Path) -> Settings:
    return health_settings(tmp_path, fake_ollama.url, workspace)


def chats(services: Services) -> list[RecordingAdapter]:
    return [RecordingAdapter(services.agent, services.gate, platform=p) for p in ("slack", "discord")]


def test_each_adapter_posts_to_its_own_reports_channel(
    services: Services, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    slack, discord = chats(services)
    assert [(d.platform, d.channel) for d in destinations(settings, [slack, discord])] == [
        ("slack", CHANNEL["slack"]), ("discord", CHANNEL["discord"])
    ]  # fmt: skip
    only_slack = settings.model_copy(update={"reports": settings.reports.model_copy(update={"discord_channel": ""})})
    with caplog.at_level(logging.WARNING):
        assert [d.platform for d in destinations(only_slack, [slack, discord])] == ["slack"]
    assert "no reports channel for discord: set reports.discord_channel" in caplog.text


@pytest.mark.asyncio
async def test_the_daily_report_is_posted_with_its_chart_to_each_channel(
    services: Services, settings: Settings, fake_ollama: FakeOllama
) -> None:
    await seed(services, end=time.time())
    fake_ollama.script(Reply(content="- A quiet day apart from one busy hour of ffmpeg."))
    slack, discord = chats(services)
    daily = build_daily(settings, services.llm, redact=services.policy.redact)
    await publish_daily(daily, destinations(settings, [slack, discord]))

    for chat in (slack, discord):
        [post] = chat.reports
        report = post.report
        assert post.channel == CHANNEL[chat.platform] and report is not None and report.kind == "daily"
        assert report.text.startswith("- A quiet day apart from one busy hour of ffmpeg.")
        [chart] = report.attachments
        assert chart.mime == "image/png" and png_size(chart.path) == (1100, 900)
        assert Path(chart.path).parent == settings.data_dir / "reports"
        assert Path(chart.path).stat().st_size > 20_000
    assert len(fake_ollama.chat_requests) == 1  # one summary, posted twice


@pytest.mark.asyncio
async def test_the_daily_report_still_goes_out_when_the_model_is_down(
    services: Services, settings: Settings, fake_ollama: FakeOllama
) -> None:
    await seed(services, end=time.time(), minutes=180)
    fake_ollama.fail_next(503, "model is loading")
    slack, discord = chats(services)
    await publish_daily(build_daily(settings, services.llm), destinations(settings, [slack, discord]))
    for chat in (slack, discord):
        [post] = chat.reports
        assert post.report is not None
        assert post.report.text.startswith("_Summary missing: the model could not be reached (Ollama at")
        assert "*Figures* (19 samples" in post.report.text
        assert png_size(post.report.attachments[0].path) == (1100, 900)


@pytest.mark.asyncio
async def test_post_builds_the_configured_adapters_and_says_which_are_missing(
    services: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[RecordingAdapter] = []

    def make_slack(s: Settings, svc: Services) -> RecordingAdapter:
        made.append(RecordingAdapter(svc.agent, svc.gate, platform="slack"))
        return made[-1]

    import bot.platforms

    monkeypatch.setattr(bot.platforms, "adapter_factories", lambda platforms: {"slack": make_slack})
    out = io.StringIO()
    report = Report(kind="health", title="Health on box: all 5 checks pass", text="✅ `disk:/`: fine")
    assert await post_to_channels(settings, report, out) == 1  # discord could not be reached
    [adapter] = made
    assert [(p.channel, p.report) for p in adapter.reports] == [(CHANNEL["slack"], report)]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"slack: posted to {CHANNEL['slack']} (slack-")
    assert lines[1] == ("discord: not posted: the discord adapter is not available in this installation "
                        "(adapters/discord cannot be imported)")  # fmt: skip

    nowhere = settings.model_copy(update={"reports": settings.reports.model_copy(
        update={"slack_channel": "", "discord_channel": ""})})  # fmt: skip
    out = io.StringIO()
    assert await post_to_channels(nowhere, report, out) == 1
    assert "not posted: no reports channel is configured" in out.getvalue()


def test_old_report_files_are_pruned(tmp_path: Path) -> None:
    old, new, other = tmp_path / "daily-1.png", tmp_path / "daily-2.json", tmp_path / "notes.txt"
    for path in (old, new, other):
        path.write_text("x")
    os.utime(old, (1000, 1000))
    os.utime(other, (1000, 1000))
    assert prune_report_files(tmp_path, older_than=time.time() - 86400) == 1
    assert not old.exists() and new.exists() and other.exists()


def test_settings_from_the_environment_and_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "orchestrator.toml"
    config.write_text(
        '[reports]\nslack_channel = "C-FROM-TOML"\nhealth_interval = 600\ndaily_at = "07:30"\n'
        '[reports.checks]\ndisk_percent = 85\nignore_mounts = ["/boot/efi"]\n'
    )
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(config))
    monkeypatch.setenv("ORCHESTRATOR_HEALTH_INTERVAL", "120")
    monkeypatch.setenv("ORCHESTRATOR_MEMORY_THRESHOLD", "80")
    monkeypatch.setenv("ORCHESTRATOR_DISABLED_CHECKS", "systemd, load")
    r = Settings().reports
    assert (r.slack_channel, r.health_interval, r.daily_at, r.metrics_interval) == ("C-FROM-TOML", 120, "07:30", 60)
    assert (r.checks.disk_percent, r.checks.memory_percent, r.checks.ignore_mounts) == (85, 80, ["/boot/efi"])
    assert r.checks.disabled == ["systemd", "load"]
    assert reports.check_config(Settings()).disabled == frozenset({"systemd", "load"})
    monkeypatch.setenv("ORCHESTRATOR_DAILY_AT", "25:00")
    with pytest.raises(ValueError, match=r"reports\.ORCHESTRATOR_DAILY_AT"):  # the error names the variable
        Settings()


@pytest.mark.asyncio
async def test_report_health_exits_1_when_a_check_fails(settings: Settings) -> None:
    strict = settings.model_copy(update={"reports": settings.reports.model_copy(update={
        "checks": settings.reports.checks.model_copy(update={"disk_percent": 0.1})})})  # fmt: skip
    out = io.StringIO()
    assert await reports.health_command(strict, post=False, out=out) == 1
    assert "🔴 `disk:/" in out.getvalue() and "checks failing" in out.getvalue().splitlines()[0]


# ---- the commands, as a user runs them -----------------------------------------------------
def run_cli(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "SLACK_", "DISCORD_"))}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=env_extra["ORCHESTRATOR_DATA_DIR"].rsplit("/", 1)[0])  # fmt: skip


@pytest.fixture
def cli_env(tmp_path: Path, fake_ollama: FakeOllama) -> dict[str, Any]:
    return {
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "OLLAMA_HOST": fake_ollama.url,
        "ORCHESTRATOR_REPORTS_SLACK_CHANNEL": "C0REPORTS",
        "ORCHESTRATOR_LOAD_FACTOR": "1000",
        "ORCHESTRATOR_DISK_THRESHOLD": "100",
        "ORCHESTRATOR_MEMORY_THRESHOLD": "100",
        "ORCHESTRATOR_MEMORY_PRESSURE_THRESHOLD": "0",
    }


def test_report_and_jobs_commands(cli_env: dict[str, str], fake_ollama: FakeOllama) -> None:
    health = run_cli(["report", "health"], cli_env)
    assert health.returncode == 0, health.stdout + health.stderr
    assert health.stdout.startswith("Health on ") and "✅ `disk:/" in health.stdout

    posted = run_cli(["report", "health", "--post"], cli_env)
    assert posted.returncode == 1
    assert "slack: not posted: Slack is not configured" in posted.stdout  # the real factory, no tokens

    fake_ollama.script(Reply(content="- Nothing happened yet."))
    daily = run_cli(["report", "daily", "--hours", "6"], cli_env)
    assert daily.returncode == 0, daily.stderr
    assert daily.stdout.startswith("Daily report for ") and "- Nothing happened yet." in daily.stdout
    chart = daily.stdout.rstrip().rsplit(": ", 1)[1]
    assert chart.endswith(".png") and png_size(chart) == (1100, 900)

    jobs = run_cli(["jobs"], cli_env)
    assert jobs.returncode == 0
    assert "no process has run the scheduler" in jobs.stdout and "no scheduled jobs yet" in jobs.stdout
