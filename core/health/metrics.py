"""Metrics: one psutil reading of the host, stored every minute, pruned after the retention period.

`MetricsSampler.sample()` is synchronous and meant for a worker thread. It keeps its own
baselines (CPU times, one `psutil.Process` per pid), so every sample measures the CPU
used since the previous one without sleeping, and other psutil users in the process
(the `system_info` tool) do not disturb it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import delete, insert
from sqlmodel import Session, col, select

from core.health.models import MetricSample
from core.store import Store
from core.tools.system import PSEUDO_FS

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class DiskReading:
    mount: str
    percent: float
    used: int
    total: int
    device: str = ""
    free: int | None = None  # free to an unprivileged user, as `df` says (None: an old sample)

    @property
    def available(self) -> int:
        """Bytes a user can still write: not total - used, which counts the root reserve as free."""
        return self.free if self.free is not None else max(0, self.total - self.used)


@dataclass(frozen=True, slots=True)
class ProcessReading:
    pid: int
    name: str
    cpu_percent: float
    rss: int


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    at: float
    host: str
    cpu_percent: float
    cpu_cores: int
    load: tuple[float, float, float]
    mem_percent: float
    mem_used: int
    mem_total: int
    swap_percent: float
    net_sent: int = 0
    net_recv: int = 0
    disks: tuple[DiskReading, ...] = ()
    top: tuple[ProcessReading, ...] = ()
    memory_pressure: float | None = None  # PSI "full avg60" in %, where the kernel has it

    def disk(self, mount: str) -> DiskReading | None:
        return next((d for d in self.disks if d.mount == mount), None)


def _busy(t: Any) -> tuple[float, float]:
    total = float(sum(t))
    idle = float(getattr(t, "idle", 0.0)) + float(getattr(t, "iowait", 0.0))
    return total - idle, total


def read_pressure(path: Path) -> float | None:
    """`full avg60` of a PSI file (the share of time every task was stalled on memory)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("full "):
            for part in line.split():
                if part.startswith("avg60="):
                    try:
                        return float(part.split("=", 1)[1])
                    except ValueError:
                        return None
    return None


def disk_readings(ignore: Iterable[str] = ()) -> list[DiskReading]:
    """Real filesystems, one row per device (bind mounts of the same device show up once)."""
    ignored = set(ignore)
    by_device: dict[str, DiskReading] = {}
    for part in psutil.disk_partitions(all=False):
        mount = part.mountpoint
        if part.fstype in PSEUDO_FS or mount in ignored or not os.path.isdir(mount):
            continue
        key = part.device or mount
        known = by_device.get(key)
        if known is not None and len(known.mount) <= len(mount):
            continue
        try:
            usage = psutil.disk_usage(mount)
        except OSError:
            continue
        by_device[key] = DiskReading(mount, round(usage.percent, 1), usage.used, usage.total, part.device, usage.free)
    if not by_device and "/" not in ignored:  # containers often list only an overlay root
        usage = psutil.disk_usage("/")
        by_device["/"] = DiskReading("/", round(usage.percent, 1), usage.used, usage.total, free=usage.free)
    return sorted(by_device.values(), key=lambda d: d.mount)


