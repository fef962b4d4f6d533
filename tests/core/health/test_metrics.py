"""Metrics sampling with the real psutil, storage, retention pruning."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from bot.app import Services
from core.health.metrics import (
    DAY,
    DiskReading,
    MetricsRecorder,
    MetricsSampler,
    ProcessReading,
    read_pressure,
    sample_metrics,
)
from core.health.models import MetricSample
from tests.support.postgres import on_each_database


def test_a_sample_reads_the_real_host() -> None:
    sampler = MetricsSampler(top=3)
    first = sampler.sample()
    sum(i * i for i in range(200_000))  # some CPU for this process between the samples
    second = sampler.sample()
    for snap in (first, second):
        assert snap.cpu_cores >= 1 and 0 <= snap.cpu_percent <= 100
        assert 0 < snap.mem_percent < 100 and snap.mem_total > snap.mem_used > 0
        assert snap.disks and all(0 <= d.percent <= 100 and d.total > 0 for d in snap.disks)
        assert len({d.mount for d in snap.disks}) == len(snap.disks)
        assert snap.net_sent >= 0 and snap.net_recv >= 0
        assert 1 <= len(snap.top) <= 6  # top 3 by CPU and top 3 by memory, merged
    assert second.at >= first.at
    assert any(p.cpu_percent > 0 for p in second.top), "the second sample measures CPU since the first"


def test_sample_metrics_without_a_sampler_is_fast_enough() -> None:
    started = time.perf_counter()
    snap = sample_metrics()
    assert time.perf_counter() - started < 2.0
    assert snap.host


def test_pressure_file_parsing(tmp_path: Path) -> None:
    psi = tmp_path / "memory"
    psi.write_text(
        "some avg10=1.50 avg60=2.25 avg300=0.80 total=123\nfull avg10=0.10 avg60=12.50 avg300=0.30 total=45\n"
    )
    assert read_pressure(psi) == 12.5
    assert read_pressure(tmp_path / "missing") is None


@on_each_database
@pytest.mark.asyncio
async def test_samples_are_stored_compactly_and_pruned_after_the_retention(
    services: Services, database_url: str
) -> None:
    now = 1_800_000_000.0
    recorder = MetricsRecorder(services.store, MetricsSampler(host="box"), retention_days=30, clock=lambda: now)
    snap = dataclasses.replace(
        await recorder.read(),
        host="box",
        mem_used=19 * 2**30,
        mem_total=25 * 2**30,
        net_sent=9 * 2**40,  # beyond 32 bits, as on a real server
        disks=(DiskReading("/", 40.0, 40, 100, free=55), DiskReading("/var", 91.5, 915, 1000)),
        top=(ProcessReading(42, "postgres", 12.5, 2**30),),
    )
    for age_days in (45, 31, 29, 1, 0):
        await recorder.save(dataclasses.replace(snap, at=now - age_days * DAY))
    rows = await recorder.recent(since=0)
    assert len(rows) == 5
    assert json.loads(rows[0].disks_json) == [{"m": "/", "p": 40.0, "u": 40, "t": 100, "f": 55},
                                               {"m": "/var", "p": 91.5, "u": 915, "t": 1000, "f": 85}]  # fmt: skip
    assert json.loads(rows[0].top_json) == [{"n": "postgres", "pid": 42, "c": 12.5, "r": 2**30}]
    assert (rows[0].mem_total, rows[0].net_sent) == (25 * 2**30, 9 * 2**40)

    assert await recorder.prune() == 2
    left = await services.store.run(lambda s: s.exec(select(func.count()).select_from(MetricSample)).one())
    assert left == 3
    assert [r.at for r in await recorder.recent(since=now - 2 * DAY)] == [now - DAY, now]
