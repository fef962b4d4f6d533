"""Deterministic health checks: plain code over a reading, no model involved.

A check turns a `CheckContext` (the current reading, recent samples, the time) into
`CheckResult`s, one per thing it watches, keyed so an incident can follow it from pass
to pass ("disk:/var", "container:web", "systemd:nginx.service"). A check that cannot
tell (its probe broke) returns an *inconclusive* result: it opens and closes nothing.

To add a check: write a class with a `name` and an `async def run(ctx)`, and add it to
`default_checks` (docs/reports.md walks through it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core.health import texts
from core.health.engine import EngineProbe
from core.health.metrics import MetricsSnapshot
from core.process import ProcessResult, run_process

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str  # the check that produced it
    key: str  # what it is about; incidents are tracked per key
    ok: bool
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)
    inconclusive: bool = False  # the check could not tell: leave incidents as they are


@dataclass(frozen=True, slots=True)
class LoadPoint:
    at: float
    load1: float
    cores: int


@dataclass(frozen=True, slots=True)
class CheckContext:
    now: float
    reading: MetricsSnapshot
    history: Sequence[LoadPoint] = ()  # recent samples, oldest first


class Check(Protocol):
    name: str

    async def run(self, ctx: CheckContext) -> list[CheckResult]: ...


def _gib(n: float) -> float:
    return round(n / 2**30, 1)


def _top_cpu(reading: MetricsSnapshot, n: int = 3) -> list[dict[str, Any]]:
    rows = sorted(reading.top, key=lambda p: p.cpu_percent, reverse=True)[:n]
    return [{"name": p.name, "pid": p.pid, "cpu %": p.cpu_percent} for p in rows]


def _top_mem(reading: MetricsSnapshot, n: int = 3) -> list[dict[str, Any]]:
    rows = sorted(reading.top, key=lambda p: p.rss, reverse=True)[:n]
    return [{"name": p.name, "pid": p.pid, "rss": texts.size(p.rss)} for p in rows]


@dataclass
class DiskCheck:
    threshold: float = 90.0
    name: str = "disk"

    async def run(self, ctx: CheckContext) -> list[CheckResult]:
        results = []
        for d in ctx.reading.disks:
            free = texts.size(d.available)
            ok = d.percent < self.threshold
            figures = {"mount": d.mount, "used %": d.percent, "used GiB": _gib(d.used), "free GiB": _gib(d.available),
                       "size GiB": _gib(d.total),
                       "threshold %": self.threshold}  # fmt: skip
            summary = (
                texts.DISK_OK.format(mount=d.mount, percent=d.percent, free=free)
                if ok
                else texts.DISK_FULL.format(
                    mount=d.mount, percent=d.percent, free=free, total=texts.size(d.total), threshold=self.threshold
                )
            )
            results.append(CheckResult(self.name, f"disk:{d.mount}", ok, summary, figures))
        return results


@dataclass
class MemoryCheck:
    percent: float = 90.0
    pressure: float = 10.0  # PSI full avg60; 0 turns this part off
    name: str = "memory"

    async def run(self, ctx: CheckContext) -> list[CheckResult]:
        r = ctx.reading
        figures: dict[str, Any] = {"used %": r.mem_percent, "used GiB": _gib(r.mem_used), "size GiB": _gib(r.mem_total),
                                   "swap %": r.swap_percent, "threshold %": self.percent}  # fmt: skip
        if r.memory_pressure is not None:
            figures["stalled % (PSI full avg60)"] = r.memory_pressure
        high = r.mem_percent >= self.percent
        stalled = bool(self.pressure) and r.memory_pressure is not None and r.memory_pressure >= self.pressure
        if high:
            figures["top memory"] = _top_mem(r)
            summary = texts.MEMORY_HIGH.format(
                percent=r.mem_percent, available=texts.size(r.mem_total - r.mem_used),
                total=texts.size(r.mem_total), threshold=self.percent,
            )  # fmt: skip
        elif stalled:
            figures["top memory"] = _top_mem(r)
            summary = texts.MEMORY_STALLED.format(pressure=r.memory_pressure, threshold=self.pressure)
        else:
            summary = texts.MEMORY_OK.format(
                percent=r.mem_percent, used=texts.size(r.mem_used), total=texts.size(r.mem_total)
            )
        return [CheckResult(self.name, "memory", not (high or stalled), summary, figures)]


@dataclass
class LoadCheck:
    """Load above cores × factor for the whole window. With too few samples (the scheduler has just
    started, or `report health` on its own) the kernel's 15-minute average stands in."""

    factor: float = 1.0
    minutes: float = 15.0
    name: str = "load"

    async def run(self, ctx: CheckContext) -> list[CheckResult]:
        r = ctx.reading
        cores = r.cpu_cores
        limit = round(cores * self.factor, 2)
        start = ctx.now - self.minutes * 60
        points = [p for p in ctx.history if p.at >= start]
        points.append(LoadPoint(ctx.now, r.load[0], cores))
        figures: dict[str, Any] = {"cores": cores, "limit": limit, "load 1/5/15": list(r.load)}
        covered = len(points) >= 3 and points[0].at <= start + self.minutes * 60 * 0.2
        if covered:
            low = min(p.load1 for p in points)
            figures |= {"window min": self.minutes, "samples": len(points), "lowest": low,
                        "highest": max(p.load1 for p in points)}  # fmt: skip
            failing = low > limit
            summary = (
                texts.LOAD_SUSTAINED.format(limit=limit, minutes=self.minutes, low=low, load1=r.load[0], cores=cores)
                if failing
                else texts.LOAD_WINDOW_OK.format(limit=limit, minutes=self.minutes, load1=r.load[0], cores=cores)
            )
        else:
            failing = r.load[2] > limit
            summary = (
                texts.LOAD15_HIGH.format(load15=r.load[2], limit=limit, cores=cores, load1=r.load[0])
                if failing
                else texts.LOAD15_OK.format(load15=r.load[2], limit=limit, cores=cores, load1=r.load[0])
            )
        if failing:
            figures["top cpu"] = _top_cpu(r)
        return [CheckResult(self.name, "load", not failing, summary, figures)]