class MetricsSampler:
    def __init__(
        self,
        *,
        top: int = 5,
        host: str | None = None,
        ignore_mounts: Sequence[str] = (),
        pressure_file: Path = Path("/proc/pressure/memory"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.top = top
        self.host = host or socket.gethostname()
        self.ignore_mounts = tuple(ignore_mounts)
        self.pressure_file = pressure_file
        self.clock = clock
        self._lock = threading.Lock()
        self._cpu_prev: tuple[float, float] = (0.0, 0.0)  # since boot, for the very first sample
        self._procs: dict[int, psutil.Process] = {}

    def sample(self) -> MetricsSnapshot:
        with self._lock:
            return self._sample()

    def _cpu_percent(self) -> float:
        busy, total = _busy(psutil.cpu_times())
        prev_busy, prev_total = self._cpu_prev
        self._cpu_prev = (busy, total)
        span = total - prev_total
        return round(max(0.0, min(100.0, 100.0 * (busy - prev_busy) / span)), 1) if span > 0 else 0.0

    def _processes(self) -> list[ProcessReading]:
        pids = set(psutil.pids())
        for gone in self._procs.keys() - pids:
            del self._procs[gone]
        rows: list[ProcessReading] = []
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                with proc.oneshot():
                    cpu = proc.cpu_percent(None)  # since this object's previous call: 0.0 the first time
                    rows.append(ProcessReading(pid, proc.name(), round(cpu, 1), proc.memory_info().rss))
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                self._procs.pop(pid, None)
            except psutil.AccessDenied:
                continue
        by_cpu = sorted(rows, key=lambda r: (r.cpu_percent, r.rss), reverse=True)[: self.top]
        by_mem = sorted(rows, key=lambda r: r.rss, reverse=True)[: self.top]
        seen: set[int] = set()
        top: list[ProcessReading] = []
        for r in [*by_cpu, *by_mem]:
            if r.pid not in seen:
                seen.add(r.pid)
                top.append(r)
        return top

    def _sample(self) -> MetricsSnapshot:
        vm = psutil.virtual_memory()
        swap = psutil.swap_memory()
        load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        net = psutil.net_io_counters()
        return MetricsSnapshot(
            at=self.clock(),
            host=self.host,
            cpu_percent=self._cpu_percent(),
            cpu_cores=psutil.cpu_count() or 1,
            load=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
            mem_percent=round(vm.percent, 1),
            mem_used=int(vm.total - vm.available),
            mem_total=int(vm.total),
            swap_percent=round(swap.percent, 1),
            net_sent=int(net.bytes_sent) if net else 0,
            net_recv=int(net.bytes_recv) if net else 0,
            disks=tuple(disk_readings(self.ignore_mounts)),
            top=tuple(self._processes()) if self.top else (),
            memory_pressure=read_pressure(self.pressure_file),
        )


def sample_metrics(sampler: MetricsSampler | None = None) -> MetricsSnapshot:
    """One reading (synchronous: run it in a worker thread). A fresh sampler has no CPU baseline yet,
    so its first CPU figure is the average since boot and every process reads 0 % CPU."""
    return (sampler or MetricsSampler()).sample()


# ---- storage -------------------------------------------------------------------


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def sample_row(snap: MetricsSnapshot) -> dict[str, Any]:
    return {
        "at": snap.at,
        "host": snap.host,
        "cpu_percent": snap.cpu_percent,
        "cpu_cores": snap.cpu_cores,
        "load1": snap.load[0],
        "load5": snap.load[1],
        "load15": snap.load[2],
        "mem_percent": snap.mem_percent,
        "mem_used": snap.mem_used,
        "mem_total": snap.mem_total,
        "swap_percent": snap.swap_percent,
        "net_sent": snap.net_sent,
        "net_recv": snap.net_recv,
        "disks_json": _compact(
            [{"m": d.mount, "p": d.percent, "u": d.used, "t": d.total, "f": d.available} for d in snap.disks]
        ),
        "top_json": _compact([{"n": p.name, "pid": p.pid, "c": p.cpu_percent, "r": p.rss} for p in snap.top]),
    }


@dataclass
class MetricsRecorder:
    """Samples into the store and prunes what is older than the retention period."""

    store: Store
    sampler: MetricsSampler = field(default_factory=MetricsSampler)
    retention_days: float = 30.0
    clock: Callable[[], float] = time.time

    async def read(self) -> MetricsSnapshot:
        return await asyncio.to_thread(self.sampler.sample)

    async def record(self) -> MetricsSnapshot:
        snap = await self.read()
        await self.save(snap)
        return snap

    async def save(self, snap: MetricsSnapshot) -> None:
        row = sample_row(snap)

        def work(s: Session) -> None:
            s.execute(insert(MetricSample).values(**row))
            s.commit()

        await self.store.run(work)

    async def prune(self, *, now: float | None = None) -> int:
        """Delete samples older than the retention period; returns how many went."""
        cutoff = (now if now is not None else self.clock()) - self.retention_days * DAY

        def work(s: Session) -> int:
            result = s.execute(delete(MetricSample).where(col(MetricSample.at) < cutoff))
            s.commit()
            return int(result.rowcount)  # type: ignore[attr-defined]

        return await self.store.run(work)

    async def recent(self, *, since: float, host: str | None = None) -> list[MetricSample]:
        who = host or self.sampler.host

        def work(s: Session) -> list[MetricSample]:
            q = select(MetricSample).where(MetricSample.host == who, col(MetricSample.at) >= since)
            return list(s.exec(q.order_by(col(MetricSample.at))).all())

        return await self.store.run(work)
