"""Backups end to end: asked in the console (a real `orchestrator ask`, approved at the prompt) and in
Slack (the stand, approved by a reaction). The scripted model calls backup_full (free) then backup_s3
(approval); the upload reaches the local S3 (moto, the real boto3), the dump restores into a fresh
database, the audit has every step and the S3 secret is nowhere. Plus `orchestrator backup now|list`
and the weekly job's report in the reports channel."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.app import backup_engine
from bot.backups import scheduled_backup
from bot.scheduler.jobs import job_specs
from bot.settings import ReportSettings
from core.health.outlets import Destination
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import FakeSlack
from tests.support.cli import run_cli
from tests.support.postgres import libpq, pg_program, restored_rows
from tests.support.s3 import S3Stand
from tests.support.slack_stand import stands

REPORTS = "C0REPORTS"


def shop(url: str, tmp_path: Path) -> dict[str, str]:
    """A database with rows and a configuration directory: what the bot is told to back up."""
    with psycopg.connect(libpq(url)) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric(8,2))")
        conn.execute("INSERT INTO orders SELECT g, g * 2.5 FROM generate_series(1, 20) g")
    conf = tmp_path / "etc-nginx"
    conf.mkdir()
    (conf / "nginx.conf").write_text("worker_processes 4;\n")
    return {
        "ORCHESTRATOR_BACKUP_DATABASES": libpq(url),
        "ORCHESTRATOR_BACKUP_PATHS": str(conf),
        "ORCHESTRATOR_BACKUP_PG_DUMP": pg_program("pg_dump"),
    }


def restored_orders(dump: Path, url: str, name: str) -> list[tuple[Any, ...]]:
    return restored_rows(dump, url, name, "SELECT id, total FROM orders ORDER BY id")


def script_backup_then_upload(fake_ollama: FakeOllama, answer: str) -> None:
    fake_ollama.script(
        Reply(tool_calls=[{"name": "backup_full", "arguments": {}}]),
        Reply(tool_calls=[{"name": "backup_s3", "arguments": {}}]),
        Reply(content=answer),
    )


@pytest.mark.postgres
def test_asked_in_the_console(
    cli_env: dict[str, str], fake_ollama: FakeOllama, postgres_url: str, s3: S3Stand, tmp_path: Path
) -> None:
    env = cli_env | shop(postgres_url, tmp_path) | s3.env()
    script_backup_then_upload(fake_ollama, "Backed up and uploaded.")
    proc = run_cli(["ask", "back everything up and send it to S3"], env, stdin="y\n", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Approve? [y/N]") == 1  # the upload only: taking the backups is free
    assert f"s3://{s3.bucket}/" in proc.stdout and proc.stdout.rstrip().endswith("Backed up and uploaded.")
    assert s3.secret_key not in proc.stdout + proc.stderr
    keys = s3.objects()
    dumps = [k for k in keys if k.endswith(".dump")]
    assert len(dumps) == 1 and f"{dumps[0]}.sha256" in keys and any(k.endswith(".tar.gz") for k in keys)

    # what went up restores
    body = s3.client().get_object(Bucket=s3.bucket, Key=dumps[0])["Body"].read()
    (tmp_path / "got.dump").write_bytes(body)
    assert len(restored_orders(tmp_path / "got.dump", postgres_url, "restored_console")) == 20

    audit = json.loads(run_cli(["audit", "--json"], env).stdout)
    assert [e["action"] for e in audit] == ["request", "tool_run", "approval_requested", "approved", "tool_run"]
    assert [e["tool"] for e in audit if e["action"] == "tool_run"] == ["backup_full", "backup_s3"]
    assert audit[3]["decider"] == "console:cli-user"
    assert s3.secret_key not in json.dumps(audit)
    for model_request in fake_ollama.chat_requests:
        assert s3.secret_key not in json.dumps(model_request)


@pytest.mark.postgres
def test_backup_now_and_list(cli_env: dict[str, str], postgres_url: str, tmp_path: Path) -> None:
    env = cli_env | shop(postgres_url, tmp_path) | {"ORCHESTRATOR_BACKUP_KEEP": "1", "ORCHESTRATOR_BACKUP_OLLAMA": "0"}
    first = run_cli(["backup", "now"], env, timeout=120)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert any(line.startswith("postgres ") and "sha256 " in line and ".dump" in line for line in lines)
    assert any(line.startswith("configs ") and ".tar.gz" in line for line in lines)
    second = run_cli(["backup", "now"], env, timeout=120)
    assert "beyond retention (keep 1) were kept" in second.stdout  # deleting is not the default
    listed = run_cli(["backup", "list"], env)
    assert listed.returncode == 0 and listed.stdout.count("checksum ok") == 4
    assert listed.stdout.count("beyond retention") == 2
    pruned = run_cli(["backup", "now", "--prune"], env, timeout=120)
    assert "deleted 4 backup(s) beyond retention" in pruned.stdout
    rows = json.loads(run_cli(["backup", "list", "--json"], env).stdout)
    assert len(rows) == 2 and not any(r["beyond_retention"] for r in rows)
    [dump] = [r for r in rows if r["kind"] == "postgres"]
    assert len(restored_orders(Path(dump["path"]), postgres_url, "restored_cli")) == 20
    audit = json.loads(run_cli(["audit", "--json"], env).stdout)
    assert [e["tool"] for e in audit] == ["backup_full", "backup_full", "backup_full", "backup_prune"]


def test_backup_now_with_nothing_configured_says_how(cli_env: dict[str, str]) -> None:
    proc = run_cli(["backup", "now"], cli_env | {"ORCHESTRATOR_BACKUP_OLLAMA": "false"})
    assert proc.returncode == 2 and "ORCHESTRATOR_BACKUP_DATABASES" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_asked_in_slack_and_the_weekly_report(
    fake_ollama: FakeOllama, postgres_url: str, s3: S3Stand, tmp_path: Path
) -> None:
    script_backup_then_upload(fake_ollama, "Everything is backed up and in the bucket.")
    settings = shop(postgres_url, tmp_path) | s3.env()
    async with FakeSlack() as slack, stands(slack, fake_ollama, tmp_path) as make:
        stand = await make(**settings, ORCHESTRATOR_BACKUP_AUTO_PRUNE="true", ORCHESTRATOR_BACKUP_KEEP="1")
        ts = await stand.say("back up the shop and upload it")
        approval = await stand.approval_message(ts)
        assert f"s3://{s3.bucket}/" in approval.text and ".dump" in approval.text
        assert s3.objects() == []  # nothing before the approval
        await stand.react("UADMIN", "white_check_mark", approval.ts)
        await stand.answer(ts, contains="Everything is backed up and in the bucket.")
        assert len([k for k in s3.objects() if k.endswith(".dump")]) == 1
        thread = "\n".join(m.text for m in stand.bot_messages(ts))
        assert s3.secret_key not in thread
        runs = [e for e in await stand.services.store.audit_entries() if e.action == "tool_run"]
        assert [e.tool for e in runs] == ["backup_full", "backup_s3"]
        decided = [e for e in await stand.services.store.audit_entries() if e.action == "approved"]
        assert [(e.tool, e.decider) for e in decided] == [("backup_s3", "slack:UADMIN")]

        # the weekly job: backs up again, prunes as configured, does not upload (not allowed), reports sizes
        engine = backup_engine(stand.settings)
        report = await scheduled_backup(
            stand.settings, engine, stand.services.store, [Destination(stand.adapter, REPORTS)],
            redact=stand.services.policy.redact,
        )  # fmt: skip
        assert report.title.startswith("Weekly backup: ")
        posted = "\n".join(m.text for m in slack.messages(REPORTS))
        assert "Weekly backup" in posted and "KiB" in posted and "sha256" in posted
        assert "allowed by configuration (ORCHESTRATOR_BACKUP_AUTO_PRUNE)" in posted
        assert "approve backup_s3 in chat" in posted and s3.secret_key not in posted
        scheduled = [e for e in await stand.services.store.audit_entries() if e.actor == "scheduler"]
        assert [e.tool for e in scheduled] == ["backup_full", "backup_prune"]
        assert len(await engine.entries()) == len(engine.configured())  # keep 1 of each


def test_the_weekly_job_is_scheduled_sunday_at_two() -> None:
    [spec] = [s for s in job_specs(ReportSettings(), backup_cron="0 2 * * sun") if s.id == "backup"]
    assert "0 2 * * sun" in spec.name
    assert not [s for s in job_specs(ReportSettings()) if s.id == "backup"]


@pytest.mark.asyncio
async def test_the_scheduler_runs_the_backup_job_and_posts_its_report(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    from bot.app import build_services
    from bot.scheduler import registry
    from bot.scheduler.wiring import run_scheduler
    from bot.settings import Settings
    from tests.support.recording import RecordingAdapter
    from tests.support.waiting import until_async

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "app.conf").write_text("port=8080\n")
    settings = Settings(
        ORCHESTRATOR_DATA_DIR=str(tmp_path / "data"), OLLAMA_HOST=fake_ollama.url, ORCHESTRATOR_MEMORY="off",
        ORCHESTRATOR_BACKUP_PATHS=str(conf), reports=ReportSettings(slack_channel=REPORTS),
    )  # fmt: skip
    services = await build_services(settings)
    adapter = RecordingAdapter(services.agent, services.gate)
    task = asyncio.create_task(run_scheduler(settings, services, [adapter]))  # type: ignore[list-item]
    try:
        runner = await until_async(_runner(registry, "backup"), 30, what="the scheduler to wire its jobs")
        await runner()
        [posted] = [p for p in adapter.reports if p.report is not None and p.report.kind == "backup"]
        assert posted.channel == REPORTS and posted.text.startswith("Weekly backup: 2 file(s)")
        assert "configs " in posted.text and "ollama " in posted.text and "sha256" in posted.text
        scheduled = [e for e in await services.store.audit_entries() if e.actor == "scheduler"]
        assert [e.tool for e in scheduled] == ["backup_full"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await services.close()


def _runner(registry: Any, job_id: str) -> Any:
    async def found() -> Any:
        return registry.get(job_id)

    return found