@dataclass
class DockerCheck:
    """Is the daemon answering? No engine on the host is a pass with a note (unless `required`):
    a homelab box without Docker is not broken."""

    engine: EngineProbe
    mode: str = "auto"  # auto | required
    name: str = "docker"

    async def run(self, ctx: CheckContext) -> list[CheckResult]:
        where = self.engine.describe()
        if not self.engine.configured():
            if self.mode == "required":
                return [CheckResult(self.name, "docker", False, texts.DOCKER_REQUIRED.format(where=where))]
            return [CheckResult(self.name, "docker", True, texts.DOCKER_NONE.format(where=where), {"skipped": True})]
        try:
            await self.engine.ping()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            return [CheckResult(self.name, "docker", False, texts.DOCKER_DOWN.format(where=where, error=error),
                                {"engine": where, "error": error})]  # fmt: skip
        return [CheckResult(self.name, "docker", True, texts.DOCKER_OK.format(where=where), {"engine": where})]


@dataclass
class ContainersCheck:
    """Unhealthy containers and restart loops (restarted `restart_limit`+ times and started again
    within the window, or restarting right now)."""

    engine: EngineProbe
    restart_limit: int = 3
    window_minutes: float = 15.0
    name: str = "containers"

    async def run(self, ctx: CheckContext) -> list[CheckResult]:
        if not self.engine.configured():
            return []
        try:
            containers = await self.engine.containers()
        except Exception as exc:  # the docker check reports the daemon itself
            return [CheckResult(self.name, "containers", True, texts.CHECK_BROKEN.format(name=self.name, error=exc),
                                inconclusive=True)]  # fmt: skip
        results = []
        for c in containers:
            problems = []
            if c.health == "unhealthy":
                problems.append(texts.CONTAINER_UNHEALTHY)
            recent = c.started_at is not None and ctx.now - c.started_at <= self.window_minutes * 60
            if c.status == "restarting":
                problems.append(texts.CONTAINER_RESTARTING)
            if c.restart_count >= self.restart_limit and (recent or c.status == "restarting"):
                ago = texts.duration(ctx.now - c.started_at) if c.started_at else "?"
                problems.append(texts.CONTAINER_LOOPING.format(count=c.restart_count, ago=ago))
            figures: dict[str, Any] = {"container": c.name, "image": c.image, "status": c.status,
                                       "restarts": c.restart_count}  # fmt: skip
            if c.health:
                figures["health"] = c.health
            if c.health_log and problems:
                figures["last healthcheck output"] = c.health_log
            summary = (
                texts.CONTAINER_BAD.format(name=c.name, image=c.image, problems="; ".join(problems))
                if problems
                else texts.CONTAINER_OK.format(name=c.name, status=c.status + (f", {c.health}" if c.health else ""))
            )
            results.append(CheckResult(self.name, f"container:{c.name}", not problems, summary, figures))
        return results


