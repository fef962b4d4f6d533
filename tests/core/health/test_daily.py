"""The daily analysis: the figures from a seeded store, the notebook run headless, the model's summary."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from bot.app import Services
from core.events import Request, Risk
from core.health.analysis import compute_figures, load_window
from core.health.checks import CheckResult
from core.health.daily import DailyAnalysis
from core.health.incidents import IncidentBook
from core.health.metrics import DiskReading, MetricsRecorder, MetricsSampler, MetricsSnapshot, ProcessReading
from core.llm import OllamaLLM
from core.store.models import AuditEntry
from core.tools.registry import Plan
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.recording import png_size

END = 1_800_000_000.0
GIB = 2**30


async def seed(services: Services, *, end: float = END, minutes: int = 24 * 60, every: int = 10) -> None:
    """A day of samples (one every `every` minutes), an incident with its recovery, and audited actions."""
    recorder = MetricsRecorder(services.store, MetricsSampler(host="box"))
    for i, m in enumerate(range(minutes, -1, -every)):
        at = end - m * 60
        busy = 600 <= m <= 660  # a busy hour
        await recorder.save(MetricsSnapshot(
            at=at, host="box", cpu_percent=92.0 if busy else 8.0, cpu_cores=4,
            load=(6.0 if busy else 0.5, 0.4, 0.3), mem_percent=40.0 + i * 0.1, mem_used=4 * GIB, mem_total=16 * GIB,
            swap_percent=1.0, net_sent=1000 * i if m > 300 else 100 * i, net_recv=2000 * i,
            disks=(DiskReading("/", 50.0, 50 * GIB, 100 * GIB), DiskReading("/var", 70 + i / 20, 70 * GIB, 100 * GIB)),
            top=(ProcessReading(7, "ffmpeg", 80.0 if busy else 0.0, GIB), ProcessReading(8, "postgres", 2.0, 3 * GIB)),
        ))  # fmt: skip
    book = IncidentBook(services.store, host="box")
    incident, _ = await book.record_failure(CheckResult("load", "load", False, "load stayed above 4"), end - 40000)
    assert incident.id is not None
    await book.close(incident.id, now=end - 36000, resolution="recovered")
    for action, tool, decider, detail in (
        ("request", "", "", "why is it slow?"),
        ("approved", "run_command", "slack:U0APPROVER", "run systemctl restart ffmpeg-worker"),
        ("tool_run", "run_command", "", "run systemctl restart ffmpeg-worker"),
        ("denied", "write_file", "slack:U0APPROVER", "write /etc/motd"),
    ):
        await services.store.audit(AuditEntry(at=end - 30000, action=action, actor="slack:U1", tool=tool,
                                              decider=decider, detail=detail))  # fmt: skip


@pytest.mark.asyncio
async def test_figures_of_a_day(services: Services) -> None:
    await seed(services)
    window = load_window(services.store.url, end=END, hours=24)  # the busiest host is picked
    assert window.host == "box" and len(window.samples) == 145
    figures = compute_figures(window)
    assert (figures["cpu %"]["peak"], figures["load"]["peak"], figures["load"]["cores"]) == (92.0, 6.0, 4)
    [root, var] = figures["disks"]
    assert (root["mount"], root["change pts"]) == ("/", 0.0)
    assert (var["mount"], var["first %"], var["last %"], var["change pts"]) == ("/var", 70.0, 77.2, 7.2)
    # The counter went down once (a reboot): that step is skipped, not counted negative.
    assert figures["network"]["recv_bytes"] == 2000 * 144 and 0 < figures["network"]["sent_bytes"] < 1000 * 144
    assert figures["top cpu"][0]["name"] == "ffmpeg" and figures["top cpu"][0]["peak cpu %"] == 80.0
    assert figures["top memory"][0] == {"name": "postgres", "peak MiB": 3072}
    [incident] = figures["incidents"]
    assert (incident["key"], incident["status"], incident["resolution"]) == ("load", "closed", "recovered")
    actions = figures["actions"]
    assert actions["counts"] == {"approved": 1, "denied": 1, "request": 1, "tool_run": 1}
    assert actions["approved"][0]["by"] == "slack:U0APPROVER"
    assert json.loads(json.dumps(figures)) == figures


@pytest.mark.asyncio
async def test_the_notebook_runs_headless_and_the_model_summarises_the_figures(
    services: Services, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    await seed(services)
    fake_ollama.script(Reply(thinking="Look at the peaks.", content="- CPU peaked at 92 % during the ffmpeg hour."))
    daily = DailyAnalysis(db_url=services.store.url, out_dir=tmp_path / "reports", llm=services.llm, host="box")
    report = await daily.build(end=END)

    assert report.kind == "daily" and report.title.startswith("Daily report for box")
    assert report.text.startswith("- CPU peaked at 92 % during the ffmpeg hour.")
    assert "• Disks (now, change): / 50.0 % (+0), /var 77.2 % (+7.2)" in report.text
    assert "`load` opened" in report.text and "run systemctl restart ffmpeg-worker (by slack:U0APPROVER)" in report.text
    [chart] = report.attachments
    assert chart.mime == "image/png" and png_size(chart.path) == (1100, 900)
    assert Path(chart.path).stat().st_size > 20_000
    assert report.fields["figures"]["samples"] == 145 and not report.fields["summary_missing"]
    # The model saw the figures and nothing else, with no tools.
    [chat] = fake_ollama.chat_requests
    assert not chat.get("tools") and json.loads(chat["messages"][1]["content"])["cpu %"]["peak"] == 92.0
    # The executed notebook is kept for digging further, with the injected parameters visible.
    executed = json.loads(Path(report.fields["notebook"]).read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "end = 1800000000.0" in "".join(injected[0]["source"])


@pytest.mark.asyncio
async def test_the_report_goes_out_without_the_model_and_without_the_notebook(
    services: Services, tmp_path: Path
) -> None:
    await seed(services, minutes=120)
    down = OllamaLLM(host="http://127.0.0.1:9", model="qwen3:8b", timeout=5)
    daily = DailyAnalysis(db_url=services.store.url, out_dir=tmp_path / "r", llm=down, notebook=tmp_path / "gone.ipynb")
    report = await daily.build(end=END)
    assert report.text.startswith("_Summary missing: the model could not be reached (cannot reach Ollama")
    assert "The analysis notebook failed" in report.text and "*Figures* (13 samples" in report.text
    assert png_size(report.attachments[0].path) == (1100, 900)
    assert report.fields["summary_missing"]


@pytest.mark.asyncio
async def test_an_empty_window_still_makes_a_report(services: Services, tmp_path: Path) -> None:
    daily = DailyAnalysis(db_url=services.store.url, out_dir=tmp_path, llm=None, notebook=None)
    report = await daily.build(end=time.time())
    assert "No metrics were sampled" in report.text and "*Incidents*: none" in report.text
    assert png_size(report.attachments[0].path)[0] == 1100
    assert dataclasses.is_dataclass(report)


@pytest.mark.asyncio
async def test_approvals_decided_through_the_gate_are_named_in_the_report(services: Services, tmp_path: Path) -> None:
    """The audit row of a decision says who and why; what was approved comes from the approval."""
    asker = Request(platform="console", user_id="tester", channel="console", thread="t", text="restart it")
    for summary, approve in (("run systemctl restart nginx", True), ("write /etc/motd", False)):
        plan = Plan(risk=Risk.EXEC, summary=summary, detail=summary, detail_kind="argv")
        row = await services.gate.request(request=asker, run_id=None, tool="run_command", args={"command": summary},
                                          plan=plan, fingerprint=summary)  # fmt: skip
        assert row.id is not None
        await services.gate.decide(row.id, platform="console", user_id="tester", approve=approve, reason="")
    daily = DailyAnalysis(db_url=services.store.url, out_dir=tmp_path, llm=None, notebook=None)
    report = await daily.build(end=time.time() + 1)
    assert "Approved: run systemctl restart nginx (by console:tester)" in report.text
    actions = report.fields["figures"]["actions"]
    assert [(a["what"], a["by"]) for a in actions["denied"]] == [("write /etc/motd", "console:tester")]
