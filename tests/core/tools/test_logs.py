"""analyze_logs: lines grouped by pattern and counted per source, errors first; containers read from
the real private dockerd, the journal from journalctl's JSON (systemd does not run here)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from docker.models.containers import Container

from bot.app import Services
from core.errors import ToolError
from core.health.daily import DailyAnalysis
from core.hosts import Inventory
from core.policy import Policy
from core.tools.docker import DockerEngines
from core.tools.logs import LogReader, group_lines, journal_entries, log_tools, pattern_of
from core.tools.registry import ToolSpec
from tests.core.tools.conftest import invoke, wait_for

NOISY = (
    'for i in 1 2 3 4 5 6; do echo "2026-12-03T06:0$i:00Z ERROR connect to 10.0.0.$i:5432 failed after ${i}17 ms"; '
    "done; echo 'WARN cache 4f3a9c0d2e1b miss ratio 0.8'; echo 'worker 7 started'; echo 'worker 8 started'; "
    "echo 'db password=hunter2-secret'; sleep 60"
)


@pytest.fixture
def analyze(policy: Policy, engines: DockerEngines, tmp_path: Path) -> ToolSpec:
    # no systemd here: the marker directory does not exist, so the journal is said to be unreadable
    [spec] = log_tools(policy, Inventory(), engines, timeout=10, systemd_marker=tmp_path / "no-systemd")
    return spec


def test_a_lines_pattern_replaces_what_varies() -> None:
    assert pattern_of("2026-12-03T06:01:00Z ERROR connect to 10.0.0.1:5432 failed after 117 ms") == (
        "ERROR connect to <ip> failed after # ms"
    )
    assert pattern_of("job 3f2c9a1e-1111-4a4a-8b8b-0123456789ab done in 42s") == "job <id> done in #s"
    assert pattern_of("[2026-12-03 06:01:00] cache deadbeef42 miss") == "cache <id> miss"


def test_groups_are_counted_per_source_errors_first() -> None:
    groups = group_lines([
        ("web", "worker 1 started", None), ("web", "worker 2 started", None), ("web", "worker 3 started", None),
        ("web", "ERROR upstream 10.0.0.1 timed out", None), ("web", "ERROR upstream 10.0.0.2 timed out", None),
        ("db", "ERROR upstream 10.0.0.3 timed out", None),
        ("nginx.service", "something odd", 4), ("nginx.service", "", 3),
    ])  # fmt: skip
    assert [(g.source, g.level, g.count) for g in groups] == [
        ("web", "error", 2), ("db", "error", 1), ("nginx.service", "warning", 1), ("web", "info", 3),
    ]  # fmt: skip
    assert groups[0].example == "ERROR upstream 10.0.0.1 timed out"


def test_journal_json_is_read_and_bad_lines_are_skipped() -> None:
    out = "\n".join([
        json.dumps({"_SYSTEMD_UNIT": "nginx.service", "MESSAGE": "bind() failed", "PRIORITY": "3"}),
        "not json",
        json.dumps({"SYSLOG_IDENTIFIER": "kernel", "MESSAGE": [104, 105], "PRIORITY": "6"}),
        json.dumps({"MESSAGE": None}),
    ])  # fmt: skip
    assert journal_entries(out) == [("nginx.service", "bind() failed", 3), ("kernel", "hi", 6)]


@pytest.mark.asyncio
async def test_container_logs_are_grouped_counted_and_redacted(
    analyze: ToolSpec, run_container: Callable[..., Container]
) -> None:
    web = run_container(["sh", "-c", NOISY], name="web")
    run_container(["sh", "-c", "echo 'Traceback (most recent call last):'; sleep 60"], name="api")
    assert wait_for(lambda: b"hunter2" in web.logs())

    text = await invoke(analyze, since="1h", unit="")
    lines = text.splitlines()
    assert lines[0].startswith("logs on local since ") and "(7 error, 1 warning, 3 other lines)" in lines[0]
    assert "journal: not read: systemd is not available on this host" in text  # and the containers still are
    assert "     6x  error   [web] ERROR connect to <ip> failed after # ms" in lines
    assert any("e.g. 2026-12-03T06:01:00Z ERROR connect to 10.0.0.1:5432 failed after 117 ms" in li for li in lines)
    assert "     1x  error   [api] Traceback (most recent call last):" in lines
    assert "     2x  info    [web] worker # started" in lines
    assert "     1x  warning [web] WARN cache <id> miss ratio #.#" in lines
    # errors come before warnings, warnings before the rest
    order = [
        li.split()[1] for li in lines if li.strip().endswith(tuple("abcdefghijklmnopqrstuvwxyz):#>.")) and "x  " in li
    ]
    assert order == sorted(order, key=["error", "warning", "info"].index)
    assert "hunter2" not in text  # the policy redacts what is returned

    one = await invoke(analyze, container="api", unit="-", top=5)
    assert "[api]" in one and "[web]" not in one and "journal" not in one


@pytest.mark.asyncio
async def test_nothing_readable_is_one_clear_error(analyze: ToolSpec) -> None:
    with pytest.raises(ToolError, match="no logs could be read: journal: not read: systemd is not available"):
        await invoke(analyze, container="-")
    with pytest.raises(ToolError, match="cannot read since="):
        await invoke(analyze, since="yesterday-ish")


@pytest.mark.asyncio
async def test_the_daily_report_lists_the_windows_error_patterns(
    services: Services, engines: DockerEngines, run_container: Callable[..., Container], tmp_path: Path
) -> None:
    web = run_container(["sh", "-c", NOISY], name="web")
    assert wait_for(lambda: b"hunter2" in web.logs())
    reader = LogReader(Inventory(), engines, timeout=10, systemd_marker=tmp_path / "no-systemd")
    daily = DailyAnalysis(db_url=services.store.url, out_dir=tmp_path, llm=None, notebook=None, logs=reader,
                          redact=services.policy.redact)  # fmt: skip
    report = await daily.build()
    lines = report.text.splitlines()
    assert any(li.startswith("*Logs* (errors and warnings in the window, by pattern") for li in lines)
    assert "• 6× error [web] ERROR connect to <ip> failed after # ms" in lines
    assert "• 1× warning [web] WARN cache <id> miss ratio #.#" in lines
    assert not any("worker" in li for li in lines)  # ordinary lines are counted, not listed
    assert "(journal: not read: systemd is not available on this host" in report.text
    assert report.fields["figures"]["logs"]["read"] == 1


@pytest.mark.asyncio
async def test_a_report_without_readable_logs_says_so(services: Services, tmp_path: Path) -> None:
    nowhere = Inventory.from_mapping({"local": {"docker": "tcp://127.0.0.1:9"}})
    reader = LogReader(nowhere, DockerEngines(nowhere, timeout=5), timeout=5, systemd_marker=tmp_path / "none")
    daily = DailyAnalysis(db_url=services.store.url, out_dir=tmp_path, llm=None, notebook=None, logs=reader)
    report = await daily.build()
    assert "*Logs*: not read (journal: not read: systemd is not available" in report.text
    assert "containers: not read:" in report.text
