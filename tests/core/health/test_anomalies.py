"""Metric anomalies in the daily report: each hour of the day against the same hour on the previous
days, computed from the store's samples without the model, with the evidence in the report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.app import Services
from core.health.analysis import MAX_ANOMALIES, MIN_BASELINE_DAYS, Window, anomalies, load_window
from core.health.daily import DailyAnalysis
from core.health.metrics import DiskReading, MetricsRecorder, MetricsSampler, MetricsSnapshot
from tests.fakes.ollama import FakeOllama, Reply

GIB = 2**30
DAY = 86400.0
# The end of the report's window: local midnight, so the window is one calendar day of 24 hours.
END = time.mktime((2027, 1, 15, 0, 0, 0, 0, 0, -1))


def at(day: int, hour: int, minute: int = 0) -> float:
    """Local time `day` days before END's date (day 1 is the window's own day), at hour:minute."""
    return time.mktime((2027, 1, 15 - day, hour, minute, 0, 0, 0, -1))


def sample(ts: float, *, cpu: float, load: float = 0.5, mem: float = 40.0) -> dict[str, float]:
    return {"at": ts, "cpu_percent": cpu, "mem_percent": mem, "swap_percent": 1.0, "load1": load}


def usual_cpu(day: int, hour: int) -> float:
    return 10.0 + (day % 3)  # 10 to 12 %: a small spread from day to day


def week(days: int, *, window_day: dict[int, float] | None = None) -> Window:
    """`days` days of history before the window (every 20 minutes), then the window's own day; the
    window's cpu is the usual one except for the hours in `window_day`."""
    window_day = window_day or {}
    baseline = [sample(at(d, h, m), cpu=usual_cpu(d, h)) for d in range(days + 1, 1, -1) for h in range(24)
                for m in (0, 20, 40)]  # fmt: skip
    samples = [sample(at(1, h, m), cpu=window_day.get(h, usual_cpu(1, h))) for h in range(24) for m in (0, 20, 40)]
    return Window("box", END - DAY, END, samples=samples, baseline=baseline)


def test_an_hour_far_above_the_same_hour_on_the_previous_days_is_a_change() -> None:
    found = anomalies(week(7, window_day={14: 85.0}))
    assert found["history_days"] == 7
    [change] = found["changes"]
    assert (change["metric"], change["hour"], change["direction"], change["value"]) == (
        "cpu %",
        "14:00",
        "higher",
        85.0,
    )
    assert 10.0 <= change["usual"] <= 12.0 and change["days"] == 7


def test_a_drop_counts_too_and_the_biggest_change_comes_first() -> None:
    found = anomalies(week(7, window_day={3: 70.0, 9: 45.0}))
    assert [(c["hour"], c["direction"]) for c in found["changes"]] == [("03:00", "higher"), ("09:00", "higher")]
    quiet_host = week(7)
    for s in quiet_host.baseline:
        s["cpu_percent"] = 60.0
    drops = anomalies(quiet_host)["changes"]  # every hour fell: the report keeps the first MAX_ANOMALIES
    assert len(drops) == MAX_ANOMALIES and all(c["direction"] == "lower" and c["usual"] == 60.0 for c in drops)


def test_an_ordinary_day_and_small_wobbles_are_not_changes() -> None:
    assert anomalies(week(7))["changes"] == []
    # 8 points above a spread of about 1: many deviations, but under the 15-point floor worth saying
    assert anomalies(week(7, window_day={10: 20.0}))["changes"] == []


def test_without_enough_history_nothing_is_claimed() -> None:
    found = anomalies(week(MIN_BASELINE_DAYS - 1, window_day={14: 95.0}))
    assert found["changes"] == [] and found["history_days"] == MIN_BASELINE_DAYS - 1


async def seed_week(services: Services, *, spike_hour: int) -> None:
    recorder = MetricsRecorder(services.store, MetricsSampler(host="box"))
    for day in range(8, 0, -1):
        for hour in range(24):
            for minute in (0, 30):
                busy = day == 1 and hour == spike_hour
                await recorder.save(MetricsSnapshot(
                    at=at(day, hour, minute), host="box", cpu_percent=88.0 if busy else usual_cpu(day, hour),
                    cpu_cores=4, load=(3.5 if busy else 0.4, 0.4, 0.3), mem_percent=40.0, mem_used=4 * GIB,
                    mem_total=16 * GIB, swap_percent=1.0, net_sent=0, net_recv=0,
                    disks=(DiskReading("/", 50.0, 50 * GIB, 100 * GIB),), top=(),
                ))  # fmt: skip


@pytest.mark.asyncio
async def test_the_daily_report_says_what_changed_with_its_evidence(
    services: Services, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    await seed_week(services, spike_hour=14)
    window = load_window(services.store.url, end=END, hours=24, host="box")
    assert len(window.samples) == 48 and len(window.baseline) == 7 * 48  # the week before, metrics only

    fake_ollama.script(Reply(content="- CPU and load were far above the usual at 14:00."))
    daily = DailyAnalysis(db_url=services.store.url, out_dir=tmp_path / "reports", llm=services.llm, host="box")
    report = await daily.build(end=END)

    assert "*What changed* (each hour against the same hour on the previous days)" in report.text
    line = next(li for li in report.text.splitlines() if li.startswith("• cpu % "))
    assert "14:00: 88.0 against" in line and "(7 days), higher" in line
    assert any(li.startswith("• load ") and "14:00: 3.5 against 0.4" in li for li in report.text.splitlines())
    # The model is given the changes with the rest of the figures, and asked to say them.
    [chat] = fake_ollama.chat_requests
    assert '"anomalies"' in chat["messages"][1]["content"] and "anomalies" in chat["messages"][0]["content"]


@pytest.mark.asyncio
async def test_a_new_install_says_it_has_too_little_history(services: Services, tmp_path: Path) -> None:
    recorder = MetricsRecorder(services.store, MetricsSampler(host="box"))
    for hour in range(24):
        await recorder.save(MetricsSnapshot(
            at=at(1, hour), host="box", cpu_percent=50.0, cpu_cores=4, load=(0.4, 0.4, 0.3), mem_percent=40.0,
            mem_used=4 * GIB, mem_total=16 * GIB, swap_percent=1.0, net_sent=0, net_recv=0, disks=(), top=(),
        ))  # fmt: skip
    daily = DailyAnalysis(db_url=services.store.url, out_dir=tmp_path, llm=None, notebook=None, host="box")
    report = await daily.build(end=END)
    assert "*What changed*: not enough history to compare with yet (0 day(s) of samples before this window" in (
        report.text
    )