Runner = Callable[[Sequence[str]], Awaitable[ProcessResult]]


async def _run_argv(argv: Sequence[str]) -> ProcessResult:
    return await run_process(argv, timeout=20, output_cap=256 * 1024)


@dataclass
class SystemdCheck:
    """Failed units, only where systemd runs (it creates /run/systemd/system at boot)."""

    systemctl: str = "systemctl"
    marker: Path = Path("/run/systemd/system")
    runner: Runner = _run_argv
    name: str = "systemd"

    async def run(self, ctx: CheckContext) -> list[CheckResult]:
        if not self.marker.exists():
            return [CheckResult(self.name, "systemd", True, texts.SYSTEMD_NONE, {"skipped": True})]
        argv = [self.systemctl, "list-units", "--state=failed", "--no-legend", "--plain", "--no-pager"]
        result = await self.runner(argv)
        if not result.ok:
            error = (result.stderr or result.stdout or f"exit status {result.exit_status}").strip()[:300]
            return [CheckResult(self.name, "systemd", True, texts.CHECK_BROKEN.format(name=self.name, error=error),
                                inconclusive=True)]  # fmt: skip
        results = []
        for line in result.stdout.splitlines():
            words = line.replace("●", " ").split()
            if len(words) < 4:
                continue
            unit, load, active, sub = words[:4]
            state = f"{load}/{active}/{sub}"
            figures = {"unit": unit, "state": state, "description": " ".join(words[4:])}
            results.append(CheckResult(self.name, f"systemd:{unit}", False,
                                       texts.SYSTEMD_FAILED.format(unit=unit, state=state), figures))  # fmt: skip
        if not results:
            results.append(CheckResult(self.name, "systemd", True, texts.SYSTEMD_OK))
        return results


async def run_check(check: Check, ctx: CheckContext, *, limit: float = 60.0) -> list[CheckResult]:
    """One check behind an error boundary: a broken check is inconclusive, never a crash."""
    try:
        async with asyncio.timeout(limit):
            return await check.run(ctx)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("health check %s failed to run", check.name)
        error = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        return [CheckResult(check.name, check.name, True, texts.CHECK_BROKEN.format(name=check.name, error=error),
                            inconclusive=True)]  # fmt: skip


@dataclass(frozen=True)
class CheckConfig:
    disk_percent: float = 90.0
    memory_percent: float = 90.0
    memory_pressure: float = 10.0
    load_factor: float = 1.0
    load_minutes: float = 15.0
    docker: str = "auto"  # auto | required | off
    restart_limit: int = 3
    restart_window_minutes: float = 15.0
    systemd: str = "auto"  # auto | off
    disabled: frozenset[str] = frozenset()


def default_checks(config: CheckConfig, *, engine: EngineProbe | None = None) -> list[Check]:
    from core.health.engine import DockerEngineProbe

    checks: list[Check] = [
        DiskCheck(config.disk_percent),
        MemoryCheck(config.memory_percent, config.memory_pressure),
        LoadCheck(config.load_factor, config.load_minutes),
    ]
    if config.docker != "off":
        probe = engine or DockerEngineProbe()
        checks.append(DockerCheck(probe, config.docker))
        checks.append(ContainersCheck(probe, config.restart_limit, config.restart_window_minutes))
    if config.systemd != "off":
        checks.append(SystemdCheck())
    return [c for c in checks if c.name not in config.disabled]
