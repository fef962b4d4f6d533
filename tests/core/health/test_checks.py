"""The deterministic checks: fed readings, fake engines and a fake systemctl; the Docker probe
against a real dockerd where the machine allows one."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.health.checks import (
    CheckConfig,
    CheckContext,
    CheckResult,
    ContainersCheck,
    DiskCheck,
    DockerCheck,
    LoadCheck,
    LoadPoint,
    MemoryCheck,
    SystemdCheck,
    default_checks,
    run_check,
)
from core.health.engine import ContainerReading, DockerEngineProbe, container_reading, parse_docker_time
from core.health.metrics import DiskReading, MetricsSnapshot, ProcessReading

NOW = 1_800_000_000.0
GIB = 2**30


def reading(**changes: Any) -> MetricsSnapshot:
    base: dict[str, Any] = dict(
        at=NOW, host="box", cpu_percent=5.0, cpu_cores=4, load=(0.5, 0.4, 0.3), mem_percent=40.0,
        mem_used=4 * GIB, mem_total=10 * GIB, swap_percent=0.0,
        disks=(DiskReading("/", 50.0, 50 * GIB, 100 * GIB),),
        top=(ProcessReading(1, "init", 0.1, 10 * 2**20), ProcessReading(99, "java", 180.0, 6 * GIB)),
    )  # fmt: skip
    return MetricsSnapshot(**(base | changes))


def ctx(history: tuple[LoadPoint, ...] = (), **changes: Any) -> CheckContext:
    return CheckContext(now=NOW, reading=reading(**changes), history=history)


@pytest.mark.asyncio
async def test_disk_check_fails_per_mount_over_the_threshold() -> None:
    disks = (DiskReading("/", 50.0, 50 * GIB, 100 * GIB), DiskReading("/var", 97.2, 972 * GIB, 1000 * GIB))
    results = await DiskCheck(90).run(ctx(disks=disks))
    assert [(r.key, r.ok) for r in results] == [("disk:/", True), ("disk:/var", False)]
    bad = results[1]
    assert "/var is 97.2 % full" in bad.summary and "threshold 90 %" in bad.summary
    assert bad.figures["used %"] == 97.2 and bad.figures["threshold %"] == 90


@pytest.mark.asyncio
async def test_memory_check_on_usage_and_on_stall_pressure() -> None:
    assert (await MemoryCheck(90, 10).run(ctx()))[0].ok
    high = (await MemoryCheck(90, 10).run(ctx(mem_percent=95.5)))[0]
    assert not high.ok and "95.5 % used" in high.summary and high.figures["top memory"][0]["name"] == "java"
    stalled = (await MemoryCheck(90, 10).run(ctx(memory_pressure=25.0)))[0]
    assert not stalled.ok and "stalled 25.0 %" in stalled.summary
    assert (await MemoryCheck(90, 0).run(ctx(memory_pressure=25.0)))[0].ok  # pressure part turned off


@pytest.mark.asyncio
async def test_load_must_stay_above_the_cores_for_the_whole_window() -> None:
    above = tuple(LoadPoint(NOW - m * 60, 6.0, 4) for m in range(15, 0, -1))
    failing = (await LoadCheck(1.0, 15).run(ctx(history=above, load=(5.5, 5.0, 4.5))))[0]
    assert not failing.ok and "stayed above 4" in failing.summary and failing.figures["lowest"] == 5.5
    assert failing.figures["top cpu"][0]["name"] == "java"

    one_dip = tuple(LoadPoint(p.at, 2.0 if i == 7 else p.load1, 4) for i, p in enumerate(above))
    assert (await LoadCheck(1.0, 15).run(ctx(history=one_dip, load=(5.5, 5.0, 4.5))))[0].ok

    # Without enough samples the kernel's 15-minute average decides.
    assert not (await LoadCheck(1.0, 15).run(ctx(load=(9.0, 8.0, 7.0))))[0].ok
    calm15 = (await LoadCheck(1.0, 15).run(ctx(load=(9.0, 5.0, 3.0))))[0]
    # a 1-minute load above the cores passes: the line says which average was judged, and shows the 1-minute one
    assert calm15.ok and "15-minute load average 3.00" in calm15.summary and "1-minute 9.00" in calm15.summary


@pytest.mark.asyncio
async def test_free_space_is_what_a_user_can_write_as_df_says_not_total_minus_used() -> None:
    # ext4 keeps 5 % for root: 100 GiB, 60 used, 35 free to users (df's Avail), not 40
    disk = DiskReading("/", 63.2, 60 * GIB, 100 * GIB, free=35 * GIB)
    result = (await DiskCheck(90).run(ctx(disks=(disk,))))[0]
    assert "35.0 GiB free" in result.summary and result.figures["free GiB"] == 35.0


class FakeEngine:
    def __init__(self, *, configured: bool = True, error: Exception | None = None,
                 containers: list[ContainerReading] | None = None) -> None:  # fmt: skip
        self._configured, self.error, self._containers = configured, error, containers or []

    def describe(self) -> str:
        return "unix:///run/fake-docker.sock"

    def configured(self) -> bool:
        return self._configured

    async def ping(self) -> None:
        if self.error:
            raise self.error

    async def containers(self) -> list[ContainerReading]:
        if self.error:
            raise self.error
        return self._containers


@pytest.mark.asyncio
async def test_no_docker_engine_is_a_pass_with_a_note_unless_required() -> None:
    [none] = await DockerCheck(FakeEngine(configured=False)).run(ctx())
    assert none.ok and none.figures == {"skipped": True} and "not checked" in none.summary
    [required] = await DockerCheck(FakeEngine(configured=False), "required").run(ctx())
    assert not required.ok
    [down] = await DockerCheck(FakeEngine(error=ConnectionError("connection refused"))).run(ctx())
    assert not down.ok and "does not answer" in down.summary and "connection refused" in down.summary
    assert await ContainersCheck(FakeEngine(configured=False)).run(ctx()) == []


@pytest.mark.asyncio
async def test_docker_sdk_probe_without_an_engine(tmp_path: Path) -> None:
    nothing = DockerEngineProbe(socket_path=tmp_path / "docker.sock", environ={})
    assert not nothing.configured()
    dead = DockerEngineProbe(f"unix://{tmp_path}/docker.sock", timeout=2)
    assert dead.configured()
    [result] = await DockerCheck(dead).run(ctx())
    assert not result.ok and str(tmp_path) in result.summary
    [unsure] = await ContainersCheck(dead).run(ctx())
    assert unsure.inconclusive  # the docker check reports the daemon; containers cannot tell


@pytest.mark.asyncio
async def test_unhealthy_and_restart_looping_containers() -> None:
    def c(name: str, **kw: Any) -> ContainerReading:
        base: dict[str, Any] = dict(id=name, name=name, image=f"{name}:1", status="running", health="",
                                    restart_count=0, started_at=NOW - 3 * 86400)  # fmt: skip
        return ContainerReading(**(base | kw))

    engine = FakeEngine(containers=[
        c("web", health="healthy"),
        c("db", health="unhealthy", health_log="pg_isready: no response"),
        c("worker", restart_count=7, started_at=NOW - 40),
        c("cron", status="restarting", restart_count=2, started_at=NOW - 5),
        c("old-crash", restart_count=9),  # restarted long ago, stable since
    ])  # fmt: skip
    results = {r.key: r for r in await ContainersCheck(engine, restart_limit=3, window_minutes=15).run(ctx())}
    assert {k for k, r in results.items() if not r.ok} == {"container:db", "container:worker", "container:cron"}
    assert "healthcheck failing" in results["container:db"].summary
    assert results["container:db"].figures["last healthcheck output"] == "pg_isready: no response"
    assert "restarted 7 times, last start 40 s ago" in results["container:worker"].summary
    assert "restarting" in results["container:cron"].summary


def test_container_reading_from_docker_inspect() -> None:
    attrs = {
        "Id": "0123456789abcdef", "Name": "/web", "RestartCount": 4, "Config": {"Image": "nginx:1.27"},
        "State": {"Status": "running", "StartedAt": "2027-01-15T08:00:00.123456789Z",
                  "Health": {"Status": "unhealthy", "Log": [{"Output": "curl: (7) refused\n"}]}},
    }  # fmt: skip
    r = container_reading(attrs)
    assert (r.id, r.name, r.image, r.status, r.health, r.restart_count) == (
        "0123456789ab",
        "web",
        "nginx:1.27",
        "running",
        "unhealthy",
        4,
    )
    assert r.health_log == "curl: (7) refused"
    assert r.started_at == pytest.approx(datetime(2027, 1, 15, 8, 0, 0, 123456, tzinfo=UTC).timestamp())
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("2027-01-15T08:00:00Z") == parse_docker_time("2027-01-15T08:00:00.000000001Z")


def fake_systemctl(tmp_path: Path, output: str, status: int = 0) -> str:
    script = tmp_path / "systemctl"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\nexit {status}\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.asyncio
async def test_systemd_failed_units_through_the_process_helper(tmp_path: Path) -> None:
    assert (await SystemdCheck(marker=tmp_path / "absent").run(ctx()))[0].figures == {"skipped": True}
    out = ("● nginx.service loaded failed failed A high performance web server\n"
           "backup.timer loaded failed failed Nightly backup\n")  # fmt: skip
    results = await SystemdCheck(systemctl=fake_systemctl(tmp_path, out), marker=tmp_path).run(ctx())
    assert [(r.key, r.ok) for r in results] == [("systemd:nginx.service", False), ("systemd:backup.timer", False)]
    assert results[0].figures["description"] == "A high performance web server"
    healthy = await SystemdCheck(systemctl=fake_systemctl(tmp_path, ""), marker=tmp_path).run(ctx())
    assert [(r.key, r.ok) for r in healthy] == [("systemd", True)]
    broken = await SystemdCheck(systemctl=fake_systemctl(tmp_path, "bus error\n", 1), marker=tmp_path).run(ctx())
    assert broken[0].inconclusive and "bus error" in broken[0].summary


@pytest.mark.asyncio
async def test_a_broken_check_is_inconclusive_not_a_crash() -> None:
    class Broken:
        name = "broken"

        async def run(self, ctx: CheckContext) -> list[CheckResult]:
            raise ZeroDivisionError("oops")

    [result] = await run_check(Broken(), ctx())
    assert result.inconclusive and result.ok and "ZeroDivisionError: oops" in result.summary


def test_default_checks_follow_the_config() -> None:
    names = [c.name for c in default_checks(CheckConfig(), engine=FakeEngine())]
    assert names == ["disk", "memory", "load", "docker", "containers", "systemd"]
    names = [c.name for c in default_checks(CheckConfig(docker="off", systemd="off", disabled=frozenset({"load"})))]
    assert names == ["disk", "memory"]


@pytest.mark.asyncio
async def test_docker_checks_against_a_real_engine(docker_engine: Any) -> None:
    probe = DockerEngineProbe(docker_engine.base_url, timeout=10)
    [up] = await DockerCheck(probe).run(ctx())
    assert up.ok, up.summary
    client = docker_engine.client
    looping = client.containers.run(
        docker_engine.image, ["sh", "-c", "exit 3"], network_mode="none", detach=True,
        restart_policy={"Name": "always"}, name=f"looping-{os.getpid()}",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            looping.reload()
            if looping.attrs["RestartCount"] >= 3:
                break
            time.sleep(0.2)
        results = {r.key: r for r in await ContainersCheck(probe, restart_limit=3).run(
            CheckContext(now=time.time(), reading=reading()))}  # fmt: skip
        bad = results[f"container:looping-{os.getpid()}"]
        assert not bad.ok and "restart" in bad.summary, bad.summary
    finally:
        looping.remove(force=True)
